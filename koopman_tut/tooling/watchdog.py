"""Bounded waits for papermill runs: a lost kernel message becomes a clear error, never a hang.

nbclient (under papermill) waits for each cell's ``execute_reply`` with no time limit unless
it is given one, so a reply that never arrives while the kernel sits idle stalls a run for
good (jupyter/nbclient#312, nteract/papermill#723). Here every wait has a bound:

* a cell's whole run: :attr:`Limits.cell`, from the run's size (a paper-scale cell may
  legitimately compute for hours, a smoke cell for seconds);
* the ``execute_reply`` once the kernel has said it is idle for that cell: :attr:`Limits.reply`
  (short: the kernel sends the reply just before the idle status, so this catches a lost
  reply at any scale without cutting a long cell short);
* the idle status once the reply came: :attr:`Limits.iopub`; kernel start-up and the
  ``kernel_info`` requests outside cells: :attr:`Limits.start`, :attr:`Limits.info`.

A wait past its bound raises :class:`KernelStalled`, which ``koopman_tut.tooling.runner`` retries once.
The hang seen in this project's runs (an ``execute_reply`` left unread in the client's socket
after a send on it) is fixed at its cause in koopman_tut.tooling.kernel_client; these bounds are the
backstop for any other lost message.
"""
from __future__ import annotations

import asyncio
import functools
import math
import os
from dataclasses import dataclass

ENGINE = "koopman_tut"  # the papermill engine name this module registers
CELL_TIMEOUT_ENV = "KOOPMAN_TUT_CELL_TIMEOUT"  # seconds: overrides the per-cell bound


@dataclass(frozen=True)
class Limits:
    """Bounds (seconds) on each wait of one notebook run; every one is finite."""

    cell: float  # one cell's whole run
    reply: float = 30.0  # the execute_reply after the kernel went idle for the cell
    iopub: float = 30.0  # the idle status (and the cell's last outputs) after the reply
    start: float = 120.0  # the kernel's start-up
    info: float = 60.0  # a kernel_info reply outside any cell

    def __post_init__(self):
        for name in ("cell", "reply", "iopub", "start", "info"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"Limits.{name} must be a finite number of seconds > 0, got {value!r}")


def limits_for(params: dict) -> Limits:
    """The bounds for a run with papermill parameters ``params``.

    A cell may run for 10 minutes in a ``SMOKE`` run (seconds are usual), 2 hours on the
    offline ``digits`` dataset, and 48 hours at paper scale (MNIST, CIFAR-10 on a CPU).
    The environment variable ``KOOPMAN_TUT_CELL_TIMEOUT`` (seconds) overrides the per-cell bound
    (rounded up to whole seconds: nbclient's unit).

    Parameters
    ----------
    params : dict
        The run's notebook parameters (``SMOKE``, ``DATASET`` are read).

    Returns
    -------
    Limits

    Raises
    ------
    ValueError
        ``KOOPMAN_TUT_CELL_TIMEOUT`` is not a finite number of seconds > 0.
    """
    env = os.environ.get(CELL_TIMEOUT_ENV)
    if env is not None:
        try:
            return Limits(cell=float(env))
        except ValueError:
            raise ValueError(f"{CELL_TIMEOUT_ENV} must be a number of seconds > 0, got {env!r}") from None
    if params.get("SMOKE"):
        return Limits(cell=600.0)
    return Limits(cell=7200.0 if params.get("DATASET", "digits") == "digits" else 172800.0)


class KernelStalled(TimeoutError):
    """A wait on the kernel ran past its bound.

    Attributes: ``reason`` (what never came), ``cell`` (index of the cell in the executed
    notebook, or None outside cells), ``seconds`` (the bound that ran out) and ``unread``
    (the client's channels that held a message nobody had read when the bound ran out:
    a wake-up the client missed rather than a message the kernel never sent).
    """

    def __init__(self, reason: str, cell: int | None, seconds: float, unread: tuple = ()):
        self.reason, self.cell, self.seconds, self.unread = reason, cell, seconds, tuple(unread)
        where = f" in cell {cell}" if cell is not None else ""
        seen = (f"; a message was waiting unread on the client's {' and '.join(unread)} channel" if unread
                else "; nothing was waiting unread on the client's side")
        super().__init__(f"{reason}{where} (no answer within {seconds:g} s{seen})")

    @property
    def lost_message(self) -> bool:
        """True when a message went missing (as opposed to a cell running past its bound)."""
        return self.reason != RAN_PAST


RAN_PAST = "the cell ran past its time bound"
LOST_REPLY = "a lost kernel message: the kernel went idle but its execute_reply never came"
LOST_IDLE = "a lost kernel message: the execute_reply came but the kernel's idle status never did"
LOST_INFO = "a lost kernel message: no kernel_info_reply"


def _index(cells, cell) -> int | None:
    return next((i for i, c in enumerate(cells) if c is cell), None)


async def _reply_or_stall(reply: asyncio.Future, idle: asyncio.Future, grace: float, cell: int | None):
    """The execute_reply (``reply``'s result, or its error); KernelStalled if it is missing ``grace`` s after
    ``idle``. ``asyncio.wait`` reports the wait's own timeout apart from the reply's errors: nbclient's
    CellTimeoutError (the idle status never came) is a TimeoutError too, and ``wait_for`` mixed the two."""
    await asyncio.wait({reply, idle}, return_when=asyncio.FIRST_COMPLETED)
    if not reply.done():
        done, _ = await asyncio.wait({reply}, timeout=grace)
        if not done:
            raise KernelStalled(LOST_REPLY, cell, grace)
    return reply.result()


@functools.lru_cache(maxsize=None)
def client_class():
    """papermill's notebook client with every wait bounded (built lazily: papermill is heavy)."""
    from nbclient.exceptions import CellTimeoutError
    from papermill.clientwrap import PapermillNotebookClient
    from traitlets import Float

    class BoundedClient(PapermillNotebookClient):
        """Waits for the execute_reply at most ``reply_timeout`` s after the kernel went idle."""

        reply_timeout = Float(Limits.reply).tag(config=True)
        info_timeout = Float(Limits.info).tag(config=True)

        def _unread(self) -> tuple:
            """The client channels holding a message nobody read (for the error message only)."""
            import zmq

            try:
                return tuple(name for name in ("shell", "iopub")
                             if zmq.Socket.shadow(getattr(self.kc, f"{name}_channel").socket.underlying).poll(0))
            except Exception:  # a closed channel: nothing to report
                return ()

        def _get_timeout(self, cell):
            return super()._get_timeout(cell) if cell is not None else self.info_timeout

        async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
            index = _index(self.nb.cells, cell)
            reply = asyncio.ensure_future(super()._async_poll_for_reply(
                msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive))
            try:
                return await _reply_or_stall(reply, task_poll_output_msg, self.reply_timeout, index)
            except KernelStalled as e:
                task_poll_kernel_alive.cancel()
                raise KernelStalled(e.reason, e.cell, e.seconds, self._unread()) from None
            except CellTimeoutError:  # nbclient's only one left: no idle status within iopub_timeout
                task_poll_kernel_alive.cancel()
                raise KernelStalled(LOST_IDLE, index, self.iopub_timeout, self._unread()) from None
            except BaseException:
                task_poll_kernel_alive.cancel()  # nbclient cancels it only on the paths it knows
                raise
            finally:
                reply.cancel()

        async def _async_handle_timeout(self, timeout, cell=None):
            if cell is None:
                raise KernelStalled(LOST_INFO, None, timeout, self._unread())
            raise KernelStalled(RAN_PAST, _index(self.nb.cells, cell), timeout, self._unread())

    return BoundedClient


@functools.lru_cache(maxsize=None)
def register_engine() -> str:
    """Register (once) the papermill engine that runs notebooks with the bounded client; its name."""
    from papermill.engines import NBClientEngine, papermill_engines

    class BoundedEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            from papermill.engines import logger

            kwargs.pop("input_path", None)
            return client_class()(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                                  kernel_name=kernel_name, log=logger, log_output=log_output,
                                  stdout_file=stdout_file, stderr_file=stderr_file, **kwargs).execute()

    papermill_engines.register(ENGINE, BoundedEngine)
    return ENGINE


def engine_options(limits: Limits) -> dict:
    """``papermill.execute_notebook`` keyword arguments that put ``limits`` on a run."""
    s = {k: math.ceil(getattr(limits, k)) for k in ("cell", "start", "iopub")}  # nbclient takes whole seconds
    return {"engine_name": register_engine(), "execution_timeout": s["cell"], "start_timeout": s["start"],
            "iopub_timeout": s["iopub"], "raise_on_iopub_timeout": True, "reply_timeout": limits.reply,
            "info_timeout": limits.info}
