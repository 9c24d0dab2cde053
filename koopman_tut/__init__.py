"""koopman_tut: Koopman-operator pruning of neural networks, after Redman et al. (ICLR 2022).

Training is a dynamical system on parameter space; exact DMD of the parameter trajectory
gives its Koopman modes; pruning rules are functionals of them (arXiv:2110.14856).

    import koopman_tut as kt
    res = kt.dmd(W)                                              # W: (n_features, n_snapshots)
    rec = kt.TrajectoryRecorder(model, optimizer, stop=100)      # records after each optimizer step
    ...                                                          # train
    k = kt.koopman(rec.trajectory())                             # the window's Koopman analysis
    masks = kt.pruning.global_masks(k.kmp_scores(), 8, model=model)
"""
from . import data, experiments, models, plotting, pruning, spectra, systems, train, widgets
from .dmd import DMDBatch, DMDResult, dmd
from .extrapolation import DriftWarning, UntrustedLimitWarning
from .limits import estimate_limit
from .pruning.koopman import KoopmanAnalysis, koopman
from .storage import RecordingCutShortWarning
from .recorder import RecorderFullWarning, TrajectoryRecorder
from .trajectory import Trajectory

__all__ = ["dmd", "DMDResult", "DMDBatch", "koopman", "KoopmanAnalysis", "estimate_limit", "DriftWarning", "UntrustedLimitWarning", "Trajectory", "TrajectoryRecorder", "RecorderFullWarning", "RecordingCutShortWarning",
           "data", "experiments", "models", "plotting", "pruning", "spectra", "systems", "train", "widgets"]
__version__ = "0.1.0"
