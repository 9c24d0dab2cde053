"""The known-answer systems: arguments refused by name, and which gradient each oracle gives."""
import warnings

import pytest
import torch

import koopman_tut as kt
from koopman_tut import systems


@pytest.mark.parametrize("build, err, words", [
    (lambda: systems.linear_system([0.5], -3), ValueError, "n_steps must be an integer >= 0"),
    (lambda: systems.linear_system([0.5], 4, dim=0), ValueError, "dim must be an integer >= 1"),
    (lambda: systems.quadratic_gd([1.0], 0.1, -1), ValueError, "n_steps must be an integer >= 0"),
    (lambda: systems.quadratic_gd([1.0], 0.1, 2.5), TypeError, "n_steps must be an integer"),
    (lambda: systems.trajectory_like(5, 0), ValueError, "T must be an integer >= 1"),
    (lambda: systems.trajectory_like(0, 5), ValueError, "n must be an integer >= 1"),
    (lambda: systems.affine_window(5, 30, [1.5]), ValueError, r"\|mu\| < 1"),
    (lambda: systems.affine_window(5, 30, [0.5, float("nan")]), ValueError, r"\|mu\| < 1"),
    (lambda: systems.affine_window(5, 30, [0.5j]), TypeError, "real eigenvalues"),
    (lambda: systems.affine_window(5, 0, [0.5]), ValueError, "T must be an integer >= 1"),
    (lambda: systems.quadratic_sgd([1.0], 0.1, n_steps=-1), ValueError, "n_steps must be an integer >= 0"),
    (lambda: systems.quadratic_sgd([1.0], 0.1, warmup=-1), ValueError, "warmup must be an integer >= 0"),
    (lambda: systems.softmax_sgd(n_steps=-2), ValueError, "n_steps must be an integer >= 0"),
])
def test_a_bad_size_or_eigenvalue_is_refused_by_name(build, err, words):
    # these gave an x* the window never reaches (|mu| = 1.5: off by 7.6e4), an empty window, or a bare
    # ZeroDivisionError / numpy "negative dimensions"
    with pytest.raises(err, match=words):
        build()


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_the_koopman_gradient_is_backprop_s_gradient_weight_decay_undone(momentum, nesterov):
    wd = 0.01
    r = systems.quadratic_sgd([0.5, 1, 2], lr=0.1, momentum=momentum, nesterov=nesterov, n_steps=60, dim=8,
                              weight_decay=wd)
    x = r.traj.snapshots[:, -1]
    h0 = r.hessian - wd * torch.eye(8, dtype=torch.float64)  # the loss's own Hessian: H0 x* = H0 x0*
    assert torch.allclose(r.backprop_gradient(x), r.gradient(x) - wd * x, rtol=0, atol=1e-15)
    assert torch.allclose(r.backprop_gradient(x) - r.backprop_gradient(torch.zeros(8)), h0 @ x, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = kt.koopman(r.traj).gradient()
    truth = r.backprop_gradient(x)
    assert float((g - truth).norm() / truth.norm()) < 1e-6
    assert float((g - r.gradient(x)).norm() / truth.norm()) > 0.1  # the other convention is far off here
    plain = systems.quadratic_sgd([0.5, 1, 2], lr=0.1, n_steps=5, dim=8)
    assert plain.weight_decay == 0 and torch.equal(plain.backprop_gradient(x), plain.gradient(x))
