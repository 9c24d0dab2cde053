"""The version-1 disk format (no checksum), read only to convert it: :func:`convert_v1`.

Version 1 (koopman_tut before the checksummed format of :mod:`koopman_tut.recording.disk_format`):
magic b"KTTRAJMM", uint64 count at offset 8, uint64 L at 16, L bytes of JSON at 24 (the
same keys as version 2, "version": 1), then steps, learning rates and rows at the offsets
the header gives (steps 8-aligned after the header, learning rates right after the steps,
rows at the next multiple of 4096). ``Trajectory.load`` refuses these files and names this
converter: their header cannot be verified, so each field is checked here as strictly as
version 1 allows, and the complete snapshots are copied into a version-2 file.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch

from . import disk_format as fmt
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
    fmt.check_lrs(lrs, steps, path)
    return h, count, steps, lrs


def convert_v1(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the complete snapshots of a version-1 recording ``src`` into a new version-2 file ``dst``.

    Parameters
    ----------
    src : a file recorded by ``TrajectoryRecorder(path=)`` in the version-1 format.
    dst : the new file (capacity = the complete snapshots; marked closed: version 1 cannot tell a
        recording cut short). Refused if it exists, unless ``overwrite``; ``src`` is never changed.

    Returns
    -------
    Path of ``dst``, loadable with ``Trajectory.load``.
    """

    with open(src, "rb") as f:
        h, count, steps, lrs = read_v1(f.fileno(), src, os.fstat(f.fileno()).st_size)
        dtype, n = fmt.DTYPES[h["dtype"]], h["n"]
        rows = np.memmap(f, dtype=_RAW[fmt.itemsize(h)], mode="r", offset=h["data_offset"], shape=(count, n))
        st = DiskStorage(dst, h["names"], [tuple(s) for s in h["shapes"]], n, count, dtype, h["meta"],
                         overwrite=overwrite)
        for k in range(count):
            st.data[k] = torch.from_numpy(rows[k].copy()).view(dtype)  # the raw bytes, as recorded
            st.commit(k, int(steps[k]), float(lrs[k]))
        st.close()
    return Path(dst)
