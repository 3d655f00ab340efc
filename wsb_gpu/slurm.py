"""Dask workers as Slurm jobs: ``dask_jobqueue.SLURMCluster`` configured from ``jobqueue.yaml``.

The worker jobs are described by a dask-jobqueue *profile* (a section under ``jobqueue:``)
read, in this order of precedence, from

1. the file named by ``cluster.slurm.jobqueue_file``;
2. the repository's ``jobqueue.yaml`` (when running from a checkout);
3. whatever ``dask.config`` holds under ``jobqueue`` (``~/.config/dask/*.yaml``,
   ``DASK_JOBQUEUE__...`` variables, dask-jobqueue's packaged defaults).

Keys of a higher source win key by key over a lower one. This matters because dask-jobqueue
copies its own ``jobqueue.yaml`` into ``~/.config/dask/`` on import, and files there override
packaged defaults: merging our file explicitly on top makes ours win.

On top of the profile, wsb_gpu adds what the settings ask for (:func:`job_kwargs`):

* ``cluster.slurm.gpu``: ``#SBATCH --gres=gpu:1`` and ``dask cuda worker`` (dask-cuda) as
  the worker command, with the RMM pool and cuDF spilling of ``cluster.cuda``;
* ``cluster.slurm.lifetime``: workers retire (``distributed.worker.lifetime``) before the
  job's walltime, staggered, and :func:`slurm_cluster` submits a new job for each job that
  ended, so work moves to fresh jobs instead of being killed by Slurm mid-task;
* ``cluster.slurm.tls``: scheduler<->worker traffic over TLS with temporary credentials
  (:meth:`distributed.security.Security.temporary`), the worker's key and certificate written
  with mode 0600 into the profile's ``shared-temp-directory`` (default
  ``~/.cache/wsb_gpu/tls``), which must be on a filesystem the compute nodes see.

:func:`render_job_script` shows the job script without submitting anything.
"""

from __future__ import annotations

import difflib
import functools
import getpass
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from wsb_gpu.config import Settings
from wsb_gpu.errors import GPU_INSTALL, WsbError, missing_package

REPO_JOBQUEUE = Path(__file__).resolve().parent.parent / "jobqueue.yaml"
DEFAULT_TLS_DIR = "~/.cache/wsb_gpu/tls"
GPU_WORKER_COMMAND = "dask cuda worker"
# How often the driver looks for worker jobs that ended (lifetime reached, walltime, node
# failure) and submits replacements.
REPLACE_INTERVAL_S = 20.0

# dask-jobqueue profile keys (jobqueue.yaml spelling, with '-') -> SLURMCluster keyword.
PROFILE_KEYS = {
    "name": "job_name",
    "cores": "cores",
    "memory": "memory",
    "processes": "processes",
    "python": "python",
    "interface": "interface",
    "death-timeout": "death_timeout",
    "local-directory": "local_directory",
    "shared-temp-directory": "shared_temp_directory",
    "worker-command": "worker_command",
    "worker-extra-args": "worker_extra_args",
    "shebang": "shebang",
    "queue": "queue",
    "account": "account",
    "walltime": "walltime",
    "job-script-prologue": "job_script_prologue",
    "job-cpu": "job_cpu",
    "job-mem": "job_mem",
    "job-extra-directives": "job_extra_directives",
    "job-directives-skip": "job_directives_skip",
    "log-directory": "log_directory",
    "scheduler-options": "scheduler_options",
    "nanny": "nanny",
}
# Deprecated dask-jobqueue spellings, still accepted: old key -> new key.
DEPRECATED_KEYS = {
    "extra": "worker-extra-args",
    "env-extra": "job-script-prologue",
    "job-extra": "job-extra-directives",
    "header-skip": "job-directives-skip",
    "project": "account",
}


def _import_jobqueue() -> Any:
    try:
        import dask_jobqueue
    except ImportError as e:  # a base dependency, but be clear if it is missing
        raise missing_package("dask-jobqueue", "pip install dask-jobqueue", "--cluster slurm") from e
    return dask_jobqueue


# --- small pure helpers ------------------------------------------------------------------------


def parse_walltime(walltime: str | int | None) -> int | None:
    """Seconds of a Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``).

    >>> parse_walltime("01:00:00"), parse_walltime("30"), parse_walltime("1-00:00")
    (3600, 1800, 86400)
    >>> parse_walltime(None) is None
    True
    """
    if walltime is None:
        return None
    text = str(walltime).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        msg = f"walltime {walltime!r} is not a Slurm time limit; write it like '01:00:00' or '2-00:00:00' in jobqueue.yaml"
        raise WsbError(msg)
    days, a, b, c = m.groups()
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, mi, s = int(a), int(b or 0), int(c or 0)
        return int(days) * 86400 + h * 3600 + mi * 60 + s
    if c is not None:  # HH:MM:SS
        return int(a) * 3600 + int(b) * 60 + int(c)
    if b is not None:  # MM:SS
        return int(a) * 60 + int(b)
    return int(a) * 60  # MM


def worker_lifetime(walltime_s: int | None, lifetime: Any = "auto") -> tuple[int, int] | None:
    """Worker lifetime and stagger (seconds) that end the worker before the job's walltime.

    ``auto`` keeps a margin of 10 % of the walltime (at least 1 minute, at most 10, never more
    than half the walltime); the lifetime is staggered by a third of the margin so that the
    workers of jobs started together do not all retire at once. An explicit duration
    (``"55m"``, ``3300``) is checked against the walltime. ``None``/``False`` turns it off.

    >>> worker_lifetime(3600)
    (3240, 120)
    >>> worker_lifetime(60)
    (30, 10)
    >>> worker_lifetime(3600, "50m")
    (3000, 200)
    >>> worker_lifetime(60, "12s")
    (12, 3)
    >>> worker_lifetime(3600, None) is None
    True
    """
    if lifetime in (None, False, "none", "off"):
        return None
    if walltime_s is None:
        if lifetime == "auto":
            return None
        msg = "cluster.slurm.lifetime is set but the jobqueue profile has no walltime; set walltime in jobqueue.yaml"
        raise WsbError(msg)
    if lifetime == "auto":
        margin = min(max(0.1 * walltime_s, 60.0), 600.0, walltime_s / 2)
        return int(walltime_s - margin), int(margin / 3)
    from dask.utils import parse_timedelta

    try:
        seconds = int(parse_timedelta(lifetime, default="s"))
    except (ValueError, KeyError, TypeError) as e:
        msg = f"cluster.slurm.lifetime {lifetime!r} is not a duration; write e.g. '55m', 3300 or 'auto'"
        raise WsbError(msg) from e
    if seconds >= walltime_s:
        msg = (
            f"cluster.slurm.lifetime {lifetime!r} ({seconds} s) is not below the walltime "
            f"({walltime_s} s): Slurm would kill the workers first; use a shorter lifetime or 'auto'"
        )
        raise WsbError(msg)
    # The stagger spreads retirements but must keep lifetime +- stagger inside (0, walltime).
    return seconds, int(min(300, (walltime_s - seconds) / 3, seconds / 4))


def _normalise_profile(raw: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """A profile with dask-jobqueue's spelling (``-``), deprecated keys renamed, unknown refused."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        k = str(key).replace("_", "-")
        if k in DEPRECATED_KEYS:
            new = DEPRECATED_KEYS[k]
            if value not in (None, [], {}) and raw.get(new, raw.get(new.replace("-", "_"))) in (None, [], {}):
                out[new] = value
            continue
        if k not in PROFILE_KEYS:
            close = difflib.get_close_matches(k, list(PROFILE_KEYS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            msg = f"unknown key '{key}' in {origin}; {hint}see docs/slurm.md for the keys of a jobqueue profile"
            raise WsbError(msg)
        out[k] = value
    return out


def _read_jobqueue_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        msg = f"jobqueue file '{path}' does not exist; set cluster.slurm.jobqueue_file to a dask-jobqueue YAML file (see jobqueue.yaml)"
        raise WsbError(msg)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        msg = f"jobqueue file '{path}' is not valid YAML: {e}; fix the syntax"
        raise WsbError(msg) from e
    jobqueue = raw.get("jobqueue") if isinstance(raw, Mapping) else None
    if not isinstance(jobqueue, Mapping):
        msg = f"jobqueue file '{path}' has no 'jobqueue:' mapping; see the repository's jobqueue.yaml for the layout"
        raise WsbError(msg)
    return dict(jobqueue)


def jobqueue_profile(settings: Settings) -> tuple[dict[str, Any], str]:
    """The merged dask-jobqueue profile of the worker jobs, and a description of its source.

    Parameters
    ----------
    settings
        Reads ``cluster.slurm.jobqueue_file``, ``.profile`` and ``.gpu``.

    Returns
    -------
    profile, source
        ``profile`` uses jobqueue.yaml's key spelling (``log-directory`` ...).
    """
    import dask.config

    _import_jobqueue()  # registers dask-jobqueue's defaults with dask.config
    slurm = settings.cluster["slurm"]
    name = slurm["profile"] or ("slurm-gpu" if slurm["gpu"] else "slurm")

    configured = dask.config.get("jobqueue", default={}) or {}
    file_path = Path(os.path.expanduser(slurm["jobqueue_file"])) if slurm["jobqueue_file"] else None
    if file_path is None and REPO_JOBQUEUE.is_file():
        file_path = REPO_JOBQUEUE
    from_file = _read_jobqueue_file(file_path) if file_path else {}

    known = set(configured) | set(from_file)
    if name not in known:
        if slurm["profile"]:
            where = f"'{file_path}'" if file_path else "dask.config"
            msg = f"jobqueue profile '{name}' not found in {where} (profiles: {', '.join(sorted(known))}); fix cluster.slurm.profile"
            raise WsbError(msg)
        name = "slurm"  # gpu without a slurm-gpu profile: the slurm profile plus --gres

    # Lowest to highest: dask.config, then the file; within each, the base `slurm` profile,
    # then the named one (e.g. `slurm-gpu` holds only what differs from `slurm`).
    profile: dict[str, Any] = {}
    for source, label in ((configured, "dask.config"), (from_file, f"'{file_path}'")):
        for layer in dict.fromkeys(("slurm", name)):
            if isinstance(source.get(layer), Mapping):
                profile.update(_normalise_profile(source[layer], f"jobqueue.{layer} of {label}"))
    source_text = f"profile '{name}' of {file_path}" if file_path else f"profile '{name}' of dask.config"
    return profile, source_text


def _abspath(path: str | None) -> str | None:
    """Absolute form of a local path; paths with shell variables are left for the job's shell."""
    if path is None or "$" in str(path):
        return path
    return os.path.abspath(os.path.expanduser(str(path)))


def job_kwargs(settings: Settings, profile: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments of ``SLURMCluster`` (minus security) for the configured worker jobs.

    The profile from :func:`jobqueue_profile` plus what the settings add: GPU directives and
    the dask-cuda worker command, the worker lifetime below the walltime, absolute log and
    temporary directories, and the dashboard address.
    """
    if profile is None:
        profile, _ = jobqueue_profile(settings)
    c = settings.cluster
    slurm = c["slurm"]
    kw: dict[str, Any] = {PROFILE_KEYS[k]: v for k, v in profile.items() if v is not None}
    for key in ("cores", "memory"):
        if kw.get(key) is None:
            msg = (
                f"the jobqueue profile has no '{key}' (cores and memory per worker job are required); "
                "set them in jobqueue.yaml or in the file named by cluster.slurm.jobqueue_file"
            )
            raise WsbError(msg)

    if slurm["job_name"]:
        kw["job_name"] = slurm["job_name"]
    kw.setdefault("job_name", "wsb-worker")
    if c["local_directory"]:
        kw["local_directory"] = c["local_directory"]
    kw["python"] = kw.get("python") or sys.executable
    if kw.get("log_directory"):
        kw["log_directory"] = _abspath(kw["log_directory"])
    kw["shared_temp_directory"] = _abspath(kw.get("shared_temp_directory") or DEFAULT_TLS_DIR)

    prologue = list(kw.get("job_script_prologue") or [])
    directives = list(kw.get("job_extra_directives") or [])
    worker_args = list(kw.get("worker_extra_args") or [])

    if slurm["gpu"]:
        if not any(re.search(r"--(gres|gpus)\b|^-G\b|--gpus-per", d) for d in directives):
            directives.append("--gres=gpu:1")
        if "cuda" not in str(kw.get("worker_command", "")):
            kw["worker_command"] = GPU_WORKER_COMMAND
        kw["processes"] = 1  # dask-cuda starts one worker per GPU of the job itself
        cuda = c["cuda"]
        if cuda["rmm_pool_size"] and "--rmm-pool-size" not in worker_args:
            worker_args += ["--rmm-pool-size", str(cuda["rmm_pool_size"])]
        if cuda["share_rmm_with_torch"] and "--set-rmm-allocator-for-libs" not in worker_args:
            # PyTorch and CuPy allocate from the worker's RMM pool (as in LocalCUDACluster).
            worker_args += ["--set-rmm-allocator-for-libs", "torch,cupy"]
        if cuda["enable_cudf_spill"]:
            prologue.append("export CUDF_SPILL=on  # cuDF spills device buffers to host memory")

    # Workers retire before Slurm's walltime kills them (set through dask's config, which
    # both `dask worker` and `dask cuda worker` read); the driver then submits new jobs.
    if not any(a.startswith("--lifetime") for a in worker_args):
        life = worker_lifetime(parse_walltime(kw.get("walltime")), slurm["lifetime"])
        if life is not None:
            seconds, stagger = life
            prologue += [
                f"export DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION={seconds}s  # walltime {kw.get('walltime')}",
                f"export DASK_DISTRIBUTED__WORKER__LIFETIME__STAGGER={stagger}s",
                "export DASK_DISTRIBUTED__WORKER__LIFETIME__RESTART=False",
            ]

    kw["job_script_prologue"] = prologue
    kw["job_extra_directives"] = directives
    kw["worker_extra_args"] = worker_args
    options = dict(kw.pop("scheduler_options", None) or {})
    options.setdefault("dashboard_address", c["dashboard_address"])
    kw["scheduler_options"] = options
    kw["config_name"] = _register_profile(profile)
    return kw


def _register_profile(profile: Mapping[str, Any]) -> str:
    """Register the merged profile with dask.config under a name of its own; return the name.

    dask-jobqueue builds each job later (when scaling, and again for replacements) and reads
    every keyword left at None from ``jobqueue.<config_name>``. Pointing it at the merged
    profile makes a key set to null in our file stay null, instead of falling back to
    ``jobqueue.slurm`` in dask's config. The name hashes the content, so different settings
    in one process never share a section; defaults survive ``dask.config.refresh()``.
    """
    import hashlib
    import json

    import dask.config

    section = {k: None for k in DEPRECATED_KEYS} | dict(profile)  # dask-jobqueue still reads these
    digest = hashlib.sha1(json.dumps(section, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = f"wsb-gpu-{digest}"
    if dask.config.get(f"jobqueue.{name}", default=None) is None:
        dask.config.update_defaults({"jobqueue": {name: section}})
    return name


def _placeholder_security(tmp_dir: str) -> Any:
    from distributed.security import Security

    return Security(
        tls_ca_file=f"{tmp_dir}/.dask-jobqueue.worker.ca_file.XXXX",
        tls_worker_cert=f"{tmp_dir}/.dask-jobqueue.worker.cert.XXXX",
        tls_worker_key=f"{tmp_dir}/.dask-jobqueue.worker.key.XXXX",
        require_encryption=True,
    )


def render_job_script(settings: Settings) -> str:
    """The job script one worker job would be submitted with, without submitting anything.

    The scheduler address and the temporary TLS file names are placeholders (they exist only
    once the cluster runs); everything else is what :func:`slurm_cluster` submits.
    """
    from dask_jobqueue.slurm import SLURMJob

    _import_jobqueue()
    kw = job_kwargs(settings)
    kw.pop("scheduler_options")
    tmp_dir = kw.pop("shared_temp_directory")
    tls = bool(settings.cluster["slurm"]["tls"])
    protocol = "tls://" if tls else "tcp://"
    log_dir = kw.get("log_directory")
    made_log_dir = bool(log_dir) and not os.path.exists(log_dir)
    try:
        job = SLURMJob(
            f"{protocol}<scheduler-address>:<port>",
            name="<worker-name>",
            protocol=protocol if tls else None,
            security=_placeholder_security(tmp_dir) if tls else None,
            **kw,
        )
        return job.job_script()
    finally:
        # dask-jobqueue creates the log directory when it builds a job: showing a script
        # must not leave a folder behind.
        if made_log_dir and os.path.isdir(log_dir) and not os.listdir(log_dir):
            os.rmdir(log_dir)


# --- the cluster -------------------------------------------------------------------------------


def slurm_cluster(settings: Settings) -> Any:
    """Start a ``SLURMCluster`` with ``cluster.slurm.jobs`` worker jobs.

    Returns once the jobs are submitted (they may still be queued; :func:`wait_for_workers`
    waits for the first one). The scheduler runs in this process; close the cluster to
    cancel the jobs.
    """
    _import_jobqueue()
    c = settings.cluster
    slurm = c["slurm"]
    kw = job_kwargs(settings)
    if slurm["gpu"] and kw["python"] == sys.executable and importlib.util.find_spec("dask_cuda") is None:
        # The workers would run this interpreter and die at once; say so now, not after
        # wait_timeout. (A profile naming another `python` is trusted to have dask-cuda.)
        raise missing_package("dask-cuda", GPU_INSTALL, "GPU worker jobs (cluster.slurm.gpu: true)")
    tmp_dir = kw.get("shared_temp_directory")
    security: Any = None
    if slurm["tls"]:
        from distributed.security import Security

        try:
            security = Security.temporary()
        except ImportError as e:
            raise missing_package("cryptography", "pip install cryptography", "TLS between the scheduler and the Slurm workers") from e
        os.makedirs(tmp_dir, mode=0o700, exist_ok=True)
    for folder in (kw.get("log_directory"),):
        if folder and "$" not in folder:
            os.makedirs(folder, exist_ok=True)
    if shutil.which("sbatch") is None:
        msg = "--cluster slurm needs the Slurm commands (sbatch, squeue, scancel) on PATH; run on a Slurm login node or use --cluster local"
        raise WsbError(msg)
    cluster = _cluster_class()(security=security, **kw)
    try:
        cluster.scale(jobs=int(slurm["jobs"]))
        _install_job_keeper(cluster)
    except Exception:
        cluster.close()
        raise
    return cluster


@functools.lru_cache(maxsize=1)
def _cluster_class() -> type:
    """``SLURMCluster`` that also deletes the workers' temporary TLS files when it closes.

    dask-jobqueue writes them as ``NamedTemporaryFile`` objects kept on the cluster, which
    disappear only when the cluster object is garbage collected; the private key should not
    outlive the cluster on a shared filesystem.
    """
    from dask_jobqueue import SLURMCluster

    class WsbSLURMCluster(SLURMCluster):
        async def _close(self) -> None:
            try:
                await super()._close()
            finally:
                for attr in [a for a in vars(self) if a.startswith("_job_")]:
                    handle = getattr(self, attr)
                    if hasattr(handle, "close") and hasattr(handle, "name"):
                        handle.close()  # NamedTemporaryFile: closing deletes the file

    return WsbSLURMCluster


def _active_job_ids() -> set[str] | None:
    """Ids of this user's jobs Slurm still knows as pending/running, or None if squeue fails."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-u", getpass.getuser()],
            capture_output=True, text=True, timeout=30, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.strip() for line in out.stdout.split() if line.strip()}


def _install_job_keeper(cluster: Any) -> None:
    """Submit a new job for each worker job that ended (lifetime reached, walltime, failure).

    dask-jobqueue leaves a job that ended in the cluster's spec, and SpecCluster only
    resubmits spec entries missing from ``cluster.workers`` when something calls
    ``_correct_state``; plain ``scale(jobs=n)`` never does again. Every
    ``REPLACE_INTERVAL_S`` this forgets the jobs ``squeue`` no longer lists (after the
    scheduler's own lost-worker delay, so the two never race) and corrects the state.
    """
    import asyncio

    import dask.config
    from dask.utils import parse_timedelta
    from distributed.core import Status
    from tornado.ioloop import PeriodicCallback

    grace = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout")) + 1.0
    gone_since: dict[str, float] = {}

    async def check() -> None:
        if cluster.status != Status.running:
            return
        ids = {name: job.job_id for name, job in list(cluster.workers.items()) if getattr(job, "job_id", None)}
        active = await asyncio.get_running_loop().run_in_executor(None, _active_job_ids) if ids else set()
        if active is None:
            return
        now = time.monotonic()
        for name, job_id in ids.items():
            if job_id in active:
                continue
            first = gone_since.setdefault(job_id, now)
            job = cluster.workers.get(name)
            if now - first >= grace and job is not None and job.job_id == job_id:
                del cluster.workers[name]
                gone_since.pop(job_id, None)
        await cluster._correct_state()

    def install() -> None:
        pc = PeriodicCallback(check, REPLACE_INTERVAL_S * 1000)
        cluster.periodic_callbacks["wsb-replace-ended-jobs"] = pc
        pc.start()

    cluster.loop.add_callback(install)


def worker_job_ids(cluster: Any) -> list[str]:
    """Slurm job ids of the cluster's worker jobs (submitted ones)."""
    return [str(job.job_id) for job in list(getattr(cluster, "workers", {}).values()) if getattr(job, "job_id", None)]


def _job_states(job_ids: list[str]) -> str:
    if not job_ids:
        return "no job was submitted"
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T %r"],
            capture_output=True, text=True, timeout=30,
        )
        lines = [" ".join(line.split()) for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        lines = []
    return "; ".join(lines) if lines else "none of them is queued or running any more"


def wait_for_workers(client: Any, settings: Settings, n: int = 1) -> None:
    """Wait up to ``cluster.slurm.wait_timeout`` seconds for ``n`` workers to join.

    Raises
    ------
    WsbError
        Naming the job ids, their states from ``squeue`` and the log directory.
    """
    timeout = float(settings.cluster["slurm"]["wait_timeout"])
    try:
        client.wait_for_workers(n, timeout=timeout)
    except (TimeoutError, OSError) as e:
        cluster = getattr(client, "cluster", None)
        ids = worker_job_ids(cluster) if cluster is not None else []
        log_dir = None
        try:
            log_dir = cluster._dummy_job.log_directory  # noqa: SLF001 - the only place it is kept
        except Exception:
            pass
        where = f"the worker logs in {log_dir}" if log_dir else "the worker job output (set log-directory in jobqueue.yaml)"
        msg = (
            f"no Slurm worker joined within {timeout:g} s (jobs {', '.join(ids) or '-'}: {_job_states(ids)}); "
            f"check `squeue -u {getpass.getuser()}` and {where}, or raise cluster.slurm.wait_timeout"
        )
        raise WsbError(msg) from e


def expected_workers(cluster: Any) -> int:
    """Workers the cluster's spec asks for (jobs x processes per job)."""
    try:
        return len(cluster.plan)
    except Exception:
        return 0
