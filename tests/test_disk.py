"""Trajectories on disk: recording into a memory-mapped file, loading it back, interrupted runs, memory."""
import json
import os
import re
import zlib
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import koopman_tut as kt
from koopman_tut.recording.storage import MAGIC, DiskStorage, read_header
from koopman_tut.training.train import make_optimizer, train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::koopman_tut.numerics.extrapolation.DriftWarning")  # short windows drift


@pytest.fixture()
def setup():
    tr, te = kt.data.digits(seed=0)
    loader, _ = kt.data.loaders(tr, te, batch_size=256, seed=0)
    model = kt.models.get_model("mlp", seed=0, hidden=(32, 16))
    return model, make_optimizer(model, "momentum", lr=0.1, momentum=0.9), loader


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_window_on_disk_equals_the_one_in_memory(setup, tmp_path):
    model, opt, loader = setup
    path = tmp_path / "run.traj"
    mem = kt.TrajectoryRecorder(model, opt, start=2, stop=12, every=2)
    disk = kt.TrajectoryRecorder(model, opt, start=2, stop=12, every=2, path=path)
    train(model, loader, epochs=3, max_steps=12, optimizer=opt, progress=False)
    a, b, c = mem.trajectory(), disk.trajectory(), kt.Trajectory.load(path)
    for t in (b, c):
        assert torch.equal(t.snapshots, a.snapshots) and torch.equal(t.steps, a.steps) and len(t) == 6
        assert t.names == a.names and t.shapes == a.shapes and t.meta == a.meta
    # a view of the mapped rows, not a copy; writing to it leaves the file alone (copy-on-write)
    assert c.snapshots.stride() == (1, c.n_features)
    c.snapshots[0, 0] = 123.0
    assert torch.equal(kt.Trajectory.load(path).snapshots, a.snapshots)
    c = kt.Trajectory.load(path)
    d_mem, d_disk = kt.dmd(a.snapshots), kt.dmd(c.snapshots)
    assert torch.equal(d_disk.eigs, d_mem.eigs) and torch.equal(d_disk.fixed_point(), d_mem.fixed_point())
    g_mem, g_disk = kt.dmd(a.snapshots, method="gram"), kt.dmd(c.snapshots, method="gram")
    assert torch.equal(g_disk.eigs, g_mem.eigs)
    assert torch.equal(kt.koopman(c).fixed_point(), kt.koopman(a).fixed_point())
    # the torch format still loads, and a disk trajectory can be saved in it
    c.save(tmp_path / "copy.pt")
    e = kt.Trajectory.load(tmp_path / "copy.pt")
    assert torch.equal(e.snapshots, a.snapshots) and e.meta["lrs"] == a.meta["lrs"]


@pytest.mark.parametrize("where", ["write", "log", "commit", "after commit"])
def test_an_interrupt_inside_a_snapshot_drops_it_whole_and_recording_goes_on(setup, tmp_path, monkeypatch, where):
    """Ctrl-C landing while snapshot k is written (its row, its settings, its commit to the file), then training
    resumed: snapshot k is dropped whole, in memory and in the file, and the next one takes its row. It used to
    leave the file with a hole after which every later step was written (the whole file refused on load), or
    the settings log one entry short of the steps (trajectory() refused)."""
    from koopman_tut.recording import rows, settings_log, storage

    model, opt, loader = setup
    path = tmp_path / "run.traj"
    rec = kt.TrajectoryRecorder(model, opt, stop=12, path=path)
    target = {"write": (rows.RowWriter, "write"), "log": (settings_log.SettingsLog, "log"),
              "commit": (storage.DiskStorage, "commit"), "after commit": (storage.DiskStorage, "commit")}[where]
    hits = []

    def interrupting(original):
        def interrupted(self, *args):
            if rec.step == 5 and not hits:
                hits.append(1)
                if where == "after commit":
                    original(self, *args)
                raise KeyboardInterrupt
            return original(self, *args)
        return interrupted

    monkeypatch.setattr(*target, interrupting(getattr(*target)))
    if where == "log":  # where the per-step checks held in one call, the last row is logged again
        monkeypatch.setattr(settings_log.SettingsLog, "repeat", interrupting(settings_log.SettingsLog.repeat))
    truth, done = {0: flat(model)}, 0
    while done < 12:
        try:
            train(model, loader, epochs=1, max_steps=1, optimizer=opt, progress=False, seed=done)
        except KeyboardInterrupt:
            pass
        done += 1
        truth[rec.step] = flat(model)
    assert hits and rec.steps == [s for s in range(13) if s != 5]
    for t in (rec.trajectory(), kt.Trajectory.load(path)):
        assert t.steps.tolist() == rec.steps and len(t.meta["lrs"]) == len(rec.steps)
        assert torch.equal(t.snapshots, torch.stack([truth[s] for s in rec.steps], 1))


@pytest.mark.parametrize("stop", [3, 6, 7])
def test_stop_lowered_below_the_next_snapshot_completes_the_file(setup, tmp_path, stop):
    """stop may be changed while recording: lowered below the next snapshot's step (after 6 steps, every 2), the
    window has ended and the file is complete, not "stopped early" with a warning when the process exits."""
    model, opt, loader = setup
    path = tmp_path / "run.traj"
    rec = kt.TrajectoryRecorder(model, opt, stop=20, every=2, path=path)
    train(model, loader, epochs=1, max_steps=6, optimizer=opt, progress=False)
    rec.stop = stop
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = kt.Trajectory.load(path)
    assert t.steps.tolist() == [0, 2, 4, 6] and "recording" not in t.meta
    with pytest.raises(ValueError, match="the recording's file is closed .* start a new TrajectoryRecorder"):
        rec.stop = 20  # a closed file: it would have gone on writing into it, unlocked, marked complete
    rec.stop = 5  # not later than the last step taken: nothing to write
    train(model, loader, epochs=1, max_steps=4, optimizer=opt, progress=False)
    rec.remove()
    assert kt.Trajectory.load(path).steps.tolist() == [0, 2, 4, 6] and "recording" not in kt.Trajectory.load(path).meta


def test_stop_lowered_to_a_later_snapshot_goes_on_recording(setup, tmp_path):
    model, opt, loader = setup
    path = tmp_path / "run.traj"
    rec = kt.TrajectoryRecorder(model, opt, stop=20, every=2, path=path)
    train(model, loader, epochs=1, max_steps=6, optimizer=opt, progress=False)
    rec.stop = 8  # the snapshot of step 8 is still due
    assert kt.Trajectory.load(path).meta.get("recording") == "in progress"
    train(model, loader, epochs=1, max_steps=4, optimizer=opt, progress=False)
    assert rec.steps == [0, 2, 4, 6, 8] and "recording" not in kt.Trajectory.load(path).meta


def test_header_is_documented_json(setup, tmp_path):
    model, opt, loader = setup
    kt.TrajectoryRecorder(model, opt, stop=3, path=tmp_path / "r.traj", dtype=torch.bfloat16, sync=True)
    train(model, loader, epochs=1, max_steps=2, optimizer=opt, progress=False)
    header, count = read_header(tmp_path / "r.traj")
    assert count == 3 and header["capacity"] == 4 and header["dtype"] == "bfloat16"
    assert header["format"] == "koopman_tut.recording.trajectory-mmap" and header["version"] == 3
    assert header["groups"] == 1 and header["settings"] == ["lr", "momentum", "dampening", "weight_decay",
                                                             "nesterov", "maximize", "restarts"]
    assert header["settings_offset"] == header["steps_offset"] + 8 * 4  # capacity 4
    assert header["data_offset"] >= header["settings_offset"] + 8 * 4 * 7
    assert header["data_offset"] % 4096 == 0 and header["meta"]["momentum"] == 0.9
    raw = (tmp_path / "r.traj").read_bytes()
    length = int.from_bytes(raw[24:28], "little")
    assert raw[:8] == MAGIC and raw[16:24] == b"WRITING\0" and json.loads(raw[32:32 + length]) == header
    assert zlib.crc32(raw[24:28] + raw[32:32 + length]) == int.from_bytes(raw[28:32], "little")
    assert header["steps_offset"] == 32 + length and header["byteorder"] == sys.byteorder
    t = kt.Trajectory.load(tmp_path / "r.traj")
    assert t.snapshots.dtype == torch.bfloat16 and t.steps.tolist() == [0, 1, 2]


def test_an_abandoned_recording_loads_with_the_complete_snapshots(setup, tmp_path):
    model, opt, loader = setup
    path = tmp_path / "run.traj"
    rec = kt.TrajectoryRecorder(model, opt, stop=20, path=path)
    train(model, loader, epochs=1, max_steps=3, optimizer=opt, progress=False)
    expect = rec.trajectory(copy=True)
    del rec  # never removed: the file is read while the hook is still registered
    t = kt.Trajectory.load(path)
    assert len(t) == 4 and torch.equal(t.snapshots, expect.snapshots)
    # a snapshot half written when the process died is not counted
    header, count = read_header(path)
    with open(path, "r+b") as f:
        f.seek(header["data_offset"] + count * header["n"] * 4)
        f.write(np.full(100, np.nan, dtype=np.float32).tobytes())
    assert torch.equal(kt.Trajectory.load(path).snapshots, expect.snapshots)
    train(model, loader, epochs=1, max_steps=2, optimizer=opt, progress=False)  # still recording
    assert len(kt.Trajectory.load(path)) == 6


KILLED = """
import os, signal, sys, torch
import koopman_tut as kt
from koopman_tut.training.train import make_optimizer, train
tr, te = kt.data.digits(seed=0)
loader, _ = kt.data.loaders(tr, te, batch_size=256, seed=0)
model = kt.models.get_model("mlp", seed=0, hidden=(32, 16))
opt = make_optimizer(model, "sgd", lr=0.1)
rec = kt.TrajectoryRecorder(model, opt, stop=100, path=sys.argv[1])
train(model, loader, epochs=1, max_steps=5, optimizer=opt, progress=False)
torch.save(rec.trajectory(copy=True).snapshots, sys.argv[2])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_with_sigkill_keeps_what_it_recorded(tmp_path):
    path, expect = tmp_path / "run.traj", tmp_path / "expect.pt"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", KILLED, str(path), str(expect)], env=env, timeout=120,
                       capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr
    with pytest.warns(kt.RecordingCutShortWarning, match="cut short .* after 6 of 101 snapshots"):
        t = kt.Trajectory.load(path)
    assert len(t) == 6 and t.steps.tolist() == list(range(6)) and t.meta["recording"] == "cut short"
    assert torch.equal(t.snapshots, torch.load(expect))
    # the unused capacity cut off: the same six snapshots, still flagged
    header, _ = read_header(path)
    os.truncate(path, header["data_offset"] + 6 * header["n"] * 4)
    with pytest.warns(kt.RecordingCutShortWarning):
        u = kt.Trajectory.load(path)
    assert torch.equal(u.snapshots, t.snapshots) and u.meta == t.meta


KILLED_EARLY = """
import os, signal, sys, torch
import koopman_tut as kt
model = torch.nn.Linear(3, 2)
kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), start=10, stop=20, path=sys.argv[1])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_before_its_first_snapshot_says_so(tmp_path):
    """Not the message of a recording still in progress ('no complete snapshot yet'), which may yet fill."""
    path = tmp_path / "run.traj"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", KILLED_EARLY, str(path)], env=env, timeout=120, capture_output=True,
                       text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr
    with pytest.raises(ValueError, match="no complete snapshot and its recording was cut short before its first"):
        kt.Trajectory.load(path)


def test_damaged_files_are_refused(setup, tmp_path):
    model, opt, _ = setup
    path = tmp_path / "r.traj"
    kt.TrajectoryRecorder(model, opt, stop=3, path=path).remove()  # closed after one snapshot
    data = path.read_bytes()
    header, _ = read_header(path)
    path.write_bytes(data[: header["data_offset"] + 4 * header["n"] - 4])  # inside the complete row
    with pytest.raises(ValueError, match="inconsistent"):
        kt.Trajectory.load(path)
    path.write_bytes(data[: header["data_offset"] - 1])  # before the rows
    with pytest.raises(ValueError, match="truncated"):
        kt.Trajectory.load(path)
    path.write_bytes(data[:8] + (0).to_bytes(8, "little") + data[16:])
    with pytest.raises(ValueError, match="count 0 disagrees"):
        kt.Trajectory.load(path)
    path.write_bytes(data[:32] + b"[" + data[33:])
    with pytest.raises(ValueError, match="damaged"):
        kt.Trajectory.load(path)
    with pytest.raises(ValueError, match="device must be 'cpu'|usable CUDA device"):  # a GPU's or none
        kt.TrajectoryRecorder(model, opt, stop=3, path=path, device="cuda")


@pytest.mark.parametrize("bad, key", [(float("nan"), 0), (float("inf"), 0), (-float("inf"), 1), (0.5, 4), (2.0, 5),
                                      (-1.0, 6), (1.5, 6)])
def test_a_damaged_setting_is_refused_naming_the_file_and_snapshot(tmp_path, bad, key):
    """The settings log carries no checksum: a value no recorder writes in a complete snapshot (not finite,
    a flag neither 0 nor 1, a restart count that is not one) is refused. Finite settings load as recorded,
    an lr below 0 too (a schedule can set one, and it loads as it does in memory; the Koopman gradient
    refuses it where it divides)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    path = tmp_path / "run.traj"
    rec = kt.TrajectoryRecorder(model, opt, stop=4, path=path)
    for lr in (0.1, 0.2, -0.3, 0.4):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
        opt.param_groups[0]["lr"] = lr
    memory = rec.trajectory()
    rec.remove()
    assert kt.Trajectory.load(path).meta == memory.meta and memory.meta["lrs"] == [0.0, 0.0, 0.1, 0.2, -0.3]
    header, _ = read_header(path)
    data = bytearray(path.read_bytes())
    at = header["settings_offset"] + 8 * (7 * 2 + key)  # snapshot 2: one group, seven settings per snapshot
    data[at:at + 8] = np.float64(bad).tobytes()
    path.write_bytes(data)
    name = ("learning rate", "momentum", "", "", "nesterov", "maximize", "restarts")[key]
    with pytest.raises(ValueError, match=rf"run\.traj: damaged .*{name} of snapshot 2 \(step 2\) is "
                                         + re.escape(repr(bad)) + ", not "):
        kt.Trajectory.load(path)


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise OSError("no RssAnon in /proc/self/status")


class PeakAnon:
    """Peak RssAnon while the block runs, sampled every millisecond in a thread."""

    def __enter__(self):
        self.base = self.peak = rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())

    @property
    def grew(self) -> int:
        return self.peak - self.base


def write_trajectory(path, n: int, T: int, seed: int = 0) -> None:
    """A synthetic (n, T) float32 window on disk: a fixed point, two decaying modes, noise."""
    g = torch.Generator().manual_seed(seed)
    c, a, b, e = (torch.randn(n, generator=g) for _ in range(4))
    st = DiskStorage(path, ["w"], [(n,)], n, T, torch.float32, {"every": 1})
    for t in range(T):
        torch.add(c, a, alpha=0.9**t, out=st.data[t])
        st.data[t].add_(b, alpha=(-0.5) ** t).add_(e.roll(7919 * t), alpha=1e-3)  # noise: e shifted
        st.commit(t, t, np.array([[0.1, 0, 0, 0, 0, 0, 0]]))  # one group: lr 0.1, plain SGD


MEASURE = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from test_disk import PeakAnon
import koopman_tut as kt
torch.set_num_threads(1)
traj = kt.Trajectory.load(sys.argv[1])
with PeakAnon() as mem:
    res = kt.dmd(traj.snapshots)
    fp = res.fixed_point()
    limit = kt.koopman(traj).fixed_point()
assert res.method == "gram" and fp.shape == limit.shape == (traj.n_features,)
assert abs(complex(res.eigs[res.closest()]) - 1) < 1e-4
print(mem.grew)
"""


def test_decomposing_a_trajectory_on_disk_takes_little_anonymous_memory(tmp_path):
    """DMD, its fixed point and the Koopman limit of a 256 MiB window stream it from disk.

    Measured in a fresh process, with glibc returning freed large blocks at once
    (MALLOC_MMAP_THRESHOLD_), so that RssAnon shows what the computation holds rather than
    16 MiB chunk buffers the allocator keeps around after they are freed.
    """
    n, T = 1_048_576, 64  # 256 MiB of float32
    path = tmp_path / "big.traj"
    write_trajectory(path, n, T)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="131072")
    p = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(ROOT / "tests")], env=env, timeout=300,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    grew, size = int(p.stdout.split()[-1]), n * T * 4
    assert grew < size / 4, f"anonymous memory grew by {grew / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB window"


INTERRUPTED = """
import sys, torch
import koopman_tut as kt
torch.manual_seed(0)
model = torch.nn.Linear(6, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
rec = kt.TrajectoryRecorder(model, opt, stop=20, path=sys.argv[1])
for i in range(20):
    if i == 7:
        raise KeyboardInterrupt  # what Ctrl-C does in a training loop: the process exits, the file is closed
    opt.zero_grad(); model(torch.randn(4, 6)).pow(2).mean().backward(); opt.step()
"""


def test_a_run_interrupted_before_its_window_ended_loads_as_stopped_early(tmp_path):
    """Ctrl-C (or any exception) ends the process normally and closes the file; it must not load as a finished
    recording (a review: 8 of 21 snapshots, no warning, while SIGKILL was flagged)."""
    path = tmp_path / "run.traj"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", INTERRUPTED, str(path)], env=env, timeout=120, capture_output=True,
                       text=True)
    assert p.returncode == 1 and "KeyboardInterrupt" in p.stderr, p.stderr
    with pytest.warns(kt.RecordingCutShortWarning, match=r"stopped before its window ended .* 8 of 21 snapshots, "
                                                          r"last step 7"):
        t = kt.Trajectory.load(path)
    assert len(t) == 8 and t.meta["recording"] == "stopped early"


def test_an_exception_inside_the_recorder_block_marks_the_file_stopped(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="diverged"):
        with kt.TrajectoryRecorder(model, opt, stop=10, path=tmp_path / "a.traj"):
            for _ in range(3):
                opt.step()
            raise RuntimeError("diverged")
    with pytest.warns(kt.RecordingCutShortWarning, match="4 of 11 snapshots, last step 3"):
        assert kt.Trajectory.load(tmp_path / "a.traj").meta["recording"] == "stopped early"
    with kt.TrajectoryRecorder(model, opt, start=5, stop=10, path=tmp_path / "b.traj"):
        opt.step()
    with pytest.raises(ValueError, match="no complete snapshot and its recording was stopped before its first"):
        kt.Trajectory.load(tmp_path / "b.traj")


@pytest.mark.filterwarnings("error::koopman_tut.recording.disk_format.RecordingCutShortWarning")
def test_a_finished_window_or_an_open_ended_recording_loads_without_a_warning(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = kt.TrajectoryRecorder(model, opt, stop=4, path=tmp_path / "a.traj")
    for _ in range(6):
        opt.step()
    rec.remove()
    rec = kt.TrajectoryRecorder(model, opt, max_snapshots=50, path=tmp_path / "b.traj")  # no window end asked for
    for _ in range(3):
        opt.step()
    rec.remove()
    rec = kt.TrajectoryRecorder(model, opt, stop=100, max_snapshots=3, path=tmp_path / "c.traj")  # full
    with pytest.warns(kt.recording.recorder.RecorderFullWarning):
        for _ in range(5):
            opt.step()
    rec.remove()
    for name, k in [("a", 5), ("b", 4), ("c", 3)]:
        t = kt.Trajectory.load(tmp_path / f"{name}.traj")
        assert len(t) == k and "recording" not in t.meta
