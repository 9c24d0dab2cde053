"""End to end, in a real browser (Debian's Chromium driven by Playwright):

* JupyterLab on a copy of notebooks/: open notebook 03, run all cells, change the
  compression dropdown of its explorer widget and see the accuracy table change;
* the course's static site (koopman_tut.tooling.course, --no-execute): a page shows its embedded
  figures and MathJax-typeset equations with every request to another host blocked.

Screenshots go to test-artifacts/. Skipped only where /usr/bin/chromium is missing and this
is not CI (CI=true): CI must run it (.ci/run installs chromium).
"""
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
NOTEBOOK = "03_kmp_equals_magnitude.ipynb"
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser
if not CHROMIUM.exists() and not IN_CI:
    pytest.skip("no /usr/bin/chromium (apt-get install chromium); outside CI the browser tests are skipped",
                allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402 - after the skip: a test extra


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


class Lab:
    """A JupyterLab server on 127.0.0.1 over a temporary copy of notebooks/."""

    def __init__(self, tmp: Path):
        self.root, self.port, self.token = tmp / "notebooks", free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        shutil.copytree(ROOT / "notebooks", self.root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        settings = tmp / "lab-settings"
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
               "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"), "IPYTHONDIR": str(tmp / "ipython")}
        self.log = (tmp / "lab.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={self.port}", "--ServerApp.port_retries=0",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={self.token}", "--allow-root",
             f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={settings}",
             f"--LabApp.workspaces_dir={tmp / 'lab-workspaces'}", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
        self.log_path = tmp / "lab.log"
        deadline = time.monotonic() + 90
        while True:
            try:
                get_json(f"{self.base}/api/status", self.token)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"JupyterLab did not start:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.5)

    def kernel_states(self) -> list[str]:
        return [k["execution_state"] for k in get_json(f"{self.base}/api/kernels", self.token)]

    def stop(self) -> None:
        """Ask the server to shut down (it stops its kernels), then make sure that it and every
        process it started are gone: a kernel left computing would slow every later test."""
        try:  # kernels run in sessions of their own: remember them to end any that outlive the server
            started = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        if self.proc.poll() is None:
            try:
                req = urllib.request.Request(f"{self.base}/api/shutdown", method="POST",
                                             headers={"Authorization": f"token {self.token}"})
                urllib.request.urlopen(req, timeout=10).close()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        for p in started:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def block_network(page, allowed: tuple[str, ...]) -> list[str]:
    """Abort every request whose URL does not start with one of ``allowed``; returns the list
    of blocked URLs (filled as the page runs)."""
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(allowed):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return blocked


def accept_kernel_dialog(page) -> None:
    """Answer JupyterLab's "Select Kernel" dialog, if it shows, with the preselected kernel."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count() and dialog.first.is_visible():
        dialog.first.locator("button.jp-mod-accept").click()


def accuracy_line(text: str) -> str:
    m = re.search(r"^test accuracy.*$", text, re.MULTILINE)
    assert m, text
    return m.group(0)


def test_notebook_03_widget_in_jupyterlab(browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    lab = Lab(tmp_path)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        blocked = block_network(page, (lab.base, f"http://localhost:{lab.port}", "data:", "blob:"))
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text[:300]}") if m.type == "error" else None)
        page.goto(f"{lab.base}/lab/tree/{NOTEBOOK}?token={lab.token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
        # Run All before the session has its kernel would ask which kernel to use: wait for it
        deadline = time.monotonic() + 90
        while lab.kernel_states() != ["idle"]:
            assert time.monotonic() < deadline, f"no idle kernel after 90 s: {lab.kernel_states()}"
            page.wait_for_timeout(500)  # not time.sleep: route handlers only run while Playwright waits
        page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"Python 3.*\|\s*Idle")).first.wait_for(
            timeout=60_000)
        accept_kernel_dialog(page)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        # the dropdown exists only once the kernel has run the explorer cell; a failing cell
        # stops Run All, so fail at once with its traceback
        select = page.locator(".widget-interact .widget-dropdown select").first
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                              has_text="Traceback")
        deadline = time.monotonic() + 300
        while not select.is_visible():
            accept_kernel_dialog(page)
            if errors.count():
                pytest.fail(f"a cell of {NOTEBOOK} failed in JupyterLab:\n{errors.first.inner_text()[-3000:]}")
            assert time.monotonic() < deadline, f"no widget after 300 s; kernel {lab.kernel_states()}"
            page.wait_for_timeout(1000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=240_000)
        deadline = time.monotonic() + 60
        while lab.kernel_states() != ["idle"]:
            assert time.monotonic() < deadline, lab.kernel_states()
            page.wait_for_timeout(500)
        assert not errors.count(), errors.first.inner_text()[-3000:]
        output = page.locator(".widget-interact .widget-output").first
        page.wait_for_function("""() => /test accuracy/.test(
            document.querySelector('.widget-interact .widget-output')?.innerText || '')""", timeout=60_000)
        before = output.inner_text()
        current = select.input_value()
        target = "32" if current != "32" else "2"
        select.select_option(value=target)
        page.wait_for_function(
            """(target) => (document.querySelector('.widget-interact .widget-output')?.innerText || '')
                           .includes('compression ' + target)""", arg=target, timeout=60_000)
        page.wait_for_function("""() => /test accuracy/.test(
            document.querySelector('.widget-interact .widget-output')?.innerText || '')""", timeout=60_000)
        after = output.inner_text()
        assert f"compression {current}" in before and f"compression {target}" in after
        assert accuracy_line(after) != accuracy_line(before), (before, after)
        select.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "browser_lab_03_widget.png"))
        assert blocked == [], f"JupyterLab tried to reach other hosts: {blocked}"
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "browser_lab_03_failure.png"))
        print("browser console errors:", *console[-20:], "blocked requests:", *blocked, sep="\n")
        print("JupyterLab log (end):", lab.log_path.read_text()[-3000:], sep="\n")
        raise
    finally:
        page.close()
        lab.stop()


def test_static_site_page_offline(browser, tmp_path):
    from koopman_tut.tooling import course

    ARTIFACTS.mkdir(exist_ok=True)
    result = course.build_course([ROOT / "notebooks" / NOTEBOOK], tmp_path / "course", execute=False,
                                 log=lambda *a: None)
    page_path = tmp_path / "course" / "site" / NOTEBOOK.replace(".ipynb", ".html")
    assert page_path in result.site
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        blocked = block_network(page, ("file:", "data:", "blob:", "about:"))
        page.goto(page_path.as_uri())
        # MathJax 2 leaves each typeset formula's TeX in a <script type="math/tex"> right after
        # its rendering, a span.MathJax (inside div.MathJax_Display for display math)
        page.wait_for_function("""() => {
            const tex = document.querySelectorAll('script[type^="math/tex"]').length;
            return window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && tex > 0
                   && document.querySelectorAll('span.MathJax').length === tex; }""", timeout=60_000)
        assert page.locator("span.MathJax .math").count() > 0, "equations are typeset"
        assert page.locator(".merror, .MathJax_Error").count() == 0
        figures = page.locator(".jp-OutputArea-output img[src^='data:image/png;base64,']")
        assert figures.count() > 0, f"no figure on the page: is notebooks/{NOTEBOOK} committed executed (make notebooks)?"
        assert figures.first.evaluate("img => img.complete && img.naturalWidth > 0"), "the figure decodes"
        assert page.get_by_text(course.WIDGET_NOTE).count() > 0
        assert blocked == [], f"the page tried to reach other hosts: {blocked}"
        page.evaluate("""() => {  // the first figure in view, with the text above it
            const img = document.querySelector('.jp-OutputArea-output img');
            window.scrollTo(0, img.getBoundingClientRect().top + window.scrollY - 250); }""")
        page.screenshot(path=str(ARTIFACTS / "browser_site_03.png"))
    finally:
        page.close()
