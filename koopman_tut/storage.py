"""Where a recorder keeps its snapshots: preallocated memory, or a memory-mapped file on disk.

The disk format (``TrajectoryRecorder(..., path=FILE)``; read back by ``Trajectory.load(FILE)``)
is one file, every integer little-endian::

    offset 0             8 bytes                 magic b"KTTRAJMM"
    offset 8             uint64                  count: snapshots complete (see below)
    offset 16            uint64                  L, the length of the JSON header
    offset 24            L bytes                 JSON header, UTF-8 (below)
    header["steps_offset"]  int64[capacity]      optimizer step of snapshot k (valid for k < count)
    header["lrs_offset"]    float64[capacity]    learning rate at snapshot k
    header["data_offset"]   dtype[capacity, n]   the snapshots, row-major: snapshot k is row k,
                                                 n contiguous elements (data_offset is a multiple of 4096)

The JSON header holds {"format": "koopman_tut.trajectory-mmap", "version": 1, "names",
"shapes", "dtype" (a torch dtype name, e.g. "float32"; stored as its raw bytes, so bfloat16
works too), "n", "capacity", "byteorder": "little", "layout", the three offsets, "meta"
(recording stride, optimizer settings, and for sharded recordings the rows held)}.

The recorder writes snapshot k's row, then its step and learning rate, and only then
``count = k + 1``: a process that dies (an exception, SIGKILL) leaves a file whose first
``count`` snapshots are complete, since its pages belong to the kernel's page cache. With
``sync=True`` each snapshot is also msync'ed to the device before and after the count, so a
power loss leaves the same guarantee, at the cost of a synchronous write per snapshot.

Reading maps the file copy-on-write: the (n, count) snapshots are a transposed view of the
mapped rows (numpy.memmap -> torch.from_numpy, no copy), paged in as the chunked passes of
:func:`koopman_tut.dmd` read them; writing to them never changes the file.
"""
from __future__ import annotations

import errno
import json
import math
import mmap
import os
import struct
from pathlib import Path

import numpy as np
import torch

MAGIC = b"KTTRAJMM"
FORMAT, VERSION = "koopman_tut.trajectory-mmap", 1
_RAW = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}  # raw element of each size; torch reinterprets


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


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
    return torch.zeros(capacity, n, dtype=dtype, device=device)


def is_disk_trajectory(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with this format's magic bytes."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


class DiskStorage:
    """A new trajectory file of ``capacity`` snapshots of n values, mapped for writing.

    Attributes
    ----------
    data : (capacity, n) tensor of ``dtype`` on the CPU, a view of the file's snapshot rows.
    """

    def __init__(self, path: str | os.PathLike, names: list[str], shapes: list[tuple[int, ...]], n: int,
                 capacity: int, dtype: torch.dtype, meta: dict, sync: bool = False):
        self.path, self.sync = Path(path), sync
        item = torch.empty((), dtype=dtype).element_size()
        header = {"format": FORMAT, "version": VERSION, "names": list(names), "shapes": [list(s) for s in shapes],
                  "dtype": str(dtype).removeprefix("torch."), "n": n, "capacity": capacity,
                  "byteorder": "little", "layout": "row-major (capacity, n): snapshot k is row k",
                  "meta": meta}
        steps_offset = _align(24 + len(_encode(header, 0, 0, 0)) + 200, 8)  # room for the offsets' digits
        lrs_offset = steps_offset + 8 * capacity
        data_offset = _align(lrs_offset + 8 * capacity, 4096)
        text = _encode(header, steps_offset, lrs_offset, data_offset)  # fits: 200 bytes spare for the digits
        size = data_offset + capacity * n * item
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()  # a new file: whoever still maps the old one keeps reading it intact
        with open(self.path, "wb") as f:
            f.write(MAGIC + struct.pack("<QQ", 0, len(text)) + text)
            f.truncate(size)
            try:
                os.posix_fallocate(f.fileno(), 0, size)  # ENOSPC now, not SIGBUS in the middle of training
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # the filesystem cannot preallocate
                    raise OSError(e.errno, f"cannot reserve {size / 2**30:.2f} GiB for {self.path}: {e.strerror}")
        self._file = open(self.path, "r+b")
        self._map = mmap.mmap(self._file.fileno(), size)
        self.steps = np.frombuffer(self._map, dtype="<i8", count=capacity, offset=steps_offset)
        self.lrs = np.frombuffer(self._map, dtype="<f8", count=capacity, offset=lrs_offset)
        raw = np.frombuffer(self._map, dtype=_RAW[item], count=capacity * n, offset=data_offset)
        self.data = torch.from_numpy(raw.reshape(capacity, n)).view(dtype)

    def commit(self, k: int, step: int, lr: float) -> None:
        """Snapshot k's row is written: record its step and lr, then count = k + 1 (in that order)."""
        self.steps[k], self.lrs[k] = step, lr
        if self.sync:
            self._map.flush()
        struct.pack_into("<Q", self._map, 8, k + 1)
        if self.sync:
            self._map.flush()


def _align(x: int, a: int) -> int:
    return -(-x // a) * a


def _encode(header: dict, steps_offset: int, lrs_offset: int, data_offset: int) -> bytes:
    h = dict(header, steps_offset=steps_offset, lrs_offset=lrs_offset, data_offset=data_offset)
    return json.dumps(h).encode()


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """(JSON header, count of complete snapshots); ValueError for a damaged or foreign file."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:8] != MAGIC:
            raise ValueError(f"{path} is not a {FORMAT} file")
        count, length = struct.unpack("<QQ", head[8:])
        try:
            header = json.loads(f.read(length).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: damaged {FORMAT} header ({e})") from e
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"{path}: format {header.get('format')!r} version {header.get('version')!r}, "
                         f"expected {FORMAT!r} version {VERSION}")
    n, cap = int(header["n"]), int(header["capacity"])
    if sum(math.prod(s) for s in header["shapes"]) != n or count > cap \
            or os.path.getsize(path) < header["data_offset"] + cap * n * _itemsize(header["dtype"]):
        raise ValueError(f"{path} is inconsistent (truncated, or its header does not describe its data)")
    return header, int(count)


def _itemsize(name: str) -> int:
    return torch.empty((), dtype=getattr(torch, name)).element_size()


def open_trajectory(path: str | os.PathLike):
    """The trajectory in a file written by a recorder with ``path=``: snapshots (n, count), a
    copy-on-write mapped view (no copy); the snapshots complete when it was opened."""
    from .trajectory import Trajectory

    header, count = read_header(path)
    if count == 0:
        raise ValueError(f"{path} holds no complete snapshot yet")
    n, dtype = int(header["n"]), getattr(torch, header["dtype"])
    item = _itemsize(header["dtype"])
    rows = np.memmap(path, dtype=_RAW[item], mode="c", offset=header["data_offset"], shape=(count, n))
    snaps = torch.from_numpy(rows).view(dtype).T  # (n, count)
    steps = np.fromfile(path, dtype="<i8", count=count, offset=header["steps_offset"])
    lrs = np.fromfile(path, dtype="<f8", count=count, offset=header["lrs_offset"])
    meta = dict(header["meta"], lrs=lrs.tolist())
    if "rows" in meta:  # JSON has lists only
        meta["rows"], meta["all_shapes"] = tuple(meta["rows"]), [tuple(s) for s in meta["all_shapes"]]
    return Trajectory(snaps, torch.from_numpy(steps.astype(np.int64)), list(header["names"]),
                      [tuple(s) for s in header["shapes"]], meta)
