"""Plots of the tutorial: Koopman spectra on the unit circle, accuracy vs compression, overlaps.

Matplotlib only; every function takes an optional ``ax`` and returns it.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..numerics.ints import plain_int
from ..recording.recorder_checks import _check_int
from .plot_style import STYLES, _ax, _np, rule_style
from .seed_plots import horizon_panels, paired_differences, paired_seeds, seed_bands, seed_intervals  # noqa: F401 - plotting.X in the notebooks


def spectrum(eigs, ax=None, amplitudes=None, label="eigenvalues", highlight: int | None = None, color=None,
             zoom: float | None = None, title: str | None = None, marker="o"):
    """DMD eigenvalues in the complex plane with the unit circle; marker area ~ |amplitude|.

    ``highlight`` rings one eigenvalue, by its index (e.g. the one closest to 1), without covering it;
    ``zoom`` limits the view to a square of that half-width around 1 (eigenvalues outside
    it are counted in the title, never silently clipped). Every mark has a legend entry.
    """
    e, highlight = _np(eigs).astype(complex), plain_int(highlight)  # a 0-d integer tensor: its int
    if highlight is not None:
        expected = f"highlight must be an eigenvalue index in [{-e.size}, {e.size - 1}] ({e.size} eigenvalues) or None"
        if isinstance(highlight, bool) or not isinstance(highlight, numbers.Integral):
            raise TypeError(f"{expected}, got {highlight!r} ({type(highlight).__name__})")
        if not -e.size <= highlight < e.size:
            raise ValueError(f"{expected}, got {highlight!r}")
    ax = _ax(ax)
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


def _by_rule(rows, value: str) -> dict:
    """{rule: (compressions, values, accuracy stds)} of compare rows, rules in their order."""
    out = {}
    for m in dict.fromkeys(r.method for r in rows):
        pts = sorted((r.compression, getattr(r, value), r.accuracy_std) for r in rows
                     if r.method == m and getattr(r, value) is not None)
        out[m] = ([p[0] for p in pts], np.array([p[1] for p in pts], dtype=float), np.array([p[2] for p in pts]))
    return out


_YLABELS = {"accuracy": "test accuracy after pruning", "accuracy_finetuned": "test accuracy after fine-tuning"}
_TITLES = {"accuracy": "right after pruning", "accuracy_finetuned": "after fine-tuning"}


def _compression_axis(ax, rows) -> None:
    """A log2 compression axis with a labelled tick at every compression of the rows."""
    cs = sorted({r.compression for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(cs, [f"{c:g}" for c in cs])
    ax.minorticks_off()
    ax.set_xlabel("compression (total / nonzero parameters)")


def accuracy_vs_compression(rows, value: str = "accuracy", ax=None, title: str | None = None):
    """Lines of ``value`` against compression (log2 axis), one per rule, from
    :func:`koopman_tut.training.experiments.compare` rows. Every rule has its own colour, marker
    and line style (:data:`koopman_tut.plots.plot_style.RULE_STYLES`, colour-blind safe): KMP is
    thick and translucent under a dashed GMP, stale GMP has open markers on top, random is dotted
    grey with a +-1 std band. Where rules coincide, :func:`difference_vs_compression` shows how much."""
    ax = _ax(ax, (5.5, 3.8))
    for i, (m, (x, y, s)) in enumerate(_by_rule(rows, value).items()):
        line, = ax.plot(x, y, label=m, **rule_style(m, i))
        if m == "random" and value == "accuracy":
            ax.fill_between(x, np.clip(y - s, 0, 1), np.clip(y + s, 0, 1), color=line.get_color(), alpha=0.15)
    _compression_axis(ax, rows)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(_YLABELS.get(value, value.replace("_", " ")))
    ax.set_title(title or _TITLES.get(value, ""))
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    return ax


def difference_vs_compression(rows, value: str = "accuracy", versus: str = "GMP", ax=None, rules=None,
                              title: str | None = None):
    """Each rule's ``value`` minus ``versus``'s, against compression (log2 axis), from
    :func:`koopman_tut.training.experiments.compare` rows: what an accuracy plot cannot show
    where curves lie on top of each other. The zero line is ``versus``; markers of different
    rules are dodged sideways (by a few percent of a compression step) so equal values stay visible.

    Parameters
    ----------
    rules : the rules to show (default: every rule but ``versus`` and "random", whose gap
        would set the scale).
    """
    ax = _ax(ax, (5.5, 3.2))
    by = _by_rule(rows, value)
    if versus not in by:
        raise ValueError(f"versus: no rule {versus!r} in rows (rules: {list(by)})")
    xs, ref, _ = by[versus]
    shown = [m for m in by if m != versus and m != "random"] if rules is None else list(rules)
    for j, m in enumerate(shown):
        x, y, _ = by[m]
        d = np.array([v - ref[xs.index(c)] for c, v in zip(x, y)])
        shift = 2.0 ** (0.06 * (j - (len(shown) - 1) / 2))
        st = rule_style(m, list(by).index(m))
        st.pop("alpha", None)
        st["lw"] = min(st.get("lw", 1.5), 1.5)
        ax.plot([c * shift for c in x], d, label=f"{m} - {versus}", **st)
    ax.axhline(0, label=f"{versus} (zero line)", **{k: v for k, v in rule_style(versus).items()
                                                      if k in ("color", "ls")}, lw=1, zorder=1)
    _compression_axis(ax, rows)
    ax.set_ylabel(f"{_YLABELS.get(value, value)}\nminus {versus}'s")
    ax.set_title(title or f"{_TITLES.get(value, value)}: difference to {versus}")
    ax.legend(fontsize=8, framealpha=0.9, loc="best")
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
    W, x_star = _np(W), _np(x_star)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (features, steps), got shape {W.shape}")
    if x_star.shape != W.shape[:1]:
        raise ValueError(f"x_star must be ({W.shape[0]},), one entry per row of W {W.shape}, got shape {x_star.shape}")
    ax = _ax(ax, (5, 3.5))
    d = np.linalg.norm(W - x_star[:, None], axis=0)
    ax.semilogy(np.arange(d.size), d, "o-", label="$\\|x_t - x^*\\|$")
    ax.set_xlabel("step t")
    ax.set_ylabel("distance to the minimizer")
    ax.set_title("gradient descent converges geometrically", fontsize=10)
    ax.legend(fontsize=8)
    return ax


def scatter_vs(x, y, xlabel: str, ylabel: str, ax=None, n: int = 5000, seed: int = 0):
    """Scatter of ``n`` random entries of two (n_features,) vectors with the diagonal y = x,
    axes fitted to the data (not twice its range). ValueError unless x and y have as many entries, and n >= 1."""
    x, y, n = _np(x).ravel(), _np(y).ravel(), _check_int("n", n, 1)
    if x.size != y.size or x.size == 0:
        raise ValueError(f"x and y must have as many entries (entry i of each is one point), at least one, "
                         f"got {x.size} and {y.size}")
    ax = _ax(ax)
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
    """Mean over seeds of one value of :func:`koopman_tut.training.experiments.prediction_study` rows
    against the window's start, one line per rule, with its 95% interval as a band clipped
    to [0, 1]; a log axis over the starts."""
    from ..training.experiments import mean_ci

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


# ----------------------------------------------------------------------------- spectra of several runs (06)
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
