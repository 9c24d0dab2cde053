"""Checkers of notebook 02: right on the solution's value, "not yet" on plausible wrong answers and on `...`."""
import copy
import warnings

import pytest

import koopman_tut as kt
from koopman_tut import experiments as ex
from koopman_tut import pruning
from koopman_tut.tooling.checks import verdict


@pytest.fixture(scope="module")
def window():
    s = ex.setup("digits", seed=4)
    ex.run(s, 8, seed=4)
    traj = ex.record(s, 10, seed=4)
    k = kt.koopman(traj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmp = k.kmp_scores()
    return s, traj, k, kmp


@pytest.mark.slow  # a tiny real training run (a few seconds on a busy 2-core CPU)
def test_02_1(window):
    s, _, k, kmp = window
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        right = ex.overlaps(s.model, kmp, k.kmp_scores("closest"), [2, 8, 32])
    ctx = dict(model=s.model, limit_scores=kmp, k=k)
    ok, msg = verdict("02.1", right, **ctx)
    assert ok, msg
    gmp = ex.overlaps(s.model, pruning.magnitude_scores(s.model), kmp, [2, 8, 32])
    for wrong in ({2: 1.0, 8: 1.0, 32: 1.0}, {2: right[2], 8: right[8]}, {**right, 32: right[32] - 0.05},
                  right[8], ..., {str(c): v for c, v in right.items()}, {c: str(v) for c, v in right.items()}):
        assert not verdict("02.1", wrong, **ctx)[0], wrong
    if any(abs(gmp[c] - right[c]) > 0.01 for c in gmp):
        assert not verdict("02.1", gmp, **ctx)[0]   # KMP against GMP instead


@pytest.mark.slow  # a tiny real training run (a few seconds on a busy 2-core CPU)
def test_02_2(window):
    s, traj, _, _ = window
    s4 = copy.deepcopy(s)
    traj4 = ex.record(s4, 4 * 6, every=4, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kgp = kt.koopman(traj4).kgp_scores()
    ordered = ex.loader(s4.train_loader.dataset, 128)
    right = ex.overlaps(s4.model, pruning.gradient_scores(s4.model, ordered, n_batches=len(ordered)), kgp, [8])[8]
    stale = ex.overlaps(s4.model, pruning.gradient_scores(s.model, ordered, n_batches=len(ordered)), kgp, [8])[8]
    ctx = dict(traj=traj4, setup=s4, compression=8, window=6, every_step=0.3)
    ok, msg = verdict("02.2", right, **ctx)
    assert ok, msg
    for wrong in (0.3, right - 0.05, ...):
        assert not verdict("02.2", wrong, **ctx)[0], wrong
    if abs(stale - right) > 0.005:
        assert not verdict("02.2", stale, **ctx)[0]            # the gradient of the model before the window
    assert not verdict("02.2", right, **{**ctx, "traj": traj})[0]   # snapshots 1 step apart
    assert not verdict("02.2", right, **{**ctx, "setup": s})[0]     # the model is not at the end of traj4


@pytest.mark.slow  # a tiny real training run (a few seconds on a busy 2-core CPU)
def test_02_3(window):
    s, _, _, _ = window
    gmp = pruning.magnitude_scores(s.model)
    masks = pruning.global_masks(gmp, 32, model=s.model)
    kept = {n: float(m.float().mean()) for n, m in masks.items()}
    right = min(kept, key=kept.get)
    ok, msg = verdict("02.3", right, model=s.model, scores=gmp)
    assert ok, msg
    for wrong in (max(kept, key=kept.get), "classifier.weight", "features.0.bias", 2, ...):
        if wrong != right:
            assert not verdict("02.3", wrong, model=s.model, scores=gmp)[0], wrong
