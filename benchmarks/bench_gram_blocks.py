"""What the Gram pass's two layout rules buy, window length by window length.

    python benchmarks/bench_gram_blocks.py [--entries 12800000] [--t 32 48 64 ...] [--repeat 9]

kt.dmd's float64 Gram pass (koopman_tut.numerics.snapshots.step_gram) follows two rules chosen
from measurements like these: from 64 snapshots on a CPU it adds the upper triangle alone, by
block rows of a multiple of 8 columns (koopman_tut.numerics.syrk.block_width), and a row-major
chunk buffer whose rows would span a power of two of bytes gets 64 bytes of padding
(snapshots.chunk_buffer). For each T and memory order this times the pass as it is against the
same pass with neither rule (one GEMM per chunk, rows packed), on alternating runs over the same
float32 data of about --entries numbers, and prints the median of the paired ratios (below 1:
the rules make it faster). Rules tuned to one machine's BLAS can lose on another: run it there.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import torch

from koopman_tut.numerics import snapshots, syrk


@contextmanager
def without_rules():
    """step_gram with one GEMM per chunk into packed buffers (the pass before the rules)."""
    width, padding = syrk.block_width, snapshots.row_padding
    syrk.block_width, snapshots.row_padding = (lambda T: T), (lambda *_: 0)
    try:
        yield
    finally:
        syrk.block_width, snapshots.row_padding = width, padding


def seconds(W: torch.Tensor) -> float:
    t0 = time.perf_counter()
    snapshots.step_gram(W)
    return time.perf_counter() - t0


def paired_ratio(W: torch.Tensor, repeat: int) -> tuple[float, float]:
    """(median of time with the rules / time without, the best time without) over ``repeat`` pairs."""
    ratios, plain = [], []
    for _ in range(repeat):
        with without_rules():
            t_plain = seconds(W)
        ratios.append(seconds(W) / t_plain)
        plain.append(t_plain)
    return statistics.median(ratios), min(plain)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=12_800_000, help="about n * T float32 numbers per window")
    p.add_argument("--t", type=int, nargs="+", default=[32, 48, 56, 63, 64, 65, 72, 81, 96, 128, 160, 257])
    p.add_argument("--repeat", type=int, default=9, help="pairs of runs per shape (median ratio)")
    a = p.parse_args(argv)
    print(f"step_gram with the rules / without (one GEMM per chunk, packed rows), median of {a.repeat} pairs; "
          f"{torch.get_num_threads()} threads")
    print(f"{'T':>4} {'block':>5} {'row-major':>10} {'snapshot-major':>15}   one GEMM, row-major")
    g = torch.Generator().manual_seed(0)
    for T in a.t:
        n = max(1, a.entries // T)
        row = torch.randn(n, T, generator=g)
        snap = torch.randn(T, n, generator=g).mT  # each snapshot contiguous, as a recorder stores it
        (r_row, t_row), (r_snap, _) = paired_ratio(row, a.repeat), paired_ratio(snap, a.repeat)
        print(f"{T:4d} {syrk.block_width(T):5d} {r_row:10.2f} {r_snap:15.2f}   {1e3 * t_row:.1f} ms")


if __name__ == "__main__":
    main()
