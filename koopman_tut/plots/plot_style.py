"""What the tutorial's figures share: an axes helper, one colour-blind-safe palette, and one
colour + marker + line style per pruning rule, so that no two rules share both colour and marker
and a curve lying on top of another one stays recognisable by its marker and line style."""
from __future__ import annotations

import numpy as np
import torch

# Paul Tol's colour-blind-safe "muted" palette with black and grey (11 colours)
PALETTE = ("#332288", "#CC6677", "#117733", "#DDCC77", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499",
           "#000000", "#777777")
MARKERS = "osD^vP*Xh<>p"
BLACK, GREY = "#000000", "#777777"

# one style per rule: a distinct (colour, marker) pair, a line style, and open markers ("mfc": "none")
# for the rules most likely to lie on top of another one (stale GMP on GMP, corrected-off KGP on KGP)
RULE_STYLES = {
    "GMP": dict(color=BLACK, marker="s", ls="--", zorder=4),
    "stale GMP": dict(color="#88CCEE", marker="D", ls=":", mfc="none", mew=1.6, ms=8, zorder=5),
    "KMP": dict(color="#CC6677", marker="o", ls="-", lw=3, alpha=0.7, ms=8),
    "KGP": dict(color="#332288", marker="^", ls="-", lw=3, alpha=0.7, ms=8),
    "KGP, correction off": dict(color="#AA4499", marker="v", ls="--", mfc="none", mew=1.6, zorder=5),
    "gradient": dict(color="#117733", marker="P", ls="-."),
    "gradient (one batch)": dict(color="#117733", marker="P", ls="-."),
    "full-data gradient": dict(color="#44AA99", marker="X", ls=(0, (5, 1, 1, 1))),
    "random": dict(color=GREY, marker="x", ls=":"),
    "chance": dict(color=GREY, marker="x", ls=":"),
}
RULE_STYLES["GMP (control)"] = RULE_STYLES["GMP"]
STYLES = RULE_STYLES  # the old name


def rule_style(name: str, i: int = 0) -> dict:
    """Matplotlib keywords for the curve of rule ``name`` (colour, marker, line style...).

    A rule of :data:`RULE_STYLES` gets its own style; any other name the ``i``-th colour of
    :data:`PALETTE` and the ``i``-th marker of :data:`MARKERS`, so the series of one figure differ
    in both.
    """
    if name in RULE_STYLES:
        return dict(RULE_STYLES[name])
    return dict(color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)], ls="-")


def _ax(ax, figsize=(4.5, 4.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
