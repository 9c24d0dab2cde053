"""Do narrow and wide networks train the same way? Redman et al.'s (NeurIPS 2024) width experiment.

Fully connected 784 -> h -> 10 networks (no biases, ReLU) trained with plain SGD (lr 0.1,
batch 60, one epoch); the weights of the second layer (10 h numbers) are recorded after every
step. Per data-order seed, several slightly perturbed copies of one initialization are trained
and pooled into one Koopman spectrum (:func:`koopman_tut.numerics.spectra.spectrum`, 10 modes), with
delays chosen so that every width has the same embedded dimension (k_h + 1) 10 h. Narrow
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
    """Spectra per width and seed (each pooled over the perturbed initializations)."""

    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    delays: dict[int, int]
    spectra: dict[int, list[Tensor]]
    test_acc: dict[int, list[float]] = field(default_factory=dict)

    def between(self, h1: int, h2: int) -> np.ndarray:
        """(n_seeds,) distances between widths h1 and h2 trained on the same seed."""
        return np.array([wasserstein(a, b) for a, b in zip(self.spectra[h1], self.spectra[h2])])

    def within(self, h: int) -> np.ndarray:
        """Distances between the spectra of width h at different seeds (all pairs)."""
        s = self.spectra[h]
        return np.array([wasserstein(s[i], s[j]) for i in range(len(s)) for j in range(i + 1, len(s))])

    def test(self, h1: int, h2: int, **kwargs) -> PermutationResult:
        """:func:`koopman_tut.numerics.spectra.permutation_test` of width h1's seeds against width h2's."""
        return permutation_test(self.spectra[h1], self.spectra[h2], **kwargs)

    def table(self, digits: int = 4) -> str:
        """Mean distance between every pair of widths (same seed) and within each width (across seeds)."""
        lines = [f"{'pair':>12}  {'mean W1':>9}  {'p (perm.)':>9}"]
        for i, h1 in enumerate(self.widths):
            for h2 in self.widths[i:]:
                d = self.within(h1) if h1 == h2 else self.between(h1, h2)
                p = "" if h1 == h2 else f"{self.test(h1, h2).p_value:.3f}"
                lines.append(f"{f'h={h1}-h={h2}':>12}  {d.mean():9.{digits}f}  {p:>9}")
        return "\n".join(lines)


def width_study(widths: Sequence[int] = (5, 10, 40), seeds: Sequence[int] = (0, 1, 2, 3, 4), inits: int = 5,
                epochs: float = 1, span: int | None = None, modes: int = 10, lr: float = 0.1, batch_size: int = 60,
                perturbation: float = 1e-3, dataset: str = "digits", device="auto", progress: bool = False,
                root=None, download: bool = False) -> WidthStudy:
    """Train every (width, seed, init), pool each (width, seed) over inits, take its spectrum.

    Parameters
    ----------
    widths : hidden widths h. span : (k_h + 1) h for every width (default 2 max(widths): the
        widest gets 1 delay). inits : runs pooled per spectrum (init 0 unperturbed).
    epochs : passes over the training set (digits: 23 steps per epoch at batch 60).
    modes : DMD modes per spectrum (the authors' 10).
    dataset, root, download : :func:`koopman_tut.training.data.get_datasets` ("mnist": the paper's 784 -> h -> 10).
    """
    if inits < 1 or len(seeds) < 1:
        raise ValueError(f"inits and seeds must be at least 1, got inits={inits}, seeds={list(seeds)}")
    delays = delays_for(widths, 2 * max(widths) if span is None else span)
    train_set, test_set = data.get_datasets(dataset, root=root, download=download, flatten=True)
    _, test_loader = data.loaders(train_set, test_set)
    spectra: dict[int, list[Tensor]] = {h: [] for h in widths}
    accs: dict[int, list[float]] = {h: [] for h in widths}
    bar = tqdm(total=len(widths) * len(seeds) * inits, desc="widths", disable=not progress, leave=False)
    for h in widths:
        for seed in seeds:
            runs = []
            for i in range(inits):
                W, acc = train_run(h, seed, i, train_set, epochs, lr, batch_size, perturbation, device,
                                   test_loader if i == 0 else None)
                runs.append(W)
                accs[h] += [acc] if i == 0 else []
                bar.update(1)
            spectra[h].append(spectrum(runs, delays[h], modes))
    bar.close()
    return WidthStudy(tuple(widths), tuple(seeds), delays, spectra, accs)
