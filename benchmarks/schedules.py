"""What the per-snapshot settings log buys: windows whose optimizer settings change, with known answers.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/schedules.py [--seeds 5]

SGD on the rank-8 quadratic (lr 0.01, Hessian eigenvalues 0.1 .. 10), recorded by TrajectoryRecorder
in float64; the recorder logs every parameter group's settings with each snapshot
(koopman_tut/recording/settings_log.py, in memory and in the disk file). Each estimate is computed
twice: from the settings logged for each step, and from the settings the recorder started with
(the log dropped from meta, as before there was one). Prints the largest error over the seeds
(relative to the distance still to go for a limit, to the gradient's norm for a Koopman gradient):

* the secant limit under a momentum that falls from 0.95 (step 0) to 0.85 (step 70), 0.91 .. 0.85
  inside the window (steps 30 .. 70), and a decaying lr (a OneCycleLR-like schedule), heavy ball and
  Nesterov;
* the Koopman gradient of a window trained at momentum 0.9 by a recorder built at 0.5;
* the Koopman gradient of a reloaded disk recording whose second parameter group has its own lr
  schedule (0.25x from step 20), against the first group's lr only (disk format 2).

Then the Koopman limit of windows whose lr or momentum changes (81 snapshots after 100 steps): its
error, on how many seeds checks 1-6 alone trust it (``schedule`` set aside) and checks 1-7 do, and the
smallest ``schedule`` (check 7 of koopman_tut/numerics/trust.py).
"""
import argparse
import os
import tempfile
import warnings

import numpy as np
import torch

import koopman_tut as kt
from koopman_tut import systems

H8 = np.linspace(0.1, 10, 8)


def _without(traj, key):
    return kt.Trajectory(traj.snapshots, traj.steps, traj.names, traj.shapes,
                         {k: v for k, v in traj.meta.items() if k != key})


def _rel(a, b, scale) -> float:
    return float((a.double() - b).norm() / scale)


def secant_under_a_momentum_schedule(nesterov: bool, seed: int) -> tuple[float, float]:
    run = systems.quadratic_sgd(H8, 0.01, momentum=0.95, nesterov=nesterov, warmup=30, n_steps=40, dim=60,
                                seed=seed, momentum_at=lambda s: 0.95 - 0.1 * min(s, 70) / 70,
                                lr_lambda=lambda s: 1 / (1 + 0.01 * s))
    gap = (run.traj.snapshots[:, -1] - run.x_star).norm()
    return tuple(_rel(kt.estimate_limit(t, "secant"), run.x_star, gap)
                 for t in (run.traj, _without(run.traj, "group_settings")))


def gradient_after_a_momentum_change(nesterov: bool, seed: int) -> tuple[float, float]:
    run = systems.quadratic_sgd(H8, 0.01, momentum=0.5, nesterov=nesterov, warmup=100, n_steps=80, dim=60,
                                seed=seed, momentum_at=lambda s: 0.9 if s >= 10 else 0.5)
    true = run.gradient(run.traj.snapshots[:, -1])
    return tuple(_rel(kt.koopman(t).gradient(), true, true.norm())
                 for t in (run.traj, _without(run.traj, "group_settings")))


def gradient_of_a_reloaded_group_schedule(seed: int, path: str) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    H = [torch.diag(torch.rand(4, generator=g, dtype=torch.float64) + 0.5) for _ in range(2)]
    x_star = [torch.randn(4, generator=g, dtype=torch.float64) for _ in range(2)]
    model = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(4, dtype=torch.float64)) for _ in range(2)])
    opt = torch.optim.SGD([dict(params=[model[0]], lr=0.1), dict(params=[model[1]], lr=0.1)])
    sch = torch.optim.lr_scheduler.LambdaLR(opt, [lambda s: 1.0, lambda s: 1.0 if s < 20 else 0.25])
    rec = kt.TrajectoryRecorder(model, opt, stop=39, dtype=torch.float64, params=["0", "1"], path=path)
    for _ in range(40):
        opt.zero_grad()
        sum(0.5 * (p - x) @ h @ (p - x) for p, h, x in zip(model, H, x_star)).backward()
        opt.step()
        sch.step()
    rec.remove()
    back = kt.Trajectory.load(path).window(25)
    W = back.snapshots
    true = torch.cat([h @ (W[4 * i:4 * i + 4, -1] - x) for i, (h, x) in enumerate(zip(H, x_star))])
    out = tuple(_rel(kt.koopman(t).gradient(), true, true.norm()) for t in (back, _without(back, "group_lrs")))
    os.unlink(path)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0 .. seeds-1 per case")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    seeds = range(a.seeds)
    with tempfile.TemporaryDirectory() as d:
        cases = [
            ("secant, momentum 0.91 -> 0.85 inside the window, heavy ball",
             [secant_under_a_momentum_schedule(False, s) for s in seeds]),
            ("secant, momentum 0.91 -> 0.85 inside the window, Nesterov",
             [secant_under_a_momentum_schedule(True, s) for s in seeds]),
            ("Koopman gradient, momentum 0.5 -> 0.9 before the window, heavy ball",
             [gradient_after_a_momentum_change(False, s) for s in seeds]),
            ("Koopman gradient, momentum 0.5 -> 0.9 before the window, Nesterov",
             [gradient_after_a_momentum_change(True, s) for s in seeds]),
            ("Koopman gradient, disk file, group 1 at 0.25x from step 20",
             [gradient_of_a_reloaded_group_schedule(s, os.path.join(d, "w.traj")) for s in seeds]),
        ]
    print(f"{'case':70s} {'logged':>9s} {'start settings':>15s}")
    for name, errs in cases:
        logged, start = zip(*errs)
        print(f"{name:70s} {max(logged):9.1e} {min(start):7.2g}..{max(start):<7.2g}")
    print(f"\n{'Koopman limit, window with':50s} {'error max':>9s} {'checks 1-6':>10s} {'1-7':>4s} {'schedule':>8s}")
    decay = {c: (lambda s, c=c: 1 / (1 + c * s)) for c in (0.002, 0.01)}
    for name, kw in (("lr 0.01 / (1 + 0.002 s), plain SGD", dict(lr_lambda=decay[0.002])),
                     ("lr 0.01 / (1 + 0.01 s), plain SGD", dict(lr_lambda=decay[0.01])),
                     ("lr 0.01 / (1 + 0.01 s), heavy ball 0.9", dict(momentum=0.9, lr_lambda=decay[0.01])),
                     ("momentum 0.95 -> 0.85 over 180 steps",
                      dict(momentum=0.95, momentum_at=lambda s: 0.95 - 0.1 * min(s, 180) / 180)),
                     ("constant lr 0.01, heavy ball 0.9", dict(momentum=0.9))):
        errs, old, new, sched = [], 0, 0, []
        for seed in seeds:
            run = systems.quadratic_sgd(H8, 0.01, warmup=100, n_steps=80, dim=100, seed=seed, **kw)
            lim = kt.koopman(run.traj).limit(warn=False)
            errs.append(_rel(lim.theta, run.x_star, (run.traj.snapshots[:, -1] - run.x_star).norm()))
            sched.append(lim.schedule)
            new += lim.trusted
            lim.schedule = 0.0
            old += lim.trusted
        print(f"{name:50s} {max(errs):9.2g} {old:>5d}/{len(seeds):<4d} {new:>2d}/{len(seeds):<2d} {min(sched):8.2g}")


if __name__ == "__main__":
    main()
