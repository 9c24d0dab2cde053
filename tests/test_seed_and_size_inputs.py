"""Arguments an audit found silent or unreadable: seeds, model sizes, prediction times, empty masks,
a Gram with NaN, buffers named as parameters, complex parameters, the whole model as the classifier.

Each case failed before its fix in one of two ways: a silent result (a 0% or 100% measure of
nothing, NaN predictions, a seed truncated to another seed, a model with no classes) or an error
from deep inside torch, NumPy or scikit-learn that named none of the caller's arguments.
"""
import cmath
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import koopman_tut as kt
from koopman_tut import pruning as P
from koopman_tut.numerics.dmd_result import powers
from koopman_tut.numerics import equivalence
from koopman_tut.numerics.spectral_distance import permutation_test
from koopman_tut.training.train import set_seed

BAD_SEEDS = [("a", TypeError), (1.5, TypeError), (True, TypeError), (None, TypeError), (-1, ValueError)]


@pytest.mark.parametrize("seed, error", BAD_SEEDS)
def test_every_seed_argument_is_an_integer_at_least_zero_named_seed(seed, error):
    tr, te = kt.data.digits()
    calls = [lambda: set_seed(seed), lambda: kt.data.loaders(tr, te, seed=seed), lambda: kt.data.digits(seed=seed)]
    calls += [lambda: kt.models.get_model("mlp", seed=seed)] if seed is not None else []  # None: unseeded
    for call in calls:
        with pytest.raises(error, match="seed must be an integer"):
            call()
    # before: 1.5 truncated to seed 1 in get_model; 'a' failed in str formatting (set_seed), in
    # scikit-learn (digits) or in torch's manual_seed (loaders)
    if seed is None:
        return  # permutation_test takes what numpy.random.default_rng takes, None included
    with pytest.raises(ValueError, match="seed must be an integer"):  # its own checks raise ValueError
        permutation_test([torch.tensor([0.5 + 0j])] * 2, [torch.tensor([0.9 + 0j])] * 2, n_permutations=10, seed=seed)


def test_get_model_keeps_a_seed_of_none_unseeded_and_the_digits_split_takes_32_bits():
    assert isinstance(kt.models.get_model("mlp", seed=None), nn.Module)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        kt.data.digits(seed=2**32)  # scikit-learn's random_state; torch's seeds take 64 bits
    set_seed(2**32)


@pytest.mark.parametrize("kwargs, name", [({"n_classes": 0}, "n_classes"), ({"n_classes": 2.0}, "n_classes"),
                                          ({"hidden": (32, 0)}, r"hidden\[1\]"), ({"hidden": 64}, "hidden"),
                                          ({"in_features": True}, "in_features")])
def test_model_sizes_are_integers_at_least_one(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):  # before: n_classes=0 built a model with no outputs
        kt.models.get_model("mlp", **kwargs)


def test_every_model_checks_n_classes_and_takes_what_torch_takes_as_sizes_and_seeds():
    for model in ("lenet300100", "mnistnet", "resnet20"):
        with pytest.raises(ValueError, match="n_classes must be an integer >= 1"):
            kt.models.get_model(model, n_classes=0)
    # what built a model before the checks still does: integer tensors, numpy arrays and ranges as sizes
    for hidden in ([8, 4], (8, 4), range(8, 3, -4), np.array([8, 4]), [torch.tensor(8), torch.tensor(4)],
                   torch.tensor([8, 4]), (w for w in (8, 4))):  # a generator is read once (it built no layer)
        m = kt.models.get_model("mlp", seed=torch.tensor(3), hidden=hidden, n_classes=torch.tensor(10))
        widths = [layer.out_features for layer in m.modules() if isinstance(layer, nn.Linear)]
        assert widths == [8, 4, 10] and all(type(w) is int for w in widths), widths
    with pytest.raises(TypeError, match="hidden must be an ordered sequence"):
        kt.models.get_model("mlp", hidden={8, 4})  # a set has no order
    set_seed(np.int64(3)), set_seed(np.uint64(2**63))  # numpy integers (random.seed refused them before)
    kt.data.digits(seed=np.random.RandomState(0))  # scikit-learn's random_state, as before
    e, f = [torch.tensor([0.5 + 0j, 0.4])] * 3, [torch.tensor([0.9 + 0j, 0.8])] * 3
    for seed in (None, np.random.default_rng(0), torch.tensor(0)):  # what numpy.random.default_rng takes
        permutation_test(e, f, n_permutations=5, seed=seed)
    for seed in (torch.tensor(3 + 0j), torch.tensor(3.0), torch.tensor(True)):  # read as 3 (or 1) before
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            permutation_test(e, f, n_permutations=5, seed=seed)


def test_predict_refuses_a_bool_time_and_times_whose_powers_overflow():
    torch.manual_seed(0)
    res = kt.dmd(torch.randn(40, 10, dtype=torch.float64).cumsum(1))
    with pytest.raises(TypeError, match="t must be a number"):
        res.predict(True)  # before: read as t = 1
    with pytest.raises(ValueError, match=r"cannot be evaluated at t=-1000000.0: amplitude \* lambda\*\*t overflows"):
        res.predict(-1e6)  # before: NaN everywhere, without a word
    far = res.predict(1e308)  # |lambda| < 1 decay to 0 whatever their phase (the phase was NaN before)
    assert bool(torch.isfinite(far).all())
    j = torch.arange(12, dtype=torch.float64)  # two growing modes, 1e200 (1.5^t a + 1.45^t b)
    a, b = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    res = kt.dmd(1e200 * (a[:, None] * 1.5**j + b[:, None] * 1.45**j))
    t = (math.log(1e306) - math.log(1e200)) / math.log(1.5)  # 1.5^t a at 1e306, each lambda^t finite
    want = 1e200 * (1.5**t * a + 1.45**t * b)
    assert float(((res.predict(t) - want) / 1e306).norm() / (want / 1e306).norm()) < 1e-6
    with pytest.raises(ValueError, match=f"cannot be evaluated at t={t + 13!r}: the state overflows"):
        res.predict(t + 13)  # 1.5^13 1e306 = 1.9e308 in row 0, beyond float64's 1.8e308 (amplitude lambda^t 1.3e308)


def test_powers_keep_their_accuracy_near_the_unit_circle():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for gap in (1e-3, 1e-7, 1e-11):  # a complex eigenvalue 1 - gap from the unit circle, t = 5 / gap
        lam = complex(cmath.rect(1 - gap, 0.3))
        t = 5 / gap
        want = complex(mpmath.power(mpmath.mpc(lam.real, lam.imag), t))
        got = complex(powers(torch.tensor([lam], dtype=torch.complex128), t)[0, 0])
        # the modulus |lambda|^t to a few eps (log(abs(lambda)) lost t eps here); the phase t arg(lambda) carries
        # t eps |arg| whatever the method, from the rounding of arg itself
        assert abs(abs(got) - abs(want)) <= 1e-14 * abs(want), (gap, got, want)
        assert abs(got - want) <= 4 * t * 2.2e-16 * abs(cmath.phase(lam)) * abs(want) + 1e-15 * abs(want)


def test_powers_agree_with_the_principal_branch_and_decay_to_zero_far_out():
    lam = torch.tensor([0.9 + 0.3j, -0.5, 1.0, 0.0, 1.2 - 0.1j, 0.3j], dtype=torch.complex128)
    t = torch.tensor([0.0, 1, 2.5, 7, 40])
    ref = torch.exp(t[None, :].double() * torch.log(lam)[:, None])
    ref[:, 0] = 1
    got = powers(lam, t.numpy())
    finite = torch.isfinite(ref)
    assert torch.allclose(got[finite], ref[finite], rtol=1e-13, atol=1e-300)
    far = powers(lam, 1e308)[:, 0]
    assert far[[0, 1, 3, 5]].abs().max() == 0 and far[2] == 1


def test_overlaps_and_compression_of_nothing_are_refused():
    with pytest.raises(ValueError, match="a and b are empty"):
        P.kept_overlap({}, {})  # before: 1.0
    with pytest.raises(ValueError, match="a and b are empty"):
        P.mask_overlap({}, {})  # before: 1.0
    with pytest.raises(ValueError, match="model has no parameters"):
        P.compression_ratio(nn.Sequential())  # before: 0.0
    zero = nn.Linear(3, 4)
    nn.init.zeros_(zero.weight), nn.init.zeros_(zero.bias)
    assert P.compression_ratio(zero) == math.inf  # before: 16.0, as if one entry were left
    with pytest.raises(ValueError, match="model has no conv or linear layer parameters"):
        P.random_masks(nn.Sequential(nn.ReLU()), 2)  # before: "scores is empty", which the caller never passed


def test_a_gram_with_nan_is_refused_by_name():
    W = torch.randn(30, 8, dtype=torch.float64)
    acc = torch.full((8, 8), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="acc holds NaN or Inf"):  # before: linalg.eigh failed to converge
        kt.dmd(W, acc=acc)


def test_a_buffer_is_not_a_parameter_to_mask():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="'1.running_mean' is a buffer"):  # before: a TypeError from prune
        P.apply_masks(model, {"1.running_mean": torch.ones(4, dtype=torch.bool)})
    P.apply_masks(model, {"1.weight": torch.tensor([True, False, True, True])})  # a parameter still is


def test_a_layer_whose_weight_is_a_buffer_is_left_out_not_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    w, b = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    del model[0].weight, model[0].bias
    model[0].register_buffer("weight", w), model[0].register_buffer("bias", b)  # frozen random features
    assert P.layer_parameters(model) == ["2.weight", "2.bias"]
    assert sorted(P.random_masks(model, 2, classifier=None)) == ["2.weight"]
    rec = kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), stop=3)
    assert rec.names == ["2.weight", "2.bias"]


def test_the_recorder_refuses_complex_parameters_by_name():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: complex modules are experimental
        model = nn.Linear(3, 2).to(torch.complex64)
    with pytest.raises(TypeError, match="'weight', 'bias' .* are complex"):  # before: torch.cat's dtype error
        kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), stop=5)


def test_the_whole_model_is_not_a_classifier_name():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    scores = {n: p.detach().abs() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="'' is the whole model"):
        P.global_masks(scores, 2, model=model, classifier="")


def test_kgp_under_adam_warns_once_per_gradient():
    torch.manual_seed(0)
    net, X, y = nn.Linear(5, 3), torch.randn(64, 5), torch.randint(0, 3, (64,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    rec = kt.TrajectoryRecorder(net, opt, stop=40)
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(net(X), y).backward()
        opt.step()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        P.koopman_gradient(rec.trajectory())
    said = [w for w in caught if "recorded with Adam" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in caught]  # before: once per refit of the trust check (4)


def test_an_integer_past_float64_is_refused_by_name_not_with_an_overflow_error():
    """10**400 where a number is expected: every check named its argument ("an integer of 401 digits"); before,
    float() of it inside the check raised OverflowError ("int too large to convert to float"), naming nothing."""
    big = 10**400
    m = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    W = torch.stack([torch.arange(6.) + 0.5**t for t in range(8)], 1).double()
    tr = kt.Trajectory(W, torch.arange(8), ["w"], [(6,)])
    calls = {"compression": [lambda: P.global_masks(P.magnitude_scores(m), big, model=m),
                             lambda: P.random_masks(m, big)],
             "a": [lambda: kt.estimate_limit(W, method="line", a=big)],
             "drift_tol": [lambda: kt.koopman(tr, drift_tol=big)],
             "lr": [lambda: P.koopman_gradient(tr, lr=big)],
             "value": [lambda: kt.dmd(W).closest(big)],
             "eta": [lambda: equivalence.mirror_descent(np.array([0.5, 0.5]), eta=big)],
             r"param_groups\[0\]\['lr'\]": [lambda: kt.TrajectoryRecorder(m, torch.optim.SGD(m.parameters(), lr=big),
                                                                          stop=3)]}
    for name, fs in calls.items():
        for f in fs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with pytest.raises(ValueError, match=rf"{name}.*an integer of 401 digits"):
                    f()


def test_numbers_read_without_torch_never_raise_while_checked():
    from decimal import Decimal
    from fractions import Fraction

    from koopman_tut.numerics.reals import is_finite, shown

    assert [is_finite(v) for v in (3, 0.5, 1 + 2j, np.float32(2), Fraction(1, 3))] == [True] * 5
    assert not any(is_finite(v) for v in (10**400, math.inf, math.nan, Decimal("sNaN"), Decimal("NaN"),
                                          torch.tensor(1 + 1j), complex(math.inf, 0)))
    assert shown(0.25) == "0.25" and shown(10**400) == "an integer of 401 digits"
    assert shown(Fraction(1, 10**400)).endswith("(414 characters)")
