"""Which optimizer's steps the Koopman gradient undoes: torch.optim.SGD's rule, read from the optimizer, not its name.

A subclass of torch.optim.SGD that keeps its step is SGD (its momentum must be undone: before, the name
"MySGD" made the gradient 1 / (1 - beta) = 10x too large, trusted); a class merely named SGD is not; under
another rule (Adam) the estimate is the step direction, never trusted.
"""
from __future__ import annotations

import functools
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

import koopman_tut as kt
from koopman_tut.recording.groups import optimizer_name


class KeepsStep(torch.optim.SGD):  # e.g. a subclass that adds logging: the update rule is SGD's
    pass


class OwnStep(torch.optim.SGD):  # replaces step: whatever it does, it is not known to be SGD's
    def step(self, closure=None):
        return super().step(closure)


class TorchWrapped(torch.optim.SGD):  # SGD's step in torch's own profiling wrapper, as torch puts it on a class
    step = torch.optim.Optimizer.profile_hook_step(torch.optim.SGD.step)  # whatever instances came before


class Scaled(torch.optim.SGD):  # an override that looks like SGD's step to inspect.unwrap
    @functools.wraps(torch.optim.SGD.step)
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                p.grad.mul_(10)
        return super().step(closure)


class SGD(torch.optim.Optimizer):  # a class of the same name, not torch's
    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                p.add_(p.grad, alpha=-g["lr"])


def _recorded(cls, **kwargs):
    """A digits MLP trained full-batch by ``cls`` for 200 steps, then 40 recorded: (trajectory, true gradient)."""
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = cls(model.parameters(), lr=0.01, **kwargs)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
    for _ in range(200):
        step()
    rec = kt.TrajectoryRecorder(model, opt, stop=40)
    for _ in range(40):
        step()
    traj = rec.trajectory()
    model.zero_grad()
    F.cross_entropy(model(X), y).backward()
    params = dict(model.named_parameters())
    return traj, torch.cat([params[n].grad.reshape(-1) for n in traj.names])


def test_names_follow_the_update_rule():
    p = [nn.Parameter(torch.zeros(2))]
    assert optimizer_name(KeepsStep(p, lr=0.1)) == "SGD"  # built before torch.optim.SGD's own: a wrapped step
    assert optimizer_name(torch.optim.SGD(p, lr=0.1)) == "SGD"
    assert optimizer_name(OwnStep(p, lr=0.1)) == f"{__name__}.OwnStep"
    assert optimizer_name(TorchWrapped(p, lr=0.1)) == "SGD"
    assert optimizer_name(Scaled(p, lr=0.1)) == f"{__name__}.Scaled"  # before: "SGD", its 10x gradient trusted
    assert optimizer_name(SGD(p, lr=0.1)) == f"{__name__}.SGD"
    assert optimizer_name(torch.optim.Adam(p)) == "Adam"


@pytest.mark.parametrize("cls", [torch.optim.SGD, KeepsStep])
def test_an_sgd_subclass_keeping_its_step_has_its_momentum_undone(cls):
    traj, truth = _recorded(cls, momentum=0.9)
    assert traj.meta["optimizer"] == "SGD"
    k = kt.koopman(traj)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # trusted: no warning at all
        g = k.gradient()
    assert k.gradient_check.trusted
    assert float((g - truth).norm() / truth.norm()) < 0.05  # before, for the subclass: 9.8 (10x too large)
    assert kt.estimate_limit(traj, method="secant").shape == truth.shape  # the secant undoes its steps too


@pytest.mark.parametrize("cls, kwargs, name", [(torch.optim.Adam, {}, "Adam"), (OwnStep, {"momentum": 0.9}, None),
                                                (SGD, {}, None)])
def test_another_rule_gives_an_untrusted_step_direction(cls, kwargs, name):
    traj, _ = _recorded(cls, **kwargs)
    name = name or f"{__name__}.{cls.__name__}"
    assert traj.meta["optimizer"] == name
    k = kt.koopman(traj)
    with pytest.warns(kt.UntrustedLimitWarning, match=f"recorded with {name}, whose step is not torch.optim.SGD's"):
        k.gradient()
    assert not k.gradient_check.trusted and k.gradient_check.not_sgd == name  # before: trusted (Adam: 371x off)
    with pytest.raises(ValueError, match="torch.optim.SGD"):
        kt.estimate_limit(traj, method="secant")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not kt.koopman(traj).limit().not_sgd  # a limit does not undo steps: the rule does not matter there
