"""Checkers of notebook 05 (koopman_tut.tooling.checks.nb05) on a tiny real prediction study: right on
the solution's value, "not yet" on plausible wrong answers (the fine-tuned or unmatched baseline, the
baseline twice, a verdict that does not follow) and on `...`, never raising."""
import dataclasses

import pytest

from koopman_tut import experiments as ex
from koopman_tut.tooling.checks import verdict

SEEDS, STARTS, W, FINAL = [0, 1], [4, 12], 4, 24
KMP = {"KMP": ex.ESTIMATORS["KMP"]}
pytestmark = pytest.mark.slow  # tiny real studies: a few seconds each


def study(starts=STARTS, **kw):
    args = {**dict(window=W, final_steps=FINAL, compression=8, finetune_epochs=0, estimators=KMP), **kw}
    return ex.prediction_study(SEEDS, starts, **args)


@pytest.fixture(scope="module")
def runs():
    main = ex.prediction_study(SEEDS, STARTS, window=W, final_steps=FINAL, compression=8, finetune_epochs=0.2,
                               estimators=KMP)  # the notebook's main study is fine-tuned
    return dict(main=main, base=study(STARTS[1:]), long=study(STARTS[1:], window=2 * W), base_all=study(),
                c2=study(compression=2))


def ctx(runs, starts):
    return dict(seeds=SEEDS, starts=starts, rows=runs["main"], window=W, final_steps=FINAL, compression=8)


def better(a, b, starts):
    return {t: ex.paired(a, "KMP", "GMP", t)[0] > ex.paired(b, "KMP", "GMP", t)[0] for t in starts}


def test_051(runs):
    starts = STARTS[1:]
    right = {"long": runs["long"], "base": runs["base"], "helps": better(runs["long"], runs["base"], starts)}
    ok, why = verdict("05.1", right, **ctx(runs, starts))
    assert ok, why
    assert not verdict("05.1", ..., **ctx(runs, starts))[0]
    stale = [r for r in runs["main"] if r.start in starts]  # the fine-tuned main study as the baseline
    ok, why = verdict("05.1", {**right, "base": stale}, **ctx(runs, starts))
    assert not ok and "fine-tuned" in why
    ok, why = verdict("05.1", {**right, "long": runs["base"]}, **ctx(runs, starts))
    assert not ok and "baseline again" in why
    flipped = {t: not v for t, v in right["helps"].items()}
    assert not verdict("05.1", {**right, "helps": flipped}, **ctx(runs, starts))[0]
    one_seed = [r for r in runs["base"] if r.seed == SEEDS[0]]
    ok, why = verdict("05.1", {**right, "base": one_seed}, **ctx(runs, starts))
    assert not ok and "seeds" in why
    assert not verdict("05.1", {"long": 1.0}, **ctx(runs, starts))[0]
    # every seed is checked, not only the first: the second seed's long-window rows swapped for its baseline
    mixed = [r for r in runs["long"] if r.seed == SEEDS[0]] + [r for r in runs["base"] if r.seed != SEEDS[0]]
    assert not verdict("05.1", {**right, "long": mixed}, **ctx(runs, starts))[0]


def test_052(runs):
    right = {"c2": runs["c2"], "base": runs["base_all"], "larger": better(runs["c2"], runs["base_all"], STARTS)}
    ok, why = verdict("05.2", right, **ctx(runs, STARTS))
    assert ok, why
    assert not verdict("05.2", ..., **ctx(runs, STARTS))[0]
    ok, why = verdict("05.2", {**right, "c2": runs["base_all"]}, **ctx(runs, STARTS))
    assert not ok and "baseline again" in why
    wrong_long = [dataclasses.replace(r, overlap_final=r.overlap_final + 0.01) if r.rule == "KMP" else r
                  for r in runs["c2"]]
    assert not verdict("05.2", {**right, "c2": wrong_long}, **ctx(runs, STARTS))[0]
    assert not verdict("05.2", {**right, "larger": {STARTS[0]: True}}, **ctx(runs, STARTS))[0]
    later = [dataclasses.replace(r, overlap_final=r.overlap_final + 0.01) if r.rule == "KMP" and r.seed != SEEDS[0]
             else r for r in runs["c2"]]  # only the second seed's rows off
    assert not verdict("05.2", {**right, "c2": later}, **ctx(runs, STARTS))[0]
