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
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PRESETS: dict[str, dict] = {
    "smoke": {"SMOKE": True},
    "default": {},
    # paper scale: MNIST + MnistNet (download needed; a GPU helps). CIFAR-10 + ResNet-20:
    # add -p DATASET cifar10 -p MODEL resnet20 (a GPU is needed to finish in hours, not days).
    "paper": {"DATASET": "mnist", "MODEL": "mnistnet", "DOWNLOAD": True, "EPOCHS": 20, "LR": 0.01,
              "BATCH_SIZE": 128, "WINDOW": 200, "SEEDS": [0, 1, 2]},
}
NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")  # no .failed, hidden or -checkpoint copies
TMP_TAG = ".kt-tmp-"  # temporaries are .<stem>.kt-tmp-XXXXXXXX.ipynb beside the destination
USAGE_ERROR = 2


@dataclass
class Result:
    """One notebook's line in the summary; ``output`` is None when there is no file to show."""

    name: str
    status: str  # "ok", "done" (resumed), "FAILED" or "interrupted"
    seconds: float
    output: Path | None
    error: str = ""


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


def new_file_mode() -> int:
    """0o666 less the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def remove_stale_temporaries(folder: Path, stem: str) -> None:
    """Delete ``stem``'s temporaries left in ``folder`` by a killed run (only this CLI's own names)."""
    for tmp in folder.glob(f".{stem}{TMP_TAG}*.ipynb"):  # tutorial stems have no glob characters
        tmp.unlink(missing_ok=True)


def kernel_options() -> dict:
    """papermill options that stop ipykernel's "Kernel is running over TCP without encryption".

    The kernel process logs that warning (ipykernel/kernelapp.py, init_sockets) to the terminal
    once per notebook unless it gets CurveZMQ keys; jupyter_client >= 8.10 provisions them for
    kernelspecs that declare support (``transport_encryption="auto"``), so ask for that.
    """
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if not zmq.has("curve") or "transport_encryption" not in KernelManager.class_trait_names():
        return {}
    return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}


def keep_failed(tmp: Path, failed: Path) -> None:
    """Move a partial output to ``failed`` (if papermill wrote any), else just remove it."""
    try:
        if tmp.stat().st_size:
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp), str(failed))  # may cross file systems (--in-place)
    except OSError:
        pass
    tmp.unlink(missing_ok=True)


def execute(src: Path, dst: Path, params: dict, failed: Path, mode: int) -> None:
    """Run ``src`` into ``dst`` atomically (mode ``mode``); on error keep the partial output at ``failed``."""
    import papermill as pm

    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dst.parent, dst.stem)
    failed.unlink(missing_ok=True)  # an older failure of this notebook is out of date
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}{TMP_TAG}", suffix=".ipynb")
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, mode)  # mkstemp makes 0600 files
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=params, cwd=str(src.parent), progress_bar=False,
                            kernel_name="python3", **kernel_options())
        os.replace(tmp, dst)  # atomic: a failed or interrupted run never leaves a half notebook
    except BaseException:
        keep_failed(tmp, failed)
        raise


def describe(error: BaseException) -> str:
    """``Type: message``; for a papermill.exceptions.PapermillExecutionError, the notebook's own error."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        return f"{ename}: {evalue}" if evalue else ename
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def already_done(src: Path, dst: Path, params: dict) -> bool:
    """True if ``dst`` is a finished run of ``src`` (newer) with exactly these parameters."""
    import nbformat

    if src == dst or not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
        return False
    try:
        meta = nbformat.read(str(dst), as_version=4).metadata.get("papermill", {})
    except Exception:
        return False
    return meta.get("parameters", {}) == params and meta.get("exception") in (None, False)


def run_one(src: Path, dst: Path, params: dict, failed: Path, mode: int) -> Result:
    """Execute one notebook: "ok", or "FAILED" / "interrupted" (Ctrl-C) with the partial output if any."""
    t0 = time.perf_counter()
    try:
        execute(src, dst, params, failed, mode)
        return Result(src.stem, "ok", time.perf_counter() - t0, dst)
    except (Exception, KeyboardInterrupt) as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "FAILED"
        return Result(src.stem, status, time.perf_counter() - t0, failed if failed.is_file() else None,
                      describe(e))


def print_summary(results: list[Result], total: int) -> None:
    """The table of results, then each failure's error and partial output, in full."""
    w = max([len(r.name) for r in results] + [8])
    print(f"\n{'notebook':{w}s}  {'status':11s} {'time':>8s}  output")
    for r in results:
        print(f"{r.name:{w}s}  {r.status:11s} {r.seconds:7.1f}s  {r.output or '-'}")
    for r in results:
        if r.status == "FAILED":
            print(f"\n{r.name} failed: " + r.error.replace("\n", "\n    "))
            if r.output:
                print(f"  partial output: {r.output}")
    done = sum(r.status in ("ok", "done") for r in results)
    print(f"{done}/{total} notebooks done; total {sum(r.seconds for r in results):.1f}s")


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
