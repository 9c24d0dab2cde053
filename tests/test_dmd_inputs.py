"""Bad arguments to a DMD result's methods, a batched kt.dmd, and the device arguments: each error names the
argument and what was expected (a review found torch's and Python's own messages here: "index 10 is out of
bounds", "complex() arg is a malformed string", "mat1 and mat2 shapes cannot be multiplied", "Found no NVIDIA
driver", and a batch whose second item is zero refused as "W is all zeros")."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import koopman_tut as kt


@pytest.fixture(scope="module")
def res():
    g = torch.Generator().manual_seed(0)
    A = torch.diag(torch.tensor([1.0, 0.9, 0.8, 0.5, 0.3], dtype=torch.float64))
    W = torch.linalg.matrix_exp(0.1 * torch.randn(5, 5, dtype=torch.float64, generator=g)) @ A
    x = torch.randn(5, dtype=torch.float64, generator=g)
    cols = [x]
    for _ in range(9):
        cols.append(W @ cols[-1])
    out = kt.dmd(torch.stack(cols, 1))
    assert out.rank == 5
    return out


@pytest.mark.parametrize("call, error, match", [
    (lambda r: r.mode(10), ValueError, r"index must be mode indices in \[-5, 4\] \(rank 5\), got \[10\]"),
    (lambda r: r.mode(1.0), TypeError, r"index must be integer mode indices, got 1.0"),
    (lambda r: r.mode("a"), TypeError, r"index must be integer mode indices, got 'a'"),
    (lambda r: r.predict(3, indices=[0, 7]), ValueError, r"indices must be mode indices"),
    (lambda r: r.near("a"), ValueError, r"value must be a finite \(complex\) number, got 'a'"),
    (lambda r: r.near(1.0, radius=-1), ValueError, r"radius must be a finite number >= 0, got -1"),
    (lambda r: r.slow_part(radius=float("nan")), ValueError, r"radius must be a finite number >= 0, got nan"),
    (lambda r: r.combine(torch.ones(2)), ValueError, r"weights must be \(5,\) or \(5, k\).*got shape \(2,\)"),
    (lambda r: r.combine(torch.ones(5, 2, 2)), ValueError, r"weights must be .*got shape \(5, 2, 2\)"),
    (lambda r: r.predict("3"), TypeError, r"t must be a number of snapshots or a sequence of them, got .3."),
    (lambda r: r.predict(True), TypeError, r"t must be a number"),
    (lambda r: r.predict([[1, 2], [3, 4]]), ValueError,  # torch's "size of tensor a (2) must match ..."
     r"t must be a number of snapshots or a 1-D sequence of them, got shape \(2, 2\)"),
    (lambda r: r.predict(1, indices=[]), ValueError, r"indices is empty: give at least one mode index"),
    (lambda r: r.mode(torch.tensor([], dtype=torch.long)), ValueError, r"index is empty"),
])
def test_result_methods_name_the_bad_argument(res, call, error, match):
    with pytest.raises(error, match=match):
        call(res)


def test_result_methods_take_what_they_document(res):
    assert res.mode(0).shape == (5,) and res.mode([0, -1]).shape == (5, 2)
    assert res.mode(np.int64(1)).shape == (5,) and res.near(1.0, radius=0).numel() in (0, 1)
    assert torch.allclose(res.predict(np.float64(2.0)), res.predict(2))
    assert res.combine(torch.ones(5)).shape == (5,) and res.combine(torch.ones(5, 3)).shape == (5, 3)


def test_a_0d_integer_tensor_picks_one_mode_as_an_int_does(res):
    # mode(torch.tensor(0)) gave shape (5, 1), mode(0) shape (5,)
    assert res.mode(torch.tensor(0)).shape == res.mode(np.array(2)).shape == res.mode(0).shape == (5,)
    assert torch.equal(res.mode(torch.tensor(-1)), res.mode(-1)) and res.mode(torch.tensor([1])).shape == (5, 1)


def test_a_batch_item_that_cannot_be_decomposed_is_named():
    W = torch.randn(2, 30, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    W[1] = 0
    for method in ("svd", "gram"):
        with pytest.raises(ValueError, match=r"batch item W\[1\] of 2: W is all zeros"):
            kt.dmd(W, method=method)
    assert len(kt.dmd(W[:1])) == 1  # the control


def test_a_masked_array_with_masked_entries_is_refused():
    a = np.ma.masked_array(np.random.default_rng(0).normal(size=(20, 6)))
    assert kt.dmd(a).rank >= 1  # nothing masked: its data
    a[3, 2] = np.ma.masked
    with pytest.raises(TypeError, match=r"W is a masked array with masked entries"):
        kt.dmd(a)


@pytest.mark.parametrize("device, match", [
    ("gpu", r"device='gpu' is not a device: expected 'cpu', 'cuda'"),
    ("meta", r"device='meta' holds no values"),
    (torch.device("cuda", 7), r"device=device\(type='cuda', index=7\), but this machine has \d+ usable CUDA"),
    (1.5, r"device must be a device \(a str"),
])
def test_the_recorders_device_and_loads_map_location_are_checked(device, match, tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    error = TypeError if isinstance(device, float) else ValueError
    with pytest.raises(error, match=match):
        kt.TrajectoryRecorder(model, opt, stop=3, device=device)
    rec = kt.TrajectoryRecorder(model, opt, stop=3)
    for _ in range(3):
        opt.step()
    rec.trajectory().save(tmp_path / "t.pt")
    if not isinstance(device, float):  # map_location also takes dicts and callables, as torch.load does
        with pytest.raises(ValueError, match=match.replace("device", "map_location", 1)):
            kt.Trajectory.load(tmp_path / "t.pt", map_location=device)
    assert kt.Trajectory.load(tmp_path / "t.pt", map_location="cpu").snapshots.shape == (8, 4)


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_float32_data_whose_singular_values_pass_float32s_range_are_refused(method):
    """Entries near float32's largest give a norm beyond it: the singular values came back inf, silently."""
    W = torch.rand(4, 3, generator=torch.Generator().manual_seed(0)) * 3e38
    with pytest.raises(ValueError, match="pass the range of torch.float32.*float64"):
        kt.dmd(W, method=method)
    assert torch.isfinite(kt.dmd(W.double(), method=method).singular_values).all()  # the advice works


def test_a_numpy_memory_map_in_snapshot_major_layout_is_read_in_place(tmp_path):
    """np.load(mmap_mode='r').T of a (T, n) file: a view, as a torch view of it is (np.ascontiguousarray copied it
    whole before: 160 MB for a 20 x 2,000,000 float32 file, kept in the result); the answer is the same."""
    from koopman_tut.numerics.snapshots import as_snapshots

    a = np.lib.format.open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.float32, shape=(12, 5000))
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    for t in range(12):
        a[t] = x * 0.9**t + 1.0
    a.flush()
    W = np.load(tmp_path / "w.npy", mmap_mode="r").T  # (n, T), read-only
    assert np.shares_memory(as_snapshots(W).numpy(), W)
    res = kt.dmd(W, method="gram")
    assert np.shares_memory(res.W.numpy(), W)
    torch.testing.assert_close(res.eigs, kt.dmd(np.ascontiguousarray(W), method="gram").eigs)
    flipped = np.ascontiguousarray(W)[:, ::-1]  # negative strides: torch cannot view them, so this one is copied
    assert torch.equal(as_snapshots(flipped), torch.from_numpy(flipped.copy()))
