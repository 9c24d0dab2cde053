"""The chunked float64 passes over W (koopman_tut.snapshots) in every memory layout.

A recorder's trajectory is snapshot-major (each snapshot contiguous: its (T, n) storage
seen as (n, T)); data built in memory is usually row-major. The passes pick a buffer in
W's own order, so each layout must give the same numbers, up to float64 summation.
"""
import pytest
import torch

import koopman_tut as kt
from koopman_tut.extrapolation import AffineModel
from koopman_tut.snapshots import (assemble_gram, chunk_buffer, deviation_gram, difference_gram,
                                   difference_matrix, matmul_chunked, snapshot_major)
from koopman_tut.systems import trajectory_like

EPS64 = torch.finfo(torch.float64).eps
EPS32 = torch.finfo(torch.float32).eps


def layouts(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same numbers (..., n, T) in three memory orders."""
    wide = torch.zeros(W.shape[:-1] + (2 * W.shape[-1],), dtype=W.dtype)
    wide[..., ::2] = W
    return {"row-major": W.contiguous(),
            "snapshot-major": W.mT.contiguous().mT,  # as recorded: storage (..., T, n)
            "strided": wide[..., ::2]}  # neither: every other column of a wider array


def data(n, T, dtype, batch=None, seed=0):
    W = trajectory_like(n, T, n_modes=min(5, T - 2), noise=1e-4, seed=seed, dtype=torch.float64)
    if batch:
        W = torch.stack([W * (1 + k) + k for k in range(batch)])
    if dtype.is_complex:
        W = torch.complex(W, torch.roll(W, 1, -1))
    return W.to(dtype)


def test_layouts_are_what_they_claim():
    W = layouts(data(100, 6, torch.float32))
    assert not snapshot_major(W["row-major"]) and snapshot_major(W["snapshot-major"])
    assert not snapshot_major(W["strided"])
    buf = chunk_buffer(W["snapshot-major"], 10)
    assert buf.shape == (10, 6) and buf.dtype == torch.float64 and snapshot_major(buf)
    assert not snapshot_major(chunk_buffer(W["row-major"], 10))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.complex64])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("chunk", [None, 7, 1000])
def test_deviation_gram_in_every_layout_matches_float64(dtype, batch, chunk):
    n, T = 2003, 9
    W0 = data(n, T, dtype, batch)
    Z = W0.to(torch.complex128 if dtype.is_complex else torch.float64)  # the stored numbers, exactly
    D = Z - Z[..., -1:]
    # float64 summation error bound (Higham 3.1): n eps64 |D|^H |D| entrywise
    bound_dd = n * EPS64 * (D.abs().mT @ D.abs())
    diffs = Z[..., 1:] - Z[..., :-1]
    for name, W in layouts(W0).items():
        acc = deviation_gram(W, chunk)
        assert acc.shape == W.shape[:-2] + (T, T), name
        dd = acc[..., : T - 1, : T - 1]
        assert bool(((dd - D[..., :-1].mH @ D[..., :-1]).abs() <= bound_dd[..., :-1, :-1]).all()), name
        dr, rr = acc[..., : T - 1, T - 1], acc[..., T - 1, T - 1]
        r = Z[..., -1]
        ref_dr = (D[..., :-1].mH @ r[..., None])[..., 0]
        assert bool(((dr - ref_dr).abs() <= n * EPS64 * (D[..., :-1].abs().mT @ r.abs()[..., None])[..., 0]).all())
        assert bool(((rr - (r.abs() ** 2).sum(-1)).abs() <= n * EPS64 * (r.abs() ** 2).sum(-1)).all())
        # what the solvers use: the Gram of W and of the successive differences
        G = assemble_gram(acc)
        scale = (Z.abs().mT @ Z.abs())
        assert bool(((G - Z.mH @ Z).abs() <= 8 * n * EPS64 * scale).all()), name
        Gd = difference_gram(acc)
        ref_d = diffs.mH @ diffs
        M = difference_matrix(T).abs()
        assert bool(((Gd - ref_d).abs() <= 4 * M.mT @ bound_dd @ M + 1e-300).all()), name


def test_deviation_gram_keeps_small_deviations_that_a_plain_gram_loses():
    # parameters of size ~1 that move by 1e-7: the deviations' Gram is resolved relative to
    # ||D||^2, so the differences' Gram keeps ~9 digits where W^T W - ... would keep none
    n, T = 5000, 6
    g = torch.Generator().manual_seed(0)
    base = torch.randn(n, 1, generator=g, dtype=torch.float64)
    steps = 1e-7 * torch.randn(n, T, generator=g, dtype=torch.float64).cumsum(1)
    W = (base + steps).float()  # stored float32: the moves are a few ulps
    Z = W.double()
    diffs = Z[:, 1:] - Z[:, :-1]
    ref = diffs.T @ diffs
    for name, Wl in layouts(W).items():
        got = difference_gram(deviation_gram(Wl, chunk_rows=333))
        assert float((got - ref).abs().max() / ref.abs().max()) < 1e-9, name
    plain = Z.T @ Z  # the same matrix through the full Gram: cancellation of ||W||^2 ~ n
    M = difference_matrix(T)
    assert float((M.T @ plain @ M - ref).abs().max() / ref.abs().max()) > 1e-6  # the control loses it


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("chunk", [None, 13])
def test_matmul_chunked_in_every_layout(dtype, k, chunk):
    n, T = 3001, 11
    W0 = data(n, T, dtype)
    g = torch.Generator().manual_seed(k)
    C = torch.randn(T, k, generator=g, dtype=torch.float64) * 1e3  # large, cancelling coefficients
    C[-1] -= C.sum(0)
    ref = W0.double() @ C
    # float64 products and sums, then one rounding to the output dtype
    out_eps = EPS64 if dtype == torch.float64 else EPS32
    bound = out_eps * ref.abs() + 4 * T * EPS64 * (W0.double().abs() @ C.abs())
    for name, W in layouts(W0).items():
        for Cv in (C, torch.complex(C, C).real):  # contiguous and strided coefficients
            out = matmul_chunked(W, Cv, chunk)
            assert out.shape == (n, k) and out.dtype == (torch.float32 if dtype in (torch.float16, torch.bfloat16)
                                                          else dtype)
            assert bool(((out.double() - ref).abs() <= bound).all()), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dmd_does_not_depend_on_the_layout(dtype):
    W0 = trajectory_like(40_000, 24, n_modes=6, noise=1e-5, seed=3, dtype=dtype)
    res = {name: kt.dmd(W, method="gram") for name, W in layouts(W0).items()}
    ref = kt.dmd(W0.double(), method="svd")
    for name, r in res.items():
        assert r.rank == res["row-major"].rank, name
        d = (r.eigs.cpu().to(torch.complex128)[:, None] - ref.eigs[None, :]).abs().min(1).values.max()
        assert float(d) < 1e-6, name
        fp = r.fixed_point().double()
        assert float((fp - ref.fixed_point()).norm() / ref.fixed_point().norm()) < 1e-6, name
    # the window's limit (extrapolation from the differences' Gram, the default KMP target)
    lims = {name: AffineModel(W, acc=deviation_gram(W)).extrapolate(warn=False).theta.double()
            for name, W in layouts(W0).items()}
    ref_lim = AffineModel(W0.double()).extrapolate(warn=False).theta  # float64 QR route
    for name, lim in lims.items():
        assert float((lim - ref_lim).norm() / ref_lim.norm()) < 1e-6, name
