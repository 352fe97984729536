"""Worker processes that never outlive the process that started them.

A pool's workers get :func:`die_with_parent` as their initializer: on Linux the kernel sends them
``SIGKILL`` when their parent dies (``prctl(PR_SET_PDEATHSIG)``), so a ``kill -9`` of
``qpebench prepare`` leaves no orphan rendering hundreds of megabytes; elsewhere a daemon thread
checks the parent every half second.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Final

_PR_SET_PDEATHSIG: Final = 1
_POLL_SECONDS: Final = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process exit when ``parent_pid`` is no longer its parent.

    Args:
        parent_pid: The pid of the process that started the pool (``os.getpid()`` there).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    else:  # pragma: no cover - exercised on macOS only
        threading.Thread(target=_watch, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _watch(parent_pid: int) -> None:  # pragma: no cover - exercised on macOS only
    while os.getppid() == parent_pid:
        time.sleep(_POLL_SECONDS)
    os._exit(1)
