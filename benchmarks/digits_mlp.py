"""The full-batch digits MLP the Koopman-gradient benchmarks train (kgp_curved.py, kgp_groups.py): one window
recorded from it, and the loss's true gradient at any of its snapshots."""
import warnings
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

import koopman_tut as kt

X, Y = kt.data.digits()[0].tensors
HIDDEN = (16,)


def window(make_optimizer: Callable, start: int, dtype: torch.dtype, every: int = 1, seed: int = 0):
    """(trajectory, truth) of one full-batch run trained and recorded in ``dtype``: 41 snapshots, ``every`` steps
    apart, from step ``start``; ``make_optimizer(model)`` builds its SGD; truth(t) is the (n,) gradient of the
    loss at snapshot t, computed in float64."""
    model = kt.models.get_model("mlp", seed=seed, hidden=HIDDEN).to(dtype)
    opt = make_optimizer(model)
    stop = start + 40 * every
    rec = kt.TrajectoryRecorder(model, opt, start=start, stop=stop, every=every, dtype=dtype)
    for _ in range(stop):
        opt.zero_grad()
        F.cross_entropy(model(X.to(dtype)), Y).backward()
        opt.step()
    rec.remove()
    traj = rec.trajectory(copy=True)
    ref = kt.models.get_model("mlp", seed=seed, hidden=HIDDEN).double()
    params = dict(ref.named_parameters())

    def truth(t: int) -> torch.Tensor:
        with torch.no_grad():
            for name, v in traj.unflatten(traj.snapshots[:, t].double()).items():
                params[name].copy_(v)
        ref.zero_grad()
        F.cross_entropy(ref(X.double()), Y).backward()
        return torch.cat([params[name].grad.flatten() for name in traj.names])
    return traj, truth


def koopman_gradients(traj, truth: Callable, ts=(0, 20, -1)) -> Iterator[tuple]:
    """(analysis, Koopman gradient, true gradient) at each snapshot t in ``ts``, its warnings silenced (the
    analysis's ``gradient_checks`` hold the verdicts)."""
    k = kt.koopman(traj)
    for t in ts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = k.gradient(t=t)
        yield k, g, truth(t)
