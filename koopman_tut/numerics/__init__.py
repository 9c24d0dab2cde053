"""The numerics: snapshot matrices in, Koopman spectra and limits out.

Owns the snapshot matrix (features, time) and its one float64 Gram pass (``snapshots``); exact
DMD for tall data on any device, with ``group=`` for row shards (``dmd``, ``dmd_result``); the
affine, delay-embedded Koopman model of a window, its limit, forecast and trust check
(``reduced``, ``extrapolation``, ``trust``) and the classic extrapolations beside it
(``limits``); Koopman spectra of whole training runs and their distances (``spectra``,
``equivalence``); the few torch.distributed collectives, with their pre-flight and time
limits (``distributed``, ``distributed_checks``), and which rows each rank holds (``shards``).

May import: torch, NumPy, SciPy and its own modules; nothing else of koopman_tut (a
Trajectory is read duck-typed, through ``.snapshots`` and ``.meta``).
"""
from .. import submodules_on_first_use

__getattr__ = submodules_on_first_use(__name__)
