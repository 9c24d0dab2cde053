"""``koopman-tut``: run and list the tutorial notebooks with papermill.

    koopman-tut list
    koopman-tut run [--preset smoke|default|paper] [--only NAME ...] [--output-dir outputs]
                    [-p NAME VALUE ...] [--allow-unknown] [--in-place] [--resume]
    koopman-tut course OUTDIR [--no-execute] [--only NAME ...] [--force] [--student-repo OWNER/NAME[@BRANCH]]

``run`` executes each notebook into the output folder (or in place, atomically), with a progress bar, and ends with a
summary table; it exits 1 if any notebook failed, and 2 (before running anything) for a parameter no selected notebook
declares, a value that does not fit its parameters cell, a DATASET / MODEL that koopman_tut does not know, a MODEL
that does not take its DATASET's images, or a DEVICE that is not auto, cpu, cuda, cuda:N or mps, or that this machine
does not have (koopman_tut.tooling.run_checks). A failed notebook's partial output goes to OUTPUT_DIR/failed/ (also
with --in-place: notebooks/ only ever holds the tutorial), so an OUTPUT_DIR that is notebooks/ or inside it (or '') is
refused too (exit 2). --in-place refreshes notebooks/ (those of the checkout koopman_tut is installed from, or
$KOOPMAN_TUT_NOTEBOOKS: ``list`` names them), first removing the temporaries a killed --in-place run left there.
``--resume`` skips notebooks whose output is already there, newer than the notebook and made with the same parameters
by the same package code (a digest of its sources), so an interrupted long run goes on where it stopped. Presets set
only the parameters a notebook declares in its ``parameters`` cell, never one given with -p. Every value is checked
against the notebook's parameters cell before any kernel starts (types and ranges: koopman_tut.tooling.nb_params); a
-p that the notebook's ``if SMOKE:`` block would override is refused (exit 2). ``course`` writes OUTDIR/student (no
solutions; a README and the package's wheel), OUTDIR/instructor (everything, executed), OUTDIR/nbgrader (an nbgrader
course folder), OUTDIR/site/student and OUTDIR/site/instructor (offline websites) and OUTDIR/slides (reveal.js decks);
see koopman_tut.tooling.course. It refuses an OUTDIR that is '' or a file, or a non-empty one unless ``--force``
(which replaces those folders, but in nbgrader/ only source/ and the config: grades and submissions stay).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import stat
import sys
from pathlib import Path

from .nb_params import plan, read_parameters
from .run_checks import package_problems
from .study_checks import study_problems
from .runner import (Result, already_done, new_file_mode, print_summary, record_timings,
                     remove_stale_temporaries, run_one)
from .watchdog import limits_for

PRESETS: dict[str, dict] = {
    "smoke": {"SMOKE": True},  # tiny sizes, to check a setup: no claim asserted
    "default": {},  # as committed; paper: MNIST + MnistNet (its files or a download; a GPU helps); CIFAR-10 +
    # ResNet-20: add -p DATASET cifar10 -p MODEL resnet20 (a GPU is needed to finish in hours, not days)
    "paper": {"DATASET": "mnist", "MODEL": "mnistnet", "DOWNLOAD": True, "EPOCHS": 20, "LR": 0.01,
              "BATCH_SIZE": 128, "WINDOW": 200, "SEEDS": 5,  # seeds SEED .. SEED + 4: two groups of 5 can
              "WIDTH_EPOCHS": 1,  # reach p = 2/252 (3 cannot go below 0.1); 07's width runs: the paper's 1 epoch
              "STARTS": [200, 600, 1600]},  # 05's windows, WINDOW apart on one path, before its FINAL_STEPS (2000)
}
NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")  # no .failed, hidden or -checkpoint copies
USAGE_ERROR = 2


def notebook_dir() -> Path:
    env = os.environ.get("KOOPMAN_TUT_NOTEBOOKS")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "notebooks"
    if not d.is_dir():
        raise SystemExit(f"no notebooks folder at {d}: run from a clone of koopman_tut (pip install -e .) "
                         f"or set KOOPMAN_TUT_NOTEBOOKS")
    return d


def inside_notebooks(path) -> bool:
    """Whether ``path`` is the tutorial's notebooks/ folder or a folder inside it (links resolved)."""
    out, src = Path(path).resolve(), notebook_dir().resolve()
    return out == src or src in out.parents


def output_dir_errors(output_dir, in_place: bool) -> list[str]:
    """``run``'s --output-dir must be outside notebooks/: the outputs (or, with --in-place, the
    failed copies) would land among the tutorial's notebooks, the outputs over them. It must be a
    folder (or not exist yet), and a folder above it may not be a file; '' (an unset shell variable) is refused."""
    if not str(output_dir).strip():
        return [f"--output-dir {output_dir!r} is empty: name a folder (default outputs; '.' for the current one)"]
    for above in (Path(output_dir).resolve(), *Path(output_dir).resolve().parents):
        if above.exists() and not above.is_dir():
            return [f"--output-dir {output_dir} must be a folder (or a path to create), but {above} is a file"]
    if not inside_notebooks(output_dir):
        return []
    where = f"--output-dir {Path(output_dir).resolve()} is inside the tutorial's notebooks/ ({notebook_dir()})"
    if in_place:
        return [f"{where}: with --in-place it receives only the failed/ copies, which must stay outside notebooks/"]
    return [f"{where}: the outputs would overwrite the committed notebooks (--in-place is the way to refresh them)"]


def notebooks(only: list[str] | None = None) -> list[Path]:
    """Tutorial notebooks in order; ``only`` keeps those whose name starts with or equals an entry."""
    found = sorted(p for p in notebook_dir().iterdir() if NOTEBOOK_NAME.match(p.name) and p.is_file())
    if not only:
        return found
    keep = [p for p in found if any(o and (p.stem.startswith(o) or p.name == o) for o in only)]
    missing = [o for o in only if not any(o and (p.stem.startswith(o) or p.name == o) for p in found)]  # '' matches none
    if missing:
        raise NoSuchNotebook(f"--only {' '.join(missing)}: no notebook matches {missing}; "
                             f"available: {[p.stem for p in found]}")
    return keep


class NoSuchNotebook(ValueError):
    """An --only name that matches no notebook: a usage error (exit 2)."""


def parse_value(text: str):
    """A -p value: a Python literal (3, 0.1, True, [1, 2], 'x') or else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_parameters(specs: dict, preset: dict, texts: dict[str, str], preset_name: str = "default",
                     allow_unknown: bool = False) -> tuple[dict, list[str]]:
    """Each notebook's parameters and the errors in them, found before any kernel starts.

    Parameters
    ----------
    specs : dict
        Path -> koopman_tut.tooling.nb_params.NotebookParameters of each selected notebook.
    preset, texts : dict
        The preset's values; the -p NAME VALUE pairs as typed.
    preset_name : str
        The preset, named in messages.
    allow_unknown : bool
        Accept -p names that no selected notebook declares (they are ignored).

    Returns
    -------
    (dict, list of str)
        Path -> parameters (what the notebook declares, an explicit -p over the preset); one
        message per error (types and ranges from the parameters cells, see nb_params; DATASET,
        MODEL and DEVICE from the package, see run_checks; a -p that SMOKE would override); empty
        if the run can go ahead.
    """
    known = sorted({name for spec in specs.values() for name in spec.defaults})
    errors = []
    unknown = [k for k in texts if k not in known]
    if unknown and not allow_unknown:
        errors.append(f"unknown parameter {', '.join(unknown)}: the selected notebooks declare only "
                      f"{', '.join(known)} (--allow-unknown ignores it)")
    plans, problems = plan(specs, preset, texts, preset_name)
    # what each notebook whose DATASET, MODEL or DEVICE is set will run with (its own defaults are the
    # tutorial's, and checking them would import torch before a bad -p SEED is refused)
    values = {p: {**specs[p].defaults, **plans[p]} for p in plans if {"DATASET", "MODEL", "DEVICE"} & set(plans[p])}
    together = [] if problems else study_problems({p: {**specs[p].defaults, **plans[p]} for p in plans},
                                                  {p: set(plans[p]) for p in plans})  # each value valid alone
    return plans, errors + problems + together + package_problems(values)


def keep_tuples() -> None:
    """Make papermill inject a tuple parameter as a tuple: its PythonTranslator writes every type
    it does not know, tuples included, as a string ("(2, 4)")."""
    from papermill.translators import PythonTranslator, papermill_translators

    class TupleTranslator(PythonTranslator):
        @classmethod
        def translate(cls, val):
            if isinstance(val, tuple):
                return "(" + ", ".join(cls.translate(v) for v in val) + ("," if len(val) == 1 else "") + ")"
            return super().translate(val)

    papermill_translators.register("python", TupleTranslator)


def title(path: Path) -> str:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def cmd_list(args) -> int:
    import papermill as pm

    print(f"# the notebooks in {notebook_dir()} (what run --in-place rewrites)")
    for p in notebooks(args.only):
        print(f"{p.stem}: {title(p)}")
        for name, info in pm.inspect_notebook(str(p)).items():
            print(f"    {name:14s} = {info['default']:<12s} {info.get('help') or ''}".rstrip())
    return 0


def cmd_run(args) -> int:
    from tqdm.auto import tqdm

    texts = dict(args.param or [])  # -p NAME VALUE as typed; the last one of a name wins
    paths = notebooks(args.only)
    specs = {p: read_parameters(p) for p in paths}
    plans, errors = check_parameters(specs, PRESETS[args.preset], texts, args.preset, args.allow_unknown)
    errors += output_dir_errors(args.output_dir, args.in_place)
    try:
        limits_for({})  # the environment's cell bound, read by every run: refused once, before any kernel
    except ValueError as e:
        errors.append(str(e))
    if errors:
        print("\n".join(f"koopman-tut run: error: {e}" for e in errors), file=sys.stderr)
        return USAGE_ERROR
    for p in paths:
        if missing := [k for k in texts if k not in specs[p].defaults]:
            print(f"  note: {p.stem} has no parameter {missing}; ignored there", file=sys.stderr)
    keep_tuples()
    out_dir, mode = Path(args.output_dir).resolve(), new_file_mode()
    if args.in_place:  # a run killed during --in-place leaves its temporary in notebooks/
        for p in notebooks():
            remove_stale_temporaries(p.parent, p.stem)
    results = []
    bar = tqdm(paths, desc=f"notebooks ({args.preset})", unit="nb")
    for p in bar:
        bar.set_postfix_str(p.stem)
        dst = p if args.in_place else out_dir / p.name
        if args.resume and already_done(p, dst, json.loads(json.dumps(plans[p]))):  # as papermill stores them
            results.append(Result(p.stem, "done", 0.0, dst))
            continue
        results.append(run_one(p, dst, plans[p], out_dir / "failed" / p.name,
                               stat.S_IMODE(p.stat().st_mode) if args.in_place else mode))
        if results[-1].status == "interrupted":
            break
    bar.close()
    print_summary(results, len(paths))
    if args.in_place and args.preset == "default" and not texts:
        record_timings(results, notebook_dir())
    return 0 if all(r.status in ("ok", "done") for r in results) and len(results) == len(paths) else 1


def cmd_course(args) -> int:
    """Student, instructor and site copies (koopman_tut.tooling.course); 1 if a notebook failed to run."""
    from koopman_tut.tooling import course

    out = Path(args.outdir).resolve()  # '' (an unset shell variable) is the current folder: --force would clear it
    if not args.outdir.strip() or inside_notebooks(out):
        what = f"{out} is inside the tutorial's notebooks/" if args.outdir.strip() else f"{args.outdir!r} is empty"
        print(f"koopman-tut course: error: OUTDIR {what}", file=sys.stderr)
        return USAGE_ERROR
    paths, existed = notebooks(args.only), out.exists()
    try:
        course.check_student_repo(args.student_repo)  # every argument checked before OUTDIR is touched
        course.prepare_folder(out, force=args.force)
        result = course.build_course(paths, out, execute=not args.no_execute, force=True,  # prepared just now
                                     student_repo=args.student_repo)
    except KeyboardInterrupt:  # what this build wrote is partial: removed, so a plain rerun can start again
        course.remove_course_folders(out, remove_empty=not existed)
        print(f"koopman-tut course: interrupted; the partial course folders in {out} were removed "
              f"(anything else there is untouched)", file=sys.stderr)
        return 130
    except ValueError as e:  # a malformed --student-repo, named as the flag
        print(f"koopman-tut course: error: {str(e).replace('student_repo', '--student-repo', 1)}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as e:  # OUTDIR is a file or under one, not empty, not writable, the disk is full, ...
        under = "OUTDIR must be a folder, not under a file: " if isinstance(e, NotADirectoryError) else ""
        print(f"koopman-tut course: error: {under}{e}", file=sys.stderr)
        return USAGE_ERROR if isinstance(e, (FileExistsError, NotADirectoryError)) else 1
    return 1 if result.failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="koopman-tut", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser("list", help="show the notebooks with their parameters and defaults")
    pr = sub.add_parser("run", help="execute the notebooks with papermill")
    pr.add_argument("--preset", choices=sorted(PRESETS), default="default",
                    help="smoke: tiny sizes, to check a setup; default: as committed; paper: MNIST sizes (its files)")
    pr.add_argument("--output-dir", default="outputs", help="outputs, and failed/ for partial ones (default outputs)")
    pr.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="set a parameter (a Python literal), e.g. -p SEED 3 -p DATASET mnist")
    pr.add_argument("--allow-unknown", action="store_true", help="ignore -p names no selected notebook declares")
    pr.add_argument("--in-place", action="store_true", help="overwrite the notebooks/ of the checkout koopman_tut is "
                    "installed from (or $KOOPMAN_TUT_NOTEBOOKS), not ./notebooks; `koopman-tut list` names it")
    pr.add_argument("--resume", action="store_true", help="skip notebooks already run with the same parameters and package code")
    pc = sub.add_parser("course", help="student / instructor notebooks, two offline websites and slides for a course")
    pc.add_argument("outdir", metavar="OUTDIR", help="writes OUTDIR/student, OUTDIR/instructor, OUTDIR/nbgrader, "
                    "OUTDIR/site/{student,instructor} and OUTDIR/slides")
    pc.add_argument("--no-execute", action="store_true",
                    help="copy the committed (executed) notebooks instead of running them with papermill")
    pc.add_argument("--force", action="store_true",
                    help="write into a non-empty OUTDIR, replacing its student/, instructor/, site/, slides/, "
                         "nbgrader/source/ (the gradebook and submissions stay)")
    pc.add_argument("--student-repo", metavar="OWNER/NAME[@BRANCH]",
                    help="GitHub repository that OUTDIR/student/ will be published as (that folder alone, at the "
                         "top level: the rest of OUTDIR holds the solutions): Binder and Colab links in student/README.md")
    for sub_parser, verb in ((pl, "list"), (pr, "run"), (pc, "include")):  # a second --only adds to the first
        sub_parser.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                                help=f"notebooks to {verb} (e.g. 03 or 03_kmp_equals_magnitude)")
    args = p.parse_args(argv)
    try:
        return {"list": cmd_list, "run": cmd_run, "course": cmd_course}[args.command](args)
    except NoSuchNotebook as e:
        print(f"koopman-tut {args.command}: error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
