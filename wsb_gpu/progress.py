"""Computing Dask collections with a progress bar.

Long stages call :func:`compute` instead of ``dask.compute`` so that the user sees tasks
complete (on a distributed client: a progress bar fed by the scheduler; without one:
dask's local ``ProgressBar``).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any


def _client() -> Any | None:
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def compute(*collections: Any, label: str = "", show: bool = True) -> tuple[Any, ...]:
    """``dask.compute(*collections)`` with a progress bar on stderr when ``show``."""
    import dask

    client = _client()
    if label and show:
        print(f"[{label}]", file=sys.stderr, flush=True)
    if client is None:
        from dask.diagnostics import ProgressBar

        ctx = ProgressBar(out=sys.stderr) if show else contextlib.nullcontext()
        with ctx:
            return dask.compute(*collections)
    futures = client.compute(list(collections))
    if show:
        from distributed import progress

        progress(futures, notebook=False)
        print(file=sys.stderr)
    return tuple(client.gather(futures))
