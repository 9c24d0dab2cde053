"""Ranks that disagree, stall or die: a clear error on every rank, within a bound (2 gloo processes, CPU).

Each test spawns its ranks with :func:`spawn` (bounded: the processes are killed past ``limit``);
each rank saves what it got, and the test reads it back.
"""
import os
import re
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import koopman_tut as kt
from koopman_tut import pruning as P
from koopman_tut.numerics.snapshots import deviation_gram
from koopman_tut.numerics.distributed import DEFAULT_TIMEOUT_S, TIMEOUT_ENV, all_reduce_sum, collective_timeout

pytestmark = pytest.mark.filterwarnings("ignore::koopman_tut.numerics.extrapolation.DriftWarning")
T = 12


def spawn(fn, out, nprocs: int = 2, limit: float = 180.0) -> list[dict]:
    """Run ``fn(rank, nprocs, store, out)`` in ``nprocs`` processes; kill them past ``limit`` seconds.
    Returns what each rank saved (``out/rank<r>.pt``)."""
    ctx = mp.start_processes(fn, args=(nprocs, str(out / "store"), str(out)), nprocs=nprocs, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + limit
    try:
        while not ctx.join(timeout=max(deadline - time.monotonic(), 0.1)):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the ranks did not finish within {limit} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(nprocs)]


def _setup(rank: int, world: int, store: str, timeout_s: float, group_timeout_s: float | None = None):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ[TIMEOUT_ENV] = str(timeout_s)  # a check that missed would end in a timeout here, not a hang
    torch.set_num_threads(1)
    own = {} if group_timeout_s is None else {"timeout": timedelta(seconds=group_timeout_s)}
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world, **own)


def _attempt(fn) -> str | None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001  (what each rank got is compared by the test)
        return f"{type(e).__name__}: {e}"
    return None


def _failing_check(rank: int, W, acc):
    """kt.dmd over the ranks where rank 1's own check raises a RuntimeError (as CUDA's out of memory would)."""
    from koopman_tut.numerics import dmd as dmd_module

    def boom(*_):
        raise RuntimeError("CUDA out of memory (simulated)")

    check, dmd_module.check_acc = dmd_module.check_acc, boom if rank else dmd_module.check_acc
    try:
        return kt.dmd(W, group=True, acc=acc)
    finally:
        dmd_module.check_acc = check


def _disagreeing(rank: int, world: int, store: str, out: str):
    """Each scenario: the two ranks call the same function with one thing different (or not)."""
    _setup(rank, world, store, 60)
    g = torch.Generator().manual_seed(rank)
    n = 40 + 7 * rank  # own rows
    W = torch.randn(n, T, generator=g, dtype=torch.float64)

    def window(steps, meta):
        return kt.Trajectory(W, steps, ["p"], [(n,)], meta)

    names = {"all_names": ["a.weight", "b.weight" if rank else "c.weight"]}
    shapes = {"all_names": ["a.weight", "b.weight"], "all_shapes": [(3, 4), (5, 4) if rank else (3, 4)],
              "n_total": 32 if rank else 24}  # the same names, one layer wider on rank 1
    scores = {f"w{rank}": torch.rand(30, generator=g)}
    lin = torch.nn.Linear(1, 1, bias=False)  # one entry for two ranks
    got = {
        "T": _attempt(lambda: kt.dmd(W[:, :T - rank], group=True)),
        "dtype": _attempt(lambda: kt.dmd(W.float() if rank else W, group=True)),
        "svd_rank": _attempt(lambda: kt.dmd(W, svd_rank=3 + rank, group=True)),
        "steps": _attempt(lambda: kt.koopman(window(torch.arange(T) + rank, {}), group=True)),
        "names": _attempt(lambda: kt.koopman(window(torch.arange(T), names), group=True)),
        "shapes": _attempt(lambda: kt.koopman(window(torch.arange(T), shapes), group=True)),
        "compression": _attempt(lambda: P.global_masks(scores, 2 + rank, group=True)),
        "computation": _attempt(lambda: kt.dmd(W, group=True) if rank == 0 else P.global_masks(scores, 2, group=True)),
        "delays": _attempt(lambda: kt.koopman(window(torch.arange(T), {}), delays=rank, group=True)),
        "momentum": _attempt(lambda: kt.koopman(window(torch.arange(T), {"momentum": 0.9 * rank}), group=True)),
        "lrs": _attempt(lambda: kt.koopman(window(torch.arange(T), {"lrs": [0.1 * (1 + rank)] * T}), group=True)),
        "acc given": _attempt(lambda: kt.dmd(W, group=True, acc=deviation_gram(W) if rank else None)),
        "tiny": _attempt(lambda: kt.dmd(W * 1e-200 if rank else torch.zeros_like(W), group=True)),  # one message
        "too few entries": _attempt(lambda: kt.TrajectoryRecorder(lin, torch.optim.SGD(lin.parameters(), lr=0.1),
                                                                  stop=2, shard=True)),
        "acc values": _attempt(lambda: kt.dmd(W, group=True, acc=deviation_gram(W) * (1 + rank))),
        # per call: each rank's scores would rank in one global mask
        "kgp lr": _attempt(lambda: kt.koopman(window(torch.arange(T), {"lrs": [0.1] * T}), group=True).kgp_scores(
            lr=0.1 * (1 + rank))),
        "horizon": _attempt(lambda: kt.koopman(window(torch.arange(T), {}), group=True).horizon_scores(rank)),
        "refused h": _attempt(lambda: kt.koopman(window(torch.arange(T), {}), group=True).horizon_scores(-rank)),
        # a rank refusing its own input: every rank raises at once (the others waited out the timeout before)
        "refused dmd": _attempt(lambda: kt.dmd(W, method="svd" if rank else "auto", group=True)),
        "refused acc": _attempt(lambda: kt.dmd(W, group=True, acc=torch.zeros(3) if rank else None)),
        "refused memory": _attempt(lambda: kt.dmd(torch.zeros(2, 2_000_000) if rank else W, group=True)),  # a Gram too big
        "refused memory koopman": _attempt(lambda: kt.koopman(kt.Trajectory(torch.zeros(2, 2_000_000), torch.arange(
            2_000_000), ["p"], [(2,)], {}) if rank else window(torch.arange(T), {}), group=True)),
        "refused runtime": _attempt(lambda: _failing_check(rank, W, deviation_gram(W))),
        "refused koopman": _attempt(lambda: kt.koopman(window(torch.arange(T), {}), drift_tol=-1.0 if rank else 1e-3,
                                                       group=True)),  # (a bad momentum is refused by Trajectory)
        # accepted: "auto" is the Gram route with a group; a rank may hold no rows
        "auto or gram": _attempt(lambda: kt.koopman(window(torch.arange(T), {}), method="gram" if rank else "auto",
                                                    group=True).fixed_point()),
        # after every refusal the ranks are still in step: agreeing calls work
        "agree": _attempt(lambda: (kt.dmd(W, group=True), kt.koopman(window(torch.arange(T), {}), group=True),
                                   P.global_masks(scores, 2, group=True))),
    }
    got["no rows"] = kt.dmd(W[:0] if rank == 0 else W, group=True).eigs
    torch.save(got, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


EXPECTED = {
    "T": "kt.dmd: the ranks of the group disagree on T (snapshots): 12 on rank 0, 11 on rank 1.",
    "dtype": "disagree on dtype: float64 on rank 0, float32 on rank 1.",
    "svd_rank": "disagree on svd_rank: 3 on rank 0, 4 on rank 1.",
    "steps": "kt.koopman: the ranks of the group disagree on steps: rank 0 vs rank 1 (different values)",
    "names": "disagree on names and shapes (row-sharded recording): rank 0 vs rank 1 (different values)",
    "shapes": "disagree on names and shapes (row-sharded recording): rank 0 vs rank 1 (different values)",
    "compression": "global_masks: the ranks of the group disagree on compression: 2 on rank 0, 3 on rank 1",
    "computation": "not in the same computation (computation: kt.dmd on rank 0, global_masks on rank 1)",
    "delays": "kt.koopman: the ranks of the group disagree on delays: 0 on rank 0, 1 on rank 1 (checked",
    "momentum": "disagree on delays: 0 on rank 0, 1 on rank 1; optimizer settings: rank 0 vs rank 1 (different",
    "lrs": "kt.koopman: the ranks of the group disagree on optimizer settings: rank 0 vs rank 1 (different values)",
    "acc given": "kt.dmd: the ranks of the group disagree on acc given: False on rank 0, True on rank 1",
    "acc values": "kt.dmd: the ranks of the group disagree on acc (summed over the ranks): rank 0 vs rank 1 (diff",
    "kgp lr": "kt.koopman gradient: the ranks of the group disagree on lr: 0.1 on rank 0, 0.2 on rank 1",
    "horizon": "kt.koopman forecast: the ranks of the group disagree on h: 0 on rank 0, 1 on rank 1",
    "tiny": "X = W[:, :-1] is too small for float64 DMD (largest |entry| ",
    "too few entries": "shard= splits the 1 recorded entries over 2 ranks, so 1 rank(s) would hold none",
}


@pytest.fixture(scope="module")
def disagreeing(tmp_path_factory):
    return spawn(_disagreeing, tmp_path_factory.mktemp("disagree"))


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_ranks_that_disagree_all_raise_saying_what_differs_where(disagreeing, case):
    """The same ValueError on every rank, before any collective could mismatch (gloo would abort)."""
    got = [r[case] for r in disagreeing]
    assert got[0] == got[1], got
    assert got[0].startswith("ValueError: ") and EXPECTED[case] in got[0], got[0]


def test_the_ranks_stay_in_step_after_a_refusal(disagreeing):
    assert [r["agree"] for r in disagreeing] == [None, None]
    assert [r["auto or gram"] for r in disagreeing] == [None, None]


@pytest.mark.parametrize("case, own", [("refused dmd", "method='svd' needs all rows in one process"),
                                       ("refused acc", r"acc must be W's deviation Gram .* got \(3,\) torch.float32"),
                                       ("refused koopman", "drift_tol must be a finite number > 0, got -1.0"),
                                       ("refused h", "h must be >= 0 snapshots, got -1"),
                                       ("refused memory", r"W has shape \(2, 2000000\).* pass W.T"),
                                       ("refused memory koopman", r"traj.snapshots has shape \(2, 2000000\)"),
                                       ("refused runtime", "CUDA out of memory")])
def test_a_rank_refusing_its_input_makes_every_rank_raise_at_once(disagreeing, case, own):
    error = ("MemoryError" if case.startswith("refused memory") else "RuntimeError" if case == "refused runtime"
             else "ValueError")
    assert disagreeing[1][case].startswith(f"{error}: ") and re.search(own, disagreeing[1][case])
    what = {"refused koopman": "kt.koopman", "refused memory koopman": "kt.koopman",
            "refused h": "kt.koopman forecast"}.get(case, "kt.dmd")
    assert disagreeing[0][case] == (f"ValueError: {what}: rank 1 of the group refused their input "
                                    f"({error}; see the error there), so no rank goes on to the computation")


def test_a_rank_may_hold_no_rows(disagreeing):
    eigs = [r["no rows"] for r in disagreeing]
    assert torch.equal(eigs[0], eigs[1]) and eigs[0].numel() > 0


STALL_S, LIMIT_S = 6.0, 1.5


def _stalling(rank: int, world: int, store: str, out: str):
    """Rank 1 stalls (never calls the collective) and then ends; rank 0 calls it. "group's limit": the
    process group's own timeout (LIMIT_S) is shorter than the package's (60 s)."""
    what = os.path.basename(out)
    if what == "group's limit":
        _setup(rank, world, store, 60, group_timeout_s=LIMIT_S)
        what = "all_reduce"
    else:
        _setup(rank, world, store, LIMIT_S)
    got = {}
    if rank == 0:
        t0 = time.monotonic()
        call = {"dmd": lambda: kt.dmd(torch.randn(30, T, dtype=torch.float64), group=True),
                "all_reduce": lambda: all_reduce_sum(torch.ones(3), True)}[what]
        got = {"error": _attempt(call), "seconds": time.monotonic() - t0}
    else:
        time.sleep(STALL_S)
    torch.save(got, os.path.join(out, f"rank{rank}.pt"))
    os._exit(0)  # the group is unusable after a timeout: no clean-up collective


@pytest.mark.parametrize("what, collective", [("dmd", "all_gather (kt.dmd pre-flight)"),
                                              ("all_reduce", "all_reduce (sum) of a (3,) float32 tensor")])
def test_a_stalled_rank_makes_the_others_fail_within_the_timeout(tmp_path, what, collective):
    out = tmp_path / what
    out.mkdir()
    got = spawn(_stalling, out, limit=120)[0]
    assert got["error"].startswith("TimeoutError: " + collective), got
    assert f"within {LIMIT_S:g} s" in got["error"] and TIMEOUT_ENV in got["error"]
    assert "process group's own timeout" not in got["error"]  # the package's limit ended it, and says so
    assert 0.9 * LIMIT_S <= got["seconds"] < STALL_S - 2, got["seconds"]  # the limit, not the stall, ended it


def test_a_shorter_process_group_timeout_is_named_as_what_ended_the_wait(tmp_path):
    # it said "did not complete within 60 s ... raise KOOPMAN_TUT_COLLECTIVE_TIMEOUT" after 1.5 s
    out = tmp_path / "group's limit"
    out.mkdir()
    got = spawn(_stalling, out, limit=120)[0]
    assert got["error"].startswith("TimeoutError: all_reduce (sum)"), got
    assert "within 60 s" not in got["error"] and "process group's own timeout" in got["error"], got
    assert got["seconds"] < STALL_S - 2, got["seconds"]


def test_collective_timeout_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert collective_timeout() == DEFAULT_TIMEOUT_S == 300
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    assert collective_timeout() == 2.5
    # 0.0005 s was 0 ms, which gloo reads as no limit; 1e11 s overflowed torch's int64 nanoseconds and hung
    for bad in ("abc", "0", "-3", "inf", "nan", "0.0005", "1e11", "1e300"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=f"{TIMEOUT_ENV} must be a positive number of seconds"):
            collective_timeout()


def test_the_sharding_helpers_refuse_what_they_cannot_split_or_rank():
    """Checked before any collective, so no process group is needed: before, shard_range(10, 5, 2) gave
    rows (25, 30) beyond n, and top_k_mask kept a NaN as the largest score and took k = -1 as 0."""
    from koopman_tut.numerics.distributed import shard_range, top_k_mask

    assert [shard_range(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    for args, match in (((10, 5, 2), r"rank must be in \[0, 1\]"), ((10, -1, 2), "rank must be an integer >= 0"),
                        ((10, 0, 0), "world_size must be an integer >= 1"), ((-1, 0, 2), "n must be")):
        with pytest.raises(ValueError, match=match):
            shard_range(*args)
    from koopman_tut.numerics.distributed import all_gather_rows, all_reduce_sum

    for call in (lambda: all_reduce_sum([1, 2], True), lambda: all_gather_rows(torch.tensor(1.0), True)):
        with pytest.raises(TypeError, match="x must be a torch.Tensor"):  # AttributeError, IndexError before
            call()
    for x, k, err, match in ((torch.tensor([1.0, float("nan"), 3.0]), 1, ValueError, "x holds NaN:"),
                             (torch.tensor([1.0, 2.0]), -1, ValueError, "k must be an integer >= 0"),
                             (torch.tensor([1.0, 2.0]), 2.5, ValueError, "k must be an integer >= 0"),
                             (torch.tensor([1 + 1j, 3]), 1, TypeError, "x must be a 1-D real tensor"),
                             (torch.tensor([2**63 + 5, 3], dtype=torch.uint64), 1, TypeError, "uint64")):
        with pytest.raises(err, match=match):
            top_k_mask(x, k, True)
