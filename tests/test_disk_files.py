"""Recorder files and saved trajectories never lose data: no overwrite unasked, no symlink followed,
no second writer, modes from the umask, and a failed allocation leaves the old file and no stub."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import koopman_tut as kt

ROOT = Path(__file__).resolve().parents[1]


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def steps(model, opt, k: int) -> None:
    for _ in range(k):
        opt.zero_grad()
        model(torch.randn(16, 8)).pow(2).sum().backward()
        opt.step()


def test_an_existing_file_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "run.traj"
    path.write_bytes(b"an earlier recording")
    model, opt = tiny()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kt.TrajectoryRecorder(model, opt, max_snapshots=4, path=path)
    assert path.read_bytes() == b"an earlier recording" and os.listdir(tmp_path) == ["run.traj"]
    rec = kt.TrajectoryRecorder(model, opt, max_snapshots=4, path=path, overwrite=True)
    steps(model, opt, 2)
    rec.remove()
    assert torch.equal(kt.Trajectory.load(path).snapshots, rec.trajectory().snapshots)
    assert os.listdir(tmp_path) == ["run.traj"]  # no temporary file left
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        kt.TrajectoryRecorder(model, opt, max_snapshots=4, path=tmp_path / "b.traj", overwrite="yes")


def test_a_window_that_would_record_nothing_leaves_no_file(tmp_path):
    """step0 past stop: refused before the file is created (it would stay locked "in progress", empty)."""
    model, opt = tiny()
    with pytest.raises(ValueError, match=r"stop must be >= step0, got stop=5, step0=10"):
        kt.TrajectoryRecorder(model, opt, stop=5, step0=10, path=tmp_path / "run.traj")
    assert os.listdir(tmp_path) == []


def test_a_symlink_is_never_followed(tmp_path):
    model, opt = tiny()
    target, link = tmp_path / "target", tmp_path / "run.traj"
    link.symlink_to(target)  # dangling
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="symbolic link"):
            kt.TrajectoryRecorder(model, opt, max_snapshots=4, path=link, overwrite=overwrite)
        assert not target.exists()
    target.write_bytes(b"keep")
    with pytest.raises(ValueError, match="symbolic link"):
        kt.TrajectoryRecorder(model, opt, max_snapshots=4, path=link, overwrite=True)
    assert target.read_bytes() == b"keep" and sorted(os.listdir(tmp_path)) == ["run.traj", "target"]


def test_a_second_recorder_on_the_same_path_is_refused(tmp_path):
    path = tmp_path / "run.traj"
    model, opt = tiny()
    first = kt.TrajectoryRecorder(model, opt, max_snapshots=10, path=path)
    steps(model, opt, 2)
    other, other_opt = tiny(1)
    with pytest.raises(FileExistsError, match="being written by another TrajectoryRecorder: choose another path"):
        kt.TrajectoryRecorder(other, other_opt, max_snapshots=10, path=path)
    with pytest.raises(FileExistsError, match="another TrajectoryRecorder"):
        kt.TrajectoryRecorder(other, other_opt, max_snapshots=10, path=path, overwrite=True)
    steps(model, opt, 2)  # the first keeps recording into the file at path
    t = kt.Trajectory.load(path)
    assert len(t) == 5 and t.meta["recording"] == "in progress"
    assert torch.equal(t.snapshots, first.trajectory().snapshots)
    first.remove()
    assert "recording" not in kt.Trajectory.load(path).meta  # closed: 5 of 10, complete
    second = kt.TrajectoryRecorder(other, other_opt, max_snapshots=10, path=path, overwrite=True)
    assert torch.equal(kt.Trajectory.load(path).snapshots, second.trajectory().snapshots)
    assert torch.equal(t.snapshots, first.trajectory().snapshots)  # the old mapping still reads the old file


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_file_modes_follow_the_umask(tmp_path, umask):
    model, opt = tiny()
    old = os.umask(umask)
    try:
        rec = kt.TrajectoryRecorder(model, opt, max_snapshots=2, path=tmp_path / "run.traj")
        rec.trajectory().save(tmp_path / "run.pt")
    finally:
        os.umask(old)
    for name in ("run.traj", "run.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name
    assert sorted(os.listdir(tmp_path)) == ["run.pt", "run.traj"]


def test_save_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    model, opt = tiny()
    target, link = tmp_path / "target", tmp_path / "run.pt"
    target.write_bytes(b"keep")
    link.symlink_to(target)
    kt.TrajectoryRecorder(model, opt, max_snapshots=2).trajectory().save(link)
    assert target.read_bytes() == b"keep" and not link.is_symlink() and len(kt.Trajectory.load(link)) == 1


LIMITED = """
import resource, sys, torch
import koopman_tut as kt
model = torch.nn.Linear(256, 256)  # 65,792 values: 257 KiB a snapshot
opt = torch.optim.SGD(model.parameters(), lr=0.1)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # files of at most 1 MiB
try:
    kt.TrajectoryRecorder(model, opt, max_snapshots=100, path=sys.argv[1], overwrite=sys.argv[2] == "overwrite")
except OSError as e:
    print(e)
    sys.exit(3)
"""


def test_a_failed_allocation_keeps_the_old_file_and_leaves_no_stub(tmp_path):
    path = tmp_path / "run.traj"
    model, opt = tiny()
    rec = kt.TrajectoryRecorder(model, opt, max_snapshots=3, path=path)
    steps(model, opt, 2)
    rec.remove()
    before = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for target, how in ((path, "overwrite"), (tmp_path / "new.traj", "new")):
        p = subprocess.run([sys.executable, "-c", LIMITED, str(target), how], env=env, timeout=120,
                           capture_output=True, text=True)
        assert p.returncode == 3 and "cannot reserve" in p.stdout, (p.stdout, p.stderr[-3000:])
        assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.traj"]
    assert len(kt.Trajectory.load(path)) == 3
