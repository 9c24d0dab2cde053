"""The project's canonical order of eigenvalues (LAPACK's order depends on the CPU, the BLAS and the route).

Every eigenvalue list the package hands out (:func:`koopman_tut.numerics.dmd`, the reduced models, the spectra of
training runs) is put in this order, so that index k means the same eigenvalue on every machine.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def _clusters(values: list[float], tol: float) -> list[int]:
    """Cluster ids for ascending ``values``: a cluster starts at its first value and holds every
    later value within ``tol`` of that first one (so no cluster is wider than ``tol``)."""
    ids, first, cid = [], None, -1
    for v in values:
        if first is None or v > first + tol:
            first, cid = v, cid + 1
        ids.append(cid)
    return ids


def canonical_order(eigs: Tensor, rtol: float = 1e-8) -> Tensor:
    """The permutation (r,) that puts eigenvalues in the project's canonical order.

    Descending modulus; moduli within ``rtol * max(1, max|lambda|)`` of the largest of their
    group count as equal, and inside such a group eigenvalues are ordered by |argument| (equal
    within ``rtol`` radians of the smallest of their subgroup: so lambda = 1 comes before
    lambda = -1), then the positive imaginary part first, then by exact modulus and argument.
    So conjugate pairs (exact in real data) come out adjacent, + then -, and the result never
    depends on the order LAPACK returned (which depends on the CPU, the BLAS and the route).
    Like any rule with a tolerance it is discontinuous at the tolerance: two eigenvalues whose
    moduli or arguments differ by about ``rtol`` can swap between machines; those that differ
    by rounding only (far below ``rtol``) or by clearly more never do.

    Parameters
    ----------
    eigs : (r,) complex (or real) eigenvalues, any device.
    rtol : relative tolerance under which two moduli (or two arguments, in radians) are equal.

    Returns
    -------
    (r,) long permutation on the CPU: ``eigs[perm]`` is in canonical order.
    """
    lam = torch.as_tensor(eigs).detach().cpu().to(torch.complex128).reshape(-1)
    r = lam.numel()
    mod, arg, neg = lam.abs().tolist(), lam.angle().abs().tolist(), (lam.imag < 0).tolist()
    tol = rtol * max([1.0] + mod)
    by_mod = sorted(range(r), key=lambda i: (-mod[i], arg[i], neg[i]))
    mod_id = dict(zip(by_mod, _clusters([-mod[i] for i in by_mod], tol)))
    arg_id = {}
    for m in set(mod_id.values()):  # |argument| clusters inside each modulus cluster
        members = sorted((i for i in range(r) if mod_id[i] == m), key=lambda i: arg[i])
        arg_id.update(zip(members, _clusters([arg[i] for i in members], rtol)))
    key = {i: (mod_id[i], arg_id[i], neg[i], -mod[i], arg[i]) for i in range(r)}
    return torch.tensor(sorted(range(r), key=key.__getitem__), dtype=torch.long)
