"""The Koopman gradient undoes every parameter group's own lr, momentum and weight decay."""
import warnings

import pytest
import torch
import torch.nn as nn

import koopman_tut as kt
from koopman_tut import pruning as P, systems

H8 = [0.1 + 9.9 * i / 7 for i in range(8)]  # lr 0.01: gradient-descent factors 0.999 .. 0.9


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


def _train(groups, warmup: int = 20, window: int = 40, sign: float = 1.0):
    m = TwoBlocks()
    opt = torch.optim.SGD([dict(params=[m.a], **groups[0]), dict(params=[m.b], **groups[1])])
    rec = kt.TrajectoryRecorder(m, opt, start=warmup, stop=warmup + window, dtype=torch.float64, params=["a", "b"])
    for _ in range(warmup + window):
        opt.zero_grad()
        (sign * m.loss()).backward()
        opt.step()
    return m, rec.trajectory(copy=True)


CASES = {
    "lrs 0.1 / 0.01": ({"lr": 0.1}, {"lr": 0.01}),
    "weight decay in one group": ({"lr": 0.1}, {"lr": 0.01, "weight_decay": 0.5}),
    "momentum in one group": ({"lr": 0.05, "momentum": 0.5}, {"lr": 0.01}),
    "nesterov and heavy ball": ({"lr": 0.05, "momentum": 0.5, "nesterov": True}, {"lr": 0.005, "momentum": 0.3}),
    # torch.optim.SGD's constructor refuses Nesterov with dampening, but a group dict runs it: the
    # buffer takes (1 - dampening) g and the step g + beta buffer (the formula had divided by 1 - d)
    "nesterov with dampening": ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "dampening": 0.5},
                                {"lr": 0.01, "momentum": 0.5, "dampening": 0.1}),
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


@pytest.mark.parametrize("wd", [0.0, 0.03])
def test_maximize_keeps_the_gradients_sign(wd):
    # maximize=True steps along +grad (here of -loss, so training still converges): the Koopman
    # gradient is the gradient the user backpropagated, not its negative (it came out negated). With
    # weight decay SGD steps along -grad + wd theta, so wd theta is added back, not subtracted (it came
    # out off by -2 wd theta: 29-81% of the gradient, silently)
    m, traj = _train(({"lr": 0.05, "momentum": 0.5, "maximize": True, "weight_decay": wd},
                      {"lr": 0.01, "maximize": True, "momentum": 0.5, "nesterov": True, "weight_decay": 2 * wd}),
                     sign=-1.0)
    assert all(g["maximize"] for g in traj.meta["groups"])
    W = traj.snapshots
    for t in (5, -1):
        truth = -m.grad(W[:4, t], W[4:, t])
        assert float((kt.koopman(traj).gradient(t=t) - truth).norm() / truth.norm()) < 1e-6


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


def _scheduled(lr_lambdas=None, step_lr=None, steps: int = 79, start: int = 0, stop: int = 79, path=None, one_group=False,
               base=(0.1, 0.01)):
    """TwoBlocks trained with a learning-rate schedule (StepLR or per-group LambdaLR), recorded from `start`."""
    m = TwoBlocks()
    groups = [dict(params=[m.a, m.b], lr=0.02)] if one_group else [dict(params=[m.a], lr=base[0]), dict(params=[m.b], lr=base[1])]
    opt = torch.optim.SGD(groups)
    sch = (torch.optim.lr_scheduler.StepLR(opt, step_lr, 0.1) if step_lr
           else torch.optim.lr_scheduler.LambdaLR(opt, lr_lambdas))
    rec = kt.TrajectoryRecorder(m, opt, start=start, stop=stop, dtype=torch.float64, params=["a", "b"], path=path)
    for _ in range(steps):
        opt.zero_grad()
        m.loss().backward()
        opt.step()
        sch.step()
    return m, rec.trajectory(copy=path is None)


def _errors(m, traj, ts):
    W, k = traj.snapshots, kt.koopman(traj)
    out = []
    for t in ts:
        truth, g = m.grad(W[:4, t], W[4:, t]), k.gradient(t=t)
        out += [float((g[r] - truth[r]).norm() / truth[r].norm()) for r in (slice(0, 4), slice(4, 8))]
    return out


def test_a_window_of_a_scheduled_run_keeps_each_snapshots_learning_rates():
    """window() slices the per-group lrs with the snapshots (it copied them whole: 0.9 off)."""
    m, traj = _scheduled(step_lr=40)
    w = traj.window(start=40)
    assert len(w.meta["group_lrs"]) == len(w)
    assert max(_errors(m, w, (0, 5, -1))) < 1e-6


def test_learning_rate_of_the_step_that_leaves_the_snapshot():
    """Right after a StepLR drop, the step leaving snapshot 0 uses the new lr (logged with snapshot 1)."""
    m, traj = _scheduled(step_lr=40, start=40, one_group=True)
    assert traj.meta["lrs"][0] != traj.meta["lrs"][1]
    assert max(_errors(m, traj, (0, 1, -1))) < 1e-6


def test_groups_whose_lrs_differ_only_inside_the_window():
    """Equal lrs when the trajectory is taken, different at the snapshot asked for: still per group."""
    m, traj = _scheduled(lr_lambdas=[lambda s: 1.0, lambda s: 1.0 if s < 1 else 0.25], steps=60, start=10,
                         stop=40, base=(0.02, 0.02))
    assert traj.meta["groups"][0]["lr"] == traj.meta["groups"][1]["lr"]  # equal when the recorder was made
    assert max(_errors(m, traj, (0, 10, -1))) < 1e-6


def test_disk_recordings_keep_every_groups_schedule(tmp_path):
    # group 1 leaves the first group's schedule at step 20 (0.25x); a warm-up from lr 0 gives no proportion
    # at all: the file logs every group's lr per snapshot, so the reloaded window is the one in memory
    for lambdas in ([lambda s: 1.0, lambda s: 1.0 if s < 20 else 0.25], [lambda s: min(1.0, s / 10)] * 2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m, traj = _scheduled(lr_lambdas=lambdas, steps=40, stop=39, path=tmp_path / "w.traj")
            back = kt.Trajectory.load(tmp_path / "w.traj")
            assert back.meta == traj.meta and back.meta["group_lrs"][-1] == pytest.approx(traj.meta["group_lrs"][-1])
            assert max(_errors(m, back.window(25), (0, -1))) < 1e-6
        (tmp_path / "w.traj").unlink()


def test_a_window_without_group_lrs_says_what_it_assumes(tmp_path):
    # a version-2 disk file kept the first group's lr only: each group is taken to follow its schedule, with a warning
    m, traj = _scheduled(lr_lambdas=[lambda s: 1.0, lambda s: 1.0], steps=40, stop=39)
    old = kt.Trajectory(traj.snapshots, traj.steps, traj.names, traj.shapes,
                        {k: v for k, v in traj.meta.items() if k != "group_lrs"})
    with pytest.warns(UserWarning, match="first group's schedule"):
        err = _errors(m, old, (-1,))
    assert max(err) < 1e-6  # proportional schedules: the assumption holds here


def test_settings_that_change_inside_the_window_are_logged_and_reported():
    m = TwoBlocks()
    opt = torch.optim.SGD([m.a, m.b], lr=0.01, momentum=0.9)
    sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=100)  # cycles momentum too
    rec = kt.TrajectoryRecorder(m, opt, start=0, stop=30, dtype=torch.float64, params=["a", "b"])
    for _ in range(30):
        opt.zero_grad()
        m.loss().backward()
        opt.step()
        sch.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        traj = rec.trajectory()
    assert traj.meta["momentum"] == pytest.approx(rec.meta0["momentum"])  # the start's, on every route
    momenta = [row[0]["momentum"] for row in traj.meta["group_settings"]]
    assert momenta[0] == pytest.approx(0.95) and momenta[-1] < 0.94  # OneCycleLR's, step by step
    with pytest.warns(kt.UntrustedLimitWarning, match="changes inside the window"):
        kt.koopman(traj).gradient()
    fixed = traj.window(10)
    fixed.meta["lrs"] = [fixed.meta["lrs"][0]] * len(fixed)  # an lr kept: the momentum's change is reported itself
    with pytest.warns(kt.UntrustedLimitWarning, match=r"the optimizer's momentum changes inside the window"):
        kt.koopman(fixed).gradient(lr=fixed.meta["lrs"][0])


def test_a_momentum_changed_before_the_window_is_the_one_undone():
    # the recorder is built at step 0 with momentum 0.5, the window (steps 100 .. 180) trains at 0.9: the
    # Koopman gradient undoes 0.9, the momentum of the steps it sees
    kw = dict(momentum=0.5, warmup=100, n_steps=80, dim=60)
    run = systems.quadratic_sgd(H8, 0.01, momentum_at=lambda s: 0.9 if s >= 10 else 0.5, **kw)
    assert run.traj.meta["momentum"] == 0.5 and run.traj.meta["group_settings"][0][0]["momentum"] == 0.9
    for traj, ok in ((run.traj, True), (_without(run.traj, "group_settings"), False)):
        g, true = kt.koopman(traj).gradient(), run.gradient(traj.snapshots[:, -1])
        assert (float((g - true).norm() / true.norm()) < 1e-6) == ok


def _without(traj, key):
    return kt.Trajectory(traj.snapshots, traj.steps, traj.names, traj.shapes,
                         {k: v for k, v in traj.meta.items() if k != key})


@pytest.mark.parametrize("lr, error", [("x", TypeError), (True, TypeError), (-1.0, ValueError)])
def test_a_bad_lr_is_named(lr, error):
    one = TwoBlocks()
    opt = torch.optim.SGD(one.parameters(), lr=0.02)
    rec = kt.TrajectoryRecorder(one, opt, stop=5, dtype=torch.float64, params=["a", "b"])
    for _ in range(5):
        opt.zero_grad()
        one.loss().backward()
        opt.step()
    with pytest.raises(error, match="lr must be a positive learning rate"):
        kt.pruning.koopman_gradient(rec.trajectory(), lr=lr)


def test_a_change_just_before_the_window_is_not_reported_inside_it():
    # snapshot 0's settings are those of the step that produced it, before the window: every step inside
    # the window trains at momentum 0.5, and nothing changes there
    run = systems.quadratic_sgd(H8[:4], 0.05, momentum=0.9, warmup=30, n_steps=40, dim=10,
                                momentum_at=lambda s: 0.9 if s < 30 else 0.5)
    assert run.traj.meta["group_settings"][0][0]["momentum"] == 0.9  # the step that produced snapshot 0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*inside the window")
        g = kt.koopman(run.traj).gradient(t=5)
    true = run.gradient(run.traj.snapshots[:, 5])
    assert float((g - true).norm() / true.norm()) < 1e-6


class Coupled(nn.Module):
    """x = [a; b] (2 x 10) under 0.5 (x - x*)^T H (x - x*), H of rank 8 coupling a and b; b trained with
    momentum 0.9, a without."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.B = torch.linalg.qr(torch.randn(20, 8, generator=g, dtype=torch.float64))[0]
        self.H = self.B @ torch.diag(torch.tensor(H8, dtype=torch.float64)) @ self.B.T
        self.x_star = torch.randn(20, generator=g, dtype=torch.float64)
        self.a = nn.Parameter(torch.randn(10, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(10, generator=g, dtype=torch.float64))
        x0 = torch.cat([self.a.detach(), self.b.detach()])
        # SGD with momentum beta on b alone moves x by -lr P (sum of gradients) in the end, P = diag(1, 1 / (1 - beta)),
        # and the gradients lie in H's range: x(inf) = x0 + P B c with B^T (x(inf) - x*) = 0
        PB = self.B * torch.cat([torch.ones(10), torch.full((10,), 10.0)]).double()[:, None]
        self.limit = x0 + PB @ torch.linalg.solve(self.B.T @ PB, self.B.T @ (self.x_star - x0))

    def loss(self):
        e = torch.cat([self.a, self.b]) - self.x_star
        return 0.5 * e @ self.H @ e


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_limit_of_a_plain_group_coupled_to_a_momentum_group(tmp_path, seed):
    """Recording only a plain SGD group whose parameters are coupled (through the loss) to a heavy-ball
    group: the recorded trajectory is a view of a second-order recursion, so the limit needs one delay
    (meta['other_momentum']); without it the limit was 3e-3 .. 4e-3 off here (warned)."""
    m = Coupled(seed)
    opt = torch.optim.SGD([dict(params=[m.a], lr=0.01), dict(params=[m.b], lr=0.01, momentum=0.9)])
    recs = [kt.TrajectoryRecorder(m, opt, start=100, stop=180, dtype=torch.float64, params=["a"], path=path)
            for path in (None, tmp_path / "a.kttraj")]
    for _ in range(180):
        opt.zero_grad()
        m.loss().backward()
        opt.step()
    for rec in recs:
        rec.remove()
    for traj in (recs[0].trajectory(copy=True), kt.Trajectory.load(tmp_path / "a.kttraj")):
        assert traj.meta["other_momentum"] is True and traj.meta["momentum"] == 0.0
        k = kt.koopman(traj)
        assert k.delays == 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # exact, and trusted
            lim = k.limit()
        left = (traj.snapshots[:, -1] - m.limit[:10]).norm()
        # the window's rounding amplified by its conditioning (1e-7 .. 4e-7 here; errors 3e-8 .. 1.4e-6 at seeds 0-5);
        # without the delay, 3e-3 .. 4e-3
        assert (lim.theta - m.limit[:10]).norm() < 1e-5 * left
        with pytest.raises(ValueError, match="other_momentum"):  # its gradients depend on what it does not see
            kt.estimate_limit(traj, "secant")
    with pytest.raises(TypeError, match="other_momentum"):  # refused as the window is built
        kt.Trajectory(traj.snapshots, traj.steps, traj.names, traj.shapes, {**traj.meta, "other_momentum": "yes"})
    m2 = Coupled(seed)  # every group plain: no key, no delay
    opt2 = torch.optim.SGD([dict(params=[m2.a], lr=0.01), dict(params=[m2.b], lr=0.01)])
    rec2 = kt.TrajectoryRecorder(m2, opt2, start=0, stop=10, params=["a"])
    assert "other_momentum" not in rec2.trajectory().meta


def test_each_groups_trust_check_reads_its_own_rows():
    """The digits MLP (hidden 16), full batch, layer 1 in a plain group and layer 2 under Nesterov 0.9, window
    from step 1000: at t = 20 layer 1's Koopman gradient is 12% off the true one and layer 2's 0.3%. Read on
    every row, the checks trusted the first (its fit 0.044: layer 2's rows fit) and warned on the second (fit
    0.47: layer 1's misfit); on each group's own rows, the other way round."""
    import torch.nn.functional as F
    X, Y = kt.data.digits()[0].tensors
    model = kt.models.get_model("mlp", seed=0, hidden=(16,)).double()
    ps = list(model.parameters())
    opt = torch.optim.SGD([dict(params=ps[:2], lr=0.05), dict(params=ps[2:], lr=0.05, momentum=0.9, nesterov=True)])
    rec = kt.TrajectoryRecorder(model, opt, start=1000, stop=1040, dtype=torch.float64)
    for _ in range(1040):
        opt.zero_grad()
        F.cross_entropy(model(X.double()), Y).backward()
        opt.step()
    rec.remove()
    traj = rec.trajectory(copy=True)
    with torch.no_grad():
        for name, v in traj.unflatten(traj.snapshots[:, 20]).items():
            dict(model.named_parameters())[name].copy_(v)
    model.zero_grad()
    F.cross_entropy(model(X.double()), Y).backward()
    truth = torch.cat([p.grad.flatten() for p in ps])
    k = kt.koopman(traj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = k.gradient(t=20)
    split = int(traj.offsets[2])  # layer 1's weight and bias, then layer 2's
    errors = [float((g[r] - truth[r]).norm() / truth[r].norm()) for r in (slice(0, split), slice(split, None))]
    assert errors[0] > 0.1 and errors[1] < 0.01, errors  # the known answer the checks are read against
    first, second = k.gradient_checks
    assert not first.trusted and first.fit > 0.1, first
    assert second.trusted and second.fit < 0.01, second


def test_a_groups_checks_resolve_its_steps_as_the_whole_windows_do():
    """Float64, two groups (lr 0.02 / 0.01); group b: one stiff coordinate and three slow ones with noisy
    gradients, so its last steps are 4e-9 of its first. The Gram of b's steps alone resolves only down to
    1.5e-8 of its largest: unrefined, b's checks read a fit of 0 (its gradient 54% off the noise-free one,
    trusted). With one more pass (numerics/refine.py) each group's fit is what a QR factor of its rows gives."""
    from koopman_tut.pruning.sgd_steps import fit_betas, group_settings, modal_weight, training_eps
    g = torch.Generator().manual_seed(0)
    ha, hb = torch.tensor([25.0, 30, 35, 40], dtype=torch.float64), torch.tensor([40.0, 0.1, 0.2, 0.3], dtype=torch.float64)
    sa, sb = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    m = torch.nn.Module()
    m.a = torch.nn.Parameter(sa + 1.0)
    m.b = torch.nn.Parameter(sb + torch.tensor([1.0, 1e-7, 1e-7, 1e-7], dtype=torch.float64))
    opt = torch.optim.SGD([dict(params=[m.a], lr=0.02), dict(params=[m.b], lr=0.01)])
    rec = kt.TrajectoryRecorder(m, opt, start=0, stop=40, dtype=torch.float64, params=["a", "b"])
    for _ in range(40):
        noise = 1e-7 * hb * torch.randn(4, generator=g, dtype=torch.float64)
        noise[0] = 0
        m.a.grad, m.b.grad = ha * (m.a.detach() - sa), hb * (m.b.detach() - sb) + noise
        opt.step()
    traj = rec.trajectory(copy=True)
    k, W, t = kt.koopman(traj), traj.snapshots, len(traj) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k.gradient(t=t)
        for (rows, settings, lr), check in zip(group_settings(traj, None, t), k.gradient_checks):
            qr = torch.linalg.qr(W[rows].diff(dim=1), mode="r")[1]
            ref = k.affine.modal_difference(t, modal_weight(settings, lr, 1), betas=fit_betas(settings, 1),
                                            eps=training_eps(traj.meta), rows=(qr, k._group_factors[tuple(settings["names"])][1]))
            assert abs(check.fit - ref.fit) <= 1e-3 * max(ref.fit, 1e-3), (settings["names"], check.fit, ref.fit)
    assert k.gradient_checks[1].fit > 0.1 and not k.gradient_checks[1].trusted  # b's misfit, seen


def test_a_group_frozen_by_lr_0_is_named_with_the_way_round_it():
    """lr = 0 freezes a group (a backbone): its steps cannot be undone, and the refusal says how to get the others'."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    X, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    ps = list(model.parameters())
    opt = torch.optim.SGD([{"params": ps[:2], "lr": 0.0}, {"params": ps[2:], "lr": 0.05}])
    whole = kt.TrajectoryRecorder(model, opt, stop=20)
    head = kt.TrajectoryRecorder(model, opt, stop=20, params=["2.weight", "2.bias"])
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    with pytest.raises(ValueError, match=r"group of \['0.weight', '0.bias'\] has learning rate 0.0 .*"
                                         r"record without it \(TrajectoryRecorder\(params="):
        P.koopman_gradient(whole.trajectory())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert P.koopman_gradient(head.trajectory()).shape == (27,)
