"""Recording: training loop -> Trajectory.

Owns which parameters a model has and which pruning may touch (``params``); the optimizer-step
hook that records them, in memory or into a memory-mapped file (``recorder``,
``recorder_checks``, ``watch``, ``rows``, ``storage``, ``disk_format``, ``disk_v1``,
``safe_files``); and the
``Trajectory`` itself, validated on construction and saved atomically (``trajectory``,
``validation``).

May import: the numerics stage (``koopman_tut.numerics``), torch and NumPy.
"""
from .. import submodules_on_first_use

__getattr__ = submodules_on_first_use(__name__)
