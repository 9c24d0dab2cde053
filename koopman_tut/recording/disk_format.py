"""The recorder's disk format, version 3: byte layout, header encoding, and every check a reader makes.

One file, written by ``TrajectoryRecorder(..., path=FILE)`` (:class:`koopman_tut.recording.storage.DiskStorage`)
and mapped by ``Trajectory.load(FILE)``; the fixed-size integers are little-endian::

    offset 0      8 bytes             magic b"KTTRAJM3"
    offset 8      uint64              count: snapshots committed (see below)
    offset 16     8 bytes             state: b"WRITING\\0" while a recorder may write, b"CLOSED\\0\\0" after,
                                      b"STOPPED\\0" after, closed before the window asked for ended
    offset 24     uint32              L: length of the JSON header (space padded, a multiple of 8)
    offset 28     uint32              CRC-32 (zlib.crc32) of bytes 24:28 followed by the L header bytes
    offset 32     L bytes             the JSON header, UTF-8
    32 + L        int64[capacity]     "steps_offset": optimizer step of snapshot k; -1 until it is complete
    + 8 capacity  float64[capacity, G, 7]  "settings_offset": the optimizer settings of snapshot k's step,
                                      per parameter group: lr, momentum, dampening, weight decay,
                                      nesterov (0/1), maximize (0/1), and restarts (momentum buffers
                                      replaced so far) (:mod:`koopman_tut.recording.settings_log`)
    next multiple of 4096: dtype[capacity, n]  "data_offset": snapshot k is row k, n contiguous
                                      values of ``dtype`` in the byte order header["byteorder"]

The JSON header is {"format": "koopman_tut.recording.trajectory-mmap", "version": 3, "names", "shapes",
"dtype" (float16, bfloat16, float32 or float64, stored as raw bytes), "n" (the sum of the
shapes' sizes), "capacity", "byteorder" ("little" or "big": the writer's), "layout", the
three offsets (exactly where the layout above puts them), "settings" (the seven names above, in
order), "groups" (G >= 1), "meta" (recording stride, optimizer settings when recording started;
for sharded recordings the rows held)}. A reader checks the checksum, then every field (type,
range, consistency with the others and with the file's size): anything else raises ValueError
naming what is wrong.

Version 2 (b"KTTRAJM2") is the same but for one float64 per snapshot, the first group's lr, at
"lrs_offset" (no "settings" or "groups"): such files still load, with that lr only.

Commit order: the recorder writes snapshot k's row, its settings, its step, and only
then count = k + 1. A snapshot is complete once its step is written, so the steps are the
commit log and count is checked against them: a CLOSED file (its window ended, or the recorder
was removed or its process exited where no window end was asked for) or a STOPPED one (closed
before the window asked for ended: an exception, Ctrl-C, ``remove()``; loading warns) has exactly
count steps written; a WRITING file whose
writer still holds its lock (``flock``) is a recording in progress (count snapshots); a
WRITING file without it was cut short (SIGKILL, power loss): count or count + 1 snapshots
are complete, and loading warns (:class:`RecordingCutShortWarning`). Cutting the file after
its complete rows (dropping unused capacity) leaves it valid.
"""
from __future__ import annotations

import json
import math
import os
import struct
import sys
import zlib

import numpy as np
import torch

from .settings_log import FLAGS, KEYS as SETTINGS
from .validation import DTYPE_NAMES

MAGIC, MAGIC_V2, MAGIC_V1 = b"KTTRAJM3", b"KTTRAJM2", b"KTTRAJMM"
FORMAT, VERSION = "koopman_tut.recording.trajectory-mmap", 3
WRITING, CLOSED, STOPPED = b"WRITING\0", b"CLOSED\0\0", b"STOPPED\0"
PREFIX = 32  # magic, count, state, L, CRC
LAYOUT = "row-major (capacity, n): snapshot k is row k"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
KEYS_V2 = {"format", "version", "names", "shapes", "dtype", "n", "capacity", "byteorder", "layout",
           "steps_offset", "lrs_offset", "data_offset", "meta"}
KEYS = KEYS_V2 - {"lrs_offset"} | {"settings_offset", "settings", "groups"}
MAX_GROUPS = 1 << 16
ADDED = ("lrs", "group_lrs", "group_settings", "recording")  # meta keys the reader adds, never in a header
MAX_HEADER, MAX_SIZE = 1 << 24, 1 << 56


class RecordingCutShortWarning(UserWarning):
    """A disk recording whose process ended without closing it (killed): only its complete snapshots load."""


def align(x: int, a: int) -> int:
    return -(-x // a) * a


def offsets(header_length: int, capacity: int, width: int = 1) -> tuple[int, int, int]:
    """(steps_offset, settings_offset (lrs_offset in version 2), data_offset) of a file whose log holds
    ``width`` float64 per snapshot (G x 6; 1 in version 2): where the layout puts them."""
    steps = PREFIX + header_length
    log = steps + 8 * capacity
    return steps, log, align(log + 8 * capacity * width, 4096)


def log_layout(h: dict) -> tuple[int, int, tuple[str, ...]]:
    """(offset, groups G, names of the numbers per group) of a checked header's settings log: version 3
    logs :data:`~koopman_tut.recording.settings_log.KEYS` for each group, version 2 the first group's lr."""
    if h["version"] == 2:
        return h["lrs_offset"], 1, ("lr",)
    return h["settings_offset"], h["groups"], tuple(h["settings"])


def encode(names: list[str], shapes: list[tuple[int, ...]], n: int, capacity: int, dtype: torch.dtype,
           meta: dict, groups: int = 1) -> tuple[bytes, dict]:
    """(the first bytes of a new file: magic, count 0, WRITING, the sealed header; the header), for a log of
    ``groups`` parameter groups' settings."""
    if not meta_ok(json.loads(json.dumps(meta, default=str))):
        raise ValueError(f"meta {meta!r:.200} has a value of the wrong type, or a key the reader adds "
                         f"({', '.join(map(repr, ADDED))})")
    if not _int(groups, 1, MAX_GROUPS):
        raise ValueError(f"groups must be an integer in [1, {MAX_GROUPS}] (parameter groups logged), got {groups!r}")
    h = {"format": FORMAT, "version": VERSION, "names": list(names), "shapes": [list(s) for s in shapes],
         "dtype": str(dtype).removeprefix("torch."), "n": n, "capacity": capacity, "byteorder": sys.byteorder,
         "layout": LAYOUT, "steps_offset": 0, "settings_offset": 0, "data_offset": 0, "settings": list(SETTINGS),
         "groups": groups, "meta": meta}
    try:
        length = align(len(json.dumps(h, allow_nan=False).encode()) + 64, 8)  # room for the offsets' digits
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta must hold JSON values (str, finite numbers, bools, lists, dicts): {e}") from None
    h["steps_offset"], h["settings_offset"], h["data_offset"] = offsets(length, capacity, groups * len(SETTINGS))
    text = json.dumps(h).encode()
    return MAGIC + struct.pack("<Q", 0) + WRITING + seal(text.ljust(length)), h


def seal(text: bytes) -> bytes:
    """L and the CRC-32 of (L, text), then text: bytes 24 onwards of the header."""
    length = struct.pack("<I", len(text))
    return length + struct.pack("<I", zlib.crc32(length + text)) + text


def _bad(path, what: str) -> ValueError:
    return ValueError(f"{path}: damaged {FORMAT} file: {what}")


def read_header(fd: int, path, size: int) -> tuple[dict, int, bytes]:
    """(header, count, state) of the version-3 (or 2) file open as ``fd``; ValueError unless every field checks."""
    head = os.pread(fd, PREFIX, 0)
    if len(head) < PREFIX or head[:8] not in (MAGIC, MAGIC_V2):
        raise ValueError(f"{path} is not a {FORMAT} version-{VERSION} (or 2) file")
    version = VERSION if head[:8] == MAGIC else 2
    (count,), state, (length, crc) = struct.unpack_from("<Q", head, 8), head[16:24], struct.unpack_from("<II", head, 24)
    if state not in (WRITING, CLOSED, STOPPED):
        raise _bad(path, f"state field {state!r} is none of {WRITING!r}, {CLOSED!r}, {STOPPED!r}")
    if length % 8 or not 0 < length <= min(MAX_HEADER, size - PREFIX):
        raise _bad(path, f"header length {length} (a multiple of 8, at most {min(MAX_HEADER, size - PREFIX)})")
    text = os.pread(fd, length, PREFIX)
    if zlib.crc32(head[24:28] + text) != crc:
        raise _bad(path, "the header's checksum does not match (the header was changed or damaged)")
    h = parse(text, path, KEYS if version == VERSION else KEYS_V2)
    check_fields(h, path, size, version)
    if version == VERSION and (h["settings"] != list(SETTINGS) or not _int(h["groups"], 1, MAX_GROUPS)):
        raise _bad(path, f"settings {h['settings']!r:.100} (expected {list(SETTINGS)}) or groups {h['groups']!r:.40} "
                         f"(an integer in [1, {MAX_GROUPS}])")
    listed = h["meta"].get("groups")
    listed = len(listed) if isinstance(listed, list) else 0
    if version == VERSION and h["groups"] not in (1, listed):
        raise _bad(path, f"groups {h['groups']} is neither 1 (a converted version-1 file) nor the number of "
                         f"parameter groups in its meta, {listed}")
    log, groups, keys = log_layout(h)
    want = offsets(length, h["capacity"], groups * len(keys))
    if (h["steps_offset"], log, h["data_offset"]) != want:
        raise _bad(path, f"offsets {h['steps_offset']}, {log}, {h['data_offset']} are not where the "
                         f"format puts them, {want}")
    check_size(h, path, size)
    return h, count, state


def parse(text: bytes, path, keys: set = KEYS_V2) -> dict:
    """The JSON header with exactly the format's ``keys`` (NaN/Infinity refused)."""
    def refuse(name):
        raise ValueError(f"{name} is not a JSON number")
    try:
        h = json.loads(text.decode(), parse_constant=refuse)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _bad(path, f"the header is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(h, dict) or set(h) != keys:
        got = sorted(h) if isinstance(h, dict) else type(h).__name__
        raise _bad(path, f"header keys {got}, expected {sorted(keys)}")
    return h


def _int(x, lo: int, hi: int) -> bool:
    return type(x) is int and lo <= x <= hi


def _ints(s, lo: int = 0) -> bool:
    return isinstance(s, list) and all(_int(d, lo, MAX_SIZE) for d in s)


def _strs(s) -> bool:
    return isinstance(s, list) and all(isinstance(x, str) for x in s)


def _number(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


_META = {"every": lambda v: _int(v, 1, MAX_SIZE), "n_total": lambda v: _int(v, 1, MAX_SIZE),
         "optimizer": lambda v: isinstance(v, str), "nesterov": lambda v: type(v) is bool,
         "trained_in": lambda v: v in DTYPE_NAMES,
         "maximize": lambda v: type(v) is bool, "other_momentum": lambda v: type(v) is bool,
         "momentum": _number, "dampening": _number, "weight_decay": _number,
         "rows": lambda v: _ints(v) and len(v) == 2 and v[0] <= v[1], "all_names": _strs,
         "groups": lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v),
         "all_shapes": lambda v: isinstance(v, list) and all(_ints(s) for s in v),
         **{k: (lambda v: False) for k in ADDED}}


def meta_ok(meta) -> bool:
    """Whether ``meta`` is a dict whose known keys hold values of their type (and none the reader adds)."""
    return isinstance(meta, dict) and all(f(meta[k]) for k, f in _META.items() if k in meta)


def check_fields(h: dict, path, size: int, version: int) -> None:
    """Every field but the offsets: its type, its range, and its consistency with the others."""
    if h["format"] != FORMAT or not _int(h["version"], version, version):
        raise ValueError(f"{path}: format {h['format']!r} version {h['version']!r}, expected {FORMAT!r} "
                         f"version {version}")
    names, shapes, n, cap = h["names"], h["shapes"], h["n"], h["capacity"]
    if not _strs(names) or not names:
        raise _bad(path, "names must be a non-empty list of strings")
    if not isinstance(shapes, list) or len(shapes) != len(names) or not all(_ints(s) for s in shapes):
        raise _bad(path, f"shapes must be {len(names)} lists of non-negative integers, one per name")
    if not _int(n, 1, MAX_SIZE) or sum(math.prod(s) for s in shapes) != n:
        raise _bad(path, f"n = {n!r} is not the number of values the shapes hold")
    if not _int(cap, 1, size // 16):
        raise _bad(path, f"capacity {cap!r} must be an integer in [1, {size // 16}] for a file of {size} bytes")
    if h["dtype"] not in DTYPES:
        raise _bad(path, f"dtype {h['dtype']!r} is not one of {', '.join(DTYPES)}")
    if h["byteorder"] not in ("little", "big") or h["layout"] != LAYOUT:
        raise _bad(path, f"byteorder {h['byteorder']!r} (little or big) or layout {h['layout']!r}")
    if h["byteorder"] != sys.byteorder:
        raise ValueError(f"{path} was written on a {h['byteorder']}-endian machine and this one is "
                         f"{sys.byteorder}-endian: its snapshots would be misread; load it where it was written")
    meta = h["meta"]
    if not meta_ok(meta):
        raise _bad(path, f"meta must be a dict with well-typed values, got {meta!r:.200}")
    if "rows" in meta and meta["rows"][1] - meta["rows"][0] != n:
        raise _bad(path, f"meta rows {meta['rows']} do not hold n = {n} values")


def itemsize(h: dict) -> int:
    return torch.empty((), dtype=DTYPES[h["dtype"]]).element_size()


def check_size(h: dict, path, size: int) -> None:
    """The steps and learning rates lie in the file, and the file ends at or before the last row."""
    full = h["data_offset"] + h["capacity"] * h["n"] * itemsize(h)
    if size < h["data_offset"] or size > full:
        raise _bad(path, f"{size} bytes, but its header describes {h['data_offset']} bytes before the rows and "
                         f"{full} bytes in all (truncated before its rows, or more than its header describes)")


def complete_snapshots(h: dict, count: int, state: bytes, steps: np.ndarray, live: bool, path) -> int:
    """How many snapshots are complete, from count and the steps (int64, ``capacity`` long); ValueError
    when they disagree. ``live``: a recorder holds the file's lock (it may be writing snapshot count)."""
    cap = h["capacity"]
    if count > cap:
        raise _bad(path, f"count {count} exceeds the capacity {cap}")
    unwritten = np.flatnonzero(steps < 0)
    k = int(unwritten[0]) if unwritten.size else cap  # the leading run of written steps
    if (np.diff(steps[:k]) <= 0).any():
        raise _bad(path, "the steps of the snapshots are not strictly increasing")
    if live:
        if k < count:
            raise _bad(path, f"count {count}, but only {k} snapshots have their step written")
        return count
    if (steps[k:] != -1).any():
        raise _bad(path, f"a step is written after snapshot {k}, whose step is not")
    if k != count and not (state == WRITING and k == count + 1):
        raise _bad(path, f"count {count} disagrees with the {k} snapshots whose steps are written")
    return k


def check_log(log: np.ndarray, keys: tuple[str, ...], steps: np.ndarray, path) -> None:
    """The settings logged with the complete snapshots, log (k, G, len(keys)), are numbers a recorder
    writes: finite (a schedule may take an lr below 0, and a Koopman gradient refuses it where it
    divides), the flags 0 or 1, restarts a count. They carry no checksum: NaN, infinity or a flag of
    another value is damage."""
    for j, key in enumerate(keys):
        v = log[:, :, j]
        ok = ((v == 0) | (v == 1) if key in FLAGS else (v >= 0) & (v == np.round(v)) if key == "restarts"
              else np.isfinite(v))
        bad = np.flatnonzero(~ok.all(axis=1))
        if bad.size:
            i = int(bad[0])
            what = "0 or 1" if key in FLAGS else "a count" if key == "restarts" else "a finite number"
            name = "learning rate" if key == "lr" else key
            got = v[i].tolist() if v.shape[1] > 1 else float(v[i, 0])
            raise _bad(path, f"the {name} of snapshot {i} (step {int(steps[i])}) is {got!r:.80}, not "
                             f"{what}" + (f" ({bad.size} such snapshots)" if bad.size > 1 else ""))
