"""The Koopman gradient's check 8 (koopman_tut/numerics/trust.py): the model's step at the snapshot asked for
against the recorded one. Minibatch-like gradient noise makes g_K a smoothed estimate the window cannot vouch
for; full-batch training fits it to rounding."""
import math
import warnings

import pytest
import torch
import torch.nn as nn

import koopman_tut as kt


def _noisy_quadratic(seed: int, noise: float, momentum: float, nesterov: bool, n: int = 300, rank: int = 8):
    """SGD (lr 0.01) on 0.5 (x - x*)^T H (x - x*), H of rank 8 (eigenvalues 0.1 .. 10), with Gaussian noise
    of std ``noise`` added to every gradient; 41 snapshots after 50 warm-up steps, recorded in float64.
    Returns the trajectory and the true gradient at each snapshot (n, 41)."""
    g = torch.Generator().manual_seed(seed)
    B, _ = torch.linalg.qr(torch.randn(n, rank, generator=g, dtype=torch.float64))
    h = torch.linspace(0.1, 10, rank, dtype=torch.float64)
    x_star = torch.randn(n, generator=g, dtype=torch.float64)
    model = nn.Linear(n, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, n, generator=g, dtype=torch.float64))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=momentum, nesterov=nesterov)
    rec = kt.TrajectoryRecorder(model, opt, start=50, stop=90, dtype=torch.float64)
    for _ in range(90):
        opt.zero_grad()
        d = model.weight[0] - x_star
        (0.5 * d @ (B @ (h * (B.T @ d)))).backward()
        model.weight.grad += noise * torch.randn(1, n, generator=g, dtype=torch.float64)
        opt.step()
    traj = rec.trajectory(copy=True)
    W = traj.snapshots
    return traj, B @ (h[:, None] * (B.T @ (W - x_star[:, None])))


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_a_gradient_the_model_does_not_fit_at_its_snapshot_is_not_trusted(momentum, nesterov):
    far = 0
    for seed, noise in [(s, e) for s in range(5) for e in (0.03, 0.1)]:
        traj, grads = _noisy_quadratic(seed, noise, momentum, nesterov)
        k = kt.koopman(traj)
        for t in (5, 20, -5, -1):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                gk = k.gradient(t=t)
            err = float((gk - grads[:, t]).norm() / grads[:, t].norm())
            far += err > 0.1
            if err > 0.1:  # the check must say so whenever the estimate is far off (checks 1-5 alone left
                # 12 far gradients of plain SGD silent here: 10 at noise 0.03, 2 at 0.1)
                assert any(issubclass(w.category, kt.UntrustedLimitWarning) for w in caught), (seed, noise, t, err)
                assert k.gradient_check.fit > 0.05 or not k.gradient_check.trusted
    assert far >= 5, "the noise must put gradients far off, or this test checks nothing"


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_full_batch_gradients_fit_their_snapshot(momentum, nesterov):
    traj, grads = _noisy_quadratic(3, 0.0, momentum, nesterov)
    k = kt.koopman(traj)
    for t in (0, 20, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gk = k.gradient(t=t)
        assert float((gk - grads[:, t]).norm() / grads[:, t].norm()) < 1e-6
        assert k.gradient_check.fit < 1e-6 and not math.isnan(k.gradient_check.fit)
