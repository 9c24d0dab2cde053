"""How often the trust check of the default limit is wrong, on windows whose limit is known.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trust_families.py [--seeds 20]
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python benchmarks/trust_families.py

For each family (SGD on a rank-8 quadratic, plain / heavy ball / Nesterov, short and long windows
after a short and a long warm-up, momentum also trained and recorded in float32; the same
optimizers on full-batch softmax regression of digits, a loss that is not quadratic, with its
minimiser found by Newton's method; affine windows of k modes with and without noise, and a slow
cluster seen through small noise) and each seed, the limit kt.koopman(traj).limit() is compared
with the known fixed point, relative to the distance left, ||theta* - theta(T-1)||. Printed per
family: windows, "far" (more than 10% off) and how many of those were trusted (a false silence),
"near" (within 1%) and how many were not (a false alarm). Then, apart, windows the checks are known
not to see (trust.py's "Known limits"): the slow cluster at other sizes and noise levels, and
softmax regression early in training.
Asserts nothing: the counts go in notes (koopman_tut/numerics/trust.py cites them).
"""
import argparse
import warnings

import numpy as np
import torch

import koopman_tut as kt
from koopman_tut import systems

H8 = np.linspace(0.1, 10, 8)  # lr 0.01: per-step gradient-descent factors 0.999 .. 0.9


def quadratic(momentum, nesterov, warmup, steps, dtype=torch.float64):
    def make(seed):
        run = systems.quadratic_sgd(H8, 0.01, momentum=momentum, nesterov=nesterov, warmup=warmup,
                                    n_steps=steps, dim=200, seed=seed, dtype=dtype)
        return run.traj, run.x_star
    return make


def softmax(momentum, nesterov, warmup, steps):
    def make(seed):
        run = systems.softmax_sgd(0.5, momentum=momentum, nesterov=nesterov, warmup=warmup, n_steps=steps, seed=seed)
        return run.traj, run.x_star
    return make


def affine(k, T, noise, slow=False, n=300):
    def make(seed):
        eigs = np.linspace(0.9, 0.9999, k) if slow else np.random.default_rng(seed).uniform(0.3, 0.97, k)
        W, x_star = systems.affine_window(n, T, eigs, noise=noise, seed=seed)
        return kt.Trajectory(W, torch.arange(T), ["x"], [(n,)]), x_star
    return make


def families():
    for momentum, nesterov, name in ((0.0, False, "plain SGD"), (0.9, False, "heavy ball"), (0.9, True, "Nesterov")):
        for warmup in (20, 100):
            for steps in (9, 19, 30, 39, 79):  # 31 snapshots: the 30-step window of issue 16
                yield f"{name}, warm-up {warmup}, {steps + 1} snapshots", quadratic(momentum, nesterov, warmup, steps)
    for momentum, nesterov, name in ((0.9, False, "heavy ball"), (0.9, True, "Nesterov")):
        for warmup in (100, 400):  # trained and recorded in float32: steps a few roundings of the parameters late
            for steps in (30, 79):
                yield (f"{name}, float32, warm-up {warmup}, {steps + 1} snapshots",
                       quadratic(0.9, nesterov, warmup, steps, torch.float32))
    for momentum, nesterov, name in ((0.0, False, "plain SGD"), (0.9, False, "heavy ball"), (0.9, True, "Nesterov")):
        for warmup in (100, 400):  # a loss that is not quadratic: the limits of linear models are exact only late
            for steps in (30, 79):
                yield (f"softmax digits, {name}, warm-up {warmup}, {steps + 1} snapshots",
                       softmax(momentum, nesterov, warmup, steps))
    for noise in (0.0, 1e-12, 1e-9, 1e-7):  # issue 16's slow cluster, rates 0.9 .. 0.9999, through small noise
        yield f"slow affine, 8 modes to 0.9999, 30 snapshots, noise {noise:g}", affine(8, 30, noise, slow=True)
    for k in (4, 8, 16):
        for T in (12, 24, 48):
            for noise in (0.0, 1e-6):
                yield f"affine, {k} modes, {T} snapshots, noise {noise:g}", affine(k, T, noise)


def known_limits():
    """Windows the checks are known not to see (koopman_tut/numerics/trust.py, "Known limits"), counted apart."""
    for n, T, noise in ((1000, 30, 1e-7), (1000, 100, 1e-7), (1000, 30, 1e-4)):  # the slow cluster, other sizes
        yield f"slow affine, n {n}, {T} snapshots, noise {noise:g}", affine(8, T, noise, slow=True, n=n)
    yield "softmax digits, plain SGD, warm-up 20, 81 snapshots", softmax(0.0, False, 20, 80)  # early: far from quadratic


def count(make, seeds: int) -> dict:
    c = dict(windows=0, far=0, far_trusted=0, near=0, near_untrusted=0)
    for seed in range(seeds):
        traj, x_star = make(seed)
        lim = kt.koopman(traj).limit(warn=False)
        last = traj.snapshots[:, -1].double()
        err = float((lim.theta.double() - x_star).norm() / (last - x_star).norm())
        c["windows"] += 1
        if err > 0.1:
            c["far"], c["far_trusted"] = c["far"] + 1, c["far_trusted"] + lim.trusted
        if err < 0.01:
            c["near"], c["near_untrusted"] = c["near"] + 1, c["near_untrusted"] + (not lim.trusted)
    return c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20, help="seeds 0 .. seeds-1 per family")
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"{'family':56s} {'windows':>7s} {'far':>4s} {'silent':>6s} {'near':>5s} {'warned':>6s}")
    for title, fams in (("all", families()), ("known limits, all", known_limits())):
        total = dict(windows=0, far=0, far_trusted=0, near=0, near_untrusted=0)
        for name, make in fams:
            c = count(make, a.seeds)
            total = {k: total[k] + c[k] for k in total}
            print(f"{name:56s} {c['windows']:7d} {c['far']:4d} {c['far_trusted']:6d} {c['near']:5d} "
                  f"{c['near_untrusted']:6d}")
        print(f"{title:56s} {total['windows']:7d} {total['far']:4d} {total['far_trusted']:6d} {total['near']:5d} "
              f"{total['near_untrusted']:6d}")
    print("far: more than 10% off, silent: of those trusted; near: within 1%, warned: of those not trusted")


if __name__ == "__main__":
    main()
