"""acc += b^H b for one chunk of rows b, its upper triangle only: BLAS's SYRK/HERK, done with GEMMs.

A Gram matrix is Hermitian, so a full GEMM computes every off-diagonal entry twice. On a CPU
the float64 Gram pass over a tall window is compute-bound, not memory-bound (1M x 64 float32
on 2 AMD cores: converting every chunk to float64 takes about 9 ms, the whole pass with one
GEMM per chunk 115-165 ms), so computing the upper triangle alone, block row by block row,

    acc[i:i+h, i:] += b[:, i:i+h]^H b[:, i:]        for i = 0, h, 2h, ...

does (T + h) / (2 T) of the flops: 5/8 for h = T / 4. Every entry is still one float64 dot
product over the chunk's rows, so the Gram's rounding bound is unchanged. Time is not flops:
MKL's GEMM speed depends on the shape, and blocks whose width is not a multiple of 64 bytes
(8 float64s, the width oneMKL's guide asks of leading dimensions) ran up to 1.4x slower than
one GEMM (T // 4 = 9, 12, 15, 18 at T = 36, 48, 60, 72). So h is T / 4 rounded up to a multiple
of 8, from 64 snapshots on. Measured with benchmarks/bench_gram_blocks.py (12.8M float32
entries, 2 AMD cores, MKL, two runs; with the rules / one GEMM; row-major, snapshot-major):
0.76, 0.86-0.88 at 64; 0.81-0.92, 0.81-0.90 at 65 to 113; 0.68-0.77, 0.72-0.80 at 128 to
257 (T // 4 itself: 1.43 and 1.07 at 72). Below 64 blocks were mixed (0.81-0.94 at 40 and 56,
1.05-1.26 row-major at 36, 48 and 60): one GEMM there. On an Intel Xeon (2 cores, same
benchmark) blocks were 1.02-1.12x slower from 64 to 96 and 0.89-0.99 from 128 on: there one
GEMM below 128 (:mod:`.cpu_routes`). On a GPU the pass is memory-bound and
each block is one more kernel launch: one GEMM there.
:func:`mirror_upper` fills the lower triangle once, after the last chunk.
"""
from __future__ import annotations

import torch

from . import cpu_routes

Tensor = torch.Tensor


def block_width(T: int) -> int:
    """Columns per block row for a (T, T) Gram: T (one GEMM) below 64 columns (below 128 where
    oneMKL runs on an Intel CPU: :mod:`.cpu_routes`), else T / 4 rounded up to a multiple of 8."""
    return T if T < (128 if cpu_routes.mkl_on_intel() else 64) else 8 * -(-T // 32)


def add_upper_gram_(acc: Tensor, b: Tensor) -> None:
    """acc (..., T, T) += b^H b for b (..., rows, T), correct in the upper triangle (and on a GPU,
    where it is one GEMM, everywhere). Finish with :func:`mirror_upper`."""
    if b.device.type != "cpu":
        acc += b.mH @ b
        return
    T = b.shape[-1]
    h = block_width(T)
    if b.dim() == 2 and b.dtype == acc.dtype:  # into acc in place, no (h, T - i) temporary: a pass adds ~100 chunks
        for i in range(0, T, h):
            acc[i:i + h, i:].addmm_(b[:, i:i + h].mH, b[:, i:])
        return
    for i in range(0, T, h):
        acc[..., i:i + h, i:] += b[..., i:i + h].mH @ b[..., i:]  # (h, T - i)


def mirror_upper(acc: Tensor) -> Tensor:
    """The Hermitian matrix (..., T, T) whose upper triangle is ``acc``'s (a complex diagonal made real)."""
    out = torch.triu(acc) + torch.triu(acc, 1).mH
    if out.is_complex():
        out.diagonal(dim1=-2, dim2=-1).imag.zero_()
    return out
