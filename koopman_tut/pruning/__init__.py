"""Pruning scores and masks: magnitude, gradient, Koopman magnitude (KMP), Koopman gradient (KGP).

Redman et al., "An Operator Theoretic View on Pruning Deep Neural Networks", ICLR 2022
(arXiv:2110.14856), Algorithm 1: record theta(t1..t2), compute the Koopman mode
decomposition with DMD, score each parameter by a function of it, mask the lowest scores
globally for a target compression, apply the mask to theta(t2).

* GMP: |theta|.  Gradient pruning: |theta * dL/dtheta| (ShrinkBench's GlobalMagGrad) or |dL/dtheta|.
* KMP: |theta*|, theta* where training is heading. Default (``rule="limit"``, this
  package's choice, not the paper's): the limit of the window's affine Koopman model, by
  vector extrapolation over DMD of the successive differences (koopman_tut.numerics.extrapolation).
  ``rule="closest"`` is the paper's rule: the single mode with eigenvalue closest to 1
  times its amplitude. Both equal the fixed point once training has converged; on a
  drifting window the single mode can be meaningless (DMD splits the slow dynamics into
  a complex pair or two close real eigenvalues with cancelling amplitudes) while the
  limit stays an estimate that can be checked against where training really goes.
* KGP: the Koopman estimate of the loss gradient, the one-step change the decomposition
  predicts divided by -lr, with momentum (heavy ball or Nesterov) and weight decay undone
  per mode from the optimizer settings recorded in the trajectory.
* Horizon: |theta(T-1+h)|, the Koopman forecast h snapshots ahead: h=0 is GMP on the last
  snapshot, h=inf is KMP.

Compression follows ShrinkBench (Blalock et al. 2020): total parameters / nonzero
parameters, counting every parameter of the model; by default biases and the classifier
are left unpruned. Masks are applied with torch.nn.utils.prune.

The package splits into ``scores`` (what may be pruned; magnitude and gradient scores),
``koopman`` (KMP, KGP, forecasts and horizon scores from a trajectory's DMD) and ``masks``
(global, layer-wise and random masks, torch.nn.utils.prune), ``measures`` (compression
accounting, sparsity, overlaps of masks) and ``inputs`` (their argument checks), with
``sgd_steps`` (how an SGD step per parameter group relates to the gradient).

May import: the numerics and recording stages, torch and NumPy.
"""
from ..recording.params import classifier_names, current_value, layer_parameters, prunable
from .koopman import (AliasingWarning, KoopmanAnalysis, horizon_scores, kgp_scores, kmp_scores, koopman,
                      koopman_fixed_point, koopman_forecast, koopman_gradient)
from .inputs import TiedScoresWarning
from .masks import Masks, apply_masks, global_masks, layerwise_masks, prune_model, random_masks, remove_masks
from .measures import compression_ratio, kept_overlap, mask_overlap, sparsity_by_layer
from .scores import Scores, gradient_scores, gradients, magnitude_scores

__all__ = ["Scores", "Masks", "TiedScoresWarning", "classifier_names", "prunable", "layer_parameters", "current_value",
           "magnitude_scores", "gradients", "gradient_scores",
           "koopman", "KoopmanAnalysis", "AliasingWarning", "koopman_fixed_point", "kmp_scores", "koopman_gradient", "kgp_scores", "koopman_forecast",
           "horizon_scores", "global_masks", "layerwise_masks", "random_masks", "apply_masks",
           "remove_masks", "compression_ratio", "sparsity_by_layer", "mask_overlap", "kept_overlap", "prune_model"]
