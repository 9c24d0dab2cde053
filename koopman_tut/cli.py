"""``koopman-tut``: run and list the tutorial notebooks with papermill.

    koopman-tut list
    koopman-tut run [--preset smoke|default|paper] [--only NAME ...] [--output-dir outputs]
                    [-p NAME VALUE ...] [--allow-unknown] [--in-place] [--resume]
    koopman-tut course OUTDIR [--no-execute] [--only NAME ...]

``run`` executes each notebook into the output folder (or in place, atomically), with a
progress bar, and ends with a summary table; it exits 1 if any notebook failed, and 2 (before
running anything) for a parameter no selected notebook declares or a DATASET / MODEL that
koopman_tut does not know. A failed notebook's partial output goes to OUTPUT_DIR/failed/
(also with --in-place: notebooks/ only ever holds the tutorial).
``--resume`` skips notebooks whose output is already there, newer than the notebook and
made with the same parameters, so an interrupted long run (the paper preset) goes on
where it stopped.
Presets set only the parameters a notebook declares in its ``parameters`` cell.
``course`` writes OUTDIR/student (no solutions), OUTDIR/instructor (everything, executed) and
OUTDIR/site (offline HTML pages); see koopman_tut.course.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import stat
import sys
from pathlib import Path

from .runner import Result, already_done, new_file_mode, print_summary, record_timings, run_one

PRESETS: dict[str, dict] = {
    "smoke": {"SMOKE": True},
    "default": {},
    # paper scale: MNIST + MnistNet (download needed; a GPU helps). CIFAR-10 + ResNet-20:
    # add -p DATASET cifar10 -p MODEL resnet20 (a GPU is needed to finish in hours, not days).
    "paper": {"DATASET": "mnist", "MODEL": "mnistnet", "DOWNLOAD": True, "EPOCHS": 20, "LR": 0.01,
              "BATCH_SIZE": 128, "WINDOW": 200, "SEEDS": [0, 1, 2]},
}
NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")  # no .failed, hidden or -checkpoint copies
USAGE_ERROR = 2


def notebook_dir() -> Path:
    env = os.environ.get("KOOPMAN_TUT_NOTEBOOKS")
    d = Path(env) if env else Path(__file__).resolve().parents[1] / "notebooks"
    if not d.is_dir():
        raise SystemExit(f"no notebooks folder at {d}: run from a clone of koopman_tut (pip install -e .) "
                         f"or set KOOPMAN_TUT_NOTEBOOKS")
    return d


def notebooks(only: list[str] | None = None) -> list[Path]:
    """Tutorial notebooks in order; ``only`` keeps those whose name starts with or equals an entry."""
    found = sorted(p for p in notebook_dir().iterdir() if NOTEBOOK_NAME.match(p.name) and p.is_file())
    if not only:
        return found
    keep = [p for p in found if any(p.stem == o or p.stem.startswith(o) or p.name == o for o in only)]
    missing = [o for o in only if not any(p.stem == o or p.stem.startswith(o) or p.name == o for p in found)]
    if missing:
        raise SystemExit(f"no notebook matches {missing}; available: {[p.stem for p in found]}")
    return keep


def parse_value(text: str):
    """A -p value: a Python literal (3, 0.1, True, [1, 2], 'x') or else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def valid_choices(names) -> dict[str, list[str]]:
    """Allowed values of the DATASET and MODEL parameters among ``names``.

    Imported lazily from koopman_tut.data and koopman_tut.models (they import torch);
    MODEL ``"auto"`` means the dataset's default model (experiments.setup).
    """
    choices = {}
    if "DATASET" in names:
        from koopman_tut.data import DATASETS

        choices["DATASET"] = list(DATASETS)
    if "MODEL" in names:
        from koopman_tut.models import MODELS

        choices["MODEL"] = ["auto", *MODELS]
    return choices


def check_parameters(declared: dict[Path, dict], params: dict, extra: dict, allow_unknown: bool) -> list[str]:
    """Errors in the requested parameters, found before anything runs.

    Parameters
    ----------
    declared : dict
        Each selected notebook's parameters (papermill.inspect_notebook).
    params, extra : dict
        Preset and -p values together; the -p values alone.
    allow_unknown : bool
        Accept -p names that no selected notebook declares (they are ignored).

    Returns
    -------
    list of str
        One message per error; empty if the run can go ahead.
    """
    known = sorted({name for names in declared.values() for name in names})
    errors = []
    unknown = [k for k in extra if k not in known]
    if unknown and not allow_unknown:
        errors.append(f"unknown parameter {', '.join(unknown)}: the selected notebooks declare only "
                      f"{', '.join(known)} (--allow-unknown ignores it)")
    for name, valid in valid_choices([k for k in params if k in known]).items():
        if params[name] not in valid:
            errors.append(f"{name} {params[name]!r} is not one of {', '.join(valid)}")
    return errors


def parameters_for(path: Path, declared: dict, preset: dict, extra: dict) -> dict:
    """Preset and -p values restricted to the parameters the notebook declares."""
    missing = [k for k in extra if k not in declared]
    if missing:
        print(f"  note: {path.stem} has no parameter {missing}; ignored there", file=sys.stderr)
    return {k: v for k, v in {**preset, **extra}.items() if k in declared}


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

    for p in notebooks(args.only):
        print(f"{p.stem}: {title(p)}")
        for name, info in pm.inspect_notebook(str(p)).items():
            print(f"    {name:14s} = {info['default']:<12s} {info.get('help') or ''}".rstrip())
    return 0


def cmd_run(args) -> int:
    import papermill as pm
    from tqdm.auto import tqdm

    preset = PRESETS[args.preset]
    extra = {k: parse_value(v) for k, v in (args.param or [])}
    paths = notebooks(args.only)
    declared = {p: pm.inspect_notebook(str(p)) for p in paths}
    errors = check_parameters(declared, {**preset, **extra}, extra, args.allow_unknown)
    if errors:
        print("\n".join(f"koopman-tut run: error: {e}" for e in errors), file=sys.stderr)
        return USAGE_ERROR
    out_dir, mode = Path(args.output_dir).resolve(), new_file_mode()
    results = []
    bar = tqdm(paths, desc=f"notebooks ({args.preset})", unit="nb")
    for p in bar:
        bar.set_postfix_str(p.stem)
        dst = p if args.in_place else out_dir / p.name
        params = parameters_for(p, declared[p], preset, extra)
        if args.resume and already_done(p, dst, params):
            results.append(Result(p.stem, "done", 0.0, dst))
            continue
        results.append(run_one(p, dst, params, out_dir / "failed" / p.name,
                               stat.S_IMODE(p.stat().st_mode) if args.in_place else mode))
        if results[-1].status == "interrupted":
            break
    bar.close()
    print_summary(results, len(paths))
    if args.in_place and args.preset == "default" and not extra:
        record_timings(results, notebook_dir())
    return 0 if all(r.status in ("ok", "done") for r in results) and len(results) == len(paths) else 1


def cmd_course(args) -> int:
    """Student, instructor and site copies (koopman_tut.course); 1 if a notebook failed to run."""
    from koopman_tut import course

    out, src = Path(args.outdir).resolve(), notebook_dir().resolve()
    if out == src or src in out.parents:
        print(f"koopman-tut course: error: OUTDIR {out} is inside the tutorial's notebooks/", file=sys.stderr)
        return USAGE_ERROR
    result = course.build_course(notebooks(args.only), out, execute=not args.no_execute)
    return 1 if result.failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="koopman-tut", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser("list", help="show the notebooks with their parameters and defaults")
    pl.add_argument("--only", nargs="+")
    pr = sub.add_parser("run", help="execute the notebooks with papermill")
    pr.add_argument("--preset", choices=sorted(PRESETS), default="default")
    pr.add_argument("--only", nargs="+", metavar="NAME", help="notebooks to run (e.g. 03 or 03_kmp_equals_magnitude)")
    pr.add_argument("--output-dir", default="outputs", help="outputs, and failed/ for partial ones (default outputs)")
    pr.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="set a parameter (a Python literal), e.g. -p SEED 3 -p DATASET mnist")
    pr.add_argument("--allow-unknown", action="store_true", help="ignore -p names no selected notebook declares")
    pr.add_argument("--in-place", action="store_true", help="overwrite notebooks/ (refresh committed outputs)")
    pr.add_argument("--resume", action="store_true", help="skip notebooks already run with the same parameters")
    pc = sub.add_parser("course", help="student / instructor notebooks and an offline HTML site for a course")
    pc.add_argument("outdir", metavar="OUTDIR", help="writes OUTDIR/student, OUTDIR/instructor and OUTDIR/site")
    pc.add_argument("--no-execute", action="store_true",
                    help="copy the committed (executed) notebooks instead of running them with papermill")
    pc.add_argument("--only", nargs="+", metavar="NAME", help="notebooks to include (e.g. 03 or 03_kmp_equals_magnitude)")
    args = p.parse_args(argv)
    return {"list": cmd_list, "run": cmd_run, "course": cmd_course}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
