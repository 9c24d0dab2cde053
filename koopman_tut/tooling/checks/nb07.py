"""Checkers of notebook 07's exercises (07_equivalent_dynamics).

Each recomputes the answer from the notebook's objects and parameters (the optimizer runs, the
width study's settings, the equivalence example) and compares: 07.1 and 07.3 in about a second, 07.2 in the
time of the one-epoch width study it retrains.
"""
from __future__ import annotations

import numpy as np

from . import checker, close, number


@checker("07.1", expects="a tuple (P, distance): your invertible 2 x 2 matrix P (not a multiple of the identity) "
                         "and the Wasserstein distance between the spectrum of the runs P @ r and OMD's spectrum")
def linear_conjugacy(answer, runs, omd, delays):
    """``runs``: OMD's runs (each (2, T)); ``omd``: OMD's spectrum at ``delays`` delays."""
    from ...numerics import spectra

    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        return False, "`answer` should be a tuple (P, distance)."
    P, dist = np.asarray(answer[0]), number(answer[1])
    if P.dtype.kind not in "iuf":
        return False, "P should be a 2 x 2 array of numbers."
    P = P.astype(float)
    if P.shape != (2, 2) or not np.isfinite(P).all():
        return False, "P should be a 2 x 2 array of finite numbers."
    if (cond := np.linalg.cond(P)) > 1e8:
        return False, "P is (nearly) singular: a conjugacy needs an invertible change of coordinates."
    if cond > 1e3:  # from about 1e5 (the notebook's 4 delays) the moved runs lose a direction to the rank cut
        return False, (f"P is ill-conditioned (condition number {cond:.0e}): the moved runs then have a direction "
                       "float64 barely resolves, the rank cut drops it and the spectrum changes. Hint: a conjugacy "
                       "test needs coordinates the arithmetic resolves: a P with condition number below 1e3.")
    if np.allclose(P, P[0, 0] * np.eye(2)):
        return False, "P is a multiple of the identity: that only rescales. Hint: draw a random 2 x 2 matrix."
    want = spectra.wasserstein(spectra.spectrum([P @ r for r in runs], delays), omd)
    # exact DMD is equivariant, so the distance is rounding (~1e-11; other ways of computing P @ r land elsewhere
    # in it): any positive value of rounding size is the answer, and the check cannot tell a computed one from a
    # typed one (its message says so). An exact 0 was typed, or compares OMD with itself: the moved runs give rounding
    rounding = 1e-6
    if close(dist, want, rel=1e-6, abs_=1e-15):  # an exact 0 where want is 0 too
        return True, "the distance between OMD's spectrum in x and in P x, for your P."
    if want <= rounding and 0 < dist <= rounding:
        return True, (f"rounding-sized, as the moved runs give ({want:.1e} here): the same spectrum. The check cannot "
                      "tell a value computed with your P from a typed one of that size.")
    if dist == 0:
        return False, ("exactly 0 is the distance of OMD's spectrum to itself; the runs moved by your P give rounding, "
                       "not 0. Hint: compute the spectrum of [P @ r for r in runs] with DELAYS delays first.")
    return False, ("not the distance for this P. Hint: the spectrum of the moved runs with DELAYS delays, then "
                   "`spectra.wasserstein` against `E['OMD']`.")


def _means(study) -> dict:
    out = {}
    for i, h1 in enumerate(study.widths):
        for h2 in study.widths[i:]:
            out[(h1, h2)] = float((study.within(h1) if h1 == h2 else study.between(h1, h2)).mean())
    return out


@checker("07.2", expects="a dict {(h1, h2): mean W1 distance} at epochs=1 for every row of the table "
                         "(h1 <= h2 in the order of WIDTHS, (h, h) the seed-to-seed control)")
def one_epoch(answer, widths, seeds, inits, dataset="digits", device="auto", download=False, study=None):
    """Recomputes the one-epoch width study; ``study``: optional, section 4's (a stale answer)."""
    from ...training import width_spectra

    short = width_spectra.width_study(widths=list(widths), seeds=list(seeds), inits=inits, epochs=1,
                                      dataset=dataset, device=device, download=download)
    want = _means(short)
    if not isinstance(answer, dict) or set(answer) != set(want):
        return False, f"`answer` should be a dict with the keys {sorted(want)}."
    got = {k: number(v) for k, v in answer.items()}
    if all(close(got[k], want[k], rel=1e-9, abs_=1e-12) for k in want):
        return True, "the mean distances of the one-epoch table, every pair of widths."
    if study is not None and all(close(got[k], v, rel=1e-9, abs_=1e-12) for k, v in _means(study).items()):
        return False, "these are section 4's distances. Hint: run the width study again with `epochs=1`."
    return False, ("not the one-epoch table's distances. Hint: `between(h1, h2).mean()` for two widths, "
                   "`within(h).mean()` for (h, h), on the one-epoch study.")


@checker("07.3", expects="a dict {k: (OMD-OGD distance, OMD-bisection distance)} for k = 0, 1, ..., 6 delays")
def delays_needed(answer, max_delays: int = 6):
    """Recomputes ``spectra.equivalence_example(k)`` for every k."""
    from ...numerics import spectra

    ks = list(range(max_delays + 1))
    if not isinstance(answer, dict) or sorted(answer) != ks:
        return False, f"`answer` should be a dict with the keys {ks}."
    want = {}
    for k in ks:
        E = spectra.equivalence_example(k)
        want[k] = (spectra.wasserstein(E["OMD"], E["OGD"]), spectra.wasserstein(E["OMD"], E["bisection"]))
    got = {k: tuple(number(x) for x in v) for k, v in answer.items()}
    if any(len(v) != 2 for v in got.values()):
        return False, "each value should be a pair (OMD-OGD, OMD-bisection)."
    ok = lambda a, b: all(close(x, y, rel=1e-9, abs_=1e-15) for x, y in zip(a, b))  # noqa: E731
    if all(ok(got[k], want[k]) for k in ks):
        return True, "both distances at every number of delays."
    if all(ok(got[k], want[k][::-1]) for k in ks):
        return False, "the pairs are swapped. Hint: (OMD-OGD, OMD-bisection)."
    bad = [k for k in ks if not ok(got[k], want[k])]
    return False, f"off at {len(bad)} of {len(ks)} delays (first: k = {bad[0]}). Hint: `spectra.equivalence_example(k)`."
