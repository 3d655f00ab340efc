"""Dask clusters from one factory keyed by kind: ``none``, ``local``, ``cuda``, ``slurm``.

``make_cluster(settings)`` builds the cluster; ``session(settings)`` is what commands use:
it starts the cluster and a client, prints the dashboard link, optionally records a Dask
``performance_report`` of everything inside it, and shuts everything down on the way out,
also on failure. GPU and Slurm packages are imported only when their kind is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dask.utils import parse_bytes
from distributed import Client, LocalCluster, performance_report
from distributed.diagnostics.plugin import WorkerPlugin

from wsb_gpu.config import Settings
from wsb_gpu.errors import GPU_INSTALL, missing_package
from wsb_gpu.interrupt import Interrupted, ignore_sigint_in_worker, kill_children
from wsb_gpu.sysinfo import usable_cores


def make_cluster(settings: Settings) -> Any | None:
    """Start the cluster the settings ask for; ``None`` for kind ``none``.

    Parameters
    ----------
    settings
        Resolved settings; reads the ``cluster`` section only.
    """
    kind = settings.cluster["kind"]
    factory = {
        "none": lambda s: None,
        "local": _local_cluster,
        "cuda": _cuda_cluster,
        "slurm": _slurm_cluster,
    }[kind]
    return factory(settings)


def _local_cluster(settings: Settings) -> Any:
    c = settings.cluster
    n_workers = c["n_workers"] or usable_cores()
    return LocalCluster(
        n_workers=int(n_workers),
        threads_per_worker=int(c["threads_per_worker"]),
        processes=True,
        memory_limit=c["memory_limit"],
        dashboard_address=c["dashboard_address"],
        local_directory=c["local_directory"],
    )


def _cuda_cluster(settings: Settings) -> Any:
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as e:
        raise missing_package("dask-cuda", GPU_INSTALL, "--cluster cuda") from e
    c = settings.cluster
    cuda = c["cuda"]
    kwargs: dict[str, Any] = {
        "dashboard_address": c["dashboard_address"],
        "local_directory": c["local_directory"],
        "enable_cudf_spill": bool(cuda["enable_cudf_spill"]),
        # dask-cuda splits a string; an integer from the YAML (`visible_devices: 0`) must be one.
        "CUDA_VISIBLE_DEVICES": None if cuda["visible_devices"] is None else str(cuda["visible_devices"]),
    }
    if cuda["rmm_pool_size"]:
        kwargs["rmm_pool_size"] = cuda["rmm_pool_size"]
    if cuda["share_rmm_with_torch"]:
        # Route torch/CuPy allocations through the RMM pool of each worker (dask-cuda option).
        kwargs["rmm_allocator_external_lib_list"] = ["torch", "cupy"]
    return LocalCUDACluster(**kwargs)


def _slurm_cluster(settings: Settings) -> Any:
    from wsb_gpu.slurm import slurm_cluster

    return slurm_cluster(settings)


class WorkerSetup(WorkerPlugin):
    """Worker plugin, on every worker of a session.

    * The worker ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and
      the driver stops its workers itself (:mod:`wsb_gpu.interrupt`), rather than each
      worker dying mid-task with a traceback.
    * A closing worker does not report the tasks it was running: when the driver stops the
      cluster mid-task (Ctrl-C, a failed stage), a task cut off by the worker's shutdown
      fails with whatever the dying interpreter raises (``'NoneType' object is not
      callable``); its result is discarded anyway, and its "Compute Failed" traceback would
      bury the driver's one-line message.
    """

    idempotent = True

    def setup(self, worker: Any) -> None:
        ignore_sigint_in_worker()
        log = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _QuietWhileClosing) for f in log.filters):
            log.addFilter(_QuietWhileClosing(worker))

    def teardown(self, worker: Any) -> None:
        # Worker.close tears the plugins down before its executing tasks end.
        logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)


class _QuietWhileClosing(logging.Filter):
    """Drop the worker's error records once it has begun to close (see :class:`WorkerSetup`).

    >>> class W: status = type("S", (), {"name": "closing"})()
    >>> r = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, "Compute Failed", None, None)
    >>> _QuietWhileClosing(W()).filter(r)
    False
    """

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(getattr(self.worker, "status", None), "name", "running")
        return record.levelno < logging.ERROR or status not in ("closing", "closed", "closing_gracefully", "failed")


def input_bytes(inputs: Mapping[str, Any]) -> int:
    """Bytes of a command's input files and dataset folders (missing ones count 0)."""
    total = 0
    for value in inputs.values():
        if value is None:
            continue
        path = Path(value)
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            for root, _, files in os.walk(path):
                total += sum((Path(root) / f).stat().st_size for f in files)
    return total


def in_process(settings: Settings, inputs: Mapping[str, Any]) -> int | None:
    """The input bytes when a single-stage command should run in this process instead of
    starting its default ``LocalCluster`` (``cluster.in_process_below``), else None.

    Only the packaged default counts: ``--cluster``, ``--workers``, a config file naming the
    cluster kind or the number of workers, and ``--profile`` (a performance report needs a
    client) keep the cluster.
    """
    c = settings.cluster
    below = c["in_process_below"]
    limit = int(parse_bytes(below)) if isinstance(below, str) else int(below)
    chosen = {"cluster.kind", "cluster.n_workers"} & settings.explicit
    if c["kind"] != "local" or chosen or limit <= 0 or settings.profile:
        return None
    size = input_bytes(inputs)
    return size if size < limit else None


def dashboard_link(client: Client | None) -> str | None:
    """The dashboard URL of a client's scheduler, or None when it has none."""
    try:
        return client.dashboard_link
    except Exception:
        return None


@contextlib.contextmanager
def session(settings: Settings, *, quiet: bool = False) -> Iterator[Any | None]:
    """Start the configured cluster and a client for the duration of a command.

    Yields the :class:`distributed.Client`, or ``None`` with cluster kind ``none`` (dask's
    threaded scheduler in this process). With ``settings.profile`` set, a Dask
    ``performance_report`` covering everything inside the block is written there.
    """
    # The scheduler runs in this process: its p2p shuffle plugin logs every shuffle it starts
    # and ends at WARNING level (routine, not a problem), which would flood a job's log.
    logging.getLogger("distributed.shuffle._scheduler_plugin").setLevel(logging.ERROR)
    cluster = make_cluster(settings)
    if cluster is None:
        yield None
        return

    try:
        client = Client(cluster)
    except Exception:
        cluster.close()
        raise
    try:
        client.register_plugin(WorkerSetup(), name="wsb-gpu-worker-setup")
        link = dashboard_link(client)
        if link and not quiet:
            print(f"Dask dashboard: {link}", file=sys.stderr)
        if settings.cluster["kind"] == "slurm":
            # Worker jobs may sit in the queue: wait (bounded) for the first one.
            from wsb_gpu.slurm import wait_for_workers

            wait_for_workers(client, settings)
        report = settings.profile
        ctx = performance_report(filename=str(report)) if report else contextlib.nullcontext()
        with ctx:
            yield client
        if report and not quiet:
            print(f"Dask performance report: {report}", file=sys.stderr)
    except Interrupted:
        # Stop now. Local workers are this process's children, busy in a task: stop them
        # outright rather than wait for the task (a Slurm cluster's close cancels its jobs).
        logging.getLogger("distributed").setLevel(logging.CRITICAL)  # the teardown's own noise
        with contextlib.suppress(Exception):
            client.close(timeout=2)
        if settings.cluster["kind"] in ("local", "cuda"):
            kill_children()
        with contextlib.suppress(Exception):
            cluster.close(timeout=3)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.close()
        cluster.close()
