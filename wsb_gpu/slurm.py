"""Dask workers as Slurm jobs: ``dask_jobqueue.SLURMCluster`` configured through ``dask.config``.

The worker jobs are described by a dask-jobqueue *profile*, a section under ``jobqueue:`` of a
``jobqueue.yaml`` file: wsb_gpu's own (:data:`PACKAGED_JOBQUEUE`, package data, so an installed
wheel has it too; the repository's top-level ``jobqueue.yaml`` is a link to it), or the file
named by ``cluster.slurm.jobqueue_file``. :func:`jobqueue_profile` merges, lowest first:

1. the base ``slurm`` profile: dask.config's ``jobqueue.slurm`` (dask-jobqueue's defaults,
   ``~/.config/dask/*.yaml``, ``DASK_JOBQUEUE__SLURM__...`` variables), then the file's;
2. the named profile (``cluster.slurm.profile``, or ``slurm-gpu`` for GPU workers when it
   exists): dask.config's, then the file's.

A key set in the file wins key by key over dask.config, because dask-jobqueue copies its own
``jobqueue.yaml`` (every key null) into ``~/.config/dask/`` on import, and files there override
packaged defaults. Valid keys, and the renamed ones, are dask-jobqueue's own.

:func:`job_config` adds what the settings ask for:

* ``cluster.slurm.gpu``: ``#SBATCH --gres=gpu:1`` and ``dask cuda worker`` (dask-cuda) as
  the worker command, with the RMM pool and cuDF spilling of ``cluster.cuda``;
* ``cluster.slurm.lifetime``: workers retire (``distributed.worker.lifetime``) before the
  job's walltime, staggered, and :class:`~wsb_gpu.slurm_keeper.JobKeeper` submits a new job
  for each job that ended, so work moves to fresh jobs instead of being killed by Slurm;
* the job name, the interpreter (the driver's when ``python`` is null), absolute log and
  shared temporary directories, and the dashboard address of the scheduler.

The result is registered with ``dask.config`` as a section of its own, ``jobqueue.<name>``,
and the cluster is ``SLURMCluster(config_name=<name>, security=...)``: dask-jobqueue reads every
job setting from there, for the first jobs and for every replacement.

With ``cluster.slurm.tls`` (the default) scheduler<->worker traffic uses TLS with temporary
credentials (:class:`TemporaryTLS`): the worker's CA, certificate and key are files only you can
read in the profile's ``shared-temp-directory`` (default ``~/.cache/wsb_gpu/tls``, which must be
on a filesystem the compute nodes see), removed when the cluster closes.

:func:`render_job_script` shows the job script without submitting anything.
"""

from __future__ import annotations

import copy
import difflib
import functools
import getpass
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import dask.config
import yaml
from dask.utils import parse_timedelta

from wsb_gpu.config import Settings
from wsb_gpu.errors import GPU_INSTALL, WsbError, missing_package

if TYPE_CHECKING:
    from distributed import Client

#: wsb_gpu's default ``jobqueue.yaml`` (package data; the repository's top-level file links here).
PACKAGED_JOBQUEUE = Path(__file__).with_name("jobqueue.yaml")
DEFAULT_TLS_DIR = "~/.cache/wsb_gpu/tls"
GPU_WORKER_COMMAND = "dask cuda worker"
# How often the driver looks for worker jobs that ended (lifetime reached, walltime, node
# failure) and submits replacements.
REPLACE_INTERVAL_S = 20.0
# SLURMJob keywords that dask-jobqueue never reads from its configuration: a profile may set
# them, and wsb_gpu passes them to SLURMCluster itself.
KEYWORD_ONLY_KEYS = ("nanny",)
_EMPTY = (None, [], {}, "")


def _import_jobqueue() -> Any:
    try:
        import dask_jobqueue
    except ImportError as e:  # a base dependency, but be clear if it is missing
        raise missing_package("dask-jobqueue", "pip install dask-jobqueue", "--cluster slurm") from e
    return dask_jobqueue


@functools.lru_cache(maxsize=1)
def _upstream_slurm_section() -> dict[str, Any]:
    """The ``slurm`` section of dask-jobqueue's own packaged ``jobqueue.yaml``: the keys its jobs read."""

    _import_jobqueue()
    text = (files("dask_jobqueue") / "jobqueue.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text)["jobqueue"]["slurm"])


@functools.lru_cache(maxsize=1)
def _renamed_keys() -> dict[str, str]:
    """dask-jobqueue's deprecated profile keys: old spelling -> new (``env-extra`` -> ``job-script-prologue``).

    dask-jobqueue keeps no table of them; the one place that lists them all is its documentation
    of ``SLURMCluster`` ("Deprecated: use ``job_script_prologue`` instead"), so they are read from
    there rather than copied. Should that wording change, nothing is renamed here and
    dask-jobqueue handles the old keys itself (with its FutureWarning).
    """
    from dask_jobqueue import SLURMCluster

    pattern = r"^\s*(\w+) : \w+\s*\n\s+Deprecated: use ``(\w+)`` instead"
    found = re.findall(pattern, SLURMCluster.__doc__ or "", re.MULTILINE)
    return {old.replace("_", "-"): new.replace("_", "-") for old, new in found}


def _profile_keys() -> list[str]:
    return [*_upstream_slurm_section(), *_renamed_keys(), *KEYWORD_ONLY_KEYS]


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
        msg = (
            f"walltime {walltime!r} is not a Slurm time limit; "
            "write it like '01:00:00' or '2-00:00:00' in jobqueue.yaml"
        )
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


def _abspath(path: str | None) -> str | None:
    """Absolute form of a local path; paths with shell variables are left for the job's shell.

    >>> _abspath("${TMPDIR:-/tmp}"), _abspath(None), _abspath("/a/b/../c")
    ('${TMPDIR:-/tmp}', None, '/a/c')
    """
    if path is None or "$" in str(path):
        return path
    return os.path.abspath(os.path.expanduser(str(path)))


# --- the profile -------------------------------------------------------------------------------


def _normalise_profile(raw: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """A profile with dask-jobqueue's spelling (``-``); a key dask-jobqueue does not know is refused."""
    known = _profile_keys()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        k = str(key).replace("_", "-")
        if k not in known:
            close = difflib.get_close_matches(k, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            msg = f"unknown key '{key}' in {origin}; {hint}see docs/slurm.md for the keys of a jobqueue profile"
            raise WsbError(msg)
        out[k] = value
    return out


def _apply_renamed_keys(profile: dict[str, Any]) -> dict[str, Any]:
    """Move values of deprecated keys to their new spelling (unless that is set), as dask-jobqueue would.

    Done here rather than left to dask-jobqueue because wsb_gpu extends some of the new keys
    (``job-script-prologue`` with the lifetime, ``job-extra-directives`` with ``--gres``), and
    dask-jobqueue ignores an old key as soon as the new one is not empty.

    >>> _apply_renamed_keys({"env-extra": ["module load x"], "job-script-prologue": []})["job-script-prologue"]
    ['module load x']
    """
    for old, new in _renamed_keys().items():
        value = profile.pop(old, None)
        if value not in _EMPTY and profile.get(new) in _EMPTY:
            profile[new] = value
    return profile


def _read_jobqueue_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        msg = (
            f"jobqueue file '{path}' does not exist; set cluster.slurm.jobqueue_file to a dask-jobqueue "
            f"YAML file (see {PACKAGED_JOBQUEUE})"
        )
        raise WsbError(msg)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        msg = f"jobqueue file '{path}' is not valid YAML: {e}; fix the syntax"
        raise WsbError(msg) from e
    jobqueue = raw.get("jobqueue") if isinstance(raw, Mapping) else None
    if not isinstance(jobqueue, Mapping):
        msg = f"jobqueue file '{path}' has no 'jobqueue:' mapping; see {PACKAGED_JOBQUEUE} for the layout"
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
        ``profile`` uses jobqueue.yaml's key spelling (``log-directory`` ...), deprecated keys
        already renamed.
    """

    _import_jobqueue()  # registers dask-jobqueue's defaults with dask.config
    slurm = settings.cluster["slurm"]
    name = slurm["profile"] or ("slurm-gpu" if slurm["gpu"] else "slurm")

    configured = dask.config.get("jobqueue", default={}) or {}
    if slurm["jobqueue_file"]:
        file_path, file_label = Path(os.path.expanduser(slurm["jobqueue_file"])), ""
    else:
        file_path, file_label = PACKAGED_JOBQUEUE, " (wsb_gpu's default)"
    from_file = _read_jobqueue_file(file_path)

    known = set(configured) | set(from_file)
    if name not in known:
        if slurm["profile"]:
            msg = (
                f"jobqueue profile '{name}' not found in '{file_path}' or dask.config "
                f"(profiles: {', '.join(sorted(known))}); fix cluster.slurm.profile"
            )
            raise WsbError(msg)
        name = "slurm"  # gpu without a slurm-gpu profile: the slurm profile plus --gres

    # The base profile before the named one (which holds only what differs from `slurm`), and
    # at each level the file over dask.config. (Level first, so that a profile defined only in
    # ~/.config/dask is not overwritten by the file's base profile.)
    profile: dict[str, Any] = {}
    for layer in dict.fromkeys(("slurm", name)):
        for source, label in ((configured, "dask.config"), (from_file, f"'{file_path}'")):
            if isinstance(source.get(layer), Mapping):
                profile.update(_normalise_profile(source[layer], f"jobqueue.{layer} of {label}"))
    if name in from_file:
        source_text = f"profile '{name}' of {file_path}{file_label}"
    else:  # a profile of dask.config only, over the file's base profile
        source_text = f"profile '{name}' of dask.config, over profile 'slurm' of {file_path}{file_label}"
    return _apply_renamed_keys(profile), source_text


def job_config(settings: Settings, profile: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The complete ``jobqueue.<name>`` section the worker jobs are built from.

    The profile from :func:`jobqueue_profile` plus what the settings add: the job name, GPU
    directives and the dask-cuda worker command, the worker lifetime below the walltime, the
    interpreter, absolute log and temporary directories, and the dashboard address. Keys use
    jobqueue.yaml's spelling.
    """
    if profile is None:
        profile, _ = jobqueue_profile(settings)
    c = settings.cluster
    slurm = c["slurm"]
    job: dict[str, Any] = dict(profile)
    for key in ("cores", "memory"):
        if job.get(key) is None:
            msg = (
                f"the jobqueue profile has no '{key}' (cores and memory per worker job are required); "
                "set them in jobqueue.yaml or in the file named by cluster.slurm.jobqueue_file"
            )
            raise WsbError(msg)

    job["name"] = slurm["job_name"] or job.get("name") or "wsb-worker"
    if c["local_directory"]:
        job["local-directory"] = c["local_directory"]
    job["python"] = job.get("python") or sys.executable
    job["log-directory"] = _abspath(job.get("log-directory"))
    job["shared-temp-directory"] = _abspath(job.get("shared-temp-directory") or DEFAULT_TLS_DIR)

    prologue = list(job.get("job-script-prologue") or [])
    directives = list(job.get("job-extra-directives") or [])
    worker_args = list(job.get("worker-extra-args") or [])

    if slurm["gpu"]:
        if not any(re.search(r"--(gres|gpus)\b|^-G\b|--gpus-per", d) for d in directives):
            directives.append("--gres=gpu:1")
        if "cuda" not in str(job.get("worker-command") or ""):
            job["worker-command"] = GPU_WORKER_COMMAND
        job["processes"] = 1  # dask-cuda starts one worker per GPU of the job itself
        cuda = c["cuda"]
        if cuda["rmm_pool_size"] and "--rmm-pool-size" not in worker_args:
            worker_args += ["--rmm-pool-size", str(cuda["rmm_pool_size"])]
        if cuda["share_rmm_with_torch"] and "--set-rmm-allocator-for-libs" not in worker_args:
            # PyTorch and CuPy allocate from the worker's RMM pool (as in LocalCUDACluster).
            worker_args += ["--set-rmm-allocator-for-libs", "torch,cupy"]
        if cuda["enable_cudf_spill"]:
            # `dask cuda worker` sets cuDF's spill option from its own flag (default off) when
            # it starts, which overrides CUDF_SPILL; the variable covers other processes.
            if not any(str(a).endswith("-cudf-spill") for a in worker_args):
                worker_args.append("--enable-cudf-spill")
            prologue.append("export CUDF_SPILL=on  # cuDF spills device buffers to host memory")

    # Workers retire before Slurm's walltime kills them (set through dask's config, which
    # both `dask worker` and `dask cuda worker` read); the job keeper then submits new jobs.
    if not any(str(a).startswith("--lifetime") for a in worker_args):
        life = worker_lifetime(parse_walltime(job.get("walltime")), slurm["lifetime"])
        if life is not None:
            seconds, stagger = life
            prologue += [
                f"export DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION={seconds}s  # walltime {job.get('walltime')}",
                f"export DASK_DISTRIBUTED__WORKER__LIFETIME__STAGGER={stagger}s",
                "export DASK_DISTRIBUTED__WORKER__LIFETIME__RESTART=False",
            ]

    job["job-script-prologue"] = prologue
    job["job-extra-directives"] = directives
    job["worker-extra-args"] = worker_args
    job["job-directives-skip"] = list(job.get("job-directives-skip") or [])
    options = dict(job.get("scheduler-options") or {})
    options.setdefault("dashboard_address", c["dashboard_address"])
    job["scheduler-options"] = options
    return job


def register_job_config(job: Mapping[str, Any]) -> str:
    """Register a :func:`job_config` section with ``dask.config``; return its name for ``config_name``.

    dask-jobqueue builds every job (the first ones, and each replacement) from
    ``jobqueue.<config_name>``. The section holds every key dask-jobqueue reads (its renamed
    keys at null, so that it neither fails nor warns), is registered as a default (it survives
    ``dask.config.refresh()``), and is named after its content, so that clusters with
    different settings in one process never share a section.
    """

    section = copy.deepcopy(_upstream_slurm_section()) | dict.fromkeys(_renamed_keys()) | dict(job)
    digest = hashlib.sha1(json.dumps(section, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = f"wsb-gpu-{digest}"
    if dask.config.get(f"jobqueue.{name}", default=None) is None:
        dask.config.update_defaults({"jobqueue": {name: section}})
    return name


def _keywords(job: Mapping[str, Any]) -> dict[str, Any]:
    """The few keywords SLURMCluster needs besides ``config_name`` (everything else is in the section)."""
    kw = {k: job[k] for k in KEYWORD_ONLY_KEYS if job.get(k) is not None}
    if job.get("processes"):
        # JobQueueCluster groups the workers of a multi-process job (names, `plan`, scaling by
        # workers) only when `processes` is a keyword; it does not look for it in the section.
        kw["processes"] = int(job["processes"])
    return kw


# --- TLS ---------------------------------------------------------------------------------------


class TemporaryTLS:
    """Temporary TLS credentials of one cluster, with the worker's copies as files only you can read.

    dask-jobqueue, given in-memory credentials, writes the worker's into the shared temporary
    directory itself, but keeps them as ``NamedTemporaryFile`` handles in private attributes
    of the cluster, so they go only when the cluster object is garbage collected. Instead this
    writes them into a fresh folder (mode 0700, files 0600) of ``shared_temp_directory`` and
    names those files in :attr:`security`: dask-jobqueue then passes them to the worker as
    ``--tls-ca-file/--tls-cert/--tls-key`` and writes nothing. :meth:`remove` deletes the folder
    (the cluster calls it when it closes). The scheduler's and client's certificate and key
    stay in memory; every role reads the CA from its file.

    Parameters
    ----------
    shared_temp_directory
        A folder the compute nodes see (created with mode 0700 if missing).
    """

    prefix: ClassVar[str] = ".wsb-gpu-tls-"
    #: Role-config key of ``Security.get_tls_config_for_role("worker")`` -> file name.
    files: ClassVar[dict[str, str]] = {"ca_file": "ca.pem", "cert": "worker-cert.pem", "key": "worker-key.pem"}

    def __init__(self, shared_temp_directory: str) -> None:
        from distributed.security import Security

        try:
            memory = Security.temporary()
        except ImportError as e:
            purpose = "TLS between the scheduler and the Slurm workers"
            raise missing_package("cryptography", "pip install cryptography", purpose) from e
        try:
            os.makedirs(shared_temp_directory, mode=0o700, exist_ok=True)
            self.directory = tempfile.mkdtemp(prefix=self.prefix, dir=shared_temp_directory)
        except OSError as e:
            msg = (
                f"cannot write the workers' temporary TLS files into shared-temp-directory "
                f"'{shared_temp_directory}': {e}; set shared-temp-directory in jobqueue.yaml to a folder "
                "you can write that the compute nodes see"
            )
            raise WsbError(msg) from e
        try:
            worker = memory.get_tls_config_for_role("worker")
            paths = self.paths(self.directory)
            for key, path in paths.items():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(worker[key])
        except BaseException:
            self.remove()
            raise
        scheduler = memory.get_tls_config_for_role("scheduler")
        client = memory.get_tls_config_for_role("client")
        self.security = Security(
            require_encryption=True,
            tls_ca_file=paths["ca_file"],
            tls_worker_cert=paths["cert"],
            tls_worker_key=paths["key"],
            tls_scheduler_cert=scheduler["cert"],
            tls_scheduler_key=scheduler["key"],
            tls_client_cert=client["cert"],
            tls_client_key=client["key"],
        )

    @classmethod
    def paths(cls, directory: str) -> dict[str, str]:
        """The worker's file of each role-config key (``ca_file``, ``cert``, ``key``) in ``directory``."""
        return {key: os.path.join(directory, name) for key, name in cls.files.items()}

    @classmethod
    def placeholder(cls, shared_temp_directory: str) -> Any:
        """A ``Security`` naming files as :class:`TemporaryTLS` would, for showing a job script."""
        from distributed.security import Security

        paths = cls.paths(os.path.join(shared_temp_directory, cls.prefix + "XXXXXXXX"))
        return Security(
            tls_ca_file=paths["ca_file"],
            tls_worker_cert=paths["cert"],
            tls_worker_key=paths["key"],
            require_encryption=True,
        )

    def remove(self) -> None:
        """Delete the worker's files (idempotent)."""
        shutil.rmtree(self.directory, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _cluster_class() -> type:
    """``SLURMCluster`` that removes its :class:`TemporaryTLS` files when it closes."""
    from dask_jobqueue import SLURMCluster

    class WsbSLURMCluster(SLURMCluster):
        def __init__(self, *args: Any, temporary_tls: TemporaryTLS | None = None, **kwargs: Any) -> None:
            self.temporary_tls = temporary_tls
            if temporary_tls is not None:
                # Also when a cluster that was never closed is collected, or at exit.
                weakref.finalize(self, temporary_tls.remove)
            super().__init__(*args, **kwargs)

        def close(self, timeout: float | None = None) -> Any:
            try:
                return super().close(timeout)
            finally:
                if self.temporary_tls is not None:
                    self.temporary_tls.remove()

    return WsbSLURMCluster


# --- job script and cluster --------------------------------------------------------------------


def render_job_script(settings: Settings) -> str:
    """The job script one worker job would be submitted with, without submitting anything.

    The scheduler address and the temporary TLS file names are placeholders (they exist only
    once the cluster runs); everything else is what :func:`slurm_cluster` submits.
    """
    _import_jobqueue()
    from dask_jobqueue.slurm import SLURMJob

    job = job_config(settings)
    name = register_job_config(job)
    tls = bool(settings.cluster["slurm"]["tls"])
    protocol = "tls://" if tls else "tcp://"
    log_dir = job["log-directory"]
    made_log_dir = bool(log_dir) and "$" not in log_dir and not os.path.exists(log_dir)
    try:
        worker = SLURMJob(
            f"{protocol}<scheduler-address>:<port>",
            name="<worker-name>",
            config_name=name,
            protocol=protocol if tls else None,
            security=TemporaryTLS.placeholder(job["shared-temp-directory"]) if tls else None,
            **_keywords(job),
        )
        return worker.job_script()
    finally:
        # dask-jobqueue creates the log directory when it builds a job: showing a script
        # must not leave a folder behind.
        if made_log_dir and os.path.isdir(log_dir) and not os.listdir(log_dir):
            os.rmdir(log_dir)


def slurm_cluster(settings: Settings) -> Any:
    """Start a ``SLURMCluster`` with ``cluster.slurm.jobs`` worker jobs.

    Returns once the jobs are submitted (they may still be queued; :func:`wait_for_workers`
    waits for the first one). The scheduler runs in this process; close the cluster to
    cancel the jobs (and delete the temporary TLS files).
    """
    from wsb_gpu.slurm_keeper import JobKeeper

    _import_jobqueue()
    slurm = settings.cluster["slurm"]
    job = job_config(settings)
    if slurm["gpu"] and job["python"] == sys.executable and importlib.util.find_spec("dask_cuda") is None:
        # The workers would run this interpreter and die at once; say so now, not after
        # wait_timeout. (A profile naming another `python` is trusted to have dask-cuda.)
        raise missing_package("dask-cuda", GPU_INSTALL, "GPU worker jobs (cluster.slurm.gpu: true)")
    if shutil.which("sbatch") is None:
        msg = (
            "--cluster slurm needs the Slurm commands (sbatch, squeue, scancel) on PATH; "
            "run on a Slurm login node or use --cluster local"
        )
        raise WsbError(msg)
    if job["log-directory"] and "$" not in job["log-directory"]:
        os.makedirs(job["log-directory"], exist_ok=True)
    name = register_job_config(job)
    tls = TemporaryTLS(job["shared-temp-directory"]) if slurm["tls"] else None
    try:
        cluster = _cluster_class()(
            config_name=name, security=tls.security if tls else None, temporary_tls=tls, **_keywords(job)
        )
    except BaseException:
        if tls is not None:
            tls.remove()
        raise
    try:
        cluster.scale(jobs=int(slurm["jobs"]))
        JobKeeper(cluster, interval_s=REPLACE_INTERVAL_S).start()
    except BaseException:
        cluster.close()
        raise
    return cluster


def worker_job_ids(cluster: Any) -> list[str]:
    """Slurm job ids of the cluster's worker jobs (submitted ones)."""
    return [str(job.job_id) for job in list(getattr(cluster, "workers", {}).values()) if getattr(job, "job_id", None)]


def _job_states(job_ids: list[str]) -> str:
    if not job_ids:
        return "no job was submitted"
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T %r"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        lines = [" ".join(line.split()) for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        lines = []
    return "; ".join(lines) if lines else "none of them is queued or running any more"


def wait_for_workers(client: Client | None, settings: Settings, n: int = 1) -> None:
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
        try:
            log_dir = job_config(settings)["log-directory"]
        except WsbError:
            log_dir = None
        where = (
            f"the worker logs in {log_dir}" if log_dir else "the worker job output (set log-directory in jobqueue.yaml)"
        )
        msg = (
            f"no Slurm worker joined within {timeout:g} s (jobs {', '.join(ids) or '-'}: {_job_states(ids)}); "
            f"check `squeue -u {getpass.getuser()}` and {where}, or raise cluster.slurm.wait_timeout"
        )
        raise WsbError(msg) from e


def expected_workers(cluster: Any) -> int:
    """Workers the cluster's spec asks for (jobs x processes per job)."""
    try:
        return len(cluster.plan)
    except (AttributeError, TypeError):  # not a SpecCluster (or none)
        return 0
