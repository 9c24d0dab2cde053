"""How often a parameter group's Koopman gradient is trusted when far off, or warned when close, with two groups
whose settings differ: the digits MLP (hidden 16), cross-entropy on the whole training set, layer 1 in one group
and layer 2 in the other, four pairs of SGD settings, windows of 41 snapshots from step 300 and 1000, model
seeds 0 and 1, in float64 and float32.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kgp_groups.py [--dtypes float64 float32] [--starts 300 1000]
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python benchmarks/kgp_groups.py

Per pair of settings and group: gradients (t = 0, 20 and -1 per window, each group's on its own rows), "far"
(more than 10% off the true gradient at the recorded snapshot, computed in float64) and how many of those the
group's check trusted, "near" (within 1%) and how many it warned on. Asserts nothing: the counts go in notes
(docs/trust.md cites them).
"""
import argparse

import numpy as np
import torch

from digits_mlp import koopman_gradients, window

PAIRS = {"plain / heavy ball 0.9": ({"lr": 0.05}, {"lr": 0.05, "momentum": 0.9}),
         "plain / Nesterov 0.9": ({"lr": 0.05}, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
         "0.5, lr 0.1 / 0.95, lr 0.02": ({"lr": 0.1, "momentum": 0.5}, {"lr": 0.02, "momentum": 0.95}),
         "Nesterov 0.9 / heavy ball 0.5": ({"lr": 0.05, "momentum": 0.9, "nesterov": True},
                                           {"lr": 0.05, "momentum": 0.5})}
p = argparse.ArgumentParser()
p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=("float64", "float32"))
p.add_argument("--starts", nargs="+", type=int, default=[300, 1000])
p.add_argument("--seeds", type=int, default=2)
args = p.parse_args()


def two_groups(settings):
    """SGD with layer 1 (its weight and bias) in one parameter group and layer 2 in the other."""
    return lambda model: torch.optim.SGD([dict(params=list(model.parameters())[:2], **settings[0]),
                                          dict(params=list(model.parameters())[2:], **settings[1])])


print(f"{'settings (layer 1 / layer 2)':32s} {'group':>5s} {'gradients':>9s} {'far':>4s} {'silent':>6s} "
      f"{'near':>5s} {'warned':>6s}")
totals = np.zeros(5, dtype=int)
for name, settings in PAIRS.items():
    rows = np.zeros((2, 5), dtype=int)
    for dtype in (getattr(torch, d) for d in args.dtypes):
        for start in args.starts:
            for seed in range(args.seeds):
                traj, truth = window(two_groups(settings), start, dtype, seed=seed)
                split = int(traj.offsets[2])  # layer 1's weight and bias, then layer 2's
                for k, g, true in koopman_gradients(traj, truth):
                    for i, (r, check) in enumerate(zip((slice(0, split), slice(split, None)), k.gradient_checks)):
                        err = float((g[r].double() - true[r]).norm() / true[r].norm())
                        far, near = err > 0.1, err < 0.01
                        rows[i] += [1, far, far and check.trusted, near, near and not check.trusted]
    for i in range(2):
        print(f"{name:32s} {i + 1:5d} {rows[i, 0]:9d} {rows[i, 1]:4d} {rows[i, 2]:6d} {rows[i, 3]:5d} {rows[i, 4]:6d}",
              flush=True)
    totals += rows.sum(0)
print(f"{'all':32s} {'':5s} {totals[0]:9d} {totals[1]:4d} {totals[2]:6d} {totals[3]:5d} {totals[4]:6d}")
