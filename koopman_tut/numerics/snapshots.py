"""The snapshot matrix: validation, and the one-pass Gram matrix behind tall-skinny DMD.

A trajectory W = [w_0 ... w_{T-1}] of shape (n_features, n_snapshots), n >> T (Redman et
al., ICLR 2022; method of snapshots, Sirovich 1987). G = W^H W holds both X^H X and X^H Y
of exact DMD (Tu et al. 2014), since X and Y are column slices of W.

Accuracy does not depend on the BLAS. Every chunk of rows is converted to float64 before
anything is computed with it, so every operation rounds to float64 (unit roundoff
u = eps64 / 2): the difference of two float32 (or float16) numbers is even exact unless
they differ by more than 2^29 in magnitude, and a product of two float32 numbers always
is. No summation order can push the result further than (n + 2) u from the exact Gram,
relative to the sum of the absolute products. A float32 accumulation, by contrast, cannot
resolve singular values below ~1e-3 of the deviations' norm, and what it gives depends on
the kernel's order.

Nothing here is differentiable: W is detached (analysis of a trajectory, not a training
step), so data that still requires grad is read, not recorded in an autograd graph.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from . import native
from .finite import FLOAT_DTYPES, check_has_values
from .memory import gram_zeros
from .syrk import add_upper_gram_, mirror_upper

Tensor = torch.Tensor
CHUNK_ELEMENTS = 2**19  # float64 elements per chunk buffer (4 MiB, stays in a last-level cache): rows = this // T
CHUNK_ELEMENTS_GPU = 2**25  # 256 MiB: each chunk costs kernel launches; 4 MiB ones took an H200's 20M x 64 float64
# Gram to 96 ms, where one float32 product takes 4 (bench_dmd.py)


def as_snapshots(W, name: str = "W", min_snapshots: int = 2, min_rows: int = 1, batch: bool = True) -> Tensor:
    """Validate a snapshot matrix and return it as a torch tensor, without copying it.

    float16 and bfloat16 stay as they are (no float32 copy of the whole matrix): every consumer converts one chunk
    of rows at a time. A masked array with masked entries is refused (their values would be read as data).

    Parameters
    ----------
    W : torch.Tensor or numpy.ndarray, shape (n_features, n_snapshots) or (B, n_features, n_snapshots)
    """
    if isinstance(W, np.ma.MaskedArray) and np.ma.is_masked(W):
        raise TypeError(f"{name} is a masked array with masked entries: fill them ({name}.filled(...)) or drop them")
    if isinstance(W, np.ndarray):
        if W.dtype.kind not in "fc" or W.dtype.itemsize > 16 or (W.dtype.kind == "f" and W.dtype.itemsize > 8):
            raise TypeError(f"{name} must hold floating-point values (float16/float32/float64, or complex), "
                            f"got numpy dtype {W.dtype}")
        if not W.dtype.isnative:
            raise TypeError(f"{name} has byte order {W.dtype.byteorder!r}, not the machine's: convert it with "
                            f"{name}.astype({name}.dtype.newbyteorder('='))")
        with warnings.catch_warnings():  # a read-only array (np.load(mmap_mode='r')): only read here, never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            try:  # any layout (a transposed memory map stays one): strides in bytes, multiples of the itemsize
                W = torch.from_numpy(W)
            except ValueError:  # negative strides (W[:, ::-1]) or unaligned ones, which torch cannot view: copied
                W = torch.from_numpy(np.ascontiguousarray(W))
    elif not isinstance(W, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray of shape "
                        f"(n_features, n_snapshots), got {type(W).__name__}")
    if W.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {W.layout}: call {name}.to_dense()")
    check_has_values(W, name)
    if W.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be floating point (float16/bfloat16/float32/float64), got {W.dtype}")
    if W.ndim not in ((2, 3) if batch else (2,)):  # batch: a batch of windows is accepted
        raise ValueError(f"{name} must be 2-D (n_features, n_snapshots)" + (
            " or 3-D (batch, n_features, n_snapshots)" if batch else " (one window)")
            + f", got {W.ndim} dimension(s), shape {tuple(W.shape)}")
    if W.shape[-1] < min_snapshots:
        raise ValueError(f"{name} needs at least {min_snapshots} snapshots (columns), got {W.shape[-1]}; "
                         f"snapshots are columns: shape is (n_features, n_snapshots)")
    if W.shape[-2] < min_rows:
        raise ValueError(f"{name} has no features (rows)")
    return W.detach()


def check_chunk_rows(chunk_rows) -> None:
    if chunk_rows is not None and (isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer))
                                   or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be None (automatic) or an integer >= 1, got {chunk_rows!r}")


def default_chunk_rows(T: int, device=None) -> int:
    """Rows per chunk for T snapshots: 4 MiB of float64 on a CPU, 256 MiB on a GPU (``device``)."""
    gpu = device is not None and torch.device(device).type not in ("cpu", "meta")
    return max(1, (CHUNK_ELEMENTS_GPU if gpu else CHUNK_ELEMENTS) // T)


def _acc_dtype(W: Tensor) -> torch.dtype:
    return torch.complex128 if W.is_complex() else torch.float64


def snapshot_major(W: Tensor) -> bool:
    """True when each snapshot (column of W) is contiguous: a recorder's (T, n) storage seen as (n, T)."""
    return W.stride(-2) < W.stride(-1)


def chunk_buffer(W: Tensor, rows: int, columns: int | None = None) -> Tensor:
    """An empty (..., rows, columns) float64 (complex128 for complex W) buffer laid out in W's
    memory order; ``columns`` defaults to W's T.

    Converting a chunk of W into it then reads and writes contiguously, and a GEMM on it
    reads it the way its rows (row-major W) or snapshots (snapshot-major W, as recorded)
    lie. Measured at 1M x 64 float32 on 2 cores (MKL): the Gram pass over a recorded
    trajectory took 0.33 s through a row-major buffer and 0.15 s through this one.

    A row-major buffer whose rows would span a power of two of at least 256 bytes (T = 32,
    64, 128 float64s) gets 64 bytes of padding at the end of each row: such strides map
    every row onto the same cache sets, and oneMKL's guide advises against them. Measured
    (step_gram, 12.8M float32 entries, 2 AMD cores): one GEMM per chunk 0.88-0.89 of the time
    without padding at those three; at strides that are not powers of two (T = 24, 40, 56)
    padding made it 1.10-1.18x slower, so they keep none.
    """
    lead, T, dtype = W.shape[:-2], columns or W.shape[-1], _acc_dtype(W)
    if snapshot_major(W):
        return torch.empty(lead + (T, rows), dtype=dtype, device=W.device).mT
    pad = row_padding(T, torch.empty((), dtype=dtype).element_size(), W.device)
    return torch.empty(lead + (rows, T + pad), dtype=dtype, device=W.device)[..., :T]


def row_padding(T: int, itemsize: int, device: torch.device) -> int:
    """Elements of padding after each row of T items in a row-major chunk buffer (see
    :func:`chunk_buffer`): 64 bytes where a row would span a power of two of at least 256 bytes,
    on a CPU; none otherwise."""
    width = T * itemsize  # bytes per row
    return 64 // itemsize if device.type == "cpu" and width >= 256 and width & (width - 1) == 0 else 0


def deviation_gram(W: Tensor, chunk_rows: int | None = None) -> Tensor:
    """The Gram matrix of [w_0 - r, ..., w_{T-2} - r, r], r = w_{T-1} (the last snapshot), in float64, one pass.

    Parameters
    ----------
    W : Tensor, shape (..., n, T), any device and float dtype.
    chunk_rows : rows per chunk; peak extra memory is chunk_rows * T float64s.

    Returns
    -------
    acc : Tensor, shape (..., T, T), float64 (complex128 for complex W), on the CPU.
        With the deviations D = W - r 1^T, whose last column is zero:
        acc[:T-1, :T-1] = D^H D (without that zero column), acc[:T-1, T-1] = D^H r,
        acc[T-1, T-1] = r^H r. Both the Gram of W (:func:`assemble_gram`) and the Gram of
        the differences w_{t+1} - w_t (:func:`difference_gram`) follow from it, with
        rounding relative to ||D||^2 (small near convergence) rather than ||W||^2.
        Row-sharded data (torch.distributed) sums these matrices over ranks.

    Notes
    -----
    Each chunk is converted to float64 and the deviations are taken there (exactly for
    float32/float16 data unless two values of a row differ by more than 2^29 in
    magnitude), so the result differs from the exact Gram of the stored numbers only by
    float64 rounding: at most (n + 2) u |D|^H |D| entrywise, u = eps64 / 2, whatever the
    order of summation (Higham, Accuracy and Stability, 3.1).
    """
    check_chunk_rows(chunk_rows)
    W = W.detach()  # read, never differentiated (see the module's notes)
    n, T = W.shape[-2], W.shape[-1]
    chunk_rows = chunk_rows or default_chunk_rows(T, W.device)
    acc = gram_zeros(W, _acc_dtype(W))  # MemoryError naming W's shape where (T, T) would not fit
    buf = chunk_buffer(W, min(chunk_rows, n))
    fill = native.chunk_pass("kt_deviations", buf, W)  # one pass a chunk where it was built (numerics/native.py)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        b = buf[..., : stop - start, :]  # (..., rows, T)
        if fill is None or not fill(start, stop):
            b.copy_(W[..., start:stop, :])  # converted to float64 on the way, no temporary
            b[..., : T - 1].sub_(b[..., T - 1:])  # [w_t - r for t < T-1, r], in float64
        add_upper_gram_(acc, b)  # (..., T, T), small
    return mirror_upper(acc).cpu()


def step_gram(W: Tensor, chunk_rows: int | None = None) -> Tensor:
    """The Gram matrix of [d_0, ..., d_{T-2}, r], d_t = w_{t+1} - w_t (the steps), r = w_{T-1},
    in float64, one pass: the same work as :func:`deviation_gram`.

    Its (T-1, T-1) block is the steps' Gram with rounding relative to the steps themselves,
    where :func:`difference_gram` of the deviations' Gram has rounding relative to the
    deviations from r, tens of steps long in a window that still moves: the steps' small
    singular values (the modes that have nearly decayed) are resolved about that many times
    finer. :func:`deviation_from_steps` gives :func:`deviation_gram`'s matrix from it.
    """
    check_chunk_rows(chunk_rows)
    W = W.detach()
    n, T = W.shape[-2], W.shape[-1]
    chunk_rows = chunk_rows or default_chunk_rows(T, W.device)
    acc = gram_zeros(W, _acc_dtype(W))  # MemoryError naming W's shape where (T, T) would not fit
    rows = min(chunk_rows, n)
    buf, steps = chunk_buffer(W, rows, T + 1), chunk_buffer(W, rows)  # buf: [w_0 ... w_{T-1}, 0]
    buf[..., T].zero_()
    fill = native.chunk_pass("kt_steps", steps, W)  # one pass a chunk where it was built (numerics/native.py)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        b, d = buf[..., : stop - start, :], steps[..., : stop - start, :]  # (..., rows, T + 1), (..., rows, T)
        if fill is None or not fill(start, stop):
            b[..., :T].copy_(W[..., start:stop, :])  # converted to float64 on the way
            torch.sub(b[..., 1:], b[..., :-1], out=d)  # [d_0 ... d_{T-2}, 0 - r] in one operation, in float64
        add_upper_gram_(acc, d)
    acc = mirror_upper(acc)
    for side in (acc[..., : T - 1, T - 1], acc[..., T - 1, : T - 1]):  # the Gram of [d, -r] -> of [d, r]: exact
        torch.sub(0.0, side, out=side)  # 0 - x, not -x: a zero stays +0.0, as a sum of products gives it
    return acc.cpu()


def deviation_from_steps(sacc: Tensor) -> Tensor:
    """:func:`deviation_gram`'s matrix from :func:`step_gram`'s: the deviations are sums of steps,
    w_t - r = -(d_t + .. + d_{T-2}), i.e. D = -S L with L[j, t] = 1 for j >= t, so
    D^H D = L^T (S^H S) L and D^H r = -L^T (S^H r) (rounding ~ T eps64 ||D||^2)."""
    T = sacc.shape[-1]
    L = torch.tril(torch.ones(T - 1, T - 1, dtype=sacc.dtype))
    out = torch.empty_like(sacc)
    out[..., : T - 1, : T - 1] = L.mT @ sacc[..., : T - 1, : T - 1] @ L
    out[..., : T - 1, T - 1] = -(L.mT @ sacc[..., : T - 1, T - 1:])[..., 0]
    out[..., T - 1, : T - 1] = out[..., : T - 1, T - 1].conj()
    out[..., T - 1, T - 1] = sacc[..., T - 1, T - 1]
    return out


def _deviation_parts(acc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """D^H D (..., T, T), D^H r (..., T) and r^H r (...) from :func:`deviation_gram`'s matrix."""
    T = acc.shape[-1]
    dd = torch.zeros_like(acc)
    dd[..., : T - 1, : T - 1] = acc[..., : T - 1, : T - 1]
    dr = torch.zeros_like(acc[..., 0])
    dr[..., : T - 1] = acc[..., : T - 1, T - 1]
    return dd, dr, acc[..., T - 1, T - 1]


def assemble_gram(acc: Tensor) -> Tensor:
    """G = W^H W (..., T, T) from :func:`deviation_gram`'s matrix."""
    dd, dr, rr = _deviation_parts(acc)
    # W = D + r 1^T  =>  W^H W = D^H D + (D^H r) 1^T + 1 (r^H D) + (r^H r) 1 1^T
    return dd + dr[..., :, None] + dr.conj()[..., None, :] + rr[..., None, None]


def difference_matrix(T: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """M (T, T-1) with W @ M = [w_1 - w_0, ..., w_{T-1} - w_{T-2}] (successive differences)."""
    M = torch.zeros(T, T - 1, dtype=dtype)
    idx = torch.arange(T - 1)
    M[idx, idx], M[idx + 1, idx] = -1, 1
    return M


def difference_gram(acc: Tensor) -> Tensor:
    """Gram (..., T-1, T-1) of the successive differences, from :func:`deviation_gram`'s matrix.

    w_{t+1} - w_t = d_{t+1} - d_t for the deviations d, so it is M^H (D^H D) M: rounding is
    relative to the drift over the window, not to the size of the parameters.
    """
    M = difference_matrix(acc.shape[-1], acc.dtype)
    return M.mH @ _deviation_parts(acc)[0] @ M


def gram(W: Tensor, chunk_rows: int | None = None) -> Tensor:
    """G = W^H W (..., T, T) in float64 on the CPU, one chunked pass (see :func:`deviation_gram`)."""
    return assemble_gram(deviation_gram(W, chunk_rows))
