"""The recorder refuses, when it is built, what it could not record."""
import pytest
import torch
import torch.nn as nn

import koopman_tut as kt


def test_lazy_parameters_and_the_meta_device_are_refused_when_the_recorder_is_built():
    # a LazyLinear before its first forward has no shape (torch's error came from load_state_dict);
    # device='meta' was accepted and refused only at trajectory(), after all the training
    lazy = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(lazy.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not initialised yet.*forward pass"):
        kt.TrajectoryRecorder(lazy, opt, stop=3)
    lazy(torch.randn(2, 3))  # the control: after one forward pass it records
    kt.TrajectoryRecorder(lazy, torch.optim.SGD(lazy.parameters(), lr=0.1), stop=3).remove()
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="device='meta' holds no values"):
        kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), stop=3, device="meta")


def test_a_compiled_model_is_recorded_under_the_plain_models_names():
    # torch.compile wraps the model (its parameters shared, named '_orig_mod.0.weight'): the recording's names
    # then matched no score or mask of the plain model; DDP and DataParallel were unwrapped already
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    compiled = torch.compile(model)  # nothing is compiled before its first call
    assert next(iter(dict(compiled.named_parameters()))).startswith("_orig_mod.")
    rec = kt.TrajectoryRecorder(compiled, torch.optim.SGD(compiled.parameters(), lr=0.1), stop=0)
    plain = kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), stop=0)
    assert rec.trajectory().names == plain.trajectory().names == ["0.weight", "0.bias", "2.weight", "2.bias"]


@pytest.mark.parametrize("kw, group, setting", [
    (dict(momentum=1.0), 0, "momentum"), (dict(momentum=1.5), 0, "momentum"),
    (dict(momentum=0.9, dampening=1.0), 0, "dampening"), (dict(dampening=1.5), 0, "dampening"),
    (dict(weight_decay=float("inf")), 0, "weight_decay"),
    (dict(second=dict(momentum=1.0)), 1, "momentum"), (dict(second=dict(lr=float("nan"))), 1, "lr"),
])
def test_optimizer_settings_a_trajectory_cannot_hold_are_refused_when_the_recorder_is_built(kw, group, setting,
                                                                                           tmp_path):
    # SGD(momentum=1.0) was recorded, and then neither rec.trajectory() nor Trajectory.load(path) could read the
    # recording back: "traj.meta['momentum'] must be a finite number >= 0 and < 1"
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    second = kw.pop("second", None)
    groups = [{"params": model[0].parameters()}] + ([{"params": model[2].parameters(), **second}] if second else [])
    opt = torch.optim.SGD(groups if second else model.parameters(), lr=0.1, **kw)
    for path in (None, tmp_path / "t.kt"):
        with pytest.raises(ValueError, match=rf"optimizer.param_groups\[{group}\]\['{setting}'\] must be a finite "
                                             rf"number.*when the TrajectoryRecorder is built.*could not be loaded"):
            kt.TrajectoryRecorder(model, opt, stop=3, path=path)
    assert not (tmp_path / "t.kt").exists()
    opt.param_groups[group][setting] = 0.5  # the control: recorded, and read back
    rec = kt.TrajectoryRecorder(model, opt, stop=3, path=tmp_path / "t.kt")
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    assert rec.trajectory().steps.tolist() == kt.Trajectory.load(tmp_path / "t.kt").steps.tolist() == [0, 1, 2, 3]
