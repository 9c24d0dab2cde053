"""What a computation on W will allocate is checked before it starts (numerics/memory.py), and the CPU's
vendor that picks the float64 passes' route is read right (numerics/cpu_routes.py)."""
import math
import os
import subprocess
import sys

import pytest
import torch

import koopman_tut as kt
from koopman_tut.numerics import cpu_routes, memory
from koopman_tut.numerics.extrapolation import AffineModel


def _lazy(*shape, dtype=torch.float64):
    return torch.zeros((1,) * len(shape), dtype=dtype).expand(*shape)  # a shape without its memory


@pytest.mark.parametrize("shape, dtype, per_gram, name_t", [
    ((5, 3000), torch.float64, 3000 * 3000 * 8, "W.T"),  # wide
    ((6000, 3000), torch.float64, 3000 * 3000 * 8, "W.T"),  # tall: T x T all the same
    ((2, 5, 3000), torch.float64, 2 * 3000 * 3000 * 8, "W.mT"),  # one Gram per leading index
    ((5, 3000), torch.complex128, 3000 * 3000 * 16, "W.T"),
])
def test_the_gram_guard_counts_what_the_pass_and_the_solve_need(monkeypatch, shape, dtype, per_gram, name_t):
    W = _lazy(*shape, dtype=dtype)
    need = memory.GRAM_COPIES * per_gram
    gram_dtype = torch.complex128 if dtype.is_complex else torch.float64
    monkeypatch.setattr(memory, "available_bytes", lambda device: need)
    memory.check_gram_fits(W, gram_dtype)  # fits exactly
    monkeypatch.setattr(memory, "available_bytes", lambda device: need - 1)
    with pytest.raises(MemoryError, match=rf"W has shape {tuple(shape)}".replace("(", r"\(").replace(")", r"\)")) as e:
        memory.check_gram_fits(W, gram_dtype)
    assert f"pass {name_t}" in str(e.value) and (("2 of them" in str(e.value)) == (len(shape) == 3))


def test_small_grams_are_not_probed(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 0)  # a probe would refuse everything
    memory.check_gram_fits(_lazy(10, 700))  # 13 Grams of 3.9 MB: below PROBE_BYTES
    with pytest.raises(MemoryError):
        memory.check_gram_fits(_lazy(10, 1000))  # 13 of 8 MB


def test_every_entry_point_refuses_before_allocating_and_names_its_argument(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)  # 1 MiB free
    W = torch.zeros(4, 3000, dtype=torch.float64)
    traj = kt.Trajectory(W, torch.arange(3000), ["p"], [(4,)], {})
    for call, name in ((lambda: kt.dmd(W, method="gram"), "W"), (lambda: kt.koopman(traj), "traj.snapshots"),
                       (lambda: kt.estimate_limit(W, "mpe"), "traj_or_W"), (lambda: AffineModel(W, 0), "W")):
        with pytest.raises(MemoryError, match=rf"^{name} has shape \(4, 3000\): 3,000 snapshots"):
            call()
    with pytest.raises(MemoryError, match=r"kt.dmd's SVD route .* about 9 float64 copies of it: about"):
        kt.dmd(torch.zeros(400, 3000, dtype=torch.float64), method="svd")  # 9.6 MB x 9 > 1 MiB


def test_the_amplitude_fit_is_checked_before_its_m_r_by_r_matrix(monkeypatch):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(400, 132, generator=g, dtype=torch.float64)  # full rank 130: (130 * 130, 130) complex128
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**26)
    with pytest.raises(MemoryError, match=r"amplitude fit over 131 differences at rank 130 \(a lower svd_rank"):
        AffineModel(W, -1)
    assert AffineModel(W, 0).rank < 130  # the rank rule's model fits


def test_a_cgroup_limit_counts_as_the_free_memory(monkeypatch, tmp_path):
    limit, used = tmp_path / "memory.max", tmp_path / "memory.current"
    monkeypatch.setattr(memory, "CGROUP_FILES", ((str(limit), str(used)),))
    assert memory._cgroup_room() == math.inf  # no such files
    limit.write_text("max\n")
    used.write_text("123\n")
    assert memory._cgroup_room() == math.inf
    limit.write_text(f"{2**30}\n")
    assert memory._cgroup_room() == 2**30 - 123
    assert memory.available_bytes(torch.device("cpu")) <= 2**30 - 123


@pytest.mark.parametrize("text, vendor", [("processor\t: 0\nvendor_id\t: GenuineIntel\n", "GenuineIntel"),
                                          ("vendor_id\t: AuthenticAMD\ncpu family\t: 25\n", "AuthenticAMD"),
                                          ("processor : 0\n", "")])
def test_the_cpu_vendor_is_read_from_cpuinfo(monkeypatch, tmp_path, text, vendor):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    monkeypatch.setattr(cpu_routes, "CPUINFO", str(path))
    assert cpu_routes.cpu_vendor() == vendor
    monkeypatch.setattr(cpu_routes, "CPUINFO", str(tmp_path / "missing"))
    assert cpu_routes.cpu_vendor() == ""


@pytest.mark.slow
def test_the_gram_routes_peak_memory_is_within_what_the_guard_counts():
    """The guard's count is an upper bound of what kt.dmd's Gram route holds at its peak: in a fresh process, the
    peak resident memory (reset to the current one before the call, Linux's clear_refs) beyond what it held
    before, in (T, T) float64 Grams (7.5 at T = 3,000). The process's own peak from importing torch can exceed
    the call's, so its lifetime peak (getrusage) read 0 on another machine."""
    code = ("import torch, koopman_tut as kt\n"
            "def status(key):\n"
            "    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(key))\n"
            "W = torch.randn(8, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))\n"
            "kt.dmd(torch.randn(8, 40, dtype=torch.float64), method='gram')\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "base = status('VmRSS:')\n"
            "kt.dmd(W, method='gram')\n"
            "print((status('VmHWM:') - base) / (3000 * 3000 * 8))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    grams = float(out.stdout.split()[-1])
    assert 1 < grams <= memory.GRAM_COPIES, grams
