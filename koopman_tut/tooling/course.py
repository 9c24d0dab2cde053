"""Course kit: what ``koopman-tut course OUTDIR`` writes for an instructor to hand out.

Into a new or empty OUTDIR (``--force``: one whose course folders it replaces, leaving no
stale file), every file atomically with the mode the umask gives:

* ``instructor/``: the notebooks with everything, executed with papermill (``--no-execute``:
  the committed executed notebooks as they are);
* ``student/``: the notebooks without any solution (cells tagged ``solution`` removed,
  ``<details>`` solution blocks cut), exercise and check cells without outputs, and each
  "Predict first" reveal cell without its output, after a "Your prediction:" cell; plus a
  README (how to install, how the checks answer, Binder/Colab links) and a wheel of the
  package, so students install it without the repository's executed solutions;
* ``site/student/`` and ``site/instructor/``: the two offline websites (:mod:`.site`);
* ``slides/``: one reveal.js deck per notebook (:mod:`.slides`);
* ``nbgrader/``: an nbgrader course folder (``nbgrader_config.py``, ``source/NN_name/NN_name.ipynb``,
  one assignment per notebook) whose check cells ``nbgrader autograde`` scores.

Cell conventions (exercises, solutions, checks, predictions): :mod:`.cells`.
"""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .cells import (CHECK_TAG, EXERCISE_TAG, REVEAL_TAG, SOLUTION_TAGS, has_tag, is_exercise,  # noqa: F401
                    is_solution, strip_solution_details)
from .files import write_atomic
from .site import WIDGET_NOTE, WIDGET_VIEW, build_site, first_paragraph, notebook_title  # noqa: F401

YOUR_PREDICTION = ("**Your prediction:** before you run the next cell, write down what you expect "
                   "(a number, a sign, a shape) and why.\n\n*(your prediction here)*")
WHEEL_TIMEOUT_S = 600


def _clear(cell: NotebookNode) -> None:
    cell.outputs = []
    cell.execution_count = None
    cell.metadata.pop("execution", None)


def student_copy(nb: NotebookNode, clear_reveals: bool = True) -> NotebookNode:
    """The student version of a notebook: no solutions, nothing that answers before the student.

    Parameters
    ----------
    nb : NotebookNode
        A notebook (typically the instructor copy); left unchanged.
    clear_reveals : bool
        Clear the output of each cell tagged ``reveal`` (the answer to a "Predict first"
        prompt) and put a "Your prediction:" markdown cell before it. The student website
        keeps those outputs (folded behind a button) and passes False.

    Returns
    -------
    NotebookNode
        A copy without the cells tagged ``solution``, with ``<details>`` solution blocks cut
        from markdown cells (a cell left empty is dropped), and with the outputs and execution
        counts of exercise and check cells cleared. Every other cell keeps its outputs.
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
        elif is_exercise(cell) or has_tag(cell, CHECK_TAG):
            _clear(cell)
        elif has_tag(cell, REVEAL_TAG) and clear_reveals:
            _clear(cell)
            cells.append(nbformat.v4.new_markdown_cell(YOUR_PREDICTION, metadata={"tags": ["prediction"]}))
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


COURSE_FOLDERS = ("student", "instructor", "site", "slides", "nbgrader")  # all that build_course writes in its folder


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
    site: dict[str, Path] = field(default_factory=dict)  # flavour -> index.html
    slides: list[Path] = field(default_factory=list)
    nbgrader: list[Path] = field(default_factory=list)  # source notebooks, one assignment each
    wheel: Path | None = None
    failed: dict[str, str] = field(default_factory=dict)


def project_root(notebooks: list[Path]) -> Path | None:
    """The source tree the notebooks come from (the folder above ``notebooks/`` holding a
    ``pyproject.toml``), or None."""
    for p in notebooks[:1]:
        root = Path(p).resolve().parent.parent
        if (root / "pyproject.toml").is_file() and (root / "koopman_tut").is_dir():
            return root
    return None


def build_wheel(root: Path, out_dir: Path, timeout: float = WHEEL_TIMEOUT_S) -> Path:
    """Build a wheel of the package in ``root`` into ``out_dir`` (pip, offline, no dependencies).

    The package files are copied to a temporary folder first, so the source tree gets no
    ``build/`` or ``*.egg-info`` folders; the wheel holds the package only (no notebooks).
    """
    root, out_dir = Path(root), Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="koopman-tut-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root / "koopman_tut", src / "koopman_tut",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        for name in ("pyproject.toml", "README.md", "LICENSE", "LICENSE-text.md"):
            if (root / name).is_file():
                shutil.copyfile(root / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "--quiet", "--wheel-dir", str(Path(tmp) / "dist"), str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(f"building the wheel took over {timeout:.0f} s and was stopped") from e
        wheels = sorted((Path(tmp) / "dist").glob("koopman_tut-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"pip wheel failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return write_atomic(out_dir / wheels[0].name, wheels[0].read_bytes())


def launch_links(repo: str, name: str) -> tuple[str, str]:
    """(Binder, Colab) links that open ``student/<name>`` of the GitHub repository ``repo``
    ("owner/name" or "owner/name@branch", where the instructor publishes the course folder)."""
    slug, _, branch = repo.partition("@")
    if slug.count("/") != 1 or not all(slug.split("/")):
        raise ValueError(f"student_repo must be 'owner/name' or 'owner/name@branch', got {repo!r}")
    branch = branch or "main"
    return (f"https://mybinder.org/v2/gh/{slug}/{branch}?labpath=student%2F{name}",
            f"https://colab.research.google.com/github/{slug}/blob/{branch}/student/{name}")


def student_readme(names: list[tuple[str, str]], wheel: str | None, student_repo: str | None = None) -> str:
    """The README of ``student/``: what is there, how to install and open it, how the checks answer.

    Parameters
    ----------
    names : list of (file name, title)
        The student notebooks in order.
    wheel : str or None
        File name of the package's wheel in ``student/``.
    student_repo : str, optional
        "owner/name[@branch]" of the repository that will host the course folder: adds
        Binder and Colab links to each notebook.
    """
    install = (f"    python -m pip install {wheel}\n" if wheel else
               "    python -m pip install koopman_tut   # ask your instructor for the package\n")
    rows = []
    for name, title in names:
        if student_repo:
            binder, colab = launch_links(student_repo, name)
            rows.append(f"| [{title}]({name}) | [Binder]({binder}) | [Colab]({colab}) |")
        else:
            rows.append(f"| [{title}]({name}) | | |")
    links_note = ("" if student_repo else
                  "\n(The Binder and Colab columns are filled in when your instructor builds the course with "
                  "`koopman-tut course OUTDIR --student-repo owner/name`.)\n")
    return f"""# Koopman-operator pruning: student notebooks

These notebooks teach how Koopman operator theory and Dynamic Mode Decomposition describe the
training of a neural network, and how to prune a network with its Koopman modes
(Redman et al., ICLR 2022). They contain every exercise and no solution.

## Install (once)

You need Python 3.10 or newer. In this folder:

    python -m venv .venv
    source .venv/bin/activate            # Windows: .venv\\Scripts\\activate
{install}
This installs the `koopman_tut` package with PyTorch, JupyterLab and everything the notebooks
use (PyTorch is a large download). Then open the notebooks:

    jupyter lab

## Work through the notebooks in order

| Notebook | Binder | Colab |
|---|---|---|
{chr(10).join(rows)}
{links_note}
On Colab, upload the wheel file and run `!pip install koopman_tut-*.whl` in the first cell.

## Exercises answer back

Each exercise ends in `answer = ...`. Replace the `...` with your answer and run the next
cell: it calls `check(...)` and prints **right**, or **not yet** with what is off and a hint.
It never shows the solution. "Predict first" prompts come before the cell that answers
them: write your prediction in the "Your prediction:" cell, then run the cell after it.

`SMOKE = True` in a notebook's parameters cell runs it at a tiny size in seconds (to check
your setup); the claims are only checked at full size.

Licence: code MIT, text CC BY 4.0.
"""


def build_course(notebooks: list[Path], out_dir: Path, execute: bool = True, log=print,
                 force: bool = False, pages: list[Path] | None = None, wheel: bool = True,
                 student_repo: str | None = None) -> CourseResult:
    """Write ``student/``, ``instructor/``, ``site/student/``, ``site/instructor/`` and
    ``slides/`` into ``out_dir`` for ``notebooks``.

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
        (:func:`prepare_folder`, which raises otherwise).
    pages : list of Path, optional
        Extra pages of the instructor's site; default: ``docs/instructor.md`` of the source tree.
    wheel : bool
        Build a wheel of the package into ``student/`` (needs the source tree).
    student_repo : str, optional
        "owner/name[@branch]" where the course folder will be published (Binder/Colab links).

    Returns
    -------
    CourseResult
        A notebook whose execution fails is reported in ``failed`` and left out of everything
        else; the others are still written.
    """
    out_dir = Path(out_dir)
    if student_repo:
        launch_links(student_repo, "x.ipynb")  # a malformed repo fails before any work
    prepare_folder(out_dir, force)
    root = project_root(notebooks)
    if pages is None:
        pages = [p for p in ([root / "docs" / "instructor.md"] if root else []) if p.is_file()]
    result = CourseResult()
    with tempfile.TemporaryDirectory(prefix="koopman-tut-course-") as tmp:
        site_src = Path(tmp) / "student-site"
        site_src.mkdir()
        student_site = []
        for src in map(Path, notebooks):
            log(f"{src.stem}: {'executing' if execute else 'copying'} instructor copy")
            try:
                inst = instructor_copy(src, out_dir / "instructor" / src.name, execute=execute)
            except Exception as e:  # noqa: BLE001 - reported, the other notebooks go on
                from .runner import describe

                result.failed[src.stem] = describe(e)
                log(f"{src.stem}: FAILED: {result.failed[src.stem]}")
                continue
            result.instructor.append(inst)
            nb = nbformat.read(str(inst), as_version=4)
            result.student.append(write_atomic(out_dir / "student" / src.name, _nb_text(student_copy(nb))))
            nbformat.write(student_copy(nb, clear_reveals=False), str(site_src / src.name))
            result.nbgrader.append(write_atomic(out_dir / "nbgrader" / "source" / src.stem / src.name,
                                                _nb_text(nbgrader_copy(nb))))
            student_site.append(site_src / src.name)
        if result.nbgrader:
            write_atomic(out_dir / "nbgrader" / "nbgrader_config.py", NBGRADER_CONFIG)
        if wheel and root is not None:
            log("building the package's wheel for students")
            result.wheel = build_wheel(root, out_dir / "student")
        titles = [(p.name, notebook_title(nbformat.read(str(p), as_version=4), p.stem)) for p in result.student]
        write_atomic(out_dir / "student" / "README.md",
                     student_readme(titles, result.wheel.name if result.wheel else None, student_repo))
        if result.instructor:
            result.site["student"] = build_site(student_site, out_dir / "site" / "student", "student", log=log)
            result.site["instructor"] = build_site(result.instructor, out_dir / "site" / "instructor", "instructor",
                                                   pages=pages, log=log)
            log("writing the slides")
            from .slides import build_slides

            result.slides = build_slides(result.instructor, out_dir / "slides")
    log(f"student copies:    {out_dir / 'student'} ({len(result.student)} notebooks, README"
        f"{', ' + result.wheel.name if result.wheel else ''})")
    log(f"instructor copies: {out_dir / 'instructor'} ({len(result.instructor)})")
    for flavour, index in result.site.items():
        log(f"{flavour} site:".ljust(19) + f"{index}")
    log(f"slides:            {out_dir / 'slides'} ({len(result.slides)} decks)")
    log(f"nbgrader:          {out_dir / 'nbgrader'} ({len(result.nbgrader)} assignments in source/)")
    for name, error in result.failed.items():
        print(f"{name} failed: {error}", file=sys.stderr)
    return result


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
'''


def nbgrader_copy(nb: NotebookNode) -> NotebookNode:
    """The notebook as an nbgrader *source* notebook (``nbgrader generate_assignment`` input).

    Each exercise's answer cell (nbgrader ``solution: true``) becomes its starting code with the
    line ``answer = ...`` replaced by the solution code between ``### BEGIN SOLUTION`` and
    ``### END SOLUTION``; the separate solution cells are dropped (nbgrader would hand them out);
    check cells stay as locked graded cells. Outputs are cleared (nbgrader releases none).
    """
    from .cells import exercise_id

    out = copy.deepcopy(nb)
    solutions: dict[str, list[str]] = {}
    for cell in out.cells:
        if cell.cell_type == "code" and is_solution(cell):
            solutions.setdefault(exercise_id(cell), []).append(cell.source.rstrip())
    cells = []
    for cell in out.cells:
        if is_solution(cell):
            continue
        if cell.cell_type == "code":
            _clear(cell)
            eid = exercise_id(cell)
            if is_exercise(cell) and eid in solutions:
                region = "### BEGIN SOLUTION\n" + "\n".join(solutions[eid]) + "\n### END SOLUTION"
                lines = cell.source.splitlines()
                at = next((i for i, ln in enumerate(lines) if ln.startswith("answer = ...")), len(lines))
                cell.source = "\n".join([*lines[:at], region, *lines[at + 1:]])
        elif cell.cell_type == "markdown":
            cell.source = strip_solution_details(cell.source)
        cells.append(cell)
    out.cells = cells
    out.metadata["koopman_tut"] = {"copy": "nbgrader source"}
    return out
