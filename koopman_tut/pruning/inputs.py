"""Argument checks of the pruning functions: score and mask dicts, the classifier and exclude
arguments, the precision scores are ranked in, and the random baseline's seeds.

TypeError for a wrong type, ValueError for a wrong value, each naming the argument and what
was expected, so that nothing wrong is used silently.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch

from ..numerics.dmd import _check_svd_rank
from ..numerics.finite import check_finite, check_has_values, outside_stacklevel
from ..numerics.limits import snapshot_stride
from ..recording.recorder_checks import _check_bool, _check_int, _check_model
from ..recording.validation import check_positive as _check_positive, check_real

__all__ = ["_check_bool", "_check_int", "_check_model", "check_tensors", "check_masks", "check_classifier",
           "check_exclude", "rank_dtype", "seed_entropy", "TiedScoresWarning", "ties_at_cut", "warn_ties",
           "check_analysis", "check_choice", "check_horizon", "last_snapshot"]

_WIDE_SEED_STREAM = 0x6B6D61736B36  # "kmask6": seeds >= 2**32, kept apart from the 32-bit seeds' entropy layout


def check_tensors(d, what: str, kind: str = "tensor") -> dict:
    """``d`` if it is a dict {str name: real torch.Tensor}; TypeError naming ``what`` and the entry otherwise."""
    if not isinstance(d, dict):
        raise TypeError(f"{what} must be a dict {{parameter name: {kind}}}, got {type(d).__name__}")
    for n, v in d.items():
        if not isinstance(n, str):
            raise TypeError(f"{what} must be keyed by parameter names (str), got the key {n!r}")
        if not isinstance(v, torch.Tensor):
            hint = " (torch.from_numpy converts a numpy array)" if isinstance(v, np.ndarray) else ""
            raise TypeError(f"{what}[{n!r}] must be a torch.Tensor{hint}, got {type(v).__name__}")
        if v.dtype.is_complex:
            raise TypeError(f"{what}[{n!r}] must be real, got {v.dtype}")
        check_has_values(v, f"{what}[{n!r}]")
    return d


def check_masks(d, what: str) -> dict:
    """``d`` if it is a dict {name: bool tensor} (True = kept), as pruning's masks are; TypeError otherwise."""
    check_tensors(d, what, "bool tensor")
    for n, v in d.items():
        if v.dtype != torch.bool:
            raise TypeError(f"{what}[{n!r}] must be a bool tensor (True = kept), got {v.dtype}: pass masks "
                            f"(global_masks(scores, c, model=...)), not scores; (m != 0) for a 0/1 mask")
    return d


def check_classifier(prune_classifier, classifier) -> str | None:
    """The classifier argument of :func:`koopman_tut.recording.params.classifier_names` that
    ``prune_classifier`` and ``classifier`` say together: None (prune it too), "auto" or a name."""
    if _check_bool("prune_classifier", prune_classifier):
        if classifier not in ("auto", None):
            raise ValueError(f"prune_classifier=True prunes the classifier, but classifier={classifier!r} names one "
                             f"to leave unpruned: give one of them (classifier=None is prune_classifier=True)")
        return None
    if classifier is not None and not isinstance(classifier, str):
        raise TypeError(f"classifier must be a module name (str), 'auto' or None, got {type(classifier).__name__}")
    if classifier == "":
        raise ValueError("classifier must name the module to leave unpruned, such as 'classifier'; '' is the "
                         "whole model")
    return classifier


def warn_no_classifier(model, prune_classifier, classifier) -> None:
    """Masks made without ``model=``, with ``classifier="auto"`` and without ``prune_classifier``: the classifier
    cannot be found by its name alone, so it is ranked like every other layer (pruned), where with the model it
    would be left unpruned. Read from the arguments alone, so that every rank of a group warns alike."""
    if model is None and prune_classifier is False and isinstance(classifier, str) and classifier == "auto":
        warnings.warn("without model= the classifier cannot be identified, so it is ranked (and pruned) like every "
                      "other layer: pass model=, or classifier='<its module name>' to leave it unpruned, or "
                      "prune_classifier=True (classifier=None) to prune it", stacklevel=outside_stacklevel())


def check_exclude(exclude) -> tuple[str, ...]:
    """``exclude`` as a tuple of parameter names (a list, tuple or set of str; one str is refused)."""
    if isinstance(exclude, str) or not isinstance(exclude, (list, tuple, set, frozenset)):
        raise TypeError(f"exclude must be a list of parameter names, got {exclude!r}"
                        + (f": write exclude=[{exclude!r}]" if isinstance(exclude, str) else ""))
    for n in exclude:
        if not isinstance(n, str):
            raise TypeError(f"exclude must hold parameter names (str), got {n!r}")
    return tuple(exclude)


def rank_dtype(tensors) -> torch.dtype:
    """The precision to rank scores in, exact for each: float32 for float16/bfloat16/float32 alone,
    float64 with any float64 (or with integers among floats), int64 for integers alone."""
    dtypes = {t.dtype for t in tensors}
    floats = {d for d in dtypes if d.is_floating_point}
    if not floats:
        return torch.int64
    if torch.float64 in floats or len(floats) < len(dtypes):
        return torch.float64
    return torch.float32


def seed_entropy(seed, draw, stream: int) -> list[int]:
    """SeedSequence entropy for (seed, draw) of the random baseline, one-to-one over integers >= 0.

    Seeds below 2**32 keep the layout they always had, ``[seed, stream] (+ [draw])``, so their
    masks do not change; a larger seed is split into its low word, a second stream constant, the
    number of its high 32-bit words and those words, so that no two (seed, draw) pairs share entropy.
    """
    seed, draw = _check_int("seed", seed, 0), _check_int("draw", draw, 0)
    tail = [draw] if draw else []
    if seed < 2**32:
        return [seed, stream] + tail
    high = seed >> 32
    return [seed & 0xFFFFFFFF, _WIDE_SEED_STREAM, (high.bit_length() + 31) // 32, high] + tail


class TiedScoresWarning(UserWarning):
    """The cut between kept and pruned entries falls inside a large group of equal scores."""


def ties_at_cut(flat: torch.Tensor, order: torch.Tensor, k: int) -> tuple[int, int]:
    """(kept, all) entries of ``flat`` (m,) equal to the k-th largest (``order``: descending), when they
    straddle the cut between the k kept and the rest; (0, 0) when they do not."""
    if not 0 < k < flat.numel() or bool(flat[order[k]] != flat[order[k - 1]]):
        return 0, 0
    v = flat[order[k - 1]]
    return int((flat[order[:k]] == v).sum()), int((flat == v).sum())


def warn_ties(k: int, inside: int, tied: int, where: str = "") -> None:
    """Warn when more than 1% of the ``k`` kept entries (``inside`` of ``tied`` equal scores at the cut)
    are chosen by position, not by score; ``where`` (" in 'fc.weight'") names the layer ranked alone."""
    if tied > inside > 0.01 * k:
        warnings.warn(TiedScoresWarning(
            f"{inside} of the {k} entries kept{where} ({inside / k:.1%}) are chosen by position, not by score, among {tied} "
            f"entries of equal score at the cut (constant or zero scores, or a precision too coarse to rank them): "
            f"earlier entries are kept"), stacklevel=outside_stacklevel())


def check_analysis(traj, svd_rank, limit_rank, drift_tol, max_horizon, method) -> None:
    """What :class:`KoopmanAnalysis` checks of its window and options before any computation."""
    traj.check()  # its fields (the optimizer settings in meta too) as at construction: an edit since is refused
    check_choice("method", method, ("auto", "gram", "svd"))
    if len(traj) < 3:
        raise ValueError(f"traj needs at least 3 snapshots for a Koopman analysis, has {len(traj)}")
    _check_svd_rank(svd_rank)
    if limit_rank != "auto":
        _check_svd_rank(limit_rank, "limit_rank")
    for name, value in (("drift_tol", drift_tol), ("max_horizon", max_horizon)):
        if value is not None or name == "drift_tol":
            _check_positive(name, value)
    snapshot_stride(traj)  # equally spaced snapshots, agreeing with meta["every"]


def check_choice(name: str, value, options: tuple[str, ...]) -> str:
    """``value`` if it is one of ``options``; ValueError naming ``name`` otherwise."""
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def check_horizon(h) -> float:
    """``h`` as a float, a number of snapshots >= 0 (math.inf allowed); TypeError or ValueError naming h otherwise."""
    if isinstance(h, bool) or not isinstance(h, numbers.Real):
        raise TypeError(f"h must be a number of snapshots >= 0 (or math.inf), got {h!r} ({type(h).__name__})")
    if not h >= 0:
        raise ValueError(f"h must be >= 0 snapshots, got {h!r}")
    try:
        return float(h)
    except OverflowError:  # an integer past float64's range (about 1.8e308)
        raise ValueError(f"h ({len(str(int(h)))} digits) is beyond float64's range (about 1.8e308 snapshots): pass "
                         "math.inf for the limit") from None


def last_snapshot(traj) -> torch.Tensor:
    """(n,) the window's last snapshot (float32 for half-precision ones, as every forecast is), refused as
    every other forecast is when the snapshots hold NaN or Inf (a NonFiniteError naming traj)."""
    check_finite(traj.snapshots, "traj")
    last = traj.snapshots[:, -1]
    return last.float() if last.dtype in (torch.float16, torch.bfloat16) else last.clone()


def _held(scores: dict, classifier, exclude) -> list[bool]:
    """[classifier names a module of the scores (or is 'auto' / None), each excluded name is a score]."""
    return [classifier in ("auto", None) or any(n.startswith(classifier + ".") for n in scores),
            *(n in scores for n in exclude)]


def _named_in(scores: dict, classifier, exclude) -> None:
    """Without a model the names are checked against the scores: a classifier or excluded name that no
    score has (a typo) would otherwise leave the real classifier, or layer, to be pruned."""
    held = _held(scores, classifier, exclude)
    if not held[0]:
        raise ValueError(f"classifier={classifier!r} names no module of the scores (their names: "
                         f"{sorted(scores)[:6]}{' ...' if len(scores) > 6 else ''})")
    unknown = [n for n, h in zip(exclude, held[1:]) if not h]
    if unknown:
        raise ValueError(f"exclude names {unknown}, which the scores do not hold")


def _named_on_some_rank(scores: dict, classifier, exclude: tuple, group) -> None:
    """:func:`_named_in` over the ranks of ``group`` (a collective): each name must be in some rank's scores."""
    from ..numerics.distributed import all_reduce_sum

    held = all_reduce_sum(torch.tensor(_held(scores, classifier, exclude), dtype=torch.int64), group).tolist()
    if not held[0]:
        raise ValueError(f"classifier={classifier!r} names no module of any rank's scores")
    unknown = [n for n, h in zip(exclude, held[1:]) if not h]
    if unknown:
        raise ValueError(f"exclude names {unknown}, which no rank's scores hold")
