"""Figures of notebooks 04 and 06 (koopman_tut.plots.plotting: seed_bands, horizon_panels, paired_seeds,
spectra): titles, labelled axes, a legend entry for every mark, bands clipped to their range,
and no fake positions for h = 0 or h = inf on the log axis."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from koopman_tut import plotting  # noqa: E402
from koopman_tut.training.experiments import mean_ci  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_seed_bands_mean_band_clipped_and_legend():
    rng = np.random.default_rng(0)
    x = [1, 10, 100]
    vals = np.clip(0.98 + 0.05 * rng.standard_normal((5, 3)), 0, 1)
    ax = plotting.seed_bands(x, {"a": vals, "b": vals}, xlabel="h (steps)", ylabel="share", title="t", logx=True,
                             clip=(0, 1))
    lines = [l for l in ax.get_lines() if l.get_label() in ("a", "b")]
    assert len(lines) == 2 and lines[0].get_linestyle() != lines[1].get_linestyle()  # coinciding curves stay visible
    assert lines[0].get_marker() != lines[1].get_marker()
    np.testing.assert_allclose(lines[0].get_ydata(), vals.mean(0))
    for band in ax.collections:  # bands clipped to [0, 1]
        y = band.get_paths()[0].vertices[:, 1]
        assert y.max() <= 1 + 1e-12 and y.min() >= -1e-12
    assert ax.get_title() == "t" and ax.get_xlabel() and ax.get_ylabel()
    assert legend_labels(ax) == ["a", "b", "95% interval over 5 seeds"]


def test_horizon_panels_keep_zero_and_infinity_off_the_log_axis():
    hs = [0, 1, 10, 100, math.inf]
    vals = np.tile(np.array([0.90, 0.91, 0.92, 0.93, 0.94]), (4, 1)) + np.linspace(0, 0.01, 4)[:, None]
    left, mid, right = plotting.horizon_panels(hs, {"forecast": vals, "current": vals - 0.01}, ylabel="overlap",
                                               title="title", clip=(0, 1))
    assert mid.get_xscale() == "log"
    xs = np.concatenate([l.get_xdata() for l in mid.get_lines() if l.get_label() in ("forecast", "current")])
    assert np.all(np.isfinite(xs)) and xs.min() == 1 and xs.max() == 100  # no fake position for 0 or inf
    assert "h = 0" in left.get_xticklabels()[0].get_text() and "GMP" in left.get_xticklabels()[0].get_text()
    assert "infty" in right.get_xticklabels()[0].get_text() and "KMP" in right.get_xticklabels()[0].get_text()
    # the ends show mean and interval of each series, dodged so equal values stay visible
    ends = [c for c in left.containers]
    assert len(ends) == 2
    x0 = [c.lines[0].get_xdata()[0] for c in ends]
    assert x0[0] != x0[1]
    m, lo, hi = mean_ci(vals[:, 0])
    assert ends[0].lines[0].get_ydata()[0] == pytest.approx(m)
    assert left.get_ylabel() == "overlap" and mid.get_title() == "title" and mid.get_xlabel()
    assert legend_labels(mid) == ["forecast", "current", "95% interval over 4 seeds"]


def test_horizon_panels_clip_the_end_error_bars():
    hs = [0, 10, math.inf]
    vals = np.array([[1.0, 0.99, 0.98], [0.97, 1.0, 0.999]])  # a 2-seed interval is wide
    left, mid, right = plotting.horizon_panels(hs, {"x": vals}, clip=(0, 1))
    for ax in (left, right):
        segs = ax.containers[0].lines[2][0].get_segments()
        assert max(s[:, 1].max() for s in segs) <= 1 + 1e-12


def test_paired_seeds_one_line_per_seed_and_mean_interval():
    panels = {"heavy ball": {"off": [30, 31, 29], "on": [5, 6, 4]}, "Nesterov": {"off": [25, 24, 26], "on": [4, 5, 3]}}
    axes = plotting.paired_seeds(panels, ylabel="angle (degrees)", title="correction")
    assert len(axes) == 2
    seed_lines = [l for l in axes[0].get_lines() if l.get_color() == "0.55"]
    assert len(seed_lines) == 3  # one per seed, joining its two conditions
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["off", "on"]
    assert axes[0].get_ylabel() == "angle (degrees)" and axes[0].get_title() == "heavy ball"
    assert axes[0].figure._suptitle.get_text() == "correction"
    assert legend_labels(axes[-1]) == ["one seed (3 seeds)", "mean, 95% interval"]


def test_spectra_styles_zoom_and_count_outside():
    runs = {"lr 0.05, seed 0": torch.tensor([0.95 + 0j, 0.5 + 0.2j]), "lr 0.01, seed 0": np.array([0.99, -0.5])}
    styles = {"lr 0.01, seed 0": dict(color="C3", marker="s")}
    ax = plotting.spectra(runs, styles=styles, zoom=0.2, title="near 1")
    assert ax.get_title() == "near 1 (2 eigenvalues outside this view)"
    assert legend_labels(ax) == ["unit circle", "lr 0.05, seed 0", "lr 0.01, seed 0"]
    assert ax.get_xlim() == pytest.approx((0.8, 1.2)) and ax.get_xlabel() and ax.get_ylabel()


def test_seed_bands_logy_uses_the_geometric_mean_and_stays_positive():
    vals = np.array([[0.01, 1.0], [0.02, 100.0], [0.04, 1e4]])  # heavy tails: an arithmetic interval goes negative
    ax = plotting.seed_bands([1, 10], {"loss": vals}, logy=True, logx=True, xlabel="h", ylabel="loss", title="t")
    line = [l for l in ax.get_lines() if l.get_label() == "loss"][0]
    np.testing.assert_allclose(line.get_ydata(), np.exp(np.log(vals).mean(0)))
    assert ax.get_yscale() == "log"
    y = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert y.min() > 0
    assert legend_labels(ax)[-1] == "95% interval of the geometric mean over 3 seeds"


def test_seed_bands_legend_outside_or_none():
    vals = np.ones((3, 2))
    ax = plotting.seed_bands([1, 2], {"a": vals}, legend="outside", title="t", xlabel="x", ylabel="y")
    assert legend_labels(ax) == ["a", "95% interval over 3 seeds"]
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1  # right of the axes
    ax = plotting.seed_bands([1, 2], {"a": vals}, legend=None)
    assert ax.get_legend() is None


def test_first_seed_band_curve_is_drawn_under_a_coinciding_one():
    vals = np.full((3, 2), 0.5)
    ax = plotting.seed_bands([1, 2], {"a": vals, "b": vals})
    a, b = [l for l in ax.get_lines() if l.get_label() in ("a", "b")]
    assert a.get_linewidth() > b.get_linewidth() and a.get_markersize() > b.get_markersize()  # a peeks out under b


def test_spectra_legend_outside_by_default_or_none():
    ax = plotting.spectra({"run": np.array([0.9, 0.5j])})
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1
    assert plotting.spectra({"run": np.array([0.9])}, legend=None).get_legend() is None


def test_paired_differences_one_interval_per_rule_and_start():
    from koopman_tut.training.experiments import PredictionRow, paired

    rng = np.random.default_rng(0)
    rows = [PredictionRow(seed, start, rule, 0.9 + 0.01 * i + 0.001 * rng.standard_normal(), 0.8, 0.85)
            for seed in range(5) for start in (20, 80) for i, rule in enumerate(["GMP", "KMP", "line a=1"])]
    ax = plotting.paired_differences(rows, versus="GMP")
    assert legend_labels(ax) == ["KMP", "line a=1"] and "5 seeds" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["window at step 20", "window at step 80"]
    # each marker sits at the paired mean, its bar spans the 95% interval
    kmp = ax.containers[0]
    m, lo, hi = paired(rows, "KMP", "GMP", 80)
    y = kmp.lines[0].get_ydata()
    assert y[1] == pytest.approx(m)
    seg = kmp.lines[2][0].get_segments()[1]
    assert (seg[0][1], seg[1][1]) == (pytest.approx(lo), pytest.approx(hi))
    assert any(abs(line.get_ydata()[0]) < 1e-12 for line in ax.get_lines())  # the zero line


def _rows():
    from koopman_tut.training.experiments import PruneRow

    acc = {"GMP": [0.96, 0.95, 0.5], "KMP": [0.96, 0.96, 0.55], "stale GMP": [0.96, 0.95, 0.5],
           "random": [0.96, 0.1, 0.1]}
    return [PruneRow(m, c, a[i], a[i], 1.0, {}, 0.01) for i, c in enumerate([1, 4, 16]) for m, a in acc.items()]


def test_every_rule_has_its_own_colour_and_marker():
    from koopman_tut.plots.plot_style import PALETTE, RULE_STYLES, rule_style

    pairs = {(st["color"], st["marker"]) for name, st in RULE_STYLES.items()
             if name not in ("GMP (control)", "chance", "gradient (one batch)")}
    assert len(pairs) == len(RULE_STYLES) - 3  # aliases aside, no two rules share colour and marker
    assert all(st["color"] in PALETTE for st in RULE_STYLES.values())  # one colour-blind-safe palette
    a, b = rule_style("some rule", 0), rule_style("other rule", 1)
    assert a["color"] != b["color"] and a["marker"] != b["marker"]


def test_accuracy_vs_compression_rules_differ_in_colour_and_marker():
    ax = plotting.accuracy_vs_compression(_rows(), "accuracy")
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert legend_labels(ax) == ["GMP", "KMP", "stale GMP", "random"]
    styles = [(l.get_color(), l.get_marker()) for l in lines.values()]
    assert len({s[0] for s in styles}) == 4 and len({s[1] for s in styles}) == 4
    assert lines["stale GMP"].get_markerfacecolor() == "none"  # open markers on top of GMP's
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4", "16"]


def test_difference_vs_compression_shows_what_coincides():
    ax = plotting.difference_vs_compression(_rows(), "accuracy", versus="GMP")
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert set(lines) == {"KMP - GMP", "stale GMP - GMP", "GMP (zero line)"}  # random left out
    np.testing.assert_allclose(lines["KMP - GMP"].get_ydata(), [0, 0.01, 0.05], atol=1e-12)
    np.testing.assert_allclose(lines["stale GMP - GMP"].get_ydata(), 0, atol=1e-12)
    xk, xs = lines["KMP - GMP"].get_xdata(), lines["stale GMP - GMP"].get_xdata()
    assert np.all(np.asarray(xk) != np.asarray(xs))  # dodged sideways: equal values stay visible
    with pytest.raises(ValueError, match="versus"):
        plotting.difference_vs_compression(_rows(), versus="KGP")


def test_seed_intervals_absolute_and_paired():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.4, 0.6, (5, 3))
    series = {"gradient (one batch)": ref, "KGP": ref + 0.01, "random": ref - 0.3}
    ax = plotting.seed_intervals([2, 4, 8], series, clip=(0, 1), xlabel="c", ylabel="acc")
    assert legend_labels(ax) == list(series) and "5 seeds" in ax.get_title()
    kgp = ax.containers[1]
    np.testing.assert_allclose(kgp.lines[0].get_ydata(), (ref + 0.01).mean(0))
    ax = plotting.seed_intervals([2, 4, 8], series, versus="gradient (one batch)", legend="outside")
    assert legend_labels(ax) == ["= gradient (one batch) (the reference)", "KGP", "random"]
    np.testing.assert_allclose(ax.containers[0].lines[0].get_ydata(), 0.01)  # paired differences
    x0, x1 = ax.containers[0].lines[0].get_xdata(), ax.containers[1].lines[0].get_xdata()
    assert np.all(x0 != x1)  # dodged
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8"]


def test_scatter_spectrum_and_distance_name_what_does_not_fit():
    # x of 9 and y of 10 entries plotted 9 points, silently (an IndexError the other way); n=0 a numpy error;
    # highlight=99 an IndexError; W (5, 4) against x_star (3,) a broadcast error
    for x, y in ((torch.arange(9.), torch.arange(10.)), (torch.rand(10), torch.rand(9))):
        with pytest.raises(ValueError, match=rf"x and y must have as many entries.*got {x.numel()} and {y.numel()}$"):
            plotting.scatter_vs(x, y, "now", "estimate")
    with pytest.raises(ValueError, match=r"n must be an integer >= 1, got 0"):
        plotting.scatter_vs(torch.rand(10), torch.rand(10), "x", "y", n=0)
    with pytest.raises(ValueError, match=r"highlight must be an eigenvalue index in \[-2, 1\].*got 99"):
        plotting.spectrum(torch.tensor([0.5 + 0j, 0.9 + 0j]), highlight=99)
    with pytest.raises(ValueError, match=r"x_star must be \(5,\), one entry per row of W \(5, 4\), got shape \(3,\)"):
        plotting.distance_to(torch.rand(5, 4), torch.rand(3))
    assert len(plotting.scatter_vs(torch.rand(10), torch.rand(10), "x", "y", n=4).collections[0].get_offsets()) == 4
    assert plotting.spectrum(torch.tensor([0.5 + 0j, 0.9 + 0j]), highlight=-1) is not None  # the controls
    assert len(plotting.distance_to(torch.rand(5, 4), torch.rand(5)).get_lines()[0].get_xdata()) == 4
