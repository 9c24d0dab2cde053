"""The fused float32 -> float64 passes (koopman_tut/numerics/_fused.c through numerics/native.py).

They must give torch's numbers: the deviations and steps bit for bit (every value is converted
to float64 before it is subtracted, on either route), a combination within the float64
rounding of its sum; on every layout they accept, at every thread count, and they must step
aside (False / None, nothing written) where they do not apply.
"""
import os
import subprocess
import sys

import pytest
import torch

from koopman_tut.numerics import finite, native, snapshots
from koopman_tut.numerics.matmul import matmul_chunked

EPS64 = torch.finfo(torch.float64).eps
EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture
def lib(require_native):
    return require_native(native.library(), "torch's passes run instead")


def awkward(n: int, T: int, seed: int = 0) -> torch.Tensor:
    """float32 (n, T) whose differences float32 could not hold exactly: values of every size, signed
    zeros, subnormals, the largest finite float32s."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, T, generator=g) * torch.exp2(torch.randint(-60, 60, (n, 1), generator=g).float())
    W += torch.randn(n, T, generator=g) * 1e-3 * W.abs()
    flat = W.view(-1)
    picks = torch.randint(0, flat.numel(), (6 * (1 + flat.numel() // 97),), generator=g)
    specials = torch.tensor([0.0, -0.0, 1e-45, -3e-39, 3.4e38, -3.4e38])
    flat[picks] = specials.repeat(picks.numel() // 6)
    return W


def layouts(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """W's numbers in the layouts the kernels take: contiguous, and windows of wider storage (a row
    stride other than T, a snapshot stride other than n, a storage offset), as a slice of a recording."""
    n, T = W.shape
    rows = torch.full((n, T + 5), 9.0)
    rows[:, 2:2 + T] = W
    snaps = torch.full((T + 3, n + 7), 9.0)
    snaps[1:1 + T, 3:3 + n] = W.mT
    return {"row-major": W.contiguous(), "snapshot-major": W.mT.contiguous().mT,
            "row-major window": rows[:, 2:2 + T], "snapshot-major window": snaps[1:1 + T, 3:3 + n].mT}


def convert(kind: str, dst: torch.Tensor, W: torch.Tensor) -> bool:
    """Kernel ``kind`` ("deviations" or "steps") over all of W into dst of W's shape, as one chunk; False where it
    does not apply."""
    fill = native.chunk_pass(f"kt_{kind}", dst, W) if dst.shape == W.shape else None
    return fill is not None and fill(0, W.shape[0])


def guarded(like: torch.Tensor, pad: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(dst, whole): dst a float64 buffer laid out like ``like`` inside a NaN-free sentinel region."""
    size = (like.shape[0] - 1) * like.stride(0) + (like.shape[1] - 1) * like.stride(1) + 1
    whole = torch.full((size + 2 * pad,), 12345.0, dtype=torch.float64)
    return whole.as_strided(like.shape, like.stride(), pad), whole


def torch_route(kind: str, W: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """What snapshots' passes compute without the kernels, into a buffer laid out like dst."""
    out = torch.empty_strided(dst.shape, dst.stride(), dtype=torch.float64)
    out.copy_(W)
    if kind == "deviations":
        out[:, :-1].sub_(out[:, -1:])
    else:
        b = torch.cat([out, torch.zeros(W.shape[0], 1, dtype=torch.float64)], 1)
        torch.sub(b[:, 1:], b[:, :-1], out=out)
    return out


@pytest.mark.parametrize("kind", ["deviations", "steps"])
@pytest.mark.parametrize("n, T, threads", [(n, T, k) for n, T in [(1, 2), (5, 3), (7, 1), (3000, 17), (4099, 64),
                                                                   (700, 65), (20_000, 9)] for k in (1, 2, 3)]
                         + [(40_000, 64, 65)])  # more blocks than 32 (the bits that claim them) and than 64
def test_deviations_and_steps_are_torchs_bit_for_bit(lib, kind, n, T, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, W in layouts(awkward(n, T)).items():
            dst, whole = guarded(snapshots.chunk_buffer(W, n))  # W's order; row-major rows of 64 padded
            dst.fill_(float("nan"))
            assert convert(kind, dst, W), name
            assert bool((whole[:64] == 12345).all() and (whole[-64:] == 12345).all()), name  # nothing outside
            ref = torch_route(kind, W, dst)
            same = (dst == ref) | (dst.isnan() & ref.isnan())
            assert bool(same.all()), (name, torch.nonzero(~same)[:3].tolist())
            assert torch.equal(torch.signbit(dst), torch.signbit(ref)), name  # 0 - 0 is +0.0 on both
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("n, T", [(1, 2), (9, 5), (3001, 11), (5000, 16), (2049, 64), (4000, 67)])
def test_combine_sums_in_float64_and_does_not_depend_on_threads(lib, n, T):
    g = torch.Generator().manual_seed(T)
    W0 = (1 + 1e-3 * torch.randn(n, T, generator=g, dtype=torch.float64).cumsum(1)).float()
    c = torch.randn(T, generator=g, dtype=torch.float64) * 1e3
    c[-1] -= c.sum() - 1  # large, cancelling coefficients summing to 1, as a limit's
    exact = W0.double() @ c  # float64 sums of exact products: error <= T u sum |w c|
    bound = EPS32 * exact.abs() + 4 * T * EPS64 * (W0.double().abs() @ c.abs())
    before, outs = torch.get_num_threads(), {}
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            for name, W in layouts(W0).items():
                out = native.combine(W, c)
                assert out is not None and out.dtype == torch.float32 and out.shape == (n,), name
                assert bool(((out.double() - exact).abs() <= bound).all()), name
                outs.setdefault(name.split()[0], []).append(out)  # row-major / snapshot-major: one sum order each
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(o, same[0]) for same in outs.values() for o in same)
    # the control: summed in float32 the same combination misses by far more than the bound
    assert bool(((W0 @ c.float()).double() - exact).abs().max() > 10 * bound.max())


def test_the_kernels_step_aside_where_they_do_not_apply(lib):
    W = awkward(50, 8)
    wide = torch.zeros(50, 16)
    wide[:, ::2] = W
    cases = {"strided": wide[:, ::2], "float64": W.double(), "float16": W.clamp(-1e4, 1e4).half(),
             "batched": W[None], "meta": torch.empty(50, 8, device="meta"), "no snapshots": W[:, :0],
             "no rows": W[:0], "a lazy negation": torch._neg_view(W)}
    for name, X in cases.items():
        dst = torch.full(X.shape, 7.0, dtype=torch.float64)
        assert not convert("deviations", dst, X) and not convert("steps", dst, X), name
        assert bool((dst == 7).all()), name  # nothing written
        assert native.combine(X, torch.ones(8, dtype=torch.float64)) is None, name
    dst = torch.empty(8, 50, dtype=torch.float64).mT  # a buffer in the other order than W's
    assert not convert("deviations", dst, W)
    for dst in (torch.zeros(50, 1, dtype=torch.float64).expand(50, 8), torch.zeros(1, 8, dtype=torch.float64).expand(50, 8)):
        assert not convert("steps", dst, W) and not bool(dst.any())  # overlapping entries: torch refuses them too
    for gram in (snapshots.deviation_gram, snapshots.step_gram):  # no snapshot: refused by name, as without kernels
        with pytest.raises(ValueError):
            gram(torch.zeros(5, 0), chunk_rows=2)
    assert native.combine(W, torch.ones(7, dtype=torch.float64)) is None  # c of the wrong length


def test_the_passes_take_the_kernels_where_they_apply(lib, monkeypatch):
    taken = []
    real_pass, real_combine = native.chunk_pass, native.combine

    def chunk_pass(*a):
        fill = real_pass(*a)
        return None if fill is None else lambda *b: taken.append(r := fill(*b)) or r  # each chunk's answer

    monkeypatch.setattr(native, "chunk_pass", chunk_pass)
    monkeypatch.setattr(native, "combine", lambda *a: taken.append(r := real_combine(*a)) or r)
    for W in layouts(awkward(5000, 12)).values():
        taken.clear()
        snapshots.deviation_gram(W, chunk_rows=1000), snapshots.step_gram(W, chunk_rows=1000)
        matmul_chunked(W, torch.ones(12, 1, dtype=torch.float64))
        assert len(taken) == 11 and all(t is True for t in taken[:10]) and taken[10] is not None


def test_passes_agree_with_and_without_the_kernels(lib, monkeypatch):
    W0 = awkward(3000, 20, seed=4).clamp(-1e15, 1e15)  # a Gram that stays finite
    c = torch.randn(20, 1, dtype=torch.float64)
    for name, W in layouts(W0).items():  # in chunks of 700 rows: the kernels start mid-W
        fast = snapshots.deviation_gram(W, 700), snapshots.step_gram(W, 700), matmul_chunked(W, c)
        with monkeypatch.context() as m:
            m.setattr(native, "library", lambda: None)
            slow = snapshots.deviation_gram(W, 700), snapshots.step_gram(W, 700), matmul_chunked(W, c)
        for a, b in zip(fast[:2], slow[:2]):  # the same float64 numbers in the same GEMM
            assert torch.equal(a, b), name
        exact = W0.double() @ c
        bound = EPS32 * exact.abs() + 4 * 20 * EPS64 * (W0.double().abs() @ c.abs())
        for out in (fast[2], slow[2]):
            assert bool(((out.double() - exact).abs() <= bound).all()), name


def test_the_environment_switch_turns_them_off():
    code = ("from koopman_tut.numerics import native, snapshots; import torch; "
            "W = torch.randn(100, 5); assert native.library() is None; "
            "assert native.chunk_pass('kt_deviations', torch.empty(100, 5, dtype=torch.float64), W) is None; "
            "print(float(snapshots.deviation_gram(W)[0, 0]))")
    env = dict(os.environ, **{native.ENV: "0"})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) >= 0


def test_the_switch_takes_words_and_names_itself_on_a_typo(monkeypatch):
    for value, on in [("0", False), (" Off ", False), ("false", False), ("no", False), ("1", True), ("ON", True),
                      ("", True)]:
        monkeypatch.setenv(native.ENV, value)
        assert native.switched_on() is on, value
    monkeypatch.delenv(native.ENV)
    assert native.switched_on()
    monkeypatch.setenv(native.ENV, "flase")
    with pytest.raises(ValueError, match="KOOPMAN_TUT_NATIVE='flase'"):
        native.switched_on()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64])
def test_all_finite_is_isfinite_all(dtype):
    assert finite.all_finite(torch.empty(0, dtype=dtype))
    for n in (1, 2, 7, 16, 33, 70, 1025):
        x = torch.randn(n).to(dtype)
        assert finite.all_finite(x) and finite.all_finite(x.reshape(1, n, 1))
        for bad in (float("nan"), float("inf"), -float("inf")):
            for i in sorted({0, n // 2, n - 1}):
                y = x.clone()
                y[i] = bad
                assert not finite.all_finite(y), (n, i, bad)
                assert not finite.all_finite(y.flip(0)), (n, i, bad)
    z = torch.complex(torch.zeros(3), torch.tensor([0.0, float("nan"), 0.0]))
    assert not finite.all_finite(z) and not finite.all_finite(z.conj()) and finite.all_finite(z[::2].conj())
    assert not finite.all_finite(torch._neg_view(torch.tensor([1.0, -float("inf")])))
    assert finite.all_finite(torch.arange(5)) and finite.all_finite(torch.ones(3, dtype=torch.bool))
    if hasattr(torch, "float8_e5m2"):  # no aminmax there: torch.isfinite answers
        assert not finite.all_finite(torch.tensor([1.0, float("inf")]).to(torch.float8_e5m2))


def test_a_smaller_team_than_asked_for_still_does_every_row(lib):
    """OpenMP may give fewer threads than asked (OMP_THREAD_LIMIT, nesting): the blocks no thread
    started on are done by the ones that ran."""
    code = ("import torch; from koopman_tut.numerics import native; torch.set_num_threads(4); "
            "W = torch.randn(50_000, 8); d = torch.full((50_000, 8), float('nan'), dtype=torch.float64); "
            "assert native.library() is not None and native.chunk_pass('kt_deviations', d, W)(0, 50_000); "
            "assert torch.equal(d[:, -1], W[:, -1].double()) and not bool(d.isnan().any()); "
            "out = native.combine(W, torch.ones(8, dtype=torch.float64)); "
            "ref = W.double().sum(1); assert bool(((out.double() - ref).abs() <= 1e-6 * W.abs().sum(1)).all())")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("n, T", [(9, 5), (5000, 16), (4099, 67)])
def test_a_combination_sums_snapshot_by_snapshot_in_float64(lib, n, T):
    """Snapshot-major sums in a fixed order, checked bit for bit: the products of snapshot 0, 1, 2, ...
    added in turn (four a sweep, in that order). Every row is constant over the snapshots and c sums to
    about 0, so each output is the rounding of its float64 sum alone: another order gives another number."""
    g = torch.Generator().manual_seed(n + T)
    W = torch.randn(n, 1, generator=g).expand(n, T)
    c = torch.randn(T, generator=g, dtype=torch.float64) * 1e3
    c[-1] -= c.sum()

    def summed(order):
        acc = torch.zeros(n, dtype=torch.float64)
        for ts in order:  # each group summed first, then added: ((0 + g_0) + g_1) + ...
            acc = acc + sum(W[:, t].double() * c[t] for t in ts)
        return acc.float()

    out = native.combine(W.T.contiguous().T, c)
    assert out is not None and torch.equal(out, summed([[t] for t in range(T)]))
    if n > 100:  # the control: products added in pairs first give other numbers
        assert bool((summed([range(t, min(t + 2, T)) for t in range(0, T, 2)]) != out).float().mean() > 0.1)


def _copier(lib):
    if native.row_copy([torch.zeros(1)], torch.zeros(1, 1)) is None:
        pytest.fail("the library was built but row_copy does not apply to one float32 value")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_row_copy_writes_its_row_and_nothing_else(lib, dtype, threads):
    """Pieces of every size (empty, shorter than a 16-byte store, cut by a thread's part anywhere) into rows
    that start at every alignment (n odd): each row equals the pieces concatenated, bit for bit, and the
    other rows and the bytes around the storage keep their sentinels."""
    _copier(lib)
    g = torch.Generator().manual_seed(threads)
    sizes = [0, 1, 3, 17, 5, 100_003, 64, 0, 61_441, 7]  # 161,541 values: parts of 128 KiB or more from 2 bytes a value
    assert sum(sizes) * dtype.itemsize % 64  # the last part ends off a multiple of 64 bytes, where the others end
    pieces = [torch.randn(s, generator=g).to(dtype) for s in sizes]
    pieces[1][0] = float("nan")  # copied as bytes: a NaN's payload too
    n, cap = sum(sizes), 5
    whole = torch.full((cap * n + 2 * 37,), 7.0, dtype=dtype)
    store = whole[37:37 + cap * n].view(cap, n)  # row k starts at byte offset (37 + k n) * itemsize
    copy = native.row_copy(pieces, store)
    assert copy is not None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for k in (3, 0, 4):
            copy(k)
    finally:
        torch.set_num_threads(before)
    flat = torch.cat(pieces)
    for k in range(cap):
        row = store[k]
        if k in (0, 3, 4):
            bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]
            assert torch.equal(row.view(bits), flat.view(bits)), k
        else:
            assert bool(row.eq(7.0).all()), k
    assert bool(whole[:37].eq(7.0).all()) and bool(whole[37 + cap * n:].eq(7.0).all())
    for k in (-1, cap):
        with pytest.raises(IndexError, match=f"row {k} of a storage of {cap} rows"):
            copy(k)


def test_a_row_copy_applies_only_where_it_can(lib):
    _copier(lib)
    store = torch.zeros(3, 10)
    ok = [torch.randn(4), torch.randn(6)]
    assert native.row_copy(ok, store) is not None
    assert native.row_copy(ok, torch.zeros(3, 11)) is None  # not a row's worth of values
    assert native.row_copy([ok[0], ok[1].double()], store) is None  # another dtype: converted by torch
    assert native.row_copy([ok[0], torch.randn(12)[::2]], store) is None  # not contiguous
    assert native.row_copy(ok, torch.zeros(10, 3).T) is None  # rows not contiguous
    assert native.row_copy([], torch.zeros(3, 0)) is None
    assert native.row_copy(ok, torch.zeros(0, 10)) is None  # no rows
    assert native.row_copy([torch.tensor(1.0), torch.randn(9)], store) is None  # a 0-d source: flat pieces only
    assert native.row_copy(ok, torch.zeros(20).as_strided((3, 10), (5, 1))) is None  # rows overlapping
    assert native.row_copy(ok, torch.zeros(10).expand(3, 10)) is None  # one row seen three times
    assert native.row_copy([store[1, :4], ok[1]], store) is None  # a source inside the storage: read as written
    assert native.row_copy([torch.zeros(40)[30:34], ok[1]], torch.zeros(40)[:30].view(3, 10)) is not None  # beside it
    assert native.row_copy([ok[0], torch._neg_view(ok[1])], store) is None  # a lazy negation: the bytes are not it
    if torch.cuda.is_available():
        assert native.row_copy([ok[0].cuda(), ok[1]], store) is None


def test_a_row_copy_is_switched_off_with_the_kernels(monkeypatch):
    monkeypatch.setattr(native, "_built", lambda: None)
    assert native.row_copy([torch.randn(4)], torch.zeros(2, 4)) is None


def test_a_chunk_pass_writes_the_rows_asked_for_and_refuses_others(lib):
    W = awkward(100, 6)
    row_major, snapshot_major = (torch.full((30, 6), float("nan"), dtype=torch.float64),
                                 torch.full((6, 30), float("nan"), dtype=torch.float64).T)
    assert native.chunk_pass("kt_steps", row_major, W.T.contiguous().T) is None  # the layouts must match
    for dst, X in ((row_major, W), (snapshot_major, W.T.contiguous().T)):
        fill = native.chunk_pass("kt_steps", dst, X)
        assert fill is not None
        for start, stop in [(-1, 5), (5, 5), (7, 3), (90, 101), (0, 31)]:  # outside W, or more rows than dst
            assert not fill(start, stop) and bool(dst.isnan().all()), (start, stop)
        for start, stop in [(70, 100), (88, 100)]:  # a full chunk, and a short last one
            assert fill(start, stop)
            x = X[start:stop].double()  # torch's route: each value converted, then differenced
            ref = torch.cat([x[:, 1:] - x[:, :-1], 0.0 - x[:, -1:]], 1)
            assert torch.equal(dst[:stop - start], ref), (start, stop)
            assert bool(dst[stop - start:].isnan().all())  # the rows past the chunk are not written
            dst.fill_(float("nan"))
    assert native.chunk_pass("kt_steps", torch.empty(0, 6, dtype=torch.float64), W) is None
    assert native.chunk_pass("kt_steps", torch.empty(30, 5, dtype=torch.float64), W) is None
    assert native.chunk_pass("kt_steps", torch.empty(30, 6), W) is None  # float32: not a float64 buffer
