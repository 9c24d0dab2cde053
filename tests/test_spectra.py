"""koopman_tut.numerics.spectra: delay embedding, pooled DMD spectra, Wasserstein distance, permutation test."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from koopman_tut import spectra as S

from koopman_tut.numerics import equivalence

EPS = np.finfo(np.float64).eps


def _linear_runs(eigs, n_runs, T, observe=None, seed=0, noise=0.0):
    """Runs of x_{t+1} = A x_t with A = P diag(eigs) P^-1 (real, conjugate pairs as 2x2 blocks)."""
    rng = np.random.default_rng(seed)
    blocks = []
    for lam in eigs:
        if abs(np.imag(lam)) > 0:
            if np.imag(lam) > 0:
                blocks.append(np.array([[lam.real, -lam.imag], [lam.imag, lam.real]]))
        else:
            blocks.append(np.array([[float(np.real(lam))]]))
    n = sum(b.shape[0] for b in blocks)
    B = np.zeros((n, n))
    i = 0
    for b in blocks:
        B[i:i + len(b), i:i + len(b)] = b
        i += len(b)
    P = rng.standard_normal((n, n)) + 2 * np.eye(n)
    A = P @ B @ np.linalg.inv(P)
    C = np.eye(n) if observe is None else rng.standard_normal((observe, n))
    runs = []
    for _ in range(n_runs):
        x = rng.standard_normal(n)
        traj = []
        for _ in range(T):
            traj.append(C @ x)
            x = A @ x
        runs.append(np.array(traj).T + noise * rng.standard_normal((C.shape[0], T)))
    return runs


def _sorted(e):
    e = torch.as_tensor(np.asarray(e, dtype=np.complex128))
    return e[S.canonical_order(e)].numpy()


# ----------------------------------------------------------------------------- delay_embed
def test_delay_embed_blocks_numpy_and_torch():
    x = np.arange(12.0).reshape(2, 6)  # d = 2, T = 6
    z = S.delay_embed(x, 2)
    assert isinstance(z, np.ndarray) and z.shape == (6, 4)
    for t in range(4):
        np.testing.assert_array_equal(z[:, t], np.concatenate([x[:, t], x[:, t + 1], x[:, t + 2]]))
    zt = S.delay_embed(torch.tensor(x, dtype=torch.float32), 2)
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_array_equal(zt.numpy(), z)
    np.testing.assert_array_equal(S.delay_embed(x, 0), x)


@pytest.mark.parametrize("x, delays, err", [(np.zeros((2, 3)), 3, ValueError), (np.zeros((2, 5)), -1, ValueError),
                                            (np.zeros((2, 5)), 1.5, ValueError), (np.zeros(5), 1, ValueError),
                                            ([[1.0, 2.0]], 0, TypeError)])
def test_delay_embed_rejects_bad_input(x, delays, err):
    with pytest.raises(err):
        S.delay_embed(x, delays)


# ----------------------------------------------------------------------------- spectrum
@pytest.mark.parametrize("delays, observe", [(0, None), (3, 1), (1, 2)])
def test_spectrum_recovers_chosen_eigenvalues(delays, observe):
    """A 4-dimensional linear system seen whole, through one coordinate (3 delays: Hankel DMD), or two."""
    truth = np.array([0.97, 0.8 + 0.3j, 0.8 - 0.3j, -0.5])
    runs = _linear_runs(truth, n_runs=4, T=25, observe=observe, seed=1)
    e = S.spectrum(runs, delays=delays)
    assert e.dtype == torch.complex128 and e.numel() == 4
    X, _ = S.pairs(runs, delays)
    s = np.linalg.svd(X.numpy(), compute_uv=False)
    # backward error of the float64 SVD/eig ~ n eps s_max, seen relative to s_min: kappa(X) n eps,
    # times a modest eigenvector condition number (P is diagonally dominant)
    tol = 1e3 * (s[0] / s[-1]) * X.shape[0] * EPS
    np.testing.assert_allclose(e.numpy(), _sorted(truth), atol=tol)


def test_spectrum_pads_unexplored_directions_with_zero_and_truncates():
    """Data in a 2-D subspace of R^3: the operator Y X^+ is zero off it (eigenvalue 0, no noise)."""
    runs = _linear_runs([0.9, 0.5], n_runs=3, T=20, seed=2)
    lift = np.random.default_rng(0).standard_normal((3, 2))
    e = S.spectrum([lift @ r for r in runs])
    np.testing.assert_allclose(e.numpy(), [0.9, 0.5, 0.0], atol=1e-10)
    e1 = S.spectrum([lift @ r for r in runs], modes=1)
    assert e1.numel() == 1 and abs(complex(e1[0]) - 0.9) < 0.3  # one mode: a compromise near the slow one


def test_spectrum_inputs_agree_and_validate():
    runs = _linear_runs([0.9, 0.7, 0.2], n_runs=3, T=15, seed=3)
    ref = S.spectrum(runs, delays=1)
    stack = S.spectrum(torch.tensor(np.stack(runs)), delays=1)  # (N, d, T)
    np.testing.assert_allclose(stack.numpy(), ref.numpy(), atol=1e-12)
    one = S.spectrum(runs[0], delays=1)
    assert one.numel() == 6
    with pytest.raises(ValueError, match="too short"):
        S.spectrum(runs, delays=14)
    with pytest.raises(ValueError, match="share d"):
        S.spectrum([runs[0], runs[1][:2]])
    with pytest.raises(ValueError, match="modes"):
        S.spectrum(runs, modes=4)
    bad = [r.copy() for r in runs]
    bad[1][0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        S.spectrum(bad)
    with pytest.raises(TypeError):
        S.spectrum("runs")
    with pytest.raises(TypeError, match="real"):
        S.spectrum([r.astype(np.complex128) for r in runs])
    with pytest.raises(ValueError, match="one shape"):
        S.dmd_pairs(torch.ones(3, 4), torch.ones(3, 5))


# ----------------------------------------------------------------------------- wasserstein
@pytest.mark.parametrize("r", [1, 2, 3, 5, 6])
def test_wasserstein_equals_brute_force(r):
    rng = np.random.default_rng(r)
    for _ in range(5):
        a = rng.standard_normal(r) + 1j * rng.standard_normal(r)
        b = rng.standard_normal(r) + 1j * rng.standard_normal(r)
        brute = min(np.abs(a - b[list(p)]).mean() for p in itertools.permutations(range(r)))
        assert S.wasserstein(a, b) == pytest.approx(brute, rel=1e-12)
        assert S.wasserstein(torch.tensor(b), a) == pytest.approx(brute, rel=1e-12)
        assert S.wasserstein(a, a[rng.permutation(r)]) == 0.0


def test_wasserstein_rejects_unequal_or_bad_sets():
    with pytest.raises(ValueError, match="same number"):
        S.wasserstein(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        S.wasserstein(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="1-D"):
        S.wasserstein(np.ones((2, 2)), np.ones(4))
    with pytest.raises(TypeError, match=r"e1 is a masked array: pass the eigenvalues to compare \(e1.compressed"):
        S.wasserstein(np.ma.masked_array([1.0, 50.0], mask=[False, True]), np.ones(2))  # the mask was dropped
    with pytest.raises(TypeError, match="spectra must be a sequence of spectra .* got a 0-d Tensor"):
        S.distance_matrix(torch.tensor(0.9))  # "iteration over a 0-d tensor" before
    z = torch.tensor([0.1 + 0.2j, 0.3 - 0.1j], dtype=torch.complex128)
    assert S.wasserstein(z, z.conj()) == S.wasserstein(z, z.conj().resolve_conj())  # a lazy conjugate crashed
    assert S.wasserstein(z, torch._neg_view(z)) == S.wasserstein(z, -z)


# ----------------------------------------------------------------------------- permutation test
def _replicates(eigs, count, seed):
    """Independent spectra of the same noisy system: 3 pooled runs each, 1 delay, 4 modes."""
    return [S.spectrum(_linear_runs(eigs, 3, 12, seed=seed * 1000 + i, noise=0.05), delays=1)
            for i in range(count)]


def test_permutation_test_false_positive_rate_near_level():
    """Equivalent runs (the same system): the rejection rate at alpha is the exact test's size."""
    alpha, reps = 0.1, 300
    rejections = 0
    for rep in range(reps):
        spectra = _replicates([0.9, 0.6], 8, seed=rep)  # exchangeable under the null
        res = S.permutation_test(spectra[:3], spectra[3:])
        assert res.exact and res.n_relabellings == math.comb(8, 3)
        rejections += res.p_value <= alpha
    size = math.floor(alpha * 56) / 56  # continuous statistic: P(p <= alpha) = floor(alpha M) / M
    lo, hi = binom.ppf(1e-4, reps, size), binom.ppf(1 - 1e-4, reps, size)
    assert lo <= rejections <= hi, (rejections, lo, hi)


def _paired(count, seed, shift=0.0):
    """Pairs of spectra sharing a seed's system (its eigenvalues drawn per seed, far apart between seeds);
    the b of each pair has its slow eigenvalue moved by ``shift``."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for i in range(count):
        slow, fast = 0.9 - 0.2 * rng.random(), 0.5 - 0.3 * rng.random()  # what a seed changes
        a.append(S.spectrum(_linear_runs([slow, fast], 3, 12, seed=seed * 1000 + 2 * i, noise=0.02), delays=0))
        b.append(S.spectrum(_linear_runs([slow - shift, fast], 3, 12, seed=seed * 1000 + 2 * i + 1, noise=0.02),
                            delays=0))
    return a, b


def test_a_paired_test_exchanges_within_pairs_only_and_keeps_its_level():
    """Replicates that share a seed: under the null (a_i and b_i exchangeable) the paired test's rejection
    rate is its exact size; a consistent shift smaller than the seed-to-seed scatter is found by the paired
    test and missed by the unpaired one (the control: relabelling across pairs reads that scatter as noise)."""
    alpha, reps, n = 0.1, 200, 6
    rejections = 0
    for rep in range(reps):
        a, b = _paired(n, seed=rep)
        res = S.permutation_test(a, b, paired=True)
        assert res.exact and res.n_relabellings == 2**n
        rejections += res.p_value <= alpha
    size = math.floor(alpha * 2 ** (n - 1)) / 2 ** (n - 1)  # the statistic is the same for a swap of every pair
    lo, hi = binom.ppf(1e-4, reps, size), binom.ppf(1 - 1e-4, reps, size)
    assert lo <= rejections <= hi, (rejections, lo, hi)
    found = {paired: sum(S.permutation_test(*_paired(n, seed=1000 + r, shift=0.1), paired=paired).p_value <= 0.05
                         for r in range(20)) for paired in (True, False)}  # measured rates about 0.85 and 0.25
    assert found[True] >= 12 and found[False] <= 11 and found[True] > found[False] + 5, found
    # exact: the share of all 2^3 within-pair swaps whose statistic is at least the observed one
    a, b = _paired(3, seed=7, shift=0.1)
    D = S.distance_matrix(a + b)
    stats = []
    for swap in itertools.product([False, True], repeat=3):
        g = np.concatenate([~np.array(swap), np.array(swap)])
        iu = np.triu_indices(6, 1)
        stats.append(D[np.ix_(g, ~g)].mean() - D[iu][(g[:, None] == g[None, :])[iu]].mean())
    res = S.permutation_test(a, b, paired=True)
    assert res.p_value == pytest.approx(np.mean(np.array(stats) >= stats[0] - 1e-12)) and res.p_value >= 2 / 8
    mc = S.permutation_test(a, b, paired=True, n_permutations=4, seed=1)
    assert not mc.exact and mc.n_relabellings == 5 and mc.statistic == res.statistic
    with pytest.raises(ValueError, match=r"paired=True pairs spectra_a\[i\] with spectra_b\[i\]: both need as many"):
        S.permutation_test(a, b[:2], paired=True)
    with pytest.raises(TypeError, match="paired must be True or False"):
        S.permutation_test(a, b, paired="yes")


def test_permutation_test_detects_different_dynamics_and_enumerates_exactly():
    for seed in (3, 17, 2024):
        a = _replicates([0.9, 0.6], 4, seed=seed)
        b = _replicates([0.5, -0.4], 4, seed=seed + 1)
        res = S.permutation_test(a, b)
        assert res.p_value == pytest.approx(2 / 70)  # the observed split and its mirror image
        assert res.between > res.within
    # the exact p-value is the share of all C(6, 3) splits whose statistic is at least the observed one
    spectra = _replicates([0.9, 0.6], 6, seed=5)
    D = S.distance_matrix(spectra)
    stats = []
    for c in itertools.combinations(range(6), 3):
        g = np.isin(np.arange(6), c)
        iu = np.triu_indices(6, 1)
        within = D[iu][(g[:, None] == g[None, :])[iu]].mean()
        stats.append(D[np.ix_(g, ~g)].mean() - within)
    res = S.permutation_test(spectra[:3], spectra[3:])
    assert res.p_value == pytest.approx(np.mean(np.array(stats) >= stats[0] - 1e-12))
    mc = S.permutation_test(spectra[:3], spectra[3:], n_permutations=10, seed=1)
    assert not mc.exact and mc.n_relabellings == 11 and mc.statistic == res.statistic
    assert S.permutation_test(spectra[:3], spectra[3:], n_permutations=np.int64(20)).exact is True  # not np.True_
    with pytest.raises(ValueError, match="at least 2"):
        S.permutation_test(spectra[:1], spectra[1:])


# ----------------------------------------------------------------------------- the paper's first experiment
def test_equivalence_example_matches_the_published_spectra():
    """OMD and OGD: the eigenvalues Redman et al. published (5 decimals) and each other; bisection apart."""
    E = S.equivalence_example()
    assert set(E) == {"OMD", "OGD", "bisection"} and all(e.numel() == 10 for e in E.values())
    for name in ("OMD", "OGD"):  # published values are rounded to 1e-5
        np.testing.assert_allclose(E[name].numpy(), equivalence.PUBLISHED[name], atol=5e-6)
    near, far = S.wasserstein(E["OMD"], E["OGD"]), S.wasserstein(E["OMD"], E["bisection"])
    assert near < 0.02 < 0.5 < far
    # 20 of bisection's 25 runs stop moving after 51-56 halvings (the 5 whose root is 0 halve to the end):
    # a fixed point (eigenvalue exactly 1) and a 6-dimensional data span in R^10, so 4 eigenvalues are 0
    assert abs(complex(E["bisection"][0]) - 1) < 1e-9
    assert int((E["bisection"].abs() < 1e-12).sum()) == 4


def test_bisection_as_the_authors_code_runs_it_gives_their_published_spectrum():
    """Their bisection returns at f(z) == 0 and leaves its run's remaining entries at 0 (at_root="zeros"): its
    six eigenvalues above 1e-3 are the published ones (5 decimals); the other four are rounding about a
    nilpotent block. The tutorial's runs (a found root stays) are a different spectrum, as the control shows."""
    runs = equivalence.equivalence_runs(at_root="zeros")["bisection"]
    assert sum(not r[:, -1].any() for r in runs) == 20  # 20 starts jump to 0 after their root
    E, mine = S.spectrum(runs, 4), S.equivalence_example()["bisection"]
    big = E[E.abs() > 1e-3].numpy()
    np.testing.assert_allclose(big, equivalence.PUBLISHED_BISECTION, atol=5e-6)
    # the other four: a 4 x 4 nilpotent block perturbed by rounding delta has the four fourth roots of delta as its
    # eigenvalues (equal moduli r = delta^(1/4), summing to 0); a least-squares fit's backward error bounds delta
    # by about n cond(X) eps (n = 10 embedded coordinates). r was 1.2e-4 (Intel) to 2.9e-4 (AMD) (delta 1-34 eps)
    small = E[E.abs() <= 1e-3]
    X = S.pairs(runs, 4)[0]
    cond = float(torch.linalg.svdvals(X)[0] / torch.linalg.svdvals(X)[-1])
    r = small.abs()
    assert len(small) == 4 and float(r.max() - r.min()) <= 0.01 * float(r.max())
    assert float(small.sum().abs()) <= 1e-6 * float(r.max())
    assert float(r.max()) ** 4 <= X.shape[0] * cond * np.finfo(np.float64).eps
    assert abs(complex(mine[0]) - 1) < 1e-9 and abs(complex(mine[0]) - equivalence.PUBLISHED_BISECTION[0]) > 0.01
    stay = equivalence.equivalence_runs(at_root="stay")["bisection"]
    assert all(np.array_equal(a, b) for a, b in zip(stay, equivalence.equivalence_runs()["bisection"]))
    with pytest.raises(ValueError, match="at_root must be 'stay' or 'zeros'"):
        equivalence.bisection(np.array([-1.0, -1.0]), np.array([1.0, 0.5]), at_root="zero")


def test_equivalence_algorithms():
    x = equivalence.mirror_descent(np.array([0.01, 0.9]))
    assert x.shape == (2, 100) and np.all(np.diff(x, axis=1) <= 0)
    assert np.all(x[0] == 0.01)  # y < 1/T at the lower face: the Bregman projection clips it
    assert 1 / x[1, 1] == pytest.approx(1 / 0.9 + 0.01 / np.cos(0.9) ** 2, rel=1e-14)
    u = equivalence.gradient_descent(np.log([0.5, 0.9]))
    assert np.all((u >= np.log(0.01) - 1e-15) & (u <= 0))
    z = equivalence.bisection(np.array([-1.0, -1.0]), np.array([1.0, 0.5]))
    assert abs(equivalence.loss(z[:, -1])) < 1e-12
    with pytest.raises(ValueError, match="f\\(a0\\) < 0"):
        equivalence.bisection(np.array([1.0, 1.0]), np.array([1.0, 0.5]))


def test_float32_runs_near_a_fixed_point_keep_their_small_motion():
    """Weights that move by 1e-3 of their size (fine-tuning), stored in float32: the decaying modes are
    far above float32 rounding (eps32 ||X||_F) and must be kept, not cut as numerically zero."""
    rng = np.random.default_rng(4)
    offset = rng.standard_normal((2000, 1))  # the fixed point: eigenvalue 1 (n = 2000: a layer)
    runs = []
    for _ in range(3):
        a, b = rng.standard_normal((2000, 1)), rng.standard_normal((2000, 1))
        t = np.arange(40)[None, :]
        runs.append((offset + 1e-3 * (a * 0.9**t + b * 0.6**t)).astype(np.float32))
    with pytest.warns(S.ResolutionWarning, match="110 of the 2000 modes"):  # float32's rounding, not zeros
        e = S.spectrum([torch.tensor(r) for r in runs])  # span: offset, 3 x a, 3 x b; the rest is rounding
    X, _ = S.pairs(runs)
    s = np.linalg.svd(X.numpy(), compute_uv=False)
    tol = 100 * np.finfo(np.float32).eps * np.linalg.norm(s) / s[6]  # float32 storage error over s_7
    np.testing.assert_allclose(e[:7].numpy(), [1.0] + [0.9] * 3 + [0.6] * 3, atol=tol)
    assert float(e[7:].abs().max()) == 0.0


def test_delay_embedding_is_the_momentum_limits_embedding():
    """Issue 18 item 5: the momentum-aware limit embeds at the Gram level (reduced.delay_gram, no pass
    over W); its Gram must be the Gram of this module's explicit embedding (block order is immaterial)."""
    from koopman_tut.numerics import reduced

    D = torch.tensor(np.random.default_rng(6).standard_normal((7, 12)))
    for k in range(4):
        Z = S.delay_embed(D, k)
        np.testing.assert_allclose(reduced.delay_gram(D.T @ D, k).numpy(), (Z.T @ Z).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
def test_spectrum_on_cuda_matches_cpu():
    runs = _linear_runs([0.95, 0.7 + 0.2j, 0.7 - 0.2j], n_runs=3, T=20, seed=7)
    cpu = S.spectrum([torch.tensor(r) for r in runs], delays=1)
    gpu = S.spectrum([torch.tensor(r, device="cuda") for r in runs], delays=1)
    assert gpu.device.type == "cuda"
    assert S.wasserstein(gpu, cpu) < 1e-9  # the same float64 problem; SVD kernels differ only in rounding


def test_bad_runs_are_named_as_given():
    runs = [torch.randn(2, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    runs[1][1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"runs\[1\] contains NaN.*row=1, column=0"):  # not the pooled matrix's
        S.spectrum(runs)
    for stack in (np.zeros((0, 2, 10)), np.zeros(3)):
        with pytest.raises(ValueError, match=r"non-empty \(N, d, T\) stack, got shape"):
            S.spectrum(stack)


def test_modes_lost_to_the_storage_precision_are_named():
    """OMD's runs stored in float32 (or float16) keep only the modes above their rounding: the zeros that stand
    for the precision, not for directions no run explores, are announced; exact zeros (bisection's 6-dimensional
    span in float64) and float64 data are not."""
    import warnings

    runs = equivalence.equivalence_runs()
    for dtype, lost in ((np.float32, 2), (np.float16, 6)):
        with pytest.warns(S.ResolutionWarning, match=f"{lost} of the 10 modes asked for lie at or below"):
            e = S.spectrum([r.astype(dtype) for r in runs["OMD"]], 4)
        assert int((e.abs() == 0).sum()) == lost
    with warnings.catch_warnings():  # no more modes asked for than float32 resolves: nothing to say
        warnings.simplefilter("error")
        e = S.spectrum([r.astype(np.float32) for r in runs["OMD"]], 4, modes=8)
        assert int((e.abs() == 0).sum()) == 0


def test_dmd_pairs_checks_its_input():
    X = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Y = 0.9 * X
    torch.testing.assert_close(S.dmd_pairs(X.numpy(), Y.numpy()), S.dmd_pairs(X, Y))  # ndarrays as documented
    for bad in (float("nan"), float("inf")):
        Z = Y.clone()
        Z[1, 2] = bad
        with pytest.raises(ValueError, match=r"Y contains NaN or Inf.*row=1, column=2"):
            S.dmd_pairs(X, Z)
        with pytest.raises(ValueError, match=r"X contains NaN or Inf"):
            S.dmd_pairs(Z, Y)
    for eps in (-1.0, 0.0, 1.0, True, "1e-7"):
        with pytest.raises(ValueError, match="eps must be None or the data's machine epsilon"):
            S.dmd_pairs(X, Y, eps=eps)
    with pytest.raises(ValueError, match="at least 1 snapshots"):
        S.dmd_pairs(torch.ones(3, 0), torch.ones(3, 0))


def test_monte_carlo_p_value_estimates_the_exact_one():
    """Fewer relabellings allowed than C(10, 5) = 252: random ones, whose p-value is the exact one up to
    sampling (a binomial share of n + 1 draws); the exact p here is moderate, so a wrong branch shows."""
    spectra = _replicates([0.9, 0.6], 10, seed=11)
    exact = S.permutation_test(spectra[:5], spectra[5:])
    assert exact.exact and 0.1 < exact.p_value < 0.9, exact.p_value
    for seed in range(3):
        mc = S.permutation_test(spectra[:5], spectra[5:], n_permutations=200, seed=seed)
        assert not mc.exact and mc.n_relabellings == 201
        sd = math.sqrt(exact.p_value * (1 - exact.p_value) / 201)
        assert abs(mc.p_value - exact.p_value) <= 5 * sd + 1 / 201, (mc.p_value, exact.p_value)


def test_groups_may_be_any_iterable_and_distances_do_not_overflow():
    spectra = _replicates([0.9, 0.6], 6, seed=5)
    as_list = S.permutation_test(spectra[:3], spectra[3:])
    assert S.permutation_test(iter(spectra[:3]), (e for e in spectra[3:])) == as_list
    with pytest.raises(TypeError, match="spectra_a must be a sequence of spectra"):
        S.permutation_test(3, spectra)
    assert S.wasserstein([1e300, -1e300], [-1e300, 1e300]) == 0.0
    assert S.wasserstein([1e300, 1e300], [-1e300, -1e300]) == pytest.approx(2e300)
    assert S.wasserstein([1e308], [-1e308]) == math.inf  # 2e308 is past float64's range
    assert S.wasserstein([1e-310], [0]) == 1e-310 and S.wasserstein([5e-324], [0]) == 5e-324  # subnormals as they are
    assert S.wasserstein([1e300, 1e-300], [1e300, 2e-300]) == pytest.approx(5e-301)


# ----------------------------------------------------------------------------- names and scale (an input audit)
def test_groups_of_spectra_name_the_spectrum_at_fault():
    e = torch.tensor([0.5 + 0.1j, 0.5 - 0.1j, 0.9])
    f = torch.tensor([0.4 + 0.1j, 0.4 - 0.1j, 0.95])
    with pytest.raises(TypeError, match="spectra_a must be a sequence of spectra .* got one spectrum"):
        S.permutation_test(e, [f, f, f])  # said "e1 must be a non-empty 1-D set", e1 never passed
    with pytest.raises(ValueError, match=r"spectra_a\[0\] and spectra_b\[0\] must have the same number"):
        S.permutation_test([e, e, e], [f[:2]] * 3)
    with pytest.raises(ValueError, match=r"spectra_a\[1\] contains NaN"):
        S.permutation_test([e, e * float("nan")], [f, f])
    ragged = np.empty(3, dtype=object)  # a 1-D object array holds spectra, as a list does
    ragged[:] = [e, e * 0.99, e * 0.98]
    assert S.permutation_test(ragged, [f, f * 0.99, f * 0.98]).p_value == S.permutation_test(
        list(ragged), [f, f * 0.99, f * 0.98]).p_value
    with pytest.raises(TypeError, match="spectra must be a sequence of spectra .* got dict"):
        S.distance_matrix({"OMD": e})  # a KeyError before
    for empty in ([], (), iter([])):  # a 0 x 0 matrix before
        with pytest.raises(ValueError, match="spectra is empty"):
            S.distance_matrix(empty)
    assert S.wasserstein(e.real.bfloat16(), f.real.bfloat16()) == pytest.approx(
        S.wasserstein(e.real.bfloat16().double(), f.real.bfloat16().double()))  # bfloat16 was refused by numpy


def test_spectrum_does_not_depend_on_the_data_scale():
    x = torch.randn(3, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = S.spectrum(x)
    for scale in (1e155, 1e-150):  # ||X||_F overflowed at 1e155: every mode was reported as rounding (0)
        assert float((S.spectrum(x * scale) - ref).abs().max()) < 1e-12


def test_the_equivalence_simulators_refuse_starts_outside_their_box_and_bad_steps():
    for call, match in ((lambda: equivalence.mirror_descent(np.array([-0.5, 0.5])), "x0 must be .* in the box"),
                        (lambda: equivalence.mirror_descent(np.array([0.5, 0.5]), steps=0), "steps must be an integer >= 1"),
                        (lambda: equivalence.mirror_descent(np.array([0.5, 0.5]), eta=-0.01), "eta must be a finite step"),
                        (lambda: equivalence.gradient_descent(np.array([0.5, 0.5])), "u0 must be .* in the box"),
                        (lambda: equivalence.grid(0, 1, -1), "n .* must be an integer >= 1")):
        with pytest.raises(ValueError, match=match):  # before: clipped, run uphill, or numpy's own errors
            call()


def _real_linear_runs(eigs, n_runs, T, seed):
    """n_runs (d, T) runs of x_{t+1} = A x_t, A real with the real eigenvalues ``eigs`` in random coordinates."""
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((len(eigs), len(eigs))) + 2 * np.eye(len(eigs))
    A = P @ np.diag(eigs) @ np.linalg.inv(P)
    return [np.stack([np.linalg.matrix_power(A, t) @ x for t in range(T)], 1)
            for x in rng.standard_normal((n_runs, len(eigs)))]


@pytest.mark.parametrize("seed", range(5))
def test_a_change_of_coordinates_keeps_the_full_spectrum_not_a_truncated_one(seed):
    """spectrum's note: x -> P x leaves all modes' eigenvalues where they were (rounding), while modes= below the
    dimension keeps the leading singular directions, which P and a rescaled coordinate change."""
    runs = _real_linear_runs([0.95, 0.8, 0.5, 0.3], 5, 30, seed)
    P = np.diag([1.0, 1.0, 1.0, 1e3]) @ np.random.default_rng(100 + seed).standard_normal((4, 4))
    moved = [P @ r for r in runs]
    assert S.wasserstein(S.spectrum(runs), S.spectrum(moved)) < 1e-8
    np.testing.assert_allclose(S.spectrum(runs).real.numpy(), [0.95, 0.8, 0.5, 0.3], atol=1e-9)
    assert S.wasserstein(S.spectrum(runs, modes=3), S.spectrum(moved, modes=3)) > 1e-3


def test_shared_zeros_dilute_the_distance():
    """wasserstein's note: two exactly linear 2-D systems, {0.9, 0.5} against {0.6, 0.2}: every delay adds two
    zeros to both spectra, so the mean matched distance is 0.6 / (2 (k + 1))."""
    a, b = _real_linear_runs([0.9, 0.5], 3, 60, 0), _real_linear_runs([0.6, 0.2], 3, 60, 1)
    for k in (0, 1, 4, 9):
        assert S.wasserstein(S.spectrum(a, k), S.spectrum(b, k)) == pytest.approx(0.6 / (2 * (k + 1)), abs=1e-9)


def test_pairs_of_float32_runs_keep_their_precision_for_dmd_pairs():
    """The recipe of the module (pairs, then dmd_pairs) on float32 runs: pairs used to return float64, so dmd_pairs
    took float64's eps and kept the float32 rounding as 8 made-up modes (0.29-0.36 from the true spectrum, silently);
    now the pairs keep the runs' dtype (a copy: nothing rounded) and dmd_pairs reads its eps from them."""
    eigs = [0.95, 0.9 * np.exp(0.3j), 0.9 * np.exp(-0.3j), 0.5]
    runs = [r.astype(np.float32) for r in _linear_runs(eigs, 5, 40, seed=3)]
    truth = np.concatenate([eigs, np.zeros(8)])
    X, Y = S.pairs(runs, 2)
    assert X.dtype == Y.dtype == torch.float32
    X64, Y64 = S.pairs([r.astype(np.float64) for r in runs], 2)  # the same values: the embedding rounds nothing
    assert torch.equal(X.double(), X64) and torch.equal(Y.double(), Y64)
    with pytest.warns(S.ResolutionWarning):  # float32 cannot tell the 8 unexplored directions from small modes
        for e in (S.dmd_pairs(X, Y), S.spectrum(runs, 2), S.dmd_pairs(X64, Y64, eps=np.finfo(np.float32).eps)):
            assert S.wasserstein(e, truth) < 1e-6
    assert S.wasserstein(S.dmd_pairs(X64, Y64), truth) > 0.1  # float64's eps on float32 values: the control
    mixed_X, _ = S.pairs([runs[0], runs[1].astype(np.float64)], 2)  # runs of two dtypes: float64
    assert mixed_X.dtype == torch.float64


def test_a_resolution_warning_names_the_line_that_called_dmd_pairs():
    runs = equivalence.equivalence_runs()["OMD"]
    X, Y = S.pairs([r.astype(np.float32) for r in runs], 4)
    with pytest.warns(S.ResolutionWarning) as seen:
        S.dmd_pairs(X, Y)  # before: the warning named the line that called this test (a fixed stacklevel of 4)
    assert seen[0].filename == __file__


def test_spectra_given_as_lists_and_counts_as_0d_tensors():
    with pytest.raises(ValueError, match=r"e1 must be a 1-D set of eigenvalues .* a list that is not one"):
        S.wasserstein([1, [2, 3]], [1, 2])  # before: numpy's "inhomogeneous shape", naming neither
    one = torch.tensor(1.0, requires_grad=True)
    assert S.wasserstein([one, torch.tensor(2.0)], [1, 2]) == 0  # before: "Can't call numpy() on Tensor ... grad"
    a, b = [[0.5], [0.6]], [[0.9], [0.95]]
    assert (S.permutation_test(a, b, n_permutations=torch.tensor(10))
            == S.permutation_test(a, b, n_permutations=10))  # 0-d integer tensors, as seed= took them already
    x = _linear_runs([0.9, 0.5], 1, 12)[0]
    torch.testing.assert_close(S.spectrum(x, torch.tensor(1), modes=torch.tensor(3)), S.spectrum(x, 1, modes=3))
    with pytest.raises(ValueError, match=r"runs\[1\] has shape \(1, 2, 5\)"):
        S.spectrum([np.ones((2, 5)), np.ones((1, 2, 5))])
    with pytest.raises(TypeError, match=r"runs\[1\] is torch.complex128"):
        S.spectrum([np.ones((2, 5)), np.ones((2, 5)) + 1j])
    with pytest.raises(ValueError, match=r"got shape \(30, 2\) \(a run is \(d, T\).*transpose a \(T, d\) run"):
        S.spectrum(np.ones((30, 2)), 4)
