"""Course kit: student, instructor and static-site copies of the tutorial notebooks.

``koopman-tut course OUTDIR`` writes

* ``OUTDIR/instructor/``: the notebooks with everything, executed with papermill (or, with
  ``--no-execute``, the committed executed notebooks as they are);
* ``OUTDIR/student/``: the same notebooks without any solution: cells tagged ``solution``
  are removed, ``<details>`` blocks whose summary mentions "Solution" are cut out of
  markdown, and cells tagged ``exercise`` lose their outputs; all other outputs (figures,
  tables) stay;
* ``OUTDIR/site/``: ``index.html`` and one HTML page per instructor notebook, fully offline:
  figures are embedded, math is typeset by a MathJax copied into ``site/static/mathjax``
  (from the ``jupyter-server-mathjax`` package), and no page loads anything from another host.

Exercise convention: a markdown cell or a code cell (with ``...`` to fill in) tagged
``exercise``; markdown and runnable code cells tagged ``solution`` that show the answer.
"""
from __future__ import annotations

import copy
import html
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

EXERCISE_TAG = "exercise"
SOLUTION_TAGS = frozenset({"solution", "solutions"})
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "(interactive widget: run the notebook to use it)"
MATHJAX_DIR = "static/mathjax"  # relative to the site folder
SITE_FLAVOUR_NOTE = ("These pages show the <strong>instructor</strong> version of each notebook: "
                     "executed, with the worked solutions.")

_DETAILS_TAG = re.compile(r"<(/?)details\b[^>]*>", re.IGNORECASE)
_SUMMARY = re.compile(r"\s*<summary\b[^>]*>(.*?)</summary\s*>", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")

# The lab template without anything from a CDN: no require.js, no widget renderer, no mermaid;
# MathJax 2 from the site's own static/ folder, with its STIX web fonts (also shipped).
_OFFLINE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{{ resources.kt_mathjax_head }}
<style type="text/css">.kt-widget-note { color: var(--jp-ui-font-color2, #666); font-style: italic; }</style>
{%- endblock html_head_js_mathjax -%}
"""


def _tags(cell: NotebookNode) -> list[str]:
    return [str(t) for t in cell.get("metadata", {}).get("tags", [])]


def is_solution(cell: NotebookNode) -> bool:
    """True if ``cell`` is tagged ``solution`` (or ``solutions``)."""
    return any(t.lower() in SOLUTION_TAGS for t in _tags(cell))


def is_exercise(cell: NotebookNode) -> bool:
    """True if ``cell`` is tagged ``exercise``."""
    return any(t.lower() == EXERCISE_TAG for t in _tags(cell))


def strip_solution_details(text: str) -> str:
    """Remove every ``<details>`` block whose ``<summary>`` mentions "solution".

    Parameters
    ----------
    text : str
        Markdown source.

    Returns
    -------
    str
        ``text`` without those blocks (nested ones included). Other ``<details>`` blocks,
        e.g. hints, stay. A solution block that is never closed is cut to the end of the
        text, so a malformed cell never leaks its solution.
    """
    spans: list[tuple[int, int]] = []
    stack: list[tuple[int, int]] = []  # (start of <details ...>, end of it)
    for m in _DETAILS_TAG.finditer(text):
        if not m.group(1):
            stack.append((m.start(), m.end()))
        elif stack:
            start, body = stack.pop()
            summary = _SUMMARY.match(text, body)
            if summary and "solution" in summary.group(1).lower():
                spans.append((start, m.end()))
    for start, body in stack:  # unclosed
        summary = _SUMMARY.match(text, body)
        if summary and "solution" in summary.group(1).lower():
            spans.append((start, len(text)))
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:  # inside a block already removed
            continue
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).strip("\n")


def student_copy(nb: NotebookNode) -> NotebookNode:
    """The student version of a notebook: no solutions, exercise outputs cleared.

    Parameters
    ----------
    nb : NotebookNode
        A notebook (typically the instructor copy); left unchanged.

    Returns
    -------
    NotebookNode
        A copy without the cells tagged ``solution``, with ``<details>`` solution blocks cut
        from markdown cells (a cell left empty is dropped), and with the outputs and execution
        counts of code cells tagged ``exercise`` cleared. Every other cell keeps its outputs.
    """
    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        if is_solution(cell):
            continue
        if cell.cell_type == "markdown":
            stripped = strip_solution_details(cell.source)
            if stripped != cell.source:
                if not stripped.strip():
                    continue
                cell.source = stripped
        elif cell.cell_type == "code" and is_exercise(cell):
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    out.cells = cells
    out.metadata["koopman_tut"] = {"copy": "student"}
    return out


def instructor_copy(src: Path, dst: Path, execute: bool = True, parameters: dict | None = None,
                    kernel_name: str = "python3") -> Path:
    """Write the instructor version of ``src`` (everything, solutions included) to ``dst``.

    Parameters
    ----------
    src, dst : Path
        Source notebook and destination file (its folder is created).
    execute : bool
        Run the notebook with ``papermill.execute_notebook`` (in ``src``'s folder); if False,
        copy ``src`` as it is (the committed notebooks are executed).
    parameters : dict, optional
        papermill parameters (only with ``execute``).
    kernel_name : str
        Jupyter kernel to run it with.

    Returns
    -------
    Path
        ``dst``. The file appears atomically: a failed run raises and leaves no ``dst``.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not execute:
        shutil.copyfile(src, dst)
        return dst
    import papermill as pm

    from .cli import kernel_options

    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=".ipynb")
    os.close(fd)
    try:
        pm.execute_notebook(str(src), name, parameters=parameters or {}, cwd=str(src.parent),
                            progress_bar=False, kernel_name=kernel_name, **kernel_options())
        os.replace(name, dst)
    finally:
        Path(name).unlink(missing_ok=True)
    return dst


def notebook_title(nb: NotebookNode, default: str = "") -> str:
    """The text of the first markdown heading (``# ...``), or ``default``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = _HEADING.match(line)
                if m:
                    return m.group(1)
    return default


def first_paragraph(nb: NotebookNode) -> str:
    """The first paragraph of markdown after the title (markdown source).

    A paragraph that is only a bold label (``**What you will learn**``) takes the block
    after it along, so the summary says something.
    """
    blocks: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for block in re.split(r"\n\s*\n", strip_solution_details(cell.source)):
            lines = [ln for ln in block.strip().splitlines() if not _HEADING.match(ln)]
            text = "\n".join(lines).strip()
            if not text:
                continue
            blocks.append(text)
            if not re.fullmatch(r"\*\*[^*]+\*\*:?", text):
                return "\n\n".join(blocks)
    return "\n\n".join(blocks)


def site_notebook(nb: NotebookNode) -> NotebookNode:
    """A copy of ``nb`` for the static site: widget views replaced by a note.

    A widget view output (``application/vnd.jupyter.widget-view+json``) has no offline
    renderer: it is dropped with its text repr, and the note "(interactive widget: run the
    notebook to use it)" takes its place. The cell's other outputs (the text, tables and
    figures the code printed) stay, and the saved widget state is removed from the metadata
    (so the page does not try to load a widget renderer).
    """
    out = copy.deepcopy(nb)
    out.metadata.pop("widgets", None)
    for cell in out.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for o in cell.outputs:
            if WIDGET_VIEW in o.get("data", {}):
                outputs.append(nbformat.v4.new_output(
                    "display_data",
                    data={"text/html": f'<p class="kt-widget-note">{html.escape(WIDGET_NOTE)}</p>',
                          "text/plain": WIDGET_NOTE}))
            else:
                outputs.append(o)
        cell.outputs = outputs
    return out


def mathjax_source() -> Path:
    """The folder of MathJax 2 files shipped by the ``jupyter-server-mathjax`` package."""
    try:
        import jupyter_server_mathjax
    except ImportError as e:  # a test extra: pip install -e ".[test]"
        raise RuntimeError("the course site needs MathJax from the jupyter-server-mathjax package: "
                           "pip install jupyter-server-mathjax (or pip install -e '.[test]')") from e
    static = Path(jupyter_server_mathjax.__file__).resolve().parent / "static"
    if not (static / "MathJax.js").is_file():
        raise RuntimeError(f"no MathJax.js in {static}")
    return static


def mathjax_head(prefix: str = "") -> str:
    """``<script>`` tags that load the site's own MathJax (``prefix`` + static/mathjax/).

    Same typesetting options as nbconvert's stock template ($...$, $$...$$, AMS numbering),
    HTML-CSS output with the STIX web fonts that jupyter-server-mathjax ships.
    """
    return f"""<script type="text/x-mathjax-config">
MathJax.Hub.Config({{
  TeX: {{ equationNumbers: {{ autoNumber: "AMS", useLabelIds: true }} }},
  tex2jax: {{ inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
             processEscapes: true, processEnvironments: true }},
  "HTML-CSS": {{ availableFonts: [], webFont: "STIX-Web", imageFont: null, preferredFont: null,
                linebreaks: {{ automatic: true }} }},
  displayAlign: "center", messageStyle: "none", showMathMenu: false
}});
</script>
<script src="{prefix}{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"></script>"""


def html_exporter():
    """nbconvert's HTMLExporter (lab template) with every CDN reference removed."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="kt_offline.html.j2",
                        extra_loaders=[DictLoader({"kt_offline.html.j2": _OFFLINE_TEMPLATE})],
                        embed_images=True, require_js_url="", jquery_url="", jupyter_widgets_base_url="",
                        mathjax_url=f"{MATHJAX_DIR}/MathJax.js")


def render_page(nb: NotebookNode, name: str, exporter=None) -> str:
    """One notebook as a self-contained offline HTML page (see :func:`site_notebook`)."""
    exporter = exporter or html_exporter()
    body, _ = exporter.from_notebook_node(
        site_notebook(nb), resources={"metadata": {"name": notebook_title(nb, name)},
                                      "kt_mathjax_head": mathjax_head()})
    return body


def _inline_markdown(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    rendered = markdown2html_mistune(text).strip()
    m = re.fullmatch(r"<p>(.*)</p>", rendered, re.DOTALL)
    return m.group(1) if m else rendered


def index_page(entries: list[tuple[str, str, str]], flavour: str = "instructor") -> str:
    """The site's index: the notebooks in order, each with its title and first paragraph.

    Parameters
    ----------
    entries : list of (href, title, first paragraph)
        Titles and paragraphs are markdown (math is typeset by the local MathJax).
    flavour : str
        Which copy the pages show, said at the top of the page.
    """
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    items = "\n".join(
        f'<li><h2><a href="{html.escape(href)}">{_inline_markdown(title)}</a></h2>\n'
        f'<div class="summary">{markdown2html_mistune(para)}</div></li>'
        for href, title, para in entries)
    note = SITE_FLAVOUR_NOTE if flavour == "instructor" else (
        "These pages show the <strong>student</strong> version of each notebook: without solutions.")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Koopman-operator pruning: the tutorial notebooks</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }}
ol.notebooks {{ padding-left: 1.2rem; }} ol.notebooks > li {{ margin-bottom: 1.5rem; }} h2 {{ font-size: 1.2rem; margin-bottom: .3rem; }}
.flavour {{ background: #f3f6fa; border-left: 4px solid #4a7ab5; padding: .5rem 1rem; }}
</style>
{mathjax_head()}
</head>
<body>
<h1>Koopman-operator pruning of neural networks</h1>
<p class="flavour">{note} The notebooks themselves (student and instructor copies) are in the
course folder beside this site; run them in JupyterLab to use the interactive controls.</p>
<ol class="notebooks">
{items}
</ol>
</body>
</html>
"""


def render_site(notebooks: list[Path], site_dir: Path, flavour: str = "instructor") -> list[Path]:
    """Render notebooks into an offline static site.

    Parameters
    ----------
    notebooks : list of Path
        The notebooks, in order (the instructor copies).
    site_dir : Path
        Output folder: gets ``index.html``, one ``NN_name.html`` per notebook and
        ``static/mathjax/`` (a copy of MathJax).
    flavour : str
        Which copy the notebooks are, named on the index page.

    Returns
    -------
    list of Path
        The pages written, index last.
    """
    site_dir = Path(site_dir)
    site_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(mathjax_source(), site_dir / MATHJAX_DIR, dirs_exist_ok=True)
    exporter, pages, entries = html_exporter(), [], []
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        page = site_dir / f"{Path(path).stem}.html"
        page.write_text(render_page(nb, Path(path).stem, exporter), encoding="utf-8")
        pages.append(page)
        entries.append((page.name, notebook_title(nb, Path(path).stem), first_paragraph(nb)))
    index = site_dir / "index.html"
    index.write_text(index_page(entries, flavour), encoding="utf-8")
    return [*pages, index]


@dataclass
class CourseResult:
    """What :func:`build_course` wrote, and which notebooks failed (name -> error)."""

    student: list[Path] = field(default_factory=list)
    instructor: list[Path] = field(default_factory=list)
    site: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def build_course(notebooks: list[Path], out_dir: Path, execute: bool = True, log=print) -> CourseResult:
    """Write ``out_dir/instructor``, ``out_dir/student`` and ``out_dir/site`` for ``notebooks``.

    Parameters
    ----------
    notebooks : list of Path
        Source notebooks, in order.
    out_dir : Path
        Course folder.
    execute : bool
        Execute the instructor copies with papermill; if False copy them as committed.
    log : callable
        Progress messages (``print`` by default).

    Returns
    -------
    CourseResult
        A notebook whose execution fails is reported in ``failed`` and left out of the
        student copies and the site; the others are still written.
    """
    out_dir = Path(out_dir)
    result = CourseResult()
    for src in notebooks:
        src = Path(src)
        log(f"{src.stem}: {'executing' if execute else 'copying'} instructor copy")
        try:
            inst = instructor_copy(src, out_dir / "instructor" / src.name, execute=execute)
        except Exception as e:  # noqa: BLE001 - reported, the other notebooks go on
            from .cli import describe

            result.failed[src.stem] = describe(e)
            log(f"{src.stem}: FAILED: {result.failed[src.stem]}")
            continue
        result.instructor.append(inst)
        student = out_dir / "student" / src.name
        student.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_copy(nbformat.read(str(inst), as_version=4)), str(student))
        result.student.append(student)
    log("rendering the static site")
    result.site = render_site(result.instructor, out_dir / "site")
    log(f"student copies:    {out_dir / 'student'} ({len(result.student)})")
    log(f"instructor copies: {out_dir / 'instructor'} ({len(result.instructor)})")
    log(f"site:              {out_dir / 'site' / 'index.html'} ({len(result.site) - 1} pages + index)")
    for name, error in result.failed.items():
        print(f"{name} failed: {error}", file=sys.stderr)
    return result
