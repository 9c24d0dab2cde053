"""The experiment engine, the widgets and plots that read its rows, the step counter, the systems."""
import math
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import koopman_tut as kt  # noqa: E402
from koopman_tut import experiments as ex, plotting, pruning, widgets  # noqa: E402
from koopman_tut.training.systems import linear_system, quadratic_gd, trajectory_like  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    s = ex.setup("digits", seed=0, hidden=(32, 16))
    ex.run(s, 60, seed=0)
    return s


def test_one_step_counter(trained):
    s = ex.setup("digits", seed=1, hidden=(8,))
    assert s.steps == 0
    ex.run(s, 7, seed=1)
    assert s.steps == 7
    traj = ex.record(s, 5, seed=1)
    assert s.steps == 12 and traj.steps.tolist() == list(range(7, 13))
    kt.train.finetune(s.model, s.train_loader, epochs=1, progress=False, optimizer="sgd")  # its own optimizer
    assert s.steps == 12


def test_compare_rows_and_controls(trained):
    s = trained
    scores = {"GMP": pruning.magnitude_scores(s.model), "same": pruning.magnitude_scores(s.model)}
    before = s.train_loader.generator.get_state()
    rows = ex.compare(s.model, scores, [2, 8], s.test_loader, s.train_loader, finetune_epochs=1, random=3)
    assert [(r.method, r.compression) for r in rows] == [(m, c) for c in (2, 8) for m in ("GMP", "same", "random")]
    by = {(r.method, r.compression): r for r in rows}
    assert by["same", 8].overlap == 1.0 and by["same", 8].accuracy_finetuned == by["GMP", 8].accuracy_finetuned
    chance = ex.chance_overlap(s.model, scores["GMP"], 8)
    assert chance < 1 / 8 and by["random", 8].overlap == pytest.approx(chance, abs=0.03)  # chance level
    assert by["random", 2].accuracy_std > 0  # three independent masks
    assert by["GMP", 8].accuracy > by["random", 8].accuracy
    assert torch.equal(s.train_loader.generator.get_state(), before)  # the caller's loader is not advanced
    assert ex.pick(rows, "GMP") == [by["GMP", 2].accuracy, by["GMP", 8].accuracy]
    text = ex.table(rows, "accuracy_finetuned")
    assert "random" in text and len(text.splitlines()) == 4


def test_compare_a_model_pruned_before(trained):
    """Iterative pruning: a model pruned with torch.nn.utils.prune and run forward with gradients (its masked
    weights are then non-leaf tensors, which deepcopy refused) is compared like any other, and left as it was;
    its chance level counts only the entries still in use, as the random masks draw them."""
    import copy

    model = copy.deepcopy(trained.model)
    pruning.prune_model(model, pruning.magnitude_scores(model), 2)
    x, y = next(iter(trained.train_loader))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    scores = {"GMP": pruning.magnitude_scores(model)}
    rows = ex.compare(model, scores, [3, 8], trained.test_loader, random=5, seed=1)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    by = {(r.method, r.compression): r for r in rows}
    for c in (3, 8):
        chance = ex.chance_overlap(model, scores["GMP"], c)
        masks = pruning.global_masks(scores["GMP"], c, model=model)
        in_use = sum(int((pruning.current_value(model, n) != 0).sum()) for n in masks)
        assert chance == pytest.approx(sum(int(m.sum()) for m in masks.values()) / in_use)
        every = sum(m.numel() for m in masks.values())  # before: kept / every ranked entry, pruned ones included
        assert chance > 1.5 * sum(int(m.sum()) for m in masks.values()) / every
        assert by["random", c].overlap == pytest.approx(chance, abs=0.03)
        draws = [pruning.random_masks(model, c, seed=1, draw=i) for i in range(5)]
        assert by["random", c].kept_by_layer == pytest.approx(
            {n: np.mean([float(d[n].float().mean()) for d in draws]) for n in masks}), "averaged over the draws"


def test_compare_passes_the_mask_options_on(trained):
    """classifier= and exclude= reach every mask, the random ones included (before, compare could not take them:
    a model whose head is registered first had its real head pruned)."""
    m, sc = trained.model, pruning.magnitude_scores(trained.model)
    first, last = pruning.prunable(m)[0], pruning.prunable(m)[-1]  # features.0.weight, features.2.weight
    rows = ex.compare(m, {"GMP": sc}, 2, trained.test_loader, random=2, exclude=[last])
    assert all(last not in r.kept_by_layer and first in r.kept_by_layer for r in rows)
    assert ex.overlaps(m, sc, sc, 2, exclude=[last]) == {2: 1.0}
    assert ex.chance_overlap(m, sc, 2, exclude=[last]) != ex.chance_overlap(m, sc, 2)


def test_compare_a_tied_weight_scored_under_its_second_name():
    """random_masks names a tied tensor by its first name; a rule's scores may use the other: the random row's
    overlap with the first rule raised 'masks cover different parameters'."""
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.mid = torch.nn.Linear(20, 20, bias=False), torch.nn.Linear(20, 20)
            self.dec, self.out = torch.nn.Linear(20, 20, bias=False), torch.nn.Linear(20, 10)
            self.dec.weight = self.enc.weight

        def forward(self, x):
            return self.out(torch.relu(self.dec(torch.relu(self.mid(self.enc(x))))))

    torch.manual_seed(0)
    net, data = Tied(), [(torch.randn(8, 20), torch.randint(0, 10, (8,)))]
    sc = {("dec.weight" if n == "enc.weight" else n): v for n, v in pruning.magnitude_scores(net).items()}
    rows = ex.compare(net, {"GMP": sc}, 2, data, random=2, classifier="out")
    (rnd,) = [r for r in rows if r.method == "random"]
    assert set(rnd.kept_by_layer) == {"dec.weight", "mid.weight"} and 0 < rnd.overlap < 1


def test_overlaps_and_compare_take_one_compression_or_distinct_ones(trained):
    a = pruning.magnitude_scores(trained.model)
    assert ex.overlaps(trained.model, a, a, 4) == {4: 1.0}
    for bad in ([2, 8, 2], []):
        with pytest.raises(ValueError, match="compressions must be one number or distinct numbers"):
            ex.overlaps(trained.model, a, a, bad)
        with pytest.raises(ValueError, match="compressions must be one number or distinct numbers"):
            ex.compare(trained.model, {"GMP": a}, bad, trained.test_loader, random=0)
    nothing = {n: torch.zeros_like(v, dtype=torch.bool) for n, v in a.items()}
    assert math.isnan(pruning.kept_overlap(nothing, {n: ~m for n, m in nothing.items()})), "a share of nothing"


def test_widget_and_plots_read_the_same_rows(trained, capsys):
    s = trained
    rows = widgets.compare_pruning(s.model, {"GMP": pruning.magnitude_scores(s.model)}, 4, s.test_loader)
    out = capsys.readouterr().out
    assert f"{rows[0].accuracy:.3f}" in out and "random" in out
    ax = plotting.accuracy_vs_compression(ex.compare(s.model, {"GMP": pruning.magnitude_scores(s.model)}, [2, 4],
                                                     s.test_loader, random=2))
    assert ax.get_xlabel().startswith("compression") and ax.get_title() and ax.get_legend() is not None
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["GMP", "random"]


def test_mean_ci():
    m, lo, hi = ex.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and lo < 2 < hi and hi - 2 == pytest.approx(2 - lo)
    assert ex.mean_ci([0.5])[0] == 0.5 and all(map(math.isnan, ex.mean_ci([0.5])[1:]))  # no interval from one value


def test_systems_are_what_they_say():
    W, A = linear_system([0.9, 0.5], n_steps=5, dim=4, seed=0)
    np.testing.assert_allclose(A @ W[:, :-1], W[:, 1:], atol=1e-12)
    q = quadratic_gd([1.0, 2.0], lr=0.1, n_steps=3, dim=5, seed=0)
    np.testing.assert_allclose(q.W[:, 1], q.W[:, 0] - 0.1 * q.gradient(q.W[:, 0]), atol=1e-12)
    np.testing.assert_allclose(sorted(q.eigs), [0.8, 0.9, 1.0])
    W = trajectory_like(1000, 10, seed=0)
    assert W.shape == (1000, 10) and W.dtype == torch.float32


def test_compare_and_run_refuse_what_they_would_silently_change():
    from koopman_tut.training import experiments as ex
    s = ex.setup("digits", seed=0)
    scores = {"GMP": kt.pruning.magnitude_scores(s.model)}
    with pytest.raises(ValueError, match="finetune_epochs=1 needs train_loader="):  # it skipped fine-tuning
        ex.compare(s.model, scores, [2], s.test_loader, finetune_epochs=1)
    with pytest.raises(ValueError, match="random must be an integer >= 0"):
        ex.compare(s.model, scores, [2], s.test_loader, random=-1)
    assert [r.compression for r in ex.compare(s.model, scores, 2, s.test_loader, random=0)] == [2]
    with pytest.raises(TypeError, match="steps must be an int"):  # 1.5 took 2 steps
        ex.run(s, 1.5)
    assert s.steps == 0


def test_setup_evaluate_and_loader_refuse_what_they_got_wrong():
    from koopman_tut.training import experiments as ex
    from koopman_tut.training.train import evaluate
    with pytest.raises(ValueError, match="dataset must be one of"):  # KeyError: 'nope'
        ex.setup("nope")
    with pytest.raises(ValueError, match=r"model='resnet20' takes samples of shape \(3, 32, 32\); dataset='digits'"):
        ex.setup("digits", "resnet20")  # accepted: the first step failed deep in torch
    s = ex.setup("digits", seed=0)
    with pytest.raises(ValueError, match="loader holds no samples"):  # (0.0, 0.0): 0% accuracy
        evaluate(s.model, [])
    with pytest.raises(TypeError, match="shuffle must be True or False"):  # 'no' shuffled
        kt.data.loader(s.train_loader.dataset, 8, shuffle="no")
    with pytest.raises(TypeError, match="batch_size must be an integer >= 1"):
        kt.data.loader(s.train_loader.dataset, "8")


def test_setup_names_a_device_that_is_none_here():
    from koopman_tut.training import experiments as ex
    with pytest.raises(ValueError, match=r"device='gpu' is not a device: expected 'cpu', 'cuda'"):
        ex.setup(device="gpu")  # torch's "Expected one of cpu, cuda, ipu, ... device type"
    with pytest.raises(ValueError, match=r"device=99, but this machine has \d+ usable CUDA device"):
        ex.setup(device=99)  # "Found no NVIDIA driver on your system"


def test_systems_refuse_what_they_would_silently_change():
    # dim=2 < 3 eigenvalues gave A with other eigenvalues (0.32, 0.50); NaN gave NaN snapshots; complex ones
    # a bare "float() argument must be ..."; a diverging lr or a negative Hessian eigenvalue gave iterates
    # that never reach x_star, called the minimizer reached
    with pytest.raises(ValueError, match=r"dim must be at least the number of eigenvalues \(3\), got dim=2"):
        linear_system([0.9, 0.5, 0.3], 10, dim=2)
    with pytest.raises(ValueError, match=r"eigs must be finite real numbers, got \[nan\]"):
        linear_system([float("nan")], 5)
    with pytest.raises(TypeError, match=r"eigs must be real eigenvalues .*got complex"):
        linear_system([0.5 + 0.5j, 0.5 - 0.5j], 5)
    with pytest.raises(ValueError, match=r"spectral radius 2 >= 1\): training diverges"):
        quadratic_gd([1.0, 30.0], lr=0.1, n_steps=30)
    with pytest.raises(ValueError, match=r"hess_eigs must be > 0.*got -1"):
        quadratic_gd([-1.0, 2.0], lr=0.1, n_steps=30)
    W, A = linear_system([0.9, -0.4], 5, dim=2)  # the controls: as many dimensions as eigenvalues, any sign
    np.testing.assert_allclose(sorted(np.linalg.eigvals(A).real), [-0.4, 0.9], atol=1e-12)
    assert quadratic_gd([1.0, 9.9], lr=0.2, n_steps=3).W.shape == (20, 4)


def test_the_prediction_study_scores_the_paper_s_kmp_by_a_complex_mode_s_modulus(monkeypatch):
    """'KMP closest' is the paper's |v_1|: where the eigenvalue closest to 1 is complex, the modulus |b phi| (as
    kmp_scores('closest')), not |Re(b phi)| (the limit estimate's real part, which estimate_limit returns)."""
    import warnings

    from test_dmd import _complex_closest_run

    W, bphi, _ = _complex_closest_run()
    traj = kt.Trajectory(W.float(), torch.arange(W.shape[1]), ["w"], [(6,)], {})
    s = ex.setup("digits", "auto", seed=0)
    monkeypatch.setattr(ex, "record", lambda *a, **k: traj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = ex.window_scores(s, 12, 0, {"KMP closest": dict(method="closest")})["KMP closest"]["w"]
    assert float((scores - bphi.abs().float()).abs().max()) < 1e-4 * float(bphi.abs().max())
