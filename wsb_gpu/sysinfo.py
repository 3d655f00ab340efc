"""What is this machine? The facts: cores, memory, GPUs, library versions.

This module is the one place that describes the machine; ``run.json``, ``wsb-gpu info``
(:mod:`wsb_gpu.diagnose`), the cluster factory (:mod:`wsb_gpu.cluster`) and the benchmarks
all take their description from it:

* :func:`machine` -- host, OS, CPU model, cores, memory and GPUs, as a dict;
* :func:`versions` -- Python and the libraries that shape the numbers, from package
  metadata (nothing is imported for it);
* :func:`usable_cores` -- the cores this process may run on, for sizing thread pools.

None of them imports PyTorch or a GPU library: GPUs are listed by nvidia-smi, and by torch
only when something else has already imported it. This module imports no other module of
the package: the commands that report these facts (``wsb-gpu info``, ``cluster-check``) live
in :mod:`wsb_gpu.diagnose`.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

from dask.system import cpu_count

# Import names of the libraries that shape the numbers (the GPU ones last; any may be
# absent). Each is reported under the distribution that installed it, looked up in the
# package metadata, so the CPU build of XGBoost shows as ``xgboost-cpu`` and RAPIDS as
# ``cudf-cu12`` without a list of every build's name.
LIBRARIES = (
    "wsb_gpu",
    "dask",
    "distributed",
    "dask_jobqueue",
    "pandas",
    "numpy",
    "pyarrow",
    "sklearn",
    "xgboost",
    "torch",
    "transformers",
    "tokenizers",
    "zstandard",
    "matplotlib",
    "cudf",
    "dask_cudf",
    "cuml",
    "cupy",
    "rmm",
    "dask_cuda",
)


# --- the machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Describe this machine without importing PyTorch or a GPU library.

    Returns
    -------
    dict
        ``host``, ``os`` (system and release), ``machine`` (architecture), ``cpu_model``,
        ``cpu_count`` (logical CPUs of the machine), ``usable_cores`` (see
        :func:`usable_cores`), ``memory_gib`` (physical memory, GiB, one decimal) and
        ``memory_bytes`` (both None where unknown), ``gpus`` (one ``"name (memory)"`` per GPU
        nvidia-smi lists; without nvidia-smi the device names torch reports if torch is
        already imported; else empty) and ``gpu_driver`` (the NVIDIA driver version, or None).
    """
    smi = nvidia_smi()
    if smi:
        gpus = [f"{name} ({memory})" for _, name, memory, _ in smi]
        driver = smi[0][3]
    else:
        gpus, driver = _torch_gpus(), None
    total = _memory_bytes()
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "usable_cores": usable_cores(),
        "memory_gib": round(total / 2**30, 1) if total else None,
        "memory_bytes": total,
        "gpus": gpus,
        "gpu_driver": driver,
    }


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    This is :func:`dask.system.cpu_count`, called each time rather than read from
    ``dask.system.CPU_COUNT``: that constant is fixed when dask is imported, so it misses an
    affinity set later in the process, and ``os.sched_getaffinity`` alone misses the CPU
    quota of a container or a Slurm cgroup (64 cores visible, 2 granted), where sizing a
    thread pool to the affinity mask oversubscribes the cores.

    >>> 1 <= usable_cores() <= os.cpu_count()
    True
    """

    return cpu_count()


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python and the libraries that shape the numbers, keyed by distribution name.

    Read from the package metadata: nothing is imported. Absent libraries are left out.

    Parameters
    ----------
    extra
        More libraries to report beside :data:`LIBRARIES`, by import or distribution name
        (e.g. the benchmarks' peers ``("polars", "pyspark")``).

    Returns
    -------
    dict
        ``python`` first, then ``{distribution: version}`` (e.g. ``dask``, ``scikit-learn``,
        ``xgboost-cpu``, ``cudf-cu12``).

    >>> v = versions(extra=["yaml"])
    >>> v["python"] == platform.python_version(), "PyYAML" in v
    (True, True)
    """
    out = {"python": platform.python_version()}
    for name in (*LIBRARIES, *extra):
        out.update(installed(name))
    return out


def nvidia_smi_gpus() -> list[str] | None:
    """``index: name (memory)`` of each GPU nvidia-smi lists; None without nvidia-smi."""
    smi = nvidia_smi()
    return None if smi is None else [f"{index}: {name} ({memory})" for index, name, memory, _ in smi]


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return md.packages_distributions()  # scans site-packages (up to a second cold), so once


def installed(name: str) -> dict[str, str]:
    """``{distribution: version}`` of what provides ``name`` (an import or distribution name).

    >>> list(installed("yaml")), installed("surely_not_installed_xyz")
    (['PyYAML'], {})
    """
    out = {}
    for dist in dict.fromkeys(_distributions().get(name) or [name]):  # an editable install lists itself twice
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def _run(cmd: list[str], timeout: float = 20) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def nvidia_smi() -> tuple[tuple[str, ...], ...] | None:
    """``(index, name, memory, driver)`` per GPU; None without nvidia-smi (asked once per process)."""
    out = _run(["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"])
    return None if out is None else _parse_nvidia_smi(out)


def _parse_nvidia_smi(out: str) -> tuple[tuple[str, ...], ...]:
    """Rows of ``nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader``.

    >>> _parse_nvidia_smi("0, NVIDIA H200, 143771 MiB, 570.124.06\\n\\n1, NVIDIA H200, 143771 MiB, 570.124.06")
    (('0', 'NVIDIA H200', '143771 MiB', '570.124.06'), ('1', 'NVIDIA H200', '143771 MiB', '570.124.06'))
    """
    rows = (tuple(p.strip() for p in line.split(",")) for line in out.splitlines())
    return tuple(r[:4] for r in rows if len(r) >= 4)


def _torch_gpus() -> list[str]:
    torch = sys.modules.get("torch")  # never import torch just to describe the machine
    if torch is None:
        return []
    try:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [torch.cuda.get_device_name(i) for i in range(n)]
    except Exception:  # noqa: BLE001 - a broken CUDA setup must not break a description
        return []


def _cpu_model() -> str:
    """The CPU's name (``/proc/cpuinfo``; ``sysctl`` on macOS), else the architecture."""
    if sys.platform == "darwin":
        name = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        import psutil  # a dependency of distributed

        return int(psutil.virtual_memory().total)
    except (ImportError, OSError):  # no psutil, or a platform it cannot read
        return None
