"""The course's two offline websites, built by Sphinx with MyST-NB and the book theme.

:func:`build_site` turns notebooks into a static site with a sidebar table of contents,
previous/next links, full-text search, numbered figures with captions and alt text
(``mystnb`` cell metadata), admonitions for exercises and "Predict first" prompts, a dark
mode and a print style that wraps long code lines. Two flavours come from one source:

* ``student``: the student copies (no solutions); each "Predict first" reveal has its output
  folded behind a button, after a "Your prediction" box;
* ``instructor``: everything, each solution in a dropdown, plus the instructor's page.

Nothing is fetched from another host: the notebooks are not executed (the committed or
papermill-executed outputs are shown), MathJax 2 comes from the ``jupyter-server-mathjax``
package into ``_static/mathjax``, and widget views (which need a kernel) become a note.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from .files import copy_files
from .site_pages import (FLAVOURS, WIDGET_NOTE, WIDGET_VIEW, YOUR_PREDICTION, display_math_paragraphs,  # noqa: F401
                         first_paragraph, notebook_title, site_notebook)

BUILD_TIMEOUT_S = 900  # one Sphinx build of eight executed notebooks takes well under a minute


PRINT_AND_DARK_CSS = """\
/* koopman_tut: printed pages wrap long code lines instead of cutting them at the margin */
@media print {
  pre, div.highlight pre, div.cell_output pre { white-space: pre-wrap !important; word-break: break-word;
                                                overflow: visible !important; max-height: none !important; }
  .bd-sidebar-primary, .bd-sidebar-secondary, .bd-header, .prev-next-area, .header-article { display: none !important; }
  details { display: block; } details > summary { display: none; }
  details:not([open]) > *:not(summary) { display: block !important; }
}
/* figures are drawn on white: keep them readable in dark mode */
html[data-theme="dark"] div.cell_output img { background: #ffffff; padding: 4px; border-radius: 4px; }
.kt-widget-note { font-style: italic; opacity: .75; }
/* MathJax's hidden MathML for screen readers asks for TeX web fonts jupyter-server-mathjax omits */
.MJX_Assistive_MathML, .MJX_Assistive_MathML * { font-family: serif !important; }
"""

CONF_PY = """\
# Sphinx configuration written by koopman_tut.tooling.site (the {flavour} site)
project = {title!r}
author = "koopman_tut contributors"
copyright = "koopman_tut contributors; text CC BY 4.0, code MIT"
extensions = ["myst_nb", "sphinx_design"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
master_doc = "index"
nb_execution_mode = "off"          # the notebooks come executed; nothing runs while building
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
numfig = True
numfig_format = {{"figure": "Figure %s"}}
html_theme = "sphinx_book_theme"
html_title = {title!r}
html_static_path = ["_static"]
html_css_files = ["koopman_tut.css"]
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {{
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
    "announcement": {announcement!r},
}}
# MathJax 2 from this site's own _static folder (offline), typeset as in JupyterLab
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
mathjax2_config = {{
    "TeX": {{"equationNumbers": {{"autoNumber": "AMS", "useLabelIds": True}}}},
    # MyST-NB marks notebook pages tex2jax_ignore (their math is already parsed): process only
    # Sphinx's math elements and the notebook outputs, as MyST-NB asks of MathJax 3
    "tex2jax": {{"inlineMath": [["\\\\(", "\\\\)"]], "displayMath": [["\\\\[", "\\\\]"]],
                "processEscapes": True, "processEnvironments": True,
                "processClass": "tex2jax_process|mathjax_process|math|output_area"}},
    "HTML-CSS": {{"availableFonts": [], "webFont": "STIX-Web", "imageFont": None, "preferredFont": None,
                  "linebreaks": {{"automatic": True}}}},
    "messageStyle": "none", "showMathMenu": False,
    # HTML-CSS with the STIX fonts shipped here, also where the browser renders MathML itself (the
    # NativeMML output would ask for MathJax's TeX web fonts, which jupyter-server-mathjax omits)
    "MMLorHTML": {{"prefer": {{"MSIE": "HTML", "Firefox": "HTML", "Safari": "HTML", "Chrome": "HTML",
                               "Opera": "HTML", "other": "HTML"}}}},
}}
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
{setup}"""
SEARCH_SETUP = {  # the student site's search index leaves out what the pages fold (site_pages.fold_out_of_search)
    "student": "from koopman_tut.tooling.site_pages import search_setup as setup  # noqa: E402\n",
    "instructor": ""}

ANNOUNCEMENT = {
    "student": "Student edition: exercises without solutions. Run the notebooks in JupyterLab to check your answers.",
    "instructor": "Instructor edition: every solution is in a dropdown. Do not hand this site to students.",
}

def mathjax_source() -> Path:
    """The folder of MathJax 2 files shipped by the ``jupyter-server-mathjax`` package."""
    try:
        import jupyter_server_mathjax
    except ImportError as e:
        raise RuntimeError("the course site needs MathJax from the jupyter-server-mathjax package: "
                           "pip install jupyter-server-mathjax") from e
    static = Path(jupyter_server_mathjax.__file__).resolve().parent / "static"
    if not (static / "MathJax.js").is_file():
        raise RuntimeError(f"no MathJax.js in {static}")
    return static


def index_page(entries: list[tuple[str, str, str]], flavour: str, pages: list[str]) -> str:
    """The site's home page (MyST): each notebook's title as a link and its summary (its lists kept),
    a hidden table of contents (the sidebar), and the extra ``pages`` (instructor's page)."""
    intro = {
        "student": ("This is the **student edition**: every exercise is there, no solution is. Work through the "
                    "notebooks in JupyterLab (see the README of your course folder for how to install the "
                    "package); each exercise ends in a cell that checks your `answer` and says *right* or "
                    "*not yet*, with a hint."),
        "instructor": ("This is the **instructor edition**: every solution is in a dropdown"
                       + (", and the [instructor's guide](instructor.md) has the syllabus and notes for each "
                          "notebook" if "instructor" in pages else "")
                       + ". Hand students the student edition, never this one."),
    }[flavour]
    indent = lambda text: "\n".join("   " + ln if ln.strip() else "" for ln in text.splitlines())  # noqa: E731
    items = "\n\n".join(f"{i}. [{title}]({href})\n\n{indent(para)}" for i, (href, title, para) in enumerate(entries, 1))
    toc = "\n".join([*(Path(h).stem for h, _, _ in entries), *pages])
    return (f"# Koopman-operator pruning of neural networks\n\n{intro}\n\n## The notebooks\n\n{items}\n\n"
            f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\n```\n")


def build_site(notebooks: list[Path], site_dir: Path, flavour: str, pages: list[Path] = (),
               timeout: float = BUILD_TIMEOUT_S, log=print) -> Path:
    """Build the ``flavour`` site of ``notebooks`` into ``site_dir`` (replaced as a whole).

    Parameters
    ----------
    notebooks : list of Path
        Executed notebooks in order: instructor copies, or student copies for ``"student"``
        (see :func:`site_notebook`).
    site_dir : Path
        Output folder; it appears only when the build succeeded (built beside it, renamed).
    flavour : {"student", "instructor"}
    pages : list of Path
        Extra MyST pages (the instructor's guide), added to the table of contents.
    timeout : float
        Seconds the Sphinx build may take before it is stopped with ``TimeoutError``.
    log : callable
        Progress messages.

    Returns
    -------
    Path
        ``site_dir / "index.html"``.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    site_dir = Path(site_dir)
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{site_dir.name}-build-", dir=site_dir.parent))
    try:
        src, html_dir = work / "src", work / "html"
        _write_source(src, notebooks, flavour, pages)
        log(f"building the {flavour} site with Sphinx (MyST-NB, book theme)")
        _sphinx(src, html_dir, flavour, timeout, log)
        for junk in (".buildinfo", ".doctrees"):
            p = html_dir / junk
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        if site_dir.exists():
            shutil.rmtree(site_dir)
        html_dir.rename(site_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return site_dir / "index.html"


def _write_source(src: Path, notebooks: list[Path], flavour: str, pages: list[Path]) -> None:
    """The Sphinx source folder: prepared notebooks, extra pages, conf.py, index.md, CSS, MathJax."""
    src.mkdir()
    entries, present = [], {Path(p).name for p in notebooks}
    for path in map(Path, notebooks):
        nb = nbformat.read(str(path), as_version=4)
        page = site_notebook(nb, flavour)
        for cell in page.cells:
            if cell.cell_type == "markdown":
                cell.source = unlink_absent(cell.source, present)
        nbformat.write(page, str(src / path.name))
        entries.append((path.name, notebook_title(nb, path.stem), unlink_absent(first_paragraph(nb), present)))
    for page in pages:  # markdown: its links to notebooks left out become text, as on the notebook pages
        (src / Path(page).name).write_text(unlink_absent(Path(page).read_text(encoding="utf-8"), present),
                                           encoding="utf-8")
    title = "Koopman pruning: " + ("student edition" if flavour == "student" else "instructor edition")
    (src / "conf.py").write_text(CONF_PY.format(flavour=flavour, title=title, announcement=ANNOUNCEMENT[flavour],
                                                  setup=SEARCH_SETUP[flavour]))
    (src / "index.md").write_text(index_page(entries, flavour, [Path(p).stem for p in pages]))
    (src / "_static").mkdir()
    (src / "_static" / "koopman_tut.css").write_text(PRINT_AND_DARK_CSS)
    copy_files(mathjax_source(), src / "_static" / "mathjax")


_NOTEBOOK_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./notebooks/)?(\d\d_[A-Za-z0-9_]+\.ipynb)(#[^)\s]*)?\)")


def unlink_absent(markdown: str, present: set[str]) -> str:
    """``markdown`` with each link to a tutorial notebook that is not in ``present`` (file names) made
    plain text: a site built from some of the notebooks (``--only``) has no page to link to. A link
    written from docs/ (``../notebooks/NN_name.ipynb``, which resolves in the repository) points to
    the notebook's page beside it on the site."""
    return _NOTEBOOK_LINK.sub(lambda m: f"[{m.group(1)}]({m.group(2)}{m.group(3) or ''})" if m.group(2) in present
                              else m.group(1), markdown)


def _sphinx(src: Path, html_dir: Path, flavour: str, timeout: float, log) -> None:
    """sphinx-build (html) in a subprocess, stopped after ``timeout`` s; its warnings are logged."""
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "1", str(src), str(html_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"the Sphinx build of the {flavour} site took over {timeout:.0f} s and was stopped") from e
    if proc.returncode != 0:
        raise RuntimeError(f"the Sphinx build of the {flavour} site failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    for line in proc.stderr.splitlines():
        if "WARNING" in line:
            log(f"  sphinx: {line}")
