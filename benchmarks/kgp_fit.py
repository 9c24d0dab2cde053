"""How often the Koopman gradient's trust check stays silent on a gradient far from the true one, and
warns on one close to it: SGD on a rank-8 quadratic (Hessian eigenvalues 0.1 .. 10, lr 0.01, dim 300)
with Gaussian noise added to every gradient (a minibatch stand-in), 41 snapshots after 50 warm-up steps.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kgp_fit.py [--seeds 5]
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python benchmarks/kgp_fit.py

Per optimizer and noise level: gradients (t = 5, 20, -5, -1 per seed), "far" (more than 10% off the
true gradient H (theta(t) - x*)) and how many of those were trusted, "near" (within 1%) and how many
were not. Asserts nothing: the counts go in notes (koopman_tut/numerics/trust.py, check 8, cites them).
"""
import argparse
import warnings

import numpy as np

import koopman_tut as kt
from koopman_tut import systems

p = argparse.ArgumentParser()
p.add_argument("--seeds", type=int, default=5)
args = p.parse_args()
print(f"{'optimizer':12s} {'noise':>6s} {'gradients':>9s} {'far':>4s} {'silent':>6s} {'near':>5s} {'warned':>6s}")
totals = np.zeros(5, dtype=int)
for name, momentum, nesterov in (("plain SGD", 0.0, False), ("heavy ball", 0.9, False), ("Nesterov", 0.9, True)):
    for noise in (0.003, 0.01, 0.03, 0.1):
        row = np.zeros(5, dtype=int)
        for seed in range(args.seeds):
            run = systems.quadratic_sgd(np.linspace(0.1, 10, 8), 0.01, momentum=momentum, nesterov=nesterov, warmup=50,
                                        n_steps=40, dim=300, seed=seed, grad_noise=noise)
            W, k = run.traj.snapshots, kt.koopman(run.traj)
            for t in (5, 20, -5, -1):
                true = run.hessian @ (W[:, t] - run.x_star)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    err = float((k.gradient(t=t) - true).norm() / true.norm())
                warned = any(issubclass(w.category, kt.UntrustedLimitWarning) for w in caught)
                row += [1, err > 0.1, err > 0.1 and not warned, err < 0.01, err < 0.01 and warned]
        totals += row
        print(f"{name:12s} {noise:6g} {row[0]:9d} {row[1]:4d} {row[2]:6d} {row[3]:5d} {row[4]:6d}")
print(f"{'all':12s} {'':6s} {totals[0]:9d} {totals[1]:4d} {totals[2]:6d} {totals[3]:5d} {totals[4]:6d}")
