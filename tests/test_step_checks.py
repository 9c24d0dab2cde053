"""The recorder's per-step checks in one compiled call (:mod:`koopman_tut.recording.step_checks`).

``holds`` (``_fused.c``) stands in for the Python checks on the steps where nothing changed. It must never answer
True where a Python check would fail: every change the recorder catches is made here, once with the compiled
call and once without it, and what the recorder does (its rows, steps, settings log, warnings, errors and the
step that raised) must be the same.
"""
import copy
import sys
import gc
import warnings

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune
from torch.overrides import TorchFunctionMode

import koopman_tut as kt
from koopman_tut.numerics import native
from koopman_tut.recording import step_checks, watch


@pytest.fixture
def holds(require_native):
    return require_native(native.checker(), "the recorder checks in Python alone")


def spec_of(checks=(), pairs=(), held=(), at=()):
    holders, keys, values = (tuple(c) for c in zip(*checks)) if checks else ((), (), ())
    return (holders, keys, values, torch.Tensor.is_set_to, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs),
            torch.Tensor.data_ptr, tuple(held), tuple(at), step_checks.ABSENT)


def test_holds_checks_each_kind_and_refuses_a_spec_of_another_form(holds):
    d, lst, x = {"a": 1}, [3, 4], torch.zeros(2, 2)
    assert holds(spec_of([(d, "a", d["a"]), (lst, 1, lst[1]), (lst, None, 2), (d, "b", step_checks.ABSENT)],
                         [(x, x.detach())], [x], [x.data_ptr()]))
    assert not holds(spec_of([(d, "a", 1.0)]))  # identity, not equality

    class Holder:
        value = property(lambda self: self.__dict__.get("v", d))

    h = Holder()
    assert holds(spec_of([(h, "value", d)])) and not holds(spec_of([(h, "missing", d)]))  # an attribute, as read
    h.v = lst
    assert not holds(spec_of([(h, "value", d)])) and not holds(spec_of([(h, 0, d)]))  # a key that is no name
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

    class Interrupted:
        value = property(lambda self: (_ for _ in ()).throw(KeyboardInterrupt("Ctrl-C in a property")))

    with pytest.raises(KeyboardInterrupt, match="Ctrl-C in a property"):  # not cleared: the interrupt is one-shot
        holds(spec_of([(Interrupted(), "value", d)]))
    assert holds(spec_of([(d, "a", 1)]))  # nothing left raised
    with pytest.raises(TypeError, match="spec must be"):
        holds(spec_of()[:9])
    with pytest.raises(TypeError, match="spec must be"):
        holds(((d,), ("a", "b"), (1,), *spec_of()[3:]))


def test_holds_copies_the_row_beside_its_checks_once_the_addresses_hold(holds):
    """With a row to copy (``RowCopy.args``): the addresses checked first (data moved inside their storage leave
    them freed: no copy at all), then the row copied while the rest is checked, on one thread or several."""
    d, x = {"a": 1}, torch.randn(70_001)
    pieces = [x[:3], x[3:50_000], x[50_000:]]  # cut anywhere: 280 KiB, blocks of 64 KiB

    class Interrupted:
        value = property(lambda self: (_ for _ in ()).throw(KeyboardInterrupt("Ctrl-C in a property")))

    store = torch.full((3, len(x)), 7.0)
    copy = native.row_copy(pieces, store)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            args = copy.args(1)
            assert not holds(spec_of([(d, "a", 1)], held=[x], at=[x.data_ptr() + 4]), *args)
            assert bool(store.eq(7.0).all())  # nothing copied from addresses that no longer hold
            assert holds(spec_of([(d, "a", 1)], [(x, x.detach())], [x], [x.data_ptr()]), *args)
            assert torch.equal(store[1], x) and bool(store[::2].eq(7.0).all())
            assert not holds(spec_of([(d, "a", 2)]), *copy.args(2))  # the rest fails: False (the row is no snapshot)
            store.fill_(7.0)
    finally:
        torch.set_num_threads(before)
    with pytest.raises(KeyboardInterrupt):  # raised before the copy starts, and not cleared
        holds(spec_of([(Interrupted(), "value", d)]), *copy.args(0))
    assert bool(store.eq(7.0).all())
    bad_args = ((0, *args[1:]), args[:4], (*args[:3], -1, 2), (*args[:4], 0), (*args[:4], "2"), (*args[:3], 2**40, 2))
    for bad in bad_args:
        with pytest.raises(TypeError, match="five positive ints"):
            holds(spec_of(), *bad)


def square_model(seed=0, wide=False):
    """Two 4 x 4 layers; ``wide``: and a third of 20,480 parameters, a row of 80 KiB (the compiled checks copy a row
    of 64 KiB or more on torch's other threads while they check; a smaller one after them, on the calling thread)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), *([nn.Linear(4, 4096)] if wide else []))


def train(model, opt, steps, after_step):
    """``steps`` full-batch steps on one fixed batch, ``after_step(step)`` after each."""
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    for step in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        after_step(step)


def run(change, at, steps=30, two_groups=False, make_opt=None, wide=False):
    """Train with a recorder, make ``change`` after step ``at``; what the recorder did, as comparable values."""
    model = square_model(wide=wide)
    groups = ([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}] if two_groups
              else model.parameters())
    opt = (make_opt or (lambda m: torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True)))(model)
    rec = kt.TrajectoryRecorder(model, opt, stop=steps)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    error = None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for step in range(steps):
            opt.zero_grad()
            model(x.to(model[0].weight.dtype)).pow(2).mean().backward()
            if make_opt is not None:
                change(model, opt, step)  # before every step: it decides when to change the optimizer's make-up
            try:
                opt.step()
            except RuntimeError as e:
                error = (step, str(e))
                break
            if step == at and make_opt is None:
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


@pytest.fixture(params=["small row", "wide row, 2 threads"])
def wide(request):
    """Whether the model's row is copied beside the checks on another thread (80 KiB, torch on 2 threads)."""
    if request.param == "small row":
        yield False
        return
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield True
    torch.set_num_threads(before)


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("at", [2, 70])  # before the first periodic walk and after it (the walk is due at 64)
def test_the_compiled_checks_record_what_the_python_checks_record(holds, monkeypatch, change, at, wide):
    steps, calls, original = 90 if at == 70 else 30, [], step_checks.unchanged
    monkeypatch.setattr(step_checks, "unchanged", lambda rec, s: calls.append(s) or original(rec, s))
    fast = run(CHANGES[change], at, steps, wide=wide)
    # the compiled call declines the step after any change the Python checks look for (they run then; the loop's
    # step `at` is optimizer step at + 1)
    assert (at + 2 in calls) == (change not in ("nothing", "clamped after the step"))
    monkeypatch.setattr(native, "checker", lambda: None)
    slow = run(CHANGES[change], at, steps, wide=wide)
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
    calls, copies = [], []
    original, copy = step_checks.unchanged, native.RowCopy.__call__
    monkeypatch.setattr(step_checks, "unchanged", lambda rec, s: calls.append(s) or original(rec, s))
    monkeypatch.setattr(native.RowCopy, "__call__", lambda self, k: copies.append(k) or copy(self, k))
    model = square_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    rec = kt.TrajectoryRecorder(model, opt, stop=150)
    train(model, opt, 150, lambda step: step == 99 and opt.param_groups[0].__setitem__("lr", 0.02))
    # the state at construction, the first step (no momentum buffer yet: the log looks for one), the walks due and
    # the step after the lr changed; on the other steps the compiled checks copied the row beside them
    assert calls == [0, 1, watch.CHECK_EVERY, 101, 2 * watch.CHECK_EVERY] and rec._fast is not None
    assert copies == calls and len(rec.steps) == 151
    last = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(rec.trajectory().snapshots[:, -1], last)
    assert rec.trajectory().meta["lrs"][101] == 0.02 and rec.trajectory().meta["lrs"][100] == 0.05


class LayeredGroup(dict):
    """A param group whose reads see an override layer (its own __getitem__ and get)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.over = {}

    def __getitem__(self, key):
        return self.over[key] if key in self.over else dict.__getitem__(self, key)

    def get(self, key, default=None):
        return self[key] if key in self or key in self.over else default


class StateView(dict):
    """An optimizer state whose get() can read another mapping."""
    alt = None

    def get(self, key, default=None):
        src = self.alt if self.alt is not None else self
        return dict.__getitem__(src, key) if dict.__contains__(src, key) else default

    def __missing__(self, key):
        self[key] = value = {}
        return value


class Plain(torch.optim.SGD):
    pass


class Delegating(torch.optim.SGD):
    state = property(lambda self: self.__dict__["_fresh"])


class Heavy(torch.optim.Optimizer):
    """Heavy ball whose momentum is a group's 0-d tensor (the other group has none: not a logged setting)."""

    def __init__(self, groups, lr):
        super().__init__(groups, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in (p for p in g["params"] if p.grad is not None):
                d, mom = p.grad, g.get("momentum", 0)
                if mom:
                    st = self.state[p]
                    b = st.get("momentum_buffer")
                    d = st.setdefault("momentum_buffer", d.clone()) if b is None else b.mul_(float(mom)).add_(d)
                p.add_(d, alpha=-g["lr"])


def sgd(m, **kw):
    return torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, **kw)


def new_dict(m, o):
    o.__dict__ = dict(o.__dict__)
    o.param_groups = [dict(g) for g in o.param_groups]
    o.param_groups[0]["lr"] = 0.01
    o.state = type(o.state)(dict)  # a fresh state too: the momentum restarts


def delegate(m, o):
    o.__dict__["_fresh"] = type(o.state)(dict)  # the state the optimizer now reads: its momentum restarts
    o.__class__ = Delegating
    o._patch_step_function()


def state_view(m):
    o = sgd(m, foreach=False)
    o.state = StateView()
    return o


def heavy_changes(m, o):  # momentum switched on in place (the same object), then a restart
    if o.param_groups[0]["momentum"] == 0:
        o.param_groups[0]["momentum"].fill_(0.9)
    else:
        o.state.clear()


OPTIMIZERS = {  # name: (optimizer, change, steps at which it is made) where the change reaches the optimizer's make-up
    "__dict__ replaced": (sgd, new_dict, [4]),
    "class swapped for one with a state property": (lambda m: Plain(m.parameters(), lr=0.05, momentum=0.9), delegate,
                                                    [4]),
    "group dict subclass with its own reads": (
        lambda m: torch.optim.SGD([LayeredGroup(params=list(m.parameters()))], lr=0.05, momentum=0.9),
        lambda m, o: o.param_groups[0].over.__setitem__("lr", 0.01), [4]),
    "state with its own get": (state_view, lambda m, o: setattr(o.state, "alt", {
        p: {"momentum_buffer": torch.zeros_like(p)} for p in m.parameters()}), [4]),
    "a tensor momentum turned on in place": (
        lambda m: Heavy([{"params": m[0].parameters(), "momentum": torch.tensor(0.0)},
                         {"params": m[2].parameters()}], lr=0.05), heavy_changes, [2, 6]),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_what_an_optimizer_s_make_up_changes_is_recorded_alike_on_both_routes(holds, monkeypatch, name):
    """Found by a review: holds read the optimizer's old __dict__, a class's property never, dict subclasses raw,
    and a tensor momentum that was falsy when the spec was taken; the settings logs differed."""
    make, change, at = OPTIMIZERS[name]
    changes = lambda m, o, step: change(m, o) if step in at else None  # noqa: E731
    fast = run(changes, None, 12, make_opt=make)
    monkeypatch.setattr(native, "checker", lambda: None)
    slow = run(changes, None, 12, make_opt=make)
    assert fast["error"] is None and slow["error"] is None and fast["warnings"] == slow["warnings"]
    assert fast["meta"] == slow["meta"] and fast["meta"] != run(lambda *_: None, None, 12, make_opt=make)["meta"]
    assert torch.equal(fast["rows"], slow["rows"])


def test_nothing_of_the_optimizer_is_kept_alive_once_the_window_is_over(holds):
    """A spec holds the optimizer's state of its step: it goes when the window ends (and at remove())."""
    import weakref

    model = square_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    rec = kt.TrajectoryRecorder(model, opt, stop=5)
    inside = []  # the control: inside the window the spec is there
    train(model, opt, 10, lambda step: step == 2 and inside.append(rec._fast is not None))
    assert inside == [True]
    old = [weakref.ref(t) for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    gc.collect()
    assert rec._fast is None and old and not any(r() is not None for r in old)


class Meddling(torch.optim.SGD):
    """SGD whose ``param_groups`` property, read by the recorder's checks (compiled or Python) at their third
    step, runs ``meddle``: Python code inside the checks, which the compiled call runs before it copies the row."""
    meddle, reads = None, 0

    @property
    def param_groups(self):
        if sys._getframe(1).f_code.co_name in ("_record", "unchanged"):
            Meddling.reads += 1
            if Meddling.reads == 3:
                self.meddle()
        return self.__dict__["param_groups"]

    @param_groups.setter
    def param_groups(self, value):
        self.__dict__["param_groups"] = value


MEDDLING = {"the data moved (their old memory freed)": lambda m: m.share_memory(),
            "a weight changed in place": lambda m: m[0].weight.data.add_(1.0)}


@pytest.mark.parametrize("meddle", sorted(MEDDLING))
def test_python_code_run_by_the_checks_is_recorded_alike_on_both_routes(holds, monkeypatch, meddle, wide):
    # a review's findings on the first version, which copied beside every check: a property that moved the data
    # had the row copied from freed memory (wrong values, or a crash on the threaded path), and one that changed a
    # weight had the row taken before the change, where the Python route copies after its checks
    def record():
        model = square_model(wide=wide)
        opt = Meddling(model.parameters(), lr=0.05)
        opt.meddle, Meddling.reads = lambda: MEDDLING[meddle](model), 0
        rec = kt.TrajectoryRecorder(model, opt, stop=8)
        train(model, opt, 8, lambda step: None)
        assert Meddling.reads > 3
        return rec.trajectory(copy=True), torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    fast, last = record()
    assert torch.equal(fast.snapshots[:, -1], last)
    monkeypatch.setattr(native, "checker", lambda: None)
    slow, _ = record()
    assert fast.steps.tolist() == slow.steps.tolist() and torch.equal(fast.snapshots, slow.snapshots)


def test_no_spec_for_a_tensor_subclass_whose_torch_function_runs_python(holds):
    class Logged(torch.Tensor):  # its is_set_to and data_ptr go through Python: not beside the row's copy
        pass

    model = square_model()
    with torch.no_grad():
        model[0].weight = nn.Parameter(model[0].weight.detach().as_subclass(Logged))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = kt.TrajectoryRecorder(model, opt, stop=5)
    train(model, opt, 3, lambda step: None)
    assert step_checks.spec(rec) is None and rec._fast is None and len(rec.steps) == 4
    plain = square_model()
    rec2 = kt.TrajectoryRecorder(plain, torch.optim.SGD(plain.parameters(), lr=0.05), stop=5)
    assert step_checks.spec(rec2) is not None  # the control


def test_a_ctrl_c_inside_the_checks_stops_training_on_both_routes(holds, monkeypatch):
    # the compiled call cleared every error raised inside it, a KeyboardInterrupt too: training went on
    def record():
        model = square_model()
        opt = Meddling(model.parameters(), lr=0.05)
        opt.meddle, Meddling.reads = lambda: (_ for _ in ()).throw(KeyboardInterrupt("Ctrl-C")), 0
        rec = kt.TrajectoryRecorder(model, opt, stop=8)
        with pytest.raises(KeyboardInterrupt, match="Ctrl-C"):
            train(model, opt, 8, lambda step: None)
        return rec.steps

    fast = record()
    monkeypatch.setattr(native, "checker", lambda: None)
    assert fast == record() == [0, 1]


class EditOnce(TorchFunctionMode):
    """A torch function mode (``with torch.device(...)`` is one) that changes a weight at the first ``is_set_to`` it
    sees once armed: Python code run inside the checks, which the compiled call then runs before the row's copy."""
    armed, model = False, None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.is_set_to and EditOnce.armed:
            EditOnce.armed = False
            with torch.no_grad():
                EditOnce.model[0].weight.add_(1.0)
        return func(*args, **(kwargs or {}))


def test_a_torch_function_mode_is_recorded_alike_on_both_routes(holds, monkeypatch, wide):
    # a review: under a mode, is_set_to ran the mode's Python code beside the row's copy (the row missed its change)
    def record():
        EditOnce.model = model = square_model(wide=wide)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        rec = kt.TrajectoryRecorder(model, opt, stop=8)
        with EditOnce():
            train(model, opt, 8, lambda step: setattr(EditOnce, "armed", step == 3))
        return rec.trajectory(copy=True)

    fast = record()
    monkeypatch.setattr(native, "checker", lambda: None)
    slow = record()
    assert torch.equal(fast.snapshots, slow.snapshots) and not EditOnce.armed
    assert float((fast.snapshots[:16, 5] - fast.snapshots[:16, 4]).abs().min()) > 0.5  # the change is in the rows


def test_no_row_copied_beside_the_checks_under_a_dispatch_mode(holds):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Passing(TorchDispatchMode):  # is_set_to is an aten op: a dispatch mode's Python code would run inside it
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    model = square_model(wide=True)
    rec = kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.05), stop=8)
    assert rec._writer.ahead(1, 9) != ()  # the control
    with Passing():
        assert rec._writer.ahead(1, 9) == ()
    with EditOnce():
        assert rec._writer.ahead(1, 9) == ()
