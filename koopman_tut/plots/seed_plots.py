"""Figures over seeds: mean curves with 95% bands, paired seed-by-seed panels, and the
broken horizon axis of notebook 06 (h = 0 and h = infinity as separate markers).

Matplotlib only; re-exported by :mod:`koopman_tut.plots.plotting`, where the notebooks find them.
"""
from __future__ import annotations

import numpy as np

from .plot_style import MARKERS, PALETTE, _ax, rule_style  # noqa: F401 - PALETTE, MARKERS: the old place

# the first series thick and translucent, so a later one that coincides with it stays visible on top;
# colours and markers come from the rule (plot_style.RULE_STYLES) or, for other names, the palette
_LINE_STYLES = (dict(ls="-", marker="o", lw=3.5, ms=9, alpha=0.55), dict(ls="--", marker="s"),
                dict(ls=":", marker="^"), dict(ls="-.", marker="D"), dict(ls=(0, (5, 1, 1, 1)), marker="v"),
                dict(ls=(0, (1, 1)), marker="P"))


def _series_style(label: str, i: int) -> dict:
    """Line style of the i-th series: the index's width and line style, the rule's colour, marker
    and line style when ``label`` is a known rule (else the palette's i-th colour and marker)."""
    base = dict(_LINE_STYLES[i % len(_LINE_STYLES)])
    rule = rule_style(label, i)
    base.update(color=rule["color"], marker=rule["marker"])
    for key in ("mfc", "mew"):
        if key in rule:
            base[key] = rule[key]
    return base


def _mean_band(values):
    """(mean, low, high) arrays over axis 0 (the seeds): the mean and its 95% t-interval."""
    from ..training.experiments import mean_ci

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
        line, = ax.plot(x, m, label=label, **_series_style(label, i))
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
        style = _series_style(label, j)
        line, = mid.plot([h[i] for i in fin], m[fin], label=label, **style)
        mid.fill_between([h[i] for i in fin], lo[fin], hi[fin], color=line.get_color(), alpha=0.15, lw=0)
        dx = (j - (k - 1) / 2) * 0.18
        for ax, idx in ends_at.items():
            for i in idx:
                ax.errorbar([dx], [m[i]], yerr=[[m[i] - lo[i]], [hi[i] - m[i]]], color=line.get_color(),
                            marker=style["marker"], mfc=style.get("mfc"), capsize=3, ls="none")
    mid.set_xscale("log")
    mid.set_xticks([h[i] for i in fin], [f"{h[i]:g}" for i in fin])
    mid.minorticks_off()
    for ax, text in ((left, f"h = 0\n({ends[0]})"), (right, f"h = $\\infty$\n({ends[1]})")):
        ax.set_xlim(-0.5, 0.5)
        ax.set_xticks([0], [text])
    for ax, side in ((left, "right"), (mid, "left"), (mid, "right"), (right, "left")):
        _break_marks(ax, side)
    for ax in (mid, right):
        ax.tick_params(axis="y", left=False)
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


def paired_differences(rows, value: str = "overlap_final", versus: str = "GMP", ax=None, ylabel: str = ""):
    """Seed-by-seed differences rule - ``versus`` of :func:`koopman_tut.training.experiments.prediction_study`
    rows: for each start (a group on the x axis) one marker per rule at the mean difference with
    its 95% t-interval as an error bar, and the zero line (no better than ``versus``). Returns the axes.
    """
    from ..training.experiments import paired

    ax = _ax(ax, (9, 4))
    starts = sorted({r.start for r in rows})
    rules = [r for r in dict.fromkeys(r.rule for r in rows) if r != versus]
    width = 0.8 / len(rules)
    for i, rule in enumerate(rules):
        m, lo, hi = (np.array(v) for v in zip(*(paired(rows, rule, versus, t, value) for t in starts)))
        x = np.arange(len(starts)) - 0.4 + (i + 0.5) * width
        st = rule_style(rule, i)
        ax.errorbar(x, m, yerr=[m - lo, hi - m], ls="none", marker=st["marker"], ms=6, capsize=3,
                    color=st["color"], mfc=st.get("mfc"), label=rule)
    ax.axhline(0, color="0.3", lw=1, zorder=0)
    ax.set_xticks(np.arange(len(starts)), [f"window at step {t}" for t in starts])
    ax.set_ylabel(ylabel or f"{value.replace('_', ' ')} - {versus}")
    ax.set_title(f"paired difference with {versus}, mean and 95% interval over {len({r.seed for r in rows})} seeds",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="best")
    return ax


def seed_intervals(x, series: dict, versus: str | None = None, ax=None, xlabel: str = "", ylabel: str = "",
                   title: str = "", clip=None, legend: str | None = "best"):
    """Mean over seeds with its 95% t-interval as an error bar, one marker per series, dodged
    sideways at each x so that no series hides another (x is categorical: one group per value).

    Parameters
    ----------
    x : the values of the groups (e.g. compressions), shown as tick labels.
    series : {label: array (n_seeds, len(x))}, seeds in the same order in every series.
    versus : the label of one series, or None. When given, every other series is shown as its
        seed-by-seed (paired) difference to that one, with a zero line standing for it: an
        interval that excludes 0 says the two differ at these seeds.
    clip : (low, high) range for the intervals of absolute values (``versus=None``), or None.
    legend : a matplotlib legend location, "outside" (right of the axes) or None.

    Colours and markers are the rules' (:func:`koopman_tut.plots.plot_style.rule_style`), indexed
    by the series' position in ``series``, so the panels of one figure match. Returns the axes.
    """
    ax = _ax(ax, (6, 3.8))
    ref = None if versus is None else np.asarray(series[versus], dtype=float)
    shown = [(i, k) for i, k in enumerate(series) if k != versus]
    width = 0.8 / max(len(shown), 1)
    pos = np.arange(len(x))
    n = 0
    for j, (i, label) in enumerate(shown):
        v = np.asarray(series[label], dtype=float)
        v = v if ref is None else v - ref
        n = v.shape[0]
        m, lo, hi = _mean_band(v)
        if clip is not None and ref is None:
            lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
        st = rule_style(label, i)
        ax.errorbar(pos - 0.4 + (j + 0.5) * width, m, yerr=[m - lo, hi - m], ls="none", capsize=3, ms=7,
                    marker=st["marker"], color=st["color"], mfc=st.get("mfc"), mew=st.get("mew", 1.2), label=label)
    if ref is not None:
        ax.axhline(0, color="0.3", lw=1, zorder=0, label=f"= {versus} (the reference)")
    for b in pos[:-1] + 0.5:
        ax.axvline(b, color="0.9", lw=0.8, zorder=0)
    ax.set_xticks(pos, [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in x])
    ax.set_xlim(-0.5, len(x) - 0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or ("value" if ref is None else f"difference to {versus}"))
    ax.set_title(title or f"mean and 95% interval over {n} seeds", fontsize=10)
    if legend == "outside":
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    elif legend is not None:
        ax.legend(fontsize=8, framealpha=0.9, loc=legend)
    return ax
