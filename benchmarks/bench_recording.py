"""Cost of recording the parameter trajectory: training with vs without TrajectoryRecorder.

    python benchmarks/bench_recording.py [--model mnistnet mlp] [--steps 100] [--repeat 3] [--device cpu]

For each model, trains on synthetic batches (MNIST-shaped for mnistnet/lenet300100,
digits-shaped for mlp, CIFAR-shaped for resnet20), alternating plain and recorded epochs in
one process so both see the same machine state, and prints the best time per epoch of each
and the overhead ratio. Epoch times are noisy on a shared machine (a few percent), so it also
times the recorder's step hook itself, inside the recorded epochs, and prints its median as
a share of a plain step: the part of the overhead that is the recorder's own.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import koopman_tut as kt
from koopman_tut.recording.storage import allocate
from koopman_tut.training.train import make_optimizer, resolve_device, train

SHAPES = {"mlp": (64,), "lenet300100": (1, 28, 28), "mnistnet": (1, 28, 28), "resnet20": (3, 32, 32)}


class HookTimer:
    """Optimizer step hooks registered around another one: the time between them, per step."""

    def __init__(self, opt: torch.optim.Optimizer, device: torch.device):
        self.opt, self.device, self.times, self._t0 = opt, device, [], 0.0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def tic(self, *_):
        self._sync()
        self._t0 = time.perf_counter()

    def toc(self, *_):
        self._sync()
        self.times.append(time.perf_counter() - self._t0)


def bench(name: str, a: argparse.Namespace, device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.steps * a.batch, *SHAPES[name], generator=g)
    y = torch.randint(0, 10, (a.steps * a.batch,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=a.batch)
    model = kt.models.get_model(name, seed=0).to(device)
    opt = make_optimizer(model, "nesterov", lr=0.01)
    n = sum(v.numel() for v in (kt.recording.params.current_value(model, nm) for nm in kt.recording.params.layer_parameters(model)))
    print(f"{name}: {n:,} recorded parameters, {a.steps} steps of batch {a.batch} per epoch, {device}, "
          f"{torch.get_num_threads()} threads")
    train(model, loader, epochs=1, max_steps=5, optimizer=opt, progress=False, device=device)  # warm-up
    plain, recorded, timer = [], [], HookTimer(opt, device)
    floors = {"torch.cat, 4 KiB pages": HookTimer(opt, device), "numpy, recorder's storage": HookTimer(opt, device)}
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        train(model, loader, epochs=1, optimizer=opt, progress=False, device=device, seed=None)
        plain.append(time.perf_counter() - t0)
        tic = opt.register_step_post_hook(timer.tic)  # hooks run in the order registered
        with kt.TrajectoryRecorder(model, opt, every=a.every, stop=a.steps, device=device) as rec:
            toc = opt.register_step_post_hook(timer.toc)
            t0 = time.perf_counter()
            train(model, loader, epochs=1, optimizer=opt, progress=False, device=device, seed=None)
            recorded.append(time.perf_counter() - t0)
        tic.remove()
        toc.remove()
        assert len(rec.steps) == a.steps // a.every + 1
        # the floors: a hook that only copies the recorded weights into the next row of a
        # preallocated (T, n) buffer, as any recorder must, timed the same way, by two routes:
        # torch.cat into torch.zeros (one dispatch, pieces copied in parallel, 4 KiB pages) and
        # numpy.concatenate (one thread) into storage allocated as the recorder's is (huge pages)
        views = [p.detach().reshape(-1) for p in rec._tensors]
        for route, timer_ in floors.items():
            naive = route.startswith("torch")
            buf = (torch.zeros(rec.storage.shape, dtype=rec.storage.dtype, device=rec.storage.device) if naive
                   else allocate(*rec.storage.shape, rec.storage.dtype, rec.storage.device, 0.8))
            rows = iter(range(buf.shape[0]))
            if naive or device.type != "cpu":
                copy = lambda *_: torch.cat(views, out=buf[next(rows)])  # noqa: E731
            else:
                nviews, nbuf = [v.numpy() for v in views], buf.numpy()
                copy = lambda *_: np.concatenate(nviews, out=nbuf[next(rows)])  # noqa: E731
            hooks = [opt.register_step_post_hook(h) for h in (timer_.tic, copy, timer_.toc)]
            train(model, loader, epochs=1, optimizer=opt, progress=False, device=device, seed=None)
            for h in hooks:
                h.remove()
    tp, tr = min(plain), min(recorded)
    hook = statistics.median(timer.times)
    bare = {route: statistics.median(t.times) for route, t in floors.items()}
    floor = min(bare.values())
    print(f"  {'epoch without recording':28s} {tp:8.3f} s")
    print(f"  {'epoch recording every ' + str(a.every):28s} {tr:8.3f} s")
    print(f"  overhead: {100 * (tr / tp - 1):+.2f}%  (ratio {tr / tp:.4f}; best of {a.repeat}, noisy)")
    print(f"  recorder hook: median {1e6 * hook:.1f} us per step = {100 * hook * a.steps / tp:.2f}% of a plain step "
          f"({1e3 * tp / a.steps:.2f} ms)")
    print("  the floor, a hook that only copies the snapshot into the next buffer row: " + ", ".join(
        f"{route} {1e6 * t:.1f} us = {100 * t * a.steps / tp:.2f}%" for route, t in bare.items()))
    print(f"  the recorder's own work beyond the faster floor: {1e6 * (hook - floor):.1f} us "
          f"= {100 * (hook - floor) * a.steps / tp:.2f}% of a plain step")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", default=["mnistnet", "mlp"], choices=sorted(SHAPES))
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--every", type=int, default=1, help="record every k steps")
    p.add_argument("--repeat", type=int, default=3, help="pairs of epochs (best of)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    for name in a.model:
        bench(name, a, device)


if __name__ == "__main__":
    main()
