"""The chunked float64 passes over W (koopman_tut.numerics.snapshots) in every memory layout.

A recorder's trajectory is snapshot-major (each snapshot contiguous: its (T, n) storage
seen as (n, T)); data built in memory is usually row-major. The passes pick a buffer in
W's own order, so each layout must give the same numbers, up to float64 summation.
"""
import numpy as np
import pytest
import torch

import koopman_tut as kt
from koopman_tut.numerics import cpu_routes, native, syrk
from koopman_tut.numerics.extrapolation import AffineModel
from koopman_tut.numerics.snapshots import (assemble_gram, chunk_buffer, deviation_from_steps, deviation_gram,
                                   difference_gram, difference_matrix, snapshot_major, step_gram)
from koopman_tut.numerics.matmul import matmul_chunked
from koopman_tut.training.systems import trajectory_like

EPS64 = torch.finfo(torch.float64).eps
EPS32 = torch.finfo(torch.float32).eps


def layouts(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same numbers (..., n, T) in four memory orders."""
    wide = torch.zeros(W.shape[:-1] + (2 * W.shape[-1],), dtype=W.dtype)
    wide[..., ::2] = W
    return {"row-major": W.contiguous(),
            "snapshot-major": W.mT.contiguous().mT,  # as recorded: storage (..., T, n)
            "strided": wide[..., ::2],  # neither: every other column of a wider array
            "snapshot-major strided": snapshot_major_strided(W)}


def snapshot_major_strided(W: torch.Tensor) -> torch.Tensor:
    """W's numbers as every other entry of each snapshot of a (..., T, 2n) storage."""
    S = torch.zeros(W.shape[:-2] + (W.shape[-1], 2 * W.shape[-2]), dtype=W.dtype)
    S[..., ::2] = W.mT
    return S[..., ::2].mT


def data(n, T, dtype, batch=None, seed=0):
    """Parameters of size ~1 drifting by ~1e-3 per snapshot: (n, T), or (batch, n, T)."""
    g = torch.Generator().manual_seed(seed)
    shape = ((batch,) if batch else ()) + (n,)
    W = torch.randn(shape + (1,), generator=g, dtype=torch.float64)
    W = W + 1e-3 * torch.randn(shape + (T,), generator=g, dtype=torch.float64).cumsum(-1)
    if dtype.is_complex:
        W = torch.complex(W, torch.roll(W, 1, -1))
    return W.to(dtype)


def test_layouts_are_what_they_claim():
    W = layouts(data(100, 6, torch.float32))
    assert not snapshot_major(W["row-major"]) and snapshot_major(W["snapshot-major"])
    assert not snapshot_major(W["strided"]) and snapshot_major(W["snapshot-major strided"])
    buf = chunk_buffer(W["snapshot-major"], 10)
    assert buf.shape == (10, 6) and buf.dtype == torch.float64 and snapshot_major(buf)
    assert not snapshot_major(chunk_buffer(W["row-major"], 10))
    # row-major rows of a power of two >= 256 bytes get 64 bytes of padding; others none
    for T, dtype, stride in [(64, torch.float32, 72), (32, torch.float64, 40), (16, torch.complex64, 20),
                             (63, torch.float32, 63), (48, torch.float32, 48), (16, torch.float32, 16)]:
        buf = chunk_buffer(torch.zeros(5, T, dtype=dtype), 10)
        assert buf.shape == (10, T) and buf.stride() == (stride, 1), (T, dtype)


@pytest.fixture(params=["other", "intel"])
def cpu_route(request, monkeypatch):
    """Both CPU routes of the float64 passes (numerics/cpu_routes.py) on every machine: the Gram's
    block rows from 64 snapshots and a multiply-and-sum for one combination, or (oneMKL on an
    Intel CPU) one GEMM below 128 snapshots, 1 MiB chunks and a GEMV."""
    monkeypatch.setattr(cpu_routes, "mkl_on_intel", lambda: request.param == "intel")
    return request.param


def test_the_cpu_routes_differ_where_they_should(monkeypatch):
    monkeypatch.setattr(native, "library", lambda: None)  # torch's routes (the C kernels: test_native.py)
    calls = []
    real_mv = torch.mv
    monkeypatch.setattr(torch, "mv", lambda *a, **k: calls.append(1) or real_mv(*a, **k))
    W = data(5000, 64, torch.float32)
    for intel, widths in ((False, (63, 16, 32, 40)), (True, (63, 64, 127, 40))):
        monkeypatch.setattr(cpu_routes, "mkl_on_intel", lambda intel=intel: intel)
        assert tuple(syrk.block_width(T) for T in (63, 64, 127, 130)) == widths
        calls.clear()
        matmul_chunked(W, torch.ones(64, 1, dtype=torch.float64))
        assert len(calls) == (3 if intel else 0)  # 5000 rows in chunks of 2048: a GEMV each
        calls.clear()
        matmul_chunked(W.mT.contiguous().mT, torch.ones(64, 1, dtype=torch.float64))
        assert not calls  # snapshot-major: a GEMM on either route


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.complex64])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("chunk", [None, 7, 1000])
# T >= 64: the Gram by block rows of 8 ceil(T / 32) (numerics/syrk.py): 64 = 4 x 16, the last block narrower in
# 65 = 2 x 24 + 17, 81 = 3 x 24 + 9, 90 = 3 x 24 + 18; T = 32, 64: row-major chunks padded (chunk_buffer)
@pytest.mark.parametrize("n, T", [(2003, 9), (5, 2), (1, 3), (40, 32), (70, 64), (50, 65), (300, 90), (40, 81)])
def test_deviation_gram_in_every_layout_matches_float64(dtype, batch, chunk, n, T, cpu_route):
    W0 = data(n, T, dtype, batch)
    Z = W0.to(torch.complex128 if dtype.is_complex else torch.float64)  # the stored numbers, exactly
    D = Z - Z[..., -1:]
    B = torch.cat([D[..., :-1], Z[..., -1:]], -1)  # what acc is the Gram of: [w_t - r for t < T-1, r]
    u = EPS64 / 2  # float64 rounding, whatever the order of summation: (n + 2) u |B|^H |B|
    bound = (n + 2) * u * (B.abs().mT @ B.abs())
    diffs = Z[..., 1:] - Z[..., :-1]
    for name, W in layouts(W0).items():
        acc = deviation_gram(W, chunk)
        assert acc.shape == W.shape[:-2] + (T, T), name
        assert torch.equal(acc, acc.mH), name  # Hermitian to the bit: one triangle, mirrored
        assert bool(((acc - B.mH @ B).abs() <= bound).all()), name  # every entry, the last row too
        # what the solvers use: the Gram of W and of the successive differences
        G = assemble_gram(acc)
        assert bool(((G - Z.mH @ Z).abs() <= 8 * (n + 2) * u * (Z.abs().mT @ Z.abs())).all()), name
        Gd = difference_gram(acc)
        M = difference_matrix(T).abs()
        dd_bound = bound.clone()
        dd_bound[..., -1, :] = dd_bound[..., :, -1] = 0  # the r row/column is not part of D^H D
        assert bool(((Gd - diffs.mH @ diffs).abs() <= 4 * M.mT @ dd_bound @ M + 1e-300).all()), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.complex64])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("chunk", [None, 7])
# T = 31, 63: step_gram's buffer [w_0 ... w_{T-1}, 0] is a power of two wide, so padded
@pytest.mark.parametrize("n, T", [(2003, 9), (5, 2), (40, 31), (70, 63), (70, 64), (50, 65), (300, 90)])
def test_step_gram_in_every_layout_matches_float64(dtype, batch, chunk, n, T, cpu_route):
    W0 = data(n, T, dtype, batch)
    Z = W0.to(torch.complex128 if dtype.is_complex else torch.float64)
    S = torch.cat([Z[..., 1:] - Z[..., :-1], Z[..., -1:]], -1)  # [steps, r]
    u = EPS64 / 2  # + 2u: a float64 step of float64 data is rounded once (float32/16 ones are exact)
    bound = (n + 4) * u * (S.abs().mT @ S.abs())
    L = torch.tril(torch.ones(T - 1, T - 1, dtype=torch.float64))
    SL = S.abs()[..., : T - 1] @ L  # |deviations| <= |steps| summed
    D = Z - Z[..., -1:]
    B = torch.cat([D[..., :-1], Z[..., -1:]], -1)
    dev_bound = 4 * (n + T + 4) * u * (torch.cat([SL, S.abs()[..., -1:]], -1).mT @ torch.cat([SL, S.abs()[..., -1:]], -1))
    for name, W in layouts(W0).items():
        sacc = step_gram(W, chunk)
        assert torch.equal(sacc, sacc.mH), name
        assert not torch.signbit(torch.view_as_real(sacc) if sacc.is_complex() else sacc)[sacc == 0].any(), name
        assert bool(((sacc - S.mH @ S).abs() <= bound).all()), name
        assert bool(((deviation_from_steps(sacc) - B.mH @ B).abs() <= dev_bound + 1e-300).all()), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_step_gram_gives_an_exact_zero_as_plus_zero(dtype):
    # a window that ends at 0: every product with r is 0, and the Gram holds +0.0 there, as one
    # float64 sum of products gives it (step_gram takes the steps against -r and flips the sign back)
    W = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=dtype)
    for name, Wl in layouts(W).items():
        G = step_gram(Wl)
        parts = torch.view_as_real(G) if G.is_complex() else G
        assert (parts == 0).any() and not torch.signbit(parts).any(), name


def test_the_steps_gram_resolves_what_the_deviations_gram_cannot():
    # a warm window: the deviations from the last snapshot are ~40 steps long, so the Gram of
    # the deviations resolves the steps' singular values only to ~sqrt(eps64) ||D||_2
    from koopman_tut.training.systems import quadratic_sgd
    run = quadratic_sgd(np.linspace(0.1, 10, 8), 0.01, warmup=100, n_steps=80, dim=3000)
    W = run.traj.snapshots
    steps = W.diff(dim=1)
    s = torch.linalg.svdvals(steps)
    for name, G in {"steps": step_gram(W)[:-1, :-1], "deviations": difference_gram(deviation_gram(W))}.items():
        got = torch.linalg.eigvalsh(G).flip(0).clamp_min(0).sqrt()
        resolved = (got - s).abs() <= 1e-3 * s
        assert int(resolved.sum()) == (7 if name == "steps" else 6), name  # s_7 = 3.9e-7 s_1, s_8 = 4e-9 s_1
    # the affine model sees all 8 modes on both routes, rounding kept as none: what the steps'
    # Gram cannot resolve (the 8th), one more pass does (numerics/refine.py)
    ranks = {m: kt.koopman(run.traj, method=m).affine.rank for m in ("gram", "svd")}
    assert ranks == {"gram": 8, "svd": 8}


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
def test_matmul_chunked_in_every_layout(dtype, k, chunk, cpu_route):
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


def test_data_that_requires_grad_is_read_not_differentiated():
    # parameters stacked by hand, still attached to the model: every pass reads them
    lin = torch.nn.Linear(50, 40)
    W = torch.stack([lin.weight.flatten() * 0.9**t + 0.1 for t in range(6)], 1)  # (2000, 6), requires grad
    assert W.requires_grad
    ref = W.detach().double()
    for Wl in (W, W.mT.contiguous().mT):
        res = kt.dmd(Wl, method="gram")
        for out in (res.fixed_point(), res.predict(2.0),
                    AffineModel(Wl, acc=deviation_gram(Wl)).extrapolate(warn=False).theta,
                    matmul_chunked(Wl, torch.ones(6, 1, dtype=torch.float64))):
            assert not out.requires_grad and bool(torch.isfinite(out).all())
        good = kt.dmd(ref, method="svd")
        assert float((res.fixed_point().double() - good.fixed_point()).norm() / good.fixed_point().norm()) < 1e-6


def test_affine_model_refuses_complex_snapshots():
    W = data(50, 6, torch.complex64)
    with pytest.raises(TypeError, match="W must be real"):
        AffineModel(W)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_snapshots_are_refused_with_what_to_do(layout):
    W = data(40, 6, torch.float32)
    sparse = W.to_sparse() if layout == "coo" else W.to_sparse_csr()
    for call in (kt.dmd, AffineModel, lambda w: kt.dmd(w, method="gram")):
        with pytest.raises(TypeError, match=r"W must be a dense \(strided\) tensor, got layout torch.sparse"
                                            r".*W.to_dense\(\)"):
            call(sparse)
    assert torch.equal(sparse.to_dense(), W)  # what the message says to do


def test_one_dimensional_snapshots_say_the_shape_expected():
    for W in (torch.randn(40), torch.randn(40).numpy()):
        for call in (kt.dmd, AffineModel):
            with pytest.raises(ValueError, match=r"W must be 2-D \(n_features, n_snapshots\).*got 1 dimension\(s\), "
                                                 r"shape \(40,\)"):
                call(W)


@pytest.mark.parametrize("dtype, c_dtype", [(torch.float32, torch.float64), (torch.float64, torch.float64),
                                            (torch.complex128, torch.float64), (torch.float64, torch.complex128)])
@pytest.mark.parametrize("T, q", [(9, 5), (100, 90)])
def test_the_preconditioned_step_gram_in_every_layout(dtype, c_dtype, T, q):
    # the second pass's Gram of S C (numerics/refine.py): the same numbers from every memory
    # order and chunk size, within float64 rounding of (|S| |C|)^H (|S| |C|)
    from koopman_tut.numerics.refine import preconditioned_step_gram
    g = torch.Generator().manual_seed(3)
    n = 1000
    W0 = torch.randn(n, T, generator=g, dtype=torch.float64).cumsum(1)
    W0 = (torch.complex(W0, W0.flip(0)) if dtype.is_complex else W0).to(dtype)
    C = torch.randn(T - 1, q, generator=g, dtype=c_dtype)  # complex C with real W: the steps made complex
    wide = torch.complex128 if dtype.is_complex or c_dtype.is_complex else torch.float64
    Y = torch.diff(W0.to(wide), dim=1) @ C.to(wide)
    A = torch.diff(W0.abs().double(), dim=1).abs() + 2 * W0.abs().double()[:, 1:]  # >= |steps|
    bound = 4 * (n + T + 4) * EPS64 * ((A @ C.abs()).mT @ (A @ C.abs()))
    for name, W in layouts(W0).items():
        for chunk in (None, 7):
            G = preconditioned_step_gram(W, chunk, C=C)
            assert G.shape == (q, q) and bool(((G - Y.mH @ Y).abs() <= bound).all()), (name, chunk)
            assert torch.equal(G, G.mH), (name, chunk)
