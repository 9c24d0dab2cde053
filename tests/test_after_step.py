"""Parameters changed after an optimizer step, before the next (koopman_tut.recording.after_step).

The recorder sees the parameters right after each step; a clamp after every step made every snapshot a state
training never went on from, silently. A warning now says so, once, at the first step; training that changes
nothing between steps is not warned about, and the check writes nothing the storage keeps.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import koopman_tut as kt


def _train(steps: int, clamp: bool = False, extra_pre_hook: bool = False, **recorder):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    X, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    rec = kt.TrajectoryRecorder(model, opt, **recorder)
    calls = []
    if extra_pre_hook:  # registered after the recorder's: torch iterates the hooks while ours runs
        opt.register_step_pre_hook(lambda *a: calls.append(1))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        if clamp:
            with torch.no_grad():
                for p in model.parameters():
                    p.clamp_(-0.1, 0.1)
    return rec, model, opt, calls


@pytest.mark.parametrize("recorder", [{"stop": 150}, {"stop": 150, "dtype": torch.bfloat16},
                                      {"stop": 150, "every": 3, "start": 10}, {"max_snapshots": 200}])
def test_a_clamp_after_every_step_warns_once_at_the_first_step(recorder):
    with pytest.warns(kt.ChangedAfterStepWarning, match="changed after optimizer step") as said:
        rec, model, opt, calls = _train(150, clamp=True, extra_pre_hook=True, **recorder)
    said = [w for w in said if w.category is kt.ChangedAfterStepWarning]
    assert len(said) == 1 and said[0].filename == __file__  # at the user's opt.step()
    first = recorder.get("start") or 1  # the first snapshot after a step (at construction: step 0, before any)
    assert f"step {first}," in str(said[0].message)
    assert len(calls) == 150  # the other pre-hook ran at every step (ours is never removed while torch iterates)
    T = len(rec.steps)
    assert not rec.storage[T:].any()  # the scratch row restored: the storage holds snapshots only


@pytest.mark.parametrize("recorder", [{"stop": 150}, {"stop": 151, "every": 3, "start": 10},
                                      {"stop": 150, "dtype": torch.float16}])
def test_training_that_changes_nothing_between_steps_is_not_warned_about(recorder, tmp_path):
    for extra in ({}, {"path": tmp_path / "w.traj"}) if "every" not in recorder else ({},):
        with warnings.catch_warnings():
            warnings.simplefilter("error", kt.ChangedAfterStepWarning)
            rec, model, opt, _ = _train(recorder["stop"], **recorder, **extra)
        params = dict(model.named_parameters())
        last = torch.cat([params[n].detach().reshape(-1) for n in rec.names]).to(rec.storage.dtype)
        assert torch.equal(rec.trajectory().snapshots[:, -1], last)


def test_the_pre_hook_goes_with_remove():
    rec, model, opt, _ = _train(3, stop=10)
    assert len(opt._optimizer_step_pre_hooks) == 1 and len(opt._optimizer_step_post_hooks) == 1
    rec.remove()
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
