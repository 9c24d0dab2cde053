"""The version-1 disk format (no checksum), read only to convert it: :func:`convert_v1`.

Version 1 (koopman_tut before the checksummed format of :mod:`koopman_tut.recording.disk_format`):
magic b"KTTRAJMM", uint64 count at offset 8, uint64 L at 16, L bytes of JSON at 24 (the
same keys as version 2, "version": 1), then steps, learning rates and rows at the offsets
the header gives (steps 8-aligned after the header, learning rates right after the steps,
rows at the next multiple of 4096). ``Trajectory.load`` refuses these files and names this
converter: their header cannot be verified, so each field is checked here as strictly as
version 1 allows, and the complete snapshots are copied into a version-3 file.
"""
from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np
import torch

from . import disk_format as fmt
from .safe_files import CLOEXEC, check_target, claim_existing, create_temp, discard, publish
from .settings_log import group_row
from .storage import _RAW, DiskStorage


def read_v1(fd: int, path, size: int) -> tuple[dict, int, np.ndarray, np.ndarray]:
    """(header, count, steps (count,), lrs (count,)) of the version-1 file open as ``fd``; ValueError if damaged."""
    head = os.pread(fd, 24, 0)
    if len(head) < 24 or head[:8] != fmt.MAGIC_V1:
        raise ValueError(f"{path} is not a version-1 {fmt.FORMAT} file")
    count, length = struct.unpack_from("<QQ", head, 8)
    if not 0 < length <= min(fmt.MAX_HEADER, size - 24):
        raise ValueError(f"{path}: damaged version-1 file: header length {length}")
    h = fmt.parse(os.pread(fd, length, 24), path)
    fmt.check_fields(h, path, size, 1)
    steps_at, cap = h["steps_offset"], h["capacity"]
    want = (steps_at, steps_at + 8 * cap, fmt.align(steps_at + 16 * cap, 4096))
    if not fmt._int(steps_at, 24 + length, size) or steps_at % 8 or \
            (h["steps_offset"], h["lrs_offset"], h["data_offset"]) != want:
        raise ValueError(f"{path}: damaged version-1 file: offsets are not where the format puts them")
    fmt.check_size(h, path, size)
    row = h["n"] * fmt.itemsize(h)
    if not 0 < count <= cap or size < h["data_offset"] + count * row:
        raise ValueError(f"{path}: damaged or empty version-1 file: count {count} of capacity {cap}, {size} bytes")
    steps = np.frombuffer(os.pread(fd, 8 * count, h["steps_offset"]), dtype="<i8")
    if steps[0] < 0 or (np.diff(steps) <= 0).any():
        raise ValueError(f"{path}: damaged version-1 file: the steps are not increasing")
    lrs = np.frombuffer(os.pread(fd, 8 * count, h["lrs_offset"]), dtype="<f8")
    fmt.check_log(lrs.reshape(-1, 1, 1), ("lr",), steps, path)
    return h, count, steps, lrs


def convert_v1(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the complete snapshots of a version-1 recording ``src`` into a new version-3 file ``dst``.

    The new file is written under a temporary name beside ``dst`` (:mod:`koopman_tut.recording.safe_files`),
    flushed to the device, and renamed onto ``dst`` only once complete: an interrupted conversion leaves
    ``dst`` (and ``src``) as they were, and at most a hidden ``.NAME.*.tmp`` file beside it to delete.

    Parameters
    ----------
    src : a file recorded by ``TrajectoryRecorder(path=)`` in the version-1 format.
    dst : the new file (capacity = the complete snapshots; marked closed: version 1 cannot tell a
        recording cut short). Refused if it exists, unless ``overwrite``; ``src`` is never changed,
        unless it is ``dst`` itself (``convert_v1(f, f, overwrite=True)`` converts in place, safely).
    overwrite : replace a file at ``dst`` (not one a recorder is writing).

    Returns
    -------
    Path of ``dst``, loadable with ``Trajectory.load``.

    Raises
    ------
    ValueError : ``src`` is not an intact version-1 file; ``dst`` is a symlink or not a regular file.
    FileExistsError : ``dst`` exists (without ``overwrite``) or a recorder is writing it.
    TypeError : ``dst`` not a path, ``overwrite`` not a bool.
    """
    dst = check_target(dst, overwrite)
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a named pipe would wait for a writer, for ever
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"src {str(src)!r} is not a regular file (a version-1 recording is one)")
    with os.fdopen(fd, "rb") as f:
        h, count, steps, lrs = read_v1(f.fileno(), src, os.fstat(f.fileno()).st_size)
        rows = np.memmap(f, dtype=_RAW[fmt.itemsize(h)], mode="r", offset=h["data_offset"], shape=(count, h["n"]))
        held = claim_existing(dst) if overwrite else None  # no recorder starts on dst meanwhile
        tmp = None
        try:
            fd, tmp = create_temp(dst)  # the name, reserved: DiskStorage replaces it with the new file
            os.close(fd)
            _copy(tmp, h, steps, lrs, rows)
            publish(tmp, dst, overwrite)
        except BaseException:
            if tmp is not None:
                discard(None, tmp)
            raise
        finally:
            if held is not None:
                os.close(held)
    return dst


def _copy(path: Path, h: dict, steps: np.ndarray, lrs: np.ndarray, rows: np.ndarray) -> None:
    """Write the version-3 file ``path`` (replacing the empty file there): every row as recorded, closed, fsync'ed."""
    dtype = fmt.DTYPES[h["dtype"]]
    first = group_row((h["meta"].get("groups") or [h["meta"]])[0])  # version 1 logged the first group's lr only
    st = DiskStorage(path, h["names"], [tuple(s) for s in h["shapes"]], h["n"], len(steps), dtype, h["meta"],
                     overwrite=True)
    try:
        for k in range(len(steps)):
            st.data[k] = torch.from_numpy(rows[k].copy()).view(dtype)  # the raw bytes, as recorded
            st.commit(k, int(steps[k]), np.array([(float(lrs[k]), *first[1:])]))
    finally:
        st.close()
    fd = os.open(path, os.O_RDONLY | CLOEXEC)
    try:
        os.fsync(fd)  # the rows (written through the map) on the device before the rename publishes them
    finally:
        os.close(fd)
