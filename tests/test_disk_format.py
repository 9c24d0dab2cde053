"""The disk format's header: checksummed, checked field by field; cut-short and truncated recordings; version 1.

Every damaged header must load exactly the recorded content or raise ValueError (or a
subclass): never another exception, never different content without a word.
"""
import json
import os
import random
import signal
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import koopman_tut as kt
from koopman_tut.recording.disk_v1 import convert_v1

ROOT = Path(__file__).resolve().parents[1]

RECORD = """
import os, signal, sys, torch
import koopman_tut as kt
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
rec = kt.TrajectoryRecorder(model, opt, max_snapshots=20, path=sys.argv[1])
for _ in range(5):
    opt.zero_grad()
    model(torch.randn(16, 8)).pow(2).sum().backward()
    opt.step()
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
rec.remove()
"""


def record(path: Path, how: str) -> None:
    """Six snapshots of a tiny model in a capacity of 20, in a fresh process: closed, or killed with SIGKILL."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", RECORD, str(path), how], env=env, timeout=120,
                       capture_output=True, text=True)
    assert p.returncode == (-signal.SIGKILL if how == "kill" else 0), p.stderr[-3000:]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{"closed": bytes, "kill": bytes} of the two recordings."""
    out = {}
    for how in ("closed", "kill"):
        path = tmp_path_factory.mktemp(how) / "run.traj"
        record(path, how)
        out[how] = path.read_bytes()
    return out


def load(path):
    """(trajectory, warnings) of Trajectory.load."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = kt.Trajectory.load(path)
    return t, [w.category for w in caught]


def same(a, b) -> bool:
    """Bit for bit the same trajectory: snapshots, steps, names, shapes, meta."""
    return (a.snapshots.dtype == b.snapshots.dtype and a.snapshots.shape == b.snapshots.shape
            and torch.equal(a.snapshots.contiguous().view(torch.uint8), b.snapshots.contiguous().view(torch.uint8))
            and torch.equal(a.steps, b.steps) and a.names == b.names and a.shapes == b.shapes and a.meta == b.meta)


def header_span(data: bytes) -> tuple[int, int, int]:
    """(start of the JSON header, its length field's offset, end of the header: where the steps start)."""
    start = data.index(b"{")
    h, _ = json.JSONDecoder().raw_decode(data[start:].decode("utf-8", "replace"))
    return start, 16 if start == 24 else 24, h["steps_offset"]


def rewrite(data: bytes, count: int | None = None, **fields) -> bytes:
    """The file with header fields replaced (and a valid checksum, where the format has one)."""
    start, at_length, end = header_span(data)
    width = 8 if at_length == 16 else 4
    length = int.from_bytes(data[at_length:at_length + width], "little")
    h = json.loads(data[start:start + length])
    h.update(fields)
    text = json.dumps(h).encode()
    assert len(text) <= length, "the changed header must fit the space of the old one"
    text = text.ljust(length)
    out = bytearray(data)
    out[start:start + length] = text
    if width == 4:  # version 2: the CRC of (L, header) at offset 28
        out[28:32] = struct.pack("<I", zlib.crc32(data[24:28] + text))
    if count is not None:
        out[8:16] = struct.pack("<Q", count)
    return bytes(out)


@pytest.mark.parametrize("how", ["closed", "kill"])
def test_single_bit_flips_of_the_header_never_load_different_content(files, how, tmp_path):
    data, path = files[how], tmp_path / "flipped.traj"
    path.write_bytes(data)
    expect, _ = load(path)
    _, _, end = header_span(data)
    bits = list(range(32 * 8)) + random.Random(0).sample(range(32 * 8, end * 8), 350)  # fixed fields + JSON
    silent, other = [], []
    for bit in bits:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << bit % 8
        path.write_bytes(flipped)
        try:
            got, _ = load(path)
        except ValueError:
            continue
        except Exception as e:  # noqa: BLE001 - any other exception is the failure being tested for
            other.append((bit, type(e).__name__))
            continue
        if not same(got, expect):
            silent.append(bit)
    assert not silent and not other, (f"{len(bits)} flips: {len(silent)} loaded different content silently "
                                      f"(bits {silent[:10]}), {len(other)} raised {sorted({e for _, e in other})}")


@pytest.mark.parametrize("change", [
    {"dtype": "int32"}, {"dtype": "bool"}, {"dtype": "float8"}, {"data_offset": 0}, {"steps_offset": 24},
    {"byteorder": "big" if sys.byteorder == "little" else "little"}, {"byteorder": "middle"},
    {"shapes": [[-4, -8], [4]]}, {"shapes": [[4, 8]]}, {"shapes": [[4, 8], [True]]}, {"n": 35}, {"n": -36},
    {"capacity": 10**12}, {"capacity": 0}, {"version": 2}, {"version": 4},
    {"groups": 0}, {"groups": 2}, {"groups": "1"}, {"settings": ["lr"]}, {"settings_offset": 0},
    {"meta": {"groups": 3}}, {"names": ["0.weight", 7]}, {"names": []},
    {"meta": {"every": "1"}}, {"meta": {"momentum": None}}, {"meta": []}, {"format": "other"},
    {"count": 7}, {"count": 11}, {"count": 21}, {"count": 5},
], ids=lambda change: ",".join(f"{k}={v}" for k, v in change.items()))
def test_each_damaged_field_is_refused(files, change, tmp_path):
    path = tmp_path / "changed.traj"
    change = dict(change)
    count = change.pop("count", None)
    path.write_bytes(rewrite(files["closed"], count, **change))
    with pytest.raises(ValueError) as refused:
        load(path)
    assert "checksum" not in str(refused.value)  # refused for the field itself: the checksum is valid


def test_a_header_changed_without_its_checksum_is_refused(files, tmp_path):
    data, path = files["closed"], tmp_path / "changed.traj"
    path.write_bytes(data.replace(b'"float32"', b'"float64"', 1))
    with pytest.raises(ValueError, match="checksum"):
        load(path)


def test_a_killed_recording_says_it_was_cut_short_and_a_closed_one_does_not(files, tmp_path):
    path = tmp_path / "run.traj"
    path.write_bytes(files["kill"])
    t, caught = load(path)
    assert caught == [kt.RecordingCutShortWarning] and t.meta["recording"] == "cut short"
    assert len(t) == 6 and t.steps.tolist() == list(range(6)) and t.meta["lrs"] == [0.1] * 6
    path.write_bytes(files["closed"])
    c, caught = load(path)
    assert caught == [] and "recording" not in c.meta and len(c) == 6
    assert torch.equal(c.snapshots, t.snapshots)  # the same seeded run


@pytest.mark.parametrize("how", ["closed", "kill"])
def test_cutting_the_unused_capacity_off_keeps_the_complete_snapshots(files, how, tmp_path):
    path = tmp_path / "run.traj"
    path.write_bytes(files[how])
    expect, _ = load(path)
    h, count = kt.recording.storage.read_header(path)
    row = h["n"] * 4
    for size in (h["data_offset"] + 6 * row, h["data_offset"] + 6 * row + 3):
        os.truncate(path, size)
        got, _ = load(path)
        assert same(got, expect)
    os.truncate(path, h["data_offset"] + 6 * row - 1)  # into the last complete snapshot
    with pytest.raises(ValueError, match="inconsistent"):
        load(path)


def old_file(data: bytes, version: int) -> bytes:
    """The same recording in the version-1 layout (magic KTTRAJMM, count, L, JSON at 24, no checksum)
    or the version-2 one (magic KTTRAJM2, checksummed as version 3): steps, then the first group's lrs."""
    length = struct.unpack_from("<I", data, 24)[0]
    h = json.loads(data[32:32 + length])
    cap, count, groups = h["capacity"], struct.unpack_from("<Q", data, 8)[0], h["groups"]
    base = {k: v for k, v in h.items() if k not in ("settings", "groups", "settings_offset")}
    settings = np.frombuffer(data, "<f8", cap * groups * 7, h["settings_offset"]).reshape(cap, groups, 7)
    logs = data[h["steps_offset"]:h["steps_offset"] + 8 * cap] + settings[:, 0, 0].tobytes()
    if version == 2:
        steps_at = 32 + length
        v2 = dict(base, version=2, steps_offset=steps_at, lrs_offset=steps_at + 8 * cap,
                  data_offset=-(-(steps_at + 16 * cap) // 4096) * 4096)
        text = json.dumps(v2).encode().ljust(length)
        assert len(text) == length
        head = b"KTTRAJM2" + data[8:24] + struct.pack("<I", length)
        head += struct.pack("<I", zlib.crc32(head[24:28] + text)) + text
        return (head + logs).ljust(v2["data_offset"], b"\0") + data[h["data_offset"]:]
    steps_at = -(-(24 + len(json.dumps(base)) + 200) // 8) * 8  # the version-1 writer's room for the digits
    v1 = dict(base, version=1, steps_offset=steps_at, lrs_offset=steps_at + 8 * cap,
              data_offset=-(-(steps_at + 16 * cap) // 4096) * 4096)
    text = json.dumps(v1).encode()
    assert 24 + len(text) <= steps_at
    head = b"KTTRAJMM" + struct.pack("<QQ", count, len(text)) + text
    return (head.ljust(steps_at, b"\0") + logs).ljust(v1["data_offset"], b"\0") + data[h["data_offset"]:]


def v1_file(data: bytes) -> bytes:
    return old_file(data, 1)


def test_version_2_files_still_load_with_the_first_groups_lr(files, tmp_path):
    new, old = tmp_path / "v3.traj", tmp_path / "v2.traj"
    new.write_bytes(files["closed"])
    old.write_bytes(old_file(files["closed"], 2))
    (a, _), (b, caught) = load(new), load(old)
    assert b.meta == a.meta and not caught  # one group whose settings never changed: nothing was lost
    assert torch.equal(a.snapshots, b.snapshots) and torch.equal(a.steps, b.steps)
    with pytest.raises(ValueError, match="checksum"):
        damaged = bytearray(old.read_bytes())
        damaged[40] ^= 1
        old.write_bytes(damaged)
        load(old)


def test_version_1_files_are_refused_with_the_way_to_convert_them(files, tmp_path):
    old, new = tmp_path / "v1.traj", tmp_path / "v2.traj"
    old.write_bytes(v1_file(files["closed"]))
    with pytest.raises(ValueError, match=r"version-1 .*convert_v1\("):
        load(old)
    assert convert_v1(old, new) == new
    (tmp_path / "orig.traj").write_bytes(files["closed"])
    expect, _ = load(tmp_path / "orig.traj")
    got, caught = load(new)
    assert same(got, expect) and caught == [] and kt.recording.storage.read_header(new)[0]["capacity"] == 6
    with pytest.raises(FileExistsError, match="overwrite=True"):
        convert_v1(old, new)
    old.write_bytes(rewrite(v1_file(files["closed"]), dtype="int32"))
    with pytest.raises(ValueError, match="dtype 'int32'"):
        convert_v1(old, tmp_path / "v2b.traj")
    pipe = tmp_path / "pipe.traj"  # read at once, it waited for a writer for ever
    os.mkfifo(pipe)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("convert_v1 waited on a named pipe"))
    signal.alarm(20)
    try:
        with pytest.raises(ValueError, match="src .*pipe.traj' is not a regular file"):
            convert_v1(pipe, tmp_path / "v2c.traj")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert not (tmp_path / "v2b.traj").exists()
    data = bytearray(v1_file(files["closed"]))
    at = json.loads(data[24:24 + struct.unpack_from("<Q", data, 16)[0]])["lrs_offset"] + 8 * 3
    data[at:at + 8] = struct.pack("<d", float("nan"))  # no checksum: only the range tells
    old.write_bytes(data)
    with pytest.raises(ValueError, match=r"learning rate of snapshot 3 \(step 3\) is nan"):
        convert_v1(old, tmp_path / "v2b.traj")
    assert not (tmp_path / "v2b.traj").exists()


CONVERT_KILLED = """
import os, sys
from koopman_tut.recording import storage
from koopman_tut.recording.disk_v1 import convert_v1
commit = storage.DiskStorage.commit
def dying(self, k, step, lr):
    if k == 2:
        os._exit(3)  # the process dies after 2 of 6 rows (SIGKILL, out of memory): no cleanup runs
    commit(self, k, step, lr)
storage.DiskStorage.commit = dying
convert_v1(sys.argv[1], sys.argv[2], overwrite=True)
"""


def test_an_interrupted_conversion_leaves_the_old_files_intact(files, tmp_path, monkeypatch):
    """In place (src is dst) or onto a good file: nothing is replaced until the new file is complete."""
    old, good = tmp_path / "v1.traj", tmp_path / "good.traj"
    old.write_bytes(v1_file(files["closed"]))
    good.write_bytes(files["closed"])
    before = {p: p.read_bytes() for p in (old, good)}
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for dst in (old, good):
        p = subprocess.run([sys.executable, "-c", CONVERT_KILLED, str(old), str(dst)], env=env, timeout=120,
                           capture_output=True, text=True)
        assert p.returncode == 3, p.stderr[-3000:]
        assert {p: p.read_bytes() for p in (old, good)} == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["good.traj", "v1.traj"]
    with pytest.raises(ValueError, match="version-1"):
        load(old)
    commit = kt.recording.storage.DiskStorage.commit
    monkeypatch.setattr(kt.recording.storage.DiskStorage, "commit",
                        lambda st, k, *a: (_ for _ in ()).throw(KeyboardInterrupt) if k == 2 else commit(st, k, *a))
    with pytest.raises(KeyboardInterrupt):  # an exception: the temporary file is removed too
        convert_v1(old, old, overwrite=True)
    left = sorted(p.name.split(".")[1] for p in tmp_path.glob(".*.tmp"))
    assert old.read_bytes() == before[old] and left == ["good", "v1"]  # the two killed runs' temporary files only
    monkeypatch.undo()
    assert convert_v1(old, old, overwrite=True) == old  # in place, completed
    got, caught = load(old)
    expect, _ = load(good)
    assert same(got, expect) and caught == []
    with pytest.raises(FileExistsError, match="overwrite=True"):
        convert_v1(good, good)


def test_a_conversion_onto_a_file_a_recorder_is_writing_is_refused(files, tmp_path):
    old, live = tmp_path / "v1.traj", tmp_path / "live.traj"
    old.write_bytes(v1_file(files["closed"]))
    model = torch.nn.Linear(3, 2)
    rec = kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), stop=5, path=live)
    data = live.read_bytes()
    with pytest.raises(FileExistsError, match="being written by another TrajectoryRecorder"):
        convert_v1(old, live, overwrite=True)
    with pytest.raises(FileExistsError, match="being written by another TrajectoryRecorder"):  # not 'pass overwrite'
        kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), stop=5, path=live)
    assert live.read_bytes() == data and sorted(p.name for p in tmp_path.iterdir()) == ["live.traj", "v1.traj"]
    rec.remove()


def test_a_converted_version_1_file_keeps_its_groups_settings_apart(tmp_path):
    # version 1 logged the first group's lr only: the converted file logs one group, and its meta must not
    # read as if every group had the first group's settings (two momenta here: the secant refuses them)
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)).double()
    opt = torch.optim.SGD([{"params": m[0].parameters(), "momentum": 0.9},
                           {"params": m[1].parameters(), "momentum": 0.5}], lr=0.01)
    path = tmp_path / "new.traj"
    rec = kt.TrajectoryRecorder(m, opt, stop=12, dtype=torch.float64, path=path)
    x = torch.randn(8, 4, dtype=torch.float64)
    for _ in range(12):
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        opt.step()
    rec.remove()
    (tmp_path / "v1.traj").write_bytes(old_file(path.read_bytes(), 1))
    converted = kt.Trajectory.load(convert_v1(tmp_path / "v1.traj", tmp_path / "c.traj"))
    assert "group_settings" not in converted.meta and len(converted.meta["groups"]) == 2
    for traj in (kt.Trajectory.load(path), converted):
        with pytest.raises(ValueError, match="one momentum, dampening and nesterov for every parameter group"):
            kt.estimate_limit(traj, "secant")
