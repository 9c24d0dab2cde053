"""Checkers of notebook 07 (koopman_tut.tooling.checks.nb07) on the real optimizer runs and a tiny real
width study: right on the solution's value, "not yet" on plausible wrong answers (P = identity or
singular, a stale table, swapped pairs) and on `...`, never raising."""
import numpy as np
import pytest
import torch

from koopman_tut.numerics import equivalence, spectra
from koopman_tut.tooling.checks import verdict
from koopman_tut.training import width_spectra


def test_071():
    runs = equivalence.equivalence_runs()["OMD"]
    omd = spectra.spectrum(runs, 2)
    P = np.random.default_rng(0).standard_normal((2, 2))
    right = (P, spectra.wasserstein(spectra.spectrum([P @ r for r in runs], 2), omd))
    ctx = dict(runs=runs, omd=omd, delays=2)
    ok, why = verdict("07.1", right, **ctx)
    assert ok, why
    assert not verdict("07.1", ..., **ctx)[0]
    ok, why = verdict("07.1", (np.eye(2), 0.0), **ctx)
    assert not ok and "identity" in why
    ok, why = verdict("07.1", (np.ones((2, 2)), 0.0), **ctx)
    assert not ok and "singular" in why
    assert not verdict("07.1", (P, 0.5), **ctx)[0]
    assert not verdict("07.1", right[1], **ctx)[0]
    assert not verdict("07.1", (P, str(right[1])), **ctx)[0]  # text is not a number
    assert not verdict("07.1", (P.astype(str), right[1]), **ctx)[0]
    assert right[1] > 0  # rounding, not 0: so a typed 0, or OMD compared with itself, is caught
    ok, why = verdict("07.1", (P, 0.0), **ctx)
    assert not ok and "itself" in why
    ok, why = verdict("07.1", (P, spectra.wasserstein(omd, omd)), **ctx)
    assert not ok
    for typed in (1e-9, 5e-7, right[1] / 100):  # rounding-sized guesses: the answer, said honestly
        ok, why = verdict("07.1", (P, typed), **ctx)
        assert ok and "cannot tell" in why, (typed, why)
    for wrong in (2e-6, 1e-3, 0.1):  # more than rounding: a different spectrum
        assert not verdict("07.1", (P, wrong), **ctx)[0], wrong
    R = np.linalg.qr(np.random.default_rng(1).standard_normal((2, 2)))[0]
    ill = R @ np.diag([1.0, 1e-5]) @ R.T  # the rank cut drops a direction of the moved runs: the spectrum changes
    omd4 = spectra.spectrum(runs, 4)  # the notebook's 4 delays (with 2 the cut drops it only from about 1e8)
    far = spectra.wasserstein(spectra.spectrum([ill @ r for r in runs], 4), omd4)
    ok, why = verdict("07.1", (ill, far), runs=runs, omd=omd4, delays=4)
    assert far > 1e-3 and not ok and "ill-conditioned" in why, (far, why)
    for route in (lambda r: np.einsum("ij,jt->it", P, r), lambda r: (torch.tensor(P) @ torch.tensor(r)).numpy(),
                  lambda r: P[:, :1] * r[:1] + P[:, 1:] * r[1:]):  # other ways to move the runs: other rounding
        assert verdict("07.1", (P, spectra.wasserstein(spectra.spectrum([route(r) for r in runs], 2), omd)), **ctx)[0]


def means(st):
    return {(a, b): float((st.within(a) if a == b else st.between(a, b)).mean())
            for i, a in enumerate(st.widths) for b in st.widths[i:]}


@pytest.mark.slow
def test_072():
    kw = dict(widths=[5, 10], seeds=[0, 1], inits=2)
    short, longer = (width_spectra.width_study(**kw, epochs=e) for e in (1, 2))
    ctx = dict(**kw, study=longer)
    ok, why = verdict("07.2", means(short), **ctx)
    assert ok, why
    assert not verdict("07.2", ..., **ctx)[0]
    ok, why = verdict("07.2", means(longer), **ctx)
    assert not ok and "section 4" in why
    assert not verdict("07.2", {(5, 10): 0.1}, **ctx)[0]


def test_073():
    right = {}
    for k in range(7):
        E = spectra.equivalence_example(k)
        right[k] = (spectra.wasserstein(E["OMD"], E["OGD"]), spectra.wasserstein(E["OMD"], E["bisection"]))
    ok, why = verdict("07.3", right)
    assert ok, why
    assert not verdict("07.3", ...)[0]
    ok, why = verdict("07.3", {k: v[::-1] for k, v in right.items()})
    assert not ok and "swapped" in why
    assert not verdict("07.3", {k: right[k] for k in range(6)})[0]
    assert not verdict("07.3", {k: tuple(map(str, v)) for k, v in right.items()})[0]  # text is not a number
    assert not verdict("07.3", {**right, 4: (right[4][0], 0.0)})[0]
