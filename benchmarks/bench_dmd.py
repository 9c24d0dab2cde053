"""Benchmark koopman_tut.dmd against PyDMD and against one W^T W product, in one process.

    python benchmarks/bench_dmd.py --n 1000000 --t 64 [--device cuda] [--dtype float32]

Prints wall time and peak extra memory (beyond the input) of
  * koopman_tut.dmd(W)               (eigenvalues, amplitudes, singular values)
  * + fixed_point()                  (what Koopman magnitude pruning needs: one mode)
  * + all modes                      (what PyDMD always computes)
  * one W^T W product in W's dtype   (one pass of arithmetic over W, inexact for float32)
  * one float64 chunked Gram          (the floor of an exact method: each chunk converted
                                       to float64, then one GEMM; what kt.dmd must stay near)
  * PyDMD DMD(svd_rank=-1, exact=True) on the CPU (skipped with --no-pydmd)
as ratios, and the agreement of eigenvalues and fixed points between koopman_tut and PyDMD,
and of both with a float64 reference (a thin SVD of the data in float64; --no-reference skips it).
Memory on the CPU is the process's resident set sampled every millisecond; on CUDA it is
torch.cuda.max_memory_allocated.
"""
from __future__ import annotations

import argparse
import gc
import os
import threading
import time

import numpy as np
import torch

import koopman_tut as kt
from koopman_tut.systems import trajectory_like


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn, device: str, repeat: int = 3):
    """Best wall time over ``repeat`` runs and peak extra memory (bytes) of fn()."""
    times, peak = [], 0
    for _ in range(repeat):
        gc.collect()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base, top, stop = _rss(), [0], threading.Event()

            def sample():
                while not stop.is_set():
                    top[0] = max(top[0], _rss())
                    time.sleep(0.001)
            th = threading.Thread(target=sample, daemon=True)
            th.start()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if device == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated() - base)
        else:
            stop.set()
            th.join()
            peak = max(peak, top[0] - base)
        del out
    return min(times), peak


def float64_chunked_gram(W: torch.Tensor) -> torch.Tensor:
    """The floor of an exact Gram: every chunk converted to float64, one GEMM per chunk."""
    from koopman_tut.snapshots import default_chunk_rows

    rows = default_chunk_rows(W.shape[1])
    acc = torch.zeros(W.shape[1], W.shape[1], dtype=torch.float64, device=W.device)
    buf = torch.empty(min(rows, W.shape[0]), W.shape[1], dtype=torch.float64, device=W.device)
    for s in range(0, W.shape[0], rows):
        b = buf[: min(rows, W.shape[0] - s)]
        b.copy_(W[s:s + rows])
        acc += b.T @ b
    return acc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="number of features (parameters)")
    p.add_argument("--t", type=int, default=64, help="number of snapshots")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-pydmd", action="store_true", help="skip the PyDMD baseline")
    p.add_argument("--no-reference", action="store_true", help="skip the float64 SVD reference")
    a = p.parse_args(argv)
    dtype = getattr(torch, a.dtype)
    W = trajectory_like(a.n, a.t, dtype=dtype, device=a.device, seed=0)
    size = W.numel() * W.element_size()
    print(f"W: ({a.n}, {a.t}) {a.dtype} on {a.device}, {size / 2**20:.0f} MiB; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    rows = {}
    rows["W^T W (one product)"] = measure(lambda: W.T @ W, a.device, a.repeat)
    rows["float64 chunked Gram (exact floor)"] = measure(lambda: float64_chunked_gram(W), a.device, a.repeat)
    rows["kt.dmd"] = measure(lambda: kt.dmd(W), a.device, a.repeat)
    rows["kt.dmd + fixed_point"] = measure(lambda: kt.dmd(W).fixed_point(), a.device, a.repeat)
    rows["kt.dmd + all modes"] = measure(lambda: kt.dmd(W).modes, a.device, a.repeat)
    res = kt.dmd(W)
    fp = res.fixed_point().double().cpu()

    if not a.no_pydmd:
        from pydmd import DMD
        Wn = W.cpu().numpy()
        holder = {}

        def run_pydmd():
            holder["p"] = DMD(svd_rank=-1, exact=True).fit(Wn)
            return holder["p"]
        rows["PyDMD DMD(svd_rank=-1, exact=True)"] = measure(run_pydmd, "cpu", 1)

    base_t, _ = rows["W^T W (one product)"]
    floor_t, _ = rows["float64 chunked Gram (exact floor)"]
    print(f"\n{'method':40s} {'time [s]':>10s} {'x W^T W':>8s} {'x f64 Gram':>11s} {'peak extra':>12s} {'/ input':>8s}")
    for name, (t, m) in rows.items():
        print(f"{name:40s} {t:10.3f} {t / base_t:8.2f} {t / floor_t:11.2f} {m / 2**20:9.0f} MiB {m / size:8.2f}")
    t_fp = rows["kt.dmd + fixed_point"][0]
    print(f"\ntarget: kt.dmd + fixed_point <= 1.3x one float64 chunked Gram: {t_fp / floor_t:.2f}x")

    if not a.no_pydmd:
        pd = holder["p"]
        t_p = rows["PyDMD DMD(svd_rank=-1, exact=True)"][0]
        print(f"target: >= 50x faster than PyDMD: {t_p / t_fp:.0f}x")
        print(f"speed-up over PyDMD: kt.dmd {t_p / rows['kt.dmd'][0]:.1f}x, "
              f"+fixed_point {t_p / rows['kt.dmd + fixed_point'][0]:.1f}x, "
              f"+all modes {t_p / rows['kt.dmd + all modes'][0]:.1f}x")
        e_kt = res.eigs.cpu().numpy().astype(np.complex128)
        e_pd = np.asarray(pd.eigs, dtype=np.complex128)
        dist = np.min(np.abs(e_kt[:, None] - e_pd[None, :]), axis=1)
        k = int(np.argmin(np.abs(e_pd - 1)))
        fp_pd = np.real(pd.modes[:, k] * pd.amplitudes[k])
        rel = np.linalg.norm(fp.numpy() - fp_pd) / np.linalg.norm(fp_pd)
        top = res.singular_values.cpu().numpy() > 1e-3 * float(res.singular_values[0])
        print(f"ranks: koopman_tut {res.rank}, PyDMD {len(e_pd)}")
        print(f"eigenvalue distance to PyDMD's nearest: median {np.median(dist):.2e}, max {dist.max():.2e}, "
              f"max over modes with s > 1e-3 s_max {dist[top].max():.2e}")
        print(f"eigenvalue closest to 1: koopman_tut {e_kt[res.closest()]:.8f}, PyDMD {e_pd[k]:.8f}")
        print(f"fixed point relative difference to PyDMD: {rel:.2e}")

    if not a.no_reference:
        ref = kt.dmd(W.double().cpu(), method="svd")
        fp_ref = ref.fixed_point()
        e_ref = ref.eigs.numpy()
        cands = {"koopman_tut": (res.eigs.cpu().numpy().astype(np.complex128), fp.numpy())}
        if not a.no_pydmd:
            cands["PyDMD"] = (e_pd, fp_pd)
        print("\nagainst a float64 thin-SVD reference:")
        for name, (e, f) in cands.items():
            d = np.min(np.abs(e[:, None] - e_ref[None, :]), axis=1)
            err = np.linalg.norm(f - fp_ref.numpy()) / np.linalg.norm(fp_ref.numpy())
            print(f"  {name:12s} eigenvalue distance median {np.median(d):.2e}, max {d.max():.2e}; "
                  f"fixed point relative error {err:.2e}")


if __name__ == "__main__":
    main()
