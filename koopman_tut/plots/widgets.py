"""Interactive explorers for the notebooks (ipywidgets).

Every explorer is a plain function first: the notebook calls it once directly, so it runs
headless (papermill, nbval, CI), and :func:`sliders` wraps the same function in controls
for a reader in JupyterLab.
"""
from __future__ import annotations

from typing import Callable

from ..training.experiments import compare


def sliders(fn: Callable, **options):
    """ipywidgets.interactive(fn, **options): controls for the plain function ``fn``.

    ``options`` are ipywidgets abbreviations: a list gives a dropdown, a (min, max, step)
    tuple a slider. Returns the widget (display it, or leave it as a cell's last value).
    """
    import ipywidgets

    w = ipywidgets.interactive(fn, **options)
    for child in w.children:
        if hasattr(child, "style") and hasattr(child, "description"):
            child.style.description_width = "initial"  # full labels, never "compressi..."
    return w


def compare_pruning(model, scores: dict, compression: float, test_loader, verbose: bool = True,
                    random: int = 3, seed: int = 0) -> list:
    """Prune copies of ``model`` with each named score at ``compression`` (the engine
    :func:`koopman_tut.training.experiments.compare`); print accuracy, the overlap of each rule's
    kept set with the first rule's, and the kept share per layer. Returns the rows."""
    rows = compare(model, scores, [compression], test_loader, random=random, seed=seed)
    if verbose:
        print(f"compression {compression:g}")
        print(f"{'':26s}" + "".join(f"{r.method:>12s}" for r in rows))
        print(f"{'test accuracy':26s}" + "".join(f"{r.accuracy:12.3f}" for r in rows))
        print(f"{'kept overlap with ' + rows[0].method:26s}" + "".join(f"{r.overlap:12.3f}" for r in rows))
        for layer in rows[0].kept_by_layer:
            print(f"{'kept ' + layer:26s}" + "".join(f"{r.kept_by_layer[layer]:12.3f}" for r in rows))
    return rows
