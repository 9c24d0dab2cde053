"""Pruning scores and masks: magnitude, gradient, Koopman magnitude (KMP), Koopman gradient (KGP).

Redman et al., "An Operator Theoretic View on Pruning Deep Neural Networks", ICLR 2022
(arXiv:2110.14856), Algorithm 1: record theta(t1..t2), compute the Koopman mode
decomposition with DMD, score each parameter by a function of it, mask the lowest scores
globally for a target compression, apply the mask to theta(t2).

* GMP: |theta|.  Gradient pruning: |theta * dL/dtheta| (ShrinkBench's GlobalMagGrad) or |dL/dtheta|.
* KMP: |theta*|, theta* the Koopman mode of eigenvalue 1 times its amplitude (the predicted
  fixed point). The paper keeps the single mode closest to 1 (``rule="closest"``). On a
  trajectory still drifting, DMD may split the slow dynamics into a complex pair near 1 or
  two close real eigenvalues with large cancelling amplitudes; one mode alone is then
  meaningless. The default ``rule="slow"`` (this package's choice, not the paper's) sums
  the modes within ``radius`` (0.1) of 1 at the last snapshot: the slow part of the
  trajectory, i.e. the current state with the fast transients removed. It equals the
  paper's rule when a single eigenvalue, exactly 1, lies within the radius, as at
  convergence. On early, drifting windows of the digits MLP the single closest mode
  sometimes collapses accuracy after pruning where the slow part does not.
* KGP: the Koopman gradient g_K(t) = -(1/lr) sum_i (mu_i - 1) lambda_i^t b_i v_i, the
  one-step change the decomposition predicts (mu_i = lambda_i^(1/k) per optimizer step
  when snapshots are k steps apart), in place of the backprop gradient. Exact for plain
  (S)GD on a linear decomposition; momentum makes the step differ from -lr * gradient.
* Horizon: |theta(t) + sum_i (lambda_i^(t+h) - lambda_i^t) b_i v_i|, the Koopman forecast h
  snapshots ahead: h=0 is GMP on the last snapshot, h=inf is KMP.

Compression follows ShrinkBench (Blalock et al. 2020): total parameters / nonzero
parameters, counting every parameter of the model; by default biases and the classifier
are left unpruned. Masks are applied with torch.nn.utils.prune.

The package splits into ``scores`` (what may be pruned; magnitude and gradient scores),
``koopman`` (KMP, KGP, forecasts and horizon scores from a trajectory's DMD) and ``masks``
(global and layer-wise masks, torch.nn.utils.prune, compression accounting, overlaps).
"""
from ..trajectory import current_value, prunable_names
from .koopman import (horizon_scores, kgp_scores, kmp_scores, koopman_fixed_point, koopman_forecast,
                      koopman_gradient)
from .masks import (Masks, apply_masks, compression_ratio, global_masks, layerwise_masks, mask_overlap,
                    prune_model, random_masks, remove_masks, sparsity_by_layer)
from .scores import Scores, classifier_names, gradient_scores, gradients, magnitude_scores, prunable

__all__ = ["Scores", "Masks", "classifier_names", "prunable", "prunable_names", "current_value",
           "magnitude_scores", "gradients", "gradient_scores",
           "koopman_fixed_point", "kmp_scores", "koopman_gradient", "kgp_scores", "koopman_forecast",
           "horizon_scores", "global_masks", "layerwise_masks", "random_masks", "apply_masks",
           "remove_masks", "compression_ratio", "sparsity_by_layer", "mask_overlap", "prune_model"]
