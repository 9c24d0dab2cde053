"""Cost of recording the parameter trajectory: training with vs without TrajectoryRecorder.

    python benchmarks/bench_recording.py [--model mnistnet mlp] [--steps 100] [--repeat 3] [--device cpu]

For each model, trains on synthetic batches (MNIST-shaped for mnistnet/lenet300100,
digits-shaped for mlp, CIFAR-shaped for resnet20), alternating plain and recorded epochs in
one process so both see the same machine state, and prints the best time per epoch of each
and the overhead ratio. Epoch times are noisy on a shared machine (a few percent), so it also
times the recorder's step hook itself and prints its median as a share of a plain step: the
part of the overhead that is the recorder's own. Beside it, on interleaved steps of the same
epochs (each step runs one of them, in a shuffled order), two hooks that only copy the
snapshot (the floor any recorder pays: three routes, and one copy of the snapshot held in one tensor) and
the recorder's per-step checks alone (what keeps its rows equal to the values in use after ``p.data = ...``, a
transpose in place or a tensor swapped into a module or a param group, and its settings log right: one compiled
call, :mod:`koopman_tut.recording.step_checks`, or the Python checks where the C kernels were not built).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import koopman_tut as kt
from koopman_tut.numerics import native
from koopman_tut.recording import step_checks
from koopman_tut.recording.storage import allocate
from koopman_tut.training.train import make_optimizer, resolve_device, train

SHAPES = {"mlp": (64,), "lenet300100": (1, 28, 28), "mnistnet": (1, 28, 28), "resnet20": (3, 32, 32)}


class Interleaved:
    """Step hooks timed on interleaved steps: at each optimizer step one of ``hooks`` runs (in a
    shuffled order, each as often), timed alone, so every hook sees the same machine state."""

    def __init__(self, opt: torch.optim.Optimizer, device: torch.device, hooks: dict, per_hook: int):
        rng = np.random.default_rng(0)
        self.names = list(hooks)
        self.order = rng.permutation(np.repeat(np.arange(len(hooks)), per_hook)).tolist()
        self.fns, self.device, self.i = [hooks[k] for k in self.names], device, 0
        self.times = {k: [] for k in self.names}
        self._handle = opt.register_step_post_hook(self._step)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _step(self, opt, args, kwargs):
        if self.i >= len(self.order):
            return
        j = self.order[self.i]
        self._sync()
        t0 = time.perf_counter()
        self.fns[j](opt, args, kwargs)
        self._sync()
        self.times[self.names[j]].append(time.perf_counter() - t0)
        self.i += 1

    def remove(self):
        self._handle.remove()


def copy_floors(rec: kt.TrajectoryRecorder, device: torch.device) -> dict:
    """Hooks that only copy the recorded weights into the next row of a preallocated (T, n)
    buffer, as any recorder must, by three routes: torch.cat into torch.zeros (one dispatch, pieces
    copied in parallel, 4 KiB pages); numpy.concatenate (one thread) into storage allocated as the
    recorder's is (huge pages); and the compiled copy the recorder takes where it was built
    (:class:`koopman_tut.numerics.native.RowCopy`: streaming stores, on torch's threads), into such storage.
    Below them, one copy of the snapshot held as a single contiguous tensor (``copy_``; no recorder of
    separate parameter tensors copies less)."""
    views = [p.detach().reshape(-1) for p in rec._tensors]
    flat = torch.cat(views)  # the snapshot as one tensor: what a model whose weights share one buffer would copy
    floors = {}
    for route in ("torch.cat, 4 KiB pages", "numpy, recorder's storage", "compiled, recorder's storage"):
        naive = route.startswith("torch")
        buf = (torch.zeros(rec.storage.shape, dtype=rec.storage.dtype, device=rec.storage.device) if naive
               else allocate(*rec.storage.shape, rec.storage.dtype, rec.storage.device, 0.8))
        rows = iter(range(buf.shape[0]))
        if naive or device.type != "cpu":
            floors[route] = lambda *_, buf=buf, rows=rows: torch.cat(views, out=buf[next(rows)])
        elif route.startswith("numpy"):
            nviews, nbuf = [v.numpy() for v in views], buf.numpy()
            floors[route] = lambda *_, nv=nviews, nbuf=nbuf, rows=rows: np.concatenate(nv, out=nbuf[next(rows)])
        elif (copy := native.row_copy(views, buf)) is not None:
            floors[route] = lambda *_, copy=copy, rows=rows: copy(next(rows))
    buf = allocate(*rec.storage.shape, rec.storage.dtype, rec.storage.device, 0.8)
    rows = iter(range(buf.shape[0]))
    floors["one flat copy_"] = lambda *_, buf=buf, rows=rows: buf[next(rows)].copy_(flat)
    return floors


def bench(name: str, a: argparse.Namespace, device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.steps * a.batch, *SHAPES[name], generator=g)
    y = torch.randint(0, 10, (a.steps * a.batch,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=a.batch)
    model = kt.models.get_model(name, seed=0).to(device)
    opt = make_optimizer(model, "nesterov", lr=0.01)
    n = sum(v.numel() for v in (kt.recording.params.current_value(model, nm)
                                for nm in kt.recording.params.layer_parameters(model)))
    print(f"{name}: {n:,} recorded parameters, {a.steps} steps of batch {a.batch} per epoch, {device}, "
          f"{torch.get_num_threads()} threads")
    train(model, loader, epochs=1, max_steps=5, optimizer=opt, progress=False, device=device)  # warm-up
    plain, recorded = [], []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        train(model, loader, epochs=1, optimizer=opt, progress=False, device=device, seed=None)
        plain.append(time.perf_counter() - t0)
        with kt.TrajectoryRecorder(model, opt, every=a.every, stop=a.steps, device=device) as rec:
            t0 = time.perf_counter()
            train(model, loader, epochs=1, optimizer=opt, progress=False, device=device, seed=None)
            recorded.append(time.perf_counter() - t0)
        assert len(rec.steps) == a.steps // a.every + 1
    # the recorder's hook, its per-step checks alone and the copy floors, each on a share of the same epochs' steps
    per_hook = max(1, a.steps * a.repeat // 4)
    rec = kt.TrajectoryRecorder(model, opt, max_snapshots=per_hook + 1, device=device)
    rec.remove()  # its hook runs only on the steps the timer gives it (every=1: a snapshot each time)
    spec, holds = step_checks.spec(rec), native.checker()  # the checks in one call, where the C kernels were built
    check = {"in Python (the model's and optimizer's alone; the route without the compiled call adds the address "
             "and settings checks)": lambda *_: step_checks.unchanged(rec, rec.step)}
    if spec is not None:
        check["one compiled call"] = lambda *_: holds(spec)
    timer = Interleaved(opt, device, {"recorder's hook": rec._hook, **check, **copy_floors(rec, device)}, per_hook)
    while timer.i < len(timer.order):
        train(model, loader, epochs=1, optimizer=opt, progress=False, device=device, seed=None)
    timer.remove()
    assert len(rec.steps) == per_hook + 1
    tp, tr = min(plain), min(recorded)
    med = {k: statistics.median(t) for k, t in timer.times.items()}
    hook, checks = med.pop("recorder's hook"), {k: med.pop(k) for k in check}
    floor = min(v for k, v in med.items() if k != "one flat copy_")
    share = lambda t: f"{100 * t * a.steps / tp:.2f}%"  # noqa: E731
    print(f"  {'epoch without recording':28s} {tp:8.3f} s")
    print(f"  {'epoch recording every ' + str(a.every):28s} {tr:8.3f} s")
    print(f"  overhead: {100 * (tr / tp - 1):+.2f}%  (ratio {tr / tp:.4f}; best of {a.repeat}, noisy)")
    print(f"  recorder hook: median {1e6 * hook:.1f} us per step = {share(hook)} of a plain step "
          f"({1e3 * tp / a.steps:.2f} ms); timed on interleaved steps with the floors below")
    print("  the floor, a hook that only copies the snapshot into the next buffer row: " + ", ".join(
        f"{route} {1e6 * t:.1f} us = {share(t)}" for route, t in med.items()))
    print(f"  the recorder's own work beyond the faster floor: {1e6 * (hook - floor):.1f} us = {share(hook - floor)} "
          f"of a plain step")
    print(f"  of which, timed alone on steps of its own: the per-step checks (the {len(rec._tensors)} recorded "
          f"tensors' storage, slots and places, the optimizer's groups, the data's addresses, the logged settings; the "
          f"hook takes the compiled call where there is one): " + ", ".join(f"{k} {1e6 * t:.1f} us = {share(t)}"
                                                             for k, t in checks.items()))


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
