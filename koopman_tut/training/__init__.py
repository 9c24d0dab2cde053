"""The experiments world, which knows nothing of Koopman operators: datasets, models, training.

Owns the datasets (scikit-learn's digits offline; MNIST and CIFAR-10 through torchvision, with
their checksums: ``data``; what their files hold, checked: ``data_checks``), the models
(``models``), one training loop with one step counter (``train``), systems with known spectra
(``systems``), the paper's experiments as short functions returning typed rows
(``experiments``) and the network-width study of notebook 07 (``width_spectra``).

May import: the numerics, recording and pruning stages (the experiments compare pruning
rules; the training loop itself imports none of them), torch, NumPy, scikit-learn.
"""
from .. import submodules_on_first_use

__getattr__ = submodules_on_first_use(__name__)
