"""The three copies of a notebook the course hands out: student, instructor and nbgrader source.

* :func:`student_copy`: no solution, nothing that answers before the student does;
* :func:`instructor_copy`: everything, executed with papermill;
* :func:`nbgrader_copy`: an nbgrader source notebook, the solution inside the answer cell.
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .cells import (CHECK_TAG, READING, REVEAL_TAG, answer_cells, answer_prose, exercise_id, has_tag, is_exercise,
                    is_solution, is_verdict, solution_code, split_prose, strip_solution_details)
from .files import write_atomic
from .site_pages import drop_widget_state

YOUR_PREDICTION = ("**Your prediction:** before you run the next cell, write down what you expect "
                   "(a number, a sign, a shape) and why.\n\n*(your prediction here)*")


def _clear(cell: NotebookNode) -> None:
    """No outputs, and nothing in the metadata that describes them (a figure's caption and alt text)."""
    cell.outputs = []
    cell.execution_count = None
    cell.metadata.pop("execution", None)
    cell.metadata.pop("mystnb", None)


def fold_readings(cells: list[NotebookNode]) -> list[NotebookNode]:
    """``cells`` (changed in place) with the prose that answers a "Predict first" prompt
    (:func:`.cells.answer_prose`) folded into a ``<details>`` block titled :data:`.cells.READING`;
    a cell that also starts the next section or prompt is split there, the rest left open."""
    prose, out = answer_prose(cells), []
    for i, cell in enumerate(cells):
        if i in prose:
            text, rest = split_prose(cell.source, prose[i])
            folded = f"<details><summary><b>{READING}</b></summary>\n\n{text}\n\n</details>"
            if rest:
                out.append(nbformat.v4.new_markdown_cell(folded, metadata={"tags": ["reading"]}))
                out[-1].id = f"reading-{i}"  # the same id on every build
                cell.source = rest
            else:
                cell.source = folded
        out.append(cell)
    return out


def student_copy(nb: NotebookNode, clear_reveals: bool = True) -> NotebookNode:
    """The student version of a notebook: no solutions, nothing that answers before the student.

    Parameters
    ----------
    nb : NotebookNode
        A notebook (typically the instructor copy); left unchanged.
    clear_reveals : bool
        Clear the output of each cell tagged ``reveal`` (the answer to a "Predict first"
        prompt) and of the other cells that answer it (:func:`.cells.answer_cells`: the code
        cells after it in its section, and the printed verdicts of the checked claims; their figure
        captions too), fold the prose after it in its section (:func:`fold_readings`), and put a "Your
        prediction:" markdown cell before the reveal. The student website keeps those outputs
        (folded behind a button) and passes False.

    Returns
    -------
    NotebookNode
        A copy without the cells tagged ``solution``, with ``<details>`` solution blocks cut
        from markdown cells (a cell left empty is dropped), and with the outputs and execution
        counts of exercise and check cells cleared. Every other cell keeps its outputs. The source of
        each cell that prints the verdicts of the checked claims (:func:`.cells.is_verdict`) is collapsed.
    """
    out = copy.deepcopy(nb)
    if clear_reveals:
        out.cells = fold_readings(out.cells)
    cells, answers = [], answer_cells(out.cells) if clear_reveals else set()
    for i, cell in enumerate(out.cells):
        if i in answers:
            _clear(cell)
        _collapse_verdict(cell)
        if is_solution(cell):
            continue
        if cell.cell_type == "markdown":
            stripped = strip_solution_details(cell.source)
            if stripped != cell.source:
                if not stripped.strip():
                    continue
                cell.source = stripped
        elif is_exercise(cell) or has_tag(cell, CHECK_TAG):
            _clear(cell)
        elif has_tag(cell, REVEAL_TAG) and clear_reveals:
            _clear(cell)
            cells.append(nbformat.v4.new_markdown_cell(YOUR_PREDICTION, metadata={"tags": ["prediction"]}))
            cells[-1].id = f"prediction-{len(cells)}"  # the same id on every build (nbformat's would be random)
        cells.append(cell)
    out.cells = cells
    drop_widget_state(out)
    relative_paths(out)
    out.metadata.pop("papermill", None)  # the instructor's paths and run, nothing a student needs
    out.metadata["koopman_tut"] = {"copy": "student"}
    return out


def _collapse_verdict(cell: NotebookNode) -> None:
    """In place: a verdict cell's source (:func:`.cells.is_verdict`: its asserts state the predictions' answers)
    collapsed in JupyterLab, and behind a button on the student site; it is run after predicting."""
    if is_verdict(cell):
        cell.metadata.setdefault("jupyter", {})["source_hidden"] = True


def relative_paths(nb: NotebookNode, root: Path = Path(__file__).resolve().parents[2]) -> None:
    """In place: ``root``/ (the clone that ran the notebook) cut from the text outputs, so a warning reads
    ``koopman_tut/pruning/koopman.py:169: ...`` rather than naming the instructor's folders."""
    prefix = str(root) + os.sep
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = "".join(output["text"]).replace(prefix, "")
            data = output.get("data", {})
            if "text/plain" in data:
                data["text/plain"] = "".join(data["text/plain"]).replace(prefix, "")


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
        write_atomic(dst, src.read_bytes())
        return dst
    import papermill as pm

    from .runner import TMP_TAG, kernel_options, new_file_mode

    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}{TMP_TAG}", suffix=".ipynb")
    os.close(fd)
    try:
        pm.execute_notebook(str(src), name, parameters=parameters or {}, cwd=str(src.parent),
                            progress_bar=False, kernel_name=kernel_name, **kernel_options())
        os.chmod(name, new_file_mode())  # mkstemp makes 0600 files
        os.replace(name, dst)
    finally:
        Path(name).unlink(missing_ok=True)
    return dst


def _nb_text(nb: NotebookNode) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


NBGRADER_CONFIG = '''\
# nbgrader configuration written by koopman-tut course: one assignment per notebook in source/.
#   nbgrader generate_assignment 03_kmp_equals_magnitude    # release/: the student version
#   nbgrader autograde 03_kmp_equals_magnitude              # after collecting submissions
# An exercise's answer cell keeps its starting code; nbgrader replaces the solution between the
# BEGIN/END SOLUTION markers with the stub below. Check cells are locked and worth 1 point each:
# under the autograder (NBGRADER_EXECUTION set) a wrong answer raises, which costs the point.
c = get_config()  # noqa: F821
c.CourseDirectory.root = "."
c.ClearSolutions.code_stub = {"python": "answer = ...  # YOUR CODE HERE"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# seconds a cell may run when autograding (nbgrader's default, 30, is less than 05's study takes)
c.Execute.timeout = 1800
'''
CHECK_IMPORT = "from koopman_tut.tooling.checks import check  # the grader's own, whatever a cell above named check\n"


def nbgrader_copy(nb: NotebookNode) -> NotebookNode:
    """The notebook as an nbgrader *source* notebook (``nbgrader generate_assignment`` input).

    Each exercise's answer cell (nbgrader ``solution: true``) becomes its starting code with the
    line ``answer = ...`` replaced by the solution code between ``### BEGIN SOLUTION`` and
    ``### END SOLUTION`` (that line's comment, what ``answer`` should hold, kept above them as
    ``# answer: ...``, since nbgrader's stub replaces the whole region); the separate solution cells are dropped (nbgrader would hand them out);
    check cells stay as locked graded cells, each importing the checker again (an answer that names something
    ``check`` breaks no check). Outputs are cleared (nbgrader releases none); the prose
    that answers a "Predict first" prompt is folded (:func:`fold_readings`).
    """
    out = copy.deepcopy(nb)
    solutions = solution_code(out)
    cells = []
    for cell in fold_readings(out.cells):
        if is_solution(cell):
            continue
        if cell.cell_type == "code":
            _clear(cell)
            eid = exercise_id(cell)
            if is_exercise(cell) and eid in solutions:
                region = "### BEGIN SOLUTION\n" + solutions[eid] + "\n### END SOLUTION"
                lines = cell.source.splitlines()
                at = next((i for i, ln in enumerate(lines) if ln.startswith("answer = ...")), len(lines))
                what = lines[at].partition("#")[2].strip() if at < len(lines) else ""
                hint = [f"# answer: {what}"] if what else []  # the stub nbgrader releases drops that line's comment
                cell.source = "\n".join([*lines[:at], *hint, region, *lines[at + 1:]])
            elif has_tag(cell, CHECK_TAG):
                cell.source = CHECK_IMPORT + cell.source
            _collapse_verdict(cell)
        elif cell.cell_type == "markdown":
            cell.source = strip_solution_details(cell.source)
        cells.append(cell)
    out.cells = cells
    drop_widget_state(out)
    out.metadata.pop("papermill", None)  # the instructor's paths and run: nbgrader would release them
    out.metadata["koopman_tut"] = {"copy": "nbgrader source"}
    return out
