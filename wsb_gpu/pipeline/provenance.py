"""``run.json``: the provenance of one ``wsb-gpu run``, rewritten as the run goes.

It records the command, the plan, the backend and why, the whole configuration and where it
came from, library versions, the machine, the cluster and its workers, and one record per
stage (status, seconds, rows, throughput, error). It is written atomically after every
stage, so a run that crashes leaves a ``run.json`` saying how far it got.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsb_gpu.backend import Backend
from wsb_gpu.config import Settings
from wsb_gpu.manifest import write_json
from wsb_gpu.pipeline.summary import StageRecord
from wsb_gpu.sysinfo import machine, versions

if TYPE_CHECKING:
    from distributed import Client

RUN_FILE = "run.json"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def workers(client: Client | None) -> dict[str, Any] | None:
    """Workers, threads and hosts of a client's cluster (None without one)."""
    if client is None:
        return None
    try:
        info = client.scheduler_info().get("workers", {})
    except Exception:  # a cluster going away must not break the record of the run
        return None
    return {
        "n_workers": len(info),
        "threads": sum(w.get("nthreads", 0) for w in info.values()),
        "hosts": sorted({w.get("host", "") for w in info.values()}),
    }


class Provenance:
    """The content of ``run.json`` and the thread-safe way to rewrite it."""

    def __init__(self, lake: Path, settings: Settings, backend: Backend, plan: dict[str, Any]) -> None:
        self.path = lake / RUN_FILE
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {
            "status": "running",
            "started_at": _now(),
            "finished_at": None,
            "seconds": None,
            "lake": str(lake),
            "command": sys.argv,
            "plan": plan,
            "backend": {"name": backend.name, "reason": backend.reason},
            "config": settings.to_dict(),
            "config_sources": list(settings.sources),
            "versions": versions(),
            "hardware": machine(),
            "cluster": {"kind": settings.cluster["kind"]},
            "stages": [],
        }

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._t0

    def cluster(self, client: Client | None, dashboard: str | None = None) -> None:
        """Record the cluster's dashboard and workers (kept when the cluster is gone)."""
        found = workers(client)
        if dashboard is not None:
            self.data["cluster"]["dashboard"] = dashboard
        if found is not None or "workers" not in self.data["cluster"]:
            self.data["cluster"]["workers"] = found

    def save(self, status: str, records: Iterable[StageRecord]) -> None:
        """Write ``run.json`` with ``status`` (running, ok, failed, interrupted)."""
        with self._lock:
            self.data["status"] = status
            self.data["stages"] = [r.as_dict() for r in records]
            self.data["seconds"] = round(self.seconds, 3)
            if status != "running":
                self.data["finished_at"] = _now()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.data)
