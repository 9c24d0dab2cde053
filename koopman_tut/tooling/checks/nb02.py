"""Checkers of notebook 02 (Koopman pruning, step by step). Each recomputes its answer from the
objects the check cell passes, so it holds at any seed and under SMOKE."""
from __future__ import annotations

import warnings

from . import checker, close, number, share, strided_window_problem

TOL = 2e-3  # kept overlaps: the same computation twice agrees to rounding; GPUs or a reshuffled gradient may flip a few weights


@checker("02.1", expects="a dict {2: overlap, 8: overlap, 32: overlap}: the kept overlap of k.kmp_scores('closest') "
                         "with scores['KMP'] at each compression")
def closest_vs_limit(answer, model=None, limit_scores=None, k=None):
    """Context: model (s.model), limit_scores (scores["KMP"]), k (the window's KoopmanAnalysis)."""
    from koopman_tut.training import experiments as ex

    if not isinstance(answer, dict):
        raise TypeError(f"expected a dict keyed by compression, got {type(answer).__name__}")
    got = {number(c): share(v) for c, v in answer.items()}
    if set(got) != {2.0, 8.0, 32.0}:
        return False, f"the dict has keys {sorted(got)}; it needs exactly the compressions 2, 8 and 32."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ex.overlaps(model, limit_scores, k.kmp_scores("closest"), [2, 8, 32])
    off = [c for c in (2, 8, 32) if not close(got[c], want[c], abs_=TOL)]
    if not off:
        return True, "these are the overlaps of the paper's mode with the limit; " + (
            "they agree less as fewer weights are kept." if want[32] < want[2] else "they do not fall as fewer weights are kept.")
    if all(v == 1.0 for v in got.values()):
        return False, "1.0 everywhere compares a rule with itself. Hint: the paper's rule is one of the two masks."
    return False, (f"the overlap at compression {', '.join(map(str, off))} is off. Hint: compare the masks of the "
                   "package's KMP scores and of the paper's single-mode scores, both from the same window `k`.")


@checker("02.2", expects="a float: the kept overlap at COMPRESSION of KGP from the every=4 window traj4 with "
                         "gradient pruning taken at the end of that window (s4.model, training set in a fixed order)")
def sparse_kgp(answer, traj=None, setup=None, compression=8, window=None, every_step=None):
    """Context: traj (traj4), setup (s4, left at the end of the window), compression, window (WINDOW),
    every_step (the every-step window's overlap, a stale answer to refuse)."""
    import koopman_tut as kt
    from koopman_tut import pruning
    from koopman_tut.training import experiments as ex
    from koopman_tut.training.data import batch_size_of

    x = share(answer)
    problem = strided_window_problem(traj, "traj4", 4, window, "ex.record(s4, 4 * WINDOW, every=4, seed=SEED + 2)",
                                     "4 * WINDOW steps, every=4")
    if problem:
        return False, problem
    model = setup.model
    now = traj.flatten(dict(model.named_parameters())).to(traj.snapshots.dtype).cpu()
    if not bool((now - traj.snapshots[:, -1].cpu()).abs().max() <= 1e-6 * (1 + float(now.abs().max()))):
        return False, "s4.model is no longer at the end of traj4. Hint: record on s4 and do not train it afterwards."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kgp = kt.koopman(traj).kgp_scores()
        ordered = ex.loader(setup.train_loader.dataset, batch_size_of(setup.train_loader))
        grad = pruning.gradient_scores(model, ordered, n_batches=len(ordered))
    want = ex.overlaps(model, grad, kgp, [compression])[compression]
    if close(x, want, abs_=TOL):
        return True, f"KGP from snapshots 4 steps apart keeps {want:.3f} of the gradient rule's kept weights."
    if every_step is not None and close(x, every_step, abs_=TOL / 10):
        return False, "that is the every-step window's overlap (kgp_grad). Hint: use traj4 and the gradient of s4.model."
    return False, (f"that is not the kept overlap at compression {compression} of KGP (traj4) with gradient pruning "
                   "at the end of traj4. Hint: the gradient scores of s4.model after recording, over "
                   "ordered = ex.loader(s4.train_loader.dataset, BATCH_SIZE) with n_batches=len(ordered).")


@checker("02.3", expects="a str: the name (a key of the global masks) of the weight tensor that global GMP prunes most "
                         "at compression 32")
def most_pruned_layer(answer, model=None, scores=None):
    """Context: model (s.model), scores (scores["GMP"])."""
    from koopman_tut import pruning

    if not isinstance(answer, str):
        raise TypeError(f"expected a parameter name (a str), got {type(answer).__name__}")
    masks = pruning.global_masks(scores, 32, model=model)
    kept = {n: float(m.float().mean()) for n, m in masks.items()}
    if answer not in kept:
        return False, (f"{answer!r} is not a pruned weight tensor; global pruning touches {', '.join(sorted(kept))}. "
                       "Hint: the keys of pruning.global_masks(scores['GMP'], 32, model=s.model).")
    most = min(kept, key=kept.get)
    if answer == most:
        return True, f"global pruning keeps only {kept[most]:.1%} of {most} at compression 32."
    if answer == max(kept, key=kept.get):
        return False, "that layer loses the least, not the most. Hint: compare pruning.sparsity_by_layer across layers."
    return False, ("another layer loses a larger share of its entries at compression 32. Hint: the largest value of "
                   "pruning.sparsity_by_layer(m) among the globally masked tensors.")
