"""Ctrl-C and SIGTERM: stop within seconds, leave nothing running, say what is kept.

The command line (:func:`wsb_gpu.cli.entry`) installs :func:`install`. The first SIGINT
(what a terminal's Ctrl-C sends to the whole process group) or SIGTERM (what Slurm sends at
a job's time limit, about 30 s before SIGKILL, and what ``scancel`` sends) raises
:class:`Interrupted` in the main thread: the pipeline and the stage commands then cancel
their work, close the Dask client and cluster, record ``interrupted`` in ``run.json`` and
print one line saying what is kept. A watchdog ends the process if that has not happened
within :data:`GRACE_S` seconds, killing its child processes (the local workers) first, and
a second signal does so at once.

Dask's worker processes ignore SIGINT (:func:`ignore_sigint_in_worker`, run on every
worker by the session's worker plugin): a Ctrl-C reaches the whole process group, and the
workers are stopped by the driver, not killed mid-task with a traceback each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType

import psutil

GRACE_S = 8.0
"""Seconds between the first signal and the forced exit."""


class Interrupted(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt, not an error
    """Raised in the main thread by the first SIGINT/SIGTERM (a ``BaseException``, so that
    ``except Exception`` handlers let it through)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.message = message

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


_received: list[int] = []


def _is_resource_tracker(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "resource_tracker" in " ".join(process.cmdline())
    return False


def kill_children() -> None:
    """Kill every process this one started (local Dask workers and their nannies), but
    multiprocessing's resource tracker, which ends with this process (killed, it is
    restarted with a warning)."""
    with contextlib.suppress(psutil.Error):
        children = [c for c in psutil.Process().children(recursive=True) if not _is_resource_tracker(c)]
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=2)


def reap_children(timeout: float = 2.0) -> None:
    """Wait (bounded) for this process's children to end, then kill what is left, so that
    an interrupted command leaves no process (not even a zombie) behind. (multiprocessing's
    resource tracker waits for this process to exit, so it is not waited for.)"""
    with contextlib.suppress(psutil.Error):
        children = psutil.Process().children(recursive=True)
        for child in children:
            if _is_resource_tracker(child):
                with contextlib.suppress(psutil.Error):
                    child.kill()
        _, alive = psutil.wait_procs(children, timeout=timeout)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=2)


def _force_exit(signum: int, why: str) -> None:
    print(f"interrupted: {why}; stopping its processes now", file=sys.stderr, flush=True)
    kill_children()
    os._exit(128 + signum)


def _watchdog(signum: int) -> None:
    time.sleep(GRACE_S)
    _force_exit(signum, f"the clean stop took more than {GRACE_S:g} s")


def _handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if len(_received) > 1:
        _force_exit(signum, "a second signal")
    threading.Thread(target=_watchdog, args=(signum,), name="wsb-gpu-interrupt-watchdog", daemon=True).start()
    raise Interrupted(signum)


def install() -> None:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (main thread only)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _handler)


def ignore_sigint_in_worker() -> None:
    """In a worker process, ignore SIGINT: the driver stops the workers itself."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
