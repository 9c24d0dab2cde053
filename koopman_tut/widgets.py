"""Interactive explorers for the notebooks (ipywidgets).

Every explorer is a plain function first: the notebook calls it once directly, so it runs
headless (papermill, nbval, CI), and :func:`sliders` wraps the same function in controls
for a reader in JupyterLab.
"""
from __future__ import annotations

import copy
from typing import Callable

from . import pruning as P
from .experiments import accuracy


def sliders(fn: Callable, **options):
    """ipywidgets.interactive(fn, **options): controls for the plain function ``fn``.

    ``options`` are ipywidgets abbreviations: a list gives a dropdown, a (min, max, step)
    tuple a slider. Returns the widget (display it, or leave it as a cell's last value).
    """
    import ipywidgets

    return ipywidgets.interactive(fn, **options)


def compare_pruning(model, scores: dict, compression: float, test_loader, verbose: bool = True) -> dict:
    """Prune copies of ``model`` with each named score at ``compression``; report accuracy,
    per-layer kept share and the overlap of each rule's pruned set with the first rule's.

    Returns {method: {"accuracy", "kept_by_layer", "overlap_with_first"}}.
    """
    out, first = {}, None
    for name, sc in scores.items():
        m = copy.deepcopy(model)
        masks = P.prune_model(m, sc, compression)
        first = masks if first is None else first
        out[name] = {"accuracy": accuracy(m, test_loader),
                     "kept_by_layer": {n: float(v.float().mean()) for n, v in masks.items()},
                     "overlap_with_first": P.mask_overlap(first, masks)}
    if verbose:
        names = list(out)
        print(f"compression {compression:g}")
        print(f"{'':22s}" + "".join(f"{n:>12s}" for n in names))
        print(f"{'test accuracy':22s}" + "".join(f"{out[n]['accuracy']:12.3f}" for n in names))
        print(f"{'overlap with ' + names[0]:22s}" + "".join(f"{out[n]['overlap_with_first']:12.3f}" for n in names))
        for layer in out[names[0]]["kept_by_layer"]:
            print(f"{'kept ' + layer:22s}" + "".join(f"{out[n]['kept_by_layer'][layer]:12.3f}" for n in names))
    return out
