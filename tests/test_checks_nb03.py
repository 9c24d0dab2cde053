"""Checkers of notebook 03 (koopman_tut.tooling.checks.nb03) on a tiny real run: right on the
solution's value, "not yet" on plausible wrong answers and on `...`, never raising."""
import copy

import pytest

import koopman_tut as kt
from koopman_tut import experiments as ex
from koopman_tut import pruning
from koopman_tut.tooling.checks import verdict

LR, SEED = 0.05, 0


@pytest.fixture(scope="module")
def nb():
    s = ex.setup("digits", seed=SEED, lr=LR)
    ex.run(s, 20, seed=SEED)
    k = kt.koopman(ex.record(s, 8, seed=SEED))
    scores = {"GMP": pruning.magnitude_scores(s.model), "KMP": k.kmp_scores()}
    rows = ex.compare(s.model, scores, [1, 4, 16], s.test_loader, s.train_loader, finetune_epochs=1,
                      finetune_lr=LR, random=0, seed=SEED)
    return s, scores, rows


def ctx031(nb):
    s, scores, rows = nb
    return dict(model=s.model, scores=scores, test_loader=s.test_loader, train_loader=s.train_loader, lr=LR,
                seed=SEED, rows=rows)


def solution031(nb):
    s, scores, _ = nb
    rows3 = ex.compare(s.model, scores, [16], s.test_loader, s.train_loader, finetune_epochs=3, finetune_lr=LR,
                       random=0, seed=SEED)
    return {r.method: r.accuracy_finetuned for r in rows3}


@pytest.mark.slow
def test_031_right_on_the_solution(nb):
    ok, why = verdict("03.1", solution031(nb), **ctx031(nb))
    assert ok, why


@pytest.mark.slow
def test_031_not_yet_on_wrong_answers(nb):
    s, scores, rows = nb
    one = {r.method: r.accuracy_finetuned for r in rows if r.compression == 16}
    before = {r.method: r.accuracy for r in rows if r.compression == 16}
    ok, why = verdict("03.1", one, **ctx031(nb))
    assert not ok and "FINETUNE_EPOCHS" in why
    ok, why = verdict("03.1", before, **ctx031(nb))
    assert not ok and "right after pruning" in why
    for wrong in (..., 0.9, {"GMP": 0.9}, {"GMP": "a", "KMP": 0.5}):
        ok, why = verdict("03.1", wrong, **ctx031(nb))
        assert not ok and why
    right = solution031(nb)
    ok, why = verdict("03.1", {k: v + 0.02 for k, v in right.items()}, **ctx031(nb))
    assert not ok and "Hint" in why and f"{right['GMP']:.3f}" not in why  # never the solution value


def solution032(nb):
    s, scores, rows = nb
    answer = {}
    for c in (4, 16):
        m = copy.deepcopy(s.model)
        pruning.apply_masks(m, pruning.layerwise_masks(scores["GMP"], c, model=m))
        answer[c] = kt.train.accuracy(m, s.test_loader) - ex.pick(rows, "GMP")[[1, 4, 16].index(c)]
    return answer


def ctx032(nb):
    s, scores, rows = nb
    return dict(model=s.model, scores=scores, rows=rows, test_loader=s.test_loader, compressions=[1, 4, 16])


def test_032_right_on_the_solution_and_float_keys(nb):
    right = solution032(nb)
    assert verdict("03.2", right, **ctx032(nb))[0]
    assert verdict("03.2", {float(c): v for c, v in right.items()}, **ctx032(nb))[0]


def test_032_not_yet_on_wrong_answers(nb):
    right = solution032(nb)
    ok, why = verdict("03.2", ..., **ctx032(nb))
    assert not ok and "dict" in why
    if any(abs(v) > 1e-3 for v in right.values()):
        ok, why = verdict("03.2", {c: -v for c, v in right.items()}, **ctx032(nb))
        assert not ok and "flipped" in why
    s, scores, rows = nb
    glob = {c: ex.pick(rows, "GMP")[[1, 4, 16].index(c)] for c in (4, 16)}
    ok, why = verdict("03.2", glob, **ctx032(nb))
    assert not ok and "differences" in why
    ok, why = verdict("03.2", {4: right[4]}, **ctx032(nb))  # a compression missing
    assert not ok
