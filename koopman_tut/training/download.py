"""A dataset download with a bound on the whole of it, not only on each network call.

torchvision reads a download in chunks, each bounded by the socket timeout alone: a server that
sends a byte now and then keeps it going for as long as it likes (1 byte a second: 116 days for
MNIST), and a name lookup is outside the socket timeout altogether. So the download runs in a
child process, its socket calls bounded by ``timeout``, and the child is stopped after
``deadline`` seconds; the parent then reads the files it left (a file cut short fails its MD5
next time, and is fetched again).
"""
from __future__ import annotations

import math
import subprocess
import sys

DEADLINE = 3600.0  # seconds for a whole download: CIFAR-10's 170 MB at 50 KB/s


def check_seconds(name: str, value) -> float:
    """``value`` as a finite number of seconds > 0 (None or inf would remove the bound); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def fetch(code: str, what: str, timeout: float, deadline: float = DEADLINE) -> None:
    """Run the Python statements ``code`` (a torchvision download) in a child process whose socket calls time out
    after ``timeout`` s, stopped after ``deadline`` s (TimeoutError naming ``what``); an error there is an OSError
    here, with the child's last line."""
    timeout, deadline = check_seconds("timeout", timeout), check_seconds("deadline", deadline)
    program = f"import socket\nsocket.setdefaulttimeout({timeout!r})\n{code}"
    try:
        proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=deadline,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"downloading {what} took over {deadline:g} s and was stopped (deadline=)") from e
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise OSError(f"downloading {what} failed: {last}")
