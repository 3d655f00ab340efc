"""Keep a ``SLURMCluster`` at its size: submit a new job for each worker job that ended.

A worker that reaches its lifetime (``distributed.worker.lifetime``, which wsb_gpu sets below
the walltime) retires gracefully and its Slurm job ends. dask-jobqueue does not submit a job in
its place: the ended job stays in the cluster's ``workers`` as if it were still there, so
``SpecCluster`` sees nothing to correct and the cluster shrinks until it has no workers left.
That is dask/dask-jobqueue#691, "jobs not resubmitted in ``SLURMCluster`` after graceful closure
via ``--lifetime``": https://github.com/dask/dask-jobqueue/issues/691. :class:`JobKeeper` works
around it; remove it once that issue is fixed in the dask-jobqueue wsb_gpu requires.
"""

from __future__ import annotations

import asyncio
import getpass
import subprocess
import time
from typing import Any

import dask.config
from dask.utils import parse_timedelta
from distributed.core import Status


def active_job_ids() -> set[str] | None:
    """Ids of this user's jobs that Slurm still lists as pending or running; None if squeue fails."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-u", getpass.getuser()],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.strip() for line in out.stdout.split() if line.strip()}


class JobKeeper:
    """Every ``interval_s`` seconds, forget the worker jobs ``squeue`` no longer lists and resubmit.

    A job is forgotten only once it has been gone for ``grace_s`` seconds (by default the
    scheduler's ``distributed.deploy.lost-worker-timeout`` plus one), so that the scheduler has
    handled the loss of its worker first and the two never race. Forgetting a job removes it
    from ``cluster.workers`` while its entry stays in the cluster's spec; correcting the state
    then starts a job for that entry, under the same worker name.

    Parameters
    ----------
    cluster
        A running ``dask_jobqueue.SLURMCluster`` (any ``SpecCluster`` whose workers have a
        ``job_id``).
    interval_s
        Seconds between two looks at ``squeue``.
    grace_s
        Seconds a job must have been gone before it is replaced; None = the lost-worker timeout + 1.
    """

    #: Key of the keeper in ``cluster.periodic_callbacks`` (stopped when the cluster closes).
    callback_name = "wsb-gpu-job-keeper"

    def __init__(self, cluster: Any, interval_s: float, grace_s: float | None = None) -> None:
        if grace_s is None:
            grace_s = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout")) + 1.0
        self.cluster = cluster
        self.interval_s = float(interval_s)
        self.grace_s = float(grace_s)
        self._gone_since: dict[str, float] = {}

    def start(self) -> JobKeeper:
        """Start looking, on the cluster's event loop; returns ``self``."""
        self.cluster.loop.add_callback(self._install)
        return self

    def _install(self) -> None:
        from tornado.ioloop import PeriodicCallback

        callback = PeriodicCallback(self.check, self.interval_s * 1000)
        self.cluster.periodic_callbacks[self.callback_name] = callback
        callback.start()

    async def check(self) -> None:
        """One look: forget the jobs gone for longer than ``grace_s``, then resubmit."""

        cluster = self.cluster
        if cluster.status != Status.running:
            return
        ids = {name: job.job_id for name, job in list(cluster.workers.items()) if getattr(job, "job_id", None)}
        active = await asyncio.get_running_loop().run_in_executor(None, active_job_ids) if ids else set()
        if active is None:  # squeue failed this time: change nothing
            return
        now = time.monotonic()
        for name, job_id in ids.items():
            if job_id in active:
                continue
            first = self._gone_since.setdefault(job_id, now)
            job = cluster.workers.get(name)
            if now - first >= self.grace_s and job is not None and job.job_id == job_id:
                del cluster.workers[name]
                self._gone_since.pop(job_id, None)
        _start_missing_jobs(cluster)


def _start_missing_jobs(cluster: Any) -> None:
    """Have the cluster start a job for every spec entry without one (those :meth:`JobKeeper.check` forgot).

    ``SpecCluster`` compares its spec with its workers and starts what is missing in its private
    ``_correct_state``; the public way to get there is ``scale``, which always ends by scheduling
    that correction. Scaling to the number of jobs the spec already holds changes nothing else
    (an adaptive cluster keeps its own target), so this is a resubmission through the public API.
    """
    cluster.scale(jobs=len(cluster.worker_spec))
