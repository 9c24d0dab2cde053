"""Inputs of the estimates of where training is heading that an audit found silent or misnamed:
holdout_rank with NaN in its held-out part, warn= that is not a bool, a forecast that overflows, too
many delays, lr=True, and the CLI's --only ''.

Each failed before its fix: holdout_rank chose ranks[0] (every error NaN); warn='no' warned; the
overflowing forecast came back as NaN with an untrusted-warning giving other reasons; the delays
error named W; lr=True warned that 1 differs from the recorded lr before refusing it; --only ''
selected every notebook.
"""
import warnings

import numpy as np
import pytest
import torch

import koopman_tut as kt
from koopman_tut.numerics.limits import holdout_rank
from koopman_tut.tooling import cli
from koopman_tut.training.systems import quadratic_sgd


@pytest.fixture(scope="module")
def run():
    return quadratic_sgd(np.linspace(0.1, 1, 4), 0.1, warmup=10, n_steps=29, dim=40)


def test_holdout_rank_refuses_nan_or_inf_anywhere_by_name(run):
    W = run.traj.snapshots.clone()
    W[0, -1] = float("inf")  # in the held-out part
    with pytest.raises(ValueError, match=r"traj_or_W contains NaN or Inf .*shape \(40, 30\)"):
        holdout_rank(W, ranks=(4, 8, 16, -1))


def test_holdout_rank_names_what_was_wrong(run):
    W = run.traj.snapshots
    with pytest.raises(ValueError, match="traj_or_W has 30 snapshots: holding any out needs at least delays \\+ 4 = 34"):
        holdout_rank(W, delays=30)  # said "holdout must be an integer in [1, -3]", which was not passed
    with pytest.raises(ValueError, match="delays must be 'auto' or an integer"):
        holdout_rank(W, delays="x")
    for ranks in (4, "12", [], [0], [1.5]):
        with pytest.raises(ValueError, match="ranks must be a non-empty sequence"):
            holdout_rank(W, ranks=ranks)
    assert holdout_rank(W, holdout=np.int64(2), ranks=[np.int64(1), np.int64(2)]) in (1, 2)  # numpy ints are ints
    assert holdout_rank(W, ranks=range(1, 5)) == holdout_rank(W, ranks=np.arange(1, 5)) == holdout_rank(W, ranks=[1, 2, 3, 4])


def test_warn_must_be_a_bool_on_the_limit_and_the_gradient(run):
    k = kt.koopman(run.traj)
    for call in (lambda: k.limit(warn="no"), lambda: k.gradient(warn="no")):
        with pytest.raises(TypeError, match="warn must be True or False, got 'no'"):
            call()


def test_a_forecast_that_overflows_says_so():
    n, lr = 10, 0.5
    h = torch.linspace(0.5, 5, n, dtype=torch.float64)
    x, cols = torch.zeros(n, dtype=torch.float64), []
    for _ in range(30):  # gradient descent that diverges: per-step eigenvalues down to 1 - 0.5 * 5 = -1.5
        cols.append(x.clone())
        x = x - lr * h * (x - 1)
    W = torch.stack(cols, 1)
    traj = kt.Trajectory(W, torch.arange(30), ["x"], [(n,)], {"lrs": [lr] * 30, "optimizer": "SGD", "every": 1})
    k = kt.koopman(traj)
    assert bool(torch.isfinite(k.forecast(100)).all())
    with pytest.raises(ValueError, match="the 2000-snapshot forecast overflows torch.float64: .* up to 1.5"):
        k.forecast(2000)


def test_too_many_delays_name_the_window_not_w(run):
    with pytest.raises(ValueError, match="the window must have .* at least delays \\+ 3 = 31 snapshots") as e:
        kt.estimate_limit(run.traj.snapshots, delays=28)
    assert "W must" not in str(e.value)


def test_lr_true_is_refused_without_a_warning_about_its_value(run):
    k = kt.koopman(run.traj)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="lr must be a positive learning rate"):
            k.gradient(lr=True)
    assert not [w for w in caught if "differs" in str(w.message)], [str(w.message) for w in caught]


def test_only_an_empty_name_matches_no_notebook():
    with pytest.raises(cli.NoSuchNotebook, match="no notebook matches \\[''\\]"):
        cli.notebooks([""])
    assert [p.stem[:2] for p in cli.notebooks(["03"])] == ["03"]


def test_an_lr_as_a_one_element_numpy_array_is_read_as_its_value(run):
    k = kt.koopman(run.traj)
    assert torch.equal(k.gradient(lr=np.array([0.1])), k.gradient(lr=0.1))  # numpy's own TypeError before
    with pytest.raises(TypeError, match="lr must be a positive learning rate"):
        k.gradient(lr=np.array([0.1, 0.2]))
