"""Pre-flight of a computation over ranks: one small all-gather that checks every rank agrees.

Ranks that disagree on what must be common (the snapshot count T, the dtype, the steps,
the recorded parameter names, the compression, ...) do not meet in the same collectives:
gloo aborts the process ("collective mismatch"), or a rank computes with a number the
others never saw ("k exceeds the number of scores"). :func:`preflight` is called before
the first collective of ``kt.dmd``, ``kt.koopman`` and ``global_masks`` with ``group=``:
every rank sends a fixed-size int64 vector describing its settings, and every rank raises
the same ValueError, saying which setting differs and on which ranks.
"""
from __future__ import annotations

import hashlib
import numbers
import struct

import torch
import torch.distributed as dist

from .distributed import _all_gather, _comm_device, _group

MAX_FIELDS = 14
_MAGIC = 0x4B54_5046  # "KTPF": a vector that is not a pre-flight shows up as a different computation
_NONE, _NUMBER, _TEXT, _HASH = range(4)


def _text_or_hash(s: str) -> tuple[int, int, int]:
    """(tag, lo, hi): text of up to 16 UTF-8 bytes travels as itself, longer text as a 16-byte hash."""
    b = s.encode()
    tag = _TEXT if len(b) <= 16 else _HASH
    b = b.ljust(16, b"\0") if tag == _TEXT else hashlib.blake2b(b, digest_size=16).digest()
    lo, hi = struct.unpack("<qq", b)
    return tag, lo, hi


def _encode(value) -> tuple[int, int, int]:
    """(tag, lo, hi) of one setting: None; a number (as float64 bits); a tensor as the hash of its bytes,
    dtype and shape; anything else as its text (a torch.dtype without "torch.") or, when longer than 16 bytes,
    its hash."""
    if value is None:
        return _NONE, 0, 0
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return _NUMBER, struct.unpack("<q", struct.pack("<d", float(value)))[0], 0
    if isinstance(value, torch.dtype):
        return _text_or_hash(str(value).removeprefix("torch."))
    if isinstance(value, torch.Tensor):  # its bytes, dtype and shape (a repr of a large one would be slow)
        raw = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        digest = hashlib.blake2b(raw + f"{value.dtype}{tuple(value.shape)}".encode(), digest_size=16).digest()
        return (_HASH, *struct.unpack("<qq", digest))
    return _text_or_hash(value if isinstance(value, str) else repr(value))


def _decode(tag: int, lo: int, hi: int) -> str | None:
    """The setting as text, or None when only its hash travelled."""
    if tag == _NONE:
        return "None"
    if tag == _NUMBER:
        return f"{struct.unpack('<d', struct.pack('<q', lo))[0]:g}"
    if tag == _TEXT:
        return struct.pack("<qq", lo, hi).rstrip(b"\0").decode(errors="replace")
    return None


def _ranks(rs: list[int]) -> str:
    return ("rank " if len(rs) == 1 else "ranks ") + ", ".join(map(str, rs))


def _differences(label: str, codes: list[tuple[int, int, int]]) -> str:
    """'label: 12 on rank 0, 11 on ranks 1, 2' (or which ranks agree with which, for hashed values)."""
    by_value: dict[tuple[int, int, int], list[int]] = {}
    for r, c in enumerate(codes):
        by_value.setdefault(c, []).append(r)
    shown = [_decode(*c) for c in by_value]
    if all(s is not None for s in shown):
        return f"{label}: " + ", ".join(f"{s} on {_ranks(rs)}" for s, rs in zip(shown, by_value.values()))
    return f"{label}: " + " vs ".join(_ranks(rs) for rs in by_value.values()) + " (different values)"


def _vector(what: str, fields: dict[str, object], error: Exception | None) -> torch.Tensor:
    """[magic, len(fields), what, the fields, padding to MAX_FIELDS, the error's type name (or None)]."""
    codes = [_encode(what)] + [_encode(v) for v in fields.values()] + [(_NONE, 0, 0)] * (MAX_FIELDS - len(fields))
    codes.append(_encode(None if error is None else type(error).__name__))
    return torch.tensor([_MAGIC, len(fields)] + [x for c in codes for x in c], dtype=torch.int64)


def checked_preflight(what: str, group, check, hint: str = ""):
    """``check()`` -> (fields, value): this rank's own checks of its arguments, then :func:`preflight` over
    ``group`` with their fields (or with the error they raised, which this rank then raises and every other rank
    answers with a ValueError naming it: a RuntimeError too, such as CUDA's out of memory, else the other ranks
    waited out the collective timeout); returns ``value``. Without a group (None) the checks run alone, and raise
    here."""
    if group is None:
        return check()[1]
    error, (fields, value) = None, ({}, None)
    try:
        fields, value = check()
    except Exception as e:  # noqa: BLE001  (any refusal: TypeError, ValueError, MemoryError for a Gram too big, ...)
        error = e
    preflight(what, group, fields, hint, error)
    return value


def preflight(what: str, group, fields: dict[str, object], hint: str = "", error: Exception | None = None) -> None:
    """Check, with one all-gather of a small int64 vector, that every rank of ``group`` calls
    ``what`` with the same ``fields``; a collective, to be called before the first other one.

    Parameters
    ----------
    what : the computation, e.g. "kt.dmd" (the ranks must all be in the same one).
    group : a torch.distributed group, or True for the default one.
    fields : {label: value} that every rank must share, at most ``MAX_FIELDS``: numbers are
        compared as float64, tensors by a hash of their bytes, dtype and shape, other values by their
        text (torch dtypes by name, sequences by their repr); text longer than 16 bytes travels as a
        16-byte hash.
    hint : appended to the error message (what the user should do).
    error : the error this rank's own checks of its input raised (its ``fields`` are then not compared):
        raised again here, after the all-gather, and every other rank raises a ValueError naming the
        ranks that refused their input, so that no rank waits for them in a later collective.

    Raises
    ------
    ValueError : on every rank, naming each setting that differs and the ranks holding each value.
    """
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"preflight takes at most {MAX_FIELDS} fields, got {len(fields)}")
    g = _group(group)
    mine = _vector(what, fields, error).to(_comm_device(g))
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(g))]
    _all_gather(out, mine, g, f"{what} pre-flight")
    rows = [o.cpu().tolist() for o in out]
    triples = [[tuple(row[2 + 3 * i: 5 + 3 * i]) for i in range(2 + MAX_FIELDS)] for row in rows]
    refused = [r for r, t in enumerate(triples) if t[-1][0] != _NONE]
    if error is not None:
        raise error
    if refused:
        raise ValueError(f"{what}: {_ranks(refused)} of the group refused their input ("
                         + ", ".join(_decode(*triples[r][-1]) or "an error" for r in refused)
                         + "; see the error there), so no rank goes on to the computation")
    if len({tuple(row[:2]) + t[0] for row, t in zip(rows, triples)}) > 1:
        raise ValueError("the ranks of the group are not in the same computation ("
                         + _differences("computation", [t[0] for t in triples]) + "). Every rank must call the "
                         "same functions with group=, in the same order")
    wrong = [_differences(label, [t[1 + i] for t in triples]) for i, label in enumerate(fields)
             if len({t[1 + i] for t in triples}) > 1]
    if wrong:
        raise ValueError(f"{what}: the ranks of the group disagree on " + "; ".join(wrong)
                         + (f". {hint}" if hint else "") + " (checked before any other collective, on every rank)")


def trajectory_fields(traj) -> dict[str, object]:
    """What the ranks' rows of one trajectory must share: T, dtype, the steps, and the recorded
    model's parameter names, shapes and entries when it is row-sharded (``meta["all_names"]``,
    ``"all_shapes"``, ``"n_total"``: the same names with other shapes would give each rank rows
    of another flattening, overlapping or leaving gaps; otherwise the ranks may hold different
    parameters, any split)."""
    meta = traj.meta
    model = [meta.get("all_names"), [list(s) for s in meta.get("all_shapes") or []], meta.get("n_total")]
    return {"T (snapshots)": len(traj), "dtype": traj.snapshots.dtype, "steps": traj.steps,
            "names and shapes (row-sharded recording)": model if meta.get("all_names") is not None else None}


def settings_fingerprint(meta: dict) -> str:
    """The optimizer settings of a trajectory's ``meta`` that its analysis reads (learning rates, momentum,
    Nesterov, dampening, weight decay, per group and per snapshot), as text the ranks compare."""
    keys = ("optimizer", "every", "momentum", "nesterov", "dampening", "weight_decay", "maximize", "lrs",
            "group_lrs", "group_settings", "other_momentum")
    groups = [{k: v for k, v in g.items() if k != "names"} for g in meta.get("groups") or []]
    return repr([meta.get(k) for k in keys] + [groups])


def analysis_fields(traj, options: dict[str, object]) -> dict[str, object]:
    """What the ranks of a Koopman analysis of one trajectory must share: :func:`trajectory_fields`,
    ``options`` and :func:`settings_fingerprint`."""
    return {**trajectory_fields(traj), **options, "optimizer settings": settings_fingerprint(traj.meta)}
