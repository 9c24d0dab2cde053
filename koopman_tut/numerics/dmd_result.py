"""What exact DMD returns: eigenvalues, amplitudes, lazily formed modes, prediction.

A :class:`DMDResult` holds the small float64 solution of :func:`koopman_tut.numerics.dmd` and a reference to the
data W (n_features, n_snapshots); every mode is a combination of snapshots, modes = W @ coef (Tu et al. 2014,
exact DMD), so a mode is formed only when it is asked for, in one pass over W.
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from .dmd_checks import ComplexModeWarning
from .eig_order import canonical_order  # noqa: F401  (re-exported)
from .finite import all_finite, outside_stacklevel
from .ints import mode_indices, plain_int
from .reals import is_finite, shown
from .matmul import matmul_chunked

Tensor = torch.Tensor


def powers(eigs: Tensor, t) -> Tensor:
    """lambda_i ** t_j, shape (r, k) complex128 on the CPU (principal branch for non-integer t).

    lambda ** 0 is 1 for every eigenvalue, 0 included (exp(0 * log 0) alone would give NaN).
    """
    lam = torch.as_tensor(eigs).cpu().to(torch.complex128)
    if isinstance(t, (bool, np.bool_)) or getattr(t, "dtype", None) in (bool, np.bool_, torch.bool):
        raise TypeError(f"t must be a number of snapshots or a sequence of them, got {t!r} (bool)")
    try:  # text is no time, though numpy reads '3' as 3.0
        if isinstance(t, (str, bytes)) or (not isinstance(t, torch.Tensor) and np.asarray(t).dtype.kind in "USO"):
            raise TypeError(f"text or objects: {t!r}")
        tt = torch.as_tensor(np.atleast_1d(np.asarray(t, dtype=np.float64)))
    except (TypeError, ValueError) as e:
        raise TypeError(f"t must be a number of snapshots or a sequence of them, got {t!r}") from e
    if np.ndim(t) > 1:  # each time gives a column: a table of times has no place in the result
        raise ValueError(f"t must be a number of snapshots or a 1-D sequence of them, got shape {tuple(np.shape(t))}")
    if not bool(torch.isfinite(tt).all()):
        raise ValueError(f"t must be finite numbers of snapshots, got {t!r}")
    log = torch.log(lam)  # log|lambda| + i arg: its real part is accurate near |lambda| = 1, log(abs(.)) is not
    mod = torch.exp(tt[None, :] * log.real[:, None])  # (r, k) |lambda|^t
    out = torch.polar(mod, tt[None, :] * log.imag[:, None])
    out = torch.where(mod == 0, torch.zeros_like(out), out)  # |lambda|^t underflowed: 0 whatever the phase
    return torch.where(tt[None, :] == 0, torch.ones_like(out), out)


def geometric_sums(mu: Tensor, h: float) -> Tensor:
    """sum_{j=0}^{h-1} mu^j = (1 - mu^h) / (1 - mu) for (r,) complex mu; h = math.inf gives
    1 / (1 - mu) (which needs |mu| < 1); mu = 1 gives h."""
    mu = mu.to(torch.complex128)
    one = (mu - 1).abs() < 1e-12
    safe = torch.where(one, torch.zeros_like(mu), mu)
    out = 1 / (1 - safe) if math.isinf(h) else (1 - powers(safe, h)[:, 0]) / (1 - safe)
    return torch.where(one, torch.full_like(mu, h), out)


@dataclass
class DMDResult:
    """Exact DMD of one snapshot matrix; quantities on the data's device.

    Attributes
    ----------
    eigs : (r,) complex. Discrete-time eigenvalues, per snapshot step.
    amplitudes : (r,) complex. Least-squares fit of the modes to the first snapshot.
    singular_values : (r,) real. Kept singular values of X = W[:, :-1].
    coef : (T, r) complex128 on the CPU, with modes = W @ coef.
    W : (n_features, n_snapshots), the data, held by reference (never copied).
    method : "gram" or "svd", the route that computed it.
    """

    eigs: Tensor
    amplitudes: Tensor
    singular_values: Tensor
    coef: Tensor = field(repr=False)
    W: Tensor = field(repr=False)
    method: str = "gram"

    def __post_init__(self) -> None:
        self._modes: Tensor | None = None  # cache for .modes
        if not (all_finite(self.singular_values) and all_finite(self.amplitudes)):  # the data are finite (checked)
            raise ValueError(f"W's singular values or amplitudes pass the range of {self.singular_values.dtype} "
                             f"(about {torch.finfo(self.singular_values.dtype).max:.1e}): rescale W (divide it by its "
                             f"largest entry) or pass it in float64")

    @property
    def rank(self) -> int:
        return int(self.eigs.numel())

    # -- modes, formed from the data only when asked for
    def combine(self, weights: Tensor, real: bool = True) -> Tensor:
        """Linear combinations of the modes, sum_i weights[i, j] * modes[:, i], in one pass over W.

        Parameters
        ----------
        weights : (r,) or (r, k) complex.
        real : return the real part (for real data). Otherwise complex, built without a
            complex copy of W (real and imaginary coefficients interleaved, so the real
            product's output already is the complex result's memory).

        Returns
        -------
        (n_features,) or (n_features, k), on W's device.
        """
        weights = torch.as_tensor(weights).to(torch.complex128)
        if weights.ndim not in (1, 2) or weights.shape[0] != self.rank:
            raise ValueError(f"weights must be ({self.rank},) or ({self.rank}, k), one row per mode (rank "
                             f"{self.rank}), got shape {tuple(weights.shape)}")
        if weights.ndim == 1:
            return self.combine(weights[:, None], real)[:, 0]
        c = self.coef @ weights.to(self.coef.device)  # (T, k) complex128
        W = self.W
        if W.is_complex():
            return W @ c.to(W.dtype).to(W.device)
        if real:
            return matmul_chunked(W, c.real)
        c2 = torch.view_as_real(c).reshape(c.shape[0], -1)  # (T, 2k): re0, im0, re1, im1, ...
        out = matmul_chunked(W, c2)  # (n, 2k)
        return torch.view_as_complex(out.reshape(out.shape[0], c.shape[1], 2))  # -1 is ambiguous for n = 0 rows

    @property
    def modes(self) -> Tensor:
        """(n_features, r) complex DMD modes (exact, PyDMD's scaling). Cached after the first call.

        Each mode (and its amplitude) is fixed only up to a complex factor, the phase of the eigenvector
        LAPACK returns: another route, another process count or another BLAS may give mode_i c and
        amplitude_i / c. Compare modes times amplitudes (``reconstruct``, ``predict``, ``fixed_point``), or
        normalize each mode's phase first."""
        if self._modes is None:
            self._modes = self.combine(torch.eye(self.rank, dtype=torch.complex128), real=False)
        return self._modes

    def mode(self, index: int | Sequence[int]) -> Tensor:
        """Only the mode(s) asked for: (n_features,) for an int (a 0-d integer tensor or array too),
        (n_features, k) for a list."""
        index = plain_int(index)
        E = torch.eye(self.rank, dtype=torch.complex128)[:, mode_indices("index", index, self.rank)]
        out = self.combine(E, real=False)
        return out[:, 0] if np.ndim(index) == 0 else out

    # -- eigenvalue look-ups
    def closest(self, value: complex = 1.0) -> int:
        """Index of the eigenvalue closest to ``value`` (default 1: the fixed-point mode)."""
        return int(torch.argmin((self.eigs.cpu().to(torch.complex128) - _value(value)).abs()))

    def near(self, value: complex = 1.0, radius: float = 0.05) -> Tensor:
        """Indices (k,) of eigenvalues within ``radius`` (a finite number >= 0) of ``value``, closest first."""
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not 0 <= radius < math.inf:
            raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
        d = (self.eigs.cpu().to(torch.complex128) - _value(value)).abs()
        idx = torch.nonzero(d <= radius).reshape(-1)
        return idx[torch.argsort(d[idx])]

    # -- dynamics
    def weights(self, t, indices: Sequence[int] | Tensor | None = None) -> Tensor:
        """amplitudes * eigs**t, shape (r, k) complex128; rows outside ``indices`` are zero."""
        w = self.amplitudes.cpu().to(torch.complex128)[:, None] * powers(self.eigs, t)
        if indices is not None:
            keep = torch.zeros(self.rank, dtype=torch.bool)
            keep[mode_indices("indices", indices, self.rank)] = True
            w[~keep] = 0
        if not bool(torch.isfinite(w).all()):
            over = torch.unique(torch.nonzero(~torch.isfinite(w))[:, 0])
            mod = self.eigs.cpu().abs()[over]
            raise ValueError(f"the DMD model cannot be evaluated at t={t!r}: amplitude * lambda**t overflows float64 "
                             f"for {over.numel()} of {self.rank} modes (|lambda| from {float(mod.min()):.3g} to "
                             f"{float(mod.max()):.3g}); ask for times at which the powers stay finite")
        return w

    def predict(self, t, indices: Sequence[int] | Tensor | None = None, real: bool = True) -> Tensor:
        """State(s) sum_i b_i lambda_i^t phi_i at time(s) t (snapshot-index units, t=0 is W[:, 0]).

        Parameters
        ----------
        t : float or array of k floats.
        indices : optional mode indices to include (default all).
        real : return the real part (for real data; the imaginary part is rounding only
            when both members of each conjugate pair are included).

        Returns
        -------
        Tensor, (n_features,) for scalar t, else (n_features, k).
        """
        out = self.combine(self.weights(t, indices), real=real)
        if not all_finite(out):  # lambda^t finite, its mode times it not (a far-back time)
            raise ValueError(f"the DMD model cannot be evaluated at t={t!r}: the state overflows {out.dtype}")
        return out[:, 0] if np.ndim(t) == 0 else out

    def reconstruct(self, real: bool = True) -> Tensor:
        """(n_features, n_snapshots) DMD reconstruction of the data."""
        return self.predict(np.arange(self.W.shape[-1]), real=real)

    def fixed_point(self, value: complex = 1.0, modulus: bool = False) -> Tensor:
        """Real (n_features,): the single mode with eigenvalue closest to ``value`` times its amplitude, b phi.

        This is the paper's eigenvalue-1 mode. It is the limit of the trajectory only when
        that eigenvalue is 1 and every other |lambda| < 1; for an estimate of the limit of
        a window that still drifts see :func:`koopman_tut.pruning.koopman_fixed_point`. Where that eigenvalue is
        complex (a :class:`~koopman_tut.numerics.dmd_checks.ComplexModeWarning`) this is the real part of b phi,
        or with ``modulus`` its modulus |b phi| elementwise (the paper's KMP score |v_1|); for a real one
        ``modulus`` changes nothing (b phi is real, up to rounding).
        """
        if not isinstance(modulus, bool):
            raise TypeError(f"modulus must be True or False, got {modulus!r}")
        i, near = self.closest(value), _value(value)
        lam = complex(self.eigs[i])
        if lam.imag == 0:  # LAPACK returns the real eigenvalues of a real matrix with no imaginary part
            return self.predict(0, indices=[i])
        what = "its modulus |b phi|, the paper's KMP score" if modulus else "the real part of b phi"
        warnings.warn(ComplexModeWarning(
            f"the eigenvalue closest to {near.real if near.imag == 0 else near:g} is complex ({lam:.6g}): its mode "
            f"is one of a conjugate pair, which turns rather than settles, so it is no fixed point ({what} is "
            f"returned). The window still drifts: its limit (kt.koopman(traj).fixed_point(), rule 'limit') says "
            f"where it is heading, with a trust check"), stacklevel=outside_stacklevel())
        v = self.predict(0, indices=[i], real=not modulus)
        return v.abs() if modulus else v

    def slow_part(self, radius: float = 0.1, t: float | None = None) -> Tensor:
        """Real (n_features,): sum of b_i lambda_i^t phi_i over eigenvalues within ``radius`` of 1,
        at time t (default: the last snapshot).

        Taken at the end of the window this is the last snapshot with the fast transients
        removed, NOT an estimate of where training is heading (it is close to the last
        snapshot by construction). It is kept as a diagnostic.
        """
        idx = self.near(1.0, radius)
        if idx.numel() == 0:
            idx = torch.tensor([self.closest(1.0)])
        return self.predict(self.W.shape[-1] - 1 if t is None else t, indices=idx)


class DMDBatch(Sequence[DMDResult]):
    """Results of a batched call (W of shape (B, n, T)): one :class:`DMDResult` per leading index."""

    def __init__(self, results: Sequence[DMDResult]):
        self.results = list(results)

    @classmethod
    def each(cls, B: int, fn) -> "DMDBatch":
        """The results fn(i) for i < B; a ValueError names the leading index (``W[i]``) it came from."""
        out = []
        for i in range(B):
            try:
                out.append(fn(i))
            except ValueError as e:
                raise ValueError(f"batch item W[{i}] of {B}: {e}") from None
        return cls(out)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i):  # type: ignore[override]
        return self.results[i]

    def __iter__(self) -> Iterator[DMDResult]:
        return iter(self.results)

    def __repr__(self) -> str:
        return f"DMDBatch({len(self)} results, ranks {[r.rank for r in self]})"

    @property
    def eigs(self) -> list[Tensor]:
        return [r.eigs for r in self]


def _value(value) -> complex:
    """An eigenvalue to look near: a finite (complex) number; ValueError naming ``value`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number) or not is_finite(value):
        raise ValueError(f"value must be a finite (complex) number, got {shown(value)}")
    return complex(value)
