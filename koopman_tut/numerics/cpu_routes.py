"""Which CPU kernels the float64 passes over W take: chosen by the CPU that runs torch's BLAS.

torch's CPU BLAS is Intel's oneMKL, and oneMKL runs different code on Intel and AMD CPUs.
Two choices of the passes were measured to go opposite ways on the two (1M x 64 float32,
2 cores, ``benchmarks/bench_gram_blocks.py`` and ``benchmarks/bench_dmd.py``):

* the Gram by block rows of its upper triangle (:mod:`.syrk`): 0.76-0.88 of one GEMM's time
  at T = 64 on AMD EPYC, 1.12 on an Intel Xeon (where blocks gain only from T = 128 on:
  0.97-0.99 at 128, 0.89-0.90 at 257);
* one combination W @ c of row-major W (:func:`.matmul.matmul_chunked`, the fixed point
  and the window's limit): a float64 GEMV per chunk ran about 4x slower than a multiply
  and a sum on AMD, and 2.3x faster on the Intel Xeon (31 ms against 72 ms, in chunks of
  1 MiB, which stay in its 2 MiB L2).

Both routes give the same float64 products and sums up to the order of summation, so the
rounding bounds the tests check hold on either; the tests run both on every machine. Where
the C kernels were built (:mod:`.native`), float32 data with contiguous rows or snapshots
take them instead, for the conversions and for one combination, on either CPU.
"""
from __future__ import annotations

import functools

import torch

INTEL_CHUNK_ELEMENTS = 2**17  # float64 elements per chunk of a combination W @ C there (1 MiB): rows = this // T


CPUINFO = "/proc/cpuinfo"


def cpu_vendor() -> str:
    """The CPU's vendor string from /proc/cpuinfo ('GenuineIntel', 'AuthenticAMD'), '' where unreadable."""
    try:
        with open(CPUINFO) as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.cache
def mkl_on_intel() -> bool:
    """True where torch's CPU BLAS is oneMKL running on an Intel CPU (read once per process)."""
    return torch.backends.mkl.is_available() and cpu_vendor() == "GenuineIntel"
