"""The recorder's per-step checks in one compiled call (:mod:`koopman_tut.recording.step_checks`).

``holds`` (``_fused.c``) stands in for the Python checks on the steps where nothing changed. It must never answer
True where a Python check would fail: every change the recorder catches is made here, once with the compiled
call and once without it, and what the recorder does (its rows, steps, settings log, warnings, errors and the
step that raised) must be the same.
"""
import shutil
import warnings

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune

import koopman_tut as kt
from koopman_tut.numerics import native
from koopman_tut.recording import step_checks, watch

COMPILER = shutil.which("cc") or shutil.which("gcc")


@pytest.fixture
def holds():
    if native.checker() is None:
        if COMPILER and native.switched_on():
            pytest.fail(f"a C compiler ({COMPILER}) is here but koopman_tut/numerics/_fused.c was not built "
                        "or not loaded: pip install -e . and read its output")
        pytest.skip("no C compiler when the package was installed: the recorder checks in Python alone")
    return native.checker()


def spec_of(checks=(), pairs=(), held=(), at=()):
    holders, keys, values = (tuple(c) for c in zip(*checks)) if checks else ((), (), ())
    return (holders, keys, values, torch.Tensor.is_set_to, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs),
            torch.Tensor.data_ptr, tuple(held), tuple(at), step_checks.ABSENT)


def test_holds_checks_each_kind_and_refuses_a_spec_of_another_form(holds):
    d, lst, x = {"a": 1}, [3, 4], torch.zeros(2, 2)
    assert holds(spec_of([(d, "a", d["a"]), (lst, 1, lst[1]), (lst, None, 2), (d, "b", step_checks.ABSENT)],
                         [(x, x.detach())], [x], [x.data_ptr()]))
    assert not holds(spec_of([(d, "a", 1.0)]))  # identity, not equality
    assert not holds(spec_of([(d, "b", None)]))  # a missing key is not None
    assert not holds(spec_of([(lst, 2, 4)])) and not holds(spec_of([(lst, -1, 4)]))  # out of range
    assert not holds(spec_of([(lst, None, 3)])) and not holds(spec_of([((3, 4), 0, 3)]))  # a length; a tuple
    assert not holds(spec_of([(lst, None, 2 ** 70)])) and not holds(spec_of([(lst, 2 ** 70, 4)]))  # no such list
    assert not holds(spec_of(pairs=[(x, x.detach().t())])) and not holds(spec_of(pairs=[(x, "no tensor")]))
    assert not holds(spec_of(held=[x], at=[x.data_ptr() + 4]))

    class BadHash:
        def __hash__(self):
            raise RuntimeError("no hash")

    assert not holds(spec_of([(d, BadHash(), 1)]))  # a lookup that raises is a change, the error cleared
    with pytest.raises(TypeError, match="spec must be"):
        holds(spec_of()[:9])
    with pytest.raises(TypeError, match="spec must be"):
        holds(((d,), ("a", "b"), (1,), *spec_of()[3:]))


def square_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))


def run(change, at, steps=30, two_groups=False):
    """Train with a recorder, make ``change`` after step ``at``; what the recorder did, as comparable values."""
    model = square_model()
    groups = ([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}] if two_groups
              else model.parameters())
    opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True)
    rec = kt.TrajectoryRecorder(model, opt, stop=steps)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    error = None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for step in range(steps):
            opt.zero_grad()
            model(x.to(model[0].weight.dtype)).pow(2).mean().backward()
            try:
                opt.step()
            except RuntimeError as e:
                error = (step, str(e))
                break
            if step == at:
                change(model, opt)
    out = {"error": error, "warnings": [(type(w.message).__name__, str(w.message)) for w in seen]}
    if rec.steps:
        traj = rec.trajectory(copy=True)
        out.update(steps=rec.steps, rows=traj.snapshots, meta={k: v for k, v in traj.meta.items()})
    rec.remove()
    return out


def in_place(change):
    def changed(model, opt):
        with torch.no_grad():
            change(model[0].weight)
    return changed


def swap_between_groups(model, opt):
    g0, g1 = opt.param_groups
    g0["params"][0], g1["params"][0] = g1["params"][0], g0["params"][0]


CHANGES = {
    "nothing": lambda m, o: None,
    "data replaced": lambda m, o: setattr(m[0].weight, "data", m[0].weight.data.clone()),
    "transposed": lambda m, o: setattr(m[0].weight, "data", m[0].weight.data.t()),
    "set_": in_place(lambda w: w.set_(w.detach().t())),
    "as_strided_": in_place(lambda w: w.as_strided_((4, 4), (1, 4))),
    "share_memory": lambda m, o: m.share_memory(),
    "parameter registered": lambda m, o: setattr(m[0], "weight", nn.Parameter(m[0].weight.detach().clone())),
    "private dict": lambda m, o: m[0]._parameters.__setitem__("weight", nn.Parameter(m[0].weight.detach() * 1)),
    "group dict replaced": lambda m, o: o.param_groups.__setitem__(0, dict(o.param_groups[0])),
    "group list replaced": lambda m, o: setattr(o, "param_groups", list(o.param_groups)),
    "params list replaced": lambda m, o: o.param_groups[0].__setitem__("params", list(o.param_groups[0]["params"])),
    "lr by hand": lambda m, o: o.param_groups[0].__setitem__("lr", 0.01),
    "lr as a tensor": lambda m, o: o.param_groups[0].__setitem__("lr", torch.tensor(0.05)),
    "momentum by hand": lambda m, o: o.param_groups[0].__setitem__("momentum", 0.5),
    "state cleared": lambda m, o: o.state.clear(),
    "state replaced": lambda m, o: setattr(o, "state", type(o.state)(dict, o.state)),
    "buffer replaced": lambda m, o: o.state[m[0].weight].__setitem__(
        "momentum_buffer", o.state[m[0].weight]["momentum_buffer"].clone()),
    "load_state_dict": lambda m, o: o.load_state_dict(o.state_dict()),
    "pruned": lambda m, o: prune.l1_unstructured(m[2], "weight", amount=0.5),
    "clamped after the step": in_place(lambda w: w.clamp_(-0.01, 0.01)),
    "model.double()": lambda m, o: m.double(),
    "registration elsewhere": lambda m, o: nn.Linear(2, 2),
    "parameter appended": lambda m, o: o.param_groups[0]["params"].append(nn.Parameter(torch.zeros(2))),
    "group added": lambda m, o: o.add_param_group({"params": [nn.Parameter(torch.zeros(2))]}),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("at", [2, 70])  # before the first periodic walk and after it (the walk is due at 64)
def test_the_compiled_checks_record_what_the_python_checks_record(holds, monkeypatch, change, at):
    steps, calls, original = 90 if at == 70 else 30, [], step_checks.unchanged
    monkeypatch.setattr(step_checks, "unchanged", lambda rec, s: calls.append(s) or original(rec, s))
    fast = run(CHANGES[change], at, steps)
    # the compiled call declines the step after any change the Python checks look for (they run then; the loop's
    # step `at` is optimizer step at + 1)
    assert (at + 2 in calls) == (change not in ("nothing", "clamped after the step"))
    monkeypatch.setattr(native, "checker", lambda: None)
    slow = run(CHANGES[change], at, steps)
    assert fast.keys() == slow.keys() and fast["error"] == slow["error"] and fast["warnings"] == slow["warnings"]
    if "rows" in fast:
        assert fast["steps"] == slow["steps"] and fast["meta"] == slow["meta"]
        assert torch.equal(fast["rows"], slow["rows"])


@pytest.mark.parametrize("at", [2, 70])
def test_a_tensor_swapped_between_groups_raises_on_both_routes(holds, monkeypatch, at):
    fast = run(swap_between_groups, at, 90, two_groups=True)
    monkeypatch.setattr(native, "checker", lambda: None)
    slow = run(swap_between_groups, at, 90, two_groups=True)
    assert fast["error"] == slow["error"] and fast["error"][0] == at + 1 and "moved from group" in fast["error"][1]
    assert fast["steps"] == slow["steps"] == list(range(at + 2)) and torch.equal(fast["rows"], slow["rows"])


def test_the_python_checks_run_only_when_a_walk_is_due_or_something_changed(holds, monkeypatch):
    calls = []
    original = step_checks.unchanged
    monkeypatch.setattr(step_checks, "unchanged", lambda rec, s: calls.append(s) or original(rec, s))
    model = square_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    rec = kt.TrajectoryRecorder(model, opt, stop=150)
    x = torch.randn(16, 4)
    for step in range(150):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        if step == 99:
            opt.param_groups[0]["lr"] = 0.02
    # the state at construction, the first step (no momentum buffer yet: the log looks for one), the walks due and
    # the step after the lr changed
    assert calls == [0, 1, watch.CHECK_EVERY, 101, 2 * watch.CHECK_EVERY] and rec._fast is not None
    assert rec.trajectory().meta["lrs"][101] == 0.02 and rec.trajectory().meta["lrs"][100] == 0.05
