"""Trust, built in: how far an estimate of where training is heading can be believed, from its window alone.

Every limit, forecast and Koopman gradient of :mod:`koopman_tut.numerics.extrapolation` carries five
checks computed from the window alone (a limit under momentum, a sixth; a recorded window whose
optimizer settings change, a seventh; a Koopman gradient, an eighth), and warns
(:class:`UntrustedLimitWarning`) when one fails:

1. Stability. The model is refitted without the last ``holdout`` = max(1, m // 10) of its m
   differences and asked for the same quantity at the same time. ``spread`` = ||estimate -
   refit's|| / ||estimate - theta(T-1)|| (for a gradient: / ||gradient||) must be at most
   ``TRUST_TOL`` = 0.05: noise fitted as dynamics, or dynamics the model cannot represent
   (momentum without a delay), move the estimate when a tenth of the data goes.
   (``holdout_error``, the refit's error predicting theta(T-1) relative to the held-out
   motion, is reported beside it.)
2. Resolution. A mode slower than the window (time scale 1/|1-mu| = ``gain`` above the T
   snapshots: the window saw less than one e-fold of its decay) is pinned only by data fitted
   to rounding. Extrapolating it (``extent`` = gain for a limit, min(gain, h) for a forecast)
   is trusted only when the model's one-step misfit over the window, ``residual`` =
   ||Y - U A~ U^H X|| / ||Y||, is at most ``RESIDUAL_TOL`` = 1e-5. A cluster of slow modes seen
   through noise is otherwise fitted well in the window by fewer, faster modes, and the limit
   misses most of the slow tail while every in-window check passes (the refit misses it the same way).

3. Rounding. The stored data carry a rounding of at most eps (of their dtype) times ||W||_F
   in the differences (:mod:`koopman_tut.numerics.reduced`), so an estimate E c, a combination
   of the differences with coefficients c, can move by that times ||c||. ``rounding`` =
   eps ||W||_F ||c|| / ||E c|| must be at most ``TRUST_TOL``: it fails where the steps are
   only a few roundings of the parameters (a recording in float16, whose Koopman gradient came
   out 93-149% off while the spread check passed: rounding 0.39-0.71), and is 1e-4 .. 2e-2 on
   the digits MLP's float32 windows (minibatch and full batch, steps 0 .. 1000). For a gradient whose
   recorded step at t, or its momentum-free combination, is no larger than check 8's rounding allowance, it is
   at least that allowance over it (>= 1): nothing at t checks the model (float64 stored in float32, steps 0).

4. Conditioning. The fit itself can amplify rounding: modes too close together for the window
   to separate are fitted to rounding by other eigenvalues. Plain SGD on a rank-8 quadratic
   (decay rates 0.9 .. 0.999), 10 snapshots recorded in float64: the limit came out more than
   10% off on 27 of 40 seeds, 20 of them with checks 1-3 passed (residual ~1e-12, spread
   0.001-0.02).
   The model is refitted at the same rank to its factor plus two seeded random perturbations
   of Frobenius norm the data's rounding (on the Gram route at least what the Gram resolves);
   ``conditioning``, the largest relative move of the estimate, must be at most ``TRUST_TOL``.
   It flags 16 of those 20 (tests/test_limits.py). A perturbation this size is what the stored
   numbers already carry, so an estimate it moves is not pinned by the data.
   A window fitted to rounding (residual <= ``RESIDUAL_TOL``) is also refitted, perturbed, one rank
   above its own: slow rates clustered closer than the window separates are merged into fewer
   modes that fit it to rounding, and the extra mode lets the cluster split another way. Plain GD
   on geomspace(0.05, 10, 16) Hessian eigenvalues, lr 0.05, 16 snapshots after 20 warm-up steps:
   11 of 12 seeds 7-28% off with checks 1-3 and the same-rank refits passed; 1 with this.

5. Truncation. The rank rule (:func:`koopman_tut.numerics.reduced.affine_rank`) cuts what it takes
   for noise. Where a model at the window's numerical rank fits it deterministically (misfit at
   most ``RESIDUAL_TOL``), what was cut is dynamics: a window too short for all its modes (heavy
   ball on a rank-8 quadratic, 16 modes, 20 warm-up steps, 13, 16 and 21 snapshots: the threshold
   kept 5-9 of the resolved values, and the limit, 0.25-3.7x the remaining distance off, passed
   checks 1-4 on 35 of 120 windows, seeds 0-39; none after). ``truncation``, the relative move
   of the estimate to that model's, must be at most ``TRUST_TOL``. A window whose noise is more
   than about 1e-5 of its steps (minibatch training, float32 recording) has no such model, and
   the check is 0 there; below that a model at the numerical rank can fit the noise to 1e-5 too
   (an independent review saw it fire at noise 1e-6 .. 3e-5 of a step, only on limits already
   30-110% off). Over benchmarks/trust_families.py's windows with known limits (plain, heavy-ball
   and Nesterov SGD on the quadratic, affine windows with and without noise; 20 seeds each; 840
   windows then) it took the limits more than 10% off yet trusted from 42 to 11, and added no
   warning to a limit within 1% (51 of 548 warned, before and after); the review's 4,700 further
   windows found no limit within 1% that it flagged. It does not see a window too short for its
   modes whose numerical rank is itself low (slow rates merged to rounding): check 4's rank-above
   refits do.

6. Agreement under momentum. Heavy-ball and Nesterov training is a second-order recursion: the
   delay-embedded model needs two modes per direction the steps span (16 on the rank-8 quadratic)
   and a short window resolves fewer, fitting the rest to rounding with a rate that checks 1-5 do
   not question (Nesterov after 20 warm-up steps, 31 snapshots: limits 16-180% off, trusted on 11
   of 20 seeds). The secant limit (:mod:`koopman_tut.numerics.secant`) reads the same window
   another way: each recorded SGD step undone into the gradient that made it, and Newton's step
   with the Hessian on the span of the steps, which needs one direction per direction, not two.
   Where the recording says what to undo (torch.optim.SGD with momentum, a snapshot at every step,
   one lr and momentum for all parameter groups at each step) and the secant can be believed (its own misfit and
   conditioning at most ``TRUST_TOL``, :class:`~koopman_tut.numerics.secant.SecantFit`), ``secant``
   = ||limit - secant limit|| / ||limit - theta(T-1)|| must be at most ``TRUST_TOL``. On a float64
   quadratic that is the limit's own error; where the loss is not quadratic both models are linear
   and agree as the window nears its limit. Where the secant cannot be believed the check abstains
   (``secant`` = 0): float32 recordings whose steps are a few roundings of the parameters lose
   directions once the optimizer is undone. For a limit only (a forecast or a gradient has no
   secant counterpart), and not for plain SGD, where both models need the same directions and the
   secant only adds its own truncation (it warned on 6 of trust_families.py's limits within 1%, all
   plain SGD after 20 warm-up steps in 20 snapshots). Minibatch windows fail checks 1-2 already.
   Measured (limits more than 10% off yet trusted: false silences; within 1% yet warned: false
   alarms): trust_families.py's 1440 windows (240 of softmax regression, 160 of float32 momentum):
   false silences 57 -> 42 of 432 (momentum: 15 -> 0), false alarms 156 -> 156 of 819 (111 of them
   the float32 windows, every one, by check 2: a mode slower than the window fitted only to float32
   rounding, 1e-3). An independent review's sweeps of the abstention: docs/trust.md, "Check 6".

7. One optimizer map. The affine model fits one map to the window; where the recorded settings
   change inside it (an lr schedule, a momentum schedule, per snapshot in the recording's meta:
   :mod:`koopman_tut.recording.settings_log`) its steps shrink by a factor (1 - delta) more each step
   than the map's, each mode's rate is fitted as mu (1 - delta), and the tail, summed over the
   ``extent``, misses by about delta x extent of the distance still to go. ``schedule`` = extent x
   :func:`~koopman_tut.numerics.optimizer_settings.setting_drift` (delta per snapshot: the drift of
   log(lr (1 - dampening)) and of log(1 - momentum) the log records, per parameter group weighted by
   its share of the tail, so a group already converged does not count) must be at most ``TRUST_TOL``.
   A first-order estimate, not a bound: an independent review's sweep (lr / (1 + c s), c = 1e-4 ..
   3e-2) found the error 0.09 .. 1.2 times it for plain SGD and 0.09 .. 13 times under heavy ball
   (a single underdamped mode), where checks 1-6 caught every window more than 10% off that it missed.
   Plain SGD on the rank-8 quadratic, lr 0.01 x 1/(1 + 0.002 s) over an 81-snapshot window after
   100 steps: the limit 58% off, trusted on 5 of 5 seeds by checks 1-6 (the window is fitted
   consistently, by the wrong map); schedule 0.94, untrusted. At 1/(1 + 0.01 s), 80% off, 3.6;
   heavy ball with it, 33% off, 0.89; momentum 0.95 -> 0.85 (OneCycleLR-like), 27% off, 0.49.
   A constant lr and momentum give 0, so no window of benchmarks/trust_families.py or a notebook
   changes. The secant limit reads each step's settings and is exact there (benchmarks/schedules.py).

8. Fit at the snapshot. A Koopman gradient is the model's step at snapshot t with the optimizer undone.
   ``fit`` (:func:`.step_fit.step_fit`) = the larger misfit of d(t) - b d(t-1), b = beta^every (-lr g(t) under heavy ball,
   -lr ((1 + beta) g(t) - beta g(t-1)) under Nesterov: the step hides the misfit behind the velocity it carries,
   up to 1 / (1 - beta)) and of the step d(t) (where that combination is a few roundings, their allowance hides
   it), beyond twice the expected norm of the rounding the steps carry (``ROUNDING_STD``; the dtype trained in,
   if coarser), relative to the model's, at t (T-2 for t = T-1; at t = 0 under momentum also the combination at
   1, as nothing recorded undoes the velocity of the first step), must be at most ``TRUST_TOL``. Full-batch
   training on a quadratic fits it to rounding; minibatch noise does not: the gradient is then a smoothed
   estimate the window cannot vouch for. benchmarks/kgp_fit.py (noise 0.003-0.1, rank-8 quadratic, plain, heavy
   ball and Nesterov, 240 gradients): 193 more than 10% off, 35 of them trusted by checks 1-5, 0 with this. The
   full-batch digits MLP (docs/trust.md, "A Koopman gradient at a window converged to rounding" and "under
   Nesterov"): heavy ball in float32, 4 of 12 gradients 10-14% off trusted under a worst-case allowance;
   Nesterov or every = 2, 42 of 138 more than 10% off with the step's fit alone; none now.

The refits (checks 1, 4, 5) classify drifting modes as the estimate did: where none of its modes lies
within ``drift_tol`` of 1, a refit's mode is cut at the horizon only if |mu| >= 1 (docs/trust.md, "Refits
near the drift line", has the measurements).

How the thresholds were chosen (from what the window's own numbers can be, never from an
answer): a spread of 0.05 sits between 1% (an estimate to trust) and 10% (one not to), on a log
scale; the misfit of a deterministic float64 trajectory is its rounding, at most ~1e-6 on the
Gram route (sqrt(eps64) resolution) and ~1e-11 on the QR route, while minibatch noise and
float32 recording (eps32 = 1.2e-7 of the parameters, 1e-4 or more of a step) sit above 1e-5.
Known limits (docs/trust.md, with the rules tried and rejected), e.g. slow rates closer than the window
separates; tests/test_limits.py and tests/test_kgp_trust.py measure the checks on known answers.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch


Tensor = torch.Tensor
TRUST_TOL = 0.05  # largest spread an estimate may have and stay silent (see the module notes)
RESIDUAL_TOL = 1e-5  # largest misfit under which a mode slower than the window is trusted
# a stored float is off by at most ulp/2 of itself, uniformly: std ulp / sqrt(12), and ulp averages 0.74 eps |x|
# in root mean square over a log-uniform mantissa (0.74^2 = int_1^2 m^-2 dm / (m ln 2)): 0.21 eps |x|
ROUNDING_STD = 0.21


class DriftWarning(UserWarning):
    """The window still drifts: some per-snapshot eigenvalue of the differences is (near) 1 or above."""


class UntrustedLimitWarning(UserWarning):
    """The window cannot pin the estimate (its spread or its resolution check failed; see the module notes)."""


@dataclass
class Extrapolation:
    """The limit (a forecast, or a Koopman gradient) of a window and how far to trust it.

    Attributes
    ----------
    theta : (n,) the estimate, in the snapshots' dtype (float32 for half-precision data).
    eigs : (r,) complex, per-snapshot eigenvalues of the (embedded) differences.
    drifting : (k,) complex, those treated as drifting (within drift_tol of 1, or |mu| >= 1).
    gain : max over the other modes of 1 / |1 - mu| (how much the tail amplifies a mode).
    horizon : snapshots summed for drifting modes (math.inf if none drifts).
    spread : relative change of the estimate when the model is refitted without the last
        ``holdout`` differences (math.inf when the shortened window cannot be fitted).
    holdout_error : the refit's relative error predicting the last snapshot.
    residual : the model's one-step misfit over the window, ||Y - U A~ U^H X|| / ||Y||.
    extent : snapshots over which a mode is extrapolated (gain for a limit, min(gain, h) for
        a forecast, 0 for a gradient).
    rounding : how far the stored data's rounding alone can move the estimate, relative to
        its distance from the last snapshot (a gradient: its size; so are spread, conditioning,
        truncation and secant) (check 3 of the module notes).
    conditioning : how far refitting the model to rounding-sized perturbations of the window (at
        its rank, and one above when it fits to rounding) moves the estimate, relative to the same
        (check 4 of the module notes).
    truncation : how far the model at the window's numerical rank moves the estimate, where that
        model fits the window deterministically and the rank kept is lower (check 5); else 0.
    secant : for a limit of a recorded SGD window with momentum, its distance from the secant limit
        relative to the same distance (check 6); else 0.
    schedule : for a recorded window, the drift of its optimizer's step size times the extent: about
        the share of the distance left that a tail fitted across the drift misses (check 7); else 0.
    fit : for a Koopman gradient, the misfit at the snapshot asked for of the gradient the recorded steps
        imply, relative to the model's (check 8, :func:`.step_fit.step_fit`); else 0.
    not_sgd : for a Koopman gradient of a window recorded with another optimizer than torch.optim.SGD
        (``meta['optimizer']``, e.g. "Adam"), its name: such a step is not -lr times the gradient (momentum
        undone), so the estimate is the step direction over -lr, never trusted; else "".
    stride : for a Koopman gradient of snapshots k > 1 optimizer steps apart, k: the per-step rates that turn the
        model into a gradient are principal k-th roots, and a mode that turns by pi/k or more per step (a real one
        oscillating, lr h > 1) gives another gradient from the same window, so it is never trusted; else 1.
    holdout, window : differences held out; snapshots in the window.
    limit : True for a limit (h = inf), which no drifting mode may enter.
    trusted : spread, rounding, conditioning, truncation, secant, schedule and fit <= TRUST_TOL, (extent <=
        window or residual <= RESIDUAL_TOL), no ``not_sgd``, a stride of 1, and for a limit no drifting mode (the
        window has no limit then; its estimate is a forecast).
    """

    theta: Tensor
    eigs: Tensor
    drifting: Tensor
    gain: float
    horizon: float
    spread: float = math.nan
    holdout_error: float = math.nan
    residual: float = math.nan
    extent: float = 0.0
    holdout: int = 0
    window: int = 0
    limit: bool = False
    rounding: float = 0.0
    conditioning: float = 0.0
    truncation: float = 0.0
    secant: float = 0.0
    schedule: float = 0.0
    fit: float = 0.0
    not_sgd: str = ""
    stride: int = 1

    @property
    def resolved(self) -> bool:
        """Every extrapolated mode is faster than the window, or the window is fitted to rounding."""
        return self.extent <= self.window or self.residual <= RESIDUAL_TOL

    @property
    def trusted(self) -> bool:
        return (self.spread <= TRUST_TOL and self.rounding <= TRUST_TOL and self.conditioning <= TRUST_TOL
                and self.truncation <= TRUST_TOL and self.secant <= TRUST_TOL and self.schedule <= TRUST_TOL
                and self.fit <= TRUST_TOL and not self.not_sgd and self.stride == 1
                and self.resolved
                and not (self.limit and self.drifting.numel()))


def warn_untrusted(est: Extrapolation, what: str, stacklevel: int = 2) -> None:
    """Warn (:class:`UntrustedLimitWarning`) when ``est`` fails its trust check."""
    if est.trusted:
        return
    why = []  # each check is relative to the estimate's move past the window's last snapshot (a gradient: itself)
    size = "of its size" if "gradient" in what else "of its distance from the window's last snapshot"
    if est.spread == math.inf:
        why.append(f"the window is too short to be refitted without its last {est.holdout} snapshot(s), so "
                   f"nothing in it checks the estimate")
    elif not est.spread <= TRUST_TOL:
        why.append(f"refitted without its last {est.holdout} snapshot(s) the model moves it by {est.spread:.2g} "
                   f"{size} (trusted up to {TRUST_TOL:g})")
    if not est.rounding <= TRUST_TOL:
        why.append(f"the stored data's rounding alone can move it by {est.rounding:.2g} {size} (the steps "
                   f"are only a few roundings of the parameters: record in float32 or wider, or before convergence)")
    if not est.conditioning <= TRUST_TOL:
        why.append(f"refitted to the window plus perturbations as small as its rounding, the model moves it by "
                   f"{est.conditioning:.2g} {size} (modes too close together for the window to separate)")
    if not est.truncation <= TRUST_TOL:
        why.append(f"the window is deterministic (a model at its numerical rank fits it to {RESIDUAL_TOL:g}) and that "
                   f"model moves it by {est.truncation:.2g} {size}: the rank kept cut dynamics, not noise "
                   f"(a window too short for all its modes)")
    if not est.secant <= TRUST_TOL:
        why.append(f"the secant limit, read from the gradients the recorded SGD steps imply, lies {est.secant:.2g} "
                   f"{size} away (the two models of the window disagree)")
    if not est.schedule <= TRUST_TOL:
        why.append(f"the recorded optimizer settings change inside the window: one affine map cannot fit steps made "
                   f"with different ones, and its tail over {est.extent:.3g} snapshots misses by about "
                   f"{est.schedule:.2g} of the distance left (method='secant' reads each step's settings)")
    if not est.fit <= TRUST_TOL:
        why.append(f"at that snapshot the gradient the recorded steps imply differs from the model's by {est.fit:.2g} "
                   f"of it (noise such as minibatch sampling, or dynamics the model misses: it is a smoothed "
                   f"estimate, not the gradient that made the step)")
    if est.not_sgd:
        why.append(f"the window was recorded with {est.not_sgd}, whose step is not torch.optim.SGD's (-lr times the "
                   f"gradient, momentum and weight decay undone), so this is the step direction divided by -lr")
    if est.stride > 1:
        why.append(f"snapshots {est.stride} steps apart give the per-step rates only as principal {est.stride}-th "
                   f"roots: a mode turning by pi/{est.stride} or more per step (a real one oscillating, lr h > 1) gives "
                   f"another gradient from the same window (the AliasingWarning)")
    if est.limit and est.drifting.numel():
        why.append(f"{est.drifting.numel()} mode(s) drift (see the DriftWarning), so the window has no limit and "
                   f"this is a {est.horizon:g}-snapshot forecast")
    if not est.resolved:
        why.append(f"it extrapolates a mode over {est.extent / est.window:.2g} window lengths (time scale "
                   f"1/|1-mu| = {est.gain:.3g} snapshots) from a window fitted only to {est.residual:.1e} "
                   f"(a mode slower than the window is pinned only by data fitted to {RESIDUAL_TOL:g})")
    own = bool(est.not_sgd) + (est.stride > 1)  # reasons a longer window cannot mend
    advice = ("Record a longer or later window (under momentum keep delays=1)" if len(why) > own
              else "Record every step with torch.optim.SGD for a gradient")
    warnings.warn(UntrustedLimitWarning(
        f"the window cannot pin this {what}: " + "; and ".join(why) + f". {advice}; .spread, .conditioning, "
        ".truncation, .secant, .fit, .residual and .extent on the result say how far it is off"),
        stacklevel=stacklevel)
