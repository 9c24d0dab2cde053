"""Where is training heading? ``estimate_limit``: the Koopman limit beside the classic extrapolations.

Every method maps a window W = [x_0 .. x_{T-1}] (n, T) of a convergent iteration (here: training)
to an estimate of its limit x*, a flat (n,) tensor like :meth:`koopman_tut.DMDResult.fixed_point`:

* "koopman": the affine Koopman model's limit (:class:`koopman_tut.numerics.extrapolation.AffineModel`;
  delay-embedded under momentum, with its trust check), this package's default rule.
* "closest": the paper's rule (Redman et al., ICLR 2022): the DMD mode of the snapshots whose
  eigenvalue is closest to 1, times its amplitude; reproduced as published, with no trust check.
* "last": x_{T-1} (what global magnitude pruning looks at).
* "line": x_{T-1} + a (x_{T-1} - x_0), the straight line through the window, ``a`` a knob.
* "mpe": minimal polynomial extrapolation (Cabay & Jackson 1976; Sidi, Ford & Smith 1986,
  "Acceleration of convergence of vector sequences", SIAM J. Numer. Anal. 23; Smith, Ford &
  Sidi 1987, "Extrapolation methods for vector sequences", SIAM Review 29).
* "rre": reduced rank extrapolation (Eddy 1979; Mesina 1977; the same two papers).
* "secant": the multisecant quasi-Newton limit from the gradients the recorded SGD steps imply
  (:mod:`koopman_tut.numerics.secant`; a Trajectory recorded at every step of torch.optim.SGD).
* "anderson": one Anderson-acceleration step (Anderson 1965; Walker & Ni 2011, "Anderson
  acceleration for fixed-point iterations", SIAM J. Numer. Anal. 49) over the last ``depth``
  + 1 residuals, the iteration's map read off the trajectory, g(x_j) = x_{j+1}.

MPE, RRE and Anderson are computed in float64 from the successive differences' Gram (one pass over
W, or a float64 QR for small W) and one more pass for the combination of snapshots. On an affine
iteration x_{j+1} = A x_j + c whose differences have rank below the window, "koopman", "mpe" and
"rre" return x* exactly in exact arithmetic: a polynomial of A that annihilates the differences
annihilates the deviations from x* as well. In floating point the data's rounding is amplified by
how ill-conditioned the window is (rates close together, and close to 1, seen over few snapshots),
which the Koopman limit reports as ``conditioning`` (trust check 4 of
:mod:`koopman_tut.numerics.trust`) and MPE and RRE share. Gradient descent, lr 0.01, Hessian
eigenvalues linspace(0.1, 10, k) (rates 0.9 .. 0.999), 100 dimensions, float64, seeds 0-4, warm-up 0
and 100: k = 8 in 40 snapshots, all three within 1.5e-5 of the distance left (conditioning 2e-5 ..
1e-4), in 81 snapshots within 6e-8; k = 20 in 40 snapshots, 22% (Koopman) to 56% (MPE, RRE; MPE
refused 2 of the 10) off (benchmarks/known_answers.py). Only "koopman" and "secant" check themselves
(warnings); the others return their estimate as computed, however ill-conditioned the window.
"""
from __future__ import annotations

import numbers

import torch

from .distributed import global_rows
from .distributed_checks import analysis_fields, checked_preflight
from .dmd import dmd
from .extrapolation import AffineModel, momentum_delays
from .optimizer_settings import group_rows
from .reduced import difference_factor, numerical_tol
from .limit_inputs import METHODS, check_a, check_depth, check_method, check_warn  # noqa: F401 (METHODS: re-exported)
from .secant import min_norm_lstsq, secant_fit, warn_unreliable
from .memory import check_gram_fits
from .finite import NonFiniteError, check_finite
from .matmul import matmul_chunked
from .snapshots import as_snapshots

Tensor = torch.Tensor


def estimate_limit(traj_or_W, method: str = "koopman", *, a: float | None = None, depth: int | None = None,
                   svd_rank: int | float | str = "auto", delays: int | str = "auto", warn: bool = True,
                   group=None) -> Tensor:
    """Estimate where a window is heading, by one of :data:`METHODS` (see the module notes).

    Parameters
    ----------
    traj_or_W : a :class:`koopman_tut.Trajectory` (its ``meta`` gives the momentum, hence the
        delays of "koopman") or a snapshot matrix (n_features, n_snapshots), tensor or ndarray.
    method : "koopman" (default), "closest", "last", "line", "mpe", "rre", "anderson" or "secant"
        (the last needs a Trajectory recorded at every step of torch.optim.SGD, one lr and momentum
        for all its parameter groups at each step; a schedule may change them).
    a : the line's step, x_{T-1} + a (x_{T-1} - x_0), a >= 0 ("line" only; default 1).
    depth : Anderson's depth m, the number of past residual differences it mixes (SciPy's
        default M = 5; "anderson" only): at most, as SciPy's M (a window with fewer, T - 2, mixes them all).
    svd_rank, delays : of the "koopman" model: "auto" is kt.koopman's rule (0, Gavish-Donoho,
        for more rows than snapshots, else -1; one delay where ``meta`` records momentum).
        A knob given to a method that does not use it (``a`` with "mpe", say) is a ValueError,
        not ignored: the estimate would not be the one asked for.
    warn : let "koopman" warn (DriftWarning, UntrustedLimitWarning), and "secant" where its own
        check fails (:class:`koopman_tut.numerics.secant.SecantFit`: directions lost to rounding, or
        a last gradient the steps do not span).

    Returns
    -------
    (n,) tensor on W's device, in W's dtype (float32 for half-precision W).
    """
    try:
        if group is not None:  # before any collective: the same window and arguments on every rank
            _agree(traj_or_W, method, group, a=a, depth=depth, svd_rank=svd_rank, delays=delays, warn=warn)
        return _estimate(traj_or_W, method, a, depth, svd_rank, delays, warn, group)
    except NonFiniteError as e:  # found on the way (QR or Gram route): named as the caller passed it
        raise e.named("traj_or_W") from None


def _agree(traj_or_W, method: str, group, **knobs) -> None:
    """The ranks' pre-flight: each checks its window and arguments, then all compare them (a rank
    refusing its own makes every rank raise, so none waits in a later collective)."""
    def check():
        W, _, _ = _window(traj_or_W, min_rows=0)  # a rank may hold none
        check_method(method, **{k: v for k, v in knobs.items() if k != "warn"})
        if method == "secant":
            raise ValueError("method='secant' needs every row of the window in one process; with group= use "
                             "'koopman' (its trust check reads the same steps) or another method")
        if method in ("last", "line"):  # no collective follows that would carry a NaN to every rank
            check_finite(W, "traj_or_W")
        elif method != "closest":  # (T, T) matrices follow ("closest": kt.dmd's own check)
            check_gram_fits(W, name="traj_or_W")
        options = {"method": method, **knobs}  # a tensor has none of a Trajectory's steps, names or settings
        return analysis_fields(traj_or_W if hasattr(traj_or_W, "meta") else _Rows(W), options), None
    checked_preflight("kt.estimate_limit", group, check, "Every rank passes its own rows of the window only")


class _Rows:
    """A plain window as :func:`analysis_fields` reads a Trajectory: no steps, names or settings."""
    def __init__(self, W: Tensor):
        self.snapshots, self.steps, self.meta = W, None, {}

    def __len__(self) -> int:
        return self.snapshots.shape[1]


def _estimate(traj_or_W, method: str, a: float, depth: int, svd_rank, delays, warn: bool, group) -> Tensor:
    W, meta, stride = _window(traj_or_W, min_rows=0 if group is not None else 1)
    n_rows = global_rows(W, group)  # a rank may hold no rows, the group not (every rank gets the same count)
    if n_rows == 0:
        raise ValueError("traj_or_W has no features (rows) on any rank of the group: nothing to estimate")
    check_method(method, a, depth, svd_rank, delays)
    check_warn(warn)
    a, depth = 1.0 if a is None else a, 5 if depth is None else depth
    if W.is_complex() and method != "closest":
        raise TypeError(f"traj_or_W must be real (a parameter trajectory) for method={method!r}, got {W.dtype}")
    if method in ("last", "line"):  # the other methods check it on their way (QR or Gram)
        check_finite(W, "traj_or_W")
    elif method != "closest":  # before any (T, T) matrix is formed (over ranks: in the pre-flight)
        check_gram_fits(W, name="traj_or_W")
    if method == "koopman":
        if W.shape[1] < 3:
            raise ValueError(f"traj_or_W needs at least 3 snapshots for method='koopman', got {W.shape[1]}")
        rank = (0 if n_rows > W.shape[1] else -1) if svd_rank == "auto" else svd_rank
        k = momentum_delays(meta, W.shape[1]) if delays == "auto" else delays
        rows = (group_rows(meta, traj_or_W.names, traj_or_W.offsets)  # each group's rows (one process only)
                if hasattr(traj_or_W, "offsets") and group is None else None)
        model = AffineModel(W, rank, delays=k, optimizer=(meta, stride, rows) if meta else None, group=group)
        return model.extrapolate(warn=warn).theta
    if method == "closest":
        return dmd(W, svd_rank=-1, group=group).fixed_point()
    if method == "secant":
        fit = secant_fit(W, meta, stride)
        if warn:
            warn_unreliable(fit, stacklevel=4)
        return matmul_chunked(W, fit.coef[:, None])[:, 0]
    out = matmul_chunked(W, combination(W, method, a=a, depth=depth, group=group)[:, None])[:, 0]
    if method == "line" and not bool(torch.isfinite(out).all()):  # finite W: a step too long for the dtype
        raise ValueError(f"a={a!r} carries the line past what {W.dtype} holds (its estimate overflows): "
                         f"choose a smaller a")
    return out


def combination(W: Tensor, method: str, a: float = 1.0, depth: int = 5, group=None) -> Tensor:
    """(T,) float64 weights c, summing to 1, with the estimate = W @ c, for "last", "line", "mpe",
    "rre" and "anderson" (W: (n_features, n_snapshots), or this rank's rows of it with ``group``)."""
    T = W.shape[-1]
    c = torch.zeros(T, dtype=torch.float64)
    if method == "last":
        c[-1] = 1
        return c
    if method == "line":
        a = check_a(a)
        c[-1] += 1 + a
        c[0] -= a
        return c
    if T < 3:
        raise ValueError(f"traj_or_W needs at least 3 snapshots for method={method!r}, got {T}")
    f = difference_factor(W, 0, None, group, "auto")
    Rd = f.Rd  # (p, T-1): ||D x|| = ||Rd x|| for the differences D = [u_0 .. u_{T-2}]
    s_max = float(torch.linalg.matrix_norm(Rd, 2))
    rcond = numerical_tol(s_max, T - 2, f) / s_max if s_max > 0 else 0.0
    if method == "mpe":  # [u_0 .. u_{k-1}] c = -u_k, c_k = 1, gamma = c / sum(c); x* = sum gamma_j x_j
        # k = T - 2, the minimum-norm c over every difference (the better conditioned); where its
        # value at 1 vanishes (a window longer than its minimal polynomial), k = the differences'
        # numerical rank, the minimal polynomial's degree
        s = torch.linalg.svdvals(Rd)
        rank = int((s > rcond * s_max).sum()) if s_max > 0 else T - 2
        for k in dict.fromkeys((T - 2, max(1, min(T - 2, rank)))):
            coef = torch.ones(k + 1, dtype=torch.float64)
            coef[:k] = min_norm_lstsq(Rd[:, :k], -Rd[:, k], rcond)
            if abs(float(coef.sum())) >= 1e-12 * float(coef.abs().sum()):
                break
        else:
            raise ValueError(f"MPE cannot normalise its polynomial on this window: its value at 1 is "
                             f"{abs(float(coef.sum())) / float(coef.abs().sum()):.1e} of its coefficients' size "
                             f"(a root within rounding of 1: a mode the window cannot tell from a drift); "
                             f"'rre' and 'koopman' need no such normalisation")
        c[: k + 1] = coef / coef.sum()
    elif method == "rre":  # min ||sum gamma_j u_j|| with sum gamma_j = 1; x* = sum gamma_j x_j
        c[: T - 1] = _affine_min(Rd, rcond)
    elif method == "anderson":  # the last depth + 1 residuals f_j = u_j, mixed; x* = sum alpha_j g(x_j) = x_{j+1}
        check_depth(depth)
        m = min(depth, T - 2)
        c[T - 1 - m:] = _affine_min(Rd[:, T - 2 - m:], rcond)
    return c


def _affine_min(R: Tensor, rcond: float) -> Tensor:
    """gamma (k,) minimising ||R gamma|| subject to sum(gamma) = 1 (minimum-norm where not unique):
    gamma = e_last + N y with N = [e_j - e_last], y by least squares."""
    k = R.shape[1]
    N = torch.zeros(k, k - 1, dtype=torch.float64)
    N[: k - 1] = torch.eye(k - 1, dtype=torch.float64)
    N[k - 1] = -1
    y = min_norm_lstsq(R @ N, -R[:, -1], rcond)
    gamma = N @ y
    gamma[-1] += 1
    return gamma


def holdout_rank(traj_or_W, ranks=(1, 2, 4, 8, 16, -1), holdout: int | None = None,
                 delays: int | str = "auto") -> int:
    """The affine model's rank, chosen from the window alone by how well it forecasts held-out snapshots.

    Fit the model (``delays`` as in :func:`estimate_limit`) to the first T - h snapshots,
    forecast the last h (h = ``holdout``, default max(2, T // 5), at most T - 3 - delays), and
    keep the candidate rank whose forecasts err least, summed over the h snapshots relative to
    how far they moved (ties: the smaller rank). A full-rank model of a noisy minibatch window fits the noise and extrapolates
    it; a few slow modes carry the drift: this picks between them without looking at the future
    beyond the window. Candidates above the window's numerical rank are capped by it.

    Parameters
    ----------
    traj_or_W : a Trajectory or a window (n_features, n_snapshots).
    ranks : candidate svd_rank values (integers >= 1, or -1 for every mode).

    Returns
    -------
    The chosen rank, an element of ``ranks``.
    """
    import warnings

    W, meta, _ = _window(traj_or_W)
    check_finite(W, "traj_or_W")  # a NaN in the held-out part would make every error NaN, and pick ranks[0]
    T = W.shape[1]
    k = momentum_delays(meta, T) if delays == "auto" else delays
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ValueError(f"delays must be 'auto' or an integer >= 0, got {delays!r}")
    if T - 3 - k < 1:
        raise ValueError(f"traj_or_W has {T} snapshots: holding any out needs at least delays + 4 = {k + 4} "
                         f"({k} delay(s))")
    h = min(max(2, T // 5), T - 3 - k) if holdout is None else holdout
    if isinstance(h, bool) or not isinstance(h, numbers.Integral) or not 1 <= h <= T - 3 - k:
        raise ValueError(f"holdout must be an integer in [1, {T - 3 - k}] for {T} snapshots and {k} delay(s), got {h!r}")
    listed = list(ranks) if hasattr(ranks, "__iter__") and not isinstance(ranks, (str, bytes, dict)) else []
    if not listed or any(isinstance(r, bool) or not isinstance(r, numbers.Integral) or not (r == -1 or r >= 1)
                         for r in listed):
        raise ValueError(f"ranks must be a non-empty sequence of integers >= 1 or -1, got {ranks!r}")
    h, ranks = int(h), [int(r) for r in listed]
    fit, future = W[:, : T - h], W[:, T - h:].to(torch.float64)
    moved = (future - W[:, T - h - 1: T - h].to(torch.float64)).norm() ** 2
    errors = []
    for r in ranks:
        model = AffineModel(fit, r, delays=k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the held-out fit is a means here, not a result
            pred = torch.stack([model.extrapolate(j, warn=False).theta for j in range(1, h + 1)], 1)
        errors.append(float((pred.to(torch.float64) - future).norm() ** 2 / moved))
    return ranks[min(range(len(ranks)), key=lambda i: (errors[i], i))]


def _window(x, min_rows: int = 1) -> tuple[Tensor, dict, int]:
    """(W (n, T), meta, optimizer steps between snapshots) from a Trajectory (duck-typed: numerics
    knows nothing of recording) or an array (no meta; stride 1)."""
    if hasattr(x, "snapshots") and hasattr(x, "meta"):
        if callable(getattr(x, "check", None)):
            x.check()  # its fields as at construction: an edit since is refused, not read
        stride = snapshot_stride(x)
        return as_snapshots(x.snapshots, "traj.snapshots", min_rows=min_rows), dict(x.meta or {}), stride
    return as_snapshots(x, "traj_or_W", min_rows=min_rows, batch=False), {}, 1


def snapshot_stride(traj) -> int:
    """Optimizer steps between a Trajectory's snapshots, from ``traj.steps``; ValueError unless they
    are equally spaced (DMD and every extrapolation here fit one map from each snapshot to the
    next) and agree with ``traj.meta['every']``."""
    gaps = (traj.steps[1:] - traj.steps[:-1]).unique().tolist()
    every = traj.meta.get("every")
    if len(gaps) > 1:
        raise ValueError(f"traj.steps must be equally spaced (one map from each snapshot to the next), got gaps "
                         f"{gaps} between steps {traj.steps.tolist()[:8]}...; take an evenly spaced part with "
                         f"traj.window(start, stop, every)")
    stride = gaps[0] if gaps else (every if every is not None else 1)
    if every is not None and every != stride:
        raise ValueError(f"traj.meta['every'] is {every!r} but traj.steps are {stride} optimizer steps apart: "
                         f"fix one of them (the Koopman gradient divides each snapshot's step by it)")
    return int(stride)
