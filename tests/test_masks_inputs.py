"""Pruning inputs: what the score, mask and gradient functions accept, and what they refuse by name.

Each test pins one finding of a review: scores that leave out a layer, scores passed as masks,
random masks on a pruned model, gradients in train mode without side effects, ranking precision,
the whole seed, unchecked flags and counts, errors that name the argument, and the classifier rule.
"""
import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from koopman_tut import pruning as P


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 10))


def kept_total(model, masks):
    total = sum(p.numel() for p in model.parameters())
    return sum(int(m.sum()) for m in masks.values()) + total - sum(m.numel() for m in masks.values())


# ----------------------------------------------------------------------------- 3. every prunable layer scored
def test_scores_that_leave_out_a_prunable_layer_are_refused_unless_excluded():
    model = mlp()
    s = P.magnitude_scores(model)
    del s["2.weight"]
    for masks in (P.global_masks, P.layerwise_masks):
        with pytest.raises(ValueError, match=r"scores leave out \['2.weight'\].*exclude=\['2.weight'\]"):
            masks(s, 1.8, model=model)
    m = P.global_masks(s, 1.4, model=model, exclude=["2.weight"])  # the explicit way: left unpruned, counted kept
    assert list(m) == ["0.weight"]
    assert kept_total(model, m) == round(sum(p.numel() for p in model.parameters()) / 1.4)
    assert list(P.global_masks(P.magnitude_scores(model), 1.4, model=model, exclude=("2.weight",))) == ["0.weight"]
    with pytest.raises(TypeError, match=r"exclude must be a list of parameter names.*exclude=\['2.weight'\]"):
        P.global_masks(s, 1.8, model=model, exclude="2.weight")
    with pytest.raises(ValueError, match="exclude: model has no parameter 'nope.weight'"):
        P.global_masks(s, 1.8, model=model, exclude=["2.weight", "nope.weight"])
    assert list(P.global_masks({"a.weight": torch.rand(5), "b.weight": torch.rand(5)}, 2, exclude=["b.weight"])) == [
        "a.weight"]


# ----------------------------------------------------------------------------- 4. overlaps take masks only
def test_overlaps_refuse_scores_and_non_dicts():
    model = mlp()
    s = P.magnitude_scores(model)
    m = P.global_masks(s, 4, model=model)
    for overlap in (P.mask_overlap, P.kept_overlap):
        with pytest.raises(TypeError, match=r"a\['0.weight'\] must be a bool tensor \(True = kept\), got torch.float"):
            overlap(s, {n: torch.rand_like(v) for n, v in s.items()})
        with pytest.raises(TypeError, match=r"b\['0.weight'\] must be a bool tensor"):
            overlap(m, {n: v.float() for n, v in m.items()})
        with pytest.raises(TypeError, match="b must be a dict {parameter name: bool tensor}, got list"):
            overlap(m, list(m.values()))
        assert overlap(m, m) == 1.0


# ----------------------------------------------------------------------------- 5. random masks on a pruned model
@pytest.mark.parametrize("permanent", [False, True])
def test_random_masks_on_a_pruned_model_reach_the_compression(permanent):
    model = mlp()
    total = sum(p.numel() for p in model.parameters())
    P.apply_masks(model, P.global_masks(P.magnitude_scores(model), 2, model=model))
    if permanent:
        P.remove_masks(model)  # pruned entries are plain zeros now
    state = torch.get_rng_state()
    masks = P.random_masks(model, 4, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG neither read into nor moved
    P.apply_masks(model, masks)
    assert P.compression_ratio(model) == pytest.approx(total / round(total / 4))


def test_random_masks_of_an_unpruned_model_keep_their_draws():
    """Seeds below 2**32 give the masks they always gave: float32 uniforms from the same generator."""
    model = mlp()
    entropy = [5, 0x6B6D61736B, 2]  # seed 5, the random-masks stream, draw 2
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    scores = {n: torch.rand(P.current_value(model, n).shape, generator=g) for n in P.layer_parameters(model)}
    want = P.global_masks(scores, 4, model=model)
    got = P.random_masks(model, 4, seed=5, draw=2)
    assert all(torch.equal(want[n], got[n]) for n in want) and set(got) == set(want)


# ----------------------------------------------------------------------------- 6. gradients in train mode
def bn_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    with torch.no_grad():  # running statistics that differ from any batch's
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].num_batches_tracked.fill_(7)
    return model


def test_gradient_scores_use_train_mode_and_leave_no_side_effect():
    model = bn_model()
    model.eval()
    model[3].train()  # a mixed state, restored module by module
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g) * 2 + 1, torch.randint(0, 3, (32,), generator=g)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    modes = [m.training for m in model.modules()]
    state = torch.get_rng_state()
    scores = P.gradient_scores(model, [(x, y)])
    assert torch.equal(torch.get_rng_state(), state)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    # by hand: train mode, batch statistics, the dropout masks the same RNG state draws
    ref = copy.deepcopy(model).train()
    torch.set_rng_state(state)
    names = P.layer_parameters(ref)
    params = [dict(ref.named_parameters())[n] for n in names]
    grads = torch.autograd.grad(F.cross_entropy(ref(x), y), params)
    for n, p, gr in zip(names, params, grads):
        assert torch.allclose(scores[n], (gr * p.detach()).abs(), rtol=1e-5, atol=1e-8), n


@pytest.mark.gpu
def test_gradient_scores_on_cuda_leave_the_cuda_rng_as_it_was():
    model = bn_model().cuda().eval()
    x, y = torch.randn(32, 6, device="cuda"), torch.randint(0, 3, (32,), device="cuda")
    state, cpu = torch.cuda.get_rng_state(), torch.get_rng_state()
    P.gradient_scores(model, [(x, y)])  # dropout in train mode draws from the CUDA generator
    assert torch.equal(torch.cuda.get_rng_state(), state) and torch.equal(torch.get_rng_state(), cpu)
    assert not model.training


def test_gradient_scores_under_no_grad_and_with_a_frozen_layer():
    model = mlp()
    x, y = torch.randn(8, 20), torch.randint(0, 10, (8,))
    want = P.gradient_scores(model, [(x, y)])
    with torch.no_grad():
        got = P.gradient_scores(model, [(x, y)])
    assert all(torch.equal(want[n], got[n]) for n in want)
    model[0].weight.requires_grad_(False)  # a frozen layer is scored like the others (documented)
    got = P.gradient_scores(model, [(x, y)])
    assert all(torch.equal(want[n], got[n]) for n in want)
    assert not model[0].weight.requires_grad and model[2].weight.requires_grad


# ----------------------------------------------------------------------------- 7. ranking precision
def test_scores_are_ranked_in_their_own_precision():
    model = nn.Linear(4, 1, bias=False)
    cases = [torch.tensor([[1.0, 1 + 1e-12, 1 + 2e-12, 1 + 3e-12]], dtype=torch.float64),
             torch.tensor([[1e-46, 2e-46, 3e-46, 4e-46]], dtype=torch.float64),
             torch.tensor([[1e39, 2e39, 3e39, 4e39]], dtype=torch.float64),  # finite, beyond float32
             torch.tensor([[2**60, 2**60 + 1, 2**60 + 2, 2**60 + 3]])]  # int64, beyond float64's integers
    for s in cases:
        m = P.global_masks({"weight": s}, 2, model=model, prune_classifier=True)
        assert m["weight"].tolist() == [[False, False, True, True]], s
        m = P.layerwise_masks({"weight": s}, 2, model=model, prune_classifier=True)
        assert m["weight"].tolist() == [[False, False, True, True]], s
    mixed = {"a.weight": torch.tensor([1.0, 3.0]), "b.weight": torch.tensor([1 + 1e-12, 2.0], dtype=torch.float64)}
    assert P.global_masks(mixed, 4 / 3)["b.weight"].tolist() == [True, True]  # keeps 3, 2 and 1+1e-12, not 1
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"scores contain NaN or Inf \(in 'weight'\)"):
            P.global_masks({"weight": torch.tensor([[1.0, bad, 1.0, 1.0]], dtype=torch.float64)}, 2, model=model,
                           prune_classifier=True)


# ----------------------------------------------------------------------------- 8. the whole seed
def test_random_masks_use_the_whole_seed():
    model = mlp()
    flat = lambda m: tuple(torch.cat([v.reshape(-1) for v in m.values()]).tolist())  # noqa: E731
    seeds = [7, 7 + 2**32, 7 + 2**33, 2**32, 2**64 + 7, 2**100]
    draws = {(s, d): flat(P.random_masks(model, 4, seed=s, draw=d)) for s in seeds for d in (0, 1)}
    assert len(set(draws.values())) == len(draws)
    assert flat(P.random_masks(model, 4, seed=np.uint64(2**32 + 7))) == draws[7 + 2**32, 0]
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        P.random_masks(model, 4, seed=-1)
    for bad in (1.0, "1", True, None):
        with pytest.raises(TypeError, match="seed must be an integer >= 0"):
            P.random_masks(model, 4, seed=bad)


# ----------------------------------------------------------------------------- 9. flags and counts
def test_flags_are_checked():
    model = mlp()
    s = P.magnitude_scores(model)
    for flag in ("prune_bias", "prune_classifier"):
        for bad in ("False", 0, None):
            with pytest.raises(TypeError, match=f"{flag} must be True or False"):
                P.global_masks(s, 1.2, model=model, **{flag: bad})
    with pytest.raises(TypeError, match="layerwise must be True or False"):
        P.prune_model(copy.deepcopy(model), s, 2, layerwise="yes")
    assert list(P.global_masks(s, 1.2, model=model, prune_bias=np.bool_(True)))[:2] == ["0.weight", "0.bias"]


def test_batch_counts_are_checked():
    model = mlp()
    x, y = torch.randn(8, 20), torch.randint(0, 10, (8,))
    loader = [(x[:4], y[:4]), (x[4:6], y[4:6]), (x[6:], y[6:])]
    for bad, error in ((1.5, TypeError), (True, TypeError), ("2", TypeError), (float("inf"), TypeError),
                       (0, ValueError), (-1, ValueError)):
        with pytest.raises(error, match="n_batches must be an integer >= 1"):
            P.gradient_scores(model, loader, n_batches=bad)
    two = P.gradients(model, loader, n_batches=np.int64(2))
    assert all(torch.equal(two[n], v) for n, v in P.gradients(model, loader[:2], n_batches=2).items())


# ----------------------------------------------------------------------------- 10. errors that name the argument
def test_loader_batches_must_be_pairs():
    model = mlp()
    x, y = torch.randn(8, 20), torch.randint(0, 10, (8,))
    with pytest.raises(TypeError, match=r"loader must yield \(inputs, targets\) pairs, got a dict"):
        P.gradient_scores(model, [{"x": x, "y": y}])
    with pytest.raises(TypeError, match=r"loader must yield \(inputs, targets\) pairs, got a Tensor"):
        P.gradient_scores(model, (x, y))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got NoneType"):
        P.gradient_scores(None, [(x, y)])


def test_wrong_types_are_refused_naming_the_argument():
    model = mlp()
    s = P.magnitude_scores(model)
    m = P.global_masks(s, 2, model=model)
    for call in (lambda: P.magnitude_scores("m"), lambda: P.random_masks("m", 2),
                 lambda: P.global_masks(s, 2, model="m"), lambda: P.apply_masks("m", m),
                 lambda: P.compression_ratio("m"), lambda: P.remove_masks(None)):
        with pytest.raises(TypeError, match="model must be a torch.nn.Module, got"):
            call()
    with pytest.raises(TypeError, match="scores must be a dict {parameter name: tensor}, got list"):
        P.global_masks(list(s.values()), 2, model=model)
    with pytest.raises(TypeError, match=r"scores\['0.weight'\] must be a torch.Tensor \(torch.from_numpy"):
        P.global_masks({**s, "0.weight": s["0.weight"].numpy()}, 2, model=model)
    with pytest.raises(TypeError, match=r"scores\['0.weight'\] must be a torch.Tensor, got list"):
        P.global_masks({**s, "0.weight": s["0.weight"].tolist()}, 2, model=model)
    with pytest.raises(TypeError, match="masks must be a dict {parameter name: bool tensor}, got list"):
        P.apply_masks(model, list(m.values()))
    with pytest.raises(TypeError, match="b must be a dict"):
        P.mask_overlap(m, list(m.values()))
    with pytest.raises(ValueError, match=r"scores\['0.weight'\] is on the meta device"):
        P.global_masks({**s, "0.weight": s["0.weight"].to("meta")}, 2, model=model)
    with pytest.raises(ValueError, match=r"b\['0.weight'\] is on the meta device"):
        P.mask_overlap(m, {**m, "0.weight": m["0.weight"].to("meta")})


# ----------------------------------------------------------------------------- 11. the classifier
class HeadFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(64, 10)  # registered first, applied last
        self.body = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())

    def forward(self, x):
        return self.head(self.body(x))


def test_the_classifier_can_be_named_and_an_unsure_guess_warns():
    net = HeadFirst()
    with pytest.warns(UserWarning, match="'body.2', the last nn.Linear registered.*classifier="):
        assert P.classifier_names(net) == ["body.2.weight", "body.2.bias"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.classifier_names(net, "head") == ["head.weight", "head.bias"]
        assert P.prunable(net, classifier="head") == ["body.0.weight", "body.2.weight"]
        assert P.prunable(net, classifier=None) == P.prunable(net, classifier=True) == [
            "head.weight", "body.0.weight", "body.2.weight"]
        P.classifier_names(mlp())  # nn.Sequential: registration order is the forward order, no warning
    with pytest.raises(ValueError, match="classifier='nope': the model has no module of that name"):
        P.prunable(net, classifier="nope")
    with pytest.raises(ValueError, match="classifier='body.1' holds no conv/linear weight"):
        P.prunable(net, classifier="body.1")
    with pytest.raises(TypeError, match="classifier must be a module name"):
        P.classifier_names(net, 3)


def test_masks_take_the_classifier_by_name():
    torch.manual_seed(0)
    net = HeadFirst()
    s = P.magnitude_scores(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(P.global_masks(s, 1.3, model=net, classifier="head")) == ["body.0.weight", "body.2.weight"]
        assert list(P.layerwise_masks(s, 1.3, model=net, classifier="head")) == ["body.0.weight", "body.2.weight"]
        assert list(P.random_masks(net, 1.3, classifier="head")) == ["body.0.weight", "body.2.weight"]
        assert list(P.global_masks(s, 1.3, model=net, classifier=None)) == ["head.weight", "body.0.weight",
                                                                             "body.2.weight"]
        assert list(P.global_masks(s, 1.3, classifier="head")) == ["body.0.weight", "body.2.weight"]  # by name
    with pytest.raises(ValueError, match="classifier='nope': the model has no module of that name"):
        P.global_masks(s, 1.3, model=net, classifier="nope")
    with pytest.raises(TypeError, match="classifier must be a module name"):
        P.global_masks(s, 1.3, model=net, classifier=3)
    with pytest.raises(ValueError, match="prune_classifier=True prunes the classifier, but classifier='head'"):
        P.global_masks(s, 1.3, model=net, prune_classifier=True, classifier="head")


def test_a_model_without_linear_layers_warns_that_no_classifier_is_kept():
    class AllConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.out = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 10, 1)

        def forward(self, x):
            return self.out(torch.relu(self.c1(x))).mean((2, 3))

    net = AllConv()
    with pytest.warns(UserWarning, match="no .classifier and no nn.Linear"):
        assert P.prunable(net) == ["c1.weight", "out.weight"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.prunable(net, classifier="out") == ["c1.weight"]
        assert P.prunable(net, classifier=None) == ["c1.weight", "out.weight"]


def test_a_classifier_attribute_without_a_layer_warns_that_none_is_kept():
    """model.classifier = nn.Identity() (the head elsewhere): the default rule found no classifier and pruned the
    real head without a word."""
    net = nn.Sequential()
    net.body, net.fc, net.classifier = nn.Linear(8, 16), nn.Linear(16, 3), nn.Identity()
    with pytest.warns(UserWarning, match="classifier \\(Identity\\) holds no conv/linear layer"):
        assert P.prunable(net) == ["body.weight", "fc.weight"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.prunable(net, classifier="fc") == ["body.weight"]


def test_names_without_a_model_must_be_in_the_scores():
    """Without model=, a classifier or excluded name that no score has (a typo) was ignored, and the real
    classifier or layer pruned; with model= the same call was already refused."""
    scores = {"0.weight": torch.rand(8, 4), "2.weight": torch.rand(3, 8)}
    with pytest.raises(ValueError, match="classifier='nope' names no module of the scores"):
        P.global_masks(scores, 4, classifier="nope")
    with pytest.raises(ValueError, match=r"exclude names \['nope\.weight'\]"):
        P.global_masks(scores, 4, exclude=["nope.weight"])
    with pytest.raises(ValueError, match="classifier='nope'"):
        P.layerwise_masks(scores, 4, classifier="nope")
    masks = P.global_masks(scores, 1.5, classifier="2")  # the real head, named: left out of the ranking
    assert set(masks) == {"0.weight"}


def test_a_cut_inside_equal_scores_warns_that_position_decides():
    """All-equal scores used to prune whole later layers by position, silently; continuous scores stay silent."""
    model = mlp()
    s = P.magnitude_scores(model)
    with pytest.warns(P.TiedScoresWarning, match=r"are chosen by position, not by score"):
        m = P.global_masks({n: torch.ones_like(v) for n, v in s.items()}, 4, model=model)
    assert not any(bool(v.any()) for v in list(m.values())[1:]), "what the warning is about: earlier entries kept"
    with warnings.catch_warnings():
        warnings.simplefilter("error", P.TiedScoresWarning)  # the control: magnitudes of float32 weights
        P.global_masks(s, 4, model=model)
        P.layerwise_masks(s, 4, model=model)
        tie_of_two = {n: v.clone() for n, v in s.items()}  # one accidental tie at the cut: below 1% of the kept
        flat = torch.cat([v.reshape(-1) for v in tie_of_two.values()])
        k = int(flat.numel() / 4)
        top = flat.sort(descending=True).values
        first = next(iter(tie_of_two))
        tie_of_two[first].view(-1)[0] = top[k - 1]
        P.global_masks(tie_of_two, 4)
    with pytest.warns(P.TiedScoresWarning, match=r"in '0.weight'"):  # each layer's warning names it
        P.layerwise_masks({n: torch.zeros_like(v) for n, v in s.items()}, 4, model=model)
    for block, warns in ((25, False), (24, False), (26, True), (30, True)):  # 25 kept: a tie that ends at the cut
        flat = torch.cat([torch.full((block,), 5.0), torch.linspace(4, 0, 100 - block)])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kept = P.global_masks({"a.weight": flat}, 4)["a.weight"]
        assert int(kept.sum()) == 25 and bool(kept[:min(block, 25)].all())
        assert any(w.category is P.TiedScoresWarning for w in caught) == warns, block


def test_gradient_scores_of_a_pruned_model_are_zero_where_pruned():
    """gradient_scores' docstring: the gradient is weight_orig's, which the mask multiplies, so entries already
    pruned score 0 in both forms (they stay pruned) while the kept ones are scored."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    P.prune_model(m, P.magnitude_scores(m), 1.3, classifier=None)
    data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    mask = m[0].weight_mask.bool()
    for form in ("grad", "theta_grad"):
        g = P.gradient_scores(m, data, form=form)["0.weight"]
        assert (~mask).any() and not g[~mask].any() and g[mask].any(), form


def test_masks_without_a_model_say_the_classifier_is_pruned():
    """Without model= the default classifier="auto" cannot find the classifier, which is then ranked like any
    layer (4.weight below keeps 89 of its 320 entries): a warning says so, and naming it leaves it out."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    scores = P.magnitude_scores(model)
    for make in (P.global_masks, P.layerwise_masks):
        with pytest.warns(UserWarning, match="without model= the classifier cannot be identified") as said:
            assert "4.weight" in make(scores, 8)
        assert said[0].filename == __file__  # points at the call
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert "4.weight" not in make(scores, 8, model=model)
            assert "4.weight" not in make(scores, 8, classifier="4")
            assert "4.weight" in make(scores, 8, prune_classifier=True)
