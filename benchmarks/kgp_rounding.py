"""How often the Koopman gradient's trust check stays silent near a float64 optimum, where the steps
are only tens or hundreds of ulps of the parameters: full-batch SGD on a rank-6 quadratic (Hessian
eigenvalues geomspace(0.1, 4, 6), lr 0.05, dim 100), 81 snapshots after ``warmup`` steps, the
warm-ups chosen so that the window ends 1e-5 .. 1e-15 of ||x*|| from x*.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kgp_rounding.py [--seeds 8] [--only "heavy ball"]
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python benchmarks/kgp_rounding.py

Per optimizer and warm-up: the distance left (median over seeds, relative to ||x*||), gradients
(t = 40 and -1 per seed), "far" (more than 10% off the true gradient H (theta(t) - x*)) and how many of
those were trusted, "near" (within 1%) and how many were not, and those refused (steps within the
data's rounding: a ValueError). Asserts nothing: the counts go in notes
(docs/trust.md, "A Koopman gradient at a window converged to rounding", cites them).
"""
import argparse
import warnings

import numpy as np

import koopman_tut as kt
from koopman_tut import systems

p = argparse.ArgumentParser()
p.add_argument("--seeds", type=int, default=8)
p.add_argument("--only", choices=("plain SGD", "heavy ball", "Nesterov"), help="one optimizer's rows")
args = p.parse_args()
HESS = np.geomspace(0.1, 4, 6)
# warm-ups that leave the window 1e-5 .. 1e-15 of ||x*|| from x* (the slowest rate: 0.949 per step
# under momentum 0.9, 0.995 for plain SGD)
RUNS = (("plain SGD", 0.0, False, (2000, 3000, 4000, 5000, 5500)),
        ("heavy ball", 0.9, False, (200, 300, 400, 450, 500, 550)),
        ("Nesterov", 0.9, True, (200, 300, 400, 450, 500, 550)))
print(f"{'optimizer':12s} {'warmup':>6s} {'distance':>8s} {'gradients':>9s} {'far':>4s} {'silent':>6s} "
      f"{'near':>5s} {'warned':>6s} {'refused':>7s}")
totals = np.zeros(5, dtype=int)
for name, momentum, nesterov, warmups in (r for r in RUNS if args.only in (None, r[0])):
    for warmup in warmups:
        row, dist, refused = np.zeros(5, dtype=int), [], 0
        for seed in range(args.seeds):
            run = systems.quadratic_sgd(HESS, 0.05, momentum=momentum, nesterov=nesterov, warmup=warmup,
                                        n_steps=80, dim=100, seed=seed)
            W = run.traj.snapshots
            dist.append(float((W[:, -1].double() - run.x_star).norm() / run.x_star.norm()))
            k = kt.koopman(run.traj)
            for t in (40, -1):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        g = k.gradient(t=t)
                    except ValueError:  # steps within the data's rounding: refused, not estimated
                        refused += 1
                        continue
                true = run.gradient(W[:, t])
                err = float((g.double() - true).norm() / true.norm())
                trusted = k.gradient_check.trusted
                row += (1, err > 0.1, err > 0.1 and trusted, err < 0.01, err < 0.01 and not trusted)
        totals += row
        print(f"{name:12s} {warmup:6d} {np.median(dist):8.1e} {row[0]:9d} {row[1]:4d} {row[2]:6d} {row[3]:5d} "
              f"{row[4]:6d} {refused:7d}")
print(f"{'all':12s} {'':6s} {'':8s} {totals[0]:9d} {totals[1]:4d} {totals[2]:6d} {totals[3]:5d} {totals[4]:6d}")
