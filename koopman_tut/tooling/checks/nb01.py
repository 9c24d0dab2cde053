"""Checkers of notebook 01 (the Koopman operator and DMD). Each recomputes its answer from the
objects the check cell passes (cheap: small matrices), so it holds at any seed and under SMOKE."""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from . import agrees, checker, close, number


def _fixed_point_errors(noisy, x_star, rank: int) -> tuple[float, float]:
    import koopman_tut as kt

    out = []
    for r in (-1, rank):
        res = kt.dmd(noisy, svd_rank=r)
        out.append(float(np.abs(res.fixed_point().numpy() - np.asarray(x_star)).max()))
    return out[0], out[1]


@checker("01.1", expects="a tuple of two floats: the largest |fixed point - x*| of kt.dmd(noisy) with "
                         "svd_rank=-1, then with svd_rank=len(q.eigs)")
def noisy_fixed_point(answer, noisy=None, x_star=None, rank=None):
    """Context: noisy (the noisy trajectory), x_star (q.x_star), rank (len(q.eigs))."""
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") or len(answer) != 2:
        raise TypeError(f"expected a tuple of two floats, got {answer!r:.60}")
    got = [number(v) for v in answer]
    full, trunc = _fixed_point_errors(noisy, x_star, rank)
    if agrees(got[0], full, rel=1e-4) and agrees(got[1], trunc, rel=1e-4):
        verdict = "helps" if trunc < full else "does not help"
        return True, f"noise of 1e-6 moves the fixed point by {full:.1e} (every mode) and {trunc:.1e} (rank {rank}): truncation {verdict} here."
    if agrees(got[0], trunc, rel=1e-4) and agrees(got[1], full, rel=1e-4):
        return False, "the two errors are in the wrong order. Hint: first svd_rank=-1, then the true rank."
    if min(got) < 0:
        return False, "an error here is a size, max |fixed point - x*|: it cannot be negative."
    if max(got) < 1e-9:
        return False, "these are the errors of the noise-free trajectory. Hint: decompose `noisy`, not q.W."
    return False, ("not both errors are right (which one is off is not said: that would let each be guessed on its "
                   "own). Hint: each error is the largest entry of the distance between the fixed point of the noisy "
                   "decomposition and the true minimum q.x_star.")


def _smallest_separating(lr: float, seed: int, counts=(2, 3, 4, 6)) -> int | None:
    import koopman_tut as kt
    from koopman_tut.training.systems import quadratic_gd

    for n in counts:
        q2 = quadratic_gd([1.0, 1.02], lr=lr, n_steps=n - 1, dim=6, seed=seed)
        got = kt.dmd(q2.W).eigs.numpy()
        if max(np.abs(got - e).min() for e in q2.eigs) < 1e-6:
            return n
    return None


@checker("01.2", expects="an int: the smallest of 2, 3, 4, 6 snapshots for which kt.dmd finds every eigenvalue "
                         "of q2.eigs to 1e-6")
def close_eigenvalues(answer, lr=0.2, seed=0):
    """Context: lr (LR), seed (SEED)."""
    if isinstance(answer, bool) or not isinstance(answer, Integral):
        if isinstance(answer, Real) and float(answer).is_integer():
            answer = int(answer)
        else:
            raise TypeError(f"expected an int (a number of snapshots), got {answer!r:.60}")
    want = _smallest_separating(lr, seed)
    if want is None:
        return False, "none of 2, 3, 4, 6 snapshots finds every eigenvalue at this LR. Hint: check LR."
    if answer == want:
        return True, (f"{want} snapshots give X = W[:, :-1] the {want - 1} independent columns that 1 and the "
                      "two close eigenvalues need.")
    if answer not in (2, 3, 4, 6):
        return False, "the answer must be one of the counts tried: 2, 3, 4 or 6."
    if answer > want:
        return False, (f"{answer} snapshots work, but a smaller count of those tried works too. Hint: try the "
                       "smaller ones and print how far each true eigenvalue is from its nearest DMD eigenvalue.")
    return False, (f"with {answer} snapshots X has {answer - 1} column(s), so DMD returns at most {answer - 1} "
                   "eigenvalue(s), fewer than the modes. Hint: count the modes of q2.")


@checker("01.3", expects="a float: the memory of all T - 1 complex64 modes divided by the memory of the "
                         "float32 data (n x T)")
def mode_memory(answer, n=1_000_000, T=64):
    """Context: n, T (the sizes given in the exercise)."""
    x = number(answer)
    want = (n * (T - 1) * 8) / (n * T * 4)
    if agrees(x, want, rel=1e-3):
        return True, f"all {T - 1} modes take {want:.3f} times the data's memory; one fixed point 1/T of it."
    if agrees(x, 1 / want, rel=1e-3):
        return False, "that is the data's memory over the modes'. Hint: modes / data."
    if close(x, 2.0, rel=1e-4):
        return False, "that counts T modes. Hint: DMD of T snapshots (T - 1 columns in X) has at most T - 1."
    if agrees(x, want / 2, rel=1e-3):
        return False, "that counts 4 bytes per mode entry. Hint: a complex64 number takes 8 bytes."
    if agrees(x, 1 / T, rel=1e-3):
        return False, "that is the one vector KMP needs, not all modes."
    return False, "that is not the ratio of the two memories. Hint: count the entries and the bytes per entry of each."
