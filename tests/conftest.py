"""Shared test fixtures.

* ``backend``: parametrised over ``cpu`` and ``gpu``; the GPU case is marked ``gpu`` and
  skipped (never faked) where no usable CUDA device with cuDF exists.
* Tests marked ``slurm`` need a running Slurm controller; ``tests/slurm_up.sh`` starts a
  single-node one (``make test`` runs it). Outside CI they are skipped when Slurm is not up;
  under ``CI=true`` a missing Slurm is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from wsb_gpu.backend import Backend, gpu_status


def _slurm_up() -> tuple[bool, str]:
    if shutil.which("sinfo") is None:
        return False, "Slurm client tools are not installed (make test installs and starts Slurm)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"sinfo failed: {e}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in states):
        return False, f"no Slurm node is up (sinfo: {out.stdout.strip() or out.stderr.strip()})"
    return True, ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_ok, gpu_why = gpu_status()
    in_ci = os.environ.get("CI", "").lower() == "true"
    slurm_checked: tuple[bool, str] | None = None
    for item in items:
        if "gpu" in item.keywords and not gpu_ok:
            item.add_marker(pytest.mark.skip(reason=f"GPU test: {gpu_why}"))
        if "slurm" in item.keywords:
            if slurm_checked is None:
                slurm_checked = _slurm_up()
            ok, why = slurm_checked
            if not ok and not in_ci:
                item.add_marker(pytest.mark.skip(reason=f"Slurm test: {why}"))


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend present on this machine (the CPU twin always)."""
    from wsb_gpu.backend import resolve_backend

    return resolve_backend(request.param)


@pytest.fixture
def cpu() -> Backend:
    return Backend("cpu", "tests")
