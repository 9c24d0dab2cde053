"""Checkers of notebook 05's exercises (05_early_training).

Both exercises rerun the prediction study with one setting changed and compare it like for like
with a baseline study on the same seeds and settings. The checkers verify the baseline rows
against the notebook's main study where it has the same starts (the final mask does not depend on
fine-tuning, which acts on pruned copies; other starts mean other training paths, since each
window is recorded on the path, and then the baseline is recomputed), recompute the changed study
on every seed asked for (KMP and GMP rows only, no fine-tuning: seconds a seed), and check that the
stated verdict follows from the rows.
"""
from __future__ import annotations

import numpy as np

from . import checker, close

_RULES = ("GMP", "KMP")


def _shape(rows, key: str, seeds, starts) -> str | None:
    """What is wrong with ``rows`` as the rows of a study on ``seeds`` x ``starts`` (None: nothing)."""
    from ...training.experiments import PredictionRow

    if not isinstance(rows, list) or not rows or not all(isinstance(r, PredictionRow) for r in rows):
        return f"`answer[{key!r}]` should be the list of rows that `ex.prediction_study` returns."
    if sorted({r.seed for r in rows}) != sorted(seeds):
        return (f"`answer[{key!r}]` has the seeds {sorted({r.seed for r in rows})}, expected {sorted(seeds)}. "
                "Hint: like for like means the same seeds in both studies.")
    if sorted({r.start for r in rows}) != sorted(starts):
        return f"`answer[{key!r}]` has the starts {sorted({r.start for r in rows})}, expected {sorted(starts)}."
    if not set(_RULES) <= {r.rule for r in rows}:
        return f"`answer[{key!r}]` lacks the rules {_RULES}. Hint: keep the KMP estimator."
    if any(r.accuracy_finetuned is not None for r in rows):
        return (f"`answer[{key!r}]` was fine-tuned. Hint: both studies with `finetune_epochs=0`, the same "
                "settings on both sides.")
    return None


def _overlaps(rows, seed=None) -> dict:
    return {(r.seed, r.start, r.rule): r.overlap_final for r in rows
            if r.rule in _RULES and (seed is None or r.seed == seed)}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(close(a[k], b[k], rel=0, abs_=1e-9) for k in a)


def _recompute(seeds, starts, **study) -> dict:
    from ...training.experiments import ESTIMATORS, prediction_study

    rows = prediction_study(list(seeds), starts, finetune_epochs=0, estimators={"KMP": ESTIMATORS["KMP"]}, **study)
    return _overlaps(rows)


def _advantage(rows, start: int) -> float:
    from ...training.experiments import paired

    return paired(rows, "KMP", "GMP", start)[0]


def _compare(answer, other: str, verdict: str, seeds, starts, rows, study: dict, changed: dict, better):
    """The shared logic: shapes, the baseline against ``rows``, ``other`` against a
    recomputation on the same seeds with ``changed`` settings, and the verdict dict against the rows."""
    if not isinstance(answer, dict) or not {other, "base", verdict} <= set(answer):
        return False, f"`answer` should be a dict with the keys {other!r}, 'base' and {verdict!r}."
    for key in (other, "base"):
        problem = _shape(answer[key], key, seeds, starts)
        if problem:
            return False, problem
    if sorted({r.start for r in rows}) == sorted(starts) and set(seeds) <= {r.seed for r in rows}:
        base_ok = _same(_overlaps(answer["base"]), _overlaps([r for r in rows if r.seed in seeds]))
    else:  # other starts: other training paths (each window is recorded on the path): recompute them
        base_ok = _same(_overlaps(answer["base"]), _recompute(seeds, starts, **study))
    if not base_ok:
        return False, ("`answer['base']` is not the baseline study. Hint: the same call as for "
                       f"{other!r} with only the setting the exercise changes put back.")
    if not _same(_overlaps(answer[other]), _recompute(seeds, starts, **{**study, **changed})):
        if _same(_overlaps(answer[other]), _overlaps(answer["base"])):
            return False, f"`answer[{other!r}]` is the baseline again. Hint: change the setting the exercise names."
        return False, (f"`answer[{other!r}]` does not match the study the exercise asks for, on every seed. "
                       "Hint: compare its arguments with the baseline call: only one may differ.")
    v = answer[verdict]
    if not isinstance(v, dict) or sorted(v) != sorted(starts):
        return False, f"`answer[{verdict!r}]` should be a dict {{start: bool}} for the starts {sorted(starts)}."
    for t in starts:
        want = better(_advantage(answer[other], t), _advantage(answer["base"], t))
        if not isinstance(v[t], (bool, np.bool_)) or bool(v[t]) != want:
            return False, (f"`answer[{verdict!r}][{t}]` does not follow from your rows. Hint: compare the mean "
                           "KMP - GMP difference (`ex.paired(rows, 'KMP', 'GMP', start)[0]`) of the two studies.")
    return True, "like for like: same seeds and settings, one change, and the verdict follows from the rows."


@checker("05.1", expects="a dict {'long': rows with window=2 * WINDOW, 'base': rows with window=WINDOW, "
                         "'helps': {start: bool}} (seeds SEED_LIST[:3], starts STARTS[1:], finetune_epochs=0)")
def window_twice_as_long(answer, seeds, starts, rows, window, final_steps, compression, **setup):
    """``rows``: the notebook's main study (window ``window``, the baseline's settings)."""
    study = dict(window=window, final_steps=final_steps, compression=compression, **setup)  # dataset=, device=, ...
    return _compare(answer, "long", "helps", list(seeds), list(starts), rows, study, dict(window=2 * window),
                    lambda long, base: long > base)


@checker("05.2", expects="a dict {'c2': rows at compression=2, 'base': rows at compression=COMPRESSION, "
                         "'larger': {start: bool}} (seeds SEED_LIST[:3], every start, finetune_epochs=0)")
def compression_two(answer, seeds, starts, rows, window, final_steps, compression, **setup):
    """``rows``: the notebook's main study (compression ``compression``, the baseline's settings)."""
    study = dict(window=window, final_steps=final_steps, compression=compression, **setup)  # dataset=, device=, ...
    return _compare(answer, "c2", "larger", list(seeds), list(starts), rows, study, dict(compression=2),
                    lambda c2, base: c2 > base)
