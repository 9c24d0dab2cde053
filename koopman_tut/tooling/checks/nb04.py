"""Checkers of notebook 04 (KGP and gradient pruning): exercises 04.1, 04.2 and 04.3.

Each recomputes what it needs from the notebook's objects (an all-data gradient, a few angles; for
04.3 the minibatch windows again, as the solution does), so it is right at any seed and under SMOKE.
"""
from __future__ import annotations

import math
import numbers

import torch

from . import checker, close

ANGLE_TOL = 0.05  # degrees: float32 rounding of the same computation is far below this


def angle(a, b) -> float:
    """Angle between two (n,) vectors, in degrees (the notebook's helper)."""
    a, b = a.double().cpu(), b.double().cpu()
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm()))))))


def _numbers(answer, keys, what: str) -> dict:
    if not isinstance(answer, dict) or set(answer) != set(keys):
        raise TypeError(f"`answer` should be a dict with the keys {sorted(keys, key=str)} ({what}), got "
                        + (f"a dict with keys {sorted(answer, key=str)}" if isinstance(answer, dict)
                           else type(answer).__name__))
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in answer.values()):
        raise TypeError("every value of `answer` should be a number")
    return {k: float(v) for k, v in answer.items()}


def _by_compression(answer, compressions):
    if isinstance(answer, dict):  # 16 and 16.0 are the same key for a student
        answer = {next((c for c in compressions if c == k), k): v for k, v in answer.items()}
    return _numbers(answer, list(compressions), "compression -> share kept")


def _all_data(loader) -> dict:
    return dict(loader=loader, n_batches=len(loader))


@checker("04.1", expects="a dict {compression: share of the |grad L| mask that the |g_K| mask keeps too} over "
                         "COMPRESSIONS")
def grad_form_overlap(answer, model, k, loader, compressions):
    """``k``: the Koopman analysis of section 1's window; ``loader``: its training loader (all data)."""
    from ...pruning import gradient_scores
    from ...training.experiments import overlaps

    got = _by_compression(answer, compressions)
    grad_only = gradient_scores(model, **_all_data(loader), form="grad")
    want = overlaps(model, grad_only, k.kgp_scores(form="grad"), compressions)

    def same(a, b):
        return all(close(a[c], b[c], rel=0, abs_=1e-6) for c in compressions)

    if same(got, want):
        return True, "the |g_K| mask against the |grad L| mask, at every compression."
    if not all(0 <= v <= 1 for v in got.values()):
        return False, "a share of kept weights lies between 0 and 1. Hint: use `ex.overlaps`, which returns shares."
    theta = overlaps(model, gradient_scores(model, **_all_data(loader)), k.kgp_scores(), compressions)
    if same(got, theta):
        return False, ("these are the shares of the |theta * g| form (the notebook's `scores`). Hint: both "
                       "scores need `form=\"grad\"`.")
    return False, ("not the shares of the all-data |grad L| mask kept by the |g_K| mask. Hint: "
                   "`pruning.gradient_scores(s.model, **all_data(s), form=\"grad\")` against "
                   "`k.kgp_scores(form=\"grad\")`, through `ex.overlaps`.")


HB_KEYS = ("finite difference", "g_K", "last step")


@checker("04.2", expects='a dict {"finite difference": degrees, "g_K": degrees, "last step": degrees}: each '
                         "estimate's angle to the gradient at the last snapshot of the heavy-ball window")
def heavy_ball_angles(answer, model, traj, loader, lr, momentum):
    """``model``, ``traj``, ``loader``: the heavy-ball window of the exercise (s2.model, traj2, s2.train_loader)."""
    from ...pruning import gradients
    from ...pruning.koopman import koopman

    got = _numbers(answer, HB_KEYS, "estimate -> angle in degrees")
    grad = traj.flatten(gradients(model, **_all_data(loader)))
    d = traj.snapshots.diff(dim=1)
    exact = -(d[:, -1] - momentum * d[:, -2]) / lr
    want = {"finite difference": angle(exact, grad), "g_K": angle(koopman(traj).gradient(warn=False), grad),
            "last step": angle(-d[:, -1], grad)}
    wrong = [key for key in HB_KEYS if not close(got[key], want[key], rel=0, abs_=ANGLE_TOL)]
    if not wrong:
        return True, "all three angles are measured against the gradient at the last snapshot."
    if all(close(got[key], math.radians(want[key]), rel=0, abs_=1e-3) for key in HB_KEYS):
        return False, "these are radians. Hint: the notebook's `angle` returns degrees."
    hints = []
    for key in wrong:
        if close(got[key], 180 - want[key], rel=0, abs_=ANGLE_TOL):
            hints.append(f"{key!r} has the wrong sign (its angle is 180 degrees minus the right one)")
        else:
            hints.append(f"{key!r} is off")
    return False, ("; ".join(hints) + ". Hint: with d = traj2.snapshots.diff(dim=1), the last step is d[:, -1], "
                   "the one before d[:, -2]; the gradient is -(step - beta * previous step) / lr, and every angle "
                   "is taken to the all-data gradient of s2.model (the last snapshot).")


def minibatch_angles(train_window, seeds, lr, window, loader_of=None) -> dict:
    """{"g_K": mean angle, "mean step": mean angle} in degrees over ``seeds`` for minibatch windows of ``window``."""
    from ...pruning import gradients
    from ...pruning.koopman import koopman

    gk, ms = [], []
    for seed in seeds:
        s, t = train_window("sgd", lr, seed, full_batch=False, window=window)
        grad = t.flatten(gradients(s.model, **_all_data(s.train_loader)))
        mean_step = (t.snapshots[:, 0] - t.snapshots[:, -1]) / (lr * (len(t) - 1))
        gk.append(angle(koopman(t).gradient(warn=False), grad))
        ms.append(angle(mean_step, grad))
    return {"g_K": sum(gk) / len(gk), "mean step": sum(ms) / len(ms)}


@checker("04.3", expects='a dict {"g_K": {WINDOW: degrees, 2 * WINDOW: degrees}, "mean step": {WINDOW: degrees, '
                         "2 * WINDOW: degrees}}: mean angles to the all-data gradient over SEED_LIST")
def longer_window(answer, train_window, seeds, lr, window):
    """``train_window``: the notebook's helper; ``seeds``: SEED_LIST; ``lr``: LR; ``window``: WINDOW."""
    ws = (window, 2 * window)
    if not isinstance(answer, dict) or set(answer) != {"g_K", "mean step"}:
        raise TypeError('`answer` should be a dict with the keys "g_K" and "mean step"')
    got = {key: _numbers(answer[key], ws, "window length -> mean angle in degrees") for key in answer}
    with torch.random.fork_rng(devices=[]):  # leave the notebook's random state as it was
        want_ = {w: minibatch_angles(train_window, seeds, lr, w) for w in ws}
    want = {key: {w: want_[w][key] for w in ws} for key in ("g_K", "mean step")}

    def same(a, b):
        return all(close(a[key][w], b[key][w], rel=0, abs_=ANGLE_TOL) for key in a for w in ws)

    if same(got, want):
        return True, "mean angles over the seeds, for both window lengths and both estimates."
    if same(got, {"g_K": want["mean step"], "mean step": want["g_K"]}):
        return False, 'the two estimates are swapped. Hint: "g_K" is the Koopman gradient, "mean step" the window\'s mean step.'
    if same(got, {key: {w: want[key][ws[1 - i]] for i, w in enumerate(ws)} for key in want}):
        return False, "the two window lengths are swapped. Hint: key WINDOW is the short window, 2 * WINDOW the long one."
    return False, ("not the mean angles over SEED_LIST. Hint: for each seed, `train_window(\"sgd\", LR, seed, "
                   "full_batch=False, window=w)`; angle of `kt.koopman(t).gradient()` and of the mean step "
                   "(first minus last snapshot, over LR * steps) to the all-data gradient; mean over seeds.")
