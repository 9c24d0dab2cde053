"""Do narrow and wide networks train the same way? Redman et al.'s (NeurIPS 2024) width experiment.

Fully connected 784 -> h -> 10 networks (no biases, ReLU) trained with plain SGD (lr 0.1,
batch 60, one epoch); the weights of the second layer (10 h numbers) are recorded after every
step. Per data-order seed, several slightly perturbed copies of one initialization are trained
and pooled into one Koopman spectrum (:func:`koopman_tut.numerics.spectra.spectrum`, 10 modes). The
delays are this tutorial's choice: every width gets the same embedded dimension (k_h + 1) 10 h
(the authors' code keeps k_h h fixed instead: 64, 32 and 8 delays for h = 5, 10, 40). Narrow
networks (h = 5) were found to train non-equivalently to wide ones (h = 40) on MNIST
(arXiv:2302.09160, Fig. 3). The default here is the offline 8x8 digits (64 -> h -> 10).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import data
from ..numerics.spectra import PermutationResult, permutation_test, spectrum, wasserstein
from .train import accuracy, resolve_device, set_seed, train

Tensor = torch.Tensor


def width_net(h: int, in_features: int = 64, n_classes: int = 10) -> nn.Sequential:
    """in_features -> h -> n_classes, ReLU, no biases (the paper's FCN). Layer ``2`` is the recorded one."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, h, bias=False), nn.ReLU(),
                         nn.Linear(h, n_classes, bias=False))


def delays_for(widths: Sequence[int], span: int) -> dict[int, int]:
    """Delays k_h with (k_h + 1) h = span, so every width has the embedded dimension 10 span."""
    whole = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)  # noqa: E731
    if not whole(span) or not all(map(whole, widths)):
        raise ValueError(f"span and widths must be integers (a delay count is span / h - 1), got span={span!r}, "
                         f"widths {list(widths)}")
    bad = [h for h in widths if h < 1 or span % h]
    if bad or span < max(widths):
        raise ValueError(f"span must be a common multiple of the widths, at least max(widths); got span={span} "
                         f"for widths {list(widths)}")
    return {h: span // h - 1 for h in widths}


def _perturb(model: nn.Module, size: float, gen: torch.Generator) -> None:
    """Multiply every weight by (1 + size * U(-1, 1)), as the authors' perturbed initializations."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + size * (2 * torch.rand(p.shape, generator=gen) - 1).to(p.device))


def train_run(h: int, seed: int, init: int, train_set, epochs: float = 1, lr: float = 0.1,
              batch_size: int = 60, perturbation: float = 1e-3, device="auto", test_loader=None):
    """One run: init from ``seed`` (perturbed unless init == 0), data order from ``seed``.

    Returns
    -------
    (W, acc): W (10 h, steps + 1) float32 CPU tensor, the second layer's weights before the
    first step and after every step; acc the test accuracy at the end (None without test_loader).
    """
    set_seed(seed)
    model = width_net(h, in_features=train_set[0][0].numel())
    if init:
        _perturb(model, perturbation, torch.Generator().manual_seed(10_000 * seed + init))
    model.to(resolve_device(device))
    loader, _ = data.loaders(train_set, train_set, batch_size=batch_size, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    snaps = [model[3].weight.detach().flatten().cpu().clone()]
    opt.register_step_post_hook(lambda *_: snaps.append(model[3].weight.detach().flatten().cpu().clone()))
    train(model, loader, epochs=epochs, optimizer=opt, seed=None, device=device, progress=False)
    acc = accuracy(model, test_loader) if test_loader is not None else None
    return torch.stack(snaps, 1), acc


@dataclass
class WidthStudy:
    """Spectra per width and seed (each pooled over the perturbed initializations), and the runs behind them.

    ``runs[h][i]`` holds the ``inits`` runs of width h at ``seeds[i]`` (each (10 h, steps + 1)), so the
    same runs can be embedded again with other delays (:meth:`at_delays`) without training again.
    """

    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    delays: dict[int, int]
    spectra: dict[int, list[Tensor]]
    test_acc: dict[int, list[float]] = field(default_factory=dict)
    runs: dict[int, list[list[Tensor]]] = field(default_factory=dict, repr=False)
    modes: int = 10

    def _width(self, h) -> int:
        if h not in self.spectra:
            raise ValueError(f"width {h!r} is not in this study: its widths are {list(self.widths)}")
        return h

    def between(self, h1: int, h2: int) -> np.ndarray:
        """(n_seeds,) distances between widths h1 and h2 trained on the same seed."""
        a, b = self.spectra[self._width(h1)], self.spectra[self._width(h2)]
        return np.array([wasserstein(x, y) for x, y in zip(a, b)])

    def within(self, h: int) -> np.ndarray:
        """Distances between the spectra of width h at different seeds (all pairs)."""
        s = self.spectra[self._width(h)]
        return np.array([wasserstein(s[i], s[j]) for i in range(len(s)) for j in range(i + 1, len(s))])

    def test(self, h1: int, h2: int, **kwargs) -> PermutationResult:
        """:func:`koopman_tut.numerics.spectra.permutation_test` of width h1's seeds against width h2's."""
        return permutation_test(self.spectra[self._width(h1)], self.spectra[self._width(h2)], **kwargs)

    def at_delays(self, delays: int | dict[int, int]) -> "WidthStudy":
        """The same runs, each (width, seed) spectrum taken again with other delays: one number for
        every width, or {width: delays}. The control for the protocol's delays, which change with the
        width: a difference that the delays alone make is not one of width."""
        if not self.runs:
            raise ValueError("this study keeps no runs (built by hand?): at_delays needs width_study's")
        ks = {h: delays for h in self.widths} if not isinstance(delays, dict) else dict(delays)
        if set(ks) != set(self.widths):
            raise ValueError(f"delays must be one integer or a dict for every width {list(self.widths)}, got {delays!r}")
        spectra = {h: [spectrum(runs, ks[h], self.modes) for runs in self.runs[h]] for h in self.widths}
        return WidthStudy(self.widths, self.seeds, ks, spectra, self.test_acc, self.runs, self.modes)

    def table(self, digits: int = 4) -> str:
        """Mean distance between every pair of widths (same seed) and within each width (across seeds)."""
        lines = [f"{'pair':>12}  {'mean W1':>9}  {'p (perm.)':>9}"]
        for i, h1 in enumerate(self.widths):
            for h2 in self.widths[i:]:
                d = self.within(h1) if h1 == h2 else self.between(h1, h2)
                p = "" if h1 == h2 else f"{self.test(h1, h2).p_value:.3f}"
                lines.append(f"{f'h={h1}-h={h2}':>12}  {d.mean():9.{digits}f}  {p:>9}")
        return "\n".join(lines)


def _distinct_ints(values, name: str, minimum: int) -> tuple[int, ...]:
    """``values`` as a tuple of distinct integers >= minimum, or a ValueError naming ``name``."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of integers, e.g. (0, 1, 2), got {values!r}")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum]
    if bad:
        raise ValueError(f"{name} must hold integers >= {minimum}, got {bad[0]!r} in {list(values)}")
    if len(set(values)) < len(values):
        raise ValueError(f"{name} must be distinct (a repeat would count the same runs twice, as if "
                         f"independent), got {list(values)}")
    return tuple(int(v) for v in values)


def width_study(widths: Sequence[int] = (5, 10, 40), seeds: Sequence[int] = (0, 1, 2, 3, 4), inits: int = 5,
                epochs: float = 1, span: int | None = None, modes: int = 10, lr: float = 0.1, batch_size: int = 60,
                perturbation: float = 1e-3, dataset: str = "digits", device="auto", progress: bool = False,
                root=None, download: bool = False) -> WidthStudy:
    """Train every (width, seed, init), pool each (width, seed) over inits, take its spectrum.

    Parameters
    ----------
    widths : distinct hidden widths h. span : (k_h + 1) h for every width (default 2 max(widths):
        the widest gets 1 delay). seeds : distinct data-order seeds (the replicates).
    inits : runs pooled per spectrum (init 0 unperturbed).
    epochs : passes over the training set, > 0 (digits: 23 steps per epoch at batch 60).
    modes : DMD modes per spectrum (the authors' 10).
    dataset, root, download : :func:`koopman_tut.training.data.get_datasets` ("mnist": the paper's 784 -> h -> 10).
    """
    widths, seeds = _distinct_ints(widths, "widths", 1), _distinct_ints(seeds, "seeds", 0)
    if isinstance(inits, bool) or not isinstance(inits, (int, np.integer)) or inits < 1:
        raise ValueError(f"inits must be an integer >= 1 (runs pooled per spectrum), got {inits!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float, np.number)) or not 0 < epochs < float("inf"):
        raise ValueError(f"epochs must be a finite number > 0 (passes over the training set), got {epochs!r}")
    if isinstance(modes, bool) or not isinstance(modes, (int, np.integer)) or modes < 1:
        raise ValueError(f"modes must be an integer >= 1 (DMD modes per spectrum), got {modes!r}")
    delays = delays_for(widths, 2 * max(widths) if span is None else span)
    dim = (delays[widths[0]] + 1) * 10 * widths[0]  # the embedded dimension, every width's
    if modes > dim:
        raise ValueError(f"modes must be at most the embedded dimension (k_h + 1) 10 h = {dim}, got {modes}")
    train_set, test_set = data.get_datasets(dataset, root=root, download=download, flatten=True)
    _, test_loader = data.loaders(train_set, test_set)
    runs: dict[int, list[list[Tensor]]] = {h: [] for h in widths}
    accs: dict[int, list[float]] = {h: [] for h in widths}
    bar = tqdm(total=len(widths) * len(seeds) * inits, desc="widths", disable=not progress, leave=False)
    for h in widths:
        for seed in seeds:
            pooled = []
            for i in range(inits):
                W, acc = train_run(h, seed, i, train_set, epochs, lr, batch_size, perturbation, device,
                                   test_loader if i == 0 else None)
                pooled.append(W)
                accs[h] += [acc] if i == 0 else []
                bar.update(1)
            runs[h].append(pooled)
    bar.close()
    short = min(r.shape[1] for pooled in runs[widths[0]] for r in pooled)
    if short < max(delays.values()) + 2:
        raise ValueError(f"epochs={epochs} gives runs of {short} snapshots, too few for {max(delays.values())} "
                         f"delays (the narrowest width's): train for more epochs, or pass a smaller span")
    spectra = {h: [spectrum(pooled, delays[h], modes) for pooled in runs[h]] for h in widths}
    return WidthStudy(widths, seeds, delays, spectra, accs, runs, int(modes))
