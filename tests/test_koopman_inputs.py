"""The Koopman analysis refuses what it cannot use and says when it cannot be trusted: the steps'
spacing, options given with a built analysis, learning rates that change inside the window,
growing modes in a finite forecast, data whose rounding is the size of its steps, bad arguments."""
import fractions
import math
import warnings

import numpy as np
import pytest
import torch

import koopman_tut as kt
from koopman_tut import systems
from koopman_tut.numerics.finite import NonFiniteError
from koopman_tut.pruning.koopman import AliasingWarning

P = kt.pruning
H = np.linspace(0.5, 5, 4)


def _run(**kw):
    return systems.quadratic_sgd(H, 0.05, warmup=20, n_steps=40, dim=50, **kw)


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w.category.__name__ for w in caught]


def _with(traj, steps=None, **meta):
    return kt.Trajectory(traj.snapshots, traj.steps if steps is None else steps, traj.names, traj.shapes,
                         {**traj.meta, **meta})


def _cos(a, b):
    return float(a.double() @ b.double() / (a.double().norm() * b.double().norm()))


# ------------------------------------------------------------------ the steps between snapshots
def test_the_gradient_reads_the_stride_from_the_steps():
    run = _run()
    sub = run.traj.window(every=2)  # meta every = 2, steps 2 apart
    meta = {k: v for k, v in sub.meta.items() if k != "every"}
    bare = kt.Trajectory(sub.snapshots, sub.steps, sub.names, sub.shapes, meta)  # the stride only in steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AliasingWarning: every > 1
        g_sub, g_bare = P.koopman_gradient(sub), P.koopman_gradient(bare)
    torch.testing.assert_close(g_bare, g_sub)
    truth = run.gradient(sub.snapshots[:, -1])
    assert float((g_bare.double() - truth).norm() / truth.norm()) < 1e-6


def test_unequal_steps_and_a_conflicting_every_are_refused():
    run = _run()
    gap = run.traj.steps.clone()
    gap[5:] += 3
    for fn in (kt.koopman, kt.estimate_limit, lambda t: kt.estimate_limit(t, "mpe")):
        with pytest.raises(ValueError, match="equally spaced"):
            fn(_with(run.traj, steps=gap))
    for every, words in ((0, "must be the optimizer steps"), (-2, "must be .* an int >= 1"), (2, "is 2 but")):
        with pytest.raises(ValueError, match=rf"meta\['every'\] {words}"):  # 0 and -2: refused by the Trajectory
            kt.koopman(_with(run.traj, every=every))


# ------------------------------------------------------------------ options, settings, learning rates
def test_options_given_with_a_built_analysis_are_refused():
    run = _run()
    k = kt.koopman(run.traj)
    assert kt.koopman(k) is k and P.koopman_gradient(k) is not None
    for fn in (lambda: P.koopman_gradient(k, limit_rank=2), lambda: P.kmp_scores(k, delays=0),
               lambda: kt.koopman(k, drift_tol=1e-2), lambda: P.horizon_scores(k, 3, method="svd"),
               lambda: kt.koopman(k, svd_rank=torch.tensor([1, 2])), lambda: kt.koopman(k, delays=np.array([0]))):
        with pytest.raises(ValueError, match="given with a KoopmanAnalysis"):
            fn()


@pytest.mark.parametrize("meta, err, words", [
    ({"momentum": [0.9]}, ValueError, r"meta\['momentum'\]"),
    ({"weight_decay": -1.0}, ValueError, r"meta\['weight_decay'\]"),
    ({"nesterov": "yes"}, ValueError, r"meta\['nesterov'\]"),
    ({"groups": [1]}, TypeError, r"meta\['groups'\]"),
])
def test_bad_optimizer_settings_are_named(meta, err, words):
    with pytest.raises(err, match=words):
        kt.koopman(_with(_run().traj, **meta))


@pytest.mark.parametrize("kw, err, words", [
    (dict(drift_tol="x"), TypeError, "drift_tol must be a finite number > 0"),
    (dict(drift_tol=0.0), ValueError, "drift_tol must be a finite number > 0, got 0.0"),
    (dict(drift_tol=-1.0), ValueError, "drift_tol must be a finite number > 0, got -1.0"),  # one message for both
    (dict(max_horizon=-1.0), ValueError, "max_horizon must be a finite number > 0, got -1.0"),
    (dict(max_horizon=0), ValueError, "max_horizon must be a finite number > 0, got 0"),
    (dict(limit_rank="foo"), ValueError, "limit_rank"),
    (dict(method="bogus"), ValueError, r"method must be one of \('auto', 'gram', 'svd'\), got 'bogus'"),  # at once
])
def test_bad_analysis_options_are_named(kw, err, words):
    with pytest.raises(err, match=words):
        kt.koopman(_run().traj, **kw)


@pytest.mark.parametrize("lr", [math.inf, math.nan, -0.1])
def test_a_learning_rate_that_is_not_positive_and_finite_is_refused(lr):
    run = _run()
    with pytest.raises(ValueError, match=r"lr must be a positive learning rate, finite \(given\)"):
        P.koopman_gradient(run.traj, lr=lr)
    if not math.isfinite(lr):
        with pytest.raises(ValueError, match=r"learning rates in traj.meta .* must be finite numbers"):
            _with(run.traj, lrs=[lr] * len(run.traj))  # refused as the window is built
    for recorded in ([lr] if math.isfinite(lr) else []) + [0.0]:  # 0: a frozen run has no gradient to read
        with pytest.raises(ValueError, match=r"lr must be a positive learning rate, finite \(recorded in traj.meta for "
                                             r"the step leaving snapshot \d+ \(pass lr=\)\)"):  # "none recorded" before
            P.koopman_gradient(_with(run.traj, lrs=[recorded] * len(run.traj)))


def test_an_lr_so_small_that_the_gradient_overflows_is_named():
    run = _run()
    with pytest.raises(ValueError, match=r"lr=1e-320: the Koopman gradient \(each step divided by the lr\) overflows "
                                         r"torch.float64"):
        P.koopman_gradient(run.traj, lr=1e-320)  # scores of Inf before


def test_a_frozen_group_is_not_a_schedule():
    """lr 0 throughout (a frozen run or group) takes no step: no setting changes inside the window."""
    run = _run()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*settings change inside the window")
        kt.koopman(_with(run.traj, lrs=[0.0] * len(run.traj))).limit(warn=True)
    with pytest.warns(UserWarning, match="settings change inside the window"):  # the control: 0 then not
        kt.koopman(_with(run.traj, lrs=[0.0] * 5 + [0.05] * (len(run.traj) - 5))).limit(warn=True)
    with warnings.catch_warnings():  # a constant lr below 0 (ascent, as a schedule may set it) changes nothing either
        warnings.filterwarnings("error", message=".*settings change inside the window")
        kt.koopman(_with(run.traj, lrs=[-0.05] * len(run.traj))).limit(warn=True)
    with pytest.warns(UserWarning, match="settings change inside the window"):
        kt.koopman(_with(run.traj, lrs=[0.05] * 5 + [-0.05] * (len(run.traj) - 5))).limit(warn=True)


def test_an_lr_that_contradicts_the_recorded_one_is_reported():
    run = _run()  # recorded at lr 0.05
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*differs from the learning rate recorded")
        same = P.koopman_gradient(run.traj, lr=0.05)
    with pytest.warns(UserWarning, match=r"lr=0.5 differs from the learning rate recorded .* 0.05"):
        other = P.koopman_gradient(run.traj, lr=0.5)
    assert torch.allclose(other * 10, same)  # the lr given is still the one used
    bare = _with(run.traj, lrs=None)  # nothing recorded: nothing to contradict
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*differs from the learning rate recorded")
        P.koopman_gradient(bare, lr=0.5)


def test_a_learning_rate_changed_inside_the_window_is_reported():
    run = _run(momentum=0.9)
    T = len(run.traj)
    steady, names = _caught(lambda: P.koopman_gradient(run.traj))
    assert "UntrustedLimitWarning" not in names
    assert _cos(steady, run.gradient(run.traj.snapshots[:, -1])) > 0.999
    changed = _with(run.traj, lrs=[0.05] * (T // 2) + [0.025] * (T - T // 2))
    with pytest.warns(kt.UntrustedLimitWarning, match=r"learning rate changes inside the window \(from 0.05 to 0.025"):
        P.koopman_gradient(changed)


# ------------------------------------------------------------------ forecasts
def test_a_finite_forecast_keeps_growing_modes():
    # an exact affine iteration with eigenvalues 1.05 and 0.8: the model is exact, so is its forecast
    g = torch.Generator().manual_seed(0)
    B = torch.linalg.qr(torch.randn(30, 2, generator=g, dtype=torch.float64))[0]
    x0 = torch.randn(30, generator=g, dtype=torch.float64)

    def x(t):
        return x0 + B @ torch.tensor([1.05**t, 0.8**t], dtype=torch.float64)
    W = torch.stack([x(t) for t in range(12)], 1)
    traj = kt.Trajectory(W, torch.arange(12), ["x"], [(30,)], {})
    for h in (2, 10, 30):
        est, _ = _caught(lambda: kt.koopman(traj).forecast(h))
        assert float((est - x(11 + h)).norm() / x(11 + h).norm()) < 1e-9


def test_forecast_arguments():
    k = kt.koopman(_run().traj)
    for h in ("3", None, True):
        with pytest.raises(TypeError, match="h must be a number of snapshots"):
            k.forecast(h)
    with pytest.raises(ValueError, match="h must be >= 0"):
        k.forecast(-1)
    for h in ("5", None):  # a raw "must be real number, not str" before
        with pytest.raises(TypeError, match="h must be a number of snapshots"):
            P.horizon_scores(_run().traj, h)
    with pytest.raises(ValueError, match=r"at least delays \+ 3 = 1000003 snapshots \(delays=1000000\)"):
        kt.estimate_limit(_run().traj, delays=10**6)
    for h in (2**1024, fractions.Fraction(10**400)):  # past float64: named, not an OverflowError from inside
        for call in (k.forecast, lambda h: P.horizon_scores(k, h)):
            with pytest.raises(ValueError, match=r"h \(30[89]|h \(401 digits\) is beyond float64's range"):
                call(h)
    assert torch.equal(k.forecast(2**1023), k.forecast(2.0**1023)) and torch.equal(k.forecast(np.uint64(3)), k.forecast(3))
    bad = _run().traj.snapshots.clone()
    bad[0, 3] = math.nan  # not in the last snapshot: forecast(0) is refused as forecast(1) is
    bad_traj = kt.Trajectory(bad, _run().traj.steps, ["weight"], [(1, 50)], {})
    for h in (0, 1):
        with pytest.raises(NonFiniteError, match=r"traj contains NaN or Inf values \(first at row=0, column=3"):
            kt.koopman(bad_traj).forecast(h)
    with pytest.raises(NonFiniteError, match="traj contains NaN"):
        P.horizon_scores(bad_traj, 0)
    half = kt.koopman(_with(_run().traj).__class__(_run().traj.snapshots.half(), _run().traj.steps,
                                                   ["weight"], [(1, 50)], {}))
    assert half.forecast(0).dtype == torch.float32


def test_a_fractional_forecast_of_an_oscillating_window_warns():
    # a step so large that the fastest mode oscillates (negative eigenvalue)
    run = systems.quadratic_sgd([0.5, 38.0], 0.05, warmup=0, n_steps=20, dim=10)
    k = kt.koopman(run.traj)
    assert bool((k.affine.eigs.real < 0).any())
    _, names = _caught(lambda: k.forecast(2))
    assert "AliasingWarning" not in names
    with pytest.warns(AliasingWarning, match="not a whole number of snapshots"):
        k.forecast(1.5)


# ------------------------------------------------------------------ rounding
def _record_quadratic(momentum, dtype, n=2000, T=60):
    """SGD on 0.5 (w - w*)^T H (w - w*), H of rank 4, from a random start; recorded in ``dtype``.
    Returns the trajectory and the true gradient at its last snapshot."""
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(n, 4, generator=g, dtype=torch.float64))[0]
    h = torch.linspace(0.5, 2.0, 4, dtype=torch.float64)
    w_star = torch.randn(n, generator=g, dtype=torch.float64)
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.randn(n, generator=g, dtype=torch.float64).float())
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    rec = kt.TrajectoryRecorder(model, opt, params=["w"], stop=T - 1, dtype=dtype)
    for _ in range(T - 1):
        opt.zero_grad()
        d = model.w - w_star.float()
        (0.5 * d @ (Q.float() @ (h.float() * (Q.float().T @ d)))).backward()
        opt.step()
    traj = rec.trajectory()
    last = traj.snapshots[:, -1].double()
    return traj, Q @ (h * (Q.T @ (last - w_star)))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_recording_whose_steps_are_a_few_roundings_is_not_trusted(momentum):
    # float16 keeps 11 bits of the parameters: the steps are a few of its roundings, and the Koopman
    # gradient came out 93-149% off while the spread check passed
    half, _ = _record_quadratic(momentum, torch.float16)
    _, names = _caught(lambda: P.koopman_gradient(half))
    assert "UntrustedLimitWarning" in names
    traj, truth = _record_quadratic(momentum, torch.float32)
    k = kt.koopman(traj)
    g, names = _caught(k.gradient)
    assert "UntrustedLimitWarning" not in names and k.gradient_check.rounding < 0.05
    assert _cos(g, truth) > 0.99


# ------------------------------------------------------------------ small arguments
def test_numpy_scalars_are_numbers():
    run = _run()
    torch.testing.assert_close(kt.estimate_limit(run.traj, "line", a=np.float32(0.5)),
                               kt.estimate_limit(run.traj, "line", a=0.5))
    torch.testing.assert_close(kt.estimate_limit(run.traj, "anderson", depth=np.int64(3)),
                               kt.estimate_limit(run.traj, "anderson", depth=3))
    torch.testing.assert_close(kt.estimate_limit(run.traj, delays=np.int64(0)), kt.estimate_limit(run.traj, delays=0))


def test_a_knob_of_another_method_is_refused():
    W = _run().traj.snapshots
    for method, knob in [("mpe", dict(a=2.0)), ("koopman", dict(a=0.5)), ("line", dict(depth=3)),
                         ("rre", dict(svd_rank=4)), ("anderson", dict(delays=1)), ("last", dict(depth=5))]:
        with pytest.raises(ValueError, match=f"{next(iter(knob))}=.* method={method!r} does not use it"):
            kt.estimate_limit(W, method, **knob)
    # each knob still reaches its own method, and its default is the documented one
    torch.testing.assert_close(kt.estimate_limit(W, "line"), kt.estimate_limit(W, "line", a=1.0))
    torch.testing.assert_close(kt.estimate_limit(W, "anderson"), kt.estimate_limit(W, "anderson", depth=5))
    assert not torch.equal(kt.estimate_limit(W, "line", a=2.0), kt.estimate_limit(W, "line"))


def test_dmd_result_arguments_are_checked():
    W = _run().traj.snapshots
    res = kt.dmd(W)
    for t in (None, math.nan, "x"):
        with pytest.raises((TypeError, ValueError), match="t must be"):
            res.predict(t)
    with pytest.raises(TypeError, match="indices must be integer"):
        res.predict(0, indices=[0.5])
    with pytest.raises(ValueError, match=rf"indices must be mode indices in \[-{res.rank}, {res.rank - 1}\]"):
        res.predict(0, indices=[res.rank])  # a raw IndexError before
    torch.testing.assert_close(res.predict(0, indices=[-1]), res.predict(0, indices=[res.rank - 1]))
    with pytest.raises(ValueError, match="value must be a finite"):
        res.closest(math.nan)
    with pytest.raises(TypeError, match="byte order"):
        kt.estimate_limit(W.numpy().astype(">f8"), "last")
    with pytest.raises(TypeError, match="float16/float32/float64"):
        kt.estimate_limit(W.numpy().astype(np.longdouble), "last")


def test_groups_that_do_not_name_every_recorded_parameter_once_are_refused():
    """meta['groups'] with a name misspelt (a review: the Koopman gradient and KGP scores of '0.bias' were 0,
    so pruned first, silently) or named twice: the gradient names the parameter instead."""
    torch.manual_seed(0)
    X = torch.randn(200, 5, dtype=torch.float64)
    y = X @ torch.randn(5, 2, dtype=torch.float64)
    m = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Linear(3, 2)).double()
    opt = torch.optim.SGD([{"params": [m[0].weight], "lr": 0.02},
                           {"params": [m[0].bias, m[1].weight, m[1].bias], "lr": 0.002}], lr=0.1)
    rec = kt.TrajectoryRecorder(m, opt, start=20, stop=40, dtype=torch.float64)
    for _ in range(40):
        opt.zero_grad()
        ((m(X) - y) ** 2).mean().backward()
        opt.step()
    traj = rec.trajectory()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(kt.koopman(traj).gradient(t=-1)[slice(*traj.offsets[1:3])].abs().sum()) > 0  # 0.bias's rows
    for names, count in [(["0.Bias", "1.weight", "1.bias"], 0), (["0.weight", "0.bias", "1.weight", "1.bias"], 2)]:
        bad = traj.window(0, len(traj))
        bad.meta = {**traj.meta, "groups": [traj.meta["groups"][0], {**traj.meta["groups"][1], "names": names}]}
        with pytest.raises(ValueError, match=rf"exactly one group.*{'0.bias' if count == 0 else '0.weight'}.*"
                                             rf"named in {count} groups"):
            kt.koopman(bad).gradient(t=-1)


def test_scores_of_a_float64_window_keep_float64():
    """KMP of a float64 trajectory whose limit has entries 1e-9 apart: cast to float32 they tied, and the mask
    kept entries by position (a TiedScoresWarning) instead of by the limit's own order."""
    x_star = 1.0 + 1e-9 * torch.arange(8, dtype=torch.float64)  # the limit's entries, 1e-9 apart
    d = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    W = torch.stack([x_star + 0.5**t * d for t in range(12)], 1)  # x_t -> x_star, one mode 0.5
    traj = kt.Trajectory(W, torch.arange(12), ["w"], [(8,)], {})
    scores = P.kmp_scores(traj)
    assert scores["w"].dtype == torch.float64
    assert torch.argsort(scores["w"]).tolist() == list(range(8))
    f32 = kt.Trajectory(W.float(), torch.arange(12), ["w"], [(8,)], {})
    assert P.kmp_scores(f32)["w"].dtype == torch.float32


def test_the_limit_s_warnings_point_at_the_caller_s_line():
    """The trust and drift warnings of a limit named a line inside the package (koopman.py) when the limit was
    asked for through kmp_scores or fixed_point (notebooks showed 'koopman.py:169: UntrustedLimitWarning'):
    they name the line that asked, whichever method it called."""
    W = torch.randn(50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).cumsum(1)
    k = kt.koopman(kt.Trajectory(W, torch.arange(8), ["w"], [(50,)], {}))
    for ask in (k.kmp_scores, k.fixed_point, k.limit, lambda: k.forecast(5), lambda: k.horizon_scores(math.inf)):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            ask()
        assert seen and all(w.filename == __file__ for w in seen), [(w.filename, w.lineno) for w in seen]
