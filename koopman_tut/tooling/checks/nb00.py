"""Checkers of notebook 00 (quickstart). Each recomputes what it needs from the objects the check
cell passes, so it holds at any seed and under SMOKE; none of them compares with a stored number."""
from __future__ import annotations

import warnings

from . import checker, close, is_trajectory, share, strided_window_problem, typed_digits

TOL = 2e-3  # accuracies: about one test image of 450 (the same computation twice agrees to rounding)


def _typed(x: float, want: float, tol: float) -> str | None:
    """What is off when ``x`` looks typed from a printout (2 to 6 significant digits) and is not within ``tol``
    of ``want``; else None. The message is the same whether or not ``x`` rounds to ``want``: one that said so
    would let a guess be refined a digit at a time."""
    if close(x, want, abs_=tol) or not 2 <= typed_digits(x) <= 6:
        return None
    return (f"{x} looks typed ({typed_digits(x)} significant digits), and a typed number is too coarse to tell "
            "from the slips this check looks for (they differ by a dozen weights). Hint: set answer to the computed "
            "value, not to a number typed from a printout.")


def _weights_tol(model, compression) -> float:
    """Two and a half kept weights as a share of the kept set: a kept overlap computed twice agrees
    to rounding (a GPU may flip a weight or two at a tie), while the plausible wrong answers (the
    GMP mask of the window's end, the paper's single mode) differ by a dozen weights or more."""
    n = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1)
    return 2.5 * float(compression) / max(n, 1)


def _kmp_overlap(traj, model, reference, compression: float, rule: str = "limit") -> float:
    """Kept overlap at ``compression`` of KMP (``rule``) from ``traj`` with the scores ``reference``."""
    import koopman_tut as kt
    from koopman_tut.training import experiments as ex

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmp = kt.koopman(traj).kmp_scores(rule)
    return ex.overlaps(model, reference, kmp, [compression])[compression]


@checker("00.1", expects="a float: the kept overlap at compression COMPRESSION of KMP (from the 2-epoch window "
                         "traj2) with GMP (the magnitudes of s2.model at the end of that window)")
def kmp_vs_gmp_early(answer, traj=None, model=None, compression=8, window=None, start=None, converged=None):
    """Context: traj (the recorded window), model (s2.model), compression, window (WINDOW), start (the
    step the window should start at: 2 epochs), converged (the overlap after full training)."""
    x = share(answer)
    if not is_trajectory(traj):
        return False, "`traj2` is not a recorded window yet. Hint: traj2 = ex.record(s2, WINDOW, seed=SEED) after training."
    if start is not None and int(traj.steps[0]) != start:
        return False, (f"the window starts after {int(traj.steps[0])} optimizer steps, not after 2 epochs "
                       f"({start} steps). Hint: train s2 with ex.run for 2 * len(s2.train_loader) steps first, once.")
    if window is not None and len(traj) != window + 1:
        return False, (f"the window has {len(traj)} snapshots; recording WINDOW steps gives {window + 1}. "
                       "Hint: ex.record(s2, WINDOW, seed=SEED).")
    from koopman_tut import pruning

    now = traj.flatten(dict(model.named_parameters())).to(traj.snapshots.dtype).cpu()
    if not bool((now - traj.snapshots[:, -1].cpu()).abs().max() <= 1e-6 * (1 + float(now.abs().max()))):
        return False, ("s2.model is no longer at the end of the window, so GMP is taken elsewhere. "
                       "Hint: record the window last and do not train s2 after it.")
    want, tol = _kmp_overlap(traj, model, pruning.magnitude_scores(model), compression), _weights_tol(model, compression)
    if typed := _typed(x, want, tol):
        return False, typed
    if close(x, want, abs_=tol):
        return True, (f"KMP keeps {want:.3f} of GMP's kept weights after 2 epochs"
                      + (f", against {converged:.3f} after full training." if converged is not None else "."))
    if converged is not None and close(x, converged, abs_=TOL / 10):
        return False, "that is the overlap after full training (overlap[\"KMP\"]). Hint: compute it on traj2 and s2.model."
    if close(x, 1 - want, abs_=TOL):
        return False, "that is the share of kept weights the two masks disagree on. Hint: the kept overlap is the share they agree on."
    return False, (f"that is not the kept overlap of KMP with GMP at compression {compression} on this window. "
                   "Hint: ex.overlaps(s2.model, GMP scores, KMP scores, [COMPRESSION])[COMPRESSION], with "
                   "GMP from pruning.magnitude_scores(s2.model).")


@checker("00.2", expects="a float: the kept overlap at compression COMPRESSION of KMP from the every=5 window "
                         "traj5 with KMP from the every-step window (scores['KMP'])")
def sparse_recording(answer, traj=None, model=None, kmp=None, compression=8, window=None):
    """Context: traj (traj5), model (s.model: which weights are prunable), kmp (scores["KMP"]),
    compression, window (WINDOW)."""
    x = share(answer)
    problem = strided_window_problem(traj, "traj5", 5, window, "traj5 = ex.record(s5, 5 * WINDOW, every=5, seed=SEED)",
                                     "record 5 * WINDOW steps with every=5")
    if problem:
        return False, problem
    want = _kmp_overlap(traj, model, kmp, compression)
    paper, tol = _kmp_overlap(traj, model, kmp, compression, rule="closest"), _weights_tol(model, compression)
    if typed := _typed(x, want, tol):
        return False, typed
    if x != want and close(x, paper, abs_=tol) and abs(x - paper) < abs(x - want):
        return False, ("that is KMP of traj5 by the paper's single mode (rule='closest'). Hint: use the package's "
                       "default rule, as scores['KMP'] did.")
    if close(x, want, abs_=tol):
        return True, f"KMP from every 5th step keeps {want:.3f} of the every-step KMP's kept weights."
    if x == 1.0:
        return False, "1.0 is the every-step KMP compared with itself. Hint: compare it with KMP of traj5."
    return False, (f"that is not the kept overlap of the two KMP masks at compression {compression}. "
                   "Hint: ex.overlaps(s.model, scores['KMP'], KMP scores of kt.koopman(traj5), [COMPRESSION]).")


@checker("00.3", expects="a dict {'GMP': accuracy, 'KMP': accuracy, 'random': mean accuracy of three random "
                         "masks} at compression 16")
def compression_16(answer, model=None, scores=None, test_loader=None, seed=0):
    """Context: model (s.model), scores (with 'GMP' and 'KMP'), test_loader, seed (SEED)."""
    from koopman_tut.training import experiments as ex

    if not isinstance(answer, dict):
        raise TypeError(f"expected a dict, got {type(answer).__name__}")
    if set(answer) != {"GMP", "KMP", "random"}:
        return False, f"the dict has keys {sorted(map(str, answer))}; it needs exactly 'GMP', 'KMP' and 'random'."
    rules = {"GMP": scores["GMP"], "KMP": scores["KMP"]}
    rows = ex.compare(model, rules, [16], test_loader, random=3, seed=seed)
    want = {r.method: r.accuracy for r in rows}
    off = [m for m in want if not close(answer[m], want[m], abs_=TOL)]
    if not off:
        return True, (f"at compression 16: GMP {want['GMP']:.3f}, KMP {want['KMP']:.3f}, random {want['random']:.3f} "
                      "(chance 0.1).")
    return False, ("not yet: the three are not all the accuracies at compression 16 (which ones are off is not "
                   "said: each could be guessed alone). Hint: ex.compare(s.model, {'GMP': scores['GMP'], 'KMP': "
                   "scores['KMP']}, [16], s.test_loader, random=3, seed=SEED) and read each row's .accuracy; random "
                   "is the mean over its three masks.")
