"""What the tutorial's figures share: an axes helper and one line style per pruning rule."""
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


STYLES = {"GMP": dict(ls="--", marker="s", zorder=4), "KMP": dict(ls="-", marker="o", lw=3, alpha=0.6),
          "random": dict(ls=":", marker="x", color="0.4")}
