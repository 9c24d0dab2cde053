"""A notebook made ready for the course's websites (MyST-NB pages), and what a page is about.

:func:`site_notebook` takes test markers out, turns widget views into a note, puts exercises
and "Predict first" prompts in admonitions and solutions in dropdowns (instructor) or folds each
reveal behind a "Your prediction" box (student), and sets display math off for MyST's parser.
"""
from __future__ import annotations

import copy
import html
import re

import nbformat
from docutils import nodes
from nbformat import NotebookNode

from .cells import (CHECK_TAG, PREDICT_TAG, READING, REVEAL_TAG, answer_cells, answer_prose, exercise_id, has_tag,
                    is_exercise, is_solution, split_prose)

FLAVOURS = ("student", "instructor")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "(interactive widget: run the notebook to use it)"
YOUR_PREDICTION = ("**Your prediction:** write it down (a number, a sign, a shape) before you run the next "
                   "cell or open its output.")
NO_SEARCH = "no-search"  # the class of elements Sphinx leaves out of its search index (from 8.2; see search_setup)
_UNSEARCHED = f":class-container: {NO_SEARCH}"  # a dropdown's option: its text stays out of the search index
_TEST_MARKER = re.compile(r"^#\s*NBVAL_\w+[^\n]*\n?", re.MULTILINE)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


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
    """What a notebook is about, for the site's home page (markdown): the first block of prose
    after the title, without a label that is only bold text (``**What you will learn**``); a
    block that does not end a sentence (it ends in a colon, or in "This notebook" before a list)
    takes the block after it along, so a summary never stops mid-sentence. Lists stay lists."""
    blocks: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or is_solution(cell):
            continue
        for block in re.split(r"\n\s*\n", cell.source):
            text = "\n".join(ln for ln in block.strip().splitlines() if not _HEADING.match(ln)).strip()
            if not text or re.fullmatch(r"\*\*[^*]+\*\*:?", text):
                continue
            blocks.append(text)
            if _LIST_ITEM.match(text.splitlines()[-1]) or re.search(r"[.!?)*_`$]$", text.splitlines()[-1].strip()) \
                    and not text.rstrip().endswith(":"):
                return "\n\n".join(blocks)
    return "\n\n".join(blocks)


_LIST_ITEM = re.compile(r"^\s*(?:[*+-]|\d+[.)])\s")


def display_math_paragraphs(text: str) -> str:
    """Markdown with every ``$$ ... $$`` block that starts a line set off by blank lines.

    JupyterLab renders a display formula that follows a line of text directly; MyST's parser
    (``dollarmath``) reads it only as a paragraph of its own, and otherwise leaves stray ``$``
    and italic text. The blank lines keep a list item's indentation, so a formula inside an
    item stays in it; text after the closing ``$$`` goes on to a new paragraph.
    """
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if not stripped.startswith("$$"):
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: len(lines[i]) - len(stripped)]
        j = i if "$$" in stripped[2:] else next((k for k in range(i + 1, len(lines)) if "$$" in lines[k]), None)
        if j is None:  # never closed: leave it to the parser
            out.extend(lines[i:])
            break
        block = lines[i:j + 1]
        close_line = block[-1]
        at = (len(indent) + 2 + stripped[2:].index("$$") if j == i else close_line.index("$$")) + 2
        block[-1], rest = close_line[:at], close_line[at:].strip()
        if out and out[-1].strip():
            out.append("")
        out.extend(block)
        out.append("")
        if rest:
            out.append(indent + rest)
        i = j + 1
        if i < len(lines) and not lines[i].strip():
            i += 1  # the blank line that was already there
    return "\n".join(out).rstrip("\n") + ("\n" if text.endswith("\n") else "")


def _fenced(kind: str, title: str, body: str, options: str = "") -> str:
    fence = "::::"
    while fence in body:
        fence += ":"
    return f"{fence}{{{kind}}} {title}\n{options}\n{body.strip()}\n{fence}"


def _reading(text: str) -> NotebookNode:
    """The prose that answers a prompt, folded in a dropdown (:data:`.cells.READING`) that search does not index."""
    return nbformat.v4.new_markdown_cell(_fenced("dropdown", READING, display_math_paragraphs(text), _UNSEARCHED))


def _add_tag(cell: NotebookNode, tag: str) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def site_notebook(nb: NotebookNode, flavour: str) -> NotebookNode:
    """A copy of ``nb`` ready for the book: test markers out, widgets as notes, admonitions in.

    Parameters
    ----------
    nb : NotebookNode
        An executed notebook: the instructor copy, or (``flavour="student"``) a student copy
        whose reveal cells kept their outputs.
    flavour : {"student", "instructor"}

    Returns
    -------
    NotebookNode
        ``# NBVAL_...`` lines removed from code; widget views replaced by a note (their saved
        state dropped, so no widget renderer is requested); exercise prompts and "Predict first"
        prompts in admonitions; the collapsed setup cell folded; in the instructor flavour each
        solution's markdown in a dropdown and its code folded; in the student flavour a "Your
        prediction" box before each reveal, whose output is folded, as is the prose after it in its
        section (:func:`.cells.answer_prose`).
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    out = copy.deepcopy(nb)
    drop_widget_state(out)
    cells, answers = [], answer_cells(out.cells) if flavour == "student" else set()
    prose = answer_prose(out.cells) if flavour == "student" else {}
    for i, cell in enumerate(out.cells):
        eid = exercise_id(cell) or ""
        if i in prose:  # the prose that answers a prompt: folded, as the reveal's output
            text, cell.source = split_prose(cell.source, prose[i])
            cells.append(_reading(text))
            if not cell.source:
                continue
        if i in answers and not has_tag(cell, CHECK_TAG):
            _add_tag(cell, "hide-output")  # folded behind a button, as the reveal's
        if cell.cell_type == "code":
            cell.source = _TEST_MARKER.sub("", cell.source)
            if cell.metadata.get("jupyter", {}).get("source_hidden"):
                _add_tag(cell, "hide-input")
            if is_solution(cell):
                _add_tag(cell, "hide-cell")
            if has_tag(cell, REVEAL_TAG) and flavour == "student":
                cells.append(nbformat.v4.new_markdown_cell(_fenced("admonition", "Your prediction", YOUR_PREDICTION,
                                                                   ":class: note")))
                _add_tag(cell, "hide-output")
        elif cell.cell_type == "markdown":
            cell.source = display_math_paragraphs(cell.source)
            if is_solution(cell):
                cell.source = _fenced("dropdown", f"Solution {eid}".strip(), cell.source, ":color: success")
            elif is_exercise(cell):
                cell.source = _fenced("admonition", f"Exercise {eid}".strip(), cell.source, ":class: tip")
            elif has_tag(cell, PREDICT_TAG):
                before, sep, prompt = cell.source.partition("**Predict first")
                box = _fenced("admonition", "Predict first", sep + prompt, ":class: important")
                cell.source = f"{before.rstrip()}\n\n{box}" if before.strip() else box
        if has_tag(cell, CHECK_TAG) and flavour == "student":
            cell.outputs = []
        cells.append(cell)
    out.cells = cells
    return out


def fold_out_of_search(app, doctree: nodes.document) -> None:
    """Sphinx ``doctree-read`` handler of the student site: the outputs it folds (a reveal's, and those
    of the cells after it that show the same answer) stay out of the search index, whose results
    would quote them. (The folded prose is a dropdown of class :data:`NO_SEARCH` already.)"""
    for cell in doctree.findall(nodes.container):
        if cell.get("nb_element") == "cell_code" and cell.get("hide_mode") in ("output", "input+output", "all"):
            for part in cell.children:
                if part.get("nb_element") == "cell_code_output":
                    part["classes"].append(NO_SEARCH)


def search_setup(app) -> None:
    """The student site's Sphinx ``setup``: :func:`fold_out_of_search`, and on a Sphinx older than 8.2
    (the last for Python 3.10 is 8.1), which indexes every element, the skip of :data:`NO_SEARCH` that 8.2 has."""
    import sphinx
    from sphinx.search import WordCollector

    app.connect("doctree-read", fold_out_of_search)
    if sphinx.version_info < (8, 2):
        visit = WordCollector.dispatch_visit

        def dispatch_visit(self, node) -> None:
            if isinstance(node, nodes.Element) and NO_SEARCH in node["classes"]:
                raise nodes.SkipNode
            visit(self, node)

        WordCollector.dispatch_visit = dispatch_visit


def drop_widget_state(nb: NotebookNode) -> None:
    """Drop the saved ipywidgets state (in place): it holds what the widget outputs showed when the
    notebook was executed (a reveal's table among them), which clearing the cells' outputs leaves
    behind. Without it a saved widget view cannot be drawn (JupyterLab: "model not found"), so each
    one becomes :func:`widget_note`."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [widget_note() if WIDGET_VIEW in o.get("data", {}) else o for o in cell.outputs]


def widget_note() -> NotebookNode:
    """The output that stands for a widget view whose state is not kept (a site page, a student copy)."""
    return nbformat.v4.new_output("display_data", data={
        "text/html": f'<p class="kt-widget-note">{html.escape(WIDGET_NOTE)}</p>', "text/plain": WIDGET_NOTE})
