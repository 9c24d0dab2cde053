"""tests/nbval_retry.py: nbval's kernel that dies at start (a port taken meanwhile) is started again."""
from __future__ import annotations

import importlib
import socket
import sys
from pathlib import Path

import pytest

nbval_kernel = pytest.importorskip("nbval.kernel")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
retry = importlib.import_module("tests.nbval_retry")

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_loads_the_plugin_for_nbval():
    nbval_line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if "--nbval-lax" in l)
    assert "-p tests.nbval_retry" in nbval_line
    # nbval looks the function up in its module at every start: the plugin's replacement is the one called
    assert "start_new_kernel" in nbval_kernel.RunningKernel.__init__.__code__.co_names
    assert nbval_kernel.start_new_kernel is retry.start_new_kernel


def test_other_failures_are_raised_at_once(monkeypatch):
    calls = []

    def fails(*a, **k):
        calls.append(1)
        raise RuntimeError("Kernel didn't respond in 60 seconds")

    monkeypatch.setattr(retry, "_start", fails)
    with pytest.raises(RuntimeError, match="didn't respond"):
        retry.start_new_kernel()
    assert len(calls) == 1


def test_gives_up_after_the_last_attempt(monkeypatch):
    calls = []

    def dies(*a, **k):
        calls.append(1)
        raise RuntimeError(retry.DIED_AT_START)

    monkeypatch.setattr(retry, "_start", dies)
    with pytest.warns(retry.KernelRestartedWarning), pytest.raises(RuntimeError, match="died before"):
        retry.start_new_kernel()
    assert len(calls) == retry.ATTEMPTS


@pytest.mark.slow
def test_a_kernel_whose_port_is_taken_is_started_again(monkeypatch):
    """The race itself: the port jupyter_client picks for the first kernel's shell is taken by another
    socket before the kernel binds it; that kernel dies at start, and the next one runs."""
    from jupyter_client.provisioning.local_provisioner import LocalPortCache

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    taken, picked = held.getsockname()[1], []
    find = LocalPortCache.find_available_port

    def first_taken(self, ip):
        picked.append(taken if not picked else find(self, ip))
        return picked[-1]

    monkeypatch.setattr(LocalPortCache, "find_available_port", first_taken)
    try:
        with pytest.warns(retry.KernelRestartedWarning, match="died at start"):
            kernel = nbval_kernel.RunningKernel(nbval_kernel.CURRENT_ENV_KERNEL_NAME, cwd=str(ROOT))
        try:
            assert kernel.km.shell_port != taken and len(picked) == 10  # two kernels' five ports
            msg_id = kernel.execute_cell_input("print(6 * 7)", allow_stdin=False)
            kernel.await_idle(msg_id, 60)
            assert kernel.is_alive()
        finally:
            kernel.stop()
    finally:
        held.close()
