"""Checkers of notebook 06's exercises (06_beyond).

Each recomputes the answer from the notebook's objects (the section-1 runs, the section-3 spectra
and analyses, the notebook's own ``horizon_run`` and distance) and compares, so it holds at any
seed and size; the messages name what is off without giving the value.
"""
from __future__ import annotations

import math
import warnings

from . import checker, close, number


def _floats(answer, n: int, what: str) -> str | None:
    """None if ``answer`` is n numbers (a list, tuple, 1-D array or tensor), else what it should be."""
    try:
        values = [number(a) for a in (answer.tolist() if hasattr(answer, "tolist") else answer)]
    except (TypeError, ValueError):
        return f"`answer` should be a list of {n} floats, {what}."
    if isinstance(answer, (str, dict)) or len(values) != n:
        return f"`answer` should be a list of {n} floats, {what}."
    return None


def _match(answer, want, tol: float = 1e-9) -> bool:
    return len(answer) == len(want) and all(close(a, b, rel=0, abs_=tol) for a, b in zip(answer, want))


def _horizon_gain(r, horizons) -> dict:
    from ...pruning import kept_overlap

    return {h: kept_overlap(r["future"][h], r["masks"][h]) - kept_overlap(r["future"][h], r["masks"][0])
            for h in horizons}


@checker("06.1", expects="a dict {h: share of the real future mask the forecast keeps minus the share the "
                         "current weights keep} for every h in ALL_H[1:], seed 14")
def seed_14(answer, horizon_run, horizons, runs=None, seed: int = 14):
    """``horizon_run``: the notebook's function (recomputed here for ``seed``); ``horizons``: ALL_H."""
    hs = [h for h in horizons if h != 0]
    if not isinstance(answer, dict) or not set(hs) <= set(answer) or set(answer) - set(hs) - {0}:
        return False, f"`answer` should be a dict with one entry per h in {hs}."
    got = [number(answer[h]) for h in hs]
    with warnings.catch_warnings():  # the run's trust diagnostics were shown when the student ran it
        warnings.simplefilter("ignore")
        want = _horizon_gain(horizon_run(seed), hs)
    if _match(got, [want[h] for h in hs]):
        return True, "the forecast's share of the real mask minus GMP's, horizon by horizon, for seed 14."
    if _match(got, [-want[h] for h in hs]):
        return False, "the signs are reversed. Hint: the forecast's share minus the current weights' share."
    if runs and _match(got, [_horizon_gain(runs[0], hs)[h] for h in hs]):
        return False, "these are the values of the notebook's first seed. Hint: run `horizon_run(14)`."
    return False, ("not the differences for seed 14. Hint: at each h, the real mask is the one GMP picks h steps "
                   "later; measure how much of it the horizon-h mask keeps, and how much the h = 0 mask keeps.")


def _kmp_shares(runs, masks_at, rule: str) -> list[float]:
    from ...pruning import kept_overlap

    with warnings.catch_warnings():  # the windows' trust diagnostics were shown when the student ran them
        warnings.simplefilter("ignore")
        return [kept_overlap(r["future"][math.inf], masks_at(r["model"], r["k"].kmp_scores(rule))) for r in runs]


@checker("06.2", expects="a dict {'limit': [...], 'closest': [...]}: per seed (the order of `runs`), the share "
                         "of the mask at step FINAL_STEPS that each KMP rule's mask keeps")
def kmp_rules(answer, runs, masks_at):
    """``runs``: section 1's runs; ``masks_at``: the notebook's mask function (its compression)."""
    if not isinstance(answer, dict) or set(answer) != {"limit", "closest"}:
        return False, "`answer` should be a dict with the keys 'limit' and 'closest'."
    for key in answer:
        problem = _floats(answer[key], len(runs), f"one per seed in `runs` (answer[{key!r}])")
        if problem:
            return False, problem
    want = {rule: _kmp_shares(runs, masks_at, rule) for rule in answer}
    if _match(answer["limit"], want["limit"]) and _match(answer["closest"], want["closest"]):
        return True, "both KMP rules' shares of the step-FINAL_STEPS mask, seed by seed."
    if _match(answer["limit"], want["closest"]) and _match(answer["closest"], want["limit"]):
        return False, "the two rules are swapped."
    from ...pruning import kept_overlap

    gmp = [kept_overlap(r["future"][math.inf], r["masks"][0]) for r in runs]
    if any(_match(answer[k], gmp) for k in answer):
        return False, "one list is GMP's (the control). Hint: score with `r['k'].kmp_scores(rule)`."
    return False, ("not the shares of the mask at step FINAL_STEPS. Hint: the reference mask of each run is "
                   "`r['future'][math.inf]`; measure what share of it each rule's mask keeps.")


def _slowest(eigs) -> float:
    return float(eigs.abs().max())


@checker("06.3", expects="a list, one float per compared seed: (max|mu| at LR / LR_RATIO) ** LR_RATIO minus "
                         "max|mu| at LR")
def rescaled_rate(answer, spec, ratio):
    """``spec``: {learning rate: [eigenvalues per compared seed]} (two rates); ``ratio``: LR_RATIO."""
    fast, slow = spec[max(spec)], spec[min(spec)]
    problem = _floats(answer, len(fast), "one per compared seed")
    if problem:
        return False, problem
    want = [_slowest(b) ** ratio - _slowest(a) for a, b in zip(fast, slow)]
    if _match(answer, want):
        return True, "the small-step rate raised to the power LR_RATIO minus the large-step rate, seed by seed."
    if _match(answer, [-w for w in want]):
        return False, "the sign is reversed. Hint: the rescaled small-step rate minus the rate at LR."
    if _match(answer, [_slowest(b) - _slowest(a) for a, b in zip(fast, slow)]):
        return False, "the small-step rate is not rescaled. Hint: LR_RATIO small steps make one large step."
    return False, "not the rescaled differences. Hint: max|mu| is `float(e.abs().max())` for each eigenvalue set."


@checker("06.4", expects="a list, one float per compared seed: the earth mover's distance between the two learning "
                         "rates minus the seed-to-seed control, every window refitted at rank 6")
def fixed_rank(answer, analyses, distance, rank: int = 6, default=None):
    """``analyses``: {learning rate: [Koopman analyses]}; ``distance``: the notebook's earth mover's distance;
    ``default``: optional, the section-3 gaps at the default rank (a stale answer)."""
    import koopman_tut

    with warnings.catch_warnings():  # the refits' trust diagnostics were shown when the student ran them
        warnings.simplefilter("ignore")
        fast, slow = ([koopman_tut.koopman(k.traj, limit_rank=rank).affine.eigs for k in analyses[lr]]
                      for lr in (max(analyses), min(analyses)))
    n = len(fast)
    problem = _floats(answer, n, "one per compared seed")
    if problem:
        return False, problem
    across_lr = [distance(fast[i], slow[i]) for i in range(n)]
    across_seed = [(distance(fast[i], fast[(i + 1) % n]) + distance(slow[i], slow[(i + 1) % n])) / 2
                   for i in range(n)]
    want = [a - b for a, b in zip(across_lr, across_seed)]
    if _match(answer, want):
        return True, f"the rank-{rank} gaps, learning rates minus seeds, seed by seed."
    if _match(answer, [-w for w in want]):
        return False, "the sign is reversed. Hint: learning rates minus seeds, as in section 3."
    if default is not None and _match(answer, list(default)):
        return False, f"these are section 3's gaps at the default rank. Hint: refit with `limit_rank={rank}`."
    return False, (f"not the rank-{rank} gaps. Hint: `lr_vs_seed` gives the distances across learning rates and "
                   "across seeds; the answer is their difference, seed by seed.")
