"""Known-answer errors of the default limit (issue 16): heavy ball, Nesterov, plain GD, the route
pair, the trust example, and beside MPE and RRE on ill-conditioned windows. Prints tables; asserts nothing.

Run against any version of the package (the data are made here, with the public API only):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/known_answers.py
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python benchmarks/known_answers.py
"""
import warnings

import numpy as np
import torch

import koopman_tut as kt


def quadratic(h, lr, momentum, nesterov, warmup, steps, dim=100, seed=0):
    """torch.optim.SGD on 0.5 (x - x*)^T H (x - x*), float64, recorded by TrajectoryRecorder."""
    g = torch.Generator().manual_seed(seed)
    B = torch.linalg.qr(torch.randn(dim, len(h), generator=g, dtype=torch.float64))[0]
    H = B @ torch.diag(torch.as_tensor(h, dtype=torch.float64)) @ B.T
    x_star = torch.randn(dim, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(dim, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((x_star + B @ torch.randn(len(h), generator=g, dtype=torch.float64))[None])
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)
    rec = kt.TrajectoryRecorder(model, opt, start=warmup, stop=warmup + steps, dtype=torch.float64)
    for _ in range(warmup + steps):
        opt.zero_grad()
        e = model.weight[0] - x_star
        (0.5 * e @ H @ e).backward()
        opt.step()
    return rec.trajectory(copy=True), x_star


def affine(n, T, eigs, noise=0.0, seed=0):
    """x* + sum_i c_i mu_i^t b_i + noise, (n, T) float64, and x*."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.as_tensor(eigs, dtype=torch.float64)
    B = torch.linalg.qr(torch.randn(n, mu.numel(), generator=g, dtype=torch.float64))[0]
    x_star = torch.randn(n, generator=g, dtype=torch.float64)
    c = torch.randn(mu.numel(), generator=g, dtype=torch.float64)
    W = x_star[:, None] + B @ (c[:, None] * mu[:, None] ** torch.arange(T, dtype=torch.float64)[None])
    W = W + noise * torch.randn(n, T, generator=g, dtype=torch.float64)
    return kt.Trajectory(W, torch.arange(T), ["x"], [(n,)], {}), x_star


def error(traj, x_star, **kw):
    """(relative error of the default limit, rank, untrusted-warning count)."""
    cls = getattr(kt, "UntrustedLimitWarning", ())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k = kt.koopman(traj, **kw)
        lim = k.fixed_point()
    W = traj.snapshots
    rel = float((lim.double() - x_star).norm() / (W[:, -1].double() - x_star).norm())
    return rel, k.affine.eigs.numel(), sum(issubclass(w.category, cls) for w in caught)


def conditioned():
    """koopman, mpe and rre on gradient descent, Hessian eigenvalues linspace(0.1, 10, k) (rates 0.9 .. 0.999),
    lr 0.01, 100 dimensions, float64: the largest error over seeds 0-4 and warm-ups 0 and 100 (with how many
    windows a method refused), and the range of the Koopman limit's own conditioning (trust check 4)."""
    from koopman_tut import systems
    print(f"{'GD, k rates 0.9-0.999, T snapshots: largest of 10':52s} {'koopman':>9s} {'mpe':>9s} {'rre':>9s}  "
          "conditioning")
    for k, T in ((8, 40), (8, 81), (20, 40), (20, 81)):
        errors, refused, cond = {m: [0.0] for m in ("koopman", "mpe", "rre")}, {"koopman": 0, "mpe": 0, "rre": 0}, []
        for seed in range(5):
            for warmup in (0, 100):
                run = systems.quadratic_sgd(np.linspace(0.1, 10, k), 0.01, warmup=warmup, n_steps=T - 1, dim=100,
                                            seed=seed)
                left = (run.traj.snapshots[:, -1] - run.x_star).norm()
                for m in errors:
                    try:
                        est = kt.estimate_limit(run.traj, method=m, warn=False)
                        errors[m].append(float((est - run.x_star).norm() / left))
                    except ValueError:  # MPE's polynomial cannot be normalised on some windows
                        refused[m] += 1
                cond.append(kt.koopman(run.traj).limit(warn=False).conditioning)
        cells = " ".join(f"{max(errors[m]):9.2g}" + (f" ({refused[m]} refused)" if refused[m] else "") for m in errors)
        print(f"{f'k = {k}, T = {T}':52s} {cells}  {min(cond):.1g} .. {max(cond):.1g}")


def routes_ill_conditioned():
    """method="gram" and "svd" on heavy ball (lr 0.01, momentum 0.9, so one delay), the rank-8 quadratic, 100 warm-up
    steps, 21 snapshots, 500 dimensions, seeds 0-9: how far apart the two routes' limits lie, beside the limit's error
    and its conditioning (trust check 4: how far perturbations the size of the data's rounding move it; * untrusted),
    each relative to the distance left, ||theta_T - x*||."""
    print(f"{'heavy ball, 21 snapshots, n = 500: gram vs svd':52s} {'gap':>9s} {'error':>9s}  conditioning gram/svd")
    for seed in range(10):
        traj, x_star = quadratic(np.linspace(0.1, 10, 8), 0.01, 0.9, False, 100, 20, dim=500, seed=seed)
        left = (traj.snapshots[:, -1] - x_star).norm()
        lim = {m: kt.koopman(traj, method=m).limit(warn=False) for m in ("gram", "svd")}
        gap = float((lim["gram"].theta - lim["svd"].theta).norm() / left)
        err = float((lim["svd"].theta - x_star).norm() / left)
        cond = "/".join(f"{lim[m].conditioning:.2g}" + ("" if lim[m].trusted else "*") for m in lim)
        case = f"seed {seed}, rank {lim['svd'].eigs.numel()}"
        print(f"{case:52s} {gap:9.2g} {err:9.2g}  {cond}")


def main():
    h = np.linspace(0.1, 10, 8)
    print(f"koopman_tut from {kt.__file__}")
    print(f"{'case':52s} {'error':>9s} {'rank':>4s} {'untrusted':>9s}")
    for name, mom, nest in [("heavy ball", 0.9, False), ("Nesterov", 0.9, True)]:
        for steps in (30, 80):
            traj, x_star = quadratic(h, 0.01, mom, nest, 100, steps)
            print(f"{name + f', rank-8 quadratic, {steps}-step window':52s} %9.2g %4d %9d" % error(traj, x_star))
    traj, x_star = quadratic(np.linspace(0.2, 10, 8), 0.01, 0.0, False, 100, 80)
    print(f"{'plain GD, rank-8 quadratic, 80-step window':52s} %9.2g %4d %9d" % error(traj, x_star))
    for n in (3000, 100_000, 110_000):
        traj, x_star = affine(n, 40, np.linspace(0.5, 0.95, 8))
        for method in ("gram", "svd", "auto"):
            print(f"{f'GD rank 8, 40 snapshots, n={n}, method={method}':52s} %9.2g %4d %9d"
                  % error(traj, x_star, method=method))
    for seed in range(3):
        traj, x_star = affine(1000, 30, np.linspace(0.9, 0.9999, 8), noise=1e-7, seed=seed)
        print(f"{f'GD modes 0.9-0.9999, 30 steps, noise 1e-7, seed {seed}':52s} %9.2g %4d %9d" % error(traj, x_star))
        traj, x_star = affine(1000, 30, np.linspace(0.5, 0.95, 8), noise=1e-7, seed=seed)
        print(f"{f'GD modes 0.5-0.95, 30 steps, noise 1e-7, seed {seed}':52s} %9.2g %4d %9d" % error(traj, x_star))
    if hasattr(kt, "estimate_limit"):
        conditioned()
        routes_ill_conditioned()


if __name__ == "__main__":
    main()
