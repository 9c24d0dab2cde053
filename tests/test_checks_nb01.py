"""Checkers of notebook 01: right on the solution's value, "not yet" on plausible wrong answers and on `...`."""
import numpy as np

import koopman_tut as kt
import pytest
import torch

from koopman_tut.tooling.checks import number, rounds_to, typed_digits, verdict
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
    assert not verdict("01.1", tuple(map(str, errs)), **ctx)[0]  # text is not a number
    clean = tuple(float(np.abs(kt.dmd(q.W, svd_rank=r).fixed_point().numpy() - q.x_star).max()) for r in (-1, len(q.eigs)))
    for wrong in (errs[::-1], clean, (errs[0], errs[0] * 3), errs[0], ...):
        ok, msg = verdict("01.1", wrong, **ctx)
        assert not ok and f"{errs[1]:.1e}" not in msg, (wrong, msg)
    half_right = [verdict("01.1", pair, **ctx) for pair in ((errs[0], 3 * errs[1]), (3 * errs[0], errs[1]),
                                                           (3 * errs[0], 3 * errs[1]))]
    assert not any(ok for ok, _ in half_right) and len({msg for _, msg in half_right}) == 1, \
        "the message does not say which error is right: each could be guessed on its own"
    ok, msg = verdict("01.1", tuple(-e for e in errs), **ctx)
    assert not ok and "cannot be negative" in msg and "noise-free" not in msg, msg
    typed = tuple(float(f"{e:.1e}") for e in errs)  # as a student types them from a printout
    assert verdict("01.1", typed, **ctx)[0]
    assert not verdict("01.1", tuple(float(f"{1.2 * e:.1e}") for e in errs), **ctx)[0]
    assert not verdict("01.1", tuple(float(f"{e:.0e}") for e in errs if f"{e:.0e}" != f"{e:.1e}"), **ctx)[0]


def test_typed_numbers_are_read_to_the_digits_typed():
    assert [typed_digits(v) for v in (0.0056, 5.60e-3, 1.969, 1200.0, 0.1 + 0.2, 2.0, 0.0)] == [2, 2, 4, 2, 17, 1, 0]
    assert rounds_to(0.0056, 0.00561234) and rounds_to(0.0056, 0.005551) and rounds_to(1.97, 1.96875)
    assert not rounds_to(0.0056, 0.005651) and not rounds_to(0.0057, 0.00561234)
    assert not rounds_to(2.0, 1.96875)  # one digit: too coarse to read as an answer
    assert not rounds_to(0.1 + 0.2, 0.3)  # a computed float is held to the checker's own tolerance


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
    assert verdict("01.3", torch.tensor(right, dtype=torch.float64), n=n, T=T)[0]
    for wrong in (2.0, right / 2, 1 / right, 1 / T, 1.0, ..., str(right)):
        ok, msg = verdict("01.3", wrong, n=n, T=T)
        assert not ok and f"{right:.3f}" not in msg, (wrong, msg)


@pytest.mark.parametrize("value", [0.5, 3, np.float32(0.5), np.int64(3), np.array(0.5), torch.tensor(0.5),
                                   torch.tensor([0.5])])
def test_number_takes_numbers(value):
    assert number(value) == float(np.asarray(value.tolist() if hasattr(value, "tolist") else value).item())


@pytest.mark.parametrize("value", ["0.5", b"1", True, np.bool_(True), torch.tensor(True), np.array("0.5"),
                                   torch.tensor([1.0, 2.0]), None, [0.5], 1j])
def test_number_refuses_text_bools_and_collections(value):
    """float("0.5") is 0.5: a checker that took float() of an answer accepted text that spells the number."""
    with pytest.raises(TypeError, match="expected a number"):
        number(value)


def test_an_answer_that_claims_to_equal_anything_is_read_as_its_value():
    """A subclass of int (or str) whose == says True and records what it is compared with would be "right" and
    would print the expected answer; the checks read every builtin value as the builtin type itself."""
    seen = []

    class Spy(int):
        def __eq__(self, other):
            seen.append(other)
            return True

        __hash__ = int.__hash__

    for count in (2, 3, 6):  # of 2, 3, 4, 6 at lr 0.2, seed 0, 4 is right (the checker's own test)
        ok, msg = verdict("01.2", Spy(count), lr=0.2, seed=0)
        assert not ok and not seen, (count, msg, seen)
    assert verdict("01.2", Spy(4), lr=0.2, seed=0)[0]  # the value itself still counts
    nested = verdict("01.1", (Spy(0), [Spy(1)]), noisy=np.zeros((2, 3)), x_star=np.zeros(2), rank=1)
    assert not seen and not nested[0]
