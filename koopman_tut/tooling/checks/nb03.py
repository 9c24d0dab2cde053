"""Checkers of notebook 03 (KMP equals global magnitude pruning): exercises 03.1 and 03.2.

Each recomputes what it needs from the notebook's objects (a few evaluations of pruned copies,
well under a second on digits), so it is right at any seed and under SMOKE.
"""
from __future__ import annotations

import copy
import numbers

import torch

from . import checker, close

RULES = ("GMP", "KMP")


def _accuracy_dict(answer, keys, what: str) -> dict:
    if not isinstance(answer, dict) or set(answer) != set(keys):
        raise TypeError(f"`answer` should be a dict with the keys {sorted(keys, key=str)} ({what}), "
                        f"got {type(answer).__name__}" + (f" with keys {sorted(answer, key=str)}"
                                                          if isinstance(answer, dict) else ""))
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in answer.values()):
        raise TypeError("every value of `answer` should be a number")
    return {k: float(v) for k, v in answer.items()}


def _tolerance(test_loader) -> float:
    """Half a test sample: two accuracies that differ by less are the same count of right answers."""
    return 0.5 / len(test_loader.dataset)


@checker("03.1", expects='a dict {"GMP": accuracy, "KMP": accuracy}: test accuracy at compression 16 after '
                         '3 epochs of fine-tuning')
def finetune_three_epochs(answer, model, scores, test_loader, train_loader, lr, seed, rows=None,
                          compression: float = 16, epochs: float = 3):
    """``scores``: the notebook's {rule: scores} (GMP and KMP used); ``rows``: the 1-epoch compare rows."""
    from ...training import experiments as ex

    got = _accuracy_dict(answer, RULES, "test accuracies")
    with torch.random.fork_rng(devices=[]):  # leave the notebook's random state as it was
        want_rows = ex.compare(model, {r: scores[r] for r in RULES}, [compression], test_loader, train_loader,
                               finetune_epochs=epochs, finetune_lr=lr, random=0, seed=seed)
    want = {r.method: r.accuracy_finetuned for r in want_rows}
    before = {r.method: r.accuracy for r in want_rows}
    tol = _tolerance(test_loader)

    def same(a, b):
        return all(close(a[r], b[r], rel=0, abs_=tol) for r in RULES)

    if same(got, want):
        return True, (f"both rules fine-tuned {epochs:g} epochs at compression {compression:g}; compare them "
                      f"with the dense accuracy and with the 1-epoch row of the table above.")
    if same(got, {"GMP": want["KMP"], "KMP": want["GMP"]}):
        return False, "the two values are swapped. Hint: each key names the rule whose mask was fine-tuned."
    if same(got, before):
        return False, ("these are the accuracies right after pruning, before any fine-tuning. "
                       "Hint: read `accuracy_finetuned` of the rows, not `accuracy`.")
    if rows is not None:
        one = {r.method: r.accuracy_finetuned for r in rows if r.compression == compression and r.method in RULES}
        if len(one) == 2 and same(got, one):
            return False, ("these are the accuracies after the notebook's own fine-tuning (FINETUNE_EPOCHS), "
                           "not after 3 epochs. Hint: run `ex.compare` again with `finetune_epochs=3`.")
    return False, (f"these are not the test accuracies at compression {compression:g} after {epochs:g} epochs of "
                   f"fine-tuning. Hint: `ex.compare(s.model, ..., [16], s.test_loader, s.train_loader, "
                   f"finetune_epochs=3, finetune_lr=FINETUNE_LR, seed=SEED)` and read `accuracy_finetuned`.")


def _layerwise_accuracy(model, gmp_scores, compression, test_loader) -> float:
    from ...pruning import apply_masks, layerwise_masks
    from ...training.train import accuracy

    m = copy.deepcopy(model)
    apply_masks(m, layerwise_masks(gmp_scores, compression, model=m))
    return accuracy(m, test_loader)


@checker("03.2", expects="a dict {compression: layer-wise accuracy - global accuracy} over the compressions > 1 "
                         "(GMP scores, right after pruning, no fine-tuning)")
def layerwise_vs_global(answer, model, scores, rows, test_loader, compressions):
    """``scores``: the notebook's {rule: scores} (GMP used); ``rows``: its compare rows (global GMP)."""
    from ...training import experiments as ex

    cs = [c for c in compressions if c > 1]
    if isinstance(answer, dict):  # 16 and 16.0 are the same key for a student
        answer = {next((c for c in cs if c == k), k): v for k, v in answer.items()}
    got = _accuracy_dict(answer, cs, "compression -> accuracy difference")
    glob = dict(zip(sorted({r.compression for r in rows}), ex.pick(rows, "GMP")))
    layer = {c: _layerwise_accuracy(model, scores["GMP"], c, test_loader) for c in cs}
    want = {c: layer[c] - glob[c] for c in cs}
    tol = _tolerance(test_loader)

    def same(a, b):
        return all(close(a[c], b[c], rel=0, abs_=tol) for c in cs)

    if same(got, want):
        return True, "layer-wise minus global GMP accuracy, compression by compression; the sign says which wins."
    if same(got, {c: -v for c, v in want.items()}):
        return False, "the signs are flipped. Hint: `answer[c]` is layer-wise minus global, not global minus layer-wise."
    if same(got, layer) or same(got, {c: glob[c] for c in cs}):
        return False, "these are accuracies, not differences. Hint: subtract the global GMP accuracy from the layer-wise one."
    return False, ("not the accuracy differences of layer-wise and global GMP masks. Hint: prune a copy of "
                   "`s.model` with `pruning.layerwise_masks(scores['GMP'], c, model=copy)`, measure its test "
                   "accuracy, and subtract GMP's accuracy at c from the `rows` (right after pruning).")
