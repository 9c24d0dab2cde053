"""TrajectoryRecorder and Trajectory: hooks, windows, storage, persistence, errors."""
import pytest
import torch
import torch.nn as nn

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
    train(model, loader, epochs=3, optimizer=opt, progress=False)
    traj = rec.trajectory()
    assert traj.steps.tolist() == [0, 2, 4] and rec.storage.shape[0] == 3
