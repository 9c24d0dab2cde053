"""koopman_tut: Koopman-operator pruning of neural networks, after Redman et al. (ICLR 2022).

Training is a dynamical system on parameter space; exact DMD of the parameter trajectory
gives its Koopman modes; pruning rules are functionals of them (arXiv:2110.14856).
"""
from .dmd import DMDBatch, DMDResult, dmd

__all__ = ["dmd", "DMDResult", "DMDBatch"]
__version__ = "0.1.0"
