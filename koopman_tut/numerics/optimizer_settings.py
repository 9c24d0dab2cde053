"""Reading the optimizer settings a recording's ``meta`` keeps: when recording started, and per snapshot.

:mod:`koopman_tut.recording.settings_log` writes them: ``meta['groups']`` (each parameter group's
settings when the recorder was built, and the top-level keys the first group's) and, where any
changed while recording, ``meta['group_settings']``: per snapshot, per group, the settings of the
step that produced it. The numerics that undo SGD steps (the secant limit, the delays of the
affine model) read them here.
"""
from __future__ import annotations

SGD_SETTINGS = ("momentum", "nesterov", "dampening", "weight_decay", "maximize")  # a group's, beside its lr


def settings_at(meta: dict, k: int) -> list[dict]:
    """Each parameter group's settings (momentum, dampening, weight_decay, nesterov, maximize) logged
    with snapshot ``k``: ``meta['group_settings'][k]`` where recorded, else those of ``meta['groups']``
    (the top-level settings where there are none)."""
    logged = meta.get("group_settings")
    if logged is not None:
        return [dict(g) for g in logged[k]]
    return [{key: g.get(key) for key in SGD_SETTINGS if key in g} for g in (meta.get("groups") or [meta])]


def has_momentum(meta: dict) -> bool:
    """Whether any parameter group has momentum, when recording started or at a step logged since."""
    groups = [meta, *(meta.get("groups") or []), *(g for row in meta.get("group_settings") or [] for g in row)]
    return any(float(g.get("momentum", 0.0) or 0.0) > 0 for g in groups)
