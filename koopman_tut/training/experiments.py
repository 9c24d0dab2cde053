"""The paper's experiments as short functions, so each notebook cell stays a few lines.

Redman et al. (ICLR 2022, arXiv:2110.14856): prune by a score at several compressions,
measure accuracy right after pruning and after one epoch of fine-tuning ("refinement"),
and compare which parameters two rules keep. One engine, :func:`compare` (in :mod:`.comparison`, re-exported
here), prunes copies of a model and returns typed rows; tables, plots and widgets read those rows.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .data import batch_size_of, get_datasets, loader, loaders  # noqa: F401 (ex.loader: notebook 02)
from .models import DEFAULT_MODEL, INPUT_SHAPE, accepts, get_model
from ..pruning import Scores, apply_masks, global_masks, kept_overlap, random_masks  # noqa: F401 (as before)
from .comparison import PruneRow, _evaluate_masks, chance_overlap, compare, overlaps, pick, table  # noqa: F401
from .stats import mean_ci, paired, summarize  # noqa: F401 (re-exported: ex.mean_ci, ...)
from .train import accuracy, finetune, make_optimizer, resolve_device, steps_taken, train  # noqa: F401
from ..pruning.masks import _check_compression
from ..recording.recorder import TrajectoryRecorder
from ..recording.recorder_checks import _check_int
from ..recording.trajectory import Trajectory
from ..recording.validation import check_seed

@dataclass
class Setup:
    """A model with its optimizer and data, ready for Algorithm 1. ``steps`` is read from the
    optimizer's step counter (:func:`koopman_tut.training.train.steps_taken`): the only one."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: DataLoader
    test_loader: DataLoader
    device: torch.device

    @property
    def steps(self) -> int:
        return steps_taken(self.optimizer)


def setup(dataset: str = "digits", model: str = "auto", seed: int = 0, batch_size: int = 128,
          optimizer: str = "nesterov", lr: float = 0.05, momentum: float = 0.9, device="auto",
          full_batch: bool = False, root=None, download: bool = False, **model_kwargs) -> Setup:
    """Data, model (``"auto"``: the dataset's default) and optimizer, all seeded by ``seed``."""
    dev = resolve_device(device)
    if dataset not in DEFAULT_MODEL:
        raise ValueError(f"dataset must be one of {sorted(DEFAULT_MODEL)}, got {dataset!r}")
    name = DEFAULT_MODEL[dataset] if model == "auto" else model
    flatten = len(INPUT_SHAPE.get(name, ())) == 1  # a fully connected model
    tr, te = get_datasets(dataset, seed=seed, root=root, download=download, flatten=flatten)
    if name in INPUT_SHAPE and not model_kwargs and not accepts(name, tuple(tr[0][0].shape)):
        raise ValueError(f"model={name!r} takes samples of shape {INPUT_SHAPE[name]}; dataset={dataset!r} has "
                         f"{tuple(tr[0][0].shape)}: use model='auto' ({DEFAULT_MODEL[dataset]!r}) or a model for it")
    trl, tel = loaders(tr, te, batch_size=batch_size, seed=seed, full_batch=full_batch)
    net = get_model(name, seed=seed, **model_kwargs).to(dev)
    opt = make_optimizer(net, optimizer, lr, momentum)
    steps_taken(opt)  # the step counter starts at 0 with the optimizer
    return Setup(net, opt, trl, tel, dev)


def run(s: Setup, steps: int, seed: int | None = None, progress: bool = False) -> None:
    """Train ``steps`` (>= 0) more optimizer steps (across epochs as needed)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be an int number of optimizer steps, got {steps!r} ({type(steps).__name__})")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}: the setup is at step {s.steps} already, past the step "
                         f"{s.steps + steps} asked for (training cannot go back)")
    if steps > 0:
        train(s.model, s.train_loader, epochs=10**9, max_steps=steps, optimizer=s.optimizer, device=s.device,
              seed=seed, progress=progress)


def record(s: Setup, steps: int, every: int = 1, seed: int | None = None, progress: bool = False,
           dtype=torch.float32) -> Trajectory:
    """Algorithm 1, steps 1-2: train ``steps`` more steps, recording theta every ``every`` steps
    (the current state included). Returns the window as a Trajectory (its own copy)."""
    steps = _check_int("steps", steps, 0)  # checked here, not as the recorder's stop (s.steps + steps)
    with TrajectoryRecorder(s.model, s.optimizer, every=every, start=s.steps, stop=s.steps + steps,
                            step0=s.steps, dtype=dtype) as rec:
        run(s, steps, seed=seed, progress=progress)
    return rec.trajectory(copy=True)


# ----------------------------------------------------------------------------- one engine
@dataclass
class PredictionRow:
    """One rule scored on the window starting at ``start`` (seed ``seed``): how much of the
    final mask (GMP after ``final_steps``) it keeps, and accuracy right after pruning and
    after fine-tuning."""

    seed: int
    start: int
    rule: str
    overlap_final: float
    accuracy: float
    accuracy_finetuned: float | None


# the estimators of where a window is heading that the prediction study compares (each
# scored by |estimate|): the Koopman limit with its stated rank rule (Gavish-Donoho), with the
# rank its held-out forecast picks, and with two fixed ranks (how the answer moves with the
# rank); the paper's single mode; the classic vector extrapolations; the secant limit (the
# gradients the recorded SGD steps imply: exact on a quadratic under momentum, where the Koopman
# limit is not); two straight lines (a is a knob: both are shown, none is picked by hindsight)
ESTIMATORS = {"KMP": dict(method="koopman"), "KMP held-out rank": dict(method="koopman", svd_rank="holdout"),
              "KMP rank 2": dict(method="koopman", svd_rank=2), "KMP rank 8": dict(method="koopman", svd_rank=8),
              "KMP closest": dict(method="closest"), "line a=1": dict(method="line", a=1.0),
              "line a=2": dict(method="line", a=2.0), "MPE": dict(method="mpe"), "RRE": dict(method="rre"),
              "Anderson": dict(method="anderson"), "secant": dict(method="secant")}


def window_scores(s: Setup, window: int, seed: int, estimators: dict | None = None) -> dict[str, Scores]:
    """Record ``window`` steps and score them: GMP (weights at the end), stale GMP (weights at the
    start, a control) and |estimate| for every estimator of the window's limit in ``estimators``
    (default :data:`ESTIMATORS`: {rule name: keyword arguments of kt.estimate_limit}, where
    svd_rank="holdout" is :func:`koopman_tut.numerics.limits.holdout_rank`)."""
    from ..numerics.limits import estimate_limit, holdout_rank
    from ..pruning import magnitude_scores
    from ..pruning.koopman import koopman

    stale = magnitude_scores(s.model)
    traj = record(s, window, seed=seed)
    out = {"GMP": magnitude_scores(s.model), "stale GMP": stale}
    for rule, kw in (ESTIMATORS if estimators is None else estimators).items():
        if kw.get("svd_rank") == "holdout":
            kw = {**kw, "svd_rank": holdout_rank(traj)}
        if kw == {"method": "closest"}:  # the paper's KMP, |v_1|: a complex mode's modulus, not its real part's
            out[rule] = koopman(traj).kmp_scores("closest")
            continue
        out[rule] = {n: v.abs() for n, v in traj.unflatten(estimate_limit(traj, **kw)).items()}
    return out


def check_starts(starts, window: int, final_steps: int) -> list[int]:
    """``starts`` sorted; TypeError / ValueError naming the argument unless they are integer steps >= 0 at least
    ``window`` (an int >= 2: a window of 3 snapshots or more) apart (each window is recorded on the one training
    path) with ``final_steps`` (an int) at or after the last window's end."""
    window, final_steps = _check_int("window", window, 2), _check_int("final_steps", final_steps, 0)
    if isinstance(starts, (numbers.Number, str, bytes)) or not hasattr(starts, "__iter__"):
        raise TypeError(f"starts must be a list of steps such as [20, 80, 320], got {starts!r}")
    starts = sorted(_check_int(f"starts[{i}]", v, 0) for i, v in enumerate(starts))
    if not starts or any(b - a < window for a, b in zip(starts, starts[1:])):  # each start is >= 0 already
        raise ValueError(f"starts must be steps >= 0 at least window={window} apart (each window is recorded "
                         f"on the training path), got {starts}")
    if final_steps < starts[-1] + window:
        raise ValueError(f"final_steps={final_steps} must be at least the last start plus the window "
                         f"({starts[-1] + window}): the final mask comes after every window")
    return starts


def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list of distinct seeds, at least one (a count such as 5 is no list: range(5) is);
    TypeError / ValueError naming ``seeds`` otherwise (a seed twice would count one run twice in the intervals)."""
    if isinstance(seeds, (numbers.Number, str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a list of seeds such as [0, 1, 2] or range(5), got {seeds!r}")
    out = [check_seed(f"seeds[{i}]", v) for i, v in enumerate(seeds)]
    if not out or len(set(out)) < len(out):
        raise ValueError(f"seeds must be distinct seeds, at least one (each is one paired run), got {out}")
    return out


def prediction_study(seeds, starts, window: int = 30, final_steps: int = 2000, compression: float = 8,
                     dataset: str = "digits", finetune_epochs: float = 1, progress: bool = False,
                     estimators: dict | None = None, **setup_kwargs) -> list[PredictionRow]:
    """Does a Koopman estimate from an early window predict the final mask better than the
    weights do? For each seed: train, score windows starting at ``starts``, prune copies and
    fine-tune them, train on to ``final_steps`` and compare every rule's mask with the final one."""
    import warnings

    from tqdm.auto import tqdm

    from ..numerics.extrapolation import DriftWarning, UntrustedLimitWarning
    from ..pruning import magnitude_scores

    starts, seeds = check_starts(starts, window, final_steps), check_seeds(seeds)
    compression = _check_compression(compression)  # before any training, as the other arguments
    rows = []
    for seed in tqdm(seeds, desc="seeds", disable=not progress):
        s = setup(dataset, seed=seed, **setup_kwargs)
        rules = ESTIMATORS if estimators is None else estimators
        secant = [r for r, kw in rules.items() if kw.get("method") == "secant"]
        if secant and type(s.optimizer) is not torch.optim.SGD:
            raise ValueError(f"estimators: {secant} read the gradients back from torch.optim.SGD's steps, and this "
                             f"study trains with {type(s.optimizer).__name__}; pass estimators= without them")
        kept = {}
        for start in sorted(starts):
            run(s, start - s.steps, seed=seed * 7919 + start)
            with warnings.catch_warnings():  # drift and trust are reported through the overlap instead
                warnings.simplefilter("ignore", DriftWarning)
                warnings.simplefilter("ignore", UntrustedLimitWarning)
                scores = window_scores(s, window, seed * 7919 + start + 1, estimators)
            for rule, sc in scores.items():
                before, after = _evaluate_masks(s.model, global_masks(sc, compression, model=s.model), s.test_loader,
                                                s.train_loader, finetune_epochs, 0.01, seed)
                kept[start, rule] = (global_masks(sc, compression, model=s.model), before, after)
        run(s, final_steps - s.steps, seed=seed * 7919 + final_steps)
        final = global_masks(magnitude_scores(s.model), compression, model=s.model)
        rows += [PredictionRow(seed, start, rule, kept_overlap(final, m), b, a)
                 for (start, rule), (m, b, a) in kept.items()]
    return rows
