"""Plots of the tutorial: Koopman spectra on the unit circle, accuracy vs compression, overlaps.

Matplotlib only; every function takes an optional ``ax`` and returns it.
"""
from __future__ import annotations

import numpy as np
import torch


def _ax(ax, figsize=(4.5, 4.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def spectrum(eigs, ax=None, amplitudes=None, label=None, highlight: int | None = None, color=None,
             zoom: float | None = None):
    """DMD eigenvalues in the complex plane with the unit circle; marker size ~ |amplitude|.

    ``highlight`` circles one eigenvalue (e.g. the one closest to 1); ``zoom`` limits the view
    to a square of that half-width around 1.
    """
    ax = _ax(ax)
    e = _np(eigs).astype(complex)
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(t), np.sin(t), color="0.7", lw=1)
    size = 30 if amplitudes is None else 10 + 60 * np.abs(_np(amplitudes)) / max(np.abs(_np(amplitudes)).max(), 1e-30)
    ax.scatter(e.real, e.imag, s=size, label=label, color=color, alpha=0.8, zorder=3)
    if highlight is not None:
        ax.scatter([e[highlight].real], [e[highlight].imag], s=180, facecolors="none", edgecolors="red", zorder=4,
                   label="closest to 1")
    ax.axhline(0, color="0.85", lw=0.8)
    ax.axvline(0, color="0.85", lw=0.8)
    ax.set_aspect("equal")
    if zoom is not None:
        ax.set_xlim(1 - zoom, 1 + zoom)
        ax.set_ylim(-zoom, zoom)
    ax.set_xlabel("Re $\\lambda$")
    ax.set_ylabel("Im $\\lambda$")
    return ax


def accuracy_vs_compression(rows: list[dict], value: str = "accuracy", ax=None, title: str | None = None):
    """Lines of ``value`` against compression (log2 axis), one per method, from experiments.sweep rows."""
    ax = _ax(ax, (5, 3.5))
    for m in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["compression"], r[value]) for r in rows if r["method"] == m and value in r)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=m)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("compression (total / nonzero)")
    ax.set_ylabel(value.replace("_", " "))
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def curves(x, ys: dict, ax=None, xlabel: str = "", ylabel: str = "", spread: dict | None = None, logx=False,
           xticklabels=None):
    """Several named curves over x, with an optional +-spread band for each; ticks at the x values."""
    ax = _ax(ax, (5, 3.5))
    for name, y in ys.items():
        y = _np(y)
        ax.plot(x, y, "o-", label=name)
        if spread and name in spread:
            s = _np(spread[name])
            ax.fill_between(x, y - s, y + s, alpha=0.2)
    if logx:
        ax.set_xscale("log")
    ax.set_xticks(list(x), xticklabels or [f"{v:g}" for v in x])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def singular_values(s, ax=None, label=None):
    """Singular values of the snapshot matrix, normalized by the largest, on a log axis."""
    ax = _ax(ax, (5, 3.5))
    s = _np(s)
    ax.semilogy(np.arange(1, len(s) + 1), s / s[0], "o-", label=label)
    ax.set_xlabel("index")
    ax.set_ylabel("$\\sigma_i / \\sigma_1$")
    return ax
