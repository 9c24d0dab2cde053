"""Pruning: scores, masks, compression accounting, torch.nn.utils.prune integration, errors."""
import copy
import fractions
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import koopman_tut as kt
from koopman_tut import pruning as P
from koopman_tut.training.train import evaluate, finetune, train


@pytest.fixture(scope="module")
def trained():
    tr, te = kt.data.digits(seed=0)
    trl, tel = kt.data.loaders(tr, te, batch_size=128, seed=0)
    model = kt.models.get_model("mlp", seed=0)
    train(model, trl, epochs=3, lr=0.05, progress=False)
    return model, trl, tel


def test_magnitude_scores_are_abs_params(trained):
    model, _, _ = trained
    s = P.magnitude_scores(model)
    assert list(s) == [n for n, _ in model.named_parameters()]
    for n, p in model.named_parameters():
        assert torch.equal(s[n], p.detach().abs())


@pytest.mark.parametrize("compression", [1, 2, 3.7, 8, 32])
def test_global_masks_exact_counts_and_exclusions(trained, compression):
    model, _, _ = trained
    masks = P.global_masks(P.magnitude_scores(model), compression, model=model)
    assert set(masks) == {"features.0.weight", "features.2.weight", "features.4.weight"}
    total = kt.models.n_parameters(model)
    kept = sum(int(m.sum()) for m in masks.values()) + total - sum(m.numel() for m in masks.values())
    assert kept == round(total / compression)
    m = copy.deepcopy(model)
    P.apply_masks(m, masks)
    assert P.compression_ratio(m) == pytest.approx(total / round(total / compression))


def test_global_masks_match_exhaustive_sort():
    g = torch.Generator().manual_seed(0)
    scores = {"a.weight": torch.rand(7, 5, generator=g), "b.weight": torch.rand(11, generator=g)}
    scores["b.weight"][3] = scores["a.weight"][0, 0]  # a tie
    masks = P.global_masks(scores, 3)
    flat = [(float(v), i) for i, v in enumerate(torch.cat([scores["a.weight"].reshape(-1), scores["b.weight"]]))]
    keep = round(46 / 3)
    expect = {i for _, i in sorted(flat, key=lambda t: (-t[0], t[1]))[:keep]}
    got = torch.cat([masks["a.weight"].reshape(-1), masks["b.weight"]])
    assert {i for i in range(46) if got[i]} == expect


def test_layerwise_masks_keep_equal_fractions(trained):
    model, _, _ = trained
    masks = P.layerwise_masks(P.magnitude_scores(model), 8, model=model)
    fracs = [float(m.float().mean()) for m in masks.values()]
    assert max(fracs) - min(fracs) < 1e-3
    total = kt.models.n_parameters(model)
    assert sum(int(m.sum()) for m in masks.values()) + total - sum(m.numel() for m in masks.values()) \
        == round(total / 8)


def test_bias_and_classifier_can_be_included(trained):
    model, _, _ = trained
    masks = P.global_masks(P.magnitude_scores(model), 4, model=model, prune_bias=True, prune_classifier=True)
    assert "classifier.weight" in masks and "features.0.bias" in masks


def test_masks_persist_through_finetuning_and_state_dict(trained):
    model, trl, tel = trained
    m = copy.deepcopy(model)
    masks = P.prune_model(m, P.magnitude_scores(m), 8)
    finetune(m, trl, epochs=1, lr=0.05, progress=False)
    for n, mask in masks.items():
        assert torch.all(P.current_value(m, n)[~mask] == 0)
    assert P.compression_ratio(m) == pytest.approx(8, rel=1e-3)
    # state_dict round trip of a pruned model into another pruned model
    m2 = copy.deepcopy(model)
    P.apply_masks(m2, {n: torch.ones_like(v) for n, v in masks.items()})
    m2.load_state_dict(m.state_dict())
    x = next(iter(tel))[0]
    assert torch.equal(m(x), m2(x))
    # and made permanent
    P.remove_masks(m)
    assert not any(n.endswith("_orig") for n, _ in m.named_parameters())
    assert P.compression_ratio(m) == pytest.approx(8, rel=1e-3)
    assert set(P.sparsity_by_layer(m)) == set(P.magnitude_scores(m))


def test_mask_overlap_and_random_baseline(trained):
    model, _, tel = trained
    gmp = P.global_masks(P.magnitude_scores(model), 8, model=model)
    rnd = P.random_masks(model, 8, seed=0)
    assert P.mask_overlap(gmp, gmp) == 1.0
    # random pruning of 7/8 of the prunable weights overlaps GMP's pruned set by ~ that share
    assert 0.8 < P.mask_overlap(gmp, rnd) < 0.95
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    P.apply_masks(a, gmp)
    P.apply_masks(b, rnd)
    assert evaluate(a, tel)[1] > evaluate(b, tel)[1] + 0.2


def test_gradient_scores_forms(trained):
    model, _, tel = trained  # an unshuffled loader: both calls see the same batches
    sg = P.gradient_scores(model, tel, n_batches=2, form="grad")
    stg = P.gradient_scores(model, tel, n_batches=2)
    for n, p in model.named_parameters():
        assert torch.allclose(stg[n], (sg[n] * p.detach()).abs(), atol=1e-7)
    with pytest.raises(ValueError, match="form"):
        P.gradient_scores(model, tel, form="hessian")


@pytest.mark.parametrize("compression, error", [(0.5, ValueError), (0, ValueError), (-1, ValueError),
                                                (float("nan"), ValueError), (float("inf"), ValueError),
                                                ("8", TypeError), (True, TypeError), (np.bool_(True), TypeError),
                                                (None, TypeError)])
def test_bad_compression(trained, compression, error):
    model, _, _ = trained
    for masks in (P.global_masks, P.layerwise_masks):
        with pytest.raises(error, match=r"compression must be a finite number >= 1 \(total / nonzero parameters\)"):
            masks(P.magnitude_scores(model), compression, model=model)


@pytest.mark.parametrize("compression", [np.int64(4), np.float32(4.0), np.float64(4.0), 4.0, fractions.Fraction(4)])
def test_compression_is_any_real_number(trained, compression):
    model, _, _ = trained
    scores = P.magnitude_scores(model)
    want = P.global_masks(scores, 4, model=model)
    got = P.global_masks(scores, compression, model=model)
    assert all(torch.equal(want[n], got[n]) for n in want) and set(got) == set(want)
    got = P.random_masks(model, compression, seed=1)
    assert all(torch.equal(v, P.random_masks(model, 4, seed=1)[n]) for n, v in got.items())


def test_unreachable_compression_and_empty():
    model = kt.models.get_model("mlp", hidden=(8,))
    with pytest.raises(ValueError, match="out of reach"):
        P.global_masks(P.magnitude_scores(model), 32, model=model)
    with pytest.raises(ValueError, match="empty"):
        P.global_masks({}, 2)
    with pytest.raises(ValueError, match="leaves no parameter"):
        P.global_masks({"a.weight": torch.rand(4)}, 100)
    # the largest reachable compression, and one rounded to it: every prunable entry goes, said aloud
    scores = P.magnitude_scores(model)
    most = sum(p.numel() for p in model.parameters()) / sum(p.numel() for n, p in model.named_parameters()
                                                             if n not in P.prunable(model))
    for c in (most, most * 1.0001):
        with pytest.warns(UserWarning, match="keeps none of the .* ranked entries: every prunable layer is zeroed"):
            masks = P.global_masks(scores, c, model=model)
        assert not any(m.any() for m in masks.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P.global_masks(scores, most * 0.9, model=model)  # something kept: no warning


def test_scores_that_do_not_match_the_model(trained):
    model, _, _ = trained
    with pytest.raises(ValueError, match="no parameter"):
        P.global_masks({"nope.weight": torch.rand(3)}, 2, model=model)
    bad = P.magnitude_scores(model)
    bad["features.0.weight"] = torch.rand(3, 3)
    with pytest.raises(ValueError, match="shape"):
        P.global_masks(bad, 2, model=model)
    s = P.magnitude_scores(model)
    s["features.0.weight"][0, 0] = float("nan")
    for masks in (P.global_masks, P.layerwise_masks):
        with pytest.raises(ValueError, match="NaN"):
            masks(s, 2, model=model)


def test_koopman_scores_reject_bad_trajectories(trained):
    model, _, _ = trained
    with pytest.raises(TypeError, match="Trajectory"):
        P.kmp_scores(torch.zeros(4, 4))
    opt = kt.train.make_optimizer(model, "sgd", lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=0)
    rec.remove()
    with pytest.raises(ValueError, match="at least 3 snapshots"):
        P.kmp_scores(rec.trajectory())
    traj = rec.trajectory(copy=True)
    traj.snapshots[0, 0] = float("nan")
    traj = traj.window()
    traj.snapshots = torch.cat([traj.snapshots, traj.snapshots, traj.snapshots], 1)
    traj.steps = torch.arange(3)
    traj.meta["lrs"] = traj.meta["lrs"] * 3  # one per snapshot, as the fields are checked again where used
    with pytest.raises(ValueError, match="NaN"):
        P.kmp_scores(traj)
    with pytest.raises(ValueError, match="do not match the model"):
        P.global_masks(P.kmp_scores(rec_traj_of(kt.models.get_model("lenet300100"))), 2, model=model)


def rec_traj_of(model):
    opt = kt.train.make_optimizer(model, "sgd", lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=2)
    x = torch.randn(8, 784)
    y = torch.randint(0, 10, (8,))
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return rec.trajectory()


@pytest.mark.gpu
def test_masks_on_cuda(trained):
    model, trl, _ = trained
    m = copy.deepcopy(model).cuda()
    masks = P.prune_model(m, P.magnitude_scores(m), 8)
    assert all(v.is_cuda for v in masks.values())
    finetune(m, trl, epochs=1, lr=0.05, progress=False, device="cuda")
    for n, mask in masks.items():
        assert torch.all(P.current_value(m, n)[~mask] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8, torch.float64])
def test_masks_must_be_boolean(trained, dtype):
    model, _, _ = trained
    m = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    name = "features.0.weight"
    mask = torch.full(P.current_value(m, name).shape, 2).to(dtype)  # rescaled the weights by 2 before
    with pytest.raises(TypeError, match=rf"mask for '{name}' must be a bool tensor \(True = kept\), got {dtype}"):
        P.apply_masks(m, {name: mask})
    with pytest.raises(TypeError, match="bool tensor"):
        P.apply_masks(m, {"features.2.weight": P.current_value(m, "features.2.weight") != 0, name: mask})
    assert all(torch.equal(P.current_value(m, n), v) for n, v in before.items())  # nothing applied, not even the good
    P.apply_masks(m, {name: mask != 0})  # the bool version is fine
    assert torch.equal(P.current_value(m, name), before[name])


def test_signed_scores_are_refused(trained):
    model, _, _ = trained
    signed = {n: s * torch.sign(torch.randn(s.shape)) for n, s in P.magnitude_scores(model).items()}
    for masks in (P.global_masks, P.layerwise_masks):
        with pytest.raises(ValueError, match=r"scores must be non-negative.*'features.0.weight'.*s.abs\(\)"):
            masks(signed, 2, model=model)
    P.global_masks({n: s.abs() for n, s in signed.items()}, 2, model=model)  # the magnitude is ranked
    zeros = {n: torch.zeros_like(s) for n, s in signed.items()}  # zero is not negative
    P.global_masks(zeros, 2, model=model)


def test_torch_pruned_names_are_refused_with_the_name_to_use(trained):
    model, _, _ = trained
    m = copy.deepcopy(model)
    P.apply_masks(m, P.global_masks(P.magnitude_scores(m), 2, model=m))
    for key in ("features.0.weight_orig", "features.0.weight_mask"):
        words = (rf"'{key}' is torch.nn.utils.prune's (orig|mask) tensor of the pruned parameter 'features.0.weight'"
                 r".*keyed by the parameter name \('features.0.weight'\)")
        with pytest.raises(ValueError, match=words):
            P.global_masks({key: torch.rand(P.current_value(m, "features.0.weight").shape)}, 2, model=m)
        with pytest.raises(ValueError, match=words):
            P.apply_masks(m, {key: torch.ones(P.current_value(m, "features.0.weight").shape, dtype=torch.bool)})
    assert set(P.magnitude_scores(m)) == set(P.magnitude_scores(model))  # the plain names, also once pruned


class TiedNet(nn.Module):
    """Embedding -> encoder -> decoder (weight tied to the encoder's) -> classifier (tied to the embedding)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb, self.enc, self.dec = nn.Embedding(10, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.classifier = nn.Linear(16, 10)
        self.dec.weight, self.classifier.weight = self.enc.weight, self.emb.weight
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.classifier(torch.relu(self.dec(torch.relu(self.enc(self.emb(x))))))


def test_tied_parameters_are_scored_pruned_and_counted_once():
    model = TiedNet()
    total = 160 + 256 + 16 + 16 + 10  # emb (= classifier weight), enc (= dec weight), three biases
    assert kt.models.n_parameters(model) == total
    assert list(P.magnitude_scores(model)) == ["enc.weight", "enc.bias", "dec.bias", "classifier.weight",
                                               "classifier.bias"]
    assert P.prunable(model) == ["enc.weight"] and P.classifier_names(model) == ["classifier.weight", "classifier.bias"]
    assert kt.recording.params.aliases(model, "enc.weight") == ["enc.weight", "dec.weight"]
    assert kt.recording.params.aliases(model, "classifier.weight") == ["classifier.weight", "emb.weight"]
    masks = P.global_masks(P.magnitude_scores(model), 2, model=model)
    assert list(masks) == ["enc.weight"]
    kept = int(masks["enc.weight"].sum())
    assert kept == round(total / 2) - (total - 256)  # the 202 unranked entries stay; the tied 256 counted once
    P.apply_masks(model, masks)
    for name in ("enc.weight", "dec.weight"):  # masked wherever the tensor is used
        assert torch.equal(P.current_value(model, name) != 0, masks["enc.weight"])
    assert P.compression_ratio(model) == pytest.approx(total / round(total / 2))
    x = torch.arange(10)
    ref = TiedNet()
    with torch.no_grad():
        ref.enc.weight.mul_(masks["enc.weight"])
    assert torch.allclose(model(x), ref(x))  # the forward pass uses the pruned weight in both layers
    with pytest.raises(ValueError, match=r"scores give 'enc.weight' and 'dec.weight', one tensor \(tied weights\)"):
        P.global_masks({"enc.weight": torch.rand(16, 16), "dec.weight": torch.rand(16, 16)}, 1.5, model=TiedNet())
    with pytest.raises(ValueError, match=r"masks give 'enc.weight' and 'dec.weight', one tensor \(tied weights\)"):
        P.apply_masks(TiedNet(), {"enc.weight": masks["enc.weight"], "dec.weight": masks["enc.weight"]})


def test_random_mask_draws_of_neighbouring_seeds_are_independent():
    """compare() averages draws 0..2 of its seed: seed s's draws never repeat seed s+1's (they did: s+i)."""
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 10))
    kept = lambda m: torch.cat([v.reshape(-1) for v in m.values()])  # noqa: E731
    draws = {(s, d): kept(P.random_masks(model, 4, seed=s, draw=d)) for s in range(3) for d in range(3)}
    assert len({tuple(v.tolist()) for v in draws.values()}) == len(draws)
    assert torch.equal(kept(P.random_masks(model, 4, seed=2)), draws[2, 0])  # draw 0 is the plain seed
    with pytest.raises(ValueError, match="draw must be an integer >= 0"):  # a wrong value, not a wrong type
        P.random_masks(model, 4, seed=0, draw=-1)


def test_gradients_weight_each_batch_by_its_examples():
    """Batches of 32 + 32 + 7 give the gradient of the loss over all 71 examples (one batch of 71),
    whatever their order; averaging the batch means equally would weight the 7 like 32."""
    import torch.nn as nn

    from koopman_tut.pruning.scores import gradients

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(71, 5, generator=g), torch.randint(0, 3, (71,), generator=g)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    x = x.double()
    whole = gradients(model, [(x, y)])
    perm = torch.randperm(71, generator=g)
    split = [(x[perm[i:i + 32]], y[perm[i:i + 32]]) for i in (0, 32, 64)]
    parts = gradients(model, split, n_batches=3)
    for n in whole:
        assert torch.allclose(whole[n], parts[n], rtol=1e-12, atol=1e-14), n
    equal_weights = {n: sum(gradients(model, [b])[n] for b in split) / 3 for n in whole}
    assert any(not torch.allclose(whole[n], equal_weights[n], rtol=1e-6) for n in whole), "the control differs"
    with pytest.warns(UserWarning, match=r"n_batches=5, but the loader yielded 3 batch\(es\) \(71 examples\)"):
        fewer = gradients(model, split, n_batches=5)  # averaged over what there is, and said
    assert all(torch.equal(fewer[n], parts[n]) for n in whole)


def test_gradients_of_a_model_without_parameters_or_on_a_device_that_is_none_here_are_named():
    # a bare StopIteration from next(model.parameters()), and torch's RuntimeError for device="gpu"
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    for f in (P.gradient_scores, P.gradients):
        with pytest.raises(ValueError, match=r"model has no parameters"):
            f(nn.ReLU(), [(x, y)])
        with pytest.raises(ValueError, match=r"device='gpu' is not a device: expected 'cpu', 'cuda'"):
            f(nn.Linear(4, 3), [(x, y)], device="gpu")
        assert f(nn.Linear(4, 3), [(x, y)], device="cpu")["weight"].shape == (3, 4)  # the control
