"""The offline HTML site of the course: one page per notebook and an index.

Rendered with nbconvert's HTMLExporter (lab template) with every script and style that
would come from another host removed; math is typeset by a copy of MathJax from the
``jupyter-server-mathjax`` package in ``site/static/mathjax``; widget views, which need a
kernel, are replaced by a note beside the static output the notebook printed.
"""
from __future__ import annotations

import copy
import html
import os
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .cells import strip_solution_details

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "(interactive widget: run the notebook to use it)"
MATHJAX_DIR = "static/mathjax"  # relative to the site folder
SITE_FLAVOUR_NOTE = ("These pages show the <strong>instructor</strong> version of each notebook: "
                     "executed, with the worked solutions.")

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


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` through a temporary file and a rename, so an
    interrupted write never leaves half a file; the mode is 0o666 less the umask, as ``open`` gives."""
    from .runner import TMP_TAG, new_file_mode

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}{TMP_TAG}", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def copy_files(src: Path, dst: Path) -> None:
    """Copy the tree ``src`` into ``dst`` with new files and folders made as the umask says
    (``shutil.copytree`` would give them the modes of the installed package's files)."""
    for item in sorted(Path(src).rglob("*")):
        target = Path(dst) / item.relative_to(src)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif item.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # a new file: open() applies the umask
            shutil.copyfile(item, target)


def notebook_title(nb: NotebookNode, default: str = "") -> str:
    """The text of the first markdown heading (``# ...``), or ``default``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = _HEADING.match(line)
                if m:
                    return m.group(1)
    return default


def first_paragraph(nb: NotebookNode) -> str:  # noqa: D401
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
    copy_files(mathjax_source(), site_dir / MATHJAX_DIR)
    exporter, pages, entries = html_exporter(), [], []
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        page = site_dir / f"{Path(path).stem}.html"
        write_atomic(page, render_page(nb, Path(path).stem, exporter))
        pages.append(page)
        entries.append((page.name, notebook_title(nb, Path(path).stem), first_paragraph(nb)))
    index = site_dir / "index.html"
    write_atomic(index, index_page(entries, flavour))
    return [*pages, index]
