"""``import wsb_gpu`` (and the CLI) must not import any GPU library; proven in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

FORBIDDEN = ("cudf", "dask_cudf", "cupy", "cuml", "dask_cuda", "rmm", "torch", "pynvml")


def _loaded_after(code: str) -> dict:
    probe = (
        "import json, sys\n"
        f"{textwrap.dedent(code)}\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(forbidden))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_package_and_cli_loads_no_gpu_library():
    loaded = _loaded_after("import wsb_gpu, wsb_gpu.cli, wsb_gpu.config, wsb_gpu.backend, wsb_gpu.cluster")
    assert loaded == [], f"import wsb_gpu pulled in {loaded}"


def test_help_loads_no_gpu_library():
    loaded = _loaded_after("from wsb_gpu.cli import main\nrc = main(['--help'])\nassert rc == 0, rc")
    assert loaded == []


@pytest.mark.timeout(300)
def test_every_module_imports_without_gpu_libraries():
    # Every module of the package, including the stages: `import wsb_gpu.<anything>` must not
    # import a GPU library or torch at module level (they are imported inside functions).
    code = textwrap.dedent(
        """
        import importlib, pkgutil, wsb_gpu
        failed = {}
        for info in pkgutil.walk_packages(wsb_gpu.__path__, 'wsb_gpu.'):
            try:
                importlib.import_module(info.name)
            except Exception as e:
                failed[info.name] = f'{type(e).__name__}: {e}'
        assert not failed, failed
        """
    )
    loaded = _loaded_after(code)
    assert loaded == [], f"some wsb_gpu module imports {loaded} at import time"


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "wsb_gpu.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and "cluster-check" in out.stdout and "info" in out.stdout
