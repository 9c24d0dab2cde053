"""``koopman-tut``: run and list the tutorial notebooks with papermill.

    koopman-tut list
    koopman-tut run [--preset smoke|default|paper] [--only NAME ...] [--output-dir outputs]
                    [-p NAME VALUE ...] [--in-place] [--resume]

``run`` executes each notebook into the output folder (or in place, atomically), with a
progress bar, and ends with a summary table; it exits non-zero if any notebook failed.
``--resume`` skips notebooks whose output is already there, newer than the notebook and
made with the same parameters, so an interrupted long run (the paper preset) goes on
where it stopped.
Presets set only the parameters a notebook declares in its ``parameters`` cell.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
import time
from pathlib import Path

PRESETS: dict[str, dict] = {
    "smoke": {"SMOKE": True},
    "default": {},
    # paper scale: MNIST + MnistNet (download needed; a GPU helps). CIFAR-10 + ResNet-20:
    # add -p DATASET cifar10 -p MODEL resnet20 (a GPU is needed to finish in hours, not days).
    "paper": {"DATASET": "mnist", "MODEL": "mnistnet", "DOWNLOAD": True, "EPOCHS": 20, "LR": 0.01,
              "BATCH_SIZE": 128, "WINDOW": 200, "SEEDS": [0, 1, 2]},
}


def notebook_dir() -> Path:
    env = os.environ.get("KOOPMAN_TUT_NOTEBOOKS")
    d = Path(env) if env else Path(__file__).resolve().parents[1] / "notebooks"
    if not d.is_dir():
        raise SystemExit(f"no notebooks folder at {d}: run from a clone of koopman_tut (pip install -e .) "
                         f"or set KOOPMAN_TUT_NOTEBOOKS")
    return d


def notebooks(only: list[str] | None = None) -> list[Path]:
    """Tutorial notebooks in order; ``only`` keeps those whose name starts with or equals an entry."""
    found = sorted(p for p in notebook_dir().glob("[0-9][0-9]_*.ipynb"))
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


def parameters_for(path: Path, preset: dict, extra: dict) -> dict:
    """Preset and -p values restricted to the parameters the notebook declares."""
    import papermill as pm

    declared = pm.inspect_notebook(str(path))
    unknown = [k for k in extra if k not in declared]
    if unknown:
        print(f"  note: {path.stem} has no parameter {unknown}; ignored there", file=sys.stderr)
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


def _execute(src: Path, dst: Path, params: dict, cwd: Path) -> None:
    import papermill as pm

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix="." + dst.stem, suffix=".ipynb")
    os.close(fd)
    try:
        pm.execute_notebook(str(src), tmp, parameters=params, cwd=str(cwd), progress_bar=False,
                            kernel_name="python3")
        os.replace(tmp, dst)  # atomic: a failed or interrupted run never leaves a half notebook
    except BaseException:
        failed = dst.with_name(dst.stem + ".failed.ipynb")
        if os.path.exists(tmp):
            os.replace(tmp, failed)  # keep the partial output for reading the error
        raise


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


def cmd_run(args) -> int:
    from tqdm.auto import tqdm

    preset = PRESETS[args.preset]
    extra = {k: parse_value(v) for k, v in (args.param or [])}
    paths = notebooks(args.only)
    out_dir = Path(args.output_dir)
    rows = []
    bar = tqdm(paths, desc=f"notebooks ({args.preset})", unit="nb")
    for p in bar:
        bar.set_postfix_str(p.stem)
        dst = p if args.in_place else out_dir / p.name
        params = parameters_for(p, preset, extra)
        if args.resume and already_done(p, dst, params):
            rows.append((p.stem, "done", 0.0, str(dst)))
            continue
        t0 = time.perf_counter()
        try:
            _execute(p, dst, params, cwd=p.parent)
            status = "ok"
        except KeyboardInterrupt:
            rows.append((p.stem, "interrupted", time.perf_counter() - t0, "-"))
            break
        except Exception as e:  # papermill's PapermillExecutionError names the cell
            status = "FAILED: " + (str(e).strip().splitlines() or [type(e).__name__])[-1][:60]
        rows.append((p.stem, status, time.perf_counter() - t0, str(dst) if status == "ok" else
                     str(dst.with_name(dst.stem + ".failed.ipynb"))))
    bar.close()
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'notebook':{w}s}  {'status':10s} {'time':>8s}  output")
    for name, status, secs, out in rows:
        print(f"{name:{w}s}  {status:10s} {secs:7.1f}s  {out}")
    print(f"{sum(r[1] in ('ok', 'done') for r in rows)}/{len(paths)} notebooks done; total {sum(r[2] for r in rows):.1f}s")
    return 0 if all(r[1] in ("ok", "done") for r in rows) and len(rows) == len(paths) else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="koopman-tut", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser("list", help="show the notebooks with their parameters and defaults")
    pl.add_argument("--only", nargs="+")
    pr = sub.add_parser("run", help="execute the notebooks with papermill")
    pr.add_argument("--preset", choices=sorted(PRESETS), default="default")
    pr.add_argument("--only", nargs="+", metavar="NAME", help="notebooks to run (e.g. 03 or 03_kmp_equals_magnitude)")
    pr.add_argument("--output-dir", default="outputs")
    pr.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="set a parameter (a Python literal), e.g. -p SEED 3 -p DATASET mnist")
    pr.add_argument("--in-place", action="store_true", help="overwrite notebooks/ (refresh committed outputs)")
    pr.add_argument("--resume", action="store_true", help="skip notebooks already run with the same parameters")
    args = p.parse_args(argv)
    return cmd_list(args) if args.command == "list" else cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
