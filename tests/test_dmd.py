"""koopman_tut.numerics.dmd against closed-form systems and PyDMD."""
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings, strategies as st
from pydmd import DMD

import koopman_tut as kt
from koopman_tut import systems
from koopman_tut.training.systems import linear_system, quadratic_gd, trajectory_like


def match(a, b):
    """Max distance from each of a to its nearest in b, and b to a (sets of eigenvalues)."""
    a, b = np.asarray(a, complex), np.asarray(b, complex)
    d = np.abs(a[:, None] - b[None, :])
    return max(d.min(1).max(), d.min(0).max())


# --------------------------------------------------------------- closed-form oracles
@pytest.mark.parametrize("method", ["svd", "auto"])
def test_linear_system_eigenvalues_and_reconstruction(method):
    eigs = [0.99, 0.95, 0.9, 0.8, 0.7, 0.5, 0.2, -0.3, -0.6]
    W, _ = linear_system(eigs, n_steps=14, seed=1)
    res = kt.dmd(W, method=method)
    assert res.rank == len(eigs)
    assert match(res.eigs.numpy(), eigs) < 1e-8
    np.testing.assert_allclose(res.reconstruct().numpy(), W, atol=1e-8 * np.abs(W).max())
    assert res.eigs.dtype == torch.complex128 and res.singular_values.dtype == torch.float64


def test_linear_system_embedded_in_more_features_gram_route():
    eigs = [0.97, 0.9, 0.75, 0.5]
    W, _ = linear_system(eigs, n_steps=10, dim=300, seed=2)
    res = kt.dmd(W, method="gram")
    assert res.rank == 4
    assert match(res.eigs.numpy(), eigs) < 1e-6
    np.testing.assert_allclose(res.reconstruct().numpy(), W, atol=1e-6 * np.abs(W).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_quadratic_gradient_descent_spectrum_and_fixed_point(seed):
    k = 8
    q = quadratic_gd(np.linspace(0.5, 4.0, k), lr=0.2, n_steps=k + 3, dim=20, seed=seed)  # k+4 snapshots
    res = kt.dmd(q.W)
    assert res.rank == k + 1
    assert match(res.eigs.numpy(), q.eigs) < 1e-6
    assert abs(res.eigs[res.closest(1.0)] - 1) < 1e-9
    np.testing.assert_allclose(res.fixed_point().numpy(), q.x_star, atol=1e-7)
    # the fixed point is predicted far ahead too
    np.testing.assert_allclose(res.predict(500).numpy(), q.x_star, atol=1e-6)


def test_quadratic_closely_spaced_hessian_eigenvalues():
    h = np.array([1.0, 1.02, 1.05, 2.0, 2.1, 3.0])
    q = quadratic_gd(h, lr=0.25, n_steps=len(h) + 3, dim=16, seed=3)
    res = kt.dmd(q.W)
    assert match(res.eigs.numpy(), q.eigs) < 1e-6


# --------------------------------------------------------------- PyDMD as oracle
def _random(n, T, seed):
    return np.random.default_rng(seed).standard_normal((n, T))


def _trajectory(n, T, seed):
    return trajectory_like(n, T, seed=seed, dtype=torch.float64).numpy()


@pytest.mark.parametrize("data", [_random, _trajectory])
@pytest.mark.parametrize("svd_rank", [-1, 0, 0.99, 6])
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_against_pydmd(data, svd_rank, method):
    W = data(3000, 20, seed=4)
    res = kt.dmd(W, svd_rank=svd_rank, method=method)
    ref = DMD(svd_rank=svd_rank, exact=True).fit(W)
    assert res.rank == len(ref.eigs)
    assert match(res.eigs.numpy(), ref.eigs) < 1e-7
    # modes equal up to a complex scale, pairing each with PyDMD's by eigenvalue
    modes = res.modes.numpy()
    for i, lam in enumerate(res.eigs.numpy()):
        j = int(np.argmin(np.abs(ref.eigs - lam)))
        a, b = modes[:, i], ref.modes[:, j]
        scale = np.vdot(a, b) / np.vdot(a, a)
        assert np.linalg.norm(scale * a - b) <= 1e-6 * np.linalg.norm(b)
    np.testing.assert_allclose(res.reconstruct().numpy(), ref.reconstructed_data.real,
                               atol=1e-7 * np.abs(W).max())


@pytest.mark.parametrize("n", [5000, 20000])
def test_float64_modes_finer_than_the_gram_resolves_are_kept(n):
    # a float64 window whose modes have nearly decayed: X's singular values fall below the Gram's
    # floor (1.5e-8 of the largest), where the Gram route dropped two modes (fixed point 6e-5 .. 1e-4
    # off); it now reads W once more and keeps them, as the SVD route does
    W, x_star = systems.affine_window(n, 32, [0.975, 0.96, 0.945, 0.93, 0.915, 0.9])
    svd, gram = kt.dmd(W, method="svd"), kt.dmd(W, method="gram")
    assert gram.rank == svd.rank
    # both backward stable to ~eps64 s_max in X: an eigenvalue moves by up to ~eps64 s_max / s_r
    sv = svd.singular_values
    assert match(gram.eigs.numpy(), svd.eigs.numpy()) < 100 * np.finfo(np.float64).eps * float(sv[0] / sv[-1])
    assert float((gram.fixed_point() - x_star).norm() / x_star.norm()) < 1e-7


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_the_optimal_threshold_takes_the_true_median(method):
    # 6 singular values (an even count): the median is the mean of the middle two (32, as numpy's and
    # PyDMD's), not torch's lower one (23), which kept 3 modes where PyDMD keeps 1
    s = torch.tensor([68.0, 45.0, 41.0, 23.0, 9.0, 0.08], dtype=torch.float64)
    W = torch.zeros(40, 7, dtype=torch.float64)
    W[:6, :6] = torch.diag(s)
    W[:, 6] = torch.linspace(0.1, 1, 40, dtype=torch.float64)
    res = kt.dmd(W, svd_rank=0, method=method)
    assert res.rank == len(DMD(svd_rank=0, exact=True).fit(W.numpy()).eigs) == 1


EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)


def gram_bound(s, T, n=30_000):
    """Error the Gram route allows against a float64 SVD of the same data (eigenvalues, fixed
    point). It decomposes X^H X + E exactly, where E comes from float64 summation of exact
    products (about sqrt(n) eps64 ||G|| with rounding errors of random sign, Higham 2002 s2.8)
    and from the backward-stable eigensolver (about T eps64 ||G||); a direction with singular
    value s_r then moves by ~||E|| / s_r^2. Results return in complex64 for float32 data
    (eps32 rounding)."""
    s = np.asarray(s, dtype=np.float64)
    return (T + np.sqrt(n)) * EPS64 * (s[0] / s[-1]) ** 2 + 4 * EPS32


def test_float32_trajectory_gram_route_matches_float64_reference():
    # fixed point + 6 decaying modes + minibatch-like noise; rank 7 holds the dynamics.
    # sigma_7 / ||W|| ~ 7e-5: a float32 accumulation of the Gram cannot resolve it (the
    # bug this guards against gave 1.3e-2 on some BLAS); float64 accumulation must.
    W = trajectory_like(200_000, 40, n_modes=6, noise=1e-6, seed=5)  # float32
    res = kt.dmd(W, svd_rank=7, method="gram")
    ref = kt.dmd(W.double(), svd_rank=7, method="svd")
    assert res.eigs.dtype == torch.complex64 and res.rank == ref.rank == 7
    bound = gram_bound(ref.singular_values, 40, n=200_000)
    eig_err = match(res.eigs.numpy(), ref.eigs.numpy())
    fp, fp_ref = res.fixed_point().double(), ref.fixed_point()
    fp_err = float((fp - fp_ref).norm() / fp_ref.norm())
    assert eig_err < bound and fp_err < bound
    assert eig_err < 1e-6 and fp_err < 1e-6  # the accuracy promised in the docs, inside the bound
    # untruncated: the numerical rank of the float32 data is the same on both routes
    full, full_svd = kt.dmd(W, method="gram"), kt.dmd(W, method="svd")
    assert full.rank == full_svd.rank
    assert match(full.eigs.numpy(), full_svd.eigs.numpy()) < gram_bound(full_svd.singular_values, 40, n=200_000)


def _eig_error(a, b):
    return match(a.eigs.numpy(), b.eigs.numpy())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(4, 30), chunk=st.integers(1, 5000),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_property_gram_does_not_depend_on_chunk_rows(seed, T, chunk, dtype):
    W = trajectory_like(20_000, T, n_modes=min(6, T - 2), noise=1e-5, seed=seed, dtype=dtype)
    a = kt.dmd(W, svd_rank=min(6, T - 2) + 1, method="gram")
    b = kt.dmd(W, svd_rank=min(6, T - 2) + 1, method="gram", chunk_rows=chunk)
    assert a.rank == b.rank
    assert _eig_error(a, b) < gram_bound(a.singular_values, T, n=20_000)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(4, 30), method=st.sampled_from(["gram", "svd"]))
def test_property_thread_count_does_not_matter(seed, T, method):
    W = trajectory_like(60_000, T, n_modes=min(6, T - 2), noise=1e-5, seed=seed)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kt.dmd(W, method=method)
        torch.set_num_threads(2)
        two = kt.dmd(W, method=method)
    finally:
        torch.set_num_threads(before)
    assert one.rank == two.rank
    assert _eig_error(one, two) < gram_bound(one.singular_values, T, n=60_000)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(4, 25), log2_scale=st.integers(-20, 20),
       scale=st.floats(0.3, 3.0), method=st.sampled_from(["gram", "svd"]))
def test_property_scaling_the_data_does_not_change_the_dynamics(seed, T, log2_scale, scale, method):
    W = trajectory_like(20_000, T, n_modes=min(5, T - 2), noise=1e-5, seed=seed, dtype=torch.float64)
    res = kt.dmd(W, method=method)
    pow2 = kt.dmd(W * 2.0**log2_scale, method=method)  # exact in floating point
    other = kt.dmd(W * scale, method=method)
    bound = gram_bound(res.singular_values, T, n=20_000)
    assert pow2.rank == res.rank and _eig_error(res, pow2) < bound
    assert other.rank == res.rank and _eig_error(res, other) < bound
    fp, fp2 = res.fixed_point(), pow2.fixed_point() / 2.0**log2_scale
    assert float((fp - fp2).norm() / fp.norm()) < bound


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(4, 40), n_modes=st.integers(1, 10),
       noise=st.sampled_from([0.0, 1e-7, 1e-5, 1e-3]), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_property_gram_and_svd_routes_agree_on_trajectories(seed, T, n_modes, noise, dtype):
    n_modes = min(n_modes, T - 2)
    W = trajectory_like(30_000, T, n_modes=n_modes, noise=noise, seed=seed, dtype=dtype)
    g, s = kt.dmd(W, method="gram"), kt.dmd(W, method="svd")
    if dtype == torch.float32:  # the rank tolerance is the data's own: both routes agree on it
        assert g.rank == s.rank
    r = min(g.rank, s.rank)
    g, s = kt.dmd(W, svd_rank=r, method="gram"), kt.dmd(W, svd_rank=r, method="svd")
    bound = gram_bound(s.singular_values, T)
    assert _eig_error(g, s) < bound
    fg, fs = g.fixed_point().double(), s.fixed_point().double()
    assert float((fg - fs).norm() / fs.norm()) < bound * 10


def test_half_precision_input_is_not_copied():
    W = trajectory_like(300_000, 20, n_modes=4, noise=1e-4, seed=1).half()
    res = kt.dmd(W, method="gram")
    assert res.W.dtype == torch.float16 and res.W.data_ptr() == W.data_ptr()
    ref = kt.dmd(W, method="svd")  # float64 SVD of the same float16 numbers, same rank rule
    assert res.rank == ref.rank >= 2
    assert _eig_error(res, ref) < gram_bound(ref.singular_values, 20, n=300_000)
    fp = res.fixed_point()
    assert fp.dtype == torch.float32 and fp.shape == (300_000,)
    assert float((fp.double() - ref.fixed_point()).norm() / ref.fixed_point().norm()) < 1e-6


# --------------------------------------------------------------- rank handling
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_rank_deficient_trajectory_gives_finite_results(method):
    q = quadratic_gd([1.0, 2.0], lr=0.3, n_steps=200, dim=10, seed=0)  # converges: late columns repeat
    res = kt.dmd(q.W, method=method)
    assert res.rank <= 3
    for x in (res.eigs, res.amplitudes, res.singular_values, res.modes):
        assert torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all()
    np.testing.assert_allclose(res.fixed_point().numpy(), q.x_star, atol=1e-6)


def test_constant_trajectory_has_one_eigenvalue_one():
    W = np.tile(np.arange(1.0, 6.0)[:, None], (1, 7))
    res = kt.dmd(W)
    assert res.rank == 1 and abs(complex(res.eigs[0]) - 1) < 1e-12
    np.testing.assert_allclose(res.fixed_point().numpy(), np.arange(1.0, 6.0))


def test_integer_rank_is_capped_by_numerical_rank():
    W, _ = linear_system([0.9, 0.5, 0.1], n_steps=10, dim=30, seed=0)
    assert kt.dmd(W, svd_rank=8).rank == 3


# --------------------------------------------------------------- API
def test_mode_subset_predict_and_lookups():
    W = _trajectory(500, 15, seed=6)
    res = kt.dmd(W)
    np.testing.assert_allclose(res.mode(2).numpy(), res.modes[:, 2].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.mode([0, 3]).numpy(), res.modes[:, [0, 3]].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.predict(4).numpy(), res.reconstruct()[:, 4].numpy(), atol=1e-12)
    assert res.predict([0, 1, 2]).shape == (500, 3)
    k = res.closest(0.5)
    assert np.argmin(np.abs(res.eigs.numpy() - 0.5)) == k
    near = res.near(1.0, radius=0.2)
    assert all(abs(complex(res.eigs[i]) - 1) <= 0.2 for i in near)
    full = res.predict(0, indices=range(res.rank))
    np.testing.assert_allclose(full.numpy(), res.predict(0).numpy())


def test_numpy_and_torch_inputs_agree():
    W = _random(400, 12, seed=7)
    a, b = kt.dmd(W), kt.dmd(torch.from_numpy(W))
    np.testing.assert_allclose(a.eigs.numpy(), b.eigs.numpy())


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_batched_equals_separate(method):
    Ws = torch.stack([torch.from_numpy(_trajectory(800, 12, seed=s)) for s in range(3)])
    batch = kt.dmd(Ws, method=method)
    assert isinstance(batch, kt.DMDBatch) and len(batch) == 3
    for i in range(3):
        one = kt.dmd(Ws[i], method=method)
        assert match(batch[i].eigs.numpy(), one.eigs.numpy()) < 1e-8
        np.testing.assert_allclose(batch[i].fixed_point().numpy(), one.fixed_point().numpy(), atol=1e-8)


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize("W, err, words", [
    (np.zeros((5, 1)), ValueError, "at least 2 snapshots"),
    (np.zeros(5), ValueError, "dimension"),
    (np.zeros((2, 3, 4, 5)), ValueError, "dimension"),
    (np.arange(20).reshape(4, 5), TypeError, "floating"),
    (torch.arange(20).reshape(4, 5), TypeError, "floating"),
    ([[1.0, 2.0]], TypeError, "torch.Tensor or numpy.ndarray"),
    (np.zeros((4, 5)), ValueError, "rank 0"),
])
def test_bad_input_is_named(W, err, words):
    with pytest.raises(err, match=words):
        kt.dmd(W)


def test_a_gram_that_would_not_fit_is_refused_naming_w_s_shape():
    """W passed as (snapshots, features): 2 features, 2,000,000 snapshots, a (T, T) Gram of 32 TB. Every
    route that would form it refuses before allocating (torch's allocator message, or the machine's memory,
    before); "auto" takes the SVD route for wide W."""
    from koopman_tut.numerics.extrapolation import AffineModel
    from koopman_tut.numerics.snapshots import deviation_gram, step_gram
    W = torch.zeros(2, 2_000_000)
    words = r"^{0} has shape \(2, 2000000\): 2,000,000 snapshots \(columns\) of 2 features \(rows\).* pass {0}.T"
    for call, name in ((lambda: kt.dmd(W, method="gram"), "W"), (lambda: deviation_gram(W), "W"),
                       (lambda: step_gram(W), "W"), (lambda: AffineModel(W, 0, method="gram"), "W"),
                       (lambda: kt.estimate_limit(W, method="koopman"), "traj_or_W")):
        with pytest.raises(MemoryError, match=words.format(name)):
            call()
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(3, 1_500_000, generator=g, dtype=torch.float64)  # 4.5M entries: above the size rule
    assert torch.equal(kt.dmd(wide).eigs, kt.dmd(wide, method="svd").eigs)


@pytest.mark.parametrize("method", ["svd", "gram"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_input(method, bad):
    W = _random(50, 6, 0)
    W[7, 3] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        kt.dmd(W, method=method)


@pytest.mark.parametrize("svd_rank", [-2, 1.5, "3", None, True, 1.0, 2.0])
def test_invalid_svd_rank(svd_rank):
    with pytest.raises(ValueError, match="svd_rank"):
        kt.dmd(_random(10, 5, 0), svd_rank=svd_rank)


def test_invalid_method():
    with pytest.raises(ValueError, match="method"):
        kt.dmd(_random(10, 5, 0), method="qr")


# --------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300), T=st.integers(2, 25), dtype=st.sampled_from([torch.float32, torch.float64]),
       svd_rank=st.sampled_from([-1, 0, 0.9, 1, 3]), method=st.sampled_from(["svd", "gram"]),
       seed=st.integers(0, 10_000))
def test_property_any_shape_gives_finite_consistent_result(n, T, dtype, svd_rank, method, seed):
    W = torch.from_numpy(_random(n, T, seed)).to(dtype)
    res = kt.dmd(W, svd_rank=svd_rank, method=method)
    r = res.rank
    assert 1 <= r <= min(n, T - 1)
    assert res.eigs.shape == (r,) and res.amplitudes.shape == (r,) and res.singular_values.shape == (r,)
    assert res.modes.shape == (n, r) and res.reconstruct().shape == (n, T)
    assert res.eigs.dtype == (torch.complex64 if dtype == torch.float32 else torch.complex128)
    assert torch.isfinite(torch.view_as_real(res.modes)).all() and torch.isfinite(res.reconstruct()).all()
    assert torch.all(res.singular_values[:-1] >= res.singular_values[1:])


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 6), extra=st.integers(0, 40), seed=st.integers(0, 10_000),
       dtype=st.sampled_from([torch.float32, torch.float64]))
@example(d=5, extra=0, seed=240, dtype=torch.float64)  # resolvable in float64 (see the assume below)
def test_property_linear_systems_are_recovered(d, extra, seed, dtype):
    rng = np.random.default_rng(seed)
    eigs = np.sort(rng.uniform(0.3, 1.0, d))[::-1]
    eigs = eigs[np.r_[True, np.diff(eigs) < -0.05]]  # well separated
    W, _ = linear_system(eigs, n_steps=len(eigs) + 4, dim=len(eigs) + extra, seed=seed)
    tol = 1e-7 if dtype == torch.float64 else 2e-3
    # a mode is recoverable from data stored in `dtype` only if its singular value stands clear
    # of the storage's rounding: eigenvalue errors go as eps / (s_min / s_max) (first order),
    # which must stay within tol / 10 (draws with a mode decayed below that, such as
    # d=5, extra=0, seed=240 in float32 at s_5 = 8e-7 s_1, cannot be recovered by any method)
    s = np.linalg.svd(W[:, :-1], compute_uv=False)
    assume(s[len(eigs) - 1] / s[0] > 10 * torch.finfo(dtype).eps / tol)
    W = torch.from_numpy(W).to(dtype)
    res = kt.dmd(W, method="svd")  # what method="auto" picks at this size
    assert match(res.eigs.numpy(), eigs) < tol
    assert torch.allclose(res.reconstruct(), W, atol=tol * float(W.abs().max()) * 10)


@settings(max_examples=30, deadline=None)
@given(T=st.integers(3, 20), ratio=st.integers(4, 50), seed=st.integers(0, 10_000),
       dtype=st.sampled_from([torch.float32, torch.float64]), svd_rank=st.sampled_from([-1, 2, 0.95]))
def test_property_gram_and_svd_routes_agree_on_well_conditioned_data(T, ratio, seed, dtype, svd_rank):
    W = torch.from_numpy(_random(T * ratio, T, seed)).to(dtype)
    g, s = kt.dmd(W, svd_rank=svd_rank, method="gram"), kt.dmd(W, svd_rank=svd_rank, method="svd")
    assert g.rank == s.rank
    tol = gram_bound(s.singular_values, T)
    assert match(g.eigs.numpy(), s.eigs.numpy()) < tol
    assert torch.allclose(g.reconstruct(), s.reconstruct(), atol=tol * 10 * float(W.abs().max()))


# --------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_cuda_matches_cpu(method):
    W = trajectory_like(50_000, 24, seed=8, dtype=torch.float32)
    cpu, gpu = kt.dmd(W, method=method), kt.dmd(W.cuda(), method=method)
    assert gpu.eigs.is_cuda and gpu.modes.is_cuda and gpu.fixed_point().is_cuda
    assert match(cpu.eigs.numpy(), gpu.eigs.cpu().numpy()) < 1e-4
    fp_c, fp_g = cpu.fixed_point(), gpu.fixed_point().cpu()
    assert float((fp_c - fp_g).norm() / fp_c.norm()) < 1e-4
    batch = kt.dmd(torch.stack([W, W]).cuda(), method=method)
    assert match(batch[1].eigs.cpu().numpy(), gpu.eigs.cpu().numpy()) < 1e-6


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_optimal_hard_threshold_with_fewer_features_than_snapshots(method):
    rng = np.random.default_rng(11)  # wide (X is 8 x 29): rank-3 signal plus noise
    W = 10 * rng.standard_normal((8, 3)) @ rng.standard_normal((3, 30)) + rng.standard_normal((8, 30))
    res = kt.dmd(W, svd_rank=0, method=method)
    ref = DMD(svd_rank=0, exact=True).fit(W)
    assert res.rank == len(ref.eigs)


def test_powers_of_a_zero_eigenvalue():
    from koopman_tut.numerics.dmd import powers

    p = powers(torch.tensor([0j, 0.5 + 0j, -1 + 0j]), [0, 1, 2])
    expect = torch.tensor([[1, 0, 0], [1, 0.5, 0.25], [1, -1, 1]], dtype=torch.complex128)
    assert torch.allclose(p, expect, atol=1e-15)


def test_nan_message_names_the_entry_not_a_chunk():
    W = _random(20, 6, 0)
    W[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"row=7, column=3") as e:
        kt.dmd(W, method="gram")
    assert "65536" not in str(e.value)
    B = np.stack([_random(20, 6, 1), W])
    with pytest.raises(ValueError, match=r"batch=1, row=7, column=3"):
        kt.dmd(B, method="svd")


def test_float_svd_rank_of_one_or_more_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="PyDMD reads it as no truncation"):
        kt.dmd(_random(10, 5, 0), svd_rank=1.0)


@pytest.mark.parametrize("chunk_rows", [-5, 0, 2.5, True])
def test_invalid_chunk_rows(chunk_rows):
    with pytest.raises(ValueError, match="chunk_rows"):
        kt.dmd(_random(10, 5, 0), method="gram", chunk_rows=chunk_rows)


def test_batch_is_a_sequence_type():
    batch = kt.dmd(torch.from_numpy(np.stack([_random(30, 6, s) for s in range(2)])))
    assert isinstance(batch, kt.DMDBatch) and not isinstance(batch, list)
    assert [r.rank for r in batch] == [r.rank for r in batch.results] and len(batch.eigs) == 2


# --------------------------------------------------------------- data the solver cannot use, said plainly
def _affine(x0, T=20):
    """x(t+1) = xs + A (x(t) - xs), A = diag(0.9, 0.5, 0.7, 0.3, 0.8, 0.6): (6, T) float64."""
    A = torch.tensor([0.9, 0.5, 0.7, 0.3, 0.8, 0.6], dtype=torch.float64)
    xs, cols = torch.arange(1.0, 7.0, dtype=torch.float64), [x0]
    for _ in range(T - 1):
        cols.append(xs + A * (cols[-1] - xs))
    return torch.stack(cols, 1)


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_a_zero_first_snapshot_warns_that_the_amplitudes_are_zero(method):
    W = _affine(torch.zeros(6, dtype=torch.float64))
    with pytest.warns(kt.ZeroStartWarning, match=r"first snapshot W\[:, 0\] is zero"):
        res = kt.dmd(W, method=method)
    # what the warning is about: exact DMD fits them to w_0 (zero, to the rounding of a route's solve)
    assert float(res.amplitudes.abs().max()) <= 1e-15 * float(W.norm())
    with warnings.catch_warnings():
        warnings.simplefilter("error", kt.ZeroStartWarning)  # the controls: a nonzero start is silent
        later = kt.dmd(W[:, 1:], method=method)
        kt.dmd(_affine(torch.full((6,), 1e-3, dtype=torch.float64)), method=method)
        for scale in ((1e-300, 1e200) if method == "svd" else (1e-140, 1e150)):  # norms once under/overflowed
            kt.dmd(_affine(torch.ones(6, dtype=torch.float64)) * scale, method=method)
        g = torch.Generator().manual_seed(0)  # snapshots of nearly equal norm in half precision, many of them
        walk = (torch.randn(400, 1, generator=g) + 0.01 * torch.randn(400, 60, generator=g).cumsum(1))
        for dtype in (torch.bfloat16, torch.float16):  # a bound of T eps ||W||_F called every such start zero
            assert float(kt.dmd(walk.to(dtype), method=method).amplitudes.abs().max()) > 1
    assert float(later.amplitudes.abs().max()) > 0


@pytest.mark.parametrize("scale, method", [(1e-200, "gram"), (1e-310, "svd"), (1e-310, "gram"),
                                           (1e-152, "gram"), (1e-160, "gram")])  # squares subnormal: digits lost
def test_data_too_small_for_float64_is_named_not_called_zero(scale, method):
    W = _affine(torch.ones(6, dtype=torch.float64)) * scale  # an MKL assert (subnormal) or "all zeros" before
    with pytest.raises(ValueError, match=r"too small for float64 DMD .*power of two") as info:
        kt.dmd(W, method=method)
    power = int(re.search(r"torch.ldexp\(W, torch.tensor\((\d+)\)\)", str(info.value)).group(1))
    scaled = torch.ldexp(W, torch.tensor(power))
    res = kt.dmd(scaled, method=method)  # rescaled as the message says, it decomposes (the control)
    assert 0.5 <= float(scaled.abs().max()) < 1 and res.rank == kt.dmd(W / scale, method=method).rank


def test_too_many_low_precision_snapshots_are_named_as_such():
    W = torch.randn(300, 130, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    for method in ("svd", "gram"):  # was "too small for float64" (and before that "all snapshots are zero")
        with pytest.raises(ValueError, match=r"130 snapshots in torch.bfloat16 leave no direction above rounding"):
            kt.dmd(W, method=method)
    assert kt.dmd(W.float()).rank > 0


def test_a_zero_x_with_a_nonzero_last_snapshot_is_not_called_all_zero():
    W = torch.zeros(6, 2, dtype=torch.float64)
    W[:, 1] = 1.0
    with pytest.raises(ValueError, match=r"every snapshot but the last\) is zero"):
        kt.dmd(W)
    with pytest.raises(ValueError, match="W is all zeros"):
        kt.dmd(torch.zeros(6, 3, dtype=torch.float64))


def test_a_tensor_without_values_is_refused():
    with pytest.raises(ValueError, match="W is on the meta device"):
        kt.dmd(torch.empty(6, 5, device="meta"))
    with pytest.raises(ValueError, match="W is on the meta device"):
        kt.estimate_limit(torch.empty(6, 5, device="meta"))


def test_a_precomputed_gram_of_other_data_is_refused():
    from koopman_tut.numerics.snapshots import deviation_gram

    W = _affine(torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(kt.dmd(W, acc=deviation_gram(W)).eigs, kt.dmd(W, method="gram").eigs)
    for bad in (torch.zeros(3), deviation_gram(W[:, :-1]), deviation_gram(W).float(), "G"):  # a raw error later
        with pytest.raises(ValueError, match=r"acc must be W's deviation Gram .* of shape \(20, 20\)"):
            kt.dmd(W, acc=bad)


@pytest.mark.parametrize("noise", [3e-7, 1e-6, 3e-6])
def test_singular_values_just_above_the_grams_floor_are_read_again(noise):
    # affine window of 5 modes in 400 x 30, noise 3e-7 .. 3e-6: the smallest singular values lie 1.4-4.6x
    # above the Gram's floor, resolved there only to ~10%; the fixed point (the closest mode) was 4.7x the
    # distance off the SVD route's (rows permuted on the SVD route: 6e-12). Float64 data is read once more
    W = systems.affine_window(400, 30, [0.95, 0.9, 0.8, 0.6, -0.5], noise=noise)[0]
    svd, gram = (kt.dmd(W, -1, method=m).fixed_point() for m in ("svd", "gram"))
    assert float((gram - svd).norm()) <= 1e-8 * float((svd - W[:, -1]).norm())


def _complex_closest_run(pair=0.98 + 0.1j, T=12, seed=0):
    """W (6, T) of x_{t+1} = A x_t, A with eigenvalues pair, conj(pair), 0.5, 0.3, 0.2, 0.1 (the pair closest to
    1), and b phi of the pair's first eigenvalue computed from A's eigenvectors: v_i (V^-1 x_0)_i."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.tensor([pair, pair.conjugate(), 0.5, 0.3, 0.2, 0.1], dtype=torch.complex128)
    V = torch.randn(6, 6, dtype=torch.float64, generator=g).to(torch.complex128)
    V[:, 1] = V[:, 0].conj() + 0.5j * torch.randn(6, dtype=torch.float64, generator=g)  # a conjugate pair of vectors
    V[:, 0] = V[:, 1].conj()
    A = (V @ torch.diag(lam) @ torch.linalg.inv(V)).real
    x = torch.randn(6, dtype=torch.float64, generator=g)
    W = torch.stack([torch.linalg.matrix_power(A, t) @ x for t in range(T)], 1)
    c = torch.linalg.solve(V, x.to(torch.complex128))
    return W, V[:, 0] * c[0], lam[0]


def test_a_complex_eigenvalue_closest_to_one_warns_and_its_mode_is_read_as_asked():
    """The paper's KMP score is |v_1|. Where the eigenvalue closest to 1 is complex (a slow pair: no fixed point)
    fixed_point() returns the real part of b phi and fixed_point(modulus=True) its modulus, each with a
    ComplexModeWarning; a real one is read as before, silently, and modulus changes nothing."""
    W, bphi, lam = _complex_closest_run()
    res = kt.dmd(W)
    assert abs(complex(res.eigs[res.closest()]) - complex(lam)) < 1e-8 or \
        abs(complex(res.eigs[res.closest()]) - complex(lam).conjugate()) < 1e-8
    scale = float(bphi.abs().max())
    with pytest.warns(kt.ComplexModeWarning, match=r"closest to 1 is complex \(0\.98.*no fixed point.*real part"):
        real = res.fixed_point()
    with pytest.warns(kt.ComplexModeWarning, match="its modulus"):
        modulus = res.fixed_point(modulus=True)
    assert float((real - bphi.real).abs().max()) < 1e-8 * scale  # b phi of either eigenvalue of the pair: the same
    assert float((modulus - bphi.abs()).abs().max()) < 1e-8 * scale  # real part and modulus differ
    assert float((modulus - real.abs()).abs().max()) > 0.01 * scale
    W1, _, _ = _complex_closest_run(pair=0.999 + 0j)  # the control: a real (double) eigenvalue closest to 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", kt.ComplexModeWarning)
        res1 = kt.dmd(W1)
        assert complex(res1.eigs[res1.closest()]).imag == 0
        assert torch.equal(res1.fixed_point(), res1.fixed_point(modulus=True))
    with pytest.raises(TypeError, match="modulus must be True or False, got 'no'"):
        res1.fixed_point(modulus="no")


def test_kmp_by_the_closest_mode_of_a_complex_pair_scores_its_modulus():
    W, bphi, _ = _complex_closest_run()
    traj = kt.Trajectory(W, torch.arange(W.shape[1]), ["w"], [(6,)], {})
    k = kt.koopman(traj)
    with pytest.warns(kt.ComplexModeWarning, match="its modulus"):
        scores = k.kmp_scores("closest")
    assert float((scores["w"] - bphi.abs()).abs().max()) < 1e-8 * float(bphi.abs().max())
    with pytest.warns(kt.ComplexModeWarning, match="real part"):
        assert float((k.fixed_point("closest") - bphi.real).abs().max()) < 1e-8 * float(bphi.abs().max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", kt.ComplexModeWarning)  # the default rule reads no single mode
        k.kmp_scores()


def _exact_rank(eigs, n, T, seed):
    """Noise-free float64 (n, T) snapshots of x_{t+1} = A x_t (eigenvalues ``eigs``) lifted by orthonormal columns."""
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((len(eigs), len(eigs)))
    A = P @ np.diag(eigs) @ np.linalg.inv(P)
    Z = np.empty((len(eigs), T))
    Z[:, 0] = rng.standard_normal(len(eigs))
    for t in range(1, T):
        Z[:, t] = A @ Z[:, t - 1]
    return torch.from_numpy(np.linalg.qr(rng.standard_normal((n, len(eigs))))[0] @ Z)


@pytest.mark.parametrize("seed", range(3))
def test_exact_rank_data_keep_their_rank_on_every_route(seed):
    """An exact rank-4 window (float64, one rounding of a product): every route and rank rule keeps the 4 modes.
    Before, torch's SVD of the tall (419,430, 9) X left rounding at 3-7e-15 s_max, above the cut T eps64 s_max,
    so the SVD route kept 1-2 rounding modes beside the Gram route's 4 (the rank jumped at the auto switch): the
    cut is now at least sqrt(n) eps64 s_max. And Gavish-Donoho's median was taken over the values a route returned
    (the Gram route's refined factor holds fewer than min(n, T - 1)), so svd_rank=0 kept 2 of 4 modes on the Gram
    route; the values a route does not return now count as 0."""
    eigs = [1.0, 0.9, 0.5, -0.3]
    T = 10
    W = _exact_rank(eigs, 2**22 // T - 1000, T, seed)
    for svd_rank in (-1, 0):
        for method in ("svd", "gram"):
            res = kt.dmd(W, svd_rank=svd_rank, method=method)
            assert res.rank == 4, (svd_rank, method, res.eigs)
            assert match(res.eigs.numpy(), np.array(eigs, dtype=complex)) < 1e-8
    W = _exact_rank([1.0, 0.9, 0.7, 0.2], 2000, 25, seed)  # rank 4 of 24: the median is a rounding value's
    assert kt.dmd(W, svd_rank=0, method="gram").rank == kt.dmd(W, svd_rank=0, method="svd").rank == 4


def test_a_small_real_mode_of_float64_data_is_kept_and_noise_near_the_cut_is_not():
    """The two ways the rank rules could go wrong on either side of the cut. A decayed mode at 8.7e-12 of s_max
    (n = 20,000, exact float64 data) is real, and both routes keep it with its eigenvalue (a cut of n eps64 s_max,
    4.4e-12, dropped it). Noise whose median sits just below the cut: Gavish-Donoho keeps the 2 modes, as PyDMD
    does (counting the values below the cut as 0 made the median 0 and kept 5-13 noise modes)."""
    from pydmd.utils import compute_rank

    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((20_000, 4)))[0]
    W = torch.from_numpy(Q @ np.array([[a * e**t for t in range(10)] for e, a in
                                       zip([1.0, 0.9, 0.5, 0.8], [1.0, 0.5, 0.3, 1e-9])]))
    for method in ("svd", "gram"):
        res = kt.dmd(W, method=method)
        assert res.rank == 4 and float((res.eigs - 0.8).abs().min()) < 1e-5, (method, res.eigs)
    n, T = 40, 30
    S = np.linalg.qr(rng.standard_normal((n, 2)))[0] @ np.array([[e**t for t in range(T)] for e in (1.0, 0.9)])
    N = rng.standard_normal((n, T))
    scale = np.linalg.svd(S[:, :-1], compute_uv=False)[0] / np.median(np.linalg.svd(N[:, :-1], compute_uv=False))
    for share in (0.3, 0.6, 0.9, 1.2):  # the noise's median singular value at this share of T eps64 s_max
        W = S + share * T * np.finfo(np.float64).eps * scale * N
        assert kt.dmd(W, svd_rank=0, method="svd").rank == kt.dmd(W, svd_rank=0, method="gram").rank \
            == compute_rank(W[:, :-1], 0) == 2
