"""End to end, in a real browser (Debian's Chromium driven by Playwright):

* JupyterLab on a copy of notebooks/: open notebook 03, run all cells, change the
  compression dropdown of its explorer widget and see the accuracy table change;
* the course's two websites (koopman_tut.tooling.course, --no-execute), with every request to
  another host blocked: the student site has no solution text, search finds "fixed point",
  previous/next work, every figure has a caption and alt text; the instructor site shows the
  solutions in dropdowns, switches to dark mode and prints without cutting code.

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
        """Execution state of each kernel; ["starting"] while one is being started, when
        jupyter_server answers /api/kernels with 500 (its new kernel has no last_activity yet)."""
        try:
            return [k["execution_state"] for k in get_json(f"{self.base}/api/kernels", self.token)]
        except urllib.error.HTTPError as e:
            if e.code != 500 or "last_activity" not in self.log_path.read_text()[-5000:]:
                raise
            return ["starting"]

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


# --- the course's two websites (koopman-tut course --no-execute on the committed notebooks) ---

OFFLINE = ("file:", "data:", "blob:", "about:")
# the article's text without code, outputs and typeset math: a "$", "\(" or "\begin" left in it is
# a formula the page failed to typeset (e.g. display math MyST did not parse)
STRAY_TEX = r"""() => { const a = document.querySelector('article').cloneNode(true);
  a.querySelectorAll('pre, code, script, .MathJax, .MathJax_Display, .MathJax_Preview, .cell_output')
   .forEach(e => e.remove());
  return [...a.innerText.matchAll(/.{0,40}(\$|\\\(|\\\[|\\begin).{0,40}/g)].map(m => m[0]); }"""


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory):
    from koopman_tut.tooling import course

    out = tmp_path_factory.mktemp("course")
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    result = course.build_course(notebooks, out, execute=False, log=lambda *a: None, force=True, wheel=False)
    assert not result.failed and set(result.site) == {"student", "instructor"}
    return out


def solution_snippets() -> list[str]:
    """Text that only a solution cell holds: its code lines and sentences (>= 30 characters)
    that appear in no other cell of the tutorial."""
    import nbformat

    from koopman_tut.tooling.cells import is_solution

    sol, other = [], []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for c in nbformat.read(str(path), as_version=4).cells:
            (sol if is_solution(c) else other).append(c.source)
    rest = "\n".join(other)
    out = []
    for text in sol:
        for piece in re.split(r"\n|(?<=[.:;])\s", text):
            piece = piece.strip()
            if len(piece) >= 30 and piece not in rest and "<" not in piece and "&" not in piece:
                out.append(piece)
    return out


def open_page(browser, url: str, viewport=(1280, 900)):
    """A page at ``url`` with the network blocked; the returned list collects every request to
    another host and every local file that failed to load (a missing font, script or image)."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    blocked = block_network(page, OFFLINE)
    page.on("requestfailed", lambda r: blocked.append(f"missing: {r.url}")
            if r.failure and "NOT_FOUND" in r.failure else None)
    page.goto(url)
    return page, blocked


def test_student_site_has_no_solutions_and_works_offline(browser, course_dir):
    """No solution text in any page or the search index; search finds "fixed point"; previous /
    next links walk the notebooks; every figure has a caption and real alt text; math is typeset;
    no request leaves the machine."""
    ARTIFACTS.mkdir(exist_ok=True)
    site = course_dir / "site" / "student"
    snippets = solution_snippets()
    assert len(snippets) > 20, "the tutorial has solutions to hide"
    for f in [*site.glob("*.html"), site / "searchindex.js"]:
        text = f.read_text(encoding="utf-8")
        import html as html_lib

        flat = html_lib.unescape(re.sub(r"<[^>]+>", "", text))
        leaked = [s for s in snippets if s in text or s in flat]
        assert not leaked, f"{f.name} shows solution text: {leaked[:3]}"
        assert "Solution " not in flat or f.name == "searchindex.js" and "Solution" not in flat
        assert "NBVAL_" not in text, f"{f.name} shows a test marker"
    # search
    page, blocked = open_page(browser, (site / "search.html").as_uri() + "?q=fixed+point")
    try:
        page.wait_for_selector("#search-results ul.search li", timeout=60_000)
        hits = page.locator("#search-results ul.search li a").all_inner_texts()
        assert hits, "search finds 'fixed point'"
        page.screenshot(path=str(ARTIFACTS / "site_student_search.png"))
    finally:
        page.close()
    # previous / next, figures, math
    page, blocked2 = open_page(browser, (site / "00_quickstart.html").as_uri())
    try:
        page.locator("a.right-next").first.click()
        page.wait_for_load_state()
        assert page.url.endswith("01_koopman_and_dmd.html"), page.url
        page.locator("a.left-prev").first.click()
        page.wait_for_load_state()
        assert page.url.endswith("00_quickstart.html"), page.url
        for nb in sorted(site.glob("0*.html")):
            page.goto(nb.as_uri())
            page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0",
                                   timeout=60_000)
            stray = page.evaluate(STRAY_TEX)
            assert stray == [], f"{nb.name}: TeX left untypeset in the text: {stray[:3]}"
            imgs = page.locator("article img")
            for i in range(imgs.count()):
                alt = (imgs.nth(i).get_attribute("alt") or "").strip()
                src = imgs.nth(i).get_attribute("src") or ""
                assert len(alt) > 15 and alt not in src and "No description" not in alt, (nb.name, src, alt)
            figs = page.locator("article figure")
            assert figs.count() == imgs.count(), f"{nb.name}: every figure is numbered with a caption"
            for i in range(figs.count()):
                assert "Figure" in figs.nth(i).locator("figcaption").text_content(), nb.name
        page.goto((site / "01_koopman_and_dmd.html").as_uri())
        page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 "
                               "&& document.querySelectorAll('.MathJax, .MathJax_Display').length > 0", timeout=60_000)
        assert page.locator(".MathJax_Error, .merror").count() == 0
        page.screenshot(path=str(ARTIFACTS / "site_student_01.png"))
        page.goto((site / "05_early_training.html").as_uri())
        box = page.locator(".admonition", has_text="Your prediction")
        assert box.count() > 0, "a 'Your prediction' box before each reveal"
        box.first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "site_student_prediction.png"))
    finally:
        page.close()
    assert blocked == [] and blocked2 == [], f"requests to other hosts: {blocked + blocked2}"


def test_instructor_site_shows_solutions_dark_mode_and_print(browser, course_dir):
    site = course_dir / "site" / "instructor"
    page, blocked = open_page(browser, (site / "03_kmp_equals_magnitude.html").as_uri())
    try:
        drop = page.locator("details", has_text="Solution 03.1")
        assert drop.count() == 1, "each solution is a dropdown"
        drop.first.locator("summary").click()
        assert drop.first.locator("p").first.is_visible()
        drop.first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "site_instructor_solution.png"))
        if (ROOT / "docs" / "instructor.md").is_file():
            assert (site / "instructor.html").is_file() and page.locator("nav a[href='instructor.html']").count()
        # dark mode: the theme menu sets data-theme; the page background turns dark
        page.locator("button.theme-switch-button:visible").first.click()  # a menu: system, light, dark
        page.locator("button.theme-change-button[data-mode='dark']:visible").first.click()
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(int(v) for v in re.findall(r"\d+", bg)[:3]) < 200, bg
        page.screenshot(path=str(ARTIFACTS / "site_instructor_dark.png"))
        # print: no code block is cut at the right margin of an A4 page
        page.goto((site / "04_kgp_and_gradient_pruning.html").as_uri())
        page.emulate_media(media="print")
        page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
        cut = page.evaluate("""() => [...document.querySelectorAll('article pre')]
            .filter(p => p.scrollWidth > p.clientWidth + 1).length""")
        assert cut == 0, f"{cut} code blocks cut at the right when printed"
        page.pdf(path=str(ARTIFACTS / "site_instructor_04.pdf"), format="A4")
    finally:
        page.close()
    assert blocked == [], f"requests to other hosts: {blocked}"


def test_slides_typeset_math_offline_with_the_fonts_shipped(browser, course_dir):
    """Every deck: MathJax typesets its math with the STIX web fonts shipped beside the decks, and asks
    for no file that is not there (MathJax's default TeX fonts are not shipped: fontdata.js was missing)."""
    decks = sorted((course_dir / "slides").glob("*.slides.html"))
    assert decks
    for deck in decks:
        page, blocked = open_page(browser, deck.as_uri() + "#/1")
        try:
            page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0",
                                   timeout=60_000)
            page.wait_for_load_state("networkidle")
            fonts = page.evaluate("""() => [...new Set([...document.querySelectorAll('.MathJax span')]
                .map(e => getComputedStyle(e).fontFamily))]""")
            assert "Math Processing Error" not in page.inner_text("body"), deck.name
            assert not fonts or any("STIXMathJax" in f for f in fonts), (deck.name, fonts[:3])
        finally:
            page.close()
        assert blocked == [], f"{deck.name}: {blocked}"
