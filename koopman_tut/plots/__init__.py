"""Figures and widgets: what the notebooks show.

Owns the figures (``plotting``, with the multi-seed figures in ``seed_plots`` and the shared
axes helper and styles in ``plot_style``: one colour-blind-safe palette and a marker per rule)
and the ipywidgets explorers (``widgets``), whose callbacks are plain functions a static
notebook can call too.

May import: every stage below it (numerics, recording, pruning, training), matplotlib and
ipywidgets.
"""
from .. import submodules_on_first_use

__getattr__ = submodules_on_first_use(__name__)
