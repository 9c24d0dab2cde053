"""Eigenvalues come out in one canonical order, whatever LAPACK, the route or the row order gives."""
import itertools

import numpy as np
import pytest
import torch

import koopman_tut as kt
from koopman_tut.numerics.dmd_result import canonical_order
from koopman_tut.numerics.extrapolation import AffineModel

# a spectrum with every kind of tie: equal moduli (0.9 real, a pair on |z| = 0.9, -0.9), a pair
# on |z| = 0.5 and the real 0.5 and -0.5, 1 and -1
SPECTRUM = [1.0, -1.0, 0.9, -0.9, 0.9 * np.exp(0.7j), 0.9 * np.exp(-0.7j), 0.5, -0.5,
            0.5 * np.exp(2.0j), 0.5 * np.exp(-2.0j), 0.2 * np.exp(1.1j), 0.2 * np.exp(-1.1j)]
CANONICAL = [1.0, -1.0, 0.9, 0.9 * np.exp(0.7j), 0.9 * np.exp(-0.7j), -0.9,
             0.5, 0.5 * np.exp(2.0j), 0.5 * np.exp(-2.0j), -0.5, 0.2 * np.exp(1.1j), 0.2 * np.exp(-1.1j)]


def test_canonical_order_of_a_spectrum_with_ties():
    lam = torch.tensor(SPECTRUM, dtype=torch.complex128)
    for seed in range(20):
        shuffled = lam[torch.randperm(lam.numel(), generator=torch.Generator().manual_seed(seed))]
        assert torch.equal(shuffled[canonical_order(shuffled)], torch.tensor(CANONICAL, dtype=torch.complex128))


def test_rounding_does_not_change_the_order():
    """Moduli and arguments that differ by rounding only (1e-13) sort as equal: the tie rule decides."""
    lam = torch.tensor(CANONICAL, dtype=torch.complex128)
    rng = np.random.default_rng(0)
    for _ in range(50):
        noisy = lam * torch.from_numpy(1 + 1e-13 * (rng.standard_normal(lam.numel()) + 1j * rng.standard_normal(lam.numel())))
        perm = torch.from_numpy(rng.permutation(lam.numel()))
        order = canonical_order(noisy[perm])
        assert torch.equal(perm[order], torch.arange(lam.numel()))


def test_conjugate_pairs_are_adjacent_positive_first():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((40, 40))
    lam = torch.from_numpy(np.linalg.eigvals(A))
    out = lam[canonical_order(lam)]
    i = 0
    while i < out.numel():
        if abs(out[i].imag) > 1e-12:
            assert out[i].imag > 0 and torch.isclose(out[i + 1], out[i].conj(), rtol=1e-10)
            i += 2
        else:
            i += 1
    assert bool((out.abs()[:-1] >= out.abs()[1:] - 1e-12).all())


def test_small_inputs():
    assert canonical_order(torch.zeros(0, dtype=torch.complex128)).numel() == 0
    assert canonical_order(torch.tensor([0.3 + 0j])).tolist() == [0]


def _shuffled_system(seed: int, n: int = 200, T: int = 30):
    """W (n, T) of a linear system whose eigenvalues are given in a shuffled order."""
    rng = np.random.default_rng(seed)
    lam = np.array(SPECTRUM[2:])[rng.permutation(len(SPECTRUM) - 2)]  # drop +-1: keep it well conditioned
    modes = rng.standard_normal((n, lam.size)) + 1j * rng.standard_normal((n, lam.size))
    pairs = {i: j for i, j in itertools.permutations(range(lam.size), 2) if abs(lam[i] - np.conj(lam[j])) < 1e-12}
    for i, j in pairs.items():  # conjugate modes for conjugate eigenvalues: real data
        if i < j:
            modes[:, j] = modes[:, i].conj()
    t = np.arange(T)
    W = (modes @ (lam[:, None] ** t[None, :])).real
    return torch.from_numpy(W), np.array(CANONICAL[2:])


@pytest.mark.parametrize("method", ["svd", "gram"])
@pytest.mark.parametrize("seed", range(5))
def test_dmd_eigenvalues_come_out_in_canonical_order(method, seed):
    W, expected = _shuffled_system(seed)
    eigs = kt.dmd(W, method=method).eigs
    assert torch.equal(canonical_order(eigs), torch.arange(eigs.numel()))
    # |error| <= eps64 (s1/sr)^2-scale on this well-conditioned data: 1e-8 is far above it
    np.testing.assert_allclose(eigs.numpy(), expected, atol=1e-8)


def test_routes_row_order_and_kernels_agree_by_index():
    """The same data through both routes, with its rows permuted and chunked differently: the
    eigenvalues and each mode's contribution b_i phi_i (a mode and its amplitude each carry an
    arbitrary phase, their product does not) line up index by index."""
    W, _ = _shuffled_system(7, n=300)
    ref = kt.dmd(W, method="svd")
    perm = torch.randperm(W.shape[0], generator=torch.Generator().manual_seed(0))
    for res, rows in ((kt.dmd(W, method="gram"), slice(None)), (kt.dmd(W[perm], method="svd"), perm),
                      (kt.dmd(W[perm], method="gram", chunk_rows=7), perm)):
        np.testing.assert_allclose(res.eigs.numpy(), ref.eigs.numpy(), atol=1e-8)
        scale = float(ref.modes.abs().max() * ref.amplitudes.abs().max())
        np.testing.assert_allclose((res.modes * res.amplitudes).numpy(),
                                   (ref.modes * ref.amplitudes)[rows].numpy(), atol=1e-7 * scale)


def test_complex_data_keeps_a_canonical_order():
    W, _ = _shuffled_system(3)
    Wc = torch.complex(W, W.flip(0))
    a, b = kt.dmd(Wc, method="gram").eigs, kt.dmd(Wc, method="svd").eigs
    assert torch.equal(canonical_order(a), torch.arange(a.numel()))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-8)


def test_affine_model_eigenvalues_in_canonical_order():
    W, _ = _shuffled_system(5)
    theta_star = torch.linspace(-1, 1, W.shape[0], dtype=torch.float64)
    model = AffineModel(W + theta_star[:, None])
    assert torch.equal(canonical_order(model.eigs), torch.arange(model.eigs.numel()))
