"""Progress that reads well on a terminal and in a log.

On a terminal (stderr is a TTY) long steps show live ``rich`` bars: Dask computations fed by
the distributed scheduler (or by dask's local callbacks without a cluster) and ingest's bytes
read. Elsewhere (a Slurm job log, CI, a pipe) nothing is redrawn: the stage runner prints one
line when a stage starts and one when it ends, with its counts (:func:`log`). A log then reads
``[ingest] start`` … ``[ingest] done: 582,301 rows in 5.7 s``, not hundreds of ``\\r`` fragments.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import dask
from dask.callbacks import Callback
from distributed.diagnostics.progressbar import TextProgressBar
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_CONSOLE = Console(stderr=True)


class Timings(dict):
    """Seconds per named phase, added up over the blocks timed under the same name.

    >>> t = Timings()
    >>> with t.timed("fit"):
    ...     pass
    >>> with t.timed("fit"):
    ...     pass
    >>> list(t), t["fit"] >= 0, list(t.rounded())
    (['fit'], True, ['fit'])
    """

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the seconds the block takes to ``self[name]`` (also when it raises)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t

    def rounded(self, digits: int = 3) -> dict[str, float]:
        """A plain dict of the seconds, rounded (for JSON)."""
        return {k: round(v, digits) for k, v in self.items()}


def live() -> bool:
    """True when progress can be redrawn in place: stderr is a terminal (``WSB_GPU_PROGRESS=log``
    forces log lines, ``=live`` forces bars)."""
    forced = os.environ.get("WSB_GPU_PROGRESS", "").lower()
    if forced in ("log", "live"):
        return forced == "live"
    return sys.stderr.isatty()


def log(message: str) -> None:
    """One line on stderr (no markup), flushed at once so that a job log is current."""
    print(message, file=sys.stderr, flush=True)


def bar(**columns: Any) -> Progress:
    """A ``rich`` progress display on stderr: description, bar, done/total, elapsed."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_CONSOLE,
        transient=True,
        **columns,
    )


@contextmanager
def tracker(label: str, total: float | None = None, *, show: bool = True) -> Iterator[Any]:
    """A live task to ``advance(n)`` on a terminal; a no-op object elsewhere."""
    if not (show and live()):
        yield _NoTask()
        return
    with bar() as progress:
        yield _Task(progress, progress.add_task(label, total=total))


class _Task:
    def __init__(self, progress: Progress, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1, **fields: Any) -> None:
        self._progress.update(self._task, advance=n, **fields)

    def update(self, **fields: Any) -> None:
        self._progress.update(self._task, **fields)


class _NoTask:
    def advance(self, n: float = 1, **fields: Any) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass


def _client() -> Any | None:
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def compute(*collections: Any, label: str = "", show: bool = True) -> tuple[Any, ...]:
    """``dask.compute(*collections)``, on the active distributed client when there is one,
    with a live bar of the tasks on a terminal."""
    client = _client()
    shown = show and live()
    if client is None:
        ctx = _LocalBar(label) if shown else nullcontext()
        with ctx:
            return dask.compute(*collections)
    futures = client.compute(list(collections))
    if shown:
        _scheduler_bar(futures, label)
    return tuple(client.gather(futures))


class _LocalBar(Callback):
    """Tasks done / total of dask's local schedulers, drawn with ``rich``."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self._label = label or "compute"

    def __enter__(self) -> _LocalBar:
        self._display = bar()
        self._display.__enter__()
        self._task = self._display.add_task(self._label, total=None)
        return super().__enter__()

    def __exit__(self, *args: Any) -> None:
        super().__exit__(*args)
        self._display.__exit__(*args)

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
        done = len(state["finished"])
        total = done + sum(len(state[k]) for k in ("ready", "waiting", "running"))
        self._display.update(self._task, completed=done, total=total)


def _scheduler_bar(futures: Any, label: str) -> None:
    """Block until ``futures`` finish, drawing the scheduler's task counts with ``rich``."""

    with bar() as display:
        task = display.add_task(label or "compute", total=None)

        class RichBar(TextProgressBar):
            def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
                display.update(task, completed=all - remaining, total=all)

            def _draw_stop(self, **kwargs: Any) -> None:
                pass

        RichBar(futures, interval="200ms")
