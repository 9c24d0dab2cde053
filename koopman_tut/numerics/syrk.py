"""acc += b^H b for one chunk of rows b, its upper triangle only: BLAS's SYRK/HERK, done with GEMMs.

A Gram matrix is Hermitian, so a full GEMM computes every off-diagonal entry twice. On a CPU
the float64 Gram pass over a tall window is compute-bound, not memory-bound (1M x 64 float32
on 2 AMD cores: converting every chunk to float64 takes about 9 ms, the whole pass with one
GEMM per chunk 115-165 ms), so computing the upper triangle alone, block row by block row,

    acc[i:i+h, i:] += b[:, i:i+h]^H b[:, i:]        for i = 0, h, 2h, ...

does (T + h) / (2 T) of the work: 5/8 for T = 64, h = 16. Every entry is still one float64
dot product over the chunk's rows, so the Gram's rounding bound is unchanged. The blocks are
measured, not derived (benchmarks/bench_dmd.py); below 32 columns one GEMM is as fast. On a
GPU the pass is memory-bound and each block is one more kernel launch: one GEMM there.
:func:`mirror_upper` fills the lower triangle once, after the last chunk.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def block_width(T: int) -> int:
    """Columns per block row for a (T, T) Gram: T (one GEMM) below 32 columns, else T / 4, at least 16."""
    return T if T < 32 else max(16, T // 4)


def add_upper_gram_(acc: Tensor, b: Tensor) -> None:
    """acc (..., T, T) += b^H b for b (..., rows, T), correct in the upper triangle (and on a GPU,
    where it is one GEMM, everywhere). Finish with :func:`mirror_upper`."""
    if b.device.type != "cpu":
        acc += b.mH @ b
        return
    T = b.shape[-1]
    h = block_width(T)
    for i in range(0, T, h):
        acc[..., i:i + h, i:] += b[..., i:i + h].mH @ b[..., i:]  # (h, T - i)


def mirror_upper(acc: Tensor) -> Tensor:
    """The Hermitian matrix (..., T, T) whose upper triangle is ``acc``'s."""
    return torch.triu(acc) + torch.triu(acc, 1).mH
