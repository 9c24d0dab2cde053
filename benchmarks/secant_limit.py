"""The default limit beside the secant limit, on windows whose limit is known.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/secant_limit.py [--seeds 10]

SGD on the rank-8 quadratic (lr 0.01, Hessian eigenvalues 0.1 .. 10; plain, heavy ball 0.9, Nesterov
0.9), recorded by TrajectoryRecorder in float64. The Koopman limit (kt.koopman(traj).limit()) needs
every mode of the window: 8 for plain SGD, 16 under momentum, where a short window resolves 15. The
secant limit (kt.estimate_limit(traj, "secant"), koopman_tut/numerics/secant.py) undoes each
recorded step into the gradient that made it and takes Newton's step with the Hessian on the span
of the steps: 8 directions with or without momentum. It is exact on a quadratic by construction
(up to the rounding it truncates); on minibatch windows it reads minibatch gradients (notebook 05
measures what that does). Under momentum it is the limit's trust check 6 (koopman_tut/numerics/trust.py).
Prints, per family, the largest and median error of each, relative to ||theta* - theta(T-1)||.
"""
import argparse
import warnings

import numpy as np

import koopman_tut as kt
from koopman_tut import systems

H8 = np.linspace(0.1, 10, 8)


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
                sec.append(float((kt.estimate_limit(run.traj, "secant") - run.x_star).norm() / gap))
                koop.append(float((lim.theta - run.x_star).norm() / gap))
                trusted += lim.trusted
            print(f"{name + f', warm-up {warmup}, {steps + 1} snapshots':38s} {max(sec):10.1e} {np.median(sec):8.1e} "
                  f"{max(koop):11.1e} {np.median(koop):8.1e} {trusted:4d}/{a.seeds}")
    print("errors relative to ||theta* - theta(T-1)||; trusted: Koopman limits that passed their trust check")


if __name__ == "__main__":
    main()
