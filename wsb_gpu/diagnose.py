"""The ``wsb-gpu info`` and ``cluster-check`` commands: reports built on :mod:`wsb_gpu.sysinfo`.

:func:`describe` reports the machine (:func:`wsb_gpu.sysinfo.machine`), the versions, whether
PyTorch and CuPy see a GPU (there it does import them), how ``--backend`` resolves and why,
and the cluster settings (for Slurm, the worker job script).

:func:`check_cluster` starts the configured cluster (:func:`wsb_gpu.cluster.session`), runs a
probe on every worker (``client.run``) and one small computation pinned to each worker, and
reports per worker: host, pid, Slurm job, threads, memory limit, devices, and the sum
computed there.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import socket
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from dask.utils import format_bytes as fb
from distributed import wait

from wsb_gpu.cluster import session
from wsb_gpu.config import Settings
from wsb_gpu.errors import WsbError
from wsb_gpu.sysinfo import LIBRARIES, installed, machine, nvidia_smi, nvidia_smi_gpus, usable_cores

if TYPE_CHECKING:
    from distributed import Client

CHECK_N = 1_000_000  # each worker sums 0 .. CHECK_N-1


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table with left-aligned columns.

    >>> print(table([["a", 1], ["bb", 22]], ["name", "n"]))
    name  n
    a     1
    bb    22
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def format_bytes(n: float | None) -> str:
    """Bytes in binary units (:func:`dask.utils.format_bytes`), ``-`` for none.

    >>> format_bytes(3 * 2**30), format_bytes(None)
    ('3.00 GiB', '-')
    """
    if not n:
        return "-"

    return fb(int(n))


# --- wsb-gpu info ----------------------------------------------------------------------------


def _version_lines() -> list[str]:
    lines = [f"{'python':<13} {platform.python_version()} ({sys.executable})"]
    for name in (*LIBRARIES, "pynvml"):
        found = installed(name) or {name.replace("_", "-"): "not installed"}
        lines += [f"{dist:<13} {version}" for dist, version in found.items()]
    return lines


def _gpu_lines() -> list[str]:
    lines = []
    smi = nvidia_smi()
    if smi is None:
        lines.append("nvidia-smi   not found")
    elif not smi:
        lines.append("nvidia-smi   no GPU listed")
    else:
        lines.append(f"nvidia-smi   {', '.join(nvidia_smi_gpus() or [])} (driver {smi[0][3]})")
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                lines.append(f"torch.cuda   {len(names)} device(s): {', '.join(names)} (CUDA {torch.version.cuda})")
            else:
                build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
                lines.append(f"torch.cuda   not available ({build})")
        except Exception as e:  # noqa: BLE001 - a broken torch must not break `info`
            lines.append(f"torch.cuda   error: {type(e).__name__}: {e}")
    else:
        lines.append("torch.cuda   torch not installed")
    if importlib.util.find_spec("cupy") is not None:
        try:
            import cupy

            n = cupy.cuda.runtime.getDeviceCount() if cupy.cuda.is_available() else 0
            lines.append(f"cupy         {n} device(s)")
        except Exception as e:  # noqa: BLE001 - nor a broken CuPy
            lines.append(f"cupy         error: {type(e).__name__}: {e}")
    else:
        lines.append("cupy         not installed")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        lines.append(f"CUDA_VISIBLE_DEVICES={visible}")
    return lines


def _cluster_lines(settings: Settings) -> list[str]:
    c = settings.cluster
    kind = c["kind"]
    lines = [f"kind         {kind}"]
    if kind == "none":
        lines.append("             dask's threaded scheduler in this process, no workers")
    elif kind == "local":
        n = c["n_workers"] or usable_cores()
        lines.append(
            f"workers      {n} processes x {c['threads_per_worker']} thread(s), "
            f"memory_limit {c['memory_limit']}, local_directory {c['local_directory'] or '(dask default)'}"
        )
    elif kind == "cuda":
        cuda = c["cuda"]
        lines.append(
            f"cuda         one worker per visible GPU (visible_devices {cuda['visible_devices'] or 'all'}), "
            f"rmm_pool_size {cuda['rmm_pool_size']}, cudf spill {cuda['enable_cudf_spill']}, "
            f"torch/cupy on RMM {cuda['share_rmm_with_torch']}"
        )
    if kind != "none":
        lines.append(f"dashboard    {c['dashboard_address']}")
    if kind == "slurm":
        s = c["slurm"]
        lines.append(
            f"slurm        {s['jobs']} job(s), gpu {s['gpu']}, tls {s['tls']}, lifetime {s['lifetime']}, "
            f"wait_timeout {s['wait_timeout']} s"
        )
        try:
            from wsb_gpu.slurm import jobqueue_profile, render_job_script

            _, source = jobqueue_profile(settings)
            lines.append(f"jobqueue     {source}")
            lines.append("job script   (one per worker job; scheduler address and TLS files are filled in at start)")
            lines += ["    " + line for line in render_job_script(settings).rstrip().splitlines()]
        except WsbError as e:
            lines.append(f"job script   error: {e}")
    return lines


def describe(settings: Settings) -> str:
    """A human-readable report of the machine, versions, GPUs, backend resolution and cluster settings.

    Parameters
    ----------
    settings
        The command's settings (backend, cluster section).
    """
    from wsb_gpu import __version__
    from wsb_gpu.backend import resolve_backend

    m = machine()
    out = [
        (
            f"wsb_gpu {__version__} on {m['host']} ({m['os']}, {m['machine']}): {m['cpu_model']}, "
            f"{m['cpu_count']} CPUs ({m['usable_cores']} usable), {format_bytes(m['memory_bytes'])} RAM"
        ),
        f"settings from: {', '.join(settings.sources)}",
        "",
        "Versions",
    ]
    out += ["  " + line for line in _version_lines()]
    out += ["", "GPUs"] + ["  " + line for line in _gpu_lines()]
    out += ["", "Backend"]
    try:
        b = resolve_backend(settings.backend)
        out.append(f"  --backend {settings.backend} -> {b.name}: {b.reason}")
        out.append(f"  dataframes {b.dask_backend}, torch device {b.torch_device}, xgboost device {b.xgb_device}")
    except WsbError as e:
        out.append(f"  --backend {settings.backend} -> error: {e}")
    out += ["", "Cluster"] + ["  " + line for line in _cluster_lines(settings)]
    return "\n".join(out)


# --- cluster-check ---------------------------------------------------------------------------


def worker_probe(dask_worker: Any = None) -> dict[str, Any]:
    """Runs on a worker (``client.run`` passes ``dask_worker``) or in this process."""
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job": os.environ.get("SLURM_JOB_ID", "-"),
        "threads": 1,
        "memory_limit": None,
    }
    if dask_worker is not None:
        info["threads"] = dask_worker.state.nthreads
        info["memory_limit"] = dask_worker.memory_manager.memory_limit
    else:  # not on a worker: dask's threaded scheduler, one thread per usable core
        info["threads"] = usable_cores()
    info["devices"] = _visible_devices()
    return info


def _visible_devices() -> str:
    smi = nvidia_smi_gpus()
    if not smi:
        return "cpu"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        wanted = [v.strip() for v in visible.split(",") if v.strip()]
        smi = [g for g in smi if g.split(":")[0] in wanted] or smi
    return "; ".join(smi)


def worker_sum(n: int) -> tuple[int, str]:
    """Sum ``0 .. n-1`` with NumPy and say which worker did it (its address, or ``local``)."""

    total = int(np.arange(n, dtype=np.int64).sum())
    try:
        from distributed import get_worker

        where = get_worker().address
    except ValueError:
        where = "local"
    return total, where


def _expected_workers(settings: Settings, client: Client | None) -> int:
    kind = settings.cluster["kind"]
    if kind == "slurm":
        from wsb_gpu.slurm import expected_workers

        return expected_workers(client.cluster) or int(settings.cluster["slurm"]["jobs"])
    return len(client.scheduler_info()["workers"])


def check_cluster(settings: Settings, timeout: float = 120.0) -> str:
    """Start the configured cluster, compute on every worker, and report each worker.

    Parameters
    ----------
    settings
        The command's settings (cluster section).
    timeout
        Seconds to wait for all workers to join and for the computation.

    Returns
    -------
    str
        A table (one row per worker) and a summary line.

    Raises
    ------
    WsbError
        When no worker joins or a worker fails or returns a wrong sum.
    """
    expected_sum = CHECK_N * (CHECK_N - 1) // 2
    headers = [
        "worker",
        "host",
        "pid",
        "slurm job",
        "threads",
        "memory limit",
        "devices",
        f"sum(0..{CHECK_N - 1})",
        "ok",
    ]
    kind = settings.cluster["kind"]
    start = time.perf_counter()
    with session(settings) as client:
        if client is None:
            info = worker_probe()
            total, _ = worker_sum(CHECK_N)
            row = [
                "this process",
                info["host"],
                info["pid"],
                info["slurm_job"],
                info["threads"],
                "-",
                info["devices"],
                total,
                "yes" if total == expected_sum else "NO",
            ]
            text = table([row], headers)
            return f"cluster: none (dask's threaded scheduler in this process)\n{text}\nok: computed in-process in {time.perf_counter() - start:.1f} s"

        expected = _expected_workers(settings, client)
        note = ""
        try:
            client.wait_for_workers(expected, timeout=timeout)
        except (TimeoutError, OSError):
            joined = len(client.scheduler_info()["workers"])
            note = f" ({joined} of {expected} workers joined within {timeout:g} s; the others are still starting or queued)"
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            msg = f"no worker joined the {kind} cluster within {timeout:g} s; see the worker logs (for Slurm: squeue and the log-directory of jobqueue.yaml)"
            raise WsbError(msg)
        probes = client.run(worker_probe, workers=workers, on_error="return")
        futures = {
            addr: client.submit(worker_sum, CHECK_N, workers=[addr], allow_other_workers=False, pure=False)
            for addr in workers
        }
        wait(list(futures.values()), timeout=timeout)

        rows, failures = [], []
        for addr in workers:
            info = probes.get(addr)
            if isinstance(info, BaseException) or info is None:
                failures.append(f"{addr}: probe failed: {info!r}")
                info = {"host": "?", "pid": "?", "slurm_job": "?", "threads": "?", "memory_limit": None, "devices": "?"}
            fut = futures[addr]
            if fut.status == "finished":
                total, ran_on = fut.result()
                ok = total == expected_sum and ran_on == addr
                if not ok:
                    failures.append(f"{addr}: got {total} computed on {ran_on}, expected {expected_sum} on {addr}")
            else:
                total, ok = f"({fut.status})", False
                failures.append(
                    f"{addr}: computation {fut.status}: {fut.exception() if fut.status == 'error' else 'not finished in time'}"
                )
            rows.append(
                [
                    addr,
                    info["host"],
                    info["pid"],
                    info["slurm_job"],
                    info["threads"],
                    format_bytes(info["memory_limit"]),
                    info["devices"],
                    total,
                    "yes" if ok else "NO",
                ]
            )
        link = client.dashboard_link if settings.cluster["dashboard_address"] else None
        header = f"cluster: {kind}, scheduler {client.scheduler.address}" + (f", dashboard {link}" if link else "")
        text = table(rows, headers)
        if failures:
            msg = f"{len(failures)} of {len(workers)} workers failed the check: " + "; ".join(failures)
            raise WsbError(msg)
        elapsed = time.perf_counter() - start
        return f"{header}\n{text}\nok: {len(workers)} worker(s) computed the expected sum{note}; {elapsed:.1f} s in all"
