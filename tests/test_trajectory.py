"""TrajectoryRecorder and Trajectory: hooks, windows, storage, persistence, errors."""
import copy
import math
import warnings

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune

import koopman_tut as kt
from koopman_tut.train import make_optimizer, train


@pytest.fixture()
def setup():
    tr, te = kt.data.digits(seed=0)
    loader, _ = kt.data.loaders(tr, te, batch_size=256, seed=0)
    model = kt.models.get_model("mlp", seed=0, hidden=(32, 16))
    return model, make_optimizer(model, "sgd", lr=0.1), loader


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_records_after_each_step_with_any_loop(setup):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=5)
    states = [flat(model).clone()]
    x, y = next(iter(loader))
    for _ in range(7):  # a hand-written loop, not ours
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        states.append(flat(model).clone())
    traj = rec.trajectory()
    assert traj.snapshots.shape == (flat(model).numel(), 6)
    assert traj.steps.tolist() == [0, 1, 2, 3, 4, 5]
    for k in range(6):
        assert torch.equal(traj.snapshots[:, k], states[k])
    assert traj.meta["lrs"] == [0.1] * 6 and traj.lr == 0.1 and traj.meta["optimizer"] == "SGD"


def test_window_and_stride(setup):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, every=3, start=4, stop=16)
    train(model, loader, epochs=5, optimizer=opt, progress=False)
    traj = rec.trajectory()
    assert traj.steps.tolist() == [4, 7, 10, 13, 16]
    assert traj.meta["every"] == 3
    sub = traj.window(1, None, 2)
    assert sub.steps.tolist() == [7, 13] and sub.meta["every"] == 6 and len(sub.meta["lrs"]) == 2


def test_names_shapes_unflatten_and_load_into(setup):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=3)
    train(model, loader, epochs=1, max_steps=3, optimizer=opt, progress=False)
    traj = rec.trajectory()
    assert traj.names == [n for n, _ in model.named_parameters()]
    parts = traj.unflatten(traj.snapshots[:, -1])
    for n, p in model.named_parameters():
        assert torch.equal(parts[n], p.detach())
    assert torch.equal(traj.flatten(parts), traj.snapshots[:, -1])
    fresh = kt.models.get_model("mlp", seed=9, hidden=(32, 16))
    traj.load_into(fresh, 0)
    assert torch.equal(flat(fresh), traj.snapshots[:, 0])


def test_save_load_roundtrip_is_atomic(setup, tmp_path):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=4)
    train(model, loader, epochs=2, max_steps=4, optimizer=opt, progress=False)
    traj = rec.trajectory()
    path = tmp_path / "sub" / "traj.pt"
    traj.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["traj.pt"]  # no temporary left behind
    back = kt.Trajectory.load(path)
    assert torch.equal(back.snapshots, traj.snapshots) and back.names == traj.names
    assert back.shapes == traj.shapes and back.steps.tolist() == traj.steps.tolist() and back.lr == traj.lr
    back.check_model(model)


def test_interrupted_save_keeps_the_old_file(setup, tmp_path, monkeypatch):
    model, opt, _ = setup
    traj = kt.TrajectoryRecorder(model, opt, stop=0).trajectory()
    path = tmp_path / "t.pt"
    traj.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        traj.save(path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable trajectory"):
        kt.Trajectory.load(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a koopman_tut trajectory"):
        kt.Trajectory.load(other)
    with pytest.raises(FileNotFoundError):
        kt.Trajectory.load(tmp_path / "missing.pt")


def test_trajectory_from_another_model_is_refused(setup):
    model, opt, _ = setup
    traj = kt.TrajectoryRecorder(model, opt, stop=0).trajectory()
    with pytest.raises(ValueError, match="does not match the model"):
        traj.check_model(kt.models.get_model("mlp", hidden=(32, 17)))
    with pytest.raises(ValueError, match="does not match the model"):
        traj.check_model(kt.models.get_model("lenet300100"))


def test_refuses_windows_that_do_not_fit(setup):
    model, opt, _ = setup
    with pytest.raises(MemoryError, match="GiB"):
        kt.TrajectoryRecorder(model, opt, stop=10**9)
    with pytest.raises(ValueError, match="stop"):
        kt.TrajectoryRecorder(model, opt)
    with pytest.raises(ValueError, match="every"):
        kt.TrajectoryRecorder(model, opt, every=0, stop=3)


def test_remove_stops_recording_and_dtype(setup):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=10, dtype=torch.float64)
    train(model, loader, epochs=1, max_steps=2, optimizer=opt, progress=False)
    rec.remove()
    train(model, loader, epochs=1, max_steps=2, optimizer=opt, progress=False)
    traj = rec.trajectory()
    assert len(traj) == 3 and traj.snapshots.dtype == torch.float64


@pytest.mark.gpu
def test_records_on_cuda(setup):
    model, _, loader = setup
    model.cuda()
    opt = make_optimizer(model, "sgd", lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=3, device="cuda")
    train(model, loader, epochs=1, max_steps=3, optimizer=opt, progress=False, device="cuda")
    traj = rec.trajectory()
    assert traj.snapshots.is_cuda and len(traj) == 4
    assert kt.dmd(traj.snapshots).eigs.is_cuda
    from koopman_tut import pruning as P
    for scores in (P.kmp_scores(traj), P.kgp_scores(traj), P.horizon_scores(traj, 5)):
        masks = P.global_masks(scores, 4, model=model)
        assert all(m.is_cuda for m in masks.values())
    assert traj.flatten(P.gradients(model, loader)).is_cuda


def test_open_ended_window_stops_at_capacity(setup):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, every=2, max_snapshots=3)
    with pytest.warns(kt.RecorderFullWarning):
        train(model, loader, epochs=3, optimizer=opt, progress=False)
    traj = rec.trajectory()
    assert traj.steps.tolist() == [0, 2, 4] and rec.storage.shape[0] == 3


# -- no silent corruption: each misuse is reported when it happens


def step(model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def test_exports():
    import koopman_tut.trajectory as T
    assert T.TrajectoryRecorder is kt.TrajectoryRecorder
    assert issubclass(kt.RecorderFullWarning, UserWarning) and T.RecorderFullWarning is kt.RecorderFullWarning


@pytest.mark.parametrize("replace", ["module", "parameter", "data"])
def test_parameter_of_another_shape_after_start_raises(setup, replace):
    model, opt, _ = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=5)
    if replace == "module":
        model.classifier = nn.Linear(16, 7)
    elif replace == "parameter":
        model.classifier.weight = nn.Parameter(torch.zeros(7, 16))
    else:
        model.classifier.weight.data = torch.zeros(7, 16)
    before = rec.storage.clone()
    with pytest.raises(RuntimeError, match=r"classifier\.weight.*\(10, 16\).*\(7, 16\).*new TrajectoryRecorder"):
        opt.step()
    assert rec.steps == [0] and torch.equal(rec.storage, before)  # nothing written
    assert rec.trajectory().shapes == [tuple(p.shape) for p in kt.models.get_model("mlp", hidden=(32, 16)).parameters()]


@pytest.mark.parametrize("replace", ["module", "parameter"])
def test_parameter_replaced_by_same_shape_tensor_raises(setup, replace):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=5)
    x, y = next(iter(loader))
    step(model, opt, x, y)
    if replace == "module":
        model.classifier = nn.Linear(16, 10)
    else:
        model.classifier.bias = nn.Parameter(torch.zeros(10))
    with pytest.raises(RuntimeError, match=r"classifier\.(weight|bias).*replaced.*new TrajectoryRecorder"):
        step(model, opt, x, y)
    assert rec.steps == [0, 1]


def test_optimizer_that_does_not_train_the_model_is_refused(setup):
    model, _, _ = setup
    other = kt.models.get_model("mlp", seed=1, hidden=(32, 16))
    for opt in (make_optimizer(other, "sgd", lr=0.1), torch.optim.SGD(copy.deepcopy(model).parameters(), lr=0.1)):
        with pytest.raises(ValueError, match=r"features\.0\.weight.*optimizer that trains"):
            kt.TrajectoryRecorder(model, opt, stop=3)
    part = torch.optim.SGD(model.classifier.parameters(), lr=0.1)  # trains only the classifier
    with pytest.raises(ValueError, match=r"features\.0\.weight.*params="):
        kt.TrajectoryRecorder(model, part, stop=3)
    rec = kt.TrajectoryRecorder(model, part, stop=3, params=["classifier.weight", "classifier.bias"])
    assert rec.names == ["classifier.weight", "classifier.bias"]


def test_frozen_parameters_are_skipped_with_a_warning_or_refused_when_asked_for(setup):
    model, _, loader = setup
    model.features[0].weight.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with pytest.warns(UserWarning, match=r"features\.0\.weight.*frozen"):
        rec = kt.TrajectoryRecorder(model, opt, stop=2)
    assert "features.0.weight" not in rec.names and len(rec.names) == 5
    x, y = next(iter(loader))
    step(model, opt, x, y)
    assert rec.trajectory().n_features == sum(p.numel() for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=r"features\.0\.weight.*frozen"):
        kt.TrajectoryRecorder(model, opt, stop=2, params=["features.0.weight", "classifier.weight"])


def test_pruned_parameters_record_weight_orig_times_mask(setup):
    model, opt, loader = setup
    prune.l1_unstructured(model.features[0], "weight", amount=0.5)  # weight_orig is the optimizer's tensor
    rec = kt.TrajectoryRecorder(model, opt, stop=3)
    x, y = next(iter(loader))
    step(model, opt, x, y)
    prune.l1_unstructured(model.classifier, "weight", amount=0.5)  # pruned while recording
    step(model, opt, x, y)
    traj = rec.trajectory()
    for n in ("features.0.weight", "classifier.weight"):
        assert torch.equal(traj.unflatten(traj.snapshots[:, -1])[n], kt.trajectory.current_value(model, n))
    assert (traj.unflatten(traj.snapshots[:, -1])["classifier.weight"] == 0).float().mean() == 0.5


def test_storage_dtype_must_be_floating(setup):
    model, opt, _ = setup
    for dtype in (torch.int64, torch.bool, "float32"):
        with pytest.raises(TypeError, match="dtype"):
            kt.TrajectoryRecorder(model, opt, stop=3, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_storage(setup, dtype):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=2, dtype=dtype)
    x, y = next(iter(loader))
    step(model, opt, x, y)
    traj = rec.trajectory()
    assert traj.snapshots.dtype == dtype and len(traj) == 2
    assert torch.equal(traj.snapshots[:, -1], flat(model).to(dtype))


@pytest.mark.parametrize("kwargs, error, name", [
    ({"start": 1.5, "stop": 4}, TypeError, r"start.*1\.5"),
    ({"start": True, "stop": 4}, TypeError, r"start.*True"),
    ({"start": -1, "stop": 4}, ValueError, r"start.*-1"),
    ({"stop": 4.0}, TypeError, r"stop.*4\.0"),
    ({"start": 5, "stop": 4}, ValueError, r"stop.*4.*start.*5"),
    ({"stop": 4, "step0": -2}, ValueError, r"step0.*-2"),
    ({"max_snapshots": -3}, ValueError, r"max_snapshots.*-3"),
    ({"max_snapshots": 0}, ValueError, r"max_snapshots.*0"),
    ({"max_snapshots": 2.5}, TypeError, r"max_snapshots.*2\.5"),
    ({"stop": 4, "every": 2.0}, TypeError, r"every.*2\.0"),
    ({"stop": 4, "max_fraction": 0}, ValueError, r"max_fraction.*0"),
    ({"stop": 4, "max_fraction": 1.5}, ValueError, r"max_fraction.*1\.5"),
    ({"stop": 4, "max_fraction": math.nan}, ValueError, r"max_fraction.*nan"),
    ({"stop": 4, "params": "classifier.weight"}, TypeError, r"params.*list"),
])
def test_arguments_are_validated_at_construction(setup, kwargs, error, name):
    model, opt, _ = setup
    with pytest.raises(error, match=name):
        kt.TrajectoryRecorder(model, opt, **kwargs)


def test_full_storage_warns_once_when_the_first_snapshot_is_dropped(setup):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, max_snapshots=3)
    x, y = next(iter(loader))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(model, opt, x, y)
        step(model, opt, x, y)
    with pytest.warns(kt.RecorderFullWarning, match=r"3 snapshots.*step 3.*max_snapshots.*every=.*stop="):
        step(model, opt, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(model, opt, x, y)  # told once
    assert rec.steps == [0, 1, 2]
    with pytest.warns(kt.RecorderFullWarning):  # also when max_snapshots cuts a stop= window short
        rec = kt.TrajectoryRecorder(model, opt, stop=10, max_snapshots=1)
        step(model, opt, x, y)
