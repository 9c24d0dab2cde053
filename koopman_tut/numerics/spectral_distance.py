"""How far apart two Koopman spectra are, and whether that is more than replicates scatter.

* :func:`wasserstein`: the optimal one-to-one matching of two eigenvalue sets in the complex
  plane, its mean matched distance (the Wasserstein-1 distance between uniform measures);
* :func:`permutation_test`: the mean between-group distance minus the mean within-group one,
  against every relabelling of the replicates. The paper (Redman et al., NeurIPS 2024,
  arXiv:2302.09160) tests its distances with a permutation test too, but this design is the
  tutorial's: the authors' code swaps each optimally matched eigenvalue pair of two spectra by a
  coin flip, per seed, 100 times.

The spectra come from :func:`koopman_tut.numerics.spectra.spectrum`, which re-exports these.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .finite import check_has_values
from .ints import plain_int

Tensor = torch.Tensor
Array = Tensor | np.ndarray


def _check_count(value, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (a 0-d integer tensor as the int it holds, as torch takes it)."""
    value = plain_int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _points(e, name: str) -> np.ndarray:
    """One spectrum as a (r,) complex128 array, or an error naming it as the caller passed it."""
    if isinstance(e, Tensor):
        check_has_values(e, name)
        e = (e.to_dense() if e.layout != torch.strided else e).detach().cpu()
        e = e.to(torch.complex128 if e.is_complex() else torch.float64) if e.is_floating_point() or e.is_complex() else e
        e = e.resolve_conj().resolve_neg().numpy()  # a lazy conjugate (z.conj()) as the numbers it stands for
    elif isinstance(e, np.ma.MaskedArray):  # np.asarray would compare the masked entries too
        raise TypeError(f"{name} is a masked array: pass the eigenvalues to compare ({name}.compressed())")
    else:
        if isinstance(e, (list, tuple)):  # one-element tensors in a list as their numbers (detached: no grad)
            e = [v.detach().cpu().item() if isinstance(v, Tensor) and v.numel() == 1 else v for v in e]
        try:
            e = np.asarray(e)
        except (ValueError, TypeError, RuntimeError) as err:  # a ragged list, or one holding larger tensors
            raise ValueError(f"{name} must be a 1-D set of eigenvalues (a tensor, an array or a flat list of "
                             f"numbers), got a {type(e).__name__} that is not one ({err})") from None
    if e.ndim != 1 or e.size == 0 or e.dtype.kind not in "iufc":
        raise ValueError(f"{name} must be a non-empty 1-D set of eigenvalues, got shape {e.shape}, dtype {e.dtype}")
    if not np.isfinite(e).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return e.astype(np.complex128)


def _same_size(points: list[np.ndarray], names: list[str]) -> None:
    """Equal-size spectra, or an error naming the first that differs from the first one."""
    for p, n in zip(points[1:], names[1:]):
        if p.size != points[0].size:
            raise ValueError(f"{names[0]} and {n} must have the same number of eigenvalues, got {points[0].size} and "
                             f"{p.size}; take every spectrum with the same modes=")


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    # values near float64's largest are scaled by a power of two (exact), so that a - b cannot overflow
    top = max(float(np.abs(a).max()), float(np.abs(b).max()))
    scale = math.ldexp(1.0, math.frexp(top)[1] - 1) if top > 2.0**1000 else 1.0
    D = np.abs(a[:, None] / scale - b[None, :] / scale)
    rows, cols = linear_sum_assignment(D)
    return float(D[rows, cols].mean()) * scale


def wasserstein(e1: Array, e2: Array) -> float:
    """Wasserstein-1 distance between two equal-size eigenvalue sets (points in the complex plane).

    The optimal one-to-one assignment minimizing the summed |e1_i - e2_j| (scipy's
    ``linear_sum_assignment``), then the mean matched distance: for uniform measures on two
    sets of the same size this IS the Wasserstein-1 distance (Birkhoff: an optimal transport
    plan can be taken to be a permutation). Sets of different sizes are refused: compare
    spectra with the same number of modes (``spectrum(..., modes=)``).

    Being a mean over the r matched pairs, it shrinks when both sets carry eigenvalues that
    match at no cost, such as the exact zeros of directions no run explores: two 2-D linear
    systems with eigenvalues {0.9, 0.5} and {0.6, 0.2} are 0.300 apart without delays and 0.150,
    0.060, 0.030, 0.015 apart with 1, 4, 9, 19 (each delay adds two zeros to both spectra). So
    distances compare across pairs of spectra of the same embedding (the same delays and modes),
    not across embeddings.

    Parameters
    ----------
    e1, e2 : (r,) complex (or real) eigenvalues, tensors or arrays.
    """
    a, b = _points(e1, "e1"), _points(e2, "e2")
    _same_size([a, b], ["e1", "e2"])
    return _distance(a, b)


def _matrix(points: list[np.ndarray]) -> np.ndarray:
    N = len(points)
    D = np.zeros((N, N))
    for i, j in itertools.combinations(range(N), 2):
        D[i, j] = D[j, i] = _distance(points[i], points[j])
    return D


def distance_matrix(spectra: Sequence[Array]) -> np.ndarray:
    """(N, N) symmetric matrix of :func:`wasserstein` distances between N >= 1 spectra of the same size."""
    points, names = _group(spectra, "spectra")
    if not points:
        raise ValueError("spectra is empty: give one spectrum or more (1-D eigenvalue sets)")
    _same_size(points, names)
    return _matrix(points)


@dataclass
class PermutationResult:
    """Outcome of :func:`permutation_test`.

    statistic : mean between-group distance minus mean within-group distance.
    p_value : share of relabellings (the observed one included) whose statistic is >= it.
    between, within : the two means. n_relabellings : how many were drawn; exact : all enumerated.
    """

    statistic: float
    p_value: float
    between: float
    within: float
    n_relabellings: int
    exact: bool


def _group(spectra, name: str) -> tuple[list[np.ndarray], list[str]]:
    """A group of spectra (any iterable of 1-D eigenvalue sets: a list, a generator, the rows of a 2-D
    array) as points and their names, ``name[i]``."""
    if isinstance(spectra, (str, bytes, dict)) or not hasattr(spectra, "__iter__"):
        raise TypeError(f"{name} must be a sequence of spectra (1-D eigenvalue sets), got {type(spectra).__name__}")
    if getattr(spectra, "ndim", None) == 0:
        raise TypeError(f"{name} must be a sequence of spectra (1-D eigenvalue sets), got a 0-d {type(spectra).__name__}")
    if getattr(spectra, "ndim", None) == 1 and getattr(getattr(spectra, "dtype", None), "kind", "") != "O":
        raise TypeError(f"{name} must be a sequence of spectra (1-D eigenvalue sets), got one spectrum: wrap it "
                        f"in a list")
    items = list(spectra)
    names = [f"{name}[{i}]" for i in range(len(items))]
    return [_points(e, n) for e, n in zip(items, names)], names


def _between_minus_within(D: np.ndarray, in_a: np.ndarray) -> tuple[float, float, float]:
    between = D[np.ix_(in_a, ~in_a)].mean()
    iu = np.triu_indices(len(in_a), 1)
    same = (in_a[:, None] == in_a[None, :])[iu]
    within = D[iu][same].mean()
    return float(between - within), float(between), float(within)


def permutation_test(spectra_a: Sequence[Array], spectra_b: Sequence[Array], n_permutations: int = 2000,
                     seed: int = 0, paired: bool = False) -> PermutationResult:
    """Do two groups of spectra differ more than spectra within a group? A permutation test.

    Each group holds independent replicates (e.g. one pooled spectrum per seed). The statistic
    is the mean between-group :func:`wasserstein` distance minus the mean within-group one;
    under the null hypothesis (all replicates exchangeable: the same dynamics) every
    relabelling into groups of the same sizes is equally likely, so
    p = #{relabellings with statistic >= observed} / #relabellings is a valid p-value,
    P(p <= alpha) <= alpha. All C(n_a + n_b, n_a) relabellings are enumerated when there are at
    most ``n_permutations``; otherwise ``n_permutations`` random ones plus the observed one.

    ``paired=True`` is for replicates that come in pairs, a_i and b_i sharing what varies between
    replicates (the same seed: one model, one data order): only the labels within a pair are
    exchanged (2^n relabellings of n pairs). Relabelling across pairs would treat a seed's own
    scatter as noise of the comparison, and such a test almost never rejects a difference smaller
    than the seed-to-seed scatter.

    The smallest p-value: with every relabelling enumerated, 2 / 2^n for n pairs (the statistic is unchanged by
    swapping every pair: 0.0625 for 5 pairs, so at least 6 are needed to reach 0.05), 2 / C(2n, n) for two unpaired
    groups of n each (swapping the whole groups leaves it unchanged too: 0.0079 for 5 and 5) and
    1 / C(n_a + n_b, n_a) for groups of different sizes. With random relabellings it is
    1 / (n_permutations + 1), which may lie below those (6 pairs, ``n_permutations=63``: 1/64): still a valid
    p-value (the observed labelling is counted among the draws), but not the exact test's.

    Parameters
    ----------
    spectra_a, spectra_b : at least 2 spectra each, all of the same size (as many in both when paired;
        spectra_a[i] pairs with spectra_b[i]).
    n_permutations : relabellings to draw when enumeration would take more.
    seed : seeds the random relabellings (unused when exact): an integer >= 0, None, or a NumPy Generator,
        SeedSequence or BitGenerator, as ``numpy.random.default_rng`` takes.
    paired : exchange labels within pairs only (see above).
    """
    (pa, names_a), (pb, names_b) = _group(spectra_a, "spectra_a"), _group(spectra_b, "spectra_b")
    na, nb = len(pa), len(pb)
    if na < 2 or nb < 2:
        raise ValueError(f"each group needs at least 2 spectra (replicates), got {na} and {nb}")
    if not isinstance(paired, (bool, np.bool_)):
        raise TypeError(f"paired must be True or False, got {paired!r}")
    if paired and na != nb:
        raise ValueError(f"paired=True pairs spectra_a[i] with spectra_b[i]: both need as many, got {na} and {nb}")
    n_permutations = _check_count(n_permutations, "n_permutations", minimum=1)
    seed = plain_int(seed)
    if not (seed is None or isinstance(seed, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator))):
        _check_count(seed, "seed", minimum=0)  # what numpy.random.default_rng takes
    _same_size(pa + pb, names_a + names_b)
    D = _matrix(pa + pb)
    labels = np.arange(na + nb) < na
    stat, between, within = _between_minus_within(D, labels)
    groups, exact = _relabellings(labels, bool(paired), n_permutations, seed)
    null = np.array([_between_minus_within(D, g)[0] for g in groups])
    tol = 1e-12 * max(1.0, float(np.abs(D).max()))  # the same relabelling summed in another order
    p = float((null >= stat - tol).mean())
    return PermutationResult(stat, p, between, within, len(null), exact)


def _relabellings(labels: np.ndarray, paired: bool, n_permutations: int, seed) -> tuple[Iterator, bool]:
    """(the relabellings (n,) bool of group a, whether they are all of them): every split into groups of the
    sizes of ``labels`` or, paired, every choice of pairs (i, n_a + i) whose labels swap; all when at most
    ``n_permutations``, else the observed one and ``n_permutations`` drawn at random."""
    n, na = len(labels), int(labels.sum())
    total = 2**na if paired else math.comb(n, na)
    if total <= n_permutations:
        if paired:
            return (np.concatenate([~swap, swap]) for swap in map(np.array, itertools.product([False, True],
                                                                                                 repeat=na))), True
        return (np.isin(np.arange(n), c) for c in itertools.combinations(range(n), na)), True
    rng = np.random.default_rng(seed)
    if paired:
        draws = (np.concatenate([~swap, swap]) for swap in (rng.random(na) < 0.5 for _ in range(n_permutations)))
    else:
        draws = (rng.permutation(labels) for _ in range(n_permutations))
    return itertools.chain([labels], draws), False
