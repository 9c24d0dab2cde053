"""Benchmark koopman_tut.numerics.dmd against PyDMD and against one W^T W product, in one process.

    python benchmarks/bench_dmd.py --n 1000000 --t 64 [--device cuda] [--dtype float32] [--layout both]

For W row-major (each parameter's row contiguous) and snapshot-major (each snapshot
contiguous, as TrajectoryRecorder stores it), prints wall time and peak extra memory (beyond the input) of
  * koopman_tut.numerics.dmd(W)               (eigenvalues, amplitudes, singular values)
  * + fixed_point()                  (what Koopman magnitude pruning needs: one mode)
  * + all modes                      (what PyDMD always computes)
  * one W^T W product in W's dtype   (one pass of arithmetic over W, inexact for float32)
  * one float64 chunked Gram          (the floor of an exact method: each chunk converted
                                       to float64, then one GEMM, with kt.dmd's chunk size,
                                       buffer order and padding; what kt.dmd must stay near)
  * the same, as kt.dmd computes it   (on a CPU from 64 snapshots, the upper triangle alone by
                                       block rows, koopman_tut.numerics.syrk; below that, one GEMM:
                                       then it is the row above; the floor of kt.dmd's own method)
  * the affine limit with 1 delay     (the default limit under momentum: a pass for the Gram of
                                       the steps, one for the combination)
  * both again with torch's passes    (where the C kernels of numerics/_fused.c were built:
                                       the conversions in two passes, as without them)
and, once, PyDMD DMD(svd_rank=-1, exact=True) on the CPU (skipped with --no-pydmd),
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
from koopman_tut.numerics import native
from koopman_tut.numerics.extrapolation import AffineModel
from koopman_tut.training.systems import trajectory_like


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory(fn, device: str) -> int:
    """Peak extra memory (bytes) of one run of fn(): the resident set sampled every millisecond
    by a thread on the CPU, torch.cuda.max_memory_allocated on CUDA."""
    gc.collect()
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = fn()
        _sync(device)
        return torch.cuda.max_memory_allocated() - base
    base, top, stop = _rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            top[0] = max(top[0], _rss())
            time.sleep(0.001)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out = fn()
    stop.set()
    th.join()
    del out
    return max(0, top[0] - base)


def measure_all(fns: dict, device: str, repeat: int = 3) -> dict:
    """{name: (best wall time, peak extra memory)} for each fn in ``fns``.

    The methods are timed in turn, round after round, so that a slow spell of a shared
    machine falls on all of them rather than on whichever ran then; the ratios between
    them are what the benchmark reports. The timed runs have no memory sampler beside
    them (a thread reading /proc every millisecond takes a share of the cores); memory
    comes from one more run of each.
    """
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            _sync(device)
            t0 = time.perf_counter()
            out = fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
            del out
    return {name: (min(times[name]), peak_memory(fn, device)) for name, fn in fns.items()}


def float64_chunked_gram(W: torch.Tensor, as_kt: bool = False) -> torch.Tensor:
    """The floor of an exact Gram: every chunk converted to float64, one GEMM per chunk.

    Same chunk size, buffer order and row padding as kt.dmd (koopman_tut.numerics.snapshots.chunk_buffer),
    so the ratio measures what kt.dmd adds to one exact pass, not a better or worse memory layout.
    With ``as_kt``, each chunk's Gram is added as kt.dmd adds it (koopman_tut.numerics.syrk: the
    upper triangle alone, from 64 snapshots on a CPU).
    """
    from koopman_tut.numerics.snapshots import chunk_buffer, default_chunk_rows
    from koopman_tut.numerics.syrk import add_upper_gram_, mirror_upper

    rows = default_chunk_rows(W.shape[1], W.device)
    acc = torch.zeros(W.shape[1], W.shape[1], dtype=torch.float64, device=W.device)
    buf = chunk_buffer(W, min(rows, W.shape[0]))
    for s in range(0, W.shape[0], rows):
        b = buf[: min(rows, W.shape[0] - s)]
        b.copy_(W[s:s + rows])
        if as_kt:
            add_upper_gram_(acc, b)
        else:
            acc += b.mT @ b
    return mirror_upper(acc) if as_kt else acc


LAYOUTS = {"row-major": lambda W: W,  # each row (parameter) contiguous, as built in memory here
           "snapshot-major": lambda W: W.T.contiguous().T}  # each snapshot contiguous, as a recorder stores it


def torch_passes(fn):
    """fn with the C kernels switched off (numerics/native.py): torch's two-pass conversions."""
    def run():
        kernels, native.library = native.library, lambda: None
        try:
            return fn()
        finally:
            native.library = kernels
    return run


def time_layout(W: torch.Tensor, a) -> dict:
    fp = lambda: kt.dmd(W).fixed_point()  # noqa: E731
    limit = lambda: AffineModel(W, 0, delays=1, method="gram").extrapolate(warn=False).theta  # noqa: E731
    # where the C kernels were built, the same two without them, in the same rounds
    off = ({"kt.dmd + fixed_point, torch passes": torch_passes(fp), "affine limit, torch passes": torch_passes(limit)}
           if native.library() is not None and W.device.type == "cpu" else {})
    return measure_all({
        "W^T W (one product)": lambda: W.T @ W,
        "float64 chunked Gram (exact floor)": lambda: float64_chunked_gram(W),
        "float64 chunked Gram, as kt.dmd does": lambda: float64_chunked_gram(W, as_kt=True),
        "kt.dmd": lambda: kt.dmd(W),
        "kt.dmd + fixed_point": fp,
        "kt.dmd + all modes": lambda: kt.dmd(W).modes,
        # the delay-embedded affine limit (momentum): one Gram pass, one pass for the combination
        "affine limit, 1 delay": limit,
        **off,
    }, a.device, a.repeat)


def print_table(rows: dict, size: int) -> None:
    base_t, floor_t = rows["W^T W (one product)"][0], rows["float64 chunked Gram (exact floor)"][0]
    print(f"{'method':40s} {'time [s]':>10s} {'x W^T W':>8s} {'x f64 Gram':>11s} {'peak extra':>12s} {'/ input':>8s}")
    for name, (t, m) in rows.items():
        print(f"{name:40s} {t:10.3f} {t / base_t:8.2f} {t / floor_t:11.2f} {m / 2**20:9.0f} MiB {m / size:8.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="number of features (parameters)")
    p.add_argument("--t", type=int, default=64, help="number of snapshots")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--layout", default="both", choices=["both", *LAYOUTS])
    p.add_argument("--repeat", type=int, default=5, help="rounds; each method's best is kept")
    p.add_argument("--no-pydmd", action="store_true", help="skip the PyDMD baseline")
    p.add_argument("--no-reference", action="store_true", help="skip the float64 SVD reference")
    a = p.parse_args(argv)
    dtype = getattr(torch, a.dtype)
    W0 = trajectory_like(a.n, a.t, dtype=dtype, device=a.device, seed=0)
    size = W0.numel() * W0.element_size()
    print(f"W: ({a.n}, {a.t}) {a.dtype} on {a.device}, {size / 2**20:.0f} MiB; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; C kernels (numerics/_fused.c): "
          f"{'on' if native.library() is not None else 'off (not built, or KOOPMAN_TUT_NATIVE=0)'}")

    results, timed = {}, {}
    for layout in (LAYOUTS if a.layout == "both" else [a.layout]):
        W = LAYOUTS[layout](W0)
        print(f"\n{layout} W")
        timed[layout] = time_layout(W, a)
        print_table(timed[layout], size)
        results[layout] = kt.dmd(W)
        del W

    if not a.no_pydmd:
        from pydmd import DMD
        Wn = W0.cpu().numpy()
        holder = {}

        def run_pydmd():
            holder["p"] = DMD(svd_rank=-1, exact=True).fit(Wn)
            return holder["p"]
        t_p = measure_all({"PyDMD": run_pydmd}, "cpu", 1)["PyDMD"][0]
        print(f"\nPyDMD DMD(svd_rank=-1, exact=True) on the CPU: {t_p:.3f} s")

    print("\ntargets: kt.dmd + fixed_point and the affine limit <= 1.3x one float64 chunked Gram, "
          ">= 50x faster than PyDMD")
    if a.dtype == "float64":  # finer than the Gram's floor: numerics/refine.py
        print("  (float64 data: the affine limit reads W a second time, to resolve the differences as the QR "
              "route does; float32 data never does)")
    for layout, rows in timed.items():
        t_fp, floor_t = rows["kt.dmd + fixed_point"][0], rows["float64 chunked Gram (exact floor)"][0]
        t_lim = rows["affine limit, 1 delay"][0]
        half_t = rows["float64 chunked Gram, as kt.dmd does"][0]
        line = (f"  {layout:15s} {t_fp / floor_t:.2f}x the floor (affine limit, 1 delay: {t_lim / floor_t:.2f}x; "
                f"against kt.dmd's own Gram {t_fp / half_t:.2f}x and {t_lim / half_t:.2f}x)")
        if not a.no_pydmd:
            line += (f", {t_p / t_fp:.0f}x faster than PyDMD (kt.dmd alone {t_p / rows['kt.dmd'][0]:.0f}x, "
                     f"+all modes {t_p / rows['kt.dmd + all modes'][0]:.0f}x)")
        print(line)

    res = next(iter(results.values()))
    fp = res.fixed_point().double().cpu()
    cands = {f"koopman_tut ({k})": (r.eigs.cpu().numpy().astype(np.complex128), r.fixed_point().double().cpu().numpy())
             for k, r in results.items()}
    if not a.no_pydmd:
        pd = holder["p"]
        e_kt = res.eigs.cpu().numpy().astype(np.complex128)
        e_pd = np.asarray(pd.eigs, dtype=np.complex128)
        dist = np.min(np.abs(e_kt[:, None] - e_pd[None, :]), axis=1)
        k = int(np.argmin(np.abs(e_pd - 1)))
        fp_pd = np.real(pd.modes[:, k] * pd.amplitudes[k])
        rel = np.linalg.norm(fp.numpy() - fp_pd) / np.linalg.norm(fp_pd)
        top = res.singular_values.cpu().numpy() > 1e-3 * float(res.singular_values[0])
        print(f"\nranks: koopman_tut {res.rank}, PyDMD {len(e_pd)}")
        print(f"eigenvalue distance to PyDMD's nearest: median {np.median(dist):.2e}, max {dist.max():.2e}, "
              f"max over modes with s > 1e-3 s_max {dist[top].max():.2e}")
        print(f"eigenvalue closest to 1: koopman_tut {e_kt[res.closest()]:.8f}, PyDMD {e_pd[k]:.8f}")
        print(f"fixed point relative difference to PyDMD: {rel:.2e}")
        cands["PyDMD"] = (e_pd, fp_pd)

    if not a.no_reference:
        ref = kt.dmd(W0.double().cpu(), method="svd")
        fp_ref = ref.fixed_point()
        e_ref = ref.eigs.numpy()
        print("\nagainst a float64 thin-SVD reference:")
        for name, (e, f) in cands.items():
            d = np.min(np.abs(e[:, None] - e_ref[None, :]), axis=1)
            err = np.linalg.norm(f - fp_ref.numpy()) / np.linalg.norm(fp_ref.numpy())
            print(f"  {name:28s} eigenvalue distance median {np.median(d):.2e}, max {d.max():.2e}; "
                  f"fixed point relative error {err:.2e}")


if __name__ == "__main__":
    main()
