"""Pruning: scores, masks, compression accounting, torch.nn.utils.prune integration, errors."""
import copy

import pytest
import torch

import koopman_tut as kt
from koopman_tut import pruning as P
from koopman_tut.train import evaluate, finetune, train


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


@pytest.mark.parametrize("compression", [0.5, 0, -1, float("nan"), "8", True])
def test_bad_compression(trained, compression):
    model, _, _ = trained
    with pytest.raises(ValueError, match="compression"):
        P.global_masks(P.magnitude_scores(model), compression, model=model)


def test_unreachable_compression_and_empty():
    model = kt.models.get_model("mlp", hidden=(8,))
    with pytest.raises(ValueError, match="out of reach"):
        P.global_masks(P.magnitude_scores(model), 32, model=model)
    with pytest.raises(ValueError, match="empty"):
        P.global_masks({}, 2)
    with pytest.raises(ValueError, match="leaves no parameter"):
        P.global_masks({"a.weight": torch.rand(4)}, 100)


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
