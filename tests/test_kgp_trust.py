"""The Koopman gradient's check 8 (koopman_tut/numerics/trust.py): the model's step at the snapshot asked for
against the recorded one, undone for momentum (heavy ball and Nesterov). Minibatch-like gradient noise makes
g_K a smoothed estimate the window cannot vouch for; full-batch training on a quadratic fits it to rounding."""
import math
import warnings

import numpy as np
import pytest
import torch

import koopman_tut as kt
from koopman_tut import systems


def _noisy(seed: int, noise: float, momentum: float, nesterov: bool):
    """SGD (lr 0.01) on a rank-8 quadratic (Hessian eigenvalues 0.1 .. 10, dim 300), gradient noise of std
    ``noise``, 41 snapshots after 50 warm-up steps (benchmarks/kgp_fit.py's windows). Returns the
    trajectory and the true gradient at each snapshot (300, 41)."""
    run = systems.quadratic_sgd(np.linspace(0.1, 10, 8), 0.01, momentum=momentum, nesterov=nesterov, warmup=50,
                                n_steps=40, dim=300, seed=seed, grad_noise=noise)
    return run.traj, run.hessian @ (run.traj.snapshots - run.x_star[:, None])


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_a_gradient_the_model_does_not_fit_at_its_snapshot_is_not_trusted(momentum, nesterov):
    far = 0
    for seed, noise in [(s, e) for s in range(5) for e in (0.01, 0.03, 0.1)]:
        traj, grads = _noisy(seed, noise, momentum, nesterov)
        k = kt.koopman(traj)
        for t in (5, 20, -5, -1):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                err = float((k.gradient(t=t) - grads[:, t]).norm() / grads[:, t].norm())
            far += err > 0.1
            if err > 0.1:  # the check must say so whenever the estimate is far off (benchmarks/kgp_fit.py
                # counts the silent ones before check 8 and with it measured on steps rather than gradients)
                assert any(issubclass(w.category, kt.UntrustedLimitWarning) for w in caught), (seed, noise, t, err)
    assert far >= 5, "the noise must put gradients far off, or this test checks nothing"


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_fit_is_the_misfit_of_the_gradient_the_recorded_steps_imply(momentum):
    """Independently of the model's internals: lr g_K(t) = -(s(t) - beta s(t-1)) for the model's steps s,
    and the recorded steps imply -(d(t) - beta d(t-1)); fit is their distance relative to lr g_K(t)
    (at t = T-1, whose step is not recorded, that of T-2)."""
    traj, _ = _noisy(1, 0.01, momentum, False)
    W, k, T = traj.snapshots, kt.koopman(traj), len(traj)
    d = W[:, 1:] - W[:, :-1]
    for t in (2, 20, T - 2, T - 1):  # t = 1 reads d(0) - beta d(-1), which the window does not record
        u = min(t, T - 2)
        g = k.gradient(t=u, warn=False)
        implied = d[:, u] - momentum * d[:, u - 1]
        expect = float((-0.01 * g - implied).norm() / (0.01 * g).norm())
        k.gradient(t=t, warn=False)
        assert math.isclose(k.gradient_check.fit, expect, rel_tol=1e-6), (t, k.gradient_check.fit, expect)


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_full_batch_gradients_fit_their_snapshot(momentum, nesterov):
    traj, grads = _noisy(3, 0.0, momentum, nesterov)
    k = kt.koopman(traj)
    for t in (0, 1, 20, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gk = k.gradient(t=t)
        assert float((gk - grads[:, t]).norm() / grads[:, t].norm()) < 1e-6
        assert k.gradient_check.fit < 1e-6 and not math.isnan(k.gradient_check.fit)


def _near_optimum(seed: int, warmup: int, dtype=torch.float64, dim: int = 100, lr: float = 0.05):
    """Heavy ball (momentum 0.9) on a rank-6 quadratic (Hessian eigenvalues geomspace(0.1, 4, 6)), 81
    snapshots after ``warmup`` steps: at 450 in float64 the window ends ~1e-13 of ||x*|| from x*, its steps
    a few hundred ulps (benchmarks/kgp_rounding.py's windows)."""
    return systems.quadratic_sgd(np.geomspace(0.1, 4, 6), lr, momentum=0.9, warmup=warmup, n_steps=80, dim=dim,
                                 seed=seed, dtype=dtype)


def test_a_gradient_near_a_float64_optimum_is_checked_against_the_rounding_it_can_carry():
    """Check 8 subtracts what rounding can put into the recorded step at the snapshot. As a worst-case bound
    (every entry off by a whole ulp, all in step) that was 8 times the rounding the steps carry, and hid the
    misfit of a gradient 15% off (seed 4: fit 0.043 then, 0.19 now); now it is twice the rounding's expected
    norm. Every gradient more than 10% off is untrusted; float32 windows whose steps are tens of ulps, within
    1%, stay trusted."""
    far = 0
    for seed in range(8):
        run = _near_optimum(seed, 450)
        k = kt.koopman(run.traj)
        g = k.gradient(t=-1, warn=False)
        true = run.gradient(run.traj.snapshots[:, -1])
        if float((g.double() - true).norm() / true.norm()) > 0.1:
            far += 1
            assert not k.gradient_check.trusted, (seed, k.gradient_check)
    assert far >= 2  # the family holds such gradients (3 on the machine the test was written on)
    for seed in (0, 1):
        run = _near_optimum(seed, 300, torch.float32, dim=20, lr=0.01)
        k = kt.koopman(run.traj)
        for t in (40, -1):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no UntrustedLimitWarning
                g = k.gradient(t=t)
            true = run.gradient(run.traj.snapshots[:, t])
            assert float((g.double() - true).norm() / true.norm()) < 0.01 and k.gradient_check.fit < 0.01


def test_a_gradient_whose_recorded_steps_are_rounding_or_zero_is_not_trusted():
    """Check 8 compares the model with the recorded step at t; where that step is no larger than its rounding
    (or zero) it compares with nothing. Float64 training stored in float32 (the recorder's default), its last
    steps below float32's ulp: the Koopman gradient was 66% off and trusted; a still window (float32 training
    stalled below the stored precision) gave a zero gradient, 100% off, trusted. The limit of a still window
    is its last snapshot, exactly, and stays trusted."""
    g = torch.Generator().manual_seed(0)
    x_star = 3 * torch.randn(2, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(x_star + torch.randn(2, generator=g, dtype=torch.float64))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    rec = kt.TrajectoryRecorder(model, opt, start=100, stop=260, every=2)  # stored in float32
    for _ in range(260):
        opt.zero_grad()
        e = model.weight[0] - x_star
        (0.5 * e @ e).backward()
        opt.step()
    traj = rec.trajectory()
    W = traj.snapshots
    assert torch.equal(W[:, -1], W[:, -2]) and not torch.equal(W[:, 0], W[:, 1])  # stopped moving in float32
    k = kt.koopman(traj)
    with pytest.warns(kt.UntrustedLimitWarning, match="rounding alone can move it by .* of its size"):
        k.gradient(t=-1)
    assert not k.gradient_check.trusted
    still = kt.Trajectory(W[:, -1:].expand(-1, 20).clone(), torch.arange(20) * 2, traj.names, traj.shapes,
                          {**traj.meta, "lrs": [0.02] * 20})
    k = kt.koopman(still)
    with pytest.warns(kt.UntrustedLimitWarning, match="rounding alone"):
        assert float(k.gradient(t=-1).abs().max()) == 0  # what a zero step says, untrusted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(k.limit().theta, W[:, -1]) and k.limit().trusted


def _digits_mlp(nesterov: bool, every: int):
    """The digits MLP (hidden 16) trained full batch in float64 (lr 0.05, momentum 0.9), 41 snapshots
    ``every`` steps apart from step 300. Returns the trajectory and the true gradient at a snapshot."""
    X, Y = kt.data.digits()[0].tensors
    X = X.double()
    model = kt.models.get_model("mlp", seed=0, hidden=(16,)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=nesterov)
    rec = kt.TrajectoryRecorder(model, opt, start=300, stop=300 + 40 * every, every=every, dtype=torch.float64)
    for _ in range(300 + 40 * every):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()
    rec.remove()
    traj = rec.trajectory(copy=True)
    params = dict(model.named_parameters())

    def truth(t: int) -> torch.Tensor:
        with torch.no_grad():
            for name, v in traj.unflatten(traj.snapshots[:, t]).items():
                params[name].copy_(v)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(X), Y).backward()
        return torch.cat([params[name].grad.flatten() for name in traj.names])
    return traj, truth


@pytest.mark.parametrize("nesterov, every", [(True, 1), (False, 2)])
def test_a_full_batch_gradient_under_nesterov_or_every_2_steps_is_checked_on_the_gradient_not_the_step(
        nesterov, every):
    """Check 8 used to compare the step itself under Nesterov and with snapshots 2 steps apart; the step is
    mostly the velocity momentum carries, which hides the gradient's misfit (up to 1 / (1 - beta)). On a
    curved loss the model is not the optimizer's map: these gradients are 15-26% off, their steps missed by
    2-4% (fit 0.02-0.04), and were trusted. Now it compares s(t) - beta s(t-1) (beta^2 and the step for every 2)."""
    traj, truth = _digits_mlp(nesterov, every)
    k = kt.koopman(traj)
    for t in (20, -1):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = k.gradient(t=t)
        true = truth(t)
        err = float((g - true).norm() / true.norm())
        warned = any(issubclass(w.category, kt.UntrustedLimitWarning) for w in caught)
        assert err < 0.1 or (warned and k.gradient_check.fit > kt.numerics.trust.TRUST_TOL), (t, err, k.gradient_check)
        if t == 20:
            assert err > 0.1, "the window must hold a gradient far off, or this test checks nothing"


def _quadratic_window(dtype, momentum: float, nesterov: bool, warmup: int, seed: int, dim: int = 30,
                      every: int = 1):
    """Full-batch SGD (lr 0.05) on 0.5 (x - x*)^T H (x - x*), H of rank 6 (eigenvalues geomspace(0.1, 4, 6)),
    trained and recorded in ``dtype``, 81 snapshots ``every`` steps apart after ``warmup`` steps. Returns
    (trajectory, true gradient at a snapshot)."""
    g = torch.Generator().manual_seed(seed)
    B = torch.linalg.qr(torch.randn(dim, 6, generator=g, dtype=torch.float64))[0]
    H = B @ torch.diag(torch.tensor(np.geomspace(0.1, 4, 6))) @ B.T
    x_star = 3 * torch.randn(dim, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(dim, 1, bias=False).to(dtype)
    with torch.no_grad():
        model.weight.copy_((x_star + B @ torch.randn(6, generator=g, dtype=torch.float64))[None])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum, nesterov=nesterov)
    rec = kt.TrajectoryRecorder(model, opt, start=warmup, stop=warmup + 80 * every, every=every, dtype=dtype)
    for _ in range(warmup + 80 * every):
        opt.zero_grad()
        e = model.weight[0] - x_star.to(dtype)
        (0.5 * e @ H.to(dtype) @ e).backward()
        opt.step()
    traj = rec.trajectory()
    return traj, lambda t: H @ (traj.snapshots[:, t].double() - x_star)


def test_a_gradient_whose_momentum_free_combination_is_a_few_roundings_is_still_checked_on_its_step():
    """Under momentum 0.95 the gradient's combination d(t) - beta d(t-1) is 1/20 of the step; in float32 near
    the optimum it is a few roundings, and subtracting their allowance hid a misfit of 9-19% (fit 0-0.02) that
    the step itself shows (0.10-0.28): check 8 takes the larger misfit of both. (Left: in the same family,
    seed 1, warm-up 175, t = 30, 12% off with fit 0.041 on both; docs/trust.md.)"""
    for seed, warmup, t in ((2, 175, 20), (0, 150, 30)):  # an independent review's two windows
        traj, truth = _quadratic_window(torch.float32, 0.95, True, warmup, seed)
        k = kt.koopman(traj)
        g = k.gradient(t=t, warn=False)
        err = float((g.double() - truth(t)).norm() / truth(t).norm())
        assert err > 0.1, "the window must hold a gradient far off, or this test checks nothing"
        assert not k.gradient_check.trusted and k.gradient_check.fit > kt.numerics.trust.TRUST_TOL, (seed, err)


@pytest.mark.parametrize("nesterov", [False, True])
def test_float32_training_recorded_in_float64_is_checked_at_float32_rounding(nesterov):
    """Every step of float32 training rounds the parameters to float32, whatever the recording's dtype. Logistic
    regression on digits, full batch, momentum 0.99: the gradient's combination is 1/100 of the step, and
    float32's rounding in it was read against float64's allowance: gradients within 1% were untrusted (fit
    0.17-0.22). The recorder now keeps the dtype trained (meta['trained_in']), and check 8 allows for it."""
    X, Y = kt.data.digits()[0].tensors
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.99, nesterov=nesterov)
    rec = kt.TrajectoryRecorder(model, opt, start=1000, stop=1040, dtype=torch.float64)
    for _ in range(1040):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()
    traj = rec.trajectory()
    assert traj.meta["trained_in"] == "float32" and traj.snapshots.dtype == torch.float64
    ref = torch.nn.Linear(64, 10).double()
    k = kt.koopman(traj)
    for t in (20, -1):
        with torch.no_grad():
            p = traj.unflatten(traj.snapshots[:, t])
            ref.weight.copy_(p["weight"])
            ref.bias.copy_(p["bias"])
        ref.zero_grad()
        torch.nn.functional.cross_entropy(ref(X.double()), Y).backward()
        true = torch.cat([ref.weight.grad.flatten(), ref.bias.grad.flatten()])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no UntrustedLimitWarning
            g = k.gradient(t=t)
        assert float((g - true).norm() / true.norm()) < 0.015 and k.gradient_check.trusted


def test_a_gradient_whose_momentum_free_combination_is_within_its_rounding_is_not_trusted():
    """Snapshots 3 steps apart, Nesterov 0.95, float32 near the optimum: the recorded step at t is above its
    rounding, the combination D(t) - beta^3 D(t-1) (the gradients' part) is not (1.9 times within it). The step
    alone then said the window checks the model; the gradient was 46% off and trusted."""
    traj, truth = _quadratic_window(torch.float32, 0.95, True, 150, 0, every=3)
    k = kt.koopman(traj)
    with pytest.warns(kt.UntrustedLimitWarning, match="rounding alone"):
        g = k.gradient(t=-1)
    assert float((g.double() - truth(-1)).norm() / truth(-1).norm()) > 0.1 and k.gradient_check.rounding >= 1


def test_the_first_snapshots_gradient_under_momentum_is_checked_one_snapshot_later():
    """At t = 0 no recorded step undoes the velocity the first step carries from before the window, and the
    step's own misfit hid the gradient's: the digits MLP (hidden 16), full batch, Nesterov 0.9, trained and
    recorded in float32 every 2 steps from step 300 (benchmarks/kgp_curved.py's window): the Koopman gradient
    at t = 0 is 27% off, with the step's fit 0.012, and was trusted. The combination at t = 1 reads 0.07."""
    import torch.nn.functional as F
    X, Y = kt.data.digits()[0].tensors
    model = kt.models.get_model("mlp", seed=0, hidden=(16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    rec = kt.TrajectoryRecorder(model, opt, start=300, stop=380, every=2)
    for _ in range(380):
        opt.zero_grad()
        F.cross_entropy(model(X), Y).backward()
        opt.step()
    rec.remove()
    traj = rec.trajectory(copy=True)
    ref = kt.models.get_model("mlp", seed=0, hidden=(16,)).double()
    params = dict(ref.named_parameters())
    with torch.no_grad():
        for name, v in traj.unflatten(traj.snapshots[:, 0].double()).items():
            params[name].copy_(v)
    F.cross_entropy(ref(X.double()), Y).backward()
    truth = torch.cat([params[name].grad.flatten() for name in traj.names])
    k = kt.koopman(traj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = k.gradient(t=0)
    assert float((g.double() - truth).norm() / truth.norm()) > 0.1  # the known answer the check is read against
    assert not k.gradient_check.trusted and k.gradient_check.fit > 0.05, k.gradient_check
