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
