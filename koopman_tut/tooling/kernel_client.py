"""A Jupyter kernel client whose sends never hide a reply: the cause of the widget-cell hang, fixed.

nbclient waits for a cell's ``execute_reply`` by awaiting a poll on the shell socket, a
``zmq.asyncio`` socket. While a widget cell runs, nbclient's stand-in for the Output widget
(nbclient/output_widget.py) sends ``comm_msg`` messages on that same socket, and
``jupyter_client.Session.send`` sends them raw, through a synchronous shadow of the socket.
A raw send runs libzmq's command processing, which consumes the socket's edge-triggered
wake-up (ZMQ_FD); pyzmq's asyncio socket re-reads its events only after its own
operations, so an ``execute_reply`` that arrived during that send is never noticed: it sits
unread in the client's socket while the kernel sits idle, and the run waits forever
(seen here in about 1 notebook run in 15; jupyter/nbclient#312 and #311,
jupyter/jupyter_client#1059 and #1010, nteract/papermill#723; the kernel-side twin is
ipython/ipykernel#1554, fixed there by ipython/ipykernel#1529).

:class:`RearmingKernelClient` reads the socket's events through the asyncio socket after
every send, which makes pyzmq schedule the waiting poll when a message is already there.
koopman_tut.tooling.runner selects it for every notebook run (``KernelManager.client_class``).
"""
from __future__ import annotations

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from traitlets import Type


class RearmingChannel(AsyncZMQSocketChannel):
    """A channel whose ``send`` re-arms the asyncio socket's wake-up after the raw send, and
    gives up after ``send_timeout`` seconds instead of blocking for good when the kernel takes
    nothing (a raw send blocks the event loop: no other bound could fire)."""

    send_timeout = 60.0  # seconds

    def send(self, msg: dict) -> None:
        """Send ``msg`` (a Jupyter message dict), then let pending receives see what arrived meanwhile.

        Raises
        ------
        TimeoutError
            The kernel took no message within ``send_timeout`` s (no working connection to it).
        """
        self.socket.setsockopt(zmq.SNDTIMEO, round(self.send_timeout * 1000))
        try:
            super().send(msg)
        except zmq.Again:
            raise TimeoutError(f"the kernel took no {msg['msg_type']} within {self.send_timeout:g} s: no working "
                               f"connection to it (does its kernelspec declare a transport encryption "
                               f"that the installed ipykernel does not speak?)") from None
        if not self.socket.closed:
            self.socket.get(zmq.EVENTS)  # zmq.asyncio: schedules the waiting poll if a message is in


class RearmingKernelClient(AsyncKernelClient):
    """jupyter_client's async kernel client with :class:`RearmingChannel` for every socket it sends on."""

    shell_channel_class = Type(RearmingChannel)
    control_channel_class = Type(RearmingChannel)
    stdin_channel_class = Type(RearmingChannel)


CLIENT_CLASS = f"{__name__}.{RearmingKernelClient.__name__}"
