"""Row-sharded DMD, Koopman analysis, global masks and recording on 2 gloo processes (CPU).

One spawn of two ranks (``_worker``) runs every distributed computation and saves what each
rank got; the tests compare it with one process on the stacked data.
"""
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

import koopman_tut as kt
from koopman_tut import pruning as P
from koopman_tut.numerics.distributed import gather_pieces, shard_range, top_k_mask

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::koopman_tut.numerics.extrapolation.DriftWarning")  # short windows drift
SHARDS = (1000, 2500)  # uneven rows of W per rank
T = 12
COMPRESSION = 3.7


def snapshot_matrix(n: int = sum(SHARDS), T: int = T) -> torch.Tensor:
    """(n, T) float64: a fixed point, four decaying modes (one oscillating) and a little noise."""
    g = torch.Generator().manual_seed(0)
    c, V = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, 4, generator=g, dtype=torch.float64)
    t = torch.arange(T, dtype=torch.float64)
    mus = torch.tensor([0.9, 0.7, 0.5, -0.3], dtype=torch.float64)
    return c[:, None] + V @ (mus[:, None] ** t[None, :]) + 1e-2 * torch.randn(n, T, generator=g, dtype=torch.float64)


def warm_window() -> torch.Tensor:
    """(n, 81) float64: gradient descent on a rank-8 quadratic (h in [0.1, 10], lr 0.01) after 100 steps."""
    from koopman_tut.training.systems import affine_window
    return affine_window(sum(SHARDS), 181, [1 - 0.01 * h for h in torch.linspace(0.1, 10, 8).tolist()])[0][:, 100:]


def score_dicts():
    """Per rank: {name: scores} with many ties (values on a coarse grid), uneven sizes."""
    g = torch.Generator().manual_seed(1)
    def s(*shape):
        return torch.randint(0, 7, shape, generator=g).float() / 4
    return [{"a.weight": s(30, 20), "a.bias": s(30), "b.weight": s(7, 3)},
            {"c.weight": s(50, 41), "c.bias": s(50), "d.weight": s(11)}]


def shard_models():
    """Per rank: a model holding that rank's shard of the parameters; rank 1's last Linear is the classifier."""
    torch.manual_seed(2)
    return [nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Conv1d(4, 6, 3)),
            nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 2))]


def _setup(rank: int, world: int, store: str):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)


def _worker(rank: int, world: int, store: str, out: str):
    _setup(rank, world, store)
    torch.use_deterministic_algorithms(True)
    res = {}
    W = snapshot_matrix()
    lo = sum(SHARDS[:rank])
    W_local = W[lo:lo + SHARDS[rank]].clone()
    # DMD with the rows split over ranks
    d = kt.dmd(W_local, group=True)
    res["dmd"] = {k: getattr(d, k) for k in ("eigs", "amplitudes", "singular_values")}
    res["dmd"]["fixed_point"] = d.fixed_point()
    res["dmd"]["predict"] = d.predict([0.0, 3.5])
    # the Koopman analysis of the same window
    names = ["p"]
    traj = kt.Trajectory(W_local, torch.arange(T), names, [(W_local.shape[0],)], {"lrs": [0.1] * T})
    k = kt.koopman(traj, group=True)
    res["koopman"] = {"limit": k.fixed_point(), "closest": k.fixed_point("closest"),
                      "limit_rank": k.limit_rank, "eigs": k.affine.eigs}
    # a warm, noise-free float64 window: the steps' Gram cannot resolve its fastest mode, one more
    # pass over every rank's rows does (numerics/refine.py)
    Wf = warm_window()[lo:lo + SHARDS[rank]].clone()
    kf = kt.koopman(kt.Trajectory(Wf, torch.arange(Wf.shape[1]), names, [(Wf.shape[0],)], {}), group=True)
    res["warm"] = {"rank": kf.affine.rank, "limit": kf.fixed_point()}
    # kt.estimate_limit over the ranks' rows, every method that reads no recorded optimizer
    tw = kt.Trajectory(Wf, torch.arange(Wf.shape[1]), names, [(Wf.shape[0],)], {})
    res["estimates"] = {m: kt.estimate_limit(traj if m == "closest" else tw, m, group=True, **LIMIT_KNOBS.get(m, {}))
                        for m in LIMIT_METHODS}
    res["estimates"]["W"] = kt.estimate_limit(Wf, "rre", group=True)  # a plain tensor of rows
    # on the noisy window too: there the estimate depends on every rank's rows being weighed once (on the warm,
    # exact window a rank's Gram counted twice moved it by 1.4e-8 of the distance)
    res["noisy estimates"] = {m: kt.estimate_limit(traj, m, group=True) for m in NOISY_METHODS}
    # a rank holding no rows: every computation runs, and rank 0 gets one process's answer on all of them
    Wz = warm_window() if rank == 0 else warm_window()[:0]
    tz = kt.Trajectory(Wz, torch.arange(Wz.shape[1]), names, [(Wz.shape[0],)], {})
    res["zero_rows"] = {"koopman": kt.koopman(tz, group=True).fixed_point(), "dmd": kt.dmd(W if rank == 0 else W[:0], group=True).fixed_point(),
                        "rre": kt.estimate_limit(tz, "rre", group=True), "last": kt.estimate_limit(Wz, "last", group=True)}
    zd = kt.dmd(W if rank == 0 else W[:0], group=True)  # complex modes of no rows: a reshape of -1 failed there
    res["zero_rows"].update(modes=zd.modes, mode0=zd.mode(0), complex_predict=zd.predict(3, real=False))
    # a still window (every difference exactly zero): its limit is its last snapshot; still on one rank only is not
    still = Wf[:, :1].expand(-1, Wf.shape[1]).clone()
    res["still"] = {"all": kt.estimate_limit(still, "koopman", group=True),
                    "one rank": kt.estimate_limit(still if rank == 0 else Wf, "koopman", group=True)}
    # still on rank 0; on rank 1 steps within rounding (1e-20 of weights ~1): no model anywhere, so every rank
    # refuses (rank 0, still on its own rows, must not return its last snapshot alone)
    dust = 1e-20 * torch.randn(still.shape, generator=torch.Generator().manual_seed(rank), dtype=still.dtype).cumsum(1)
    res["still"]["refused"] = _refusal(lambda: kt.estimate_limit(still if rank == 0 else still + dust, "koopman",
                                                                 group=True))
    res["estimate_refusals"] = [_refusal(lambda: kt.estimate_limit(tw, "line", a=1.0 + rank, group=True)),
                                _refusal(lambda: kt.estimate_limit(tw, "mpe" if rank else "rre", group=True)),
                                _refusal(lambda: kt.estimate_limit(tw, "line", a=float("nan") if rank else 1.0,
                                                                   group=True)),
                                _refusal(lambda: kt.estimate_limit(tw, "secant", group=True)),
                                _refusal(lambda: kt.estimate_limit(Wf.clone().fill_(float("nan")) if rank else Wf, "last",
                                                                   group=True))]
    # no rows on any rank: refused on every rank (it returned an empty estimate, or blamed all-zero data)
    res["no_rows"] = [_refusal(lambda: kt.estimate_limit(Wf[:0], m, group=True)) for m in ("last", "koopman")] + \
        [_refusal(lambda: kt.dmd(Wf[:0], group=True))]
    # NaN in rank 1's rows: rank 0 sees only the summed Gram, and names the argument it was given (traj)
    bad_rows = Wf.clone().fill_(float("nan")) if rank else Wf
    res["koopman_nan"] = _refusal(lambda: kt.koopman(kt.Trajectory(bad_rows, tw.steps, names, [(Wf.shape[0],)], {}),
                                                     group=True).limit())
    # complex data: the Gram is complex128
    Wc = torch.complex(W_local, W_local.flip(0))
    res["complex_eigs"] = kt.dmd(Wc, group=True).eigs
    # masks: ties, uneven shards, with and without a model
    scores = score_dicts()[rank]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res["masks"] = P.global_masks(scores, COMPRESSION, group=True)
    res["tie_warnings"] = [str(w.message) for w in caught if w.category is P.TiedScoresWarning]
    res["masks_model"] = P.global_masks(scores_for_model(rank), COMPRESSION, model=shard_models()[rank], group=True)
    # top_k edge cases: nothing on one rank, k = 0, all, and all tied
    x = torch.zeros(0) if rank == 0 else torch.tensor([1.0, -0.0, 0.0, -2.5, 1.0])
    res["topk_empty"] = [top_k_mask(x, k, True) for k in range(6)]
    y = torch.full((3 + rank,), 0.5)
    res["topk_ties"] = [top_k_mask(y, k, True) for k in range(8)]
    # a rank refusing its scores makes every rank raise (no rank hangs)
    bad = {"a.weight": torch.tensor([float("nan")] if rank == 1 else [1.0])}
    try:
        P.global_masks(bad, 2, group=True)
        res["refused"] = None
    except ValueError as e:
        res["refused"] = str(e)
    # classifier and exclude names without a model: checked against every rank's scores together (a name on
    # one rank only is fine; a typo on every rank was ignored and the real classifier or layer pruned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", P.TiedScoresWarning)
        res["names"] = [_refusal(lambda: P.global_masks(scores, COMPRESSION, group=True, classifier="zz")),
                        _refusal(lambda: P.global_masks(scores, COMPRESSION, group=True, exclude=["zz.weight"])),
                        _refusal(lambda: P.global_masks(scores, COMPRESSION, group=True, classifier="d")),
                        _refusal(lambda: P.global_masks(scores, COMPRESSION, group=True, exclude=["a.weight"]))]
    res["edges"] = _edge_cases(rank, scores)
    res["ddp"] = _record_ddp(rank, out)
    res["fsdp"] = _record_fsdp(rank)
    torch.save(res, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


LIMIT_METHODS = ("koopman", "closest", "last", "line", "mpe", "rre", "anderson")
# Anderson mixes the last depth + 1 differences; on the warm window at depth 5 their singular values span
# 3e-3 .. 6e-15 and a permutation of W's rows alone moves the estimate by 1.3e-5 of the distance; at depth 2
# (3e-3 .. 3e-9) by 8e-10
LIMIT_KNOBS = {"line": {"a": 2.0}, "anderson": {"depth": 2}}
NOISY_METHODS = ("koopman", "mpe", "rre")


def _edge_cases(rank: int, scores: dict) -> dict:
    """Found by an audit: a bad compression on one rank only (the other waited for the collective timeout);
    gather_pieces where one rank holds no masks (it sent int64 beside bool: a gloo abort on one rank, garbage on
    the other); the Koopman gradient of a hand-split window with two parameter groups on a rank holding none of
    its rows (max() of an empty sequence)."""
    out = {"compression": _refusal(lambda: P.global_masks(scores, 0.5 if rank else COMPRESSION, group=True))}
    meta = dict(rows=(0, 4) if rank == 0 else (4, 7), n_total=7, all_names=["a", "b"], all_shapes=[(4,), (3,)])
    piece = kt.Trajectory(torch.zeros(4 if rank == 0 else 3, 3), torch.arange(3), ["a" if rank == 0 else "b"],
                          [(4,) if rank == 0 else (3,)], meta)
    local = {"a": torch.tensor([True, False, True, False])} if rank == 0 else {}
    out["gathered"] = gather_pieces(local, piece, True)
    W = warm_window()[:, :40]
    n = W.shape[0]
    groups = [dict(names=[name], lr=lr, momentum=0.0, nesterov=False, dampening=0.0, weight_decay=0.0, maximize=False)
              for name, lr in (("a", 0.1), ("b", 0.05))]
    tg = kt.Trajectory(W if rank == 0 else W[:0], torch.arange(40), ["a", "b"] if rank == 0 else [],
                       [(n // 2,), (n - n // 2,)] if rank == 0 else [],
                       {"every": 1, "lrs": [0.1] * 40, "group_lrs": [[0.1, 0.05]] * 40, "groups": groups})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["gradient"] = kt.koopman(tg, group=True).gradient()
    return out


def _refusal(fn) -> str | None:
    """The ValueError fn() raised on this rank (None if it returned)."""
    try:
        fn()
    except ValueError as e:
        return str(e)
    return None


def scores_for_model(rank: int):
    g = torch.Generator().manual_seed(3 + rank)
    model = shard_models()[rank]
    return {n: torch.rand(P.current_value(model, n).shape, generator=g) for n in P.layer_parameters(model)}


def _record_ddp(rank: int, out: str):
    """Train a DDP-wrapped model a few steps; record it whole, sharded in memory and sharded on disk."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    whole = kt.TrajectoryRecorder(ddp, opt, stop=4)
    part = kt.TrajectoryRecorder(ddp, opt, stop=4, shard=True)
    disk = kt.TrajectoryRecorder(ddp, opt, stop=4, shard=True, path=os.path.join(out, f"shard{rank}.traj"))
    g = torch.Generator().manual_seed(10 + rank)  # each rank its own batch
    for _ in range(4):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 snapshots: too short to be trusted, compared all the same
        limits = {m: kt.estimate_limit(part.trajectory(), m, group=True) for m in ("koopman", "rre")}
    return {"whole": whole.trajectory(copy=True), "part": part.trajectory(copy=True),
            "disk": kt.Trajectory.load(os.path.join(out, f"shard{rank}.traj")), "limits": limits}


def fsdp_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _record_fsdp(rank: int):
    """FSDP2 (fully_shard) on CPU: each rank records its local shards; masks ranked over ranks."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model, mesh = fsdp_model(), init_device_mesh("cpu", (2,))
    for m in (model[0], model[2], model):
        fully_shard(m, mesh=mesh)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    try:  # a second split of FSDP2's shards left about half of each rank's entries unrecorded, silently
        kt.TrajectoryRecorder(model, opt, stop=6, shard=True)
        refused = None
    except ValueError as e:
        refused = str(e)
    rec = kt.TrajectoryRecorder(model, opt, stop=6)
    g = torch.Generator().manual_seed(20 + rank)
    for _ in range(6):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    traj = rec.trajectory(copy=True)
    masks = P.global_masks(kt.koopman(traj, group=True).kmp_scores(), 1.5, model=model, group=True)
    return {"traj": traj, "masks": masks, "full": {n: p.full_tensor() for n, p in model.named_parameters()},
            "shard=True": refused}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of the 2 ranks computed (list indexed by rank)."""
    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(2, str(out / "store"), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def close(a, b, rtol=1e-10):
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return a.shape == b.shape and float((a - b).abs().max()) <= rtol * float(b.abs().max())


def test_dmd_is_identical_on_every_rank_and_equals_one_process(ranks):
    ref = kt.dmd(snapshot_matrix(), method="gram")
    for key in ("eigs", "amplitudes", "singular_values"):
        assert torch.equal(ranks[0]["dmd"][key], ranks[1]["dmd"][key]), key  # bit for bit
        assert close(ranks[0]["dmd"][key], getattr(ref, key)), key
    fp, pred = ref.fixed_point(), ref.predict([0.0, 3.5])
    for r, lo in enumerate((0, SHARDS[0])):
        rows = slice(lo, lo + SHARDS[r])
        assert close(ranks[r]["dmd"]["fixed_point"], fp[rows]) and close(ranks[r]["dmd"]["predict"], pred[rows])
    # the float64 SVD route agrees too (to its own accuracy)
    assert close(ranks[0]["dmd"]["eigs"], kt.dmd(snapshot_matrix(), method="svd").eigs, 1e-8)


def test_complex_gram_is_summed(ranks):
    W = snapshot_matrix()
    parts = [W[:SHARDS[0]], W[SHARDS[0]:]]
    Wc = torch.cat([torch.complex(p, p.flip(0)) for p in parts])
    assert close(ranks[1]["complex_eigs"], kt.dmd(Wc, method="gram").eigs)


def test_koopman_analysis_with_group_equals_one_process(ranks):
    W = snapshot_matrix()
    traj = kt.Trajectory(W, torch.arange(T), ["p"], [(W.shape[0],)], {"lrs": [0.1] * T})
    k = kt.koopman(traj, method="gram")  # the Gram route, as with a group
    assert ranks[0]["koopman"]["limit_rank"] == ranks[1]["koopman"]["limit_rank"] == k.limit_rank
    assert torch.equal(ranks[0]["koopman"]["eigs"], ranks[1]["koopman"]["eigs"])
    limit, closest = k.fixed_point(), k.fixed_point("closest")
    for r, lo in enumerate((0, SHARDS[0])):
        rows = slice(lo, lo + SHARDS[r])
        assert close(ranks[r]["koopman"]["limit"], limit[rows])
        assert close(ranks[r]["koopman"]["closest"], closest[rows])


def test_the_second_pass_over_sharded_rows_equals_one_process(ranks):
    traj = kt.Trajectory(warm_window(), torch.arange(81), ["p"], [(sum(SHARDS),)], {})
    ks = {m: kt.koopman(traj, method=m) for m in ("gram", "svd")}
    assert ranks[0]["warm"]["rank"] == ranks[1]["warm"]["rank"] == ks["gram"].affine.rank == ks["svd"].affine.rank == 8
    limit = torch.cat([ranks[0]["warm"]["limit"], ranks[1]["warm"]["limit"]])
    for k in ks.values():
        assert close(limit, k.fixed_point(), 1e-8)


@pytest.mark.parametrize("noisy", [False, True])
def test_estimate_limit_over_ranks_equals_one_process(ranks, noisy):
    for m in NOISY_METHODS if noisy else LIMIT_METHODS + ("W",):
        # the paper's mode on the noisy window (on the warm one, 9 modes with s_max / s_min = 8e12, the
        # closest mode is a fit to rounding and differs between any two routes by 8e-5 of the distance)
        W = snapshot_matrix() if m == "closest" or noisy else warm_window()
        method = "rre" if m == "W" else m
        ref = kt.estimate_limit(W, method, **LIMIT_KNOBS.get(m, {}))
        got = torch.cat([ranks[r]["noisy estimates" if noisy else "estimates"][m] for r in (0, 1)])
        assert got.shape == ref.shape and got.dtype == ref.dtype, m
        # the Gram route over ranks against the QR route here: they differ by no more than the QR route differs
        # from itself on the same rows in another order (numerics/reduced.py), here 1e-9 .. 1e-8 of the distance
        # left to go (MPE's least squares is cut at a rank of 8 of 79); a rank's estimate rows scaled by 1 + 1e-9, or
        # its Gram by 1 + 1e-7 on the noisy window, fail it
        spread = 0.0
        for seed in range(4):
            perm = torch.randperm(W.shape[0], generator=torch.Generator().manual_seed(seed))
            again = torch.empty_like(ref)
            again[perm] = kt.estimate_limit(W[perm], method, **LIMIT_KNOBS.get(m, {}))
            spread = max(spread, float((again - ref).norm()))
        assert float((got - ref).norm()) <= 3 * spread + 1e-12 * float((ref - W[:, -1]).norm()), m


def test_a_rank_may_hold_no_rows(ranks):
    W = warm_window()
    traj = kt.Trajectory(W, torch.arange(81), ["p"], [(sum(SHARDS),)], {})
    ref = {"koopman": kt.koopman(traj, method="gram").fixed_point(), "rre": kt.estimate_limit(traj, "rre"),
           "last": W[:, -1], "dmd": kt.dmd(snapshot_matrix(), method="gram").fixed_point()}  # all of the noisy one
    for key, value in ref.items():
        assert ranks[1]["zero_rows"][key].shape == (0,), key
        got, last = ranks[0]["zero_rows"][key], (snapshot_matrix() if key == "dmd" else W)[:, -1]
        assert float((got - value).norm()) <= 1e-8 * float((value - last).norm()) or key == "last", key
        assert key != "last" or torch.equal(got, value)
    one = kt.dmd(snapshot_matrix(), method="gram")
    assert ranks[1]["zero_rows"]["modes"].shape == (0, one.rank) and ranks[1]["zero_rows"]["mode0"].shape == (0,)
    assert ranks[1]["zero_rows"]["complex_predict"].shape == (0,)
    assert ranks[0]["zero_rows"]["modes"].shape[1] == one.rank
    torch.testing.assert_close(ranks[0]["zero_rows"]["complex_predict"].real, one.predict(3), rtol=1e-8, atol=1e-10)


def test_edge_cases_an_audit_found(ranks):
    a, b = ranks[0]["edges"], ranks[1]["edges"]
    assert "compression" in a["compression"] and "compression" in b["compression"], "every rank raises at once"
    for got in (a["gathered"], b["gathered"]):
        assert list(got) == ["a"] and got["a"].dtype == torch.bool and got["a"].tolist() == [True, False, True, False]
    W = warm_window()[:, :40]
    n = W.shape[0]
    groups = [dict(names=[name], lr=lr, momentum=0.0, nesterov=False, dampening=0.0, weight_decay=0.0, maximize=False)
              for name, lr in (("a", 0.1), ("b", 0.05))]
    one = kt.Trajectory(W, torch.arange(40), ["a", "b"], [(n // 2,), (n - n // 2,)],
                        {"every": 1, "lrs": [0.1] * 40, "group_lrs": [[0.1, 0.05]] * 40, "groups": groups})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = kt.koopman(one, method="gram").gradient()
    assert b["gradient"].shape == (0,) and float((a["gradient"] - ref).norm()) <= 1e-8 * float(ref.norm())


def test_a_window_still_on_one_rank_only_is_not_still(ranks):
    W = warm_window()
    lo = SHARDS[0]
    assert torch.equal(torch.cat([ranks[0]["still"]["all"], ranks[1]["still"]["all"]]), W[:, 0])
    mixed = torch.cat([W[:lo, :1].expand(-1, W.shape[1]), W[lo:]])
    ref = kt.estimate_limit(mixed, "koopman")  # one process: the rows of rank 1 move, so the model fits them
    got = torch.cat([ranks[0]["still"]["one rank"], ranks[1]["still"]["one rank"]])
    assert float((got - ref).norm()) <= 1e-8 * float((ref - mixed[:, -1]).norm())
    assert float((got - mixed[:, -1]).norm()) > 1e-3 * float(mixed.norm())  # not the last snapshot
    assert all("rounding" in (ranks[r]["still"]["refused"] or "") for r in (0, 1)), [ranks[r]["still"] for r in (0, 1)]


def test_estimate_limit_ranks_must_agree(ranks):
    for r in (0, 1):
        differ, methods, nan, secant, nan_last = ranks[r]["estimate_refusals"]
        assert ("NaN" if r else "rank 1 of the group refused") in nan_last  # no rank goes on alone
        assert "kt.estimate_limit" in differ and "disagree on a: 1 on rank 0, 2 on rank 1" in differ, differ
        assert "disagree on method: rre on rank 0, mpe on rank 1" in methods
        assert "secant" in secant and "one process" in secant
    assert "a must be a finite number" in ranks[1]["estimate_refusals"][2]
    assert "refused" in ranks[0]["estimate_refusals"][2] and "rank 1" in ranks[0]["estimate_refusals"][2]


def test_a_window_with_no_rows_on_any_rank_is_refused_on_every_rank(ranks):
    for r in (0, 1):
        last, koopman, dmd = ranks[r]["no_rows"]
        assert "traj_or_W has no features (rows) on any rank" in last and last == koopman, ranks[r]["no_rows"]
        assert "W has no features (rows) on any rank" in dmd, dmd


def test_a_nan_on_another_rank_is_named_as_the_caller_passed_it(ranks):
    assert "traj contains NaN" in ranks[1]["koopman_nan"], ranks[1]["koopman_nan"]
    theirs = ranks[0]["koopman_nan"]
    assert "another rank's traj holds NaN" in theirs and " W" not in theirs, theirs  # said W before


def _kept(masks):
    return torch.cat([m.reshape(-1) for m in masks.values()])


def test_global_masks_over_ranks_equal_one_process_with_ties(ranks):
    s0, s1 = score_dicts()
    ref = P.global_masks({**s0, **s1}, COMPRESSION)  # rank order = concatenation order
    assert set(ranks[0]["masks"]) == {"a.weight", "b.weight"} and set(ranks[1]["masks"]) == {"c.weight", "d.weight"}
    got = {**ranks[0]["masks"], **ranks[1]["masks"]}
    assert all(torch.equal(got[n], ref[n]) for n in ref)
    total = sum(s.numel() for s in (*s0.values(), *s1.values()))
    assert int(_kept(got).sum()) + 30 + 50 == round(total / COMPRESSION)
    with pytest.warns(P.TiedScoresWarning) as one:  # ties decide: every rank says what one process says
        P.global_masks({**s0, **s1}, COMPRESSION)
    said = [str(w.message) for w in one if w.category is P.TiedScoresWarning]  # (and that no model= names a classifier)
    assert ranks[0]["tie_warnings"] == ranks[1]["tie_warnings"] == said


def test_names_without_a_model_are_checked_over_every_rank(ranks):
    assert ranks[0]["names"] == ranks[1]["names"] == [
        "classifier='zz' names no module of any rank's scores", "exclude names ['zz.weight'], which no rank's scores hold",
        None, None]


def test_global_masks_with_each_rank_holding_a_model_shard(ranks):
    models, scores = shard_models(), [scores_for_model(r) for r in range(2)]
    total = sum(p.numel() for m in models for p in m.parameters())
    ranked = [torch.cat([s[n].reshape(-1) for n in P.prunable(m)]) for m, s in zip(models, scores)]
    flat = torch.cat(ranked)
    k = round(total / COMPRESSION) - (total - flat.numel())
    expect = torch.zeros_like(flat, dtype=torch.bool)
    expect[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    assert set(ranks[0]["masks_model"]) == {"0.weight", "2.weight"} and set(ranks[1]["masks_model"]) == {"0.weight"}
    assert torch.equal(torch.cat([_kept(ranks[0]["masks_model"]), _kept(ranks[1]["masks_model"])]), expect)


def test_top_k_edge_cases(ranks):
    x = torch.tensor([1.0, -0.0, 0.0, -2.5, 1.0])  # all on rank 1
    for k in range(6):
        assert ranks[0]["topk_empty"][k].numel() == 0
        expect = torch.zeros(5, dtype=torch.bool)
        expect[torch.argsort(x, descending=True, stable=True)[:k]] = True
        assert torch.equal(ranks[1]["topk_empty"][k], expect), k
    for k in range(8):  # 3 + 4 equal values: the lower rank's, then the earlier ones
        both = torch.cat([ranks[0]["topk_ties"][k], ranks[1]["topk_ties"][k]])
        assert both.tolist() == [True] * k + [False] * (7 - k)


def test_a_refusing_rank_makes_every_rank_raise(ranks):
    assert "NaN" in ranks[1]["refused"] and "other rank" in ranks[0]["refused"]


def test_recording_a_ddp_model_whole_and_sharded(ranks):
    whole = [r["ddp"]["whole"] for r in ranks]
    assert whole[0].names == ["0.weight", "0.bias", "2.weight", "2.bias"]  # no "module." prefix
    assert torch.equal(whole[0].snapshots, whole[1].snapshots) and len(whole[0]) == 5  # replicas agree
    n = whole[0].n_features
    for r in range(2):
        for key in ("part", "disk"):
            t = ranks[r]["ddp"][key]
            start, stop = shard_range(n, r, 2)
            assert t.meta["rows"] == (start, stop) and t.meta["n_total"] == n
            assert torch.equal(t.snapshots, whole[0].snapshots[start:stop]) and t.n_features == stop - start
            assert t.meta["all_names"] == whole[0].names and torch.equal(t.steps, whole[0].steps)
    # the boundary cuts 2.weight: rank 0 holds 0.*, 2.weight[:k]; rank 1 the rest
    assert ranks[0]["ddp"]["part"].names[-1] == ranks[1]["ddp"]["part"].names[0]
    # the limits of the sharded recording (Nesterov meta: one delay) are those of the whole one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in ("koopman", "rre"):
            ref = kt.estimate_limit(whole[0], m)
            got = torch.cat([r["ddp"]["limits"][m] for r in ranks])
            assert float((got - ref).norm()) <= 1e-8 * float((ref - whole[0].snapshots[:, -1]).norm()), m


def test_recording_fsdp2_local_shards_and_masks_over_ranks(ranks):
    parts = [r["fsdp"]["traj"] for r in ranks]
    plain = fsdp_model()
    names = [n for n, _ in plain.named_parameters()]
    assert parts[0].names == parts[1].names == names
    assert [tuple(s) for s in parts[0].shapes] == [(3, 6), (3,), (2, 5), (2,)]  # dim-0 shards
    # the whole window, each parameter's shards stacked in rank order
    cols = [torch.cat([torch.cat([p.unflatten(p.snapshots[:, t])[n] for p in parts]).reshape(-1) for n in names])
            for t in range(len(parts[0]))]
    W = torch.stack(cols, 1)
    last = torch.cat([ranks[0]["fsdp"]["full"][n].reshape(-1) for n in names])
    assert torch.equal(W[:, -1], last)
    traj = kt.Trajectory(W, parts[0].steps, names, [tuple(p.shape) for p in plain.parameters()], parts[0].meta)
    ref = P.global_masks(kt.koopman(traj, method="gram").kmp_scores(), 1.5, model=plain)
    got = {n: torch.cat([r["fsdp"]["masks"][n] for r in ranks]) for n in ranks[0]["fsdp"]["masks"]}
    assert set(got) == set(ref) == {"0.weight"} and all(torch.equal(got[n], ref[n]) for n in ref)
    assert all("FSDP2 shards (DTensors) already" in r["fsdp"]["shard=True"] for r in ranks)


def test_group_needs_an_initialised_process_group():
    with pytest.raises(RuntimeError, match="init_process_group"):
        kt.dmd(snapshot_matrix(), group=True)
    for bad in (False, 1, "yes"):  # an AttributeError or torch's "Process group 1 is not initialized" before
        with pytest.raises(TypeError, match=r"group must be None \(one process\), True \(the default group\)"):
            kt.dmd(snapshot_matrix(), group=bad)
        with pytest.raises(TypeError, match="group must be None"):
            P.global_masks({"a.weight": torch.rand(5)}, 2, group=bad)
    model = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"shard must be False, True \(the default group\)"):
        kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), stop=3, shard="yes")
    with pytest.raises(RuntimeError, match=r"^shard= needs torch.distributed initialised"):  # the recorder has no group=
        kt.TrajectoryRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1), stop=3, shard=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_example(tmp_path, *args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), str(ROOT / "examples" / "distributed_kmp.py"), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_example_distributed_kmp_runs_under_torchrun(tmp_path):
    p = torchrun_example(tmp_path, "--out", str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[:6000] + p.stderr[-2000:]
    assert "masks match the single-process run" in p.stdout
    # a batch that does not split evenly, and the window's start (torchrun took "--start" as its --start-method)
    p = torchrun_example(tmp_path, "--batch", "7", "--window-start", "30", "--steps", "36")
    assert p.returncode == 0 and "masks match the single-process run" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
    p = torchrun_example(tmp_path, "--batch", "1")  # an IndexError on rank 1 before, and a dead peer on rank 0
    assert p.returncode != 0 and "--batch 1 is smaller than the 2 ranks" in p.stderr, p.stderr[-3000:]


def test_the_example_gives_every_rank_a_share_of_any_batch():
    """Batch 4 over 3 ranks: torch.chunk made 2 pieces, and rank 2 failed with an IndexError."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("distributed_kmp", ROOT / "examples" / "distributed_kmp.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    for batch, world in [(4, 3), (7, 3), (6, 4), (5, 5), (64, 2)]:
        parts = [example.share(torch.arange(batch), r, world) for r in range(world)]
        assert torch.equal(torch.cat(parts), torch.arange(batch)) and min(p.numel() for p in parts) >= batch // world


def test_top_k_mask_ranks_in_float64_on_one_process(monkeypatch):
    """The radix select on one process (the collectives as identities) keeps what a stable sort
    keeps: float64 scores that differ below float32's precision, both signs, -0.0, ties."""
    from koopman_tut.numerics import distributed as D

    monkeypatch.setattr(D, "all_reduce_sum", lambda x, group: x)
    monkeypatch.setattr(D, "all_gather_sizes", lambda n, group: [n])
    g = torch.Generator().manual_seed(0)
    close = 1.0 + torch.arange(6, dtype=torch.float64) * 1e-12  # one float32 value
    mixed = torch.cat([close, -close, torch.tensor([0.0, -0.0, 1.0, 1.0, -3e300, 2e-310], dtype=torch.float64),
                       torch.randn(50, generator=g, dtype=torch.float64)])
    big = 2**53 + torch.tensor([1, 0, 3, 2, -5, 7, 1], dtype=torch.int64)  # one float64 value for 0 and 1, 2 and 3
    for x in (close, mixed, mixed.float(), big, torch.tensor([3, 1, 2, 1], dtype=torch.uint8)):
        order = torch.sort(x if not x.is_floating_point() else x.double(), descending=True, stable=True).indices
        for k in range(x.numel() + 1):
            want = torch.zeros(x.numel(), dtype=torch.bool)
            want[order[:k]] = True
            assert torch.equal(top_k_mask(x, k, None), want), (x.dtype, k)
    assert torch.equal(top_k_mask(close, torch.tensor(2), None), top_k_mask(close, 2, None))  # k as torch takes it
