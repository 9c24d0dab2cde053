"""Course kit: what ``koopman-tut course OUTDIR`` writes for an instructor to hand out.

Into a new or empty OUTDIR (``--force``: one whose course folders it replaces, leaving no
stale file, but in ``nbgrader/`` only ``source/`` and ``nbgrader_config.py``: the gradebook, the
collected submissions and what nbgrader made of them stay), every file atomically with the mode
the umask gives:

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

import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .cells import (CHECK_TAG, EXERCISE_TAG, REVEAL_TAG, SOLUTION_TAGS, has_tag, is_exercise,  # noqa: F401
                    is_solution, strip_solution_details)
from .copies import (NBGRADER_CONFIG, YOUR_PREDICTION, _nb_text, instructor_copy, nbgrader_copy,  # noqa: F401
                     student_copy)
from .files import write_atomic
from .handout import build_wheel, launch_links, project_root, student_readme  # noqa: F401
from .site import WIDGET_NOTE, WIDGET_VIEW, build_site, first_paragraph, notebook_title, unlink_absent  # noqa: F401

COURSE_FOLDERS = ("student", "instructor", "site", "slides", "nbgrader")  # all that build_course writes in its folder
NBGRADER_BUILT = ("source", "nbgrader_config.py")  # what it writes in nbgrader/: the rest is nbgrader's and the instructor's


def check_student_repo(student_repo: str | None) -> None:
    """Check ``student_repo`` ("owner/name" or "owner/name@branch", or None) before anything in
    the course folder is touched.

    Raises
    ------
    TypeError
        ``student_repo`` is neither a str nor None.
    ValueError
        ``student_repo`` is malformed.
    """
    if student_repo is not None and not isinstance(student_repo, str):
        raise TypeError(f"student_repo must be a str 'owner/name[@branch]' or None, got {type(student_repo).__name__}")
    if student_repo is not None:  # '' too: an empty --student-repo is a mistake, not "no links"
        launch_links(student_repo, "x.ipynb")


def prepare_folder(out_dir: Path, force: bool = False) -> list[Path]:
    """Make ``out_dir`` ready for :func:`build_course`: new or empty, or (``force``) emptied of
    the course folders an earlier build wrote (:func:`remove_course_folders`; returns what it kept
    in ``nbgrader/``).

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
    kept = remove_course_folders(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return kept


def remove_course_folders(out_dir: Path, remove_empty: bool = False) -> list[Path]:
    """Remove the course folders (:data:`COURSE_FOLDERS`) a build writes in ``out_dir``, and with
    ``remove_empty`` ``out_dir`` itself if nothing else is left in it. In ``nbgrader/`` only what a build
    writes (:data:`NBGRADER_BUILT`) goes: the instructor's gradebook, submissions, releases and feedback
    stay. Returns what was kept there."""
    out_dir = Path(out_dir)
    kept = []
    for name in COURSE_FOLDERS:
        old = out_dir / name
        if name == "nbgrader" and old.is_dir() and not old.is_symlink():
            for part in NBGRADER_BUILT:
                _remove(old / part)
            kept = sorted(old.iterdir())
            if kept:
                continue
        _remove(old)
    if remove_empty and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    return kept


def _remove(path: Path) -> None:
    """Remove a file or link (never what it points to), or a folder with everything in it."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


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

def build_course(notebooks: list[Path], out_dir: Path, execute: bool = True, log=print,
                 force: bool = False, pages: list[Path] | None = None, wheel: bool = True,
                 student_repo: str | None = None) -> CourseResult:
    """Write ``student/``, ``instructor/``, ``site/student/``, ``site/instructor/``,
    ``slides/`` and ``nbgrader/`` into ``out_dir`` for ``notebooks``.

    Parameters
    ----------
    notebooks, out_dir : list of Path, Path
        Source notebooks, in order; the course folder.
    execute : bool
        Execute the instructor copies with papermill; if False copy them as committed.
    log : callable
        Progress messages.
    force : bool
        Write into a non-empty ``out_dir``, replacing what an earlier build wrote there
        (:func:`prepare_folder`, which raises otherwise).
    pages : list of Path, optional
        Extra pages of the instructor's site; default: ``docs/instructor.md`` of the source tree.
    wheel : bool
        Build a wheel of the package into ``student/`` (needs the source tree).
    student_repo : str, optional
        "owner/name[@branch]" of the repository ``student/`` will be published as (its top level; the
        rest of the course folder holds the solutions and stays private): Binder/Colab links.

    Returns
    -------
    CourseResult
        A notebook that fails to run is reported in ``failed``; the others are still written.
    """
    out_dir = Path(out_dir)
    check_student_repo(student_repo)  # a malformed repo fails before any work
    kept = prepare_folder(out_dir, force)
    if kept:
        log(f"kept in {out_dir / 'nbgrader'}: {', '.join(p.name for p in kept)} (nbgrader's and the instructor's)")
    root = project_root(notebooks)
    if pages is None:
        pages = [p for p in ([root / "docs" / "instructor.md"] if root else []) if p.is_file()]
    result = CourseResult()
    with tempfile.TemporaryDirectory(prefix="koopman-tut-course-") as tmp:
        (site_src := Path(tmp) / "student-site").mkdir()
        present = {Path(src).name for src in notebooks}  # links to the others become text (--only)
        student_site = [p for src in notebooks
                        if (p := _copies(Path(src), out_dir, site_src, execute, log, result, present)) is not None]
        if result.nbgrader:
            write_atomic(out_dir / "nbgrader" / "nbgrader_config.py", NBGRADER_CONFIG)
        if wheel and root is not None:
            log("building the package's wheel for students")
            result.wheel = build_wheel(root, out_dir / "student")
        _student_files(out_dir / "student", result, student_repo)
        if result.instructor:
            result.site["student"] = build_site(student_site, out_dir / "site" / "student", "student", log=log)
            result.site["instructor"] = build_site(result.instructor, out_dir / "site" / "instructor", "instructor",
                                                   pages=pages, log=log)
            log("writing the slides")
            from .slides import build_slides

            result.slides = build_slides(result.instructor, out_dir / "slides")
    _report(result, out_dir, log)
    return result


def _student_files(student: Path, result: CourseResult, student_repo: str | None) -> None:
    """student/README.md, and the requirements.txt Binder installs the wheel from when student/ is
    published as a repository of its own."""
    titles = [(p.name, notebook_title(nbformat.read(str(p), as_version=4), p.stem)) for p in result.student]
    write_atomic(student / "README.md", student_readme(titles, result.wheel.name if result.wheel else None, student_repo))
    if result.wheel:
        write_atomic(student / "requirements.txt", f"./{result.wheel.name}\n")


def _copies(src: Path, out_dir: Path, site_src: Path, execute: bool, log, result: CourseResult,
            present: set[str]) -> Path | None:
    """The instructor, student and nbgrader copies of one notebook, and its student-site copy
    (in ``site_src``, returned); None, with the error in ``result.failed``, if it fails to run. Their links to
    tutorial notebooks not in ``present`` (file names: a course built with ``--only``) are made plain text."""
    log(f"{src.stem}: {'executing' if execute else 'copying'} instructor copy")
    try:
        inst = instructor_copy(src, out_dir / "instructor" / src.name, execute=execute)
    except Exception as e:  # noqa: BLE001 - reported, the other notebooks go on
        from .runner import describe

        result.failed[src.stem] = describe(e)
        log(f"{src.stem}: FAILED: {result.failed[src.stem]}")
        return None
    result.instructor.append(inst)
    nb = nbformat.read(str(inst), as_version=4)
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    if any(c.source != unlink_absent(c.source, present) for c in markdown):
        for c in markdown:
            c.source = unlink_absent(c.source, present)
        write_atomic(inst, _nb_text(nb))
    result.student.append(write_atomic(out_dir / "student" / src.name, _nb_text(student_copy(nb))))
    result.nbgrader.append(write_atomic(out_dir / "nbgrader" / "source" / src.stem / src.name,
                                        _nb_text(nbgrader_copy(nb))))
    nbformat.write(student_copy(nb, clear_reveals=False), str(site_src / src.name))
    return site_src / src.name


def _report(result: CourseResult, out_dir: Path, log) -> None:
    log(f"student copies:    {out_dir / 'student'} ({len(result.student)} notebooks, README"
        f"{', ' + result.wheel.name if result.wheel else ''})")
    log(f"instructor copies: {out_dir / 'instructor'} ({len(result.instructor)})")
    for flavour, index in result.site.items():
        log(f"{flavour} site:".ljust(19) + f"{index}")
    log(f"slides:            {out_dir / 'slides'} ({len(result.slides)} decks)")
    log(f"nbgrader:          {out_dir / 'nbgrader'} ({len(result.nbgrader)} assignments in source/)")
    for name, error in result.failed.items():
        print(f"{name} failed: {error}", file=sys.stderr)
