"""The fused float32 -> float64 passes of ``_fused.c``, where they were built (optional).

torch takes a chunk's deviations or steps in two passes (convert, then subtract) and a
combination W @ c as a conversion and then a product; ``_fused.c`` does each in one pass
over the float32 data, on torch's own OpenMP threads. The numbers are the same: the
deviations and steps bit for bit (each value is converted to float64 before it is
subtracted; only a NaN's payload may differ), a combination up to the order of its float64 sum.

Each function returns ``None`` where it does not apply (a chunk pass, ``False`` for rows it does
not hold), and the caller runs torch instead: the library was not built (no C compiler when the package was installed),
``KOOPMAN_TUT_NATIVE=0`` is set, torch does not run on GNU OpenMP, the data are not float32
on the CPU, W has no entries, or neither the rows nor the snapshots of W are contiguous.

The same library copies a recorder's snapshot into its row (:class:`RowCopy`, any dtype, also
where torch does not run on GNU OpenMP: then on one thread) and runs its per-step checks in one call
(:func:`checker`); ``KOOPMAN_TUT_NATIVE=0`` switches them off with the rest (:func:`library` answers for
the float32 -> float64 kernels alone).

Measured (1M x 64 float32, 2 cores of an Intel Xeon, ``benchmarks/bench_dmd.py``): the
deviations' Gram pass 0.088 s against 0.097 s through torch (the plain float64 Gram:
0.087 s), one combination 0.015 s against 0.026 s (row-major; snapshot-major 0.011 s,
four snapshots a sweep, against 0.032 s; reading W once, ``W.sum()``, 0.012 s).
"""
from __future__ import annotations

import ctypes
import functools
import itertools
import os
import warnings

import torch

Tensor = torch.Tensor

ENV = "KOOPMAN_TUT_NATIVE"  # "0": torch everywhere
SWITCH = {"0": False, "false": False, "off": False, "no": False, "1": True, "true": True, "on": True, "yes": True,
          "": True}
ABI = 4  # _fused.c's KT_ABI: a library built from other sources is not used


def switched_on() -> bool:
    """KOOPMAN_TUT_NATIVE as a switch (unset: on); ValueError naming it for any other value (a typo such
    as 'flase' must not leave the kernels on without a word)."""
    value = os.environ.get(ENV, "1").strip().lower()
    if value not in SWITCH:
        raise ValueError(f"{ENV}={os.environ[ENV]!r}: expected 0/false/off/no (torch's passes) or "
                         "1/true/on/yes (the C kernels where they were built)")
    return SWITCH[value]


def _torch_openmp() -> ctypes.CDLL | None:
    """torch's own GNU OpenMP runtime (libgomp, as loaded in this process), or None."""
    if not torch.backends.openmp.is_available():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "libgomp" in line.rsplit("/", 1)[-1]})
    except OSError:
        return None
    own = os.path.join(os.path.dirname(torch.__file__), "lib")
    mine = [p for p in paths if p.startswith(own)] or [p for p in paths if ".libs/" not in p]
    return ctypes.CDLL(mine[0]) if len(mine) == 1 else None


@functools.cache
def _built() -> ctypes.CDLL | None:
    """The library built from this package's sources (read once per process), or None: switched off, not built,
    or built from other sources (a warning)."""
    if not switched_on():
        return None
    try:
        from . import _fused
    except ImportError:
        return None
    lib = ctypes.CDLL(_fused.__file__)
    if lib.kt_abi() != ABI:
        warnings.warn(f"{_fused.__file__} was built from other sources (ABI {lib.kt_abi()}, expected {ABI}); "
                      "the passes run in torch. Rebuild it: pip install -e .", RuntimeWarning, stacklevel=2)
        return None
    P, N = ctypes.c_void_p, ctypes.c_ssize_t
    for name in ("kt_deviations", "kt_steps"):
        getattr(lib, name).argtypes = [P, N, N, P, N, N, N, N, ctypes.c_int]
    lib.kt_combine.argtypes = [P, N, N, P, P, N, N, ctypes.c_int]
    lib.kt_copy_row.argtypes = [P, P, P, ctypes.c_int, ctypes.c_int]
    lib.kt_set_openmp.argtypes = [P, P]
    gomp = _torch_openmp()
    if gomp is not None:  # else every kernel runs on the calling thread alone
        lib.kt_set_openmp(ctypes.cast(gomp.GOMP_parallel, P), ctypes.cast(gomp.omp_get_thread_num, P))
    return lib


def checker():
    """``holds(spec)``, the compiled per-step check of a recorder (:mod:`koopman_tut.recording.step_checks`), or None
    where the library was not built or is switched off (the recorder then checks in Python alone)."""
    if _built() is None:
        return None
    from . import _fused
    return getattr(_fused, "holds", None)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The float32 -> float64 kernels, or None where torch's passes run instead (also where torch does
    not run on GNU OpenMP: these passes must share torch's threads)."""
    lib = _built()
    return lib if lib is not None and _torch_openmp() is not None else None


def _fits(W: Tensor) -> bool:
    """float32 (n, T), n, T >= 1, on the CPU with its rows or its snapshots contiguous, and no lazy
    negation (``torch._neg_view``: the kernels read the stored numbers)."""
    return (W.dtype == torch.float32 and W.device.type == "cpu" and W.dim() == 2 and min(W.shape) > 0
            and (W.stride(1) == 1 or W.stride(0) == 1) and not W.is_neg() and library() is not None)


class ChunkPass:
    """``fill(start, stop)``: ``dst[:stop - start]`` <- kernel ``name`` ("kt_deviations" or "kt_steps") of rows
    start:stop of W, True once done, False (nothing written) for rows outside W or more than dst holds. Built by
    :func:`chunk_pass`, which checks the layouts once for a whole pass of chunks (each check and each attribute
    read costs microseconds, and a pass over 1M x 64 has 123 chunks)."""

    def __init__(self, name: str, dst: Tensor, W: Tensor):
        self._keep = W, dst  # the addresses below stay valid while these live
        (self._si, self._st), (self._di, self._dt) = W.stride(), dst.stride()
        (self._n, self._T), self._most = W.shape, dst.shape[0]
        self._fn, self._w, self._d = getattr(library(), name), W.data_ptr(), dst.data_ptr()
        self._step = self._si * W.element_size()

    def __call__(self, start: int, stop: int) -> bool:
        if not 0 <= start < stop <= min(self._n, start + self._most):
            return False
        return self._fn(self._w + start * self._step, self._si, self._st, self._d, self._di, self._dt, stop - start,
                        self._T, torch.get_num_threads()) == 0


def chunk_pass(name: str, dst: Tensor, W: Tensor) -> ChunkPass | None:
    """A :class:`ChunkPass` of kernel ``name`` over W (n, T) into dst (rows, T), or None where the kernel does not
    apply to them (the caller takes torch's route). For a chunk w of W:

    * "kt_deviations": [w_0 - r, ..., w_{T-2} - r, r], r = w_{T-1};
    * "kt_steps": [w_1 - w_0, ..., w_{T-1} - w_{T-2}, 0 - w_{T-1}]."""
    if not (_fits(W) and dst.dtype == torch.float64 and dst.device.type == "cpu" and dst.dim() == 2
            and dst.shape[1] == W.shape[1] and dst.shape[0] > 0 and not dst.is_neg()):
        return None
    (si, st), (di, dt) = W.stride(), dst.stride()
    T, most = W.shape[1], dst.shape[0]  # dst's entries must not overlap (an expanded dst, which torch refuses)
    if not ((st == 1 and dt == 1 and (most == 1 or di >= T)) or (si == 1 and di == 1 and (T == 1 or dt >= most))):
        return None
    return ChunkPass(name, dst, W)


def combine(W: Tensor, c: Tensor) -> Tensor | None:
    """W @ c (n,) for float32 W (n, T) and c (T,): float64 products and sums, rounded once to
    float32; None where the kernel does not apply."""
    if not _fits(W) or c.shape != (W.shape[1],):
        return None
    c = c.detach().to(device="cpu", dtype=torch.float64).contiguous()
    out = torch.empty(W.shape[0], dtype=torch.float32)
    si, st = W.stride()
    rc = library().kt_combine(W.data_ptr(), si, st, c.data_ptr(), out.data_ptr(), W.shape[0], W.shape[1],
                              torch.get_num_threads())
    return out if rc == 0 else None


class RowCopy:
    """``copy(k)``: row k of a recorder's CPU storage (capacity, n) <- the values of ``sources``, flattened one
    after another, through ``kt_copy_row`` (streaming stores, on torch's threads for a row of 256 KiB or more).

    Measured (the digits MLP's 116,618 float32 parameters into huge-page storage, inside training steps, 2 cores
    of an Intel Xeon, ``benchmarks/bench_recording.py``): 36-40 us on 2 threads, 51 us on one, where
    ``numpy.concatenate`` takes 73-87 us and ``copy_`` of the same values held in one tensor 67 us.
    :meth:`args` gives the compiled checks (:func:`checker`) what they need to copy the row beside them.
    """

    def __init__(self, lib: ctypes.CDLL, sources: list[Tensor], storage: Tensor):
        # the addresses below stay valid while these live, and their storages cannot be resized (freed and
        # allocated anew elsewhere, as FSDP does with storage().resize_): a NumPy view makes torch refuse that
        self._keep = [t.view(torch.uint8).numpy() for t in (*sources, storage[0])], sources, storage
        self._src = (ctypes.c_void_p * len(sources))(*(s.data_ptr() for s in sources))
        self._ends = (ctypes.c_ssize_t * len(sources))(*itertools.accumulate(
            s.numel() * s.element_size() for s in sources))
        self._at, self._stride, self.rows = storage.data_ptr(), storage.stride(0) * storage.element_size(), len(storage)
        self._fn, self._pieces = lib.kt_copy_row, (ctypes.addressof(self._src), ctypes.addressof(self._ends), len(sources))

    def __call__(self, k: int) -> None:
        self._fn(*self.args(k))

    def args(self, k: int) -> tuple[int, ...]:
        """``kt_copy_row``'s arguments for row k (also those the compiled checks take to copy it beside them)."""
        if not 0 <= k < self.rows:
            raise IndexError(f"row {k} of a storage of {self.rows} rows")
        return self._at + k * self._stride, *self._pieces, torch.get_num_threads()


def row_copy(sources: list[Tensor], storage: Tensor) -> RowCopy | None:
    """A :class:`RowCopy` of ``sources`` (contiguous CPU tensors of ``storage``'s dtype, as many values as a row)
    into the rows of ``storage`` (capacity, n) on the CPU with contiguous rows; None where that does not hold,
    or the library was not built (the caller copies another way)."""
    lib = _built()
    fits = (lib is not None and len(sources) > 0 and storage.dim() == 2 and storage.device.type == "cpu"
            and storage.shape[0] > 0 and storage.stride(1) == 1 and storage.stride(0) >= storage.shape[1]
            and not storage.is_neg() and not storage.is_conj() and sum(s.numel() for s in sources) == storage.shape[1]
            and all(s.dim() == 1 and s.device.type == "cpu" and s.dtype == storage.dtype and s.is_contiguous()
                    and not s.is_neg() and not s.is_conj() for s in sources))
    return RowCopy(lib, sources, storage) if fits and not _overlap(sources, storage) else None


def _overlap(sources: list[Tensor], storage: Tensor) -> bool:
    """Whether a source's bytes lie inside the storage's (the copy would read what it writes)."""
    lo = storage.data_ptr()
    hi = lo + ((storage.shape[0] - 1) * storage.stride(0) + storage.shape[1]) * storage.element_size()
    return any(s.numel() and s.data_ptr() < hi and lo < s.data_ptr() + s.numel() * s.element_size() for s in sources)
