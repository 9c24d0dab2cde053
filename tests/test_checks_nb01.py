"""Checkers of notebook 01: right on the solution's value, "not yet" on plausible wrong answers and on `...`."""
import numpy as np

import koopman_tut as kt
from koopman_tut.tooling.checks import verdict
from koopman_tut.training.systems import quadratic_gd


def test_01_1():
    q = quadratic_gd(np.linspace(0.5, 4.0, 8), lr=0.2, n_steps=12, dim=20, seed=5)
    noisy = q.W + 1e-6 * np.random.default_rng(5).standard_normal(q.W.shape)
    errs = tuple(float(np.abs(kt.dmd(noisy, svd_rank=r).fixed_point().numpy() - q.x_star).max())
                 for r in (-1, len(q.eigs)))
    ctx = dict(noisy=noisy, x_star=q.x_star, rank=len(q.eigs))
    ok, msg = verdict("01.1", errs, **ctx)
    assert ok, msg
    assert verdict("01.1", list(errs), **ctx)[0]
    clean = tuple(float(np.abs(kt.dmd(q.W, svd_rank=r).fixed_point().numpy() - q.x_star).max()) for r in (-1, len(q.eigs)))
    for wrong in (errs[::-1], clean, (errs[0], errs[0] * 3), errs[0], ...):
        ok, msg = verdict("01.1", wrong, **ctx)
        assert not ok and f"{errs[1]:.1e}" not in msg, (wrong, msg)


def test_01_2():
    for seed in (0, 7):
        ctx = dict(lr=0.2, seed=seed)
        ok, msg = verdict("01.2", 4, **ctx)
        assert ok, msg
        assert verdict("01.2", 4.0, **ctx)[0]
        for wrong in (2, 3, 6, 5, "4", ...):
            ok, msg = verdict("01.2", wrong, **ctx)
            assert not ok, (wrong, msg)


def test_01_3():
    n, T = 1_000_000, 64
    right = n * (T - 1) * 8 / (n * T * 4)
    assert verdict("01.3", right, n=n, T=T)[0]
    assert verdict("01.3", 2 * (10 - 1) / 10, n=5, T=10)[0]  # from the context, not a stored number
    for wrong in (2.0, right / 2, 1 / right, 1 / T, 1.0, ...):
        ok, msg = verdict("01.3", wrong, n=n, T=T)
        assert not ok and f"{right:.3f}" not in msg, (wrong, msg)
