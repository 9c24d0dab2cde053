"""TrajectoryRecorder and Trajectory: hooks, windows, storage, persistence, errors."""
import ast
import copy
import math
import os
import re
import warnings

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune

import koopman_tut as kt
from koopman_tut.training.train import make_optimizer, train


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


def test_save_refuses_a_folder_and_a_file_a_recorder_is_writing(setup, tmp_path):
    model, opt, loader = setup
    path = tmp_path / "live.traj"
    rec = kt.TrajectoryRecorder(model, opt, stop=6, path=path)
    train(model, loader, epochs=1, max_steps=2, optimizer=opt, progress=False)
    small = kt.TrajectoryRecorder(model, opt, stop=0).trajectory()
    with pytest.raises(FileExistsError, match="being written by a TrajectoryRecorder"):  # it replaced the file: the
        small.save(path)  # recording went on into an unlinked file and was lost
    with pytest.raises(IsADirectoryError, match="is a folder"):  # it named an internal temporary file
        small.save(tmp_path)
    with pytest.raises(NotADirectoryError, match="lies under a file"):  # FileExistsError naming the file
        small.save(path / "x.pt")
    with pytest.raises(IsADirectoryError, match="is a folder, not a trajectory file"):  # "no trajectory file at"
        kt.Trajectory.load(tmp_path)
    train(model, loader, epochs=1, max_steps=4, optimizer=opt, progress=False)
    assert len(kt.Trajectory.load(path)) == 7 and len(rec.trajectory()) == 7
    small.save(path)  # the recording is complete (its file closed): an ordinary replace
    assert len(kt.Trajectory.load(path)) == 1


def test_save_onto_a_named_pipe_does_not_wait_for_a_writer(setup, tmp_path):
    """The check for a recorder writing the path opened it for reading, which on a FIFO waits for a writer for
    ever: it opens without blocking now. And the pipe is refused, not replaced (as the recorder and convert_v1
    refuse it: a rename over a device node, as root over /dev/full, replaced the device)."""
    import signal

    model, opt, _ = setup
    path = tmp_path / "pipe"
    os.mkfifo(path)

    class Stuck(Exception):  # not an OSError (TimeoutError is one): the open's own handler would swallow it
        pass

    def stuck(*_):
        raise Stuck("save waited on the named pipe")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(20)
    try:
        with pytest.raises(ValueError, match="exists and is not a regular file .*give the name of a file"):
            kt.TrajectoryRecorder(model, opt, stop=0).trajectory().save(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert path.is_fifo() and not list(tmp_path.glob(".*"))  # the pipe left as it was, no temporary file


def test_a_bit_flipped_in_a_saved_file_fails_its_crc(setup, tmp_path):
    import zipfile
    model, opt, _ = setup
    path = tmp_path / "t.pt"
    kt.TrajectoryRecorder(model, opt, stop=0).trajectory().save(path)
    with zipfile.ZipFile(path) as z:  # the snapshots' bytes, stored uncompressed
        off = next(i for i in z.infolist() if i.filename.endswith("data/0")).header_offset
    raw = bytearray(path.read_bytes())
    start = off + 30 + int.from_bytes(raw[off + 26:off + 28], "little") + int.from_bytes(raw[off + 28:off + 30], "little")
    raw[start + 3] ^= 0x10  # one bit of the first float's exponent: it loaded as another value
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"is damaged: its entry .*data/0.* fails the CRC-32"):
        kt.Trajectory.load(path)
    with pytest.raises(TypeError, match="map_location must be a device"):  # it blamed the file
        kt.Trajectory.load(path, map_location=5)
    raw[start + 3] ^= 0x10
    raw[raw.find(b"PK\x01\x02") + 10] = 99  # an entry's compression method damaged in the central directory
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"is damaged: its entry .*data.pkl.* cannot be read"):
        kt.Trajectory.load(path)
    if hasattr(torch.serialization, "set_crc32_options"):  # torch's CRC-32 turned off: entries stored with CRC 0
        torch.serialization.set_crc32_options(False)
        try:
            kt.TrajectoryRecorder(model, opt, stop=0).trajectory().save(path)
        finally:
            torch.serialization.set_crc32_options(True)
        assert len(kt.Trajectory.load(path)) == 1


def test_no_flipped_bit_in_a_saved_file_loads_as_other_values(setup, tmp_path):
    """Every bit 0 and bit 4 of every byte, flipped alone: the file is refused or loads as saved. A flip in an
    entry's local header (its name's length) once loaded the snapshots from a shifted offset, silently."""
    model, opt, _ = setup
    path = tmp_path / "t.pt"
    saved = kt.TrajectoryRecorder(model, opt, stop=0).trajectory()
    saved.save(path)
    raw, wrong = path.read_bytes(), []
    for i in range(len(raw)):
        for bit in (0x01, 0x10):
            path.write_bytes(raw[:i] + bytes([raw[i] ^ bit]) + raw[i + 1:])
            try:
                t = kt.Trajectory.load(path)
            except ValueError:
                continue
            if not (torch.equal(t.snapshots, saved.snapshots) and torch.equal(t.steps, saved.steps)
                    and t.names == saved.names and t.shapes == saved.shapes and t.meta == saved.meta):
                wrong.append((i, bit))
    assert not wrong, f"{len(wrong)} flips loaded as other values, first at (byte, bit) {wrong[:5]}"


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
    with pytest.raises(ValueError, match=r"not a trajectory file: neither a recording .* starts with b'not '"):
        kt.Trajectory.load(bad)
    for cut in (b"", b"KT"):  # empty, or a recording cut inside its magic bytes: named, not torch's pickle advice
        bad.write_bytes(cut)
        with pytest.raises(ValueError, match="not a trajectory file") as e:
            kt.Trajectory.load(bad)
        assert "weights_only" not in str(e.value)
    traj = kt.Trajectory(torch.zeros(4, 3), torch.arange(3), ["w"], [(4,)], {})
    traj.save(bad)
    bad.write_bytes(bad.read_bytes()[:200])  # a saved file cut short: torch's first line only
    with pytest.raises(ValueError, match="not a readable trajectory file") as e:
        kt.Trajectory.load(bad)
    assert "\n" not in str(e.value)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a koopman_tut trajectory"):
        kt.Trajectory.load(other)
    with pytest.raises(FileNotFoundError):
        kt.Trajectory.load(tmp_path / "missing.pt")


@pytest.mark.parametrize("change, words", [
    ({"names": "abc"}, r"TypeError: names must be a list of parameter names \(str\), got 'abc'"),
    ({"names": [1, 2, 3]}, r"TypeError: names must be a list of parameter names"),
    ({"names": ["a", "b"]}, r"ValueError: names and shapes must have one entry per parameter, got 2 names"),
    ({"shapes": "abc"}, r"TypeError: shapes must be a list of shapes"),
    ({"shapes": [[1], "a", [1]]}, r"TypeError: shapes must be tuples of integers >= 0, got 'a' for 'b'"),
    ({"steps": [0, 0]}, r"ValueError: steps must be strictly increasing"),
    ({"meta": {"lrs": [0.1]}}, r"ValueError: meta\['lrs'\] must hold one learning rate per snapshot \(2\)"),
    ({"names": None}, r"TypeError: names must be a list"),
    ({"names": KeyError}, r"no 'names' field"),
])
def test_damaged_fields_of_a_saved_file_are_refused_naming_the_file_and_field(tmp_path, change, words):
    """Trajectory.load checks each stored field as the constructor does, on the stored value itself."""
    path = tmp_path / "damaged.pt"
    obj = {"format": "koopman_tut.recording.trajectory/1", "snapshots": torch.zeros(3, 2),
           "steps": torch.tensor([0, 1]), "names": ["a", "b", "c"], "shapes": [[1], [1], [1]], "meta": {}}
    obj.update(change)
    obj = {k: v for k, v in obj.items() if v is not KeyError}
    torch.save(obj, path)
    with pytest.raises(ValueError, match=r"damaged\.pt is a damaged trajectory file.*" + words):
        kt.Trajectory.load(path)


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
    import koopman_tut.recording.recorder as R
    assert R.TrajectoryRecorder is kt.TrajectoryRecorder
    assert issubclass(kt.RecorderFullWarning, UserWarning) and R.RecorderFullWarning is kt.RecorderFullWarning


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
    # no snapshot taken: row 0 as it was (row 1 may hold a copy made beside the compiled checks, which is no snapshot)
    assert rec.steps == [0] and torch.equal(rec.storage[0], before[0]) and torch.equal(rec.trajectory().snapshots[:, 0],
                                                                                    before[0])
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
    inside = torch.optim.SGD(model.parameters(), lr=0.1)  # frozen in the optimizer: it may be unfrozen later
    with pytest.warns(UserWarning, match=r"features\.0\.weight.*frozen.*but in the optimizer: recorded"):
        assert "features.0.weight" in kt.TrajectoryRecorder(model, inside, stop=2).names  # recorded without a word
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for by name: recorded, nothing to say
        kt.TrajectoryRecorder(model, inside, stop=2, params=["features.0.weight", "classifier.weight"])


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
        assert torch.equal(traj.unflatten(traj.snapshots[:, -1])[n], kt.recording.trajectory.current_value(model, n))
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
    ({"stop": 5, "step0": 10}, ValueError, r"stop must be >= step0, got stop=5, step0=10"),
    ({"stop": 4, "overwrite": "yes"}, TypeError, r"overwrite must be True or False, got 'yes'"),
    ({"stop": 4, "overwrite": True}, ValueError, r"overwrite=True applies to a recording on disk and needs path="),
    ({"stop": 4, "sync": True}, ValueError, r"sync=True applies to a recording on disk and needs path="),
    ({"max_snapshots": -3}, ValueError, r"max_snapshots.*-3"),
    ({"max_snapshots": 0}, ValueError, r"max_snapshots.*0"),
    ({"max_snapshots": 2.5}, TypeError, r"max_snapshots.*2\.5"),
    ({"stop": 4, "every": 2.0}, TypeError, r"every.*2\.0"),
    ({"stop": 4, "max_fraction": 0}, ValueError, r"max_fraction.*0"),
    ({"stop": 4, "max_fraction": 1.5}, ValueError, r"max_fraction.*1\.5"),
    ({"stop": 4, "max_fraction": math.nan}, ValueError, r"max_fraction.*nan"),
    ({"stop": 4, "params": "classifier.weight"}, TypeError, r"params.*list"),
    ({"start": 2**63, "step0": 2**63}, ValueError, r"start must be below 2\*\*63 \(steps are stored as int64\)"),
    ({"stop": 2**64}, ValueError, r"stop must be below 2\*\*63"),
])
def test_arguments_are_validated_at_construction(setup, kwargs, error, name):
    model, opt, _ = setup
    with pytest.raises(error, match=name):
        kt.TrajectoryRecorder(model, opt, **kwargs)


def test_a_window_ending_at_step0_records_the_state_at_construction(setup):
    model, opt, _ = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=5, step0=5, sync=False, overwrite=False)
    assert rec.trajectory().steps.tolist() == [5]


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


# ----------------------------------------------------------------------------- a validated Trajectory
def _parts(T=4, n=6):
    """Valid constructor arguments: snapshots (n, T) float32, steps, names, shapes, meta."""
    return dict(snapshots=torch.randn(n, T), steps=torch.arange(T) * 2, names=["a", "b"], shapes=[(2, 2), (2,)],
                meta={"lrs": [0.1] * T})


@pytest.mark.parametrize("change, error, words", [
    ({"names": ["a", "b", "c"]}, ValueError, r"3 names and 2 shapes"),
    ({"names": ["a"], "shapes": [(2, 3)], "snapshots": torch.randn(6, 4)}, None, None),  # valid: control
    ({"names": ["a", "a"]}, ValueError, r"names must be unique.*'a'"),
    ({"names": "ab"}, TypeError, r"names must be a list"),
    ({"shapes": [(2, 2), (3,)]}, ValueError, r"shapes must add up to the snapshots' 6 rows.*7"),
    ({"shapes": [(2, -2), (2,)]}, ValueError, r"shapes must be tuples of integers >= 0, got \(2, -2\) for 'a'"),
    ({"shapes": [(2, 2.0), (2,)]}, TypeError, r"shapes must be tuples of integers"),
    ({"steps": torch.tensor([0, 2, 1, 3])}, ValueError, r"steps must be strictly increasing"),
    ({"steps": torch.tensor([0, 1, 1, 3])}, ValueError, r"steps must be strictly increasing"),
    ({"steps": torch.arange(3)}, ValueError, r"steps must have shape \(4,\), one per snapshot"),
    ({"steps": torch.arange(4.0)}, TypeError, r"steps must be integers"),
    ({"steps": [0, 1, 2.5, 3]}, TypeError, r"steps must be integers"),
    ({"snapshots": torch.randn(6, 4).long()}, TypeError, r"snapshots must be floating point.*int64"),
    ({"snapshots": torch.randn(6, 4, dtype=torch.complex64)}, TypeError, r"snapshots must be floating point"),
    ({"snapshots": torch.randn(6)}, ValueError, r"snapshots must be 2-D \(n_features, n_snapshots\), got shape \(6,\)"),
    ({"snapshots": torch.randn(6, 4).numpy()}, TypeError, r"snapshots must be a torch.Tensor.*torch.from_numpy"),
    ({"snapshots": torch.randn(6, 4).to_sparse()}, TypeError, r"dense \(strided\).*to_dense"),
    ({"meta": {"lrs": [0.1] * 3}}, ValueError, r"meta\['lrs'\] must hold one learning rate per snapshot \(4\)"),
    ({"meta": {"lrs": ["a"] * 4}}, TypeError, r"traj.meta\['lrs'\] must be a list of numbers"),  # traj.lr failed later
    ({"meta": {"lrs": [None] * 4}}, TypeError, r"traj.meta\['lrs'\] must be a list of numbers"),
    ({"meta": {"lrs": [0.1, math.nan, 0.1, 0.1]}}, ValueError, r"learning rates in traj.meta .* finite numbers, got nan"),
    ({"meta": {"group_lrs": [[0.1, math.inf]] * 4}}, ValueError, r"finite numbers, got inf"),
    ({"meta": {"lrs": [0.0] * 4}}, None, ""),  # a frozen run: lr 0 is an SGD setting
    ({"meta": {"lrs": [-0.1] * 4}}, None, ""),  # as a schedule may set it (and the recorder records it)
    ({"steps": [0, 1, 2, 2**64]}, ValueError, r"steps must fit int64 \(optimizer steps\), got 18446744073709551616"),
    ({"meta": {"f": object()}}, TypeError, r"meta\['f'\] must hold plain values"),
    ({"meta": {1: 2}}, TypeError, r"meta must be a dict with string keys"),
    ({"meta": {"rows": 5}}, TypeError, r"meta\['rows'\] must be the row range \(start, stop\).*two integers, got 5"),
    ({"meta": {"rows": [0, 1, 2]}}, TypeError, r"meta\['rows'\] must be the row range"),
    ({"meta": {"rows": [0, 2.5]}}, TypeError, r"meta\['rows'\] must be the row range"),
    ({"meta": {"rows": [6, 0]}}, ValueError, r"meta\['rows'\].*0 <= start <= stop, got \(6, 0\)"),
    ({"meta": {"all_shapes": 3}}, TypeError, r"meta\['all_shapes'\] must be a list of shapes"),
    ({"meta": {"all_shapes": [[2, 2], 2]}}, TypeError, r"meta\['all_shapes'\] must be a list of shapes"),
    ({"meta": {"all_shapes": [[2, -2]]}}, ValueError, r"meta\['all_shapes'\] must be a list of shapes"),
])
def test_trajectory_is_validated_on_construction(change, error, words):
    args = {**_parts(), **change}
    if error is None:
        kt.Trajectory(**args)
        return
    with pytest.raises(error, match=words):
        kt.Trajectory(**args)


def test_save_then_load_gives_back_everything_the_constructor_accepts(tmp_path):
    import numpy as np

    accepted = [
        _parts(),
        dict(_parts(), steps=[0, 5, 7, 100]),  # a list
        dict(_parts(), steps=np.array([1, 2, 3, 4], dtype=np.int32)),  # numpy, int32
        dict(_parts(), snapshots=torch.randn(6, 4, dtype=torch.bfloat16), shapes=[torch.Size([2, 2]), [2]]),
        dict(_parts(T=1), names=("a", "b", "c"), shapes=[(), (1, 0), (5,)]),  # a scalar and an empty parameter
        dict(_parts(), meta={"lrs": torch.full((4,), 0.1), "momentum": np.float64(0.9), "every": np.int64(3),
                             "rows": [0, 6], "all_shapes": [[2, 2], [2]], "nested": {"x": (1, (2, 3))},
                             "optimizer": "SGD", "nesterov": np.bool_(True), "none": None}),
    ]
    for k, args in enumerate(accepted):
        traj = kt.Trajectory(**args)
        traj.save(tmp_path / f"{k}.pt")
        back = kt.Trajectory.load(tmp_path / f"{k}.pt")
        assert torch.equal(back.snapshots, traj.snapshots) and back.snapshots.dtype == traj.snapshots.dtype
        assert back.steps.dtype == traj.steps.dtype == torch.int64 and torch.equal(back.steps, traj.steps)
        assert back.names == traj.names and back.shapes == traj.shapes and back.meta == traj.meta, k
    meta = kt.Trajectory(**accepted[-1]).meta  # plain values, in the form load gives back
    assert meta["lrs"] == pytest.approx([0.1] * 4) and type(meta["momentum"]) is float and meta["every"] == 3
    assert meta["rows"] == (0, 6) and meta["all_shapes"] == [(2, 2), (2,)] and meta["nested"] == {"x": [1, [2, 3]]}


def test_save_checks_fields_edited_since_construction_before_it_replaces_a_file(tmp_path):
    import numpy as np

    path = tmp_path / "t.pt"
    traj = kt.Trajectory(**_parts())
    traj.save(path)
    traj.meta["final_acc"] = np.mean([0.9, 0.95])  # a np.float64 saved as such did not load (weights_only)
    traj.save(path)
    assert kt.Trajectory.load(path).meta["final_acc"] == pytest.approx(0.925)
    good = path.read_bytes()
    edits = [("meta", {"x": {1, 2}}, TypeError, r"meta\['x'\] must hold plain values"),
             ("meta", {1: "a"}, TypeError, "string keys"),
             ("meta", {"lrs": [0.1] * 3}, ValueError, r"one learning rate per snapshot \(4\)"),
             ("meta", {"every": 0}, ValueError, r"meta\['every'\] must be .* an int >= 1"),
             ("steps", torch.tensor([3, 2, 1, 0]), ValueError, "strictly increasing"),
             ("names", ["a", "b", "c", "d"], ValueError, "one entry per parameter")]
    for field, value, error, words in edits:
        bad = kt.Trajectory(**_parts())
        setattr(bad, field, value)
        with pytest.raises(error, match=words):
            bad.save(path)
        assert path.read_bytes() == good  # the file that loaded is left as it was
    with pytest.raises(ValueError, match=r"meta\['every'\] must be"):
        kt.Trajectory(**dict(_parts(), meta={"every": "2"}))  # window() multiplied it: "2" * 2 == "22"


def test_a_trajectory_compares_by_identity_and_can_be_a_key():
    a, b = kt.Trajectory(**_parts()), kt.Trajectory(**_parts())
    assert a == a and a != b and a in [a] and b not in [a] and {a: 1}[a] == 1  # raised torch's "ambiguous"


def test_every_snapshot_index_is_range_checked_the_same_way(setup):
    model, opt, loader = setup
    rec = kt.TrajectoryRecorder(model, opt, stop=8)
    train(model, loader, epochs=3, max_steps=8, optimizer=opt, progress=False)
    traj = rec.trajectory()
    assert len(traj) == 9
    message = r"t must be in \[-9, 8\] for a window of 9 snapshots, got 100"
    with pytest.raises(ValueError, match=message):
        kt.pruning.koopman(traj).gradient(t=100)  # wrapped to t = 1 before
    with pytest.raises(ValueError, match=message):
        kt.pruning.kgp_scores(traj, t=100)
    with pytest.raises(ValueError, match=r"t must be in \[-9, 8\] for a window of 9 snapshots, got -10"):
        kt.pruning.koopman_gradient(traj, t=-10)
    with pytest.raises(TypeError, match=r"t must be an integer snapshot index, got 1.5"):
        kt.pruning.koopman_gradient(traj, t=1.5)
    k = kt.pruning.koopman(traj)
    assert torch.equal(k.gradient(t=-9), k.gradient(t=0)) and torch.equal(k.gradient(t=8), k.gradient())
    with pytest.raises(ValueError, match=r"column must be in \[-9, 8\] for a window of 9 snapshots, got 9"):
        traj.load_into(model, 9)
    with pytest.raises(ValueError, match=r"start must be in \[-9, 8\] for a window of 9 snapshots, got 9"):
        traj.window(9)
    with pytest.raises(ValueError, match=r"stop must be in \[-9, 9\] for a window of 9 snapshots, got 20"):
        traj.window(0, 20)
    with pytest.raises(ValueError, match=r"selects none"):
        traj.window(5, 3)
    with pytest.raises(ValueError, match=r"every must be an integer >= 1"):
        traj.window(0, None, 0)
    assert traj.window(-3).steps.tolist() == [6, 7, 8] and traj.window(0, 9, 4).steps.tolist() == [0, 4, 8]


def test_an_optimizer_without_a_learning_rate_is_named():
    class NoLR(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"decay": 0.5})

        def step(self, closure=None):
            pass

    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"optimizer.param_groups\[0\] has no 'lr' key \(its settings: \['decay'\]\)"):
        kt.TrajectoryRecorder(model, NoLR(model.parameters()), stop=3)
    with pytest.raises(TypeError, match=r"optimizer must be a torch.optim.Optimizer, got dict"):
        kt.TrajectoryRecorder(model, {"lr": 0.1}, stop=3)


@pytest.mark.parametrize("lr", [math.nan, math.inf, -0.1, torch.tensor(math.nan)])
def test_a_learning_rate_that_is_not_finite_and_at_least_0_is_refused(lr):
    """What a disk file refuses to load is refused when recording starts; 0 (a warm-up's start) is taken."""
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    assert kt.TrajectoryRecorder(model, opt, stop=3).lrs == [0.0]
    opt.param_groups[0]["lr"] = lr
    with pytest.raises(ValueError, match=r"optimizer.param_groups\[0\]\['lr'\] must be a finite number >= 0, got"):
        kt.TrajectoryRecorder(model, opt, stop=3)


class _Tied(nn.Module):
    """A decoder weight tied to an encoder's, and the classifier weight tied to an embedding."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb, self.enc, self.dec, self.classifier = nn.Embedding(10, 16), nn.Linear(16, 16), nn.Linear(16, 16), \
            nn.Linear(16, 10)
        self.dec.weight = self.enc.weight
        self.classifier.weight = self.emb.weight
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.classifier(torch.relu(self.dec(torch.relu(self.enc(self.emb(x))))))


def test_tied_parameters_are_recorded_once():
    model = _Tied()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = kt.TrajectoryRecorder(model, opt, stop=2)
    x = torch.arange(10)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), x).backward()
        opt.step()
    traj = rec.trajectory()
    assert traj.names == ["enc.weight", "enc.bias", "dec.bias", "classifier.weight", "classifier.bias"]
    assert traj.n_features == 256 + 16 + 16 + 160 + 10  # each tensor once (two tied: 458, was 714)
    assert torch.equal(traj.snapshots[:, -1], traj.flatten(dict(model.named_parameters(remove_duplicate=False))))
    with pytest.raises(ValueError, match=r"params give 'enc.weight' and 'dec.weight', one tensor \(tied weights\)"):
        kt.TrajectoryRecorder(model, opt, stop=2, params=["enc.weight", "dec.weight"])
    with pytest.raises(ValueError, match=r"params give 'enc.bias' and 'enc.bias', the same name"):
        kt.TrajectoryRecorder(model, opt, stop=2, params=["enc.bias", "enc.bias"])


def test_new_storage_under_the_same_parameter_is_recorded_not_the_stale_one():
    """The recorder reuses flat views of the parameters; `p.data = ...` (new storage, same tensor
    object) and pruning mid-window must still record the values the model has."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=3, params=["0.weight", "2.weight"])

    def step():
        opt.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        opt.step()

    step()
    with torch.no_grad():
        model[0].weight.data = model[0].weight.data.clone() + 1.0  # new storage, same Parameter
    step()
    kt.pruning.apply_masks(model, {"2.weight": torch.tensor([[True, False, True], [False, True, True]])})
    step()
    traj = rec.trajectory()
    last = traj.unflatten(traj.snapshots[:, -1])
    assert torch.equal(last["0.weight"], model[0].weight.detach())
    assert torch.equal(last["2.weight"], (model[2].weight_orig * model[2].weight_mask).detach())  # pruned: orig * mask
    assert bool((last["2.weight"][0, 1] == 0) and (last["2.weight"][1, 0] == 0))


def test_flatten_unflatten_and_load_into_refuse_what_does_not_fit():
    """A tensor of another shape (even one with as many entries, transposed), a missing name, a non-tensor, NaN:
    each refused with the name, instead of a vector of the wrong length or order, or NaN weights in the model."""
    import numpy as np

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    traj = kt.Trajectory(torch.randn(8, 2), [0, 1], ["0.weight", "0.bias"], [(2, 3), (2,)])
    good = {"0.weight": torch.randn(2, 3), "0.bias": torch.randn(2)}
    assert traj.flatten(good).shape == (8,)
    for bad, match in [({**good, "0.weight": torch.randn(3, 2)}, r"0\.weight \(3, 2\) \(not \(2, 3\)\)"),
                       ({**good, "0.weight": torch.randn(5)}, r"0\.weight \(5,\)"),
                       ({"0.weight": good["0.weight"]}, r"missing \['0\.bias'\]"),
                       ({**good, "0.bias": np.zeros(2)}, r"0\.bias")]:
        with pytest.raises(ValueError, match=match):
            traj.flatten(bad)
    with pytest.raises(TypeError, match="vec must be a torch.Tensor"):
        traj.unflatten(np.zeros(8))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="NaN or Inf"):
        traj.load_into(model, torch.full((8,), float("nan")))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "nothing loaded"
    for call in (lambda: traj.save(None), lambda: kt.Trajectory.load(None)):  # pathlib's TypeError named nothing
        with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
            call()
    with pytest.raises(ValueError, match="steps must fit int64"):
        kt.Trajectory(torch.randn(8, 2), np.array([0, 2**63], dtype=np.uint64), ["0.weight", "0.bias"], [(2, 3), (2,)])


def test_flatten_says_a_value_is_not_a_tensor():
    # a numpy value was named by its shape only: "got a (2, 3) (not (2, 3))"
    import numpy as np

    traj = kt.Trajectory(torch.randn(10, 5), [0, 1, 2, 3, 4], ["a", "b"], [(2, 3), (4,)])
    with pytest.raises(ValueError, match=r"got a \(ndarray, not a torch.Tensor: torch.from_numpy converts it\)$"):
        traj.flatten({"a": np.zeros((2, 3)), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match=r"got b \(list, not a torch.Tensor\)$"):
        traj.flatten({"a": torch.zeros(2, 3), "b": [0.0] * 4})


def test_more_inputs_that_were_silent_or_unreadable():
    """A complex vector (its imaginary part dropped with a mere warning), a stride past int64 (a wrong
    'no snapshot' error), a tensor without values (a raw meta-device error): each refused or handled by name."""
    model = nn.Sequential(nn.Linear(3, 2))
    traj = kt.Trajectory(torch.randn(8, 4), [0, 1, 2, 3], ["0.weight", "0.bias"], [(2, 3), (2,)])
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TypeError, match="real floating-point .* got torch.complex64: take .real"):
        traj.load_into(model, torch.randn(8, dtype=torch.complex64))
    with pytest.raises(TypeError, match="got torch.int64"):
        traj.load_into(model, torch.ones(8, dtype=torch.long))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "nothing loaded"
    for every in (4, 2**62, 2**63, 10**30):  # any stride past the window keeps its first snapshot
        w = traj.window(1, every=every)
        assert w.steps.tolist() == [1] and "every" not in w.meta  # none given: the steps say it
    assert traj.window(every=3).steps.tolist() == [0, 3]
    with pytest.raises(ValueError, match="snapshots is on the meta device"):
        kt.Trajectory(torch.empty(8, 4, device="meta"), [0, 1, 2, 3], ["0.weight", "0.bias"], [(2, 3), (2,)])


def test_a_parametrized_weight_names_the_tensors_to_record():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    torch.nn.utils.parametrizations.weight_norm(model[0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"'0.weight' is computed by a parametrization \(_WeightNorm\)") as info:
        kt.TrajectoryRecorder(model, opt, stop=3)
    params = ast.literal_eval(re.search(r"params=(\[.*\])", str(info.value)).group(1))
    assert set(params) == {n for n, _ in model.named_parameters()}  # every trained tensor, not only the two
    rec = kt.TrajectoryRecorder(model, opt, stop=3, params=params)  # the advice, verbatim
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    assert rec.trajectory().snapshots.shape[1] == 2
    old = nn.Sequential(nn.Linear(4, 4))  # the older, hook-based weight_norm: weight_g and weight_v are trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.nn.utils.weight_norm(old[0])
    with pytest.raises(ValueError, match=r"torch.nn.utils.weight_norm.*params=\['0.weight_g', '0.weight_v', '0.bias'\]"):
        kt.TrajectoryRecorder(old, torch.optim.SGD(old.parameters(), lr=0.1), stop=3)
    with pytest.raises(ValueError, match=r"last step this recorder may record, 9223372036854775808"):
        kt.TrajectoryRecorder(model, opt, step0=2**63 - 2, max_snapshots=3)  # a raw overflow at trajectory() before


def test_the_hook_based_spectral_norm_names_weight_orig_and_is_not_taken_for_pruning():
    """The older torch.nn.utils.spectral_norm trains weight_orig, as pruning does, but without a mask: it was
    read as pruned (KeyError 'weight_mask' from the recorder) and weight_orig refused as prune's tensor."""
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    torch.nn.utils.spectral_norm(model[0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"'0.weight' is computed by a parametrization \(torch.nn.utils.spectral_norm\)"
                                         r".*params=\['0.weight_orig', '0.bias', '2.weight', '2.bias'\]"):
        kt.TrajectoryRecorder(model, opt, stop=3)
    rec = kt.TrajectoryRecorder(model, opt, stop=2, params=["0.weight_orig", "0.bias", "2.weight", "2.bias"])
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    assert torch.equal(rec.trajectory().snapshots[:12, -1], model[0].weight_orig.detach().reshape(-1))
    kt.pruning.remove_masks(model)  # nothing pruned: spectral_norm's hook left alone
    assert set(kt.pruning.magnitude_scores(model)) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    mid = nn.Sequential(nn.Linear(4, 3))  # applied while recording: the recorded weight is gone, said by name
    opt = torch.optim.SGD(mid.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(mid, opt, stop=3)
    torch.nn.utils.spectral_norm(mid[0])
    with pytest.raises(RuntimeError, match="recorded parameter '0.weight' was removed from the model"):
        opt.step()


def test_float16_storage_that_overflowed_says_so_when_analysed():
    """A weight beyond float16's range is stored as Inf; the error at analysis names that cause, not only the Inf."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.mul_(1e6)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    rec = kt.TrajectoryRecorder(model, opt, stop=3, dtype=torch.float16)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
    for method in ("svd", "gram"):
        with pytest.raises(ValueError, match="float16 holds at most 65504"):
            kt.dmd(rec.trajectory().snapshots, method=method)
    with pytest.raises(ValueError, match=r"NaN or Inf values \(first at row=\d+, column=0; W has shape \(8, 4\)\)$"):
        kt.dmd(rec.trajectory().snapshots.float())  # float32 data: no such hint


def test_window_of_a_trajectory_without_every_in_meta_reads_the_stride_off_the_steps():
    # a hand-built trajectory 5 steps apart with no meta['every']: window(every=2) wrote every = 2 while its
    # steps were 10 apart, and kt.koopman then refused the window ("fix one of them")
    W = torch.randn(50, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64).cumsum(1)
    traj = kt.Trajectory(W, torch.arange(0, 60, 5), ["w"], [(50,)], {})
    w = traj.window(every=2)
    assert "every" not in w.meta and torch.equal(w.steps, torch.arange(0, 60, 10))
    kt.koopman(w)  # accepted: the stride is the steps'
    kt.koopman(traj.window(every=2).window(every=2))
    first = kt.Trajectory(W, torch.tensor([0, *range(100, 111)]), ["w"], [(50,)], {})  # the start, then every step
    kt.koopman(first.window(start=1))  # a stride read off the parent's first gap (100) was refused here


def test_the_dtype_trained_in_is_recorded_for_floating_parameters_and_checked_by_name():
    """meta['trained_in'] (the coarsest dtype trained: every step rounds to it) sets the Koopman gradient's
    rounding allowance; an integer parameter named in params= has none (the recorder raised torch's finfo
    error), and a hand-written value must name a dtype (a typo silently switched the allowance off)."""
    m = nn.Linear(3, 2)
    m.register_parameter("count", nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(m, opt, stop=3, params=["weight", "count"])
    assert rec.trajectory().meta["trained_in"] == "float32"
    rec.remove()
    rec = kt.TrajectoryRecorder(m, opt, stop=3, params=["count"])
    assert "trained_in" not in rec.trajectory().meta
    rec.remove()
    W = torch.randn(4, 5)
    for bad in ("torch.float16", "half", 5, ["float16"]):
        with pytest.raises(ValueError, match=r"meta\['trained_in'\] must name the dtype"):
            kt.Trajectory(W, torch.arange(5), ["w"], [(4,)], {"trained_in": bad})
    assert kt.Trajectory(W, torch.arange(5), ["w"], [(4,)], {"trained_in": "bfloat16"}).meta["trained_in"] == "bfloat16"


def test_fields_edited_after_construction_are_refused_where_used():
    """A review: meta['lrs'] of 5 entries for 31 snapshots, set after construction, was read (the gradient
    scaled by 2), and snapshots cut to 20 columns against 31 steps gave a fixed point."""
    import warnings
    T, n = 31, 12
    W = torch.cumsum(torch.randn(n, T, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), 1)
    make = lambda: kt.Trajectory(W.clone(), torch.arange(T), ["w"], [(n,)], {"lrs": [0.1] * T, "every": 1})  # noqa: E731
    for edit, match in [(lambda t: t.meta.__setitem__("lrs", [0.05] * 5), r"meta\['lrs'\] must hold one learning "
                                                                           r"rate per snapshot \(31\), got 5"),
                        (lambda t: setattr(t, "snapshots", t.snapshots[:, :20]), "steps")]:
        t = make()
        edit(t)
        for use in (lambda: kt.koopman(t), lambda: kt.estimate_limit(t, method="mpe")):
            with warnings.catch_warnings(), pytest.raises(ValueError, match=match):
                warnings.simplefilter("ignore")
                use()
