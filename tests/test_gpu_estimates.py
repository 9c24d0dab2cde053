"""Where training is heading, on a CUDA device: every estimate of kt.estimate_limit, the Koopman limit,
forecast and gradient of a window held on the GPU are as close to the known answer as on the CPU.

Skipped (never faked) where CUDA is absent (tests/conftest.py). The tolerances are the known-answer
guarantees the CPU tests hold (tests/test_limits.py): a float64 heavy-ball window of 81 snapshots on a
rank-6 quadratic pins its limit to 1e-6 of the distance left, and its gradient to 1e-6 of itself.
"""
import warnings

import numpy as np
import pytest
import torch

import koopman_tut as kt
from koopman_tut import systems

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def run():
    return systems.quadratic_sgd(np.geomspace(0.1, 4, 6), 0.05, momentum=0.9, warmup=30, n_steps=80, dim=2000, seed=0)


def _on(traj, device):
    return kt.Trajectory(traj.snapshots.to(device), traj.steps, traj.names, traj.shapes, traj.meta)


def test_the_koopman_limit_forecast_and_gradient_on_cuda_are_the_known_answers(run):
    gpu = kt.koopman(_on(run.traj, "cuda"))
    W = run.traj.snapshots
    left = float((W[:, -1] - run.x_star).norm())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a resolved window: no warning on either device
        limit = gpu.limit()
        g = gpu.gradient(t=-1)
    assert limit.theta.is_cuda and g.is_cuda and limit.trusted and gpu.gradient_check.trusted
    assert float((limit.theta.cpu() - run.x_star).norm()) <= 1e-6 * left
    true = run.gradient(W[:, -1])
    assert float((g.cpu() - true).norm()) <= 1e-6 * float(true.norm())
    cpu = kt.koopman(run.traj)
    for h in (1, 10, 100):
        assert float((gpu.forecast(h).cpu() - cpu.forecast(h)).norm()) <= 1e-9 * left


@pytest.mark.parametrize("method", ["koopman", "closest", "rre", "mpe", "anderson", "last", "line", "secant"])
def test_every_estimate_on_cuda_matches_the_cpu(run, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the simple baselines make no claim to be exact
        cpu = kt.estimate_limit(run.traj, method)
        gpu = kt.estimate_limit(_on(run.traj, "cuda"), method)
    assert gpu.is_cuda
    # as close to x* as on the CPU (the ill-conditioned baselines may round differently there, not worse)
    scale = float((run.traj.snapshots[:, -1] - run.x_star).norm())
    err_cpu, err_gpu = (float((x.cpu() - run.x_star).norm()) for x in (cpu, gpu))
    assert err_gpu <= 2 * err_cpu + 1e-9 * scale, (method, err_gpu / scale, err_cpu / scale)
