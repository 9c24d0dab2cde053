"""Lecture slides: one reveal.js deck per notebook, offline, from the cells marked for slides.

A notebook cell joins the deck by its ``slideshow`` metadata (JupyterLab's property
inspector sets it; RISE and nbconvert read it). A cell without it gets one by a fixed rule:
a markdown heading opens a new slide, a "Predict first" prompt or an exercise prompt a
sub-slide, a figure a sub-slide (output only), the cell that reveals a prediction a
fragment; everything else is skipped, and solutions and check cells never appear.
nbconvert's ``SlidesExporter`` renders the deck; reveal.js 4 (MIT, ``static/reveal.js``) and
MathJax 2 are loaded from the ``slides/`` folder itself, so a deck works without a network.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .cells import CHECK_TAG, PREDICT_TAG, REVEAL_TAG, has_tag, is_exercise, is_solution, strip_solution_details
from .files import copy_files, write_atomic
from .site import WIDGET_VIEW, mathjax_source

REVEAL_DIR = Path(__file__).resolve().parent / "static" / "reveal.js"
_HEADING = re.compile(r"^\s{0,3}#{1,3}\s", re.MULTILINE)

# nbconvert's reveal template with plain <script> tags instead of require.js and jQuery (CDN)
_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_jquery -%}{%- endblock html_head_js_jquery -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}
<script>  /* MathJax's configuration, read when MathJax.js loads: HTML-CSS output everywhere with the STIX
  web fonts shipped beside the decks (NativeMML, or HTML-CSS's default TeX fonts, would ask for font files
  that jupyter-server-mathjax omits), as on the sites */
window.MathJax = {MMLorHTML: {prefer: {MSIE: "HTML", Firefox: "HTML", Safari: "HTML", Chrome: "HTML", Opera: "HTML",
  other: "HTML"}}, "HTML-CSS": {availableFonts: [], webFont: "STIX-Web", imageFont: null, preferredFont: null}};
</script>
{{ super() }}
{%- endblock html_head_js_mathjax -%}
{% block data_png scoped %}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
     alt="{{ cell.metadata.get('mystnb', {}).get('image', {}).get('alt', 'figure') | escape_html }}">
</div>
{%- endblock data_png %}
{% block footer_js %}
<style>.reveal h1, .reveal h2, .reveal h3 { text-transform: none; } .reveal .jp-InputArea-prompt,
.reveal .jp-OutputArea-prompt { display: none; } .reveal img { max-height: 520px; }
.MJX_Assistive_MathML, .MJX_Assistive_MathML * { font-family: serif !important; }</style>
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script>
Reveal.initialize({controls: true, progress: true, history: true, transition: "slide",
                   width: 1100, height: 760, slideNumber: true});
Reveal.on("slidechanged", function () {
  if (window.MathJax && MathJax.Hub) { MathJax.Hub.Queue(["Typeset", MathJax.Hub, Reveal.getCurrentSlide()]); }
});
</script>
{% endblock footer_js %}
"""


def _has_figure(cell: NotebookNode) -> bool:
    return any("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}) for o in cell.get("outputs", []))


def slide_type(cell: NotebookNode) -> str:
    """The reveal.js role of ``cell``: its own ``slideshow.slide_type``, or the rule above."""
    given = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
    if is_solution(cell) or has_tag(cell, CHECK_TAG):
        return "skip"
    if given:
        return given
    if cell.cell_type == "markdown":
        if _HEADING.match(cell.source):
            return "slide"
        if has_tag(cell, PREDICT_TAG) or is_exercise(cell):
            return "subslide"
        return "skip"
    if has_tag(cell, REVEAL_TAG):
        return "fragment"
    return "subslide" if _has_figure(cell) else "skip"


def slides_notebook(nb: NotebookNode) -> NotebookNode:
    """A copy of ``nb`` with a ``slideshow`` role on every cell; figure cells show only their
    output, widget views are dropped, and solutions (cells and ``<details>`` blocks) and check
    cells are left out."""
    out = copy.deepcopy(nb)
    out.metadata.pop("widgets", None)
    cells = []
    for cell in out.cells:
        kind = slide_type(cell)
        if kind == "skip":
            continue
        cell.metadata["slideshow"] = {"slide_type": kind}
        if cell.cell_type == "markdown":
            cell.source = strip_solution_details(cell.source)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
            if _has_figure(cell) or not has_tag(cell, REVEAL_TAG):
                cell.metadata.setdefault("tags", []).append("kt-output-only")
        cells.append(cell)
    out.cells = cells
    return out


def exporter():
    """nbconvert's SlidesExporter with the offline template and local reveal.js / MathJax."""
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    c = Config()
    c.TagRemovePreprocessor.remove_input_tags = {"kt-output-only"}
    c.TagRemovePreprocessor.enabled = True
    return SlidesExporter(config=c, template_file="kt_slides.html.j2",
                          extra_loaders=[DictLoader({"kt_slides.html.j2": _TEMPLATE})],
                          reveal_url_prefix="reveal.js", reveal_theme="white", mathjax_url="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe",
                          require_js_url="", jquery_url="", embed_images=True)


def build_slides(notebooks: list[Path], slides_dir: Path) -> list[Path]:
    """Write ``slides_dir/NN_name.slides.html`` for each notebook, with ``reveal.js/`` and
    ``mathjax/`` beside them (copied once), so the decks open from the file system.

    Parameters
    ----------
    notebooks : list of Path
        Executed notebooks (instructor copies: solutions are left out of the decks anyway).
    slides_dir : Path
        Output folder (created).

    Returns
    -------
    list of Path
        The decks, in order.
    """
    slides_dir = Path(slides_dir)
    copy_files(REVEAL_DIR, slides_dir / "reveal.js")
    copy_files(mathjax_source(), slides_dir / "mathjax")
    ex, decks = exporter(), []
    for path in notebooks:
        nb = slides_notebook(nbformat.read(str(path), as_version=4))
        body, _ = ex.from_notebook_node(nb, resources={"metadata": {"name": Path(path).stem}})
        decks.append(write_atomic(slides_dir / f"{Path(path).stem}.slides.html", body))
    return decks
