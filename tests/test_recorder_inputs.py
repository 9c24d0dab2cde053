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
