"""Course kit: student, instructor and static-site copies of the tutorial notebooks.

``koopman-tut course OUTDIR`` writes, into a new or empty OUTDIR (``--force``: one whose
student/, instructor/ and site/ folders it replaces), every file atomically with the mode the
umask gives:

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
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .cells import EXERCISE_TAG, SOLUTION_TAGS, is_exercise, is_solution, strip_solution_details  # noqa: F401
from .site import WIDGET_NOTE, WIDGET_VIEW, first_paragraph, notebook_title, render_site, write_atomic  # noqa: F401

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


COURSE_FOLDERS = ("student", "instructor", "site")  # all that build_course writes in its folder


def prepare_folder(out_dir: Path, force: bool = False) -> None:
    """Make ``out_dir`` ready for :func:`build_course`: new or empty, or (``force``) emptied of
    the course folders an earlier build wrote.

    Raises
    ------
    NotADirectoryError
        ``out_dir`` is a file.
    FileExistsError
        ``out_dir`` is not empty and ``force`` is False (nothing is touched: a student's work
        in it stays).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"course folder {out_dir} is a file, not a folder: choose another one")
    entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if entries and not force:
        raise FileExistsError(f"course folder {out_dir} is not empty (it holds {', '.join(entries[:3])}"
                              f"{', ...' if len(entries) > 3 else ''}): choose a new or empty folder, or pass --force "
                              f"(build_course(force=True)) to replace its {'/, '.join(COURSE_FOLDERS)}/ folders")
    for name in COURSE_FOLDERS:
        old = out_dir / name
        if old.is_symlink() or old.is_file():
            old.unlink()
        elif old.is_dir():
            shutil.rmtree(old)
    out_dir.mkdir(parents=True, exist_ok=True)


@dataclass
class CourseResult:
    """What :func:`build_course` wrote, and which notebooks failed (name -> error)."""

    student: list[Path] = field(default_factory=list)
    instructor: list[Path] = field(default_factory=list)
    site: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def build_course(notebooks: list[Path], out_dir: Path, execute: bool = True, log=print,
                 force: bool = False) -> CourseResult:
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
    force : bool
        Write into a non-empty ``out_dir``, replacing what an earlier build wrote there
        (:func:`prepare_folder`, which raises otherwise). Every file is written atomically,
        with the mode the umask gives.

    Returns
    -------
    CourseResult
        A notebook whose execution fails is reported in ``failed`` and left out of the
        student copies and the site; the others are still written.
    """
    out_dir = Path(out_dir)
    prepare_folder(out_dir, force)
    result = CourseResult()
    for src in notebooks:
        src = Path(src)
        log(f"{src.stem}: {'executing' if execute else 'copying'} instructor copy")
        try:
            inst = instructor_copy(src, out_dir / "instructor" / src.name, execute=execute)
        except Exception as e:  # noqa: BLE001 - reported, the other notebooks go on
            from .runner import describe

            result.failed[src.stem] = describe(e)
            log(f"{src.stem}: FAILED: {result.failed[src.stem]}")
            continue
        result.instructor.append(inst)
        text = nbformat.writes(student_copy(nbformat.read(str(inst), as_version=4)))
        student = write_atomic(out_dir / "student" / src.name, text if text.endswith("\n") else text + "\n")
        result.student.append(student)
    log("rendering the static site")
    result.site = render_site(result.instructor, out_dir / "site")
    log(f"student copies:    {out_dir / 'student'} ({len(result.student)})")
    log(f"instructor copies: {out_dir / 'instructor'} ({len(result.instructor)})")
    log(f"site:              {out_dir / 'site' / 'index.html'} ({len(result.site) - 1} pages + index)")
    for name, error in result.failed.items():
        print(f"{name} failed: {error}", file=sys.stderr)
    return result
