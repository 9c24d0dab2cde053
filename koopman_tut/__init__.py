"""koopman_tut: Koopman-operator pruning of neural networks, after Redman et al. (ICLR 2022).

Training is a dynamical system on parameter space; exact DMD of the parameter trajectory
gives its Koopman modes; pruning rules are functionals of them (arXiv:2110.14856).
The subpackages follow the data path: ``numerics`` (snapshots, DMD, limits, spectra) ->
``recording`` (training loop -> Trajectory) -> ``pruning`` (scores, masks) -> ``training``
(data, models, the experiments) -> ``plots`` -> ``tooling`` (the CLI and the course kit).

    import koopman_tut as kt
    res = kt.dmd(W)                                              # W: (n_features, n_snapshots)
    rec = kt.TrajectoryRecorder(model, optimizer, stop=100)      # records after each optimizer step
    ...                                                          # train
    k = kt.koopman(rec.trajectory())                             # the window's Koopman analysis
    masks = kt.pruning.global_masks(k.kmp_scores(), 8, model=model)

Names are imported on first use (PEP 562), so ``koopman-tut`` can check its arguments
before torch is loaded.
"""
from __future__ import annotations

import importlib

# public name -> (module, attribute or None for the module itself)
_PUBLIC = {
    "dmd": ("numerics.dmd", "dmd"), "DMDResult": ("numerics.dmd", "DMDResult"),
    "DMDBatch": ("numerics.dmd", "DMDBatch"), "estimate_limit": ("numerics.limits", "estimate_limit"),
    "DriftWarning": ("numerics.extrapolation", "DriftWarning"),
    "UntrustedLimitWarning": ("numerics.extrapolation", "UntrustedLimitWarning"),
    "ZeroStartWarning": ("numerics.dmd", "ZeroStartWarning"),
    "ComplexModeWarning": ("numerics.dmd_checks", "ComplexModeWarning"),
    "koopman": ("pruning.koopman", "koopman"), "KoopmanAnalysis": ("pruning.koopman", "KoopmanAnalysis"),
    "Trajectory": ("recording.trajectory", "Trajectory"),
    "TrajectoryRecorder": ("recording.recorder", "TrajectoryRecorder"),
    "RecorderFullWarning": ("recording.recorder", "RecorderFullWarning"),
    "ChangedAfterStepWarning": ("recording.after_step", "ChangedAfterStepWarning"),
    "RecordingCutShortWarning": ("recording.storage", "RecordingCutShortWarning"),
    "pruning": ("pruning", None), "distributed": ("numerics.distributed", None), "spectra": ("numerics.spectra", None),
    "data": ("training.data", None), "experiments": ("training.experiments", None), "models": ("training.models", None),
    "systems": ("training.systems", None), "train": ("training.train", None),
    "plotting": ("plots.plotting", None), "widgets": ("plots.widgets", None),
}
_STAGES = ("numerics", "recording", "training", "plots", "tooling")
__all__ = list(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _PUBLIC:
        module, attr = _PUBLIC[name]
        m = importlib.import_module(f"{__name__}.{module}")
        value = m if attr is None else getattr(m, attr)
    elif name in _STAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # imported once
    return value


def submodules_on_first_use(package: str):
    """A module ``__getattr__`` for a stage subpackage: ``kt.recording.params`` imports
    ``koopman_tut.recording.params`` when first used (the stages import nothing eagerly)."""
    def getattr_(name: str):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":
                raise  # the submodule exists but something it imports is missing
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    return getattr_


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | set(_STAGES))
