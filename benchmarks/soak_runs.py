"""Soak test of notebook runs: `koopman-tut run --preset smoke` over many seeds, one run at a time,
each bounded by a timeout, counting runs, retries after a lost kernel message, failures and hangs.

    python benchmarks/soak_runs.py --seeds 7001 7070 --only 03 04 05 --log soak.log
    python benchmarks/soak_runs.py --stress 8 [--stock-client]

Each seed is one `koopman-tut run` (a fresh process, its notebooks one after another). A run
still going after --timeout seconds is killed and its unfinished notebooks count as hangs
(the runner's own bounds should make that impossible). Every finished run appends a line to
--log with running totals; the last line is the summary.

--stress N runs a notebook of 40 widget cells (koopman_tut.plots.widgets.sliders) N times through
koopman_tut.tooling.runner, the quick way to see the widget-cell hang: with --stock-client (jupyter_client's
own kernel client instead of koopman_tut.tooling.kernel_client's) most runs lose an execute_reply, which
the runner's bounds turn into a retry; with the default client none do.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^(\d\d_[a-z0-9_]+)\s+(ok|done|FAILED|interrupted)(?: \((.+?)\))?\s+[\d.]+s\s+\S+$")


def run_seed(seed: int, only: list[str], timeout: float, cell_timeout: float) -> tuple[list, str]:
    """One `koopman-tut run`: the summary rows (name, status, note) and its output's tail."""
    cmd = [sys.executable, "-m", "koopman_tut.tooling.cli", "run", "--preset", "smoke", "--only", *only,
           "-p", "SEED", str(seed)]
    env = dict(os.environ, OMP_NUM_THREADS="1", KOOPMAN_TUT_CELL_TIMEOUT=str(cell_timeout))
    with tempfile.TemporaryDirectory(prefix="kt-soak-") as out:
        try:
            proc = subprocess.run([*cmd, "--output-dir", out], capture_output=True, text=True,
                                  timeout=timeout, cwd=ROOT, env=env)
            text = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            text += f"\nKILLED after {timeout:g} s"
    rows = [m.groups() for m in map(ROW.match, text.splitlines()) if m]
    return rows, text


def tally(rows: list, only: list[str], killed: bool) -> Counter:
    """Counts of notebook runs: ok, retried (ok or not, after a lost message), failed, hung."""
    c = Counter(runs=len(only))
    for _, status, note in rows:
        c["ok" if status in ("ok", "done") else "failed"] += 1
        c["retried"] += bool(note)
    c["hung"] += len(only) - len(rows) if killed else 0
    c["failed"] += 0 if killed else len(only) - len(rows)  # a run that died before its summary
    return c


def stress(runs: int, stock_client: bool) -> int:
    """Run the 40-widget-cell notebook ``runs`` times; print each result and its retry note."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    sys.path.insert(0, str(ROOT))
    from koopman_tut.tooling import kernel_client
    from koopman_tut.tooling import runner
    from koopman_tut.tooling.watchdog import Limits

    if stock_client:
        kernel_client.CLIENT_CLASS = "jupyter_client.asynchronous.AsyncKernelClient"
    cells = [new_code_cell("SEED = 0", metadata={"tags": ["parameters"]}),
             new_code_cell("import matplotlib.pyplot as plt\nfrom koopman_tut import widgets\n"
                           "def f(c=2):\n    print('compression', c)\n    plt.plot([1, c])\n    plt.show()")]
    cells += [new_code_cell(f"widgets.sliders(f, c=[2, 4, 8, {16 + i}])") for i in range(40)]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                   "language": "python"}})
    stalls = 0
    with tempfile.TemporaryDirectory(prefix="kt-stress-") as d:
        src = Path(d) / "00_stress.ipynb"
        nbformat.write(nb, str(src))
        for i in range(runs):
            r = runner.run_one(src, Path(d) / "out" / src.name, {"SEED": i}, Path(d) / "failed" / src.name,
                               0o600, Limits(cell=120, reply=10, iopub=10))
            stalls += bool(r.note) + ("KernelStalled" in r.error)
            print(f"run {i}: {r.status} {r.note} {r.error[:200]}", flush=True)
    print(f"{runs} runs of 40 widget cells, {stalls} stalls ({'stock' if stock_client else 're-arming'} client)")
    return 0 if stalls == 0 else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs=2, type=int, metavar=("FIRST", "LAST"))
    p.add_argument("--only", nargs="+", default=["03", "04", "05"])
    p.add_argument("--log", type=Path)
    p.add_argument("--timeout", type=float, default=900.0, help="kill a whole run after this many seconds")
    p.add_argument("--cell-timeout", type=float, default=180.0, help="KOOPMAN_TUT_CELL_TIMEOUT for the runs")
    p.add_argument("--until", type=float, default=None, help="stop starting runs after this Unix time")
    p.add_argument("--stress", type=int, metavar="N", help="instead: N runs of a notebook of 40 widget cells")
    p.add_argument("--stock-client", action="store_true", help="with --stress: jupyter_client's own client")
    args = p.parse_args(argv)
    if args.stress:
        return stress(args.stress, args.stock_client)
    if not args.seeds or not args.log:
        p.error("--seeds and --log are needed (or --stress)")
    total = Counter()
    with args.log.open("a", buffering=1) as log:
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} soak: koopman-tut run --preset smoke "
                  f"--only {' '.join(args.only)} -p SEED {args.seeds[0]}..{args.seeds[1]}, "
                  f"each run killed after {args.timeout:g} s\n")
        for seed in range(args.seeds[0], args.seeds[1] + 1):
            if args.until and time.time() > args.until:
                break
            t0 = time.time()
            rows, text = run_seed(seed, args.only, args.timeout, args.cell_timeout)
            killed = text.endswith(f"KILLED after {args.timeout:g} s")
            total += tally(rows, args.only, killed)
            detail = "; ".join(f"{n} {s}" + (f" ({note})" if note else "") for n, s, note in rows)
            log.write(f"{time.strftime('%H:%M:%S')} SEED {seed} {time.time() - t0:5.0f}s "
                      f"{'KILLED ' if killed else ''}{detail}\n")
            if killed or any(s != "ok" or note for _, s, note in rows) or len(rows) < len(args.only):
                log.write("    " + text[-1500:].replace("\n", "\n    ") + "\n")
            log.write(f"  totals: {total['runs']} notebook runs, {total['ok']} ok, {total['retried']} retried "
                      f"after a stall, {total['failed']} failed, {total['hung']} hung\n")
    print(f"{total['runs']} notebook runs, {total['ok']} ok, {total['retried']} retried, "
          f"{total['failed']} failed, {total['hung']} hung")
    return 0 if total["runs"] == total["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
