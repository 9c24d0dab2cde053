"""Parameters changed between optimizer steps, outside the optimizer (koopman_tut.recording.after_step).

The recorder sees the parameters right after each step; a clamp after every step made every snapshot a state
training never went on from, silently. A warning now says so, once, at the first step, at the user's step()
call; training that changes nothing between steps, or changes them inside step() (a pre-hook), or only by
rounding, is not warned about.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune

import koopman_tut as kt


def _train(steps: int, clamp: bool | str = False, extra_pre_hook: bool = False, scheduler: bool = False, **recorder):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    X, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    rec = kt.TrajectoryRecorder(model, opt, **recorder)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1000) if scheduler else None  # wraps opt.step: another frame
    calls = []
    if extra_pre_hook:  # registered after the recorder's: torch iterates the hooks while ours runs
        opt.register_step_pre_hook(lambda *a: calls.append(1))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        if sched is not None:
            sched.step()
        with torch.no_grad():
            for p in model.parameters() if clamp else ():
                if clamp == "data":  # the other idiom: the tensor's data replaced, not changed in place
                    p.data = p.data.clamp(-0.1, 0.1)
                else:
                    p.clamp_(-0.1, 0.1)
    return rec, model, opt, calls


@pytest.mark.parametrize("recorder, clamp, scheduler", [
    ({"stop": 150}, True, False), ({"stop": 150, "dtype": torch.bfloat16}, "data", False),
    ({"stop": 150, "every": 3, "start": 10}, True, True), ({"max_snapshots": 200}, "data", True)])
def test_a_clamp_after_every_step_warns_once_at_the_first_step(recorder, clamp, scheduler):
    with pytest.warns(kt.ChangedAfterStepWarning, match="changed after optimizer step") as said:
        rec, model, opt, calls = _train(150, clamp=clamp, extra_pre_hook=True, scheduler=scheduler, **recorder)
    said = [w for w in said if w.category is kt.ChangedAfterStepWarning]
    assert len(said) == 1 and said[0].filename == __file__  # at the user's opt.step(), through a scheduler too
    first = recorder.get("start") or 1  # the first snapshot after a step (at construction: step 0, before any)
    assert f"step {first}," in str(said[0].message)
    assert len(calls) == 150  # the other pre-hook ran at every step (ours is never removed while torch iterates)


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_changes_inside_the_step_rounding_and_after_the_window_are_not_warned_about(dtype):
    """The rounding allowed is the training dtype's (a float64 storage of float32 training sees float32 rounding)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    X, y = torch.randn(64, 8), torch.randint(0, 3, (64,))

    def decay(*_):  # a pre-hook registered before the recorder's: part of the step, and the recorder's runs first
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.999)
    opt.register_step_pre_hook(decay)
    rec = kt.TrajectoryRecorder(model, opt, stop=128, dtype=dtype)  # snapshot 128, the last, is one the check compares
    with warnings.catch_warnings():
        warnings.simplefilter("error", kt.ChangedAfterStepWarning)
        for i in range(140):
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            with torch.no_grad():  # SAM's perturb and restore: the parameters come back up to rounding
                e = [0.05 * torch.randn_like(p) for p in model.parameters()]
                for p, d in zip(model.parameters(), e):
                    p.add_(d)
                for p, d in zip(model.parameters(), e):
                    p.sub_(d)
            opt.step()
            if i == 127:  # the window is over (step 128 recorded): a change now affects no snapshot
                model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})
    assert len(rec.steps) == 129


def test_a_pruning_mask_set_inside_the_window_warns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    X, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    rec = kt.TrajectoryRecorder(model, opt, stop=60)
    with pytest.warns(kt.ChangedAfterStepWarning, match=r"pruning mask of \['0.weight'\] was set .* step 32") as said:
        for i in range(60):
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            opt.step()
            if i == 30:  # after step 31, not a check's step: the mask's registration is seen at the next walk
                prune.l1_unstructured(model[0], "weight", amount=0.5)
    assert said[0].filename == __file__ and len(rec.steps) == 61


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_small_change_is_seen_through_a_coarse_storage(dtype):
    """Weight decay by hand, 0.5% of the parameters a step: far above float32 training's rounding, though below
    the storage's own (a tolerance of the storage's rounding, 12.5% in norm for bfloat16, missed it)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    X, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    kt.TrajectoryRecorder(model, opt, stop=10, dtype=dtype)
    with pytest.warns(kt.ChangedAfterStepWarning, match="after optimizer step 1,"):
        for _ in range(10):
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            opt.step()
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(0.995)


def test_once_per_recorder_no_word_on_a_full_storage_or_a_mask_removed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    X, y = torch.randn(64, 8), torch.randint(0, 3, (64,))

    def steps(n, between=lambda i: None):
        for i in range(n):
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            opt.step()
            between(i)
    full = kt.TrajectoryRecorder(model, opt, max_snapshots=2)  # full after step 1: nothing later is recorded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps(1)
        model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})
        steps(2)
    assert [w.category for w in caught] == [kt.RecorderFullWarning]
    full.remove()
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # pruned before recording
    rec = kt.TrajectoryRecorder(model, opt, stop=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error", kt.ChangedAfterStepWarning)
        steps(3)
        prune.remove(model[0], "weight")  # the mask goes, the masked values stay: no jump
        steps(10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # each message names its step: Python's default filter would repeat it
        steps(60, lambda i: i % 10 == 0 and prune.l1_unstructured(model[2], "weight", amount=0.2))
    assert [w.category for w in caught] == [kt.ChangedAfterStepWarning] and len(rec.steps) == 74
