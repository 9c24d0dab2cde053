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


def spectrum(eigs, ax=None, amplitudes=None, label="eigenvalues", highlight: int | None = None, color=None,
             zoom: float | None = None, title: str | None = None, marker="o"):
    """DMD eigenvalues in the complex plane with the unit circle; marker area ~ |amplitude|.

    ``highlight`` rings one eigenvalue (e.g. the one closest to 1) without covering it;
    ``zoom`` limits the view to a square of that half-width around 1 (eigenvalues outside
    it are counted in the title, never silently clipped). Every mark has a legend entry.
    """
    ax = _ax(ax)
    e = _np(eigs).astype(complex)
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(t), np.sin(t), color="0.6", lw=1, label="unit circle")
    if amplitudes is None:
        size, text = 30, label
    else:
        a = np.abs(_np(amplitudes))
        size, text = 10 + 90 * a / max(a.max(), 1e-30), f"{label} (area ~ |amplitude|)"
    ax.scatter(e.real, e.imag, s=size, label=text, color=color, alpha=0.75, zorder=4, marker=marker)
    if highlight is not None:
        ax.scatter([e[highlight].real], [e[highlight].imag], s=260, facecolors="none", edgecolors="red", lw=1.5,
                   zorder=3, label=f"closest to 1: {e[highlight].real:.4f}{e[highlight].imag:+.4f}i")
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.axvline(0, color="0.85", lw=0.8, zorder=0)
    ax.set_aspect("equal")
    outside = 0
    if zoom is not None:
        ax.set_xlim(1 - zoom, 1 + zoom)
        ax.set_ylim(-zoom, zoom)
        outside = int(((np.abs(e.real - 1) > zoom) | (np.abs(e.imag) > zoom)).sum())
    ax.set_xlabel("Re $\\lambda$")
    ax.set_ylabel("Im $\\lambda$")
    suffix = f" ({outside} outside this view)" if outside else ""
    ax.set_title((title or ("near 1" if zoom else "DMD spectrum")) + suffix, fontsize=10)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    return ax


STYLES = {"GMP": dict(ls="--", marker="s", zorder=4), "KMP": dict(ls="-", marker="o", lw=3, alpha=0.6),
          "random": dict(ls=":", marker="x", color="0.4")}


def accuracy_vs_compression(rows, value: str = "accuracy", ax=None, title: str | None = None):
    """Lines of ``value`` against compression (log2 axis), one per rule, from
    :func:`koopman_tut.experiments.compare` rows. Rules that coincide stay visible: GMP is
    dashed over a thick, translucent KMP; random is dotted with a +-1 std band."""
    ax = _ax(ax, (5.5, 3.8))
    for m in dict.fromkeys(r.method for r in rows):
        pts = sorted((r.compression, getattr(r, value), r.accuracy_std) for r in rows
                     if r.method == m and getattr(r, value) is not None)
        x, y = [p[0] for p in pts], np.array([p[1] for p in pts])
        line, = ax.plot(x, y, label=m, **STYLES.get(m.split(" ")[0], dict(marker="o")))
        if m == "random" and value == "accuracy":
            s = np.array([p[2] for p in pts])
            ax.fill_between(x, np.clip(y - s, 0, 1), np.clip(y + s, 0, 1), color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("compression (total / nonzero parameters)")
    ax.set_ylabel({"accuracy": "test accuracy after pruning",
                   "accuracy_finetuned": "test accuracy after fine-tuning"}.get(value, value.replace("_", " ")))
    ax.set_title(title or {"accuracy": "right after pruning", "accuracy_finetuned": "after 1 epoch of fine-tuning"}
                 .get(value, ""))
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
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


def theory_vs_dmd(theory, res, ax=None):
    """Closed-form eigenvalues (open rings) and DMD's (filled dots inside them) on the real
    line near [0, 1]: a match shows as a dot centred in its ring."""
    ax = _ax(ax)
    e = _np(res.eigs).astype(complex)
    th = np.asarray(theory, dtype=float)
    ax.scatter(th, 0 * th, s=160, facecolors="none", edgecolors="k", lw=1.2, label="theory: 1 and $1 - \\eta h_i$",
               zorder=3)
    ax.scatter(e.real, e.imag, s=30, color="C0", zorder=4, label="DMD eigenvalues")
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("Re $\\lambda$")
    ax.set_ylabel("Im $\\lambda$")
    ax.set_ylim(-0.25, 0.25)
    ax.set_title("Koopman eigenvalues of gradient descent", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def distance_to(W, x_star, ax=None):
    """||x_t - x*|| against the step t on a log axis (convergence of a trajectory)."""
    ax = _ax(ax, (5, 3.5))
    d = np.linalg.norm(_np(W) - _np(x_star)[:, None], axis=0)
    ax.semilogy(np.arange(d.size), d, "o-", label="$\\|x_t - x^*\\|$")
    ax.set_xlabel("step t")
    ax.set_ylabel("distance to the minimizer")
    ax.set_title("gradient descent converges geometrically", fontsize=10)
    ax.legend(fontsize=8)
    return ax


def scatter_vs(x, y, xlabel: str, ylabel: str, ax=None, n: int = 5000, seed: int = 0):
    """Scatter of ``n`` random entries of two (n_features,) vectors with the diagonal y = x,
    axes fitted to the data (not twice its range)."""
    ax = _ax(ax)
    x, y = _np(x).ravel(), _np(y).ravel()
    idx = np.random.default_rng(seed).permutation(x.size)[:n]
    ax.scatter(x[idx], y[idx], s=3, alpha=0.4, label=f"{idx.size:,} random parameters")
    lo, hi = float(min(x[idx].min(), y[idx].min())), float(max(x[idx].max(), y[idx].max()))
    pad = 0.05 * (hi - lo)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("each parameter: now vs Koopman estimate", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return ax


def study_curves(rows, value: str, ax=None, ylabel: str = ""):
    """Mean over seeds of one value of :func:`koopman_tut.experiments.prediction_study` rows
    against the window's start, one line per rule, with its 95% interval as a band clipped
    to [0, 1]; a log axis over the starts."""
    from .experiments import mean_ci

    ax = _ax(ax, (5.5, 4))
    starts = sorted({r.start for r in rows})
    for i, rule in enumerate(dict.fromkeys(r.rule for r in rows)):
        stats = [mean_ci([getattr(r, value) for r in rows if r.rule == rule and r.start == t]) for t in starts]
        m, lo, hi = (np.array(v) for v in zip(*stats))
        style = STYLES.get(rule.split(" ")[0], {}) if rule in ("GMP", "KMP") else {}
        line, = ax.plot(starts, m, marker="os^vDx"[i % 6], label=rule, **{k: v for k, v in style.items() if k != "marker"})
        ax.fill_between(starts, np.clip(lo, 0, 1), np.clip(hi, 0, 1), color=line.get_color(), alpha=0.12)
    ax.set_xscale("log")
    ax.set_xticks(starts, [str(t) for t in starts])
    ax.minorticks_off()
    ax.set_xlabel("start of the window (optimizer steps)")
    ax.set_ylabel(ylabel or value.replace("_", " "))
    ax.set_title(f"mean over {len({r.seed for r in rows})} seeds, 95% interval shaded", fontsize=10)
    ax.legend(fontsize=8)
    return ax


# ----------------------------------------------------------------------------- seeds, horizons, spectra (04, 06)
# the first series thick and translucent, so a later one that coincides with it stays visible on top
_LINE_STYLES = (dict(ls="-", marker="o", lw=3.5, ms=9, alpha=0.55), dict(ls="--", marker="s"),
                dict(ls=":", marker="^"), dict(ls="-.", marker="D"), dict(ls=(0, (5, 1, 1, 1)), marker="v"),
                dict(ls=(0, (1, 1)), marker="P"))


def _mean_band(values):
    """(mean, low, high) arrays over axis 0 (the seeds): the mean and its 95% t-interval."""
    from .experiments import mean_ci

    v = np.asarray(values, dtype=float)
    v = v[:, None] if v.ndim == 1 else v
    return tuple(np.array(s) for s in zip(*(mean_ci(v[:, j]) for j in range(v.shape[1]))))


def _band_proxy(n_seeds: int, geometric: bool = False):
    from matplotlib.patches import Patch

    what = "95% interval of the geometric mean" if geometric else "95% interval"
    return Patch(color="0.5", alpha=0.3, label=f"{what} over {n_seeds} seeds")


def seed_bands(x, series: dict, ax=None, xlabel: str = "", ylabel: str = "", title: str = "", logx: bool = False,
               clip=None, logy: bool = False, legend: str | None = "best"):
    """Mean over seeds of each named series against ``x``, with its 95% t-interval as a band.

    Parameters
    ----------
    series : {label: array (n_seeds, len(x))}. Each series has its own line style and marker,
        so curves that coincide stay distinguishable.
    clip : (low, high) range the bands are clipped to (e.g. (0, 1) for shares), or None.
    logy : positive values spanning decades (losses): a log y axis, and the geometric mean with
        its interval computed on log values, so the band stays positive.
    legend : a matplotlib legend location, "outside" (right of the axes, hiding nothing) or None.

    The first series is drawn thick and translucent under the others, so a curve that
    coincides with it stays visible on top of it.
    """
    from matplotlib.ticker import NullLocator

    ax = _ax(ax, (5.5, 3.8))
    n = 0
    for i, (label, vals) in enumerate(series.items()):
        v = np.asarray(vals, dtype=float)
        n = v.shape[0]
        m, lo, hi = (np.exp(a) for a in _mean_band(np.log(v))) if logy else _mean_band(v)
        if clip is not None:
            lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
        line, = ax.plot(x, m, label=label, **_LINE_STYLES[i % len(_LINE_STYLES)])
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(list(x), [f"{v:g}" for v in x])
        ax.xaxis.set_minor_locator(NullLocator())
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    if legend == "outside":
        ax.legend(handles=handles + [_band_proxy(n, logy)], fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    elif legend is not None:
        ax.legend(handles=handles + [_band_proxy(n, logy)], fontsize=8, framealpha=0.9, loc=legend)
    return ax


def _break_marks(ax, side: str, size: float = 0.015):
    """Two short diagonals on the ``side`` ('left' or 'right') edge: the axis is broken there."""
    x = 0 if side == "left" else 1
    for y in (0, 1):
        ax.plot([x - size * 3, x + size * 3], [y - size, y + size], transform=ax.transAxes, color="k", lw=1,
                clip_on=False)
    ax.spines[side].set_visible(False)


def horizon_panels(horizons, series: dict, ylabel: str = "", title: str = "", clip=None,
                   ends=("GMP", "KMP"), axes=None):
    """Values against the Koopman horizon h with honest ends: h = 0 and h = inf have panels of
    their own beside a log axis for the finite h > 0 (a broken axis, no fake positions).

    Parameters
    ----------
    horizons : the h values, e.g. [0, 1, 10, 100, math.inf].
    series : {label: array (n_seeds, len(horizons))}: mean and 95% t-interval over seeds, a band
        over the finite h, error bars at the ends (dodged sideways so equal values stay visible).
    clip : (low, high) range for bands and error bars, or None.
    ends : names of the rules at h = 0 and h = inf, shown under their ticks.
    axes : three axes sharing y (left, middle, right), or None for a new figure.

    Returns
    -------
    the three axes.
    """
    import math

    import matplotlib.pyplot as plt

    h = [float(v) for v in horizons]
    if axes is None:
        _, axes = plt.subplots(1, 3, sharey=True, figsize=(9, 3.6),
                               gridspec_kw=dict(width_ratios=[1, 5, 1], wspace=0.08))
    left, mid, right = axes
    fin = [i for i, v in enumerate(h) if 0 < v < math.inf]
    ends_at = {left: [i for i, v in enumerate(h) if v == 0], right: [i for i, v in enumerate(h) if math.isinf(v)]}
    n, k = 0, len(series)
    for j, (label, vals) in enumerate(series.items()):
        v = np.asarray(vals, dtype=float)
        n = v.shape[0]
        m, lo, hi = _mean_band(v)
        if clip is not None:
            lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
        style = _LINE_STYLES[j % len(_LINE_STYLES)]
        line, = mid.plot([h[i] for i in fin], m[fin], label=label, **style)
        mid.fill_between([h[i] for i in fin], lo[fin], hi[fin], color=line.get_color(), alpha=0.15, lw=0)
        dx = (j - (k - 1) / 2) * 0.18
        for ax, idx in ends_at.items():
            for i in idx:
                ax.errorbar([dx], [m[i]], yerr=[[m[i] - lo[i]], [hi[i] - m[i]]], color=line.get_color(),
                            marker=style["marker"], capsize=3, ls="none")
    mid.set_xscale("log")
    mid.set_xticks([h[i] for i in fin], [f"{h[i]:g}" for i in fin])
    mid.minorticks_off()
    for ax, text in ((left, f"h = 0\n({ends[0]})"), (right, f"h = $\\infty$\n({ends[1]})")):
        ax.set_xlim(-0.5, 0.5)
        ax.set_xticks([0], [text])
    _break_marks(left, "right")
    _break_marks(mid, "left")
    _break_marks(mid, "right")
    _break_marks(right, "left")
    right.tick_params(axis="y", left=False)
    mid.tick_params(axis="y", left=False)
    left.set_ylabel(ylabel)
    mid.set_xlabel("horizon h (optimizer steps past the window)")
    mid.set_title(title, fontsize=10)
    handles, _ = mid.get_legend_handles_labels()
    mid.legend(handles=handles + [_band_proxy(n)], fontsize=8, framealpha=0.9)
    return axes


def paired_seeds(panels: dict, ylabel: str = "", title: str = "", axes=None):
    """Per-seed values under two or more conditions, paired by seed, one panel each (shared y).

    Parameters
    ----------
    panels : {panel title: {condition: values over seeds, in the same seed order}}.

    Each seed is a thin grey line across its conditions; the mean with its 95% t-interval is a
    black error bar just right of each condition. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if axes is None:
        fig, axes = plt.subplots(1, len(panels), sharey=True, figsize=(3.3 * len(panels), 3.6), squeeze=False)
        axes = axes[0]
    n = 0
    for ax, (name, conds) in zip(axes, panels.items()):
        v = np.array([np.asarray(vals, dtype=float) for vals in conds.values()])  # (conditions, seeds)
        n, x = v.shape[1], np.arange(v.shape[0])
        ax.plot(x, v, color="0.55", lw=0.8, marker=".", ms=6)
        m, lo, hi = _mean_band(v.T)
        ax.errorbar(x + 0.15, m, yerr=[m - lo, hi - m], color="k", marker="D", ms=5, capsize=4, ls="none")
        ax.set_xticks(x, list(conds))
        ax.set_xlim(-0.4, len(x) - 0.45)
        ax.set_title(name, fontsize=10)
    axes[0].set_ylabel(ylabel)
    axes[0].figure.suptitle(title, fontsize=11)
    axes[0].figure.tight_layout()
    axes[-1].legend(handles=[Line2D([], [], color="0.55", lw=0.8, marker=".", label=f"one seed ({n} seeds)"),
                             Line2D([], [], color="k", marker="D", ls="none", label="mean, 95% interval")],
                    fontsize=8, framealpha=0.9)
    return axes


def spectra(runs: dict, ax=None, styles: dict | None = None, zoom: float | None = None, title: str = "Koopman spectra",
            legend: str | None = "outside"):
    """Eigenvalues of several runs in one complex plane, each run with its own colour and marker.

    Parameters
    ----------
    runs : {label: (r,) complex eigenvalues}.
    styles : {label: dict(color=..., marker=..., facecolors=...)} to pair related runs (e.g. colour
        = learning rate, marker = seed); default: one colour and marker per run.
    zoom : half-width of a square view around 1; eigenvalues outside it are counted in the title.
    legend : "outside" (right of the axes, covering no eigenvalue), a matplotlib location, or None.
    """
    ax = _ax(ax)
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(t), np.sin(t), color="0.6", lw=1, label="unit circle", zorder=1)
    outside = 0
    for i, (label, eigs) in enumerate(runs.items()):
        e = _np(eigs).astype(complex)
        st = dict(color=f"C{i}", marker="osD^v"[i % 5])
        st.update((styles or {}).get(label, {}))
        ax.scatter(e.real, e.imag, s=40, label=label, alpha=0.8, zorder=3, **st)
        if zoom is not None:
            outside += int(((np.abs(e.real - 1) > zoom) | (np.abs(e.imag) > zoom)).sum())
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.set_aspect("equal")
    if zoom is not None:
        ax.set_xlim(1 - zoom, 1 + zoom)
        ax.set_ylim(-zoom, zoom)
    ax.set_xlabel("Re $\\mu$ (per step)")
    ax.set_ylabel("Im $\\mu$")
    ax.set_title(title + (f" ({outside} eigenvalues outside this view)" if outside else ""), fontsize=10)
    if legend == "outside":
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    elif legend is not None:
        ax.legend(fontsize=7, loc=legend, framealpha=0.9)
    return ax
