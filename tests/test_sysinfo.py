"""The machine description shared by run.json, ``wsb-gpu info`` and the benchmarks."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from wsb_gpu import sysinfo


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return what it prints."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_machine_keys_and_types():
    m = sysinfo.machine()
    # The keys run.json's "hardware" has always had (report.provenance_section reads them).
    assert {"host", "os", "machine", "cpu_count", "cpu_model", "memory_gib", "gpus"} <= set(m)
    for key in ("host", "os", "machine", "cpu_model"):
        assert isinstance(m[key], str) and m[key], key
    assert isinstance(m["cpu_count"], int) and m["cpu_count"] >= 1
    assert isinstance(m["usable_cores"], int) and 1 <= m["usable_cores"] <= m["cpu_count"]
    if sys.platform.startswith("linux"):
        assert isinstance(m["memory_gib"], float) and m["memory_gib"] > 0
        assert m["memory_bytes"] == pytest.approx(m["memory_gib"] * 2**30, rel=0.01)
    assert isinstance(m["gpus"], list) and all(isinstance(g, str) for g in m["gpus"])
    assert m["gpu_driver"] is None or isinstance(m["gpu_driver"], str)
    assert json.loads(json.dumps(m)) == m  # written to run.json as it is


def test_versions_come_from_package_metadata():
    import dask
    import yaml

    v = sysinfo.versions()
    assert v["python"] == platform.python_version()
    assert v["dask"] == dask.__version__
    assert all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
    more = sysinfo.versions(extra=["yaml", "surely_not_installed_xyz"])
    assert more["PyYAML"] == yaml.__version__  # an import name, reported under its distribution
    assert "surely_not_installed_xyz" not in more and "PyYAML" not in v


def test_describing_the_machine_imports_no_torch_or_gpu_library():
    code = (
        "import sys\n"
        "from wsb_gpu import sysinfo\n"
        "sysinfo.machine(); sysinfo.versions(); sysinfo.usable_cores()\n"
        "print(','.join(m for m in ('torch', 'cupy', 'cudf', 'cuml', 'rmm', 'transformers') if m in sys.modules))\n"
    )
    assert _fresh_python(code) == ""


def test_usable_cores_is_between_one_and_the_cpu_count():
    assert 1 <= sysinfo.usable_cores() <= (os.cpu_count() or 1)


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs CPU affinity and at least two usable cores",
)
def test_usable_cores_follows_an_affinity_set_after_dask_is_imported():
    # dask.system.CPU_COUNT is fixed at import; usable_cores must see the mask as it is now.
    code = (
        "import os, dask.system\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from wsb_gpu.sysinfo import usable_cores\n"
        "print(usable_cores(), dask.system.CPU_COUNT)\n"
    )
    now, at_import = map(int, _fresh_python(code).split())
    assert now == 1 and at_import >= 2


@pytest.mark.gpu
def test_machine_lists_every_gpu_nvidia_smi_lists():
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=True)
    n = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
    m = sysinfo.machine()
    assert len(m["gpus"]) == n >= 1 and m["gpu_driver"]
