import warnings

import pytest
import torch

import koopman_tut as kt
from koopman_tut.training.train import evaluate, finetune, make_optimizer, resolve_device, train


def test_training_learns_and_is_deterministic():
    tr, te = kt.data.digits(seed=0)
    results = []
    for _ in range(2):
        trl, tel = kt.data.loaders(tr, te, batch_size=128, seed=0)
        model = kt.models.get_model("mlp", seed=0, hidden=(64,))
        h = train(model, trl, epochs=5, lr=0.05, test_loader=tel, progress=False, seed=0)
        results.append((h.train_loss, h.test_acc))
    assert results[0] == results[1]
    assert results[0][1][-1] > 0.9 and results[0][0][-1] < results[0][0][0]


def test_max_steps_and_optimizers():
    tr, te = kt.data.digits(seed=0)
    trl, _ = kt.data.loaders(tr, te, batch_size=64, seed=0)
    for name in ("nesterov", "momentum", "sgd", "adam"):
        model = kt.models.get_model("mlp", seed=0, hidden=(16,))
        lr = 1e-3 if name == "adam" else 0.05
        assert train(model, trl, epochs=3, max_steps=7, optimizer=name, lr=lr, progress=False).steps == 7
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(model, "rmsprop")
    with pytest.raises(ValueError, match="lr"):
        make_optimizer(model, "sgd", lr=0)


def test_device_resolution():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"


def test_finetune_returns_history():
    tr, te = kt.data.digits(seed=0)
    trl, tel = kt.data.loaders(tr, te, seed=0)
    model = kt.models.get_model("mlp", seed=0, hidden=(16,))
    before = evaluate(model, tel)[1]
    h = finetune(model, trl, epochs=2, lr=0.05, progress=False)
    assert len(h.train_loss) == 2 and evaluate(model, tel)[1] > before


def test_step_counter_survives_deepcopy_and_state_dict():
    """A deep copy of an optimizer (e.g. of a whole setup, to try something on the side) and one
    restored from state_dict() go on counting from where the original stood, one step per step."""
    import copy

    from koopman_tut.training.train import steps_taken

    m = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    assert steps_taken(opt) == 0
    for _ in range(5):
        opt.zero_grad()
        m(torch.randn(4, 3)).sum().backward()
        opt.step()
    twin = copy.deepcopy(opt)
    restored = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    restored.load_state_dict(opt.state_dict())
    assert steps_taken(opt) == steps_taken(twin) == steps_taken(restored) == 5
    for o in (twin, restored):
        for p in o.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        o.step()
        assert steps_taken(o) == 6, "one step counts once"
    assert steps_taken(opt) == 5


def test_a_fraction_of_an_epoch_is_that_share_of_its_steps():
    tr, te = kt.data.digits(seed=0)
    trl, _ = kt.data.loaders(tr, te, batch_size=256, seed=0)  # 6 batches per epoch
    model = kt.models.get_model("mlp", seed=0, hidden=(16,))
    assert len(trl) == 6
    for epochs, steps in ((0.25, 2), (0.4, 3), (0.1, 1), (0.5, 3), (1, 6), (1.5, 9), (0, 0), (1e-8, 1)):  # 0.25: 6
        assert train(model, trl, epochs=epochs, lr=0.05, progress=False).steps == steps, epochs
    assert train(model, trl, epochs=1.5, max_steps=4, lr=0.05, progress=False).steps == 4


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(lr=float("nan")), ValueError, "lr must be a finite number > 0"),  # the weights became NaN
    (dict(lr=0), ValueError, "lr must be a finite number > 0"),
    (dict(lr=float("inf")), ValueError, "lr must be a finite number"),
    (dict(weight_decay=float("nan")), ValueError, "weight_decay must be a finite number"),
    (dict(momentum=float("nan")), ValueError, "momentum must be a finite number"),
    (dict(lr="0.1"), TypeError, "lr must be a finite number"),
    (dict(epochs=float("nan")), ValueError, "epochs must be a finite number"),
    (dict(epochs=True), TypeError, "epochs must be a finite number"),  # it was one epoch
    (dict(epochs="2"), TypeError, "epochs must be a finite number"),
    (dict(max_steps=-1), ValueError, "max_steps must be an integer >= 0"),  # it trained 0 steps
    (dict(max_steps=2.5), TypeError, "max_steps must be an integer >= 0"),
    (dict(lr=1e308), ValueError, r"lr=1e\+308 overflows the model's torch.float32"),  # torch's "without overflow"
    (dict(momentum=1.5), ValueError, r"momentum must be a finite number in \[0, 1\)"),  # the recorder refused it later
])
def test_bad_training_arguments_are_refused_naming_them(kwargs, error, words):
    tr, te = kt.data.digits(seed=0)
    trl, _ = kt.data.loaders(tr, te, batch_size=256, seed=0)
    model = kt.models.get_model("mlp", seed=0, hidden=(16,))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match=words):
        train(model, trl, progress=False, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing trained
    with pytest.raises(TypeError, match="loader must be a DataLoader with a length"):
        train(model, None, progress=False)
    with pytest.raises(ValueError, match="loader holds no batches"):
        train(model, [], progress=False)


def test_an_optimizer_that_does_not_train_the_model_and_bad_types_are_refused():
    # an optimizer built over another model's parameters trained nothing and returned a History, silently;
    # optimizer=None or an int, and a model that is no nn.Module, gave AttributeErrors naming no argument
    tr, te = kt.data.digits(seed=0)
    trl, _ = kt.data.loaders(tr, te, batch_size=256, seed=0)
    model = kt.models.get_model("mlp", seed=0, hidden=(16,))
    other = torch.optim.SGD(kt.models.get_model("mlp", seed=1, hidden=(16,)).parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"optimizer trains none of model's parameters.*not another model's"):
        train(model, trl, optimizer=other, progress=False)
    for bad in (None, 123):
        with pytest.raises(TypeError, match=r"optimizer must be a torch.optim.Optimizer or a name \('nesterov'"):
            train(model, trl, optimizer=bad, progress=False)
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got str"):
        train("m", trl, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing trained
    last = torch.optim.SGD(model.classifier.parameters(), lr=0.1)  # the control: one layer of the model
    assert train(model, trl, max_steps=2, optimizer=last, progress=False).steps == 2
    assert torch.equal(before[0], model.features[0].weight) and not torch.equal(before[2], model.classifier.weight)


@pytest.mark.parametrize("device, match", [
    ("gpu", r"device='gpu' is not a device: expected 'cpu', 'cuda'"),
    (99, r"device=99, but this machine has \d+ usable CUDA device"),
    ("cuda:99", r"device='cuda:99', but this machine has \d+ usable CUDA device"),
    (1.5, r"device must be a device \(a str"),
])
def test_a_device_that_is_none_here_is_named(device, match):
    # torch's RuntimeError ("Expected one of cpu, cuda, ipu, ... device type", "Found no NVIDIA driver") named nothing
    error = TypeError if isinstance(device, float) else ValueError
    with pytest.raises(error, match=match):
        resolve_device(device)
    tr, te = kt.data.digits(seed=0)
    trl, _ = kt.data.loaders(tr, te, batch_size=256, seed=0)
    with pytest.raises(error, match=match):
        train(kt.models.get_model("mlp", seed=0, hidden=(16,)), trl, device=device, progress=False)
    assert resolve_device(torch.device("cpu")).type == resolve_device(None).type in ("cpu", "cuda")


def test_a_diverging_run_stops_at_the_first_non_finite_loss_naming_the_lr():
    # lr 1000 on the digits MLP: the loss became NaN and training went on, every weight and snapshot NaN after it
    tr, te = kt.data.digits(seed=0)
    trl, _ = kt.data.loaders(tr, te, batch_size=64, seed=0)
    model = kt.models.get_model("mlp", seed=0, hidden=(32,))
    steps = []
    opt = torch.optim.SGD(model.parameters(), lr=1e3)
    opt.register_step_post_hook(lambda *a: steps.append(1))
    with pytest.raises(FloatingPointError, match=r"training diverged: the loss is (nan|inf) at step \d+ \(lr 1000.0\).*"
                                                 r"Lower the learning rate"):
        train(model, trl, epochs=2, optimizer=opt, progress=False)
    assert 0 < len(steps) < len(trl)  # stopped within the first epoch, before the step from the non-finite loss
    assert train(kt.models.get_model("mlp", seed=0, hidden=(32,)), trl, epochs=1, lr=0.1, progress=False).steps == len(trl)


def test_evaluate_uses_the_model_device_by_default(monkeypatch):
    # "auto" meant CUDA wherever CUDA exists, so a CPU model's batches were sent to the GPU (a device error)
    loader = kt.data.loader(torch.utils.data.TensorDataset(torch.randn(20, 4), torch.randint(0, 3, (20,))), 8)
    model = torch.nn.Linear(4, 3)
    want = evaluate(model, loader)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with a GPU, the model on the CPU
    assert resolve_device("auto").type == "cuda"
    assert evaluate(model, loader) == want and kt.train.accuracy(model, loader) == want[1]
    assert evaluate(torch.nn.Flatten(), kt.data.loader(torch.utils.data.TensorDataset(  # no parameters: the CPU
        torch.randn(6, 3), torch.randint(0, 3, (6,))), 3))[1] >= 0


def test_settings_given_beside_a_built_optimizer_are_refused_not_ignored():
    tr, te = kt.data.digits(seed=0)
    trl, _ = kt.data.loaders(tr, te, batch_size=256, seed=0)
    model = kt.models.get_model("mlp", seed=0, hidden=(16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for kwargs in (dict(lr=0.001), dict(momentum=0.5), dict(weight_decay=0.1)):  # opt trained at lr 0.5, silently
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))}=.* would be ignored: optimizer is already built"):
            train(model, trl, optimizer=opt, max_steps=1, progress=False, **kwargs)
    assert train(model, trl, optimizer=opt, max_steps=1, progress=False).steps == 1 and opt.param_groups[0]["lr"] == 0.5
    assert finetune(model, trl, optimizer=opt, max_steps=1, progress=False).steps == 1  # its own lr, none given
    with pytest.raises(ValueError, match="lr=0.01 would be ignored"):
        finetune(model, trl, optimizer=opt, lr=0.01, max_steps=1, progress=False)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got NoneType"):
        make_optimizer(None)


def test_a_reseed_that_replays_a_shuffled_loader_s_order_warns():
    ds = torch.utils.data.TensorDataset(torch.randn(12, 4), torch.arange(12) % 3)
    plain = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True)  # shuffled by torch's generator
    model = torch.nn.Linear(4, 3)
    orders = []
    model.register_forward_pre_hook(lambda m, args: orders.append(args[0][:, 0].tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first call, other seeds, seed=None and a loader's own generator: silent
        train(model, plain, optimizer="sgd", progress=False, device="cpu")
        train(model, plain, optimizer="sgd", progress=False, device="cpu", seed=1)
        train(model, plain, optimizer="sgd", progress=False, device="cpu", seed=None)
        own = kt.data.loader(ds, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
        for _ in range(2):
            train(model, own, optimizer="sgd", progress=False, device="cpu")
    with pytest.warns(UserWarning, match="replays the batch order of its last call with that seed"):
        train(model, plain, optimizer="sgd", progress=False, device="cpu", seed=1)
    assert orders[3:6] == orders[15:18]  # what it warned of: seed 1's order again
    batched = kt.data.loader(ds, 4, shuffle=True)  # batches gathered whole, shuffled by torch's generator too
    train(model, batched, optimizer="sgd", progress=False, device="cpu")
    with pytest.warns(UserWarning, match="replays the batch order"):
        train(model, batched, optimizer="sgd", progress=False, device="cpu")
