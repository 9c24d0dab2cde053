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
"""
from . import pruning
from .numerics import distributed, spectra
from .numerics.dmd import DMDBatch, DMDResult, dmd
from .numerics.extrapolation import DriftWarning, UntrustedLimitWarning
from .numerics.limits import estimate_limit
from .plots import plotting, widgets
from .pruning.koopman import KoopmanAnalysis, koopman
from .recording.recorder import RecorderFullWarning, TrajectoryRecorder
from .recording.storage import RecordingCutShortWarning
from .recording.trajectory import Trajectory
from .training import data, experiments, models, systems, train

__all__ = ["dmd", "DMDResult", "DMDBatch", "koopman", "KoopmanAnalysis", "estimate_limit", "DriftWarning",
           "UntrustedLimitWarning", "Trajectory", "TrajectoryRecorder", "RecorderFullWarning", "RecordingCutShortWarning",
           "data", "distributed", "experiments", "models", "plotting", "pruning", "spectra", "systems", "train",
           "widgets"]
__version__ = "0.1.0"
