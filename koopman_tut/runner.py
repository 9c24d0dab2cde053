"""Executing notebooks for ``koopman-tut run``: atomically, with the umask respected, the
partial output of a failure kept outside notebooks/, stale temporaries cleaned, and the
measured run times recorded (notebooks/timings.json, the README's one source)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TMP_TAG = ".kt-tmp-"  # temporaries are .<stem>.kt-tmp-XXXXXXXX.ipynb beside the destination


@dataclass
class Result:
    """One notebook's line in the summary; ``output`` is None when there is no file to show."""

    name: str
    status: str  # "ok", "done" (resumed), "FAILED" or "interrupted"
    seconds: float
    output: Path | None
    error: str = ""


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


TIMINGS = "timings.json"  # measured default run times, the one source of the README's table


def record_timings(results: list[Result], folder: Path) -> None:
    """Store each notebook's measured default run time (seconds) in notebooks/timings.json."""
    import json

    if not any(r.status == "ok" for r in results):
        return
    path = folder / TIMINGS
    times = json.loads(path.read_text()) if path.is_file() else {}
    times.update({r.name: round(r.seconds, 1) for r in results if r.status == "ok"})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(times.items())), indent=1) + "\n")
    os.replace(tmp, path)
