"""How often the Koopman gradient's trust check stays silent on a curved loss trained full batch, where the
model fits the window well but is not the optimizer's map: the digits MLP (hidden 16), cross-entropy on the
whole training set, SGD lr 0.05 (plain, heavy ball 0.9, Nesterov 0.9), weight decay 0 and 1e-3, windows of
41 snapshots from step 300 and 1000 (every step) and from step 300 every 2 steps, in float64 and float32.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kgp_curved.py [--dtypes float64 float32] [--starts 300 1000]
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python benchmarks/kgp_curved.py

Per optimizer and spacing: gradients (t = 0, 20 and -1 per window), "far" (more than 10% off the true
gradient at the recorded snapshot, computed in float64) and how many of those were trusted, "near" (within
1%) and how many were not. Asserts nothing: the counts go in notes (docs/trust.md, "A Koopman gradient
under Nesterov, or recorded every 2 steps", cites them).
"""
import argparse

import numpy as np
import torch

from digits_mlp import koopman_gradients, window

p = argparse.ArgumentParser()
p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=("float64", "float32"))
p.add_argument("--starts", nargs="+", type=int, default=[300, 1000])
args = p.parse_args()


def sgd(**settings):
    return lambda model: torch.optim.SGD(model.parameters(), lr=0.05, **settings)


print(f"{'optimizer':12s} {'every':>5s} {'gradients':>9s} {'far':>4s} {'silent':>6s} {'near':>5s} {'warned':>6s}")
totals = np.zeros(5, dtype=int)
for name, momentum, nesterov in (("plain SGD", 0.0, False), ("heavy ball", 0.9, False), ("Nesterov", 0.9, True)):
    for every in (1, 2):
        row = np.zeros(5, dtype=int)
        for dtype in (getattr(torch, d) for d in args.dtypes):
            for wd in (0.0, 1e-3):
                for start in (args.starts if every == 1 else args.starts[:1]):
                    traj, truth = window(sgd(momentum=momentum, nesterov=nesterov, weight_decay=wd), start, dtype, every)
                    for k, g, true in koopman_gradients(traj, truth):
                        err = float((g.double() - true).norm() / true.norm())
                        trusted = all(c.trusted for c in k.gradient_checks)
                        row += [1, err > 0.1, err > 0.1 and trusted, err < 0.01, err < 0.01 and not trusted]
        totals += row
        print(f"{name:12s} {every:5d} {row[0]:9d} {row[1]:4d} {row[2]:6d} {row[3]:5d} {row[4]:6d}", flush=True)
print(f"{'all':12s} {'':5s} {totals[0]:9d} {totals[1]:4d} {totals[2]:6d} {totals[3]:5d} {totals[4]:6d}")
