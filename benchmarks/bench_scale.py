"""Scaling out: a trajectory larger than comfortable on disk, and the Gram pass split over processes.

    python benchmarks/bench_scale.py                 # a 4 GiB window (default --gb 4)
    python benchmarks/bench_scale.py --gb 1 --dist-gb 0.5 --threads 2

1. Writes a synthetic (n, T) float32 window of --gb GiB into the recorder's disk format
   (koopman_tut.recording.storage.DiskStorage, what ``TrajectoryRecorder(path=)`` writes), evicts it
   from the page cache (posix_fadvise, this file only), maps it with ``Trajectory.load`` and
   decomposes it: ``kt.dmd`` + its fixed point, and ``kt.koopman(traj).fixed_point()`` (the
   limit). Prints the peak anonymous memory (RssAnon of /proc/self/status, sampled every
   millisecond in a thread) above the level before, against the window's size.
2. The Gram pass (``deviation_gram``, the O(n T^2) part) on the mapped file, cold and warm,
   against the same pass over a copy of the window in anonymous memory (skip: --no-memory).
3. The Gram pass of a --dist-gb GiB in-memory window in 1 process against 2 gloo processes
   holding half the rows each (plus the T^2 all-reduce), same total rows.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import koopman_tut as kt  # noqa: E402
from koopman_tut.numerics.distributed import shard_range  # noqa: E402
from koopman_tut.numerics.dmd import deviation_gram_checked  # noqa: E402
from koopman_tut.numerics.snapshots import deviation_gram  # noqa: E402
from koopman_tut.recording.storage import DiskStorage  # noqa: E402

GiB = 2**30


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakAnon:
    """Peak RssAnon above its level at entry, sampled every millisecond in a thread."""

    def __enter__(self):
        self.base = self.peak = rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.grew = max(self.peak, rss_anon()) - self.base


def write_window(path: Path, n: int, T: int) -> float:
    """A fixed point, two decaying modes and noise, snapshot by snapshot into the disk format; seconds."""
    g = torch.Generator().manual_seed(0)
    c, a, b, e = (torch.randn(n, generator=g) for _ in range(4))
    t0 = time.perf_counter()
    st = DiskStorage(path, ["w"], [(n,)], n, T, torch.float32, {"every": 1})
    for t in range(T):
        torch.add(c, a, alpha=0.9**t, out=st.data[t])
        st.data[t].add_(b, alpha=(-0.5) ** t).add_(e.roll(7919 * t), alpha=1e-3)
        st.commit(t, t, np.array([[0.1, 0, 0, 0, 0, 0, 0]]))  # one group's settings: lr 0.1, plain SGD
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def evict(path: Path) -> None:
    """Drop this file's pages from the page cache (the next read comes from the device)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(f, *args):
    t0 = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t0


def _dist_worker(rank: int, world: int, store: str, n: int, T: int, threads: int, out: str):
    torch.set_num_threads(threads)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    lo, hi = shard_range(n, rank, world)
    W = torch.randn(T, hi - lo, generator=torch.Generator().manual_seed(rank)).T  # the recorder's layout
    best = float("inf")
    for _ in range(3):
        dist.barrier()
        t0 = time.perf_counter()
        deviation_gram_checked(W, group=True)  # the local pass + one T^2 all-reduce
        best = min(best, time.perf_counter() - t0)
    slowest = torch.tensor([best])
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    if rank == 0:
        Path(out).write_text(str(float(slowest)))
    dist.destroy_process_group()


def distributed_gram(n: int, T: int, world: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_dist_worker, args=(world, f"{d}/store", n, T, threads, f"{d}/t"), nprocs=world, join=True)
        return float(Path(f"{d}/t").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=4.0, help="size of the window on disk, GiB")
    ap.add_argument("--T", type=int, default=64, help="snapshots")
    ap.add_argument("--dir", default=None, help="where to write it (default: a temporary folder, removed)")
    ap.add_argument("--dist-gb", type=float, default=1.0, help="size of the in-memory window for part 3, GiB")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the single process")
    ap.add_argument("--no-memory", action="store_true", help="skip the in-memory copy of part 2")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    T = args.T
    n = int(args.gb * GiB) // (4 * T)
    size = n * T * 4
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = Path(d) / "window.traj"
        secs = write_window(path, n, T)
        print(f"window: n = {n:,} x T = {T} float32 = {size / GiB:.2f} GiB on disk, written in {secs:.1f} s "
              f"({size / GiB / secs:.2f} GiB/s); torch threads {args.threads}")
        evict(path)
        traj = kt.Trajectory.load(path)
        with PeakAnon() as m:
            res = kt.dmd(traj.snapshots)
            fp = res.fixed_point()
            limit = kt.koopman(traj).fixed_point()
        print(f"[1] dmd + fixed point + Koopman limit from disk (cold): {m.seconds:.1f} s; peak anonymous memory "
              f"+{m.grew / 2**20:.0f} MiB = {m.grew / size:.1%} of the window (rank {res.rank}, "
              f"|lambda - 1| = {abs(complex(res.eigs[res.closest()]) - 1):.1e}, |fp - limit| / |limit| = "
              f"{float((fp - limit).norm() / limit.norm()):.1e})")
        del res, fp, limit
        evict(path)
        _, cold = timed(deviation_gram, traj.snapshots)
        _, warm = timed(deviation_gram, traj.snapshots)
        line = f"[2] Gram pass: disk cold {cold:.2f} s ({size / GiB / cold:.2f} GiB/s), disk warm {warm:.2f} s"
        if not args.no_memory:
            rows = torch.empty(T, n)
            rows.copy_(traj.snapshots.T)  # anonymous memory, the in-memory recorder's layout
            _, mem = timed(deviation_gram, rows.T)
            line += f", in memory {mem:.2f} s"
            del rows
        print(line)
    n2 = int(args.dist_gb * GiB) // (4 * T)
    one = distributed_gram(n2, T, 1, 1)
    one_t = distributed_gram(n2, T, 1, 2)
    two = distributed_gram(n2, T, 2, 1)
    print(f"[3] Gram pass of {n2 * T * 4 / GiB:.2f} GiB in memory ({n2:,} rows x {T}): 1 process x 1 thread "
          f"{one:.2f} s, 1 process x 2 threads {one_t:.2f} s, 2 gloo processes x 1 thread (half the rows each, "
          f"+ all-reduce) {two:.2f} s; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
