"""The default limit beside an optimizer-aware secant estimate, on windows whose limit is known.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/secant_limit.py [--seeds 10]

A measurement for the next step of issue 16, not a method of the package. SGD on the rank-8 quadratic
(lr 0.01, Hessian eigenvalues 0.1 .. 10; plain, heavy ball 0.9, Nesterov 0.9), recorded by TrajectoryRecorder
in float64. The Koopman limit (kt.koopman(traj).limit()) needs every mode of the window: 8 for plain SGD,
16 under momentum, where a short window resolves 15 (trust.py's known limits). The secant estimate uses
the recorded optimizer instead: with d_t = theta(t+1) - theta(t), SGD's step gives the gradient
g_t = (beta d_{t-1} - d_t) / lr at p_t = theta(t) (Nesterov: theta(t) + beta d_{t-1}); on a quadratic
g_{t+1} - g_t = H (p_{t+1} - p_t) exactly, so theta* = p_last - dP c with dG c = g_last (least squares):
quasi-Newton on the steps, which needs only the 8 directions the steps span. It is exact by construction
on a quadratic; minibatch noise and curvature that changes along the way are what it has not been tried on.
Prints, per family, the largest and median error of each, relative to ||theta* - theta(T-1)||.
"""
import argparse
import warnings

import numpy as np
import torch

import koopman_tut as kt
from koopman_tut import systems

H8 = np.linspace(0.1, 10, 8)


def secant_limit(W: torch.Tensor, lr: float, beta: float, nesterov: bool) -> torch.Tensor:
    """theta* from the window W (n, T) of SGD with constant lr and momentum beta (dense: small n only)."""
    D = torch.diff(W, dim=1)  # (n, T-1) steps
    g = (beta * D[:, :-1] - D[:, 1:]) / lr  # (n, T-2) gradients at p_1 .. p_{T-2}
    p = W[:, 1:-1] + (beta * D[:, :-1] if nesterov else 0.0)  # where each was taken
    c = torch.linalg.lstsq(torch.diff(g, dim=1), g[:, -1:]).solution  # H dP c = g_last
    return p[:, -1] - (torch.diff(p, dim=1) @ c)[:, 0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0 .. seeds-1 per family")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"{'family':38s} {'secant max':>10s} {'median':>8s} {'Koopman max':>11s} {'median':>8s} {'trusted':>7s}")
    for momentum, nesterov, name in ((0.0, False, "plain SGD"), (0.9, False, "heavy ball"), (0.9, True, "Nesterov")):
        for warmup, steps in ((20, 19), (20, 30), (100, 30), (100, 79)):
            sec, koop, trusted = [], [], 0
            for seed in range(a.seeds):
                run = systems.quadratic_sgd(H8, 0.01, momentum=momentum, nesterov=nesterov, warmup=warmup,
                                            n_steps=steps, dim=200, seed=seed)
                W, gap = run.traj.snapshots, (run.traj.snapshots[:, -1] - run.x_star).norm()
                lim = kt.koopman(run.traj).limit(warn=False)
                sec.append(float((secant_limit(W, 0.01, momentum, nesterov) - run.x_star).norm() / gap))
                koop.append(float((lim.theta - run.x_star).norm() / gap))
                trusted += lim.trusted
            print(f"{name + f', warm-up {warmup}, {steps + 1} snapshots':38s} {max(sec):10.1e} {np.median(sec):8.1e} "
                  f"{max(koop):11.1e} {np.median(koop):8.1e} {trusted:4d}/{a.seeds}")
    print("errors relative to ||theta* - theta(T-1)||; trusted: Koopman limits that passed their trust check")


if __name__ == "__main__":
    main()
