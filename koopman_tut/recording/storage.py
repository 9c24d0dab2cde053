"""Where a recorder keeps its snapshots: preallocated memory, or a memory-mapped file on disk.

The file (``TrajectoryRecorder(..., path=FILE)``, read back by ``Trajectory.load(FILE)``) is
in the format of :mod:`koopman_tut.recording.disk_format` (version 3: a checksummed header checked
field by field, then steps, every parameter group's optimizer settings and the raw row-major (capacity, n) snapshots).
It is created through a temporary file beside FILE and renamed into place only once its
space is reserved (:mod:`koopman_tut.recording.safe_files`): an existing FILE is refused unless
``overwrite=True`` and is untouched until then; a symlink is never followed; the mode
follows the umask; the writer holds an exclusive lock on it, so a second recorder on the
same path is refused.

The recorder writes snapshot k's row, then its settings and step, and only then
``count = k + 1``: a process that dies (an exception, SIGKILL) leaves a file whose complete
snapshots load, since its pages belong to the kernel's page cache; loading it warns that
the recording was cut short. With ``sync=True`` each snapshot is also msync'ed to the
device before and after the count, so a power loss leaves the same guarantee, at the cost
of a synchronous write per snapshot.

Reading maps the file copy-on-write: the (n, count) snapshots are a transposed view of the
mapped rows (numpy.memmap -> torch.from_numpy, no copy), paged in as the chunked passes of
:func:`koopman_tut.numerics.dmd` read them; writing to them never changes the file. Files of the
version-1 format are refused with the way to convert them (:func:`koopman_tut.recording.disk_v1.convert_v1`).
"""
from __future__ import annotations

import errno
import mmap
import os
import struct
import warnings
import weakref

import numpy as np
import torch

from . import disk_format as fmt
from .disk_format import MAGIC, MAGIC_V1, MAGIC_V2, RecordingCutShortWarning
from ..numerics.memory import available_bytes
from .settings_log import KEYS, meta_entries
from .safe_files import check_target, claim_existing, create_temp, discard, is_locked, lock, publish, unlock

_RAW = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}  # raw element of each size; torch reinterprets


def allocate(capacity: int, n: int, dtype: torch.dtype, device: torch.device, max_fraction: float) -> torch.Tensor:
    """Zeroed (capacity, n) storage in memory (zeros: pages committed now); MemoryError if it would not fit."""
    need = n * capacity * torch.empty((), dtype=dtype).element_size()
    free = available_bytes(device)
    if need > max_fraction * free:
        raise MemoryError(f"recording {n:,} parameters x {capacity:,} snapshots in {dtype} needs "
                          f"{need / 2**30:.2f} GiB on {device}, but only {free / 2**30:.2f} GiB is "
                          f"free: record every k steps (every=), a shorter window (start/stop), "
                          f"fewer parameters (params=), float16 storage (dtype=), to disk (path=) "
                          f"or sharded over ranks (shard=True)")
    if device.type == "cpu":
        rows = _huge_page_zeros((capacity, n), dtype, need)
        if rows is not None:
            return rows
    return torch.zeros(capacity, n, dtype=dtype, device=device)


def _huge_page_zeros(shape: tuple[int, int], dtype: torch.dtype, nbytes: int) -> torch.Tensor | None:
    """Zeroed CPU rows in an anonymous mapping advised to use transparent huge pages (Linux), or
    None where that is not available.

    The recorder writes one row of snapshots per step into storage it last touched long ago.
    With 4 KiB pages, each row costs a TLB miss per page (a 0.5 MB row: 128 of them); with
    2 MiB pages the same copy measured twice as fast (benchmarks/bench_recording.py). The
    mapping is freed with the last tensor that views it (``torch.frombuffer`` holds it).
    """
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None or nbytes < 2**21:
        return None
    try:
        mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mapping.madvise(advice)
    except (OSError, ValueError, AttributeError):
        return None
    rows = torch.frombuffer(mapping, dtype=dtype).view(shape)
    rows.zero_()  # already zero: touching commits the pages now, not in the training loop
    return rows


def is_disk_trajectory(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with the magic bytes of this format (version 3, 2 or 1)."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) in (MAGIC, MAGIC_V2, MAGIC_V1)


class DiskStorage:
    """A new trajectory file of ``capacity`` snapshots of n values, mapped for writing.

    Parameters
    ----------
    path : the file to create (not a symlink); refused if it exists, unless ``overwrite``.
    names, shapes, n : the recorded tensors, in flattening order; n the sum of their sizes.
    capacity, dtype : snapshots the file holds, and their floating dtype.
    meta : JSON-serialisable recording metadata (stride, optimizer settings).
    sync : msync every committed snapshot (survives a power loss).
    overwrite : replace an existing regular file at ``path`` (only once the new one is allocated).
    groups : parameter groups whose settings each snapshot logs (:mod:`koopman_tut.recording.settings_log`).
    window : a window end was asked for (the recorder's ``stop``): a file closed before :meth:`close` is told
        the window is complete is marked STOPPED (an exception, Ctrl-C, ``remove()``), and loads with a warning.

    Attributes
    ----------
    data : (capacity, n) tensor of ``dtype`` on the CPU, a view of the file's snapshot rows.

    Raises
    ------
    FileExistsError : ``path`` exists (without ``overwrite``) or another recorder is writing it.
    ValueError, TypeError : a symlink or non-file at ``path``; a bad argument.
    OSError : the space cannot be reserved (a full disk, a file-size limit): nothing is left behind.
    """

    def __init__(self, path: str | os.PathLike, names: list[str], shapes: list[tuple[int, ...]], n: int,
                 capacity: int, dtype: torch.dtype, meta: dict, sync: bool = False, overwrite: bool = False,
                 groups: int = 1, window: bool = False):
        self.path, self.sync = check_target(path, overwrite), sync
        item = torch.empty((), dtype=dtype).element_size()
        blob, h = fmt.encode(names, shapes, n, capacity, dtype, meta, groups)
        size = h["data_offset"] + capacity * n * item
        held = claim_existing(self.path) if overwrite else None  # no recorder starts on the old file meanwhile
        fd, tmp = None, None
        try:
            fd, tmp = create_temp(self.path)
            lock(fd, self.path)
            self._map = _reserve(fd, size, self.path)
            self._map[:len(blob)] = blob
            self.steps = np.frombuffer(self._map, dtype="<i8", count=capacity, offset=h["steps_offset"])
            self.settings = np.frombuffer(self._map, dtype="<f8", count=capacity * groups * len(KEYS),
                                          offset=h["settings_offset"]).reshape(capacity, groups, len(KEYS))
            self.steps[:] = -1  # not written yet
            self._map.flush()
            publish(tmp, self.path, overwrite)
        except BaseException:
            if tmp is not None:
                discard(fd, tmp)
            raise
        finally:
            if held is not None:
                os.close(held)
        raw = np.frombuffer(self._map, dtype=_RAW[item], count=capacity * n, offset=h["data_offset"])
        self.data = torch.from_numpy(raw.reshape(capacity, n)).view(dtype)
        self._end = [fmt.STOPPED if window else fmt.CLOSED]  # the state a close writes, until the window is complete
        self._finalizer = weakref.finalize(self, _close, self._map, fd, sync, os.getpid(), self._end)

    def commit(self, k: int, step: int, settings: np.ndarray) -> None:
        """Snapshot k's row is written: record its optimizer settings (groups, 6), its step, then
        count = k + 1 (in that order)."""
        self.settings[k] = settings
        self.steps[k] = step  # snapshot k is complete from here on
        self._flush()
        struct.pack_into("<Q", self._map, 8, k + 1)
        self._flush()

    def _flush(self) -> None:
        """Onto the disk now (with ``sync``), so that what follows never reaches it first."""
        if self.sync:
            self._map.flush()

    @property
    def is_open(self) -> bool:
        """Whether snapshots may still be written (not yet closed)."""
        return self._finalizer.alive

    def uncommit(self, k: int) -> None:
        """Count = k again (snapshot k's commit was interrupted, or done and then dropped): the recorder
        writes row k anew with the next snapshot."""
        struct.pack_into("<Q", self._map, 8, k)
        self.steps[k] = -1  # after the count: the file never counts a snapshot without its step
        self._flush()

    def close(self, complete: bool = False) -> None:
        """The recording is over: mark the file CLOSED (``complete``: its window ended or its storage is full;
        else STOPPED if a window end was asked for) and release the writer's lock (idempotent; also run, not
        complete, when this object is collected or the process exits). ``data`` stays readable."""
        if complete and self._finalizer.alive:
            self._end[0] = fmt.CLOSED
        self._finalizer()


def _reserve(fd: int, size: int, path) -> mmap.mmap:
    """Reserve ``size`` bytes for the file open as ``fd`` (ENOSPC/EFBIG now, not SIGBUS mid-training) and map it."""
    try:
        os.ftruncate(fd, size)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # the filesystem cannot preallocate
                raise
    except OSError as e:
        raise OSError(e.errno, f"cannot reserve {size / 2**30:.3f} GiB for {path}: {e.strerror}") from e
    return mmap.mmap(fd, size)


def _close(mm: mmap.mmap, fd: int, sync: bool, pid: int, end: list[bytes]) -> None:
    if os.getpid() != pid:  # a forked child (e.g. a DataLoader worker) leaves the parent's file alone
        return
    try:
        mm[16:24] = end[0]  # CLOSED, or STOPPED before the window asked for ended
        if sync:
            mm.flush()
    except ValueError:  # the map was closed
        pass
    finally:
        unlock(fd)
        os.close(fd)


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """(the checked JSON header, count of committed snapshots) of a version-3 (or 2) file; ValueError if damaged."""
    with open(path, "rb") as f:
        h, count, _ = fmt.read_header(f.fileno(), path, os.fstat(f.fileno()).st_size)
    return h, count


def open_recording(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, list[str], list[tuple], dict]:
    """The recording in a file written by a recorder with ``path=``, as the parts of a
    :class:`koopman_tut.Trajectory` (snapshots, steps, names, shapes, meta): snapshots (n, k) are a
    copy-on-write mapped view (no copy) of the k snapshots complete when it was opened.

    ``meta["recording"]`` is "in progress" (a recorder is writing the file), "cut short" (its
    process ended without closing it) or "stopped early" (closed before the window it was asked for
    ended: an exception, Ctrl-C, ``remove()``); the last two with a :class:`RecordingCutShortWarning`
    saying how many snapshots there are. Absent for a finished recording. ValueError for a damaged, foreign or
    version-1 file, and for settings of a complete snapshot a recorder cannot write (a learning rate
    that is not finite, a flag other than 0 or 1, ...; the log and the steps carry no checksum, so a flipped
    bit that leaves a finite number, or steps still increasing, loads as that number). ``meta`` holds the settings
    logged per snapshot (:func:`koopman_tut.recording.settings_log.meta_entries`; a version-2 file logged the first
    group's lr only).
    """
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        if os.pread(fd, len(MAGIC_V1), 0) == MAGIC_V1:
            raise ValueError(f"{path} is in the version-1 disk format, whose header carries no checksum: convert it "
                             f"once with koopman_tut.recording.disk_v1.convert_v1({str(path)!r}, NEW_PATH) and load "
                             f"NEW_PATH (NEW_PATH may be the same path, with overwrite=True)")
        locked = is_locked(fd)  # before the header: a writer that stops later has written all it counts
        h, count, state = fmt.read_header(fd, path, size)
        live = state == fmt.WRITING and locked
        cap, n, item = h["capacity"], h["n"], fmt.itemsize(h)
        steps = np.frombuffer(os.pread(fd, 8 * cap, h["steps_offset"]), dtype="<i8")
        k = fmt.complete_snapshots(h, count, state, steps, live, path)
        if k == 0:
            why = {fmt.WRITING: "was cut short before its first snapshot (its process ended without closing the file)",
                   fmt.STOPPED: "was stopped before its first snapshot", fmt.CLOSED: "is closed"}[state]
            raise ValueError(f"{path} holds no complete snapshot " + ("yet" if live else f"and its recording {why}, "
                                                                       "so nothing will come"))
        if size < h["data_offset"] + k * n * item:
            raise ValueError(f"{path} is inconsistent: truncated inside its {k} complete snapshots "
                             f"({size} bytes, {h['data_offset'] + k * n * item} needed)")
        rows = np.memmap(f, dtype=_RAW[item], mode="c", offset=h["data_offset"], shape=(k, n))
        at, groups, keys = fmt.log_layout(h)
        log = np.frombuffer(os.pread(fd, 8 * k * groups * len(keys), at), dtype="<f8").reshape(k, groups, len(keys))
        fmt.check_log(log, keys, steps, path)
    meta = dict(h["meta"], **(meta_entries(h["meta"], log) if keys == KEYS else {"lrs": log[:, 0, 0].tolist()}))
    if "rows" in meta:  # JSON has lists only
        meta["rows"] = tuple(meta["rows"])
    if "all_shapes" in meta:
        meta["all_shapes"] = [tuple(s) for s in meta["all_shapes"]]
    if k < cap and state == fmt.WRITING:
        meta["recording"] = "in progress" if live else "cut short"
        if not live:
            warnings.warn(f"{path}: the recording was cut short (its process ended without closing the file: killed?) "
                          f"after {k} of {cap} snapshots; the {k} complete snapshots are loaded",
                          RecordingCutShortWarning, stacklevel=3)
    elif state == fmt.STOPPED:
        meta["recording"] = "stopped early"
        warnings.warn(f"{path}: the recording was stopped before its window ended (an exception, Ctrl-C, or remove() "
                      f"before the last step) after {k} of {cap} snapshots, last step {int(steps[k - 1])}; the {k} "
                      f"snapshots are loaded", RecordingCutShortWarning, stacklevel=3)
    snaps = torch.from_numpy(rows).view(fmt.DTYPES[h["dtype"]]).T  # (n, k)
    return snaps, torch.from_numpy(steps[:k].astype(np.int64)), list(h["names"]), [tuple(s) for s in h["shapes"]], meta
