"""Executing notebooks for ``koopman-tut run``: atomically, with the umask respected, every
wait on the kernel bounded (koopman_tut.tooling.watchdog) and a run that lost a kernel message retried
once, the partial output of a failure kept outside notebooks/, stale temporaries cleaned, and
the measured run times recorded (notebooks/timings.json, the README's one source)."""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .watchdog import KernelStalled, Limits, engine_options, limits_for

DIED_AT_START = "Kernel died before replying to kernel_info"  # jupyter_client's words
TMP_TAG = ".kt-tmp-"  # temporaries are .<stem>.kt-tmp-XXXXXXXX.ipynb beside the destination


@dataclass
class Result:
    """One notebook's line in the summary; ``output`` is None when there is no file to show."""

    name: str
    status: str  # "ok", "done" (resumed), "FAILED" or "interrupted"
    seconds: float
    output: Path | None
    error: str = ""
    note: str = ""  # e.g. "retried after a lost kernel message in cell 14"


def new_file_mode() -> int:
    """0o666 less the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def remove_stale_temporaries(folder: Path, stem: str) -> None:
    """Delete ``stem``'s temporaries left in ``folder`` by a killed run (only this CLI's own names)."""
    for tmp in folder.glob(f".{stem}{TMP_TAG}*.ipynb"):  # tutorial stems have no glob characters
        tmp.unlink(missing_ok=True)


def kernel_options(limits: Limits | None = None) -> dict:
    """papermill options for every run: a kernel client that never misses a reply
    (koopman_tut.tooling.kernel_client), every wait bounded by ``limits`` (default: a run at default
    parameters, koopman_tut.tooling.watchdog.limits_for), and no "Kernel is running over TCP without
    encryption" warning.

    The kernel process logs that warning (ipykernel/kernelapp.py, init_sockets) to the terminal
    once per notebook unless it gets CurveZMQ keys; jupyter_client >= 8.10 provisions them for
    kernelspecs that declare support (``transport_encryption="auto"``), so ask for that.
    """
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    from .kernel_client import CLIENT_CLASS  # the fix for lost execute_replies in widget cells

    manager = {"client_class": CLIENT_CLASS}
    if zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names():
        manager["transport_encryption"] = "auto"
    return {**engine_options(limits or limits_for({})), "config": Config({"KernelManager": manager})}


def keep_failed(tmp: Path, failed: Path) -> None:
    """Move a partial output to ``failed`` (if papermill wrote any), else just remove it."""
    try:
        if tmp.stat().st_size:
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp), str(failed))  # may cross file systems (--in-place)
    except OSError:
        pass
    tmp.unlink(missing_ok=True)


def execute(src: Path, dst: Path, params: dict, failed: Path, mode: int, limits: Limits | None = None) -> None:
    """Run ``src`` into ``dst`` atomically (mode ``mode``), every wait bounded by ``limits`` (default
    :func:`koopman_tut.tooling.watchdog.limits_for` of ``params``); on error keep the partial output at ``failed``."""
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
                            kernel_name="python3", **kernel_options(limits or limits_for(params)))
        stamp_package(tmp)
        os.replace(tmp, dst)  # atomic: a failed or interrupted run never leaves a half notebook
    except BaseException:
        keep_failed(tmp, failed)
        raise


def describe(error: BaseException) -> str:
    """``Type: message``; for a papermill.exceptions.PapermillExecutionError, the notebook's own error, and
    for one without a message (a bare ``assert``: a claim that failed at these parameters) the line that
    raised it, from the cell's traceback."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        if evalue:
            return f"{ename}: {evalue}"
        where = failing_line(getattr(error, "traceback", None) or [], getattr(error, "cell_index", None))
        return f"{ename} {where}" if where else ename
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def failing_line(traceback: list[str], cell: int | None = None) -> str:
    """'in cell 27, at: assert x < 10' from an IPython traceback (its '---> 13' line, colours removed), or ''."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(traceback))
    marked = re.findall(r"^\s*-+>\s*\d+\s+(.*\S)", text, re.MULTILINE)
    if not marked:
        return ""
    return (f"in cell {cell}, " if cell is not None else "") + f"at: {marked[-1].strip()}"


@functools.cache
def package_source() -> str:
    """A digest of the package's sources (every ``koopman_tut/**/*.py`` and ``*.c``, by path and content): which
    code an executed notebook ran, so that ``--resume`` reruns a notebook whose output older code made."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.c")]):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stamp_package(path: Path) -> None:
    """Record :func:`package_source` in an executed notebook's metadata (``koopman_tut.package_source``)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata.setdefault("koopman_tut", {})["package_source"] = package_source()
    nbformat.write(nb, str(path))


def already_done(src: Path, dst: Path, params: dict) -> bool:
    """True if ``dst`` is a finished run of ``src`` (newer) with exactly these parameters, made by the package's
    current code (:func:`package_source`; an output without that record is not taken as done)."""
    import nbformat

    if src == dst or not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
        return False
    try:
        meta = nbformat.read(str(dst), as_version=4).metadata
    except Exception:
        return False
    run = meta.get("papermill", {})
    return (run.get("parameters", {}) == params and run.get("exception") in (None, False)
            and meta.get("koopman_tut", {}).get("package_source") == package_source())


def retry_note(error: KernelStalled) -> str:
    """What the summary says of a first attempt that stalled, e.g. "retried after a lost kernel
    message in cell 14" or "retried after cell 9 ran past its 600 s bound"."""
    where = f" in cell {error.cell}" if error.cell is not None else ""
    if error.lost_message:
        return f"retried after a lost kernel message{where}"
    return f"retried after cell {error.cell} ran past its {error.seconds:g} s bound"


def run_one(src: Path, dst: Path, params: dict, failed: Path, mode: int, limits: Limits | None = None) -> Result:
    """Execute one notebook: "ok", or "FAILED" / "interrupted" (Ctrl-C) with the partial output if any.

    Every wait is bounded by ``limits`` (default :func:`koopman_tut.tooling.watchdog.limits_for` of
    ``params``); a run whose wait ran out (a lost kernel message, a cell past its bound), or whose
    kernel died before it answered (jupyter_client picks free ports and the kernel binds them later:
    another process can take one meanwhile, "Address already in use", e.g. under pytest -n 2), is
    retried once in a fresh kernel, and the result's ``note`` says so.
    """
    t0, note = time.perf_counter(), ""
    for attempt in (1, 2):
        try:
            execute(src, dst, params, failed, mode, limits)
            return Result(src.stem, "ok", time.perf_counter() - t0, dst, note=note)
        except KernelStalled as e:
            if attempt == 1:
                note = retry_note(e)
                print(f"  {src.stem}: {e}; running it again in a fresh kernel", file=sys.stderr)
                continue
            error = e
        except RuntimeError as e:
            if attempt == 1 and DIED_AT_START in str(e):
                note = "retried after its kernel died at start"
                print(f"  {src.stem}: {e}; running it again in a fresh kernel", file=sys.stderr)
                continue
            error = e
        except (Exception, KeyboardInterrupt) as e:
            error = e
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "FAILED"
        return Result(src.stem, status, time.perf_counter() - t0, failed if failed.is_file() else None,
                      describe(error), note)


def print_summary(results: list[Result], total: int) -> None:
    """The table of results, then each failure's error and partial output, in full."""
    w = max([len(r.name) for r in results] + [8])
    statuses = [r.status + (f" ({r.note})" if r.note else "") for r in results]
    s = max([len(x) for x in statuses] + [11])
    print(f"\n{'notebook':{w}s}  {'status':{s}s} {'time':>8s}  output")
    for r, status in zip(results, statuses):
        print(f"{r.name:{w}s}  {status:{s}s} {r.seconds:7.1f}s  {r.output or '-'}")
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
