"""Checkers of notebook 06 (koopman_tut.tooling.checks.nb06) on small synthetic context objects: right on
the solution's value, "not yet" on plausible wrong answers (reversed signs, the wrong seed or rule, no
rescaling, the stale default rank) and on `...`, never raising."""
import math
from types import SimpleNamespace

import torch

import koopman_tut
from koopman_tut import pruning
from koopman_tut.numerics import spectra
from koopman_tut.tooling.checks import verdict

ALL_H = [0, 1, 10, math.inf]


def masks(seed, keep=0.3):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.rand(20, 5, generator=g) < keep, "b": torch.rand(7, generator=g) < keep}


def fake_run(seed):
    return {"future": {h: masks(100 * seed + i) for i, h in enumerate(ALL_H)},
            "masks": {h: masks(100 * seed + 50 + i) for i, h in enumerate(ALL_H)}}


def gain(r):
    return {h: pruning.kept_overlap(r["future"][h], r["masks"][h]) - pruning.kept_overlap(r["future"][h], r["masks"][0])
            for h in ALL_H[1:]}


def test_061():
    ctx = dict(horizon_run=fake_run, horizons=ALL_H, runs=[fake_run(0)])
    right = gain(fake_run(14))
    ok, why = verdict("06.1", right, **ctx)
    assert ok, why
    assert not verdict("06.1", ..., **ctx)[0]
    ok, why = verdict("06.1", {h: -v for h, v in right.items()}, **ctx)
    assert not ok and "reversed" in why
    ok, why = verdict("06.1", gain(fake_run(0)), **ctx)
    assert not ok and "first seed" in why
    assert not verdict("06.1", {1: right[1]}, **ctx)[0]
    assert verdict("06.1", {0: 0.0, **right}, **ctx)[0]  # h = 0 may be included


class FakeK:
    def __init__(self, seed):
        self.seed = seed

    def kmp_scores(self, rule="limit"):
        g = torch.Generator().manual_seed(self.seed + (0 if rule == "limit" else 1))
        return {"a": torch.rand(20, 5, generator=g), "b": torch.rand(7, generator=g)}


def masks_at(model, scores):
    return {n: v > 0.6 for n, v in scores.items()}


def shares(runs, rule):
    return [pruning.kept_overlap(r["future"][math.inf], masks_at(r["model"], r["k"].kmp_scores(rule))) for r in runs]


def test_062():
    runs = [{"future": {math.inf: masks(s)}, "masks": {0: masks(s + 7)}, "model": None, "k": FakeK(10 * s)}
            for s in range(3)]
    right = {"limit": shares(runs, "limit"), "closest": shares(runs, "closest")}
    ok, why = verdict("06.2", right, runs=runs, masks_at=masks_at)
    assert ok, why
    assert not verdict("06.2", ..., runs=runs, masks_at=masks_at)[0]
    ok, why = verdict("06.2", {"limit": right["closest"], "closest": right["limit"]}, runs=runs, masks_at=masks_at)
    assert not ok and "swapped" in why
    gmp = [pruning.kept_overlap(r["future"][math.inf], r["masks"][0]) for r in runs]
    ok, why = verdict("06.2", {**right, "closest": gmp}, runs=runs, masks_at=masks_at)
    assert not ok and "GMP" in why
    assert not verdict("06.2", {"limit": 0.9, "closest": 0.9}, runs=runs, masks_at=masks_at)[0]


SPEC = {0.05: [torch.tensor([0.95, 0.5 + 0.2j]), torch.tensor([0.94, -0.3])],
        0.01: [torch.tensor([0.99, 0.1]), torch.tensor([1.001 + 0.01j, 0.2])]}


def test_063():
    fast, slow = ([float(e.abs().max()) for e in SPEC[lr]] for lr in (0.05, 0.01))
    right = [b ** 5 - a for a, b in zip(fast, slow)]
    ok, why = verdict("06.3", right, spec=SPEC, ratio=5)
    assert ok, why
    assert not verdict("06.3", ..., spec=SPEC, ratio=5)[0]
    ok, why = verdict("06.3", [-v for v in right], spec=SPEC, ratio=5)
    assert not ok and "reversed" in why
    ok, why = verdict("06.3", [b - a for a, b in zip(fast, slow)], spec=SPEC, ratio=5)
    assert not ok and "rescaled" in why
    assert not verdict("06.3", right[:1], spec=SPEC, ratio=5)[0]


def test_064(monkeypatch):
    def fake_koopman(traj, limit_rank=None):  # traj: a seed; rank 6 gives other eigenvalues than the default
        g = torch.Generator().manual_seed(traj + (1000 if limit_rank == 6 else 0))
        return SimpleNamespace(affine=SimpleNamespace(eigs=torch.rand(6, generator=g) + 0j))

    monkeypatch.setattr(koopman_tut, "koopman", fake_koopman)
    analyses = {0.05: [SimpleNamespace(traj=s) for s in (1, 2, 3)], 0.01: [SimpleNamespace(traj=s) for s in (4, 5, 6)]}

    def gaps(rank):
        fast, slow = ([fake_koopman(k.traj, rank).affine.eigs for k in analyses[lr]] for lr in (0.05, 0.01))
        d = spectra.wasserstein
        return [d(fast[i], slow[i]) - (d(fast[i], fast[(i + 1) % 3]) + d(slow[i], slow[(i + 1) % 3])) / 2
                for i in range(3)]

    ctx = dict(analyses=analyses, distance=spectra.wasserstein, default=gaps(None))
    ok, why = verdict("06.4", gaps(6), **ctx)
    assert ok, why
    assert not verdict("06.4", ..., **ctx)[0]
    ok, why = verdict("06.4", gaps(None), **ctx)
    assert not ok and "default rank" in why
    ok, why = verdict("06.4", [-v for v in gaps(6)], **ctx)
    assert not ok and "reversed" in why
