"""Backend resolution (auto | cpu | gpu) and the helpers where pandas and cuDF differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wsb_gpu.backend import (
    Backend,
    dataframe_module,
    gpu_status,
    is_gpu_frame,
    resolve_backend,
    to_numpy,
    to_pandas,
)
from wsb_gpu.errors import GPU_INSTALL, WsbError, missing_package

GPU_OK, GPU_WHY = gpu_status()


def test_cpu_backend_modules_and_devices():
    b = resolve_backend("cpu")
    assert b.name == "cpu" and not b.is_gpu
    assert b.xdf is pd
    assert b.xp is np
    assert b.dask_backend == "pandas"
    assert b.torch_device == "cpu"
    assert b.xgb_device == "cpu"
    assert b.reason


def test_cpu_ridge_is_scikit_learn_with_the_alpha():
    from sklearn.linear_model import Ridge

    est = resolve_backend("cpu").ridge_estimator(alpha=2.5)
    assert isinstance(est, Ridge)
    assert est.alpha == 2.5
    x = np.arange(20, dtype=float).reshape(10, 2)
    y = x @ np.array([1.0, -2.0]) + 3.0
    pred = est.fit(x, y).predict(x)
    assert pred.shape == (10,)


def test_cpu_from_pandas_and_asarray_are_identity_like():
    b = resolve_backend("cpu")
    df = pd.DataFrame({"a": [1, 2]})
    assert b.from_pandas(df) is df
    assert isinstance(b.asarray([1, 2]), np.ndarray)


@pytest.mark.skipif(GPU_OK, reason="a usable GPU is present: the error path cannot be tested")
def test_gpu_request_without_gpu_names_the_install_command():
    with pytest.raises(WsbError) as info:
        resolve_backend("gpu")
    msg = str(info.value)
    assert "\n" not in msg
    assert GPU_INSTALL in msg
    assert "--backend cpu" in msg


@pytest.mark.skipif(GPU_OK, reason="a usable GPU is present")
def test_auto_falls_back_to_cpu_with_a_reason():
    b = resolve_backend("auto")
    assert b.name == "cpu"
    assert b.reason.startswith("auto: ") and GPU_WHY in b.reason


@pytest.mark.skipif(GPU_OK, reason="a usable GPU is present")
def test_gpu_backend_object_fails_clearly_on_use_without_rapids():
    # Building the object is cheap; using its modules names the missing package.
    b = Backend("gpu", "test")
    with pytest.raises(WsbError, match=r"needs the package '(cudf|cupy)'.*install it with"):
        _ = b.xdf


def test_unknown_backend():
    with pytest.raises(WsbError, match="choose one of: auto, cpu, gpu"):
        resolve_backend("tpu")


def test_backend_fixture_runs_on_each_present_backend(backend):
    frame = backend.from_pandas(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    assert dataframe_module(frame) is backend.xdf
    assert float(to_numpy(frame["x"]).sum()) == 6.0


def test_helpers_on_cpu_objects():
    df = pd.DataFrame({"a": [1, 2, 3]})
    assert is_gpu_frame(df) is False
    assert is_gpu_frame(np.arange(3)) is False
    assert to_pandas(df) is df
    assert dataframe_module(df) is pd
    assert to_numpy(df["a"]).tolist() == [1, 2, 3]
    assert to_numpy([4, 5]).tolist() == [4, 5]
    assert isinstance(to_numpy(np.arange(2)), np.ndarray)


def test_is_gpu_frame_checks_the_module_without_importing_it():
    fake = type("DataFrame", (), {"__module__": "cudf.core.dataframe"})()
    assert is_gpu_frame(fake) is True


def test_missing_package_message():
    msg = str(missing_package("cuml", "pip install x", "the GPU ridge engine"))
    assert (
        msg == "the GPU ridge engine needs the package 'cuml', which is not installed; install it with: pip install x"
    )


# --- every divergence helper gives the same answer on each backend (cuDF where present) -----


def test_divergence_helpers_agree_on_each_backend(backend):
    from wsb_gpu.backend import (
        column_array,
        concat_columns,
        divide_rows,
        frame_from_arrays,
        frame_like,
        matrix,
        preferred_tokenizer,
        replace_with_backrefs,
    )

    host = pd.DataFrame({"a": [1.0, None, 4.0], "b": [2, 3, 8], "s": ["x$y", "ab", "q$"]})
    frame = backend.from_pandas(host)
    assert np.isnan(to_numpy(column_array(frame["a"], "float64", na_value=np.nan))[1])
    assert to_numpy(column_array(frame["b"], "int64")).tolist() == [2, 3, 8]
    np.testing.assert_array_equal(to_numpy(matrix(frame, ["b", "a"])), host[["b", "a"]].to_numpy(float))
    built = frame_from_arrays(
        frame, {"d": backend.asarray(np.array([0, 31])), "x": backend.asarray(np.ones(2))}, day_columns=["d"]
    )
    assert type(built) is type(frame)
    assert to_pandas(built)["d"].dt.strftime("%Y-%m-%d").tolist() == ["1970-01-01", "1970-02-01"]
    assert type(frame_like(frame, pd.DataFrame({"k": [1]}))) is type(frame)
    # DataFrame.div(axis=0) is pandas-only: cuDF raises "Only axis=1 supported at this time".
    quotient = divide_rows(frame[["b"]], backend.asarray(np.array([2.0, 3.0, 4.0])))
    assert to_pandas(quotient)["b"].tolist() == [1.0, 1.0, 2.0]
    assert to_pandas(replace_with_backrefs(frame["s"], r"([a-z])\$", r"\1#")).tolist() == ["x#y", "ab", "q#"]
    assert list(concat_columns([frame[["a"]], frame[["b"]]]).columns) == ["a", "b"]
    assert preferred_tokenizer(frame) == ("strings" if backend.is_gpu else "scan")


def test_gpu_status_imports_neither_torch_nor_cudf_where_there_is_none():
    import subprocess
    import sys

    code = (
        "import sys; from wsb_gpu.backend import gpu_status; gpu_status(); "
        "print(sorted({'torch', 'cudf', 'cupy'} & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    if not GPU_OK:
        assert out.stdout.strip() == "[]"


def test_stage_and_model_modules_have_no_backend_branch():
    """Divergences live in wsb_gpu/backend.py; a stage kernel that tests for the GPU is a bug."""
    import ast
    from pathlib import Path

    import wsb_gpu

    root = Path(wsb_gpu.__file__).parent
    offenders = []
    for path in sorted([*root.glob("stages/*.py"), *root.glob("models/*.py")]):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and node.attr in {"is_gpu", "values_host", "to_cupy"}:
                name = node.attr
            elif isinstance(node, ast.Name) and node.id in {"cudf", "cupy", "is_gpu_frame"}:
                name = node.id
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(m.split(".")[0] in {"cudf", "cupy", "dask_cudf", "cuml"} for m in mods):
                    name = "import " + ", ".join(m for m in mods if m)
            if name:
                offenders.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
    assert offenders == []
