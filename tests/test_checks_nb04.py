"""Checkers of notebook 04 (koopman_tut.tooling.checks.nb04) on tiny real windows: right on the
solution's value, "not yet" on plausible wrong answers and on `...`, never raising."""
import math

import pytest

import koopman_tut as kt
from koopman_tut import experiments as ex
from koopman_tut import pruning
from koopman_tut.tooling.checks import verdict
from koopman_tut.tooling.checks.nb04 import angle

PRE_STEPS, WINDOW, COMPRESSIONS = 5, 6, [2, 8]


def train_window(optimizer, lr, seed, full_batch=True, window=WINDOW):
    """The notebook's helper at SMOKE sizes."""
    s = ex.setup("digits", seed=seed, optimizer=optimizer, lr=lr, momentum=0.9, full_batch=full_batch)
    ex.run(s, PRE_STEPS, seed=seed)
    return s, ex.record(s, window, seed=seed)


def all_data(s):
    return dict(loader=s.train_loader, n_batches=len(s.train_loader))


@pytest.fixture(scope="module")
def gd():
    s, traj = train_window("sgd", 0.1, 0)
    return s, kt.koopman(traj)


def test_041(gd):
    s, k = gd
    ctx = dict(model=s.model, k=k, loader=s.train_loader, compressions=COMPRESSIONS)
    grad_only = pruning.gradient_scores(s.model, **all_data(s), form="grad")
    right = ex.overlaps(s.model, grad_only, k.kgp_scores(form="grad"), COMPRESSIONS)
    assert verdict("04.1", right, **ctx)[0]
    theta = ex.overlaps(s.model, pruning.gradient_scores(s.model, **all_data(s)), k.kgp_scores(), COMPRESSIONS)
    if any(abs(theta[c] - right[c]) > 1e-6 for c in COMPRESSIONS):
        ok, why = verdict("04.1", theta, **ctx)
        assert not ok and "form=" in why
    gmp = ex.overlaps(s.model, grad_only, pruning.magnitude_scores(s.model), COMPRESSIONS)
    ok, why = verdict("04.1", gmp, **ctx)
    assert not ok and "Hint" in why
    for wrong in (..., [0.9, 0.9], {2: 0.9}):
        ok, why = verdict("04.1", wrong, **ctx)
        assert not ok and why


@pytest.fixture(scope="module")
def heavy_ball():
    return train_window("momentum", 0.02, 0)


def test_042(heavy_ball):
    s2, traj2 = heavy_ball
    ctx = dict(model=s2.model, traj=traj2, loader=s2.train_loader, lr=0.02, momentum=0.9)
    d = traj2.snapshots.diff(dim=1)
    exact = -(d[:, -1] - 0.9 * d[:, -2]) / 0.02
    grad2 = traj2.flatten(pruning.gradients(s2.model, **all_data(s2)))
    right = {"finite difference": angle(exact, grad2), "g_K": angle(kt.koopman(traj2).gradient(), grad2),
             "last step": angle(-d[:, -1], grad2)}
    ok, why = verdict("04.2", right, **ctx)
    assert ok, why
    ok, why = verdict("04.2", dict(right, **{"last step": angle(d[:, -1], grad2)}), **ctx)
    assert not ok and "'last step' has the wrong sign" in why
    wrong_fd = -(d[:, -1] + 0.9 * d[:, -2]) / 0.02
    ok, why = verdict("04.2", dict(right, **{"finite difference": angle(wrong_fd, grad2)}), **ctx)
    assert not ok and "'finite difference' is off" in why
    ok, why = verdict("04.2", {key: math.radians(v) for key, v in right.items()}, **ctx)
    assert not ok and "radians" in why
    for wrong in (..., 3.0, {"g_K": 1.0}):
        ok, why = verdict("04.2", wrong, **ctx)
        assert not ok and why


@pytest.mark.slow
def test_043():
    seeds = [0, 1]
    ctx = dict(train_window=train_window, seeds=seeds, lr=0.05, window=WINDOW)

    def mean_angles(window):
        out = {"g_K": [], "mean step": []}
        for seed in seeds:
            s3, t3 = train_window("sgd", 0.05, seed, full_batch=False, window=window)
            grad3 = t3.flatten(pruning.gradients(s3.model, **all_data(s3)))
            mean_step = (t3.snapshots[:, 0] - t3.snapshots[:, -1]) / (0.05 * (len(t3) - 1))
            out["g_K"].append(angle(kt.koopman(t3).gradient(), grad3))
            out["mean step"].append(angle(mean_step, grad3))
        return {key: sum(v) / len(v) for key, v in out.items()}

    per = {w: mean_angles(w) for w in (WINDOW, 2 * WINDOW)}
    right = {key: {w: per[w][key] for w in per} for key in ("g_K", "mean step")}
    ok, why = verdict("04.3", right, **ctx)
    assert ok, why
    ok, why = verdict("04.3", {"g_K": right["mean step"], "mean step": right["g_K"]}, **ctx)
    assert not ok and "swapped" in why
    flipped = {key: {WINDOW: v[2 * WINDOW], 2 * WINDOW: v[WINDOW]} for key, v in right.items()}
    ok, why = verdict("04.3", flipped, **ctx)
    assert not ok and "window lengths are swapped" in why
    for wrong in (..., {"g_K": 1.0, "mean step": 2.0}, {"g_K": {WINDOW: 1.0}}):
        ok, why = verdict("04.3", wrong, **ctx)
        assert not ok and why
