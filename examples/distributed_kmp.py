"""Koopman magnitude pruning with the trajectory's rows spread over ranks (DDP; gloo or NCCL).

    torchrun --nproc_per_node 2 examples/distributed_kmp.py                       # CPU, gloo
    torchrun --nproc_per_node 4 examples/distributed_kmp.py --backend nccl        # one GPU per rank

Every rank trains the same small conv net on its share of each batch of the 8x8 digits
(DistributedDataParallel), and records its contiguous share of the flattened parameters
over a window of steps (``TrajectoryRecorder(ddp, opt, shard=True)``, to a file with
``--out``). The Koopman analysis of those rows needs one all-reduce of a (T, T) matrix
(``kt.koopman(traj, group=True)``); the KMP scores of the local rows are ranked over all
ranks exactly (``P.global_masks(..., group=True)``); the masks are gathered and applied.

Rank 0 then repeats everything alone, without torch.distributed: the same seeds, the same
batches (each share's gradient computed separately and averaged, as DDP does), one whole
trajectory, the same scores and masks. The masks must be identical; the exit code is 1 if
they are not (with 2 ranks the replayed training is bit for bit DDP's: the average of two
float32 gradients is exact whatever the order of the sum).

Nothing waits for ever: the package's collectives first check that every rank agrees (the
window's length, dtype, steps and parameter names; the compression) and raise the same
ValueError on every rank if not, and each gives up after $KOOPMAN_TUT_COLLECTIVE_TIMEOUT
seconds (default 300) with a TimeoutError naming it; ``--timeout`` bounds this script's own
collectives (DDP's gradient all-reduces, the final broadcast) through the process group.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import koopman_tut as kt
from koopman_tut import pruning as P
from koopman_tut.numerics.distributed import all_gather_rows, gather_pieces


class TinyConvNet(nn.Module):
    """conv(1->8, 3) - ReLU - pool 2 - conv(8->16, 3) - ReLU - pool 2 - fc 64->10 (1,898 parameters).

    x: (B, 1, 8, 8) -> logits (B, 10).
    """

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 8, 4, 4)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 16, 2, 2)
        return self.classifier(x.flatten(1))


def batches(n_data: int, steps: int, batch: int, seed: int):
    """Indices of the global batch of each step (the same on every rank)."""
    g = torch.Generator().manual_seed(seed)
    out, order = [], torch.randperm(n_data, generator=g)
    while len(out) < steps:
        if order.numel() < batch:
            order = torch.randperm(n_data, generator=g)
        out.append(order[:batch])
        order = order[batch:]
    return out


def share(idx: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's part of a global batch: ``world`` parts whose sizes differ by at most one."""
    return idx.tensor_split(world)[rank]


def build(seed: int, lr: float):
    torch.manual_seed(seed)
    model = TinyConvNet()
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def kmp_masks(traj, compression: float, group=None):
    """KMP masks from a window (its local rows with a group); the Gram route, as with a group."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kt.DriftWarning)  # a short window still drifts: read as a forecast
        scores = kt.koopman(traj, method="gram", group=group).kmp_scores()
    return P.global_masks(scores, compression, group=group, classifier="classifier")  # no model=: named


def distributed_run(args, data, rank: int, world: int, device: torch.device):
    """Train with DDP, record sharded rows, distributed KMP masks gathered whole; (masks, whole window)."""
    model, opt = build(args.seed, args.lr)
    model.to(device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    path = os.path.join(args.out, f"rank{rank}.traj") if args.out else None
    rec = kt.TrajectoryRecorder(ddp, opt, start=args.start, stop=args.steps, shard=True, path=path)
    x, y = data
    for idx in batches(len(y), args.steps, args.batch, args.seed):
        mine = share(idx, rank, world)
        opt.zero_grad()
        F.cross_entropy(ddp(x[mine].to(device)), y[mine].to(device)).backward()
        opt.step()
    rec.remove()
    traj = kt.Trajectory.load(path) if path else rec.trajectory()  # from disk when recorded there
    masks = kmp_masks(traj, args.compression, group=True)
    full = gather_pieces(masks, traj, True, fill=True)  # the whole model's masks, on every rank
    P.apply_masks(model, full)  # after training: DDP does not follow re-parametrised weights
    window = all_gather_rows(traj.snapshots.cpu(), True)  # only for the comparison below
    if rank == 0:
        print(f"[distributed] {world} ranks, rows per rank {traj.meta['rows']} of {traj.meta['n_total']}, "
              f"{len(traj)} snapshots; compression {P.compression_ratio(model):.2f}", flush=True)
    return {n: m.cpu() for n, m in full.items()}, window


def single_process_run(args, data, world: int):
    """Everything again in one process: same seeds and batches, each share's gradient averaged as DDP does."""
    model, opt = build(args.seed, args.lr)
    rec = kt.TrajectoryRecorder(model, opt, start=args.start, stop=args.steps)
    x, y = data
    params = list(model.parameters())
    for idx in batches(len(y), args.steps, args.batch, args.seed):
        grads = []
        for r in range(world):
            mine = share(idx, r, world)
            grads.append(torch.autograd.grad(F.cross_entropy(model(x[mine]), y[mine]), params))
        opt.zero_grad()
        for i, p in enumerate(params):  # DDP: each rank's gradient / world, summed over ranks
            p.grad = grads[0][i] / world
            for g in grads[1:]:
                p.grad = p.grad + g[i] / world
        opt.step()
    rec.remove()
    traj = rec.trajectory()
    return kmp_masks(traj, args.compression), traj.snapshots


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps (the window ends at the last)")
    ap.add_argument("--window-start", dest="start", type=int, default=20,  # "--start" torchrun would take as its own
                    help="first step of the recorded window")
    ap.add_argument("--batch", type=int, default=64, help="global batch, split over the ranks")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--compression", type=float, default=2.0)  # the classifier, left unpruned, is a third
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="record each rank's rows to OUT/rank<r>.traj")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="minutes any collective of the process group waits for the other ranks")
    args = ap.parse_args()
    torch.set_num_threads(1)  # reproducible CPU kernels, and no oversubscription with several ranks
    dist.init_process_group(args.backend, timeout=timedelta(minutes=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch < world:  # refused on every rank alike, before any collective
        ap.error(f"--batch {args.batch} is smaller than the {world} ranks: each rank needs at least one example")
    device = torch.device("cpu")
    if args.backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    tr, _ = kt.data.digits(seed=args.seed, image=True)
    data = tr.tensors
    masks, window = distributed_run(args, data, rank, world, device)
    ok = torch.tensor([1], device=device)
    if rank == 0:
        ref_masks, ref_window = single_process_run(args, data, world)
        drift = float((window - ref_window).abs().max())
        same = set(masks) == set(ref_masks) and all(torch.equal(masks[n], ref_masks[n]) for n in ref_masks)
        differ = sum(int((masks[n] != ref_masks[n]).sum()) for n in ref_masks if n in masks)
        print(f"[single process] window max |difference| {drift:.3g}; "
              f"{sum(int(m.sum()) for m in ref_masks.values())} of {sum(m.numel() for m in ref_masks.values())} "
              f"ranked weights kept; masks {'match' if same else f'DIFFER in {differ} entries from'} the "
              f"distributed run", flush=True)
        print("masks match the single-process run" if same else "MISMATCH", flush=True)
        ok[0] = int(same)
    dist.broadcast(ok, 0)
    dist.barrier()
    gc.collect()  # free the DDP wrapper (it holds the process group) before the group is destroyed
    dist.destroy_process_group()
    return 0 if ok.item() else 1


if __name__ == "__main__":
    sys.exit(main())
