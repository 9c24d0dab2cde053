"""A pytest plugin for ``make test``'s nbval run: a notebook kernel that dies at start is started again.

jupyter_client picks free ports and the kernel binds them a moment later; under ``pytest -n 2``
another process can take one meanwhile, and the kernel dies with "Address already in use"
before it answers (the runner retries such a start too: ``koopman_tut.tooling.runner``).
nbval starts each notebook's kernel with ``nbval.kernel.start_new_kernel``; this plugin wraps
it so that such a start is tried again in a fresh kernel (fresh ports), at most ``ATTEMPTS``
times in all, with a warning naming the cause. Any other failure (a kernel that does not answer
in time, a missing kernel spec) is raised at once.

    python -m pytest -p tests.nbval_retry --nbval-lax notebooks
"""
from __future__ import annotations

import warnings

import nbval.kernel

from koopman_tut.tooling.runner import DIED_AT_START

ATTEMPTS = 3
_start = nbval.kernel.start_new_kernel


class KernelRestartedWarning(UserWarning):
    """A notebook's kernel died before it answered and was started again."""


def start_new_kernel(*args, **kwargs):
    """nbval's ``start_new_kernel``, tried again (at most ``ATTEMPTS`` in all) when the kernel died at start."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _start(*args, **kwargs)
        except RuntimeError as e:
            if DIED_AT_START not in str(e) or attempt == ATTEMPTS:
                raise
            warnings.warn(f"nbval's kernel died at start ({e}; attempt {attempt} of {ATTEMPTS}): "
                          "starting a fresh one", KernelRestartedWarning, stacklevel=2)


nbval.kernel.start_new_kernel = start_new_kernel
