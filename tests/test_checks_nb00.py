"""Checkers of notebook 00: right on the solution's value, "not yet" on plausible wrong answers and on `...`."""
import copy
import warnings

import numpy as np
import pytest

import koopman_tut as kt
from koopman_tut import experiments as ex
from koopman_tut import pruning
from koopman_tut.tooling.checks import verdict

C = 8


@pytest.fixture(scope="module")
def early():
    """A tiny real run: a few steps of training, then a 6-step window (as the solution of 00.1 does)."""
    s = ex.setup("digits", seed=3)
    ex.run(s, 4, seed=3)
    traj = ex.record(s, 6, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmp = kt.koopman(traj).kmp_scores()
    return s, traj, kmp


@pytest.mark.slow  # a tiny real training run (a few seconds on a busy 2-core CPU)
def test_00_1(early):
    s, traj, kmp = early
    right = ex.overlaps(s.model, pruning.magnitude_scores(s.model), kmp, [C])[C]
    ctx = dict(traj=traj, model=s.model, compression=C, window=6, start=4, converged=0.5)
    ok, msg = verdict("00.1", right, **ctx)
    assert ok, msg
    for wrong in (0.5, 1 - right, right - 0.05, ...):  # the converged (stale) value, the complement, off
        ok, msg = verdict("00.1", wrong, **ctx)
        assert not ok and f"{right:.3f}" not in msg, (wrong, msg)
    assert not verdict("00.1", right, **{**ctx, "start": 5})[0]   # the window does not start after the training asked
    assert not verdict("00.1", right, **{**ctx, "window": 7})[0]
    assert not verdict("00.1", right, **{**ctx, "traj": ...})[0]  # traj2 not recorded yet
    assert not verdict("00.1", "0.9", **ctx)[0]
    typed = float(f"{right:.2f}")  # a printout's rounding, coarser than the slips the check tells apart
    if abs(typed - right) > 1e-3:  # (true at this seed; a closer rounding would be within the tolerance)
        ok, msg = verdict("00.1", typed, **ctx)
        assert not ok and "typed" in msg, msg
    typed_msgs = {verdict("00.1", t, **ctx)[1].replace(str(t), "x") for t in  # the same message whether or
                  (float(f"{right:.2f}"), float(f"{right - 0.02:.2f}"), float(f"{right:.3f}"))  # not it rounds right
                  if abs(t - right) > 1e-3}
    assert len(typed_msgs) <= 1 and all("typed" in m for m in typed_msgs), typed_msgs


@pytest.mark.slow  # a tiny real training run (a few seconds on a busy 2-core CPU)
def test_00_1_refuses_gmp_taken_after_the_window(early):
    s, traj, _ = early
    moved = copy.deepcopy(s)
    ex.run(moved, 2, seed=4)
    ok, msg = verdict("00.1", 0.9, traj=traj, model=moved.model, compression=C)
    assert not ok and "end of the window" in msg


@pytest.mark.slow  # a tiny real training run (a few seconds on a busy 2-core CPU)
def test_00_2(early):
    s, traj, kmp = early
    s5 = copy.deepcopy(s)
    traj5 = ex.record(s5, 5 * 6, every=5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        right = ex.overlaps(s.model, kmp, kt.koopman(traj5).kmp_scores(), [C])[C]
    ctx = dict(traj=traj5, model=s.model, kmp=kmp, compression=C, window=6)
    assert verdict("00.2", right, **ctx)[0]
    for wrong in (1.0, right - 0.05, ...):
        assert not verdict("00.2", wrong, **ctx)[0]
    assert not verdict("00.2", right, **{**ctx, "traj": traj})[0]   # the every-step window
    assert not verdict("00.2", right, **{**ctx, "window": 5})[0]


@pytest.mark.slow  # a tiny real training run (a few seconds on a busy 2-core CPU)
def test_00_3(early):
    s, _, kmp = early
    scores = {"GMP": pruning.magnitude_scores(s.model), "KMP": kmp}
    rows = ex.compare(s.model, scores, [16, 32], s.test_loader, random=3, seed=3)
    at = lambda c: {r.method: r.accuracy for r in rows if r.compression == c}  # noqa: E731
    ctx = dict(model=s.model, scores=scores, test_loader=s.test_loader, seed=3)
    ok, msg = verdict("00.3", at(16), **ctx)
    assert ok, msg
    wrong_random = {**at(16), "random": at(16)["random"] + 0.1}
    assert not verdict("00.3", wrong_random, **ctx)[0]
    assert not verdict("00.3", {k: v for k, v in at(16).items() if k != "random"}, **ctx)[0]
    assert not verdict("00.3", {**at(16), "GMP": at(16)["GMP"] + 0.05}, **ctx)[0]
    one_off = [verdict("00.3", {**at(16), m: at(16)[m] + 0.05}, **ctx)[1] for m in ("GMP", "KMP", "random")]
    assert len(set(one_off)) == 1 and "GMP is off" not in one_off[0]  # which one is off is not said
    assert not verdict("00.3", [0.5, 0.5, 0.1], **ctx)[0]
    assert not verdict("00.3", {k: str(v) for k, v in at(16).items()}, **ctx)[0]  # text is not a number
    assert verdict("00.3", {k: np.float32(v) for k, v in at(16).items()}, **ctx)[0]  # a NumPy number is
    assert not verdict("00.3", ..., **ctx)[0]
    if any(abs(at(32)[m] - at(16)[m]) > 0.01 for m in at(16)):
        assert not verdict("00.3", at(32), **ctx)[0]   # another compression
