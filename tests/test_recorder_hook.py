"""The recorder's step hook: checked once per change, not per step, and never stale.

The hook walks the model only when something may have changed (a registration anywhere, a
recorded tensor with new storage or shape, or every ``watch.CHECK_EVERY`` steps), copies on
the CPU in one call (:mod:`koopman_tut.recording.rows`) into storage with transparent huge pages.
These tests pin what that must not lose.
"""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import koopman_tut as kt
from koopman_tut.numerics import native
from koopman_tut.recording import watch
from koopman_tut.recording.storage import allocate


def train_steps(model, opt, n, shape=(5, 4)):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        opt.zero_grad()
        x = torch.randn(*shape, generator=g).to(next(model.parameters()).dtype)
        model(x).float().pow(2).mean().backward()
        opt.step()
        out.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone())
    return out


def test_channels_last_weights_are_recorded_as_they_train():
    """A channels_last convolution weight is not contiguous: its flat form is a copy, which a
    view cache would freeze (the conv weight then looked constant over the window)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).to(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = kt.TrajectoryRecorder(model, opt, stop=4)
    states = train_steps(model, opt, 4, shape=(5, 3, 8, 8))
    W = rec.trajectory().snapshots
    for k, state in enumerate(states, start=1):
        assert torch.equal(W[:, k], state)
    assert not torch.equal(W[:108, 0], W[:108, -1])  # the conv weight moved


def test_the_model_is_walked_once_per_change_not_per_step(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=200)
    walks = []
    walk = rec._walk  # (the after-step check reads the model through _current too, at its own steps)
    monkeypatch.setattr(rec, "_walk", lambda s: walks.append(rec.step) or walk(s))
    train_steps(model, opt, 10)
    assert walks == []  # nothing changed: no walk (construction walked once)
    kt.pruning.apply_masks(model, {"2.weight": torch.tensor([[True, False, True], [False, True, True]])})
    train_steps(model, opt, 3)
    assert walks == [11]  # the registration of weight_orig / weight_mask was seen at the next step
    used = torch.cat([kt.recording.params.current_value(model, n).reshape(-1) for n in rec.names])
    assert torch.equal(rec.trajectory().snapshots[:, -1], used)  # pruned: orig * mask, as the model uses them
    train_steps(model, opt, watch.CHECK_EVERY)
    assert walks[1:] == [11 + watch.CHECK_EVERY]  # and the periodic walk


@pytest.mark.parametrize("change", ["del", "private dict", "to meta"])
def test_a_tensor_swapped_without_a_registration_is_caught_at_the_next_step(monkeypatch, change):
    """``del m.bias`` (a plain tensor in its place), a write into ``_parameters`` and ``model.to()`` building new
    Parameters register nothing: each recorded tensor's slot in its module is checked at every step, so the
    next step raises, long before the periodic walk (made never to come here), and nothing is written."""
    monkeypatch.setattr(watch, "CHECK_EVERY", 10**9)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=40)
    train_steps(model, opt, 1)
    if change == "del":
        del model[2].bias
        model[2].bias = torch.zeros(2)  # a plain attribute now, no registration
        match = r"'2\.bias' was removed"
    elif change == "private dict":
        model[0]._parameters["weight"] = nn.Parameter(model[0].weight.detach().clone())
        match = r"'0\.weight' was replaced"
    else:
        model.to("meta")  # new Parameters in the private dicts; the optimizer still holds the old ones
        match = r"'0\.weight' was replaced"
    with pytest.raises(RuntimeError, match=match):
        opt.step()  # the optimizer's old tensors have their grads: it steps, and the hook runs
    assert rec.steps == [0, 1]


def test_same_storage_new_shape_is_caught_at_once():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=40)
    train_steps(model, opt, 1)
    model[0].weight.data = model[0].weight.data[:2]  # same first address, another shape
    model[0].weight.grad = None  # so that the optimizer steps over it and the hook runs
    with pytest.raises(RuntimeError, match=r"'0\.weight' changed shape"):
        opt.step()
    assert rec.steps == [0, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("route", ["compiled", "numpy", "torch"])
@pytest.mark.parametrize("threads", [1, 2])
def test_every_copy_route_records_the_same_values(dtype, route, threads, monkeypatch):
    """Parameters of the storage's dtype take the compiled copy (numpy's where it was not built, torch's for
    bfloat16 then); parameters of another dtype, torch's conversion. Each records the values in use, bit for bit,
    on one thread or two (a row of 361 KiB in float32: the compiled copy splits rows from 256 KiB)."""
    if route != "compiled":
        monkeypatch.setattr(native, "row_copy", lambda *_: None)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 300), nn.ReLU(), nn.Linear(300, 2))
    model.to(dtype if route != "torch" else torch.float32 if dtype == torch.float64 else torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=3, dtype=dtype)
    w, built = rec._writer, native._built() is not None
    compiled, numpy_route = route == "compiled" and built, route == "numpy" or (route == "compiled" and not built)
    assert (w.copy is not None) == compiled
    assert (w.direct is not None) == (numpy_route and dtype != torch.bfloat16)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        states = train_steps(model, opt, 3, shape=(5, 300))
    finally:
        torch.set_num_threads(before)
    W = rec.trajectory().snapshots
    for k, state in enumerate(states, start=1):
        assert torch.equal(W[:, k], state.to(dtype))


def direct_recording(route, monkeypatch, stop):
    """(model, optimizer, recorder) of a Linear(300, 200) recorded on the "compiled" or the "numpy" route."""
    if route == "numpy":
        monkeypatch.setattr(native, "row_copy", lambda *_: None)
    torch.manual_seed(0)
    model = nn.Linear(300, 200)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=stop)
    assert (rec._writer.copy if route == "compiled" else rec._writer.direct) is not None or native._built() is None
    return model, opt, rec


@pytest.mark.parametrize("route", ["compiled", "numpy"])
@pytest.mark.parametrize("what", ["parameters", "storage"])
def test_data_moved_inside_its_storage_is_followed(route, what, monkeypatch):
    """``share_memory_()`` (as torch.multiprocessing does to a tensor it sends) moves a tensor's data inside the same
    storage and frees the old memory: no identity check sees it, and the direct routes' addresses went stale (rows
    read from freed memory, or written into memory handed out again). They take the new addresses."""
    model, opt, rec = direct_recording(route, monkeypatch, stop=5)
    train_steps(model, opt, 1, shape=(5, 300))
    moved = model.weight if what == "parameters" else rec.storage
    before = moved.data_ptr()
    (model.share_memory() if what == "parameters" else rec.trajectory().snapshots.share_memory_())
    assert moved.data_ptr() != before
    junk = [torch.full((300 * 200,), 7.0) for _ in range(20)]  # the freed memory handed out again
    states = train_steps(model, opt, 4, shape=(5, 300))
    W = rec.trajectory().snapshots
    for k, state in enumerate(states, start=2):
        assert torch.equal(W[:, k], state), k
    assert all(bool(j.eq(7.0).all()) for j in junk)


@pytest.mark.parametrize("route", ["compiled", "numpy"])
def test_a_recorded_storage_cannot_move_under_the_copy(route, monkeypatch):
    """The direct routes copy from addresses taken at a walk: a parameter's storage freed and allocated
    anew (``storage().resize_``, as FSDP frees unsharded parameters) would leave them reading freed
    memory, with no change to the tensor that the per-step check could see. It is refused instead."""
    model, opt, rec = direct_recording(route, monkeypatch, stop=3)
    storage = model.weight.untyped_storage()
    with pytest.raises(RuntimeError, match="not resizable"):
        storage.resize_(0)
    with pytest.raises(RuntimeError, match="not resizable"):
        rec.storage.untyped_storage().resize_(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_large_cpu_storage_is_zeroed_writable_and_freed(dtype):
    rows = allocate(8, 2**19, dtype, torch.device("cpu"), 0.8)  # >= 2 MiB: the huge-page route on Linux
    assert rows.shape == (8, 2**19) and rows.dtype == dtype and not rows.any()
    rows[3] = 1.5
    view = rows[3:5]
    del rows
    assert view[0].eq(1.5).all() and not view[1].any()  # the mapping lives as long as a view of it


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def recorded_rows_follow(model, opt, change, n=6, **kw):
    """Record, change the model after 2 steps, train on; every row must equal the values in use."""
    rec = kt.TrajectoryRecorder(model, opt, stop=n, **kw)
    used = []
    for k in range(n):
        if k == 2:
            change(model)
        train_steps(model, opt, 1)
        used.append(torch.cat([kt.recording.params.current_value(model, m).detach().reshape(-1) for m in rec.names]))
    W = rec.trajectory().snapshots.double()
    return max(float((W[:, k + 1] - u.double()).abs().max()) for k, u in enumerate(used))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # the numpy and the torch copy routes
@pytest.mark.parametrize("change", ["transpose", "set_", "as_strided_"])
def test_a_square_weight_transposed_in_place_is_recorded_as_it_now_is(change, dtype):
    """Same storage, offset and shape, new strides: only a check of the strides sees it."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    swap = {"transpose": lambda m: setattr(m[0].weight, "data", m[0].weight.data.t()),
            "set_": lambda m: m[0].weight.set_(m[0].weight.detach().t()),
            "as_strided_": lambda m: m[0].weight.as_strided_((4, 4), (1, 4))}[change]
    assert recorded_rows_follow(model, opt, lambda m: torch.no_grad()(swap)(m), dtype=dtype) == 0.0


@pytest.mark.parametrize("how", ["buffers", "data"])
def test_a_pruning_mask_swapped_without_a_registration_is_followed(how):
    model = mlp()
    kt.pruning.apply_masks(model, {"0.weight": torch.rand(4, 4, generator=torch.Generator().manual_seed(1)) > 0.3})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def swap(m):
        if how == "buffers":
            m[0]._buffers["weight_mask"] = torch.zeros(4, 4)
        else:
            m[0].weight_mask.data = torch.zeros(4, 4)
    assert recorded_rows_follow(model, opt, swap) == 0.0


def test_optimizer_load_state_dict_is_followed():
    """load_state_dict gives the optimizer new param_groups dicts: the lr logged is the new one,
    and so are the settings that changed with them."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    saved = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9).state_dict()
    rec = kt.TrajectoryRecorder(model, opt, stop=6)
    train_steps(model, opt, 2)
    opt.load_state_dict(saved)
    train_steps(model, opt, 4)
    assert rec.lrs == [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01]
    assert momentum_logged(rec) == [0.0] * 3 + [0.9] * 4  # the step that produced snapshot 3 had it


def test_a_group_dict_replaced_in_the_same_list_is_followed(monkeypatch):
    """``opt.param_groups[0] = {...}`` keeps the list object: the next step logs the lr the optimizer now
    uses, also when the new dict compares equal to the old one (and only its lr changes later)."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=8)
    walks = []
    walk = rec._walk  # (the after-step check reads the model through _current too, at its own steps)
    monkeypatch.setattr(rec, "_walk", lambda s: walks.append(rec.step) or walk(s))
    train_steps(model, opt, 2)
    opt.param_groups[0] = dict(opt.param_groups[0], lr=0.5)
    train_steps(model, opt, 1)
    old = opt.param_groups[0]
    opt.param_groups[0] = dict(old)  # equal to the old dict, another object
    assert opt.param_groups[0] == old
    train_steps(model, opt, 1)
    opt.param_groups[0]["lr"] = 0.25  # in the new dict only, which the optimizer uses
    train_steps(model, opt, 2)
    assert rec.lrs == [0.1, 0.1, 0.1, 0.5, 0.5, 0.25, 0.25]
    assert walks == [3, 4]  # once per replacement, not at every step


def test_recorded_parameters_split_over_two_groups_raise_at_every_step():
    """A step that finds the recorded parameters in more optimizer groups than at the start raises;
    caught, the next steps raise again rather than record with the old groups' lrs."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=10)
    train_steps(model, opt, 1)
    g, params = opt.param_groups[0], list(model.parameters())
    opt.param_groups = [dict(g, params=params[:1], lr=0.5), dict(g, params=params[1:], lr=0.7)]
    for _ in range(3):
        with pytest.raises(RuntimeError, match=r"changed optimizer param groups.*'0.bias' moved from group 0 to group 1"):
            train_steps(model, opt, 1)
    assert rec.steps == [0, 1] and rec.lrs == [0.1, 0.1]


def two_group_recorder(**kw):
    """A model in two SGD groups (lr 0.02: the first weight; 0.002: the rest), recorded over steps 0-100."""
    model = mlp()
    params = list(model.parameters())
    opt = torch.optim.SGD([{"params": params[:1], "lr": 0.02}, {"params": params[1:], "lr": 0.002}], lr=0.1)
    return model, opt, params, kt.TrajectoryRecorder(model, opt, stop=100, **kw)


@pytest.mark.parametrize("when", [3, 80])  # before the window's first walk is due and after CHECK_EVERY steps
def test_a_parameter_moved_to_another_group_raises_at_the_next_step(when):
    """A recorded tensor moved between groups in place (the dicts and lists stay the same objects) would have
    its steps undone with the other group's lr (a review: 9x off, silent): the next step raises, and again."""
    model, opt, params, rec = two_group_recorder(start=50)
    train_steps(model, opt, when)
    opt.param_groups[1]["params"].remove(params[1])
    opt.param_groups[0]["params"].append(params[1])
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"'0.bias' moved from group 1 to group 0.*new TrajectoryRecorder"):
            train_steps(model, opt, 1)
    assert rec.steps == list(range(50, when + 1))


def test_groups_swapped_or_a_parameter_removed_raise():
    model, opt, params, rec = two_group_recorder()
    train_steps(model, opt, 2)
    opt.param_groups.reverse()  # the same dicts, in the other order: each group's log row would change rows
    with pytest.raises(RuntimeError, match=r"moved from group 0 to group 1"):
        train_steps(model, opt, 1)
    opt.param_groups.reverse()
    train_steps(model, opt, 1)  # as it was: recording goes on (step 3, which raised, is not recorded)
    assert rec.steps == [0, 1, 2, 4]
    assert opt.param_groups[1]["params"].pop() is params[-1]  # out of the optimizer: its rows would stand still
    with pytest.raises(RuntimeError, match=r"moved from group 1 to no group"):
        train_steps(model, opt, 1)


def test_two_parameters_exchanged_between_groups_raise_at_the_next_step():
    """An exchange keeps every params list's identity and length; each recorded tensor's place in its list is
    compared at every step, so the next step raises (it was seen only by the walk every CHECK_EVERY steps: up to
    63 snapshots undone with the other group's lr)."""
    model, opt, params, rec = two_group_recorder()
    train_steps(model, opt, 2)
    a, b = opt.param_groups[0]["params"], opt.param_groups[1]["params"]
    a[0], b[0] = b[0], a[0]
    with pytest.raises(RuntimeError, match=r"'0.weight' moved from group 0 to group 1"):
        train_steps(model, opt, 1)
    assert rec.steps == [0, 1, 2]
    a[0], b[0] = b[0], a[0]
    b[0] = torch.nn.Parameter(b[0].detach().clone())  # a recorded tensor replaced in its list by another one
    with pytest.raises(RuntimeError, match=r"'0.bias' moved from group 1 to no group"):
        train_steps(model, opt, 1)
    assert rec.steps == [0, 1, 2]


def test_load_state_dict_with_the_same_arrangement_records_on():
    model, opt, params, rec = two_group_recorder()
    train_steps(model, opt, 2)
    opt.load_state_dict(opt.state_dict())  # new dicts, the same tensors in the same groups
    train_steps(model, opt, 2)
    assert rec.steps == [0, 1, 2, 3, 4]


def test_stop_changed_while_recording_is_followed():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=5, max_snapshots=20)
    rec.stop = 3  # earlier: the window ends there
    train_steps(model, opt, 10)
    assert rec.steps == [0, 1, 2, 3]
    rec = kt.TrajectoryRecorder(model, opt, stop=5, max_snapshots=20)  # storage for steps 0-5
    rec.stop = 8  # later: the storage fills up first, and says so
    with pytest.warns(kt.recording.recorder.RecorderFullWarning, match="snapshot of step 6"):
        train_steps(model, opt, 10)
    assert rec.steps == [0, 1, 2, 3, 4, 5]
    for bad, error in [("7", TypeError), (2.5, TypeError), (-1, ValueError)]:
        with pytest.raises(error, match=r"stop must be an integer >= 0"):
            rec.stop = bad
    assert rec.stop == 8


def test_lrs_follow_schedules_hand_edits_and_tensors_changed_in_place():
    """The lrs are converted only when a value read changes: a schedule, a hand edit, and a tensor
    lr changed in place (equal to itself, so read at every snapshot) are all logged."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    rec = kt.TrajectoryRecorder(model, opt, stop=8)
    for _ in range(4):
        train_steps(model, opt, 1)
        sched.step()
    opt.param_groups[0]["lr"] = torch.tensor(0.02)
    train_steps(model, opt, 2)
    opt.param_groups[0]["lr"].fill_(0.01)
    train_steps(model, opt, 2)
    assert rec.lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.02, 0.02, 0.01, 0.01])
    assert rec.group_lrs == [[v] for v in rec.lrs]
    assert rec._log.changed_at is None  # momentum never changed
    opt.param_groups[0]["momentum"] = 0.5
    train_steps(model, opt, 1)
    assert rec._log.changed_at is None  # stop=8: the recording is over, nothing is read


def test_a_float_lr_replaced_by_an_equal_looking_low_precision_tensor_is_logged():
    # 0.0999 == bfloat16(0.1) compares equal; the lr actually used is 0.100097656
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0999)
    rec = kt.TrajectoryRecorder(model, opt, stop=3)
    train_steps(model, opt, 1)
    opt.param_groups[0]["lr"] = torch.tensor(0.1, dtype=torch.bfloat16)
    train_steps(model, opt, 2)
    assert rec.lrs == [0.0999, 0.0999, 0.10009765625, 0.10009765625]


def test_a_tensor_momentum_changed_in_place_is_logged():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=torch.tensor(0.9))
    rec = kt.TrajectoryRecorder(model, opt, stop=4)
    train_steps(model, opt, 2)
    opt.param_groups[0]["momentum"].fill_(0.5)
    train_steps(model, opt, 2)
    assert momentum_logged(rec) == pytest.approx([0.9] * 3 + [0.5] * 2)  # read from the float32 tensor


def test_momentum_changed_by_hand_is_seen_at_the_next_snapshot():
    """In a window far shorter than watch.CHECK_EVERY, with the lr kept: the settings are compared
    at every snapshot."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = kt.TrajectoryRecorder(model, opt, stop=20, every=3)
    train_steps(model, opt, 4)
    opt.param_groups[0]["momentum"] = 0.5
    train_steps(model, opt, 10)
    assert rec.steps == [0, 3, 6, 9, 12] and momentum_logged(rec) == [0.9, 0.9, 0.5, 0.5, 0.5]


def momentum_logged(rec) -> list[float]:
    """The first group's momentum logged with each snapshot (meta['group_settings'], kept once it changed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # logged, not warned about
        meta = rec.trajectory().meta
    return [float(row[0]["momentum"]) for row in meta["group_settings"]]


@pytest.mark.parametrize("kw, match", [(dict(params=["0"]), "no parameter '0'.*Linear, not a tensor"),
                                       (dict(params=["0.in_features"]), "no parameter '0.in_features'"),
                                       (dict(sync="yes"), "sync must be True or False"),
                                       (dict(model=None), "model must be a torch.nn.Module")])
def test_bad_arguments_are_named(kw, match):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kw = {"model": model, **kw}
    with pytest.raises((TypeError, ValueError), match=match):
        kt.TrajectoryRecorder(kw.pop("model"), opt, stop=3, **kw)


def test_trajectory_copy_must_be_a_bool():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=3)
    train_steps(model, opt, 2)
    with pytest.raises(TypeError, match=r"copy must be True or False, got 'no'"):
        rec.trajectory(copy="no")  # a copy before: any non-empty string is true
    assert rec.trajectory(copy=np.bool_(False)).snapshots.data_ptr() == rec.storage.data_ptr()


@pytest.mark.parametrize("change", ["double", "half"])
def test_a_model_whose_dtype_changes_while_recording_raises(change):
    """meta's trained_in (the coarsest dtype trained: the rounding each step allows for) would no longer hold:
    model.half() or .double() mid-run raises at the next step, naming the change, before anything is written."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=10)
    train_steps(model, opt, 2)
    getattr(model, change)()
    with pytest.raises(RuntimeError, match=rf"'0.weight' changed dtype from float32 \(recorded\) to "
                                           rf"{'float64' if change == 'double' else 'float16'}"):
        opt.step()  # the gradients of the last step, converted with the parameters
    assert rec.steps == [0, 1, 2] and rec.trajectory().meta["trained_in"] == "float32"


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_setting_a_trajectory_cannot_hold_raises_at_the_step_it_is_set_and_what_came_before_stays_readable(
        on_disk, tmp_path):
    # a schedule that took the lr to NaN at step 4 was recorded, and then the whole recording was unreadable:
    # rec.trajectory() and Trajectory.load refused "the learning rates in traj.meta ... must be finite numbers"
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: float("nan") if s >= 3 else 1.0)
    path = tmp_path / "t.kt" if on_disk else None
    rec = kt.TrajectoryRecorder(model, opt, stop=8, path=path)
    for _ in range(3):
        train_steps(model, opt, 1)
        sched.step()
    with pytest.raises(ValueError, match=r"optimizer.param_groups\[0\]\['lr'\] must be a finite number, got nan "
                                         r"at step 4 \(set while recording.*the snapshot of step 4 is not recorded"):
        train_steps(model, opt, 1)
    opt.param_groups[0].update(lr=0.1, momentum=1.0)  # a hand edit
    with pytest.raises(ValueError, match=r"optimizer.param_groups\[0\]\['momentum'\] must be a finite number >= 0 "
                                         r"and < 1 \(an SGD setting\), got 1.0 at step 5"):
        train_steps(model, opt, 1)
    assert rec.steps == [0, 1, 2, 3] and rec.lrs == [0.1] * 4
    readable = [rec.trajectory()] + ([kt.Trajectory.load(path)] if on_disk else [])
    assert all(t.steps.tolist() == [0, 1, 2, 3] and t.meta["lrs"] == [0.1] * 4 for t in readable)
    opt.param_groups[0]["momentum"] = 0.5  # settings it can hold: recorded on
    train_steps(model, opt, 1)
    assert rec.steps == [0, 1, 2, 3, 6] and rec.trajectory().meta["group_settings"][-1][0]["momentum"] == 0.5
    rec.remove()
