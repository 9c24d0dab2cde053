"""The Koopman gradient undoes every parameter group's own lr, momentum and weight decay."""
import pytest
import torch
import torch.nn as nn

import koopman_tut as kt


class TwoBlocks(nn.Module):
    """Two parameter tensors under a separable quadratic loss 0.5 sum h (x - x*)^2: the gradient is known."""

    def __init__(self, d: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64))
        self.ha, self.hb = torch.linspace(0.5, 4.0, d, dtype=torch.float64), torch.linspace(5.0, 40.0, d, dtype=torch.float64)
        self.a_star, self.b_star = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)

    def loss(self):
        return 0.5 * ((self.ha * (self.a - self.a_star) ** 2).sum() + (self.hb * (self.b - self.b_star) ** 2).sum())

    def grad(self, a, b):
        return torch.cat([self.ha * (a - self.a_star), self.hb * (b - self.b_star)])


def _train(groups, warmup: int = 20, window: int = 40):
    m = TwoBlocks()
    opt = torch.optim.SGD([dict(params=[m.a], **groups[0]), dict(params=[m.b], **groups[1])])
    rec = kt.TrajectoryRecorder(m, opt, start=warmup, stop=warmup + window, dtype=torch.float64, params=["a", "b"])
    for _ in range(warmup + window):
        opt.zero_grad()
        m.loss().backward()
        opt.step()
    return m, rec.trajectory(copy=True)


CASES = {
    "lrs 0.1 / 0.01": ({"lr": 0.1}, {"lr": 0.01}),
    "weight decay in one group": ({"lr": 0.1}, {"lr": 0.01, "weight_decay": 0.5}),
    "momentum in one group": ({"lr": 0.05, "momentum": 0.5}, {"lr": 0.01}),
    "nesterov and heavy ball": ({"lr": 0.05, "momentum": 0.5, "nesterov": True}, {"lr": 0.005, "momentum": 0.3}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_koopman_gradient_per_parameter_group(case):
    m, traj = _train(CASES[case])
    assert len(traj.meta["groups"]) == 2 and traj.meta["groups"][1]["names"] == ["b"]
    k = kt.koopman(traj)
    for t in (5, 20, -1):
        W = traj.snapshots
        truth = m.grad(W[:4, t], W[4:, t])
        g = k.gradient(t=t)
        # each block on its own: a single lr would be off by 10x on one of them
        for rows in (slice(0, 4), slice(4, 8)):
            err = float((g[rows] - truth[rows]).norm() / truth[rows].norm())
            assert err < 1e-6, (case, t, rows, err)


def test_one_group_windows_are_unchanged_and_lr_override_is_refused_for_several():
    m, traj = _train(({"lr": 0.1}, {"lr": 0.01}))
    with pytest.raises(ValueError, match="parameter groups"):
        kt.koopman(traj).gradient(lr=0.1)
    one = TwoBlocks()
    opt = torch.optim.SGD(one.parameters(), lr=0.02)
    rec = kt.TrajectoryRecorder(one, opt, start=10, stop=50, dtype=torch.float64, params=["a", "b"])
    for _ in range(50):
        opt.zero_grad()
        one.loss().backward()
        opt.step()
    tr = rec.trajectory(copy=True)
    assert "group_lrs" not in tr.meta and len(tr.meta["groups"]) == 1
    W = tr.snapshots
    truth = one.grad(W[:4, -1], W[4:, -1])
    assert float((kt.koopman(tr).gradient() - truth).norm() / truth.norm()) < 1e-6


def test_groups_survive_save_and_load(tmp_path):
    m, traj = _train(({"lr": 0.1}, {"lr": 0.01, "weight_decay": 0.5}))
    traj.save(tmp_path / "w.pt")
    back = kt.Trajectory.load(tmp_path / "w.pt")
    assert back.meta["groups"] == traj.meta["groups"] and back.meta["group_lrs"] == traj.meta["group_lrs"]
    W = back.snapshots
    truth = m.grad(W[:4, -1], W[4:, -1])
    assert float((kt.koopman(back).gradient() - truth).norm() / truth.norm()) < 1e-6
