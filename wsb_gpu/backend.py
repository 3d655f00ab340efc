"""The compute backend, chosen once at the edge, and every place where pandas and cuDF differ.

A :class:`Backend` says which dataframe module (pandas or cuDF), array module (NumPy or
CuPy), torch device, XGBoost device and ridge estimator the stages use, and reads datasets
into partitions of the right kind. Stage kernels are written in the API that pandas and cuDF
share and work on whatever frame they receive; their array arithmetic is written against the
array API standard (:func:`array_namespace`), so the same code runs on NumPy and CuPy and is
tested under ``array-api-strict`` on the CPU.

Where the two libraries differ, the difference lives here, in one named helper each, whose
docstring says what pandas and cuDF each do (checked against the cuDF 26.10 sources) and
whose doctest runs on the CPU. The stage modules have no ``if gpu`` branch. The divergences:

=============================  ==================================================================
helper                         why it exists
=============================  ==================================================================
:func:`column_array`           pandas ``Series.to_numpy(dtype, na_value)``; cuDF ``to_cupy`` (and
                               ``Series.values`` is CuPy, not NumPy); nulls vs NaN
:func:`matrix`                 the same for several columns as one float64 matrix (cuDF fills
                               before it casts)
:func:`frame_from_arrays`      a frame of the same kind as another from NumPy/CuPy arrays (cuDF
                               turns NaN into null unless told not to)
:func:`frame_like`             a small pandas table as a frame of another frame's kind (a join)
:func:`divide_rows`            ``DataFrame.div(s, axis=0)``: cuDF supports only ``axis=1``
:func:`replace_with_backrefs`  pandas ``str.replace(regex=True)``; cuDF ``str.replace_with_backrefs``
:func:`concat_columns`         ``pandas.concat`` vs ``cudf.concat`` (axis 1)
:func:`preferred_tokenizer`    which token extractor suits a frame (NumPy scanner vs string ops)
:func:`to_numpy`,              moving results to the host (``.get()`` for CuPy)
:func:`to_pandas`, :func:`to_host`
``Backend.from_host``          host (pandas) partitions onto the device (``to_backend("cudf")``)
``Backend.read_parquet``       dask-cuDF's reader for the GPU (pandas' dates cannot move to cuDF)
``Backend.to_parquet``         dates written as ``date32`` (cuDF has no date type)
=============================  ==================================================================

Row order after a merge or a groupby is not kept by cuDF (pandas keeps it): every stage
that writes rows sorts them or does not depend on their order; sums over rows (the ridge
moments) may differ from the CPU's in the last bits.

Also backend-specific, kept where their subject lives: the GPU JSON block parser
(``cudf.read_json``; :mod:`wsb_gpu.sources.pushshift`: pandas has no counterpart), the
device out-of-memory test of the encoder (:func:`wsb_gpu.encoder.is_out_of_memory`), and the
text cleaning of :mod:`wsb_gpu.text`, which stays on the host on purpose (Python regular
expressions with inline flags, which libcudf's regex engine does not have). The text
signals are host work on both backends too (VADER and the word families are pure Python;
:mod:`wsb_gpu.stages.signals` and :mod:`wsb_gpu.signals.fitted` read pandas partitions); the
topics family clusters on the device with cuML's ``UMAP`` and ``HDBSCAN`` (same parameters as
umap-learn and hdbscan; cuML's UMAP has no ``n_jobs``), chosen in
:func:`wsb_gpu.signals.topics._cluster_classes`.

GPU libraries are imported only inside functions, so ``import wsb_gpu`` works on a laptop
without them; detecting a GPU imports neither torch nor cuDF (:func:`gpu_status`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import array_api_compat
import numpy as np
import pandas as pd

from wsb_gpu.dates import date_of_day
from wsb_gpu.errors import GPU_INSTALL, WsbError, missing_package

if TYPE_CHECKING:
    import cudf
    import cupy
    import dask.dataframe as dd

Frame: TypeAlias = "pd.DataFrame | cudf.DataFrame"
"""A partition: pandas on the CPU backend, cuDF on the GPU backend."""
Column: TypeAlias = "pd.Series | cudf.Series"
Array: TypeAlias = "np.ndarray | cupy.ndarray"
"""NumPy on the CPU backend, CuPy on the GPU backend."""


@dataclass(frozen=True)
class Backend:
    """Where the numbers are computed.

    Attributes
    ----------
    name
        ``"cpu"`` or ``"gpu"``.
    reason
        Why this backend was chosen (shown by ``wsb-gpu info``).
    """

    name: str
    reason: str = ""

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    @property
    def xdf(self) -> ModuleType:
        """The dataframe module: :mod:`pandas` or :mod:`cudf`."""
        return _import("cudf", "the GPU backend") if self.is_gpu else pd

    @property
    def xp(self) -> ModuleType:
        """The array module: :mod:`numpy` or :mod:`cupy`."""
        return _import("cupy", "the GPU backend") if self.is_gpu else np

    @property
    def dask_backend(self) -> str:
        """The value for ``dask.dataframe`` ``to_backend()`` / ``dataframe.backend``."""
        return "cudf" if self.is_gpu else "pandas"

    @property
    def torch_device(self) -> str:
        return "cuda" if self.is_gpu else "cpu"

    @property
    def xgb_device(self) -> str:
        return "cuda" if self.is_gpu else "cpu"

    @property
    def partition_rows(self) -> int:
        """Default rows per volatility partition: a GPU wants fewer, larger pieces."""
        return 20_000_000 if self.is_gpu else 2_000_000

    def read_parquet(self, path: str | Path, columns: Sequence[str] | None = None) -> dd.DataFrame:
        """A Parquet dataset as a Dask frame of pandas or cuDF partitions.

        pandas: ``dask.dataframe.read_parquet`` (dates become ``ArrowDtype(date32)``). cuDF:
        the same call with ``dataframe.backend = "cudf"``, i.e. dask-cuDF's reader, which
        reads on the device and gives dates as ``datetime64[s]``. (Reading with pandas and
        moving with ``to_backend("cudf")`` would fail: ``cudf.from_pandas`` refuses
        ``ArrowDtype(date32)``, ``cudf/core/column/column.py``.)
        """
        import dask
        import dask.dataframe as dd

        cols = list(columns) if columns is not None else None
        if self.is_gpu:
            with dask.config.set({"dataframe.backend": "cudf"}):
                return dd.read_parquet(str(path), columns=cols)
        return dd.read_parquet(str(path), columns=cols)

    def to_parquet(
        self,
        ddf: dd.DataFrame,
        path: str | Path,
        *,
        dates: Sequence[str] = ("date",),
        schema: Mapping[str, Any] | None = None,
    ) -> Any:
        """The delayed write of a Dask frame as Parquet, its ``dates`` columns as ``date32``.

        pandas partitions hold dates as ``date32`` already. cuDF has no date type (its dates
        are ``datetime64[s]``, which would be written as timestamps), so cuDF partitions are
        written through pandas, the dates cast to ``date32`` by pyarrow on the way.
        ``schema`` pins other columns' Arrow types.
        """
        import pyarrow as pa

        types = {**dict(schema or {}), **{d: pa.date32() for d in dates if d in ddf.columns}}
        frame = ddf.to_backend("pandas") if is_gpu_frame(ddf._meta) else ddf
        return frame.to_parquet(str(path), write_index=False, compute=False, schema=types or None)

    def from_host(self, ddf: dd.DataFrame) -> dd.DataFrame:
        """A Dask frame of pandas partitions (host work: words, topics) as this backend's
        partitions: as it is on CPU, ``to_backend("cudf")`` on GPU. The frame must hold no
        date column (``cudf.from_pandas`` refuses ``date32``; key by day numbers instead)."""
        return ddf.to_backend("cudf") if self.is_gpu else ddf

    def to_device(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Array]:
        """Host arrays onto this backend's device (a no-op on CPU)."""
        return {k: self.xp.asarray(v) for k, v in arrays.items()} if self.is_gpu else dict(arrays)

    def ridge_estimator(self, alpha: float, fit_intercept: bool = True) -> Any:
        """A ridge regressor with the scikit-learn contract: cuML on GPU, scikit-learn on CPU."""
        if self.is_gpu:
            cuml_linear = _import("cuml.linear_model", "the GPU ridge engine", package="cuml-cu12")
            # cuML's "cd" solver is gone and "eig" can be unstable on collinear HAR terms:
            # "svd" is the robust choice.
            return cuml_linear.Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
        from sklearn.linear_model import Ridge  # lazy: scikit-learn takes half a second to import

        return Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="auto")

    def enet_estimator(
        self, alpha: float, l1_ratio: float, fit_intercept: bool = True, max_iter: int = 1000, tol: float = 1e-7
    ) -> Any:
        """An elastic-net regressor with the scikit-learn contract: cuML on GPU, scikit-learn
        on CPU, both minimising ``(1/2n)||y - Xw||² + alpha (l1_ratio ||w||₁ + (1 - l1_ratio)/2 ||w||²)``
        by cyclic coordinate descent."""
        if self.is_gpu:
            cuml_linear = _import("cuml.linear_model", "the GPU elastic-net engine", package="cuml-cu12")
            # cuML 26.10's ElasticNet(alpha, *, l1_ratio, fit_intercept, max_iter, tol, solver,
            # selection, output_type, verbose) (cuml/linear_model/elastic_net.py): no
            # normalize, warm_start or precompute. solver="cd" is what "auto" picks for dense
            # input; cuML's cd stops on its own rule (its CPU interop scales tol by 10).
            return cuml_linear.ElasticNet(
                alpha=alpha,
                l1_ratio=l1_ratio,
                fit_intercept=fit_intercept,
                max_iter=max_iter,
                tol=tol,
                solver="cd",
                selection="cyclic",
            )
        from sklearn.linear_model import ElasticNet  # lazy: scikit-learn takes half a second to import

        # precompute=True: coordinate descent on the fold's Gram matrix (one n·p² product per
        # fit) instead of sweeps over the rows (n·p per sweep, hundreds of sweeps): on the
        # demo's 390-column set ~20x faster, the same solution.
        return ElasticNet(
            alpha=alpha,
            l1_ratio=l1_ratio,
            fit_intercept=fit_intercept,
            tol=tol,
            max_iter=max_iter,
            selection="cyclic",
            precompute=True,
        )

    def logistic_estimator(self, C: float, max_iter: int = 1000) -> Any:
        """An L2 logistic regression with the scikit-learn contract: cuML on GPU,
        scikit-learn on CPU. cuML's default ``penalty_normalized=True`` divides both the loss
        and the penalty by the rows, the same minimiser as scikit-learn's ``C`` (cuML 26.10
        ``_params_from_cpu`` maps scikit-learn's ``C`` unchanged)."""
        if self.is_gpu:
            cuml_linear = _import("cuml.linear_model", "the GPU spike classifier", package="cuml-cu12")
            return cuml_linear.LogisticRegression(C=float(C), max_iter=int(max_iter), tol=1e-6)
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=float(C), max_iter=int(max_iter), tol=1e-6)

    def from_pandas(self, frame: pd.DataFrame) -> Frame:
        """Move a pandas frame to this backend (a no-op on CPU)."""
        return self.xdf.from_pandas(frame) if self.is_gpu else frame

    def asarray(self, values: Any) -> Array:
        """Move an array to this backend's array module."""
        return self.xp.asarray(values)


def _import(module: str, purpose: str, package: str | None = None) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise missing_package(package or module.split(".")[0], GPU_INSTALL, purpose) from e


# --- choosing the backend -----------------------------------------------------------------------


def _nvidia_device_present() -> bool:
    """A cheap look for an NVIDIA GPU: the driver's device files or ``nvidia-smi``."""
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return True
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """Whether the GPU backend can run here, and why not.

    Cheap where there is no GPU: no NVIDIA device and cuDF not installed settle it without
    importing anything (torch and cuDF take seconds to import). Where both are there, a usable
    device is confirmed through CuPy (RAPIDS imports succeed without a GPU and fail at first
    use, so importing cuDF proves nothing) and cuDF must import.
    """
    if importlib.util.find_spec("cudf") is None:
        return False, "cuDF is not installed"
    if not _nvidia_device_present():
        return False, "no NVIDIA GPU found (no /dev/nvidia* device, no nvidia-smi)"
    try:
        import cupy

        if not cupy.cuda.is_available():
            return False, "no usable CUDA device (CuPy sees none)"
    except Exception as e:
        return False, f"CuPy cannot use the GPU ({type(e).__name__}: {e})"
    try:
        importlib.import_module("cudf")
    except Exception as e:
        return False, f"a CUDA device is present but cuDF does not import ({type(e).__name__}: {e})"
    return True, "CUDA device present and cuDF imports"


def resolve_backend(name: str = "auto") -> Backend:
    """Resolve ``auto | cpu | gpu`` into a :class:`Backend`, once.

    >>> resolve_backend("cpu").name
    'cpu'
    """
    if name == "cpu":
        return Backend("cpu", "asked for cpu")
    ok, why = gpu_status()
    if name == "gpu":
        if not ok:
            msg = f"--backend gpu asked for, but {why}; install the GPU stack with {GPU_INSTALL}, or use --backend cpu"
            raise WsbError(msg)
        return Backend("gpu", "asked for gpu; " + why)
    if name == "auto":
        return Backend("gpu", "auto: " + why) if ok else Backend("cpu", "auto: " + why)
    msg = f"unknown backend {name!r}; choose one of: auto, cpu, gpu"
    raise WsbError(msg)


# --- arrays: one namespace for NumPy, CuPy (and array-api-strict in the tests) ------------------


def array_namespace(*arrays: Any) -> ModuleType:
    """The array API namespace of the arrays: NumPy's or CuPy's (through
    ``array_api_compat``), or ``array_api_strict``'s in the tests.

    Kernels call only what the array API standard has on the namespace this returns, so a
    NumPy-only function fails on the CPU under ``array-api-strict`` before it meets CuPy.

    >>> array_namespace(np.arange(3)).__name__
    'array_api_compat.numpy'
    """
    return array_api_compat.array_namespace(*arrays)


def is_gpu_frame(obj: Any) -> bool:
    """True for cuDF frames and series and for CuPy arrays (by module, importing neither).

    >>> is_gpu_frame(pd.DataFrame()), is_gpu_frame(np.zeros(1))
    (False, False)
    """
    return type(obj).__module__.split(".")[0] in ("cudf", "cupy")


def dataframe_module(obj: Any) -> ModuleType:
    """:mod:`pandas` or :mod:`cudf`, whichever ``obj`` belongs to, to build frames of its kind.

    >>> dataframe_module(pd.Series([1])).__name__
    'pandas'
    """
    return importlib.import_module("cudf") if is_gpu_frame(obj) else pd


def to_numpy(values: Any) -> np.ndarray:
    """A NumPy array from NumPy, CuPy, pandas or cuDF values.

    CuPy: ``.get()`` (a device-to-host copy); pandas and cuDF: ``.to_numpy()`` (cuDF copies
    to the host); another host array library: DLPack; anything else ``numpy.asarray``.

    >>> to_numpy(np.arange(3)).tolist()
    [0, 1, 2]
    """
    if type(values).__module__.split(".")[0] == "cupy":
        return values.get()
    if hasattr(values, "to_numpy"):
        return values.to_numpy()
    if hasattr(values, "__dlpack__") and not isinstance(values, np.ndarray):
        return np.from_dlpack(values)  # another array API library on the host (array-api-strict)
    return np.asarray(values)


def to_host(ddf: dd.DataFrame) -> dd.DataFrame:
    """A Dask frame as pandas partitions: cuDF partitions moved with ``to_backend("pandas")``,
    pandas ones as they are."""
    return ddf.to_backend("pandas") if is_gpu_frame(ddf._meta) else ddf


def to_pandas(obj: Any) -> Any:
    """A pandas copy of a cuDF object (``.to_pandas()``); pandas objects pass through.

    >>> to_pandas(pd.Series([1])).tolist()
    [1]
    """
    return obj.to_pandas() if is_gpu_frame(obj) and hasattr(obj, "to_pandas") else obj


def column_array(series: Column, dtype: str, na_value: Any = None) -> Array:
    """A column's values as a NumPy (pandas) or CuPy (cuDF) array of ``dtype``.

    pandas: ``Series.to_numpy(dtype, na_value=)``. cuDF: ``Series.values`` is already a CuPy
    array but refuses nulls; ``Series.to_cupy(na_value=)`` after ``astype(dtype)`` fills
    them, as pandas does. Missing values of a float column are NaN on both (cuDF reads
    Parquet nulls as nulls where pandas has NaN); an integer column with missing values and
    no ``na_value`` raises on both.

    >>> column_array(pd.Series([1.5, None]), "float64").tolist()
    [1.5, nan]
    """
    if na_value is None and np.dtype(dtype).kind == "f":
        na_value = np.nan
    if is_gpu_frame(series):
        converted = series.astype(dtype)
        return converted.to_cupy(na_value=na_value) if na_value is not None else converted.to_cupy()
    return series.to_numpy(dtype=dtype, na_value=na_value) if na_value is not None else series.to_numpy(dtype=dtype)


def matrix(frame: Frame, columns: Sequence[str]) -> Array:
    """The columns as one float64 matrix (NaN for missing): NumPy for pandas, CuPy for cuDF.

    pandas: ``DataFrame.to_numpy(dtype, na_value=)``. cuDF: ``DataFrame.to_cupy`` fills the
    nulls *before* casting (``cudf/core/frame.py``), and filling an integer column with NaN
    raises, so the columns are cast to float64 first.

    >>> matrix(pd.DataFrame({"a": [1, 2], "b": [0.5, None]}), ["b", "a"]).tolist()
    [[0.5, 1.0], [nan, 2.0]]
    """
    sub = frame[list(columns)]
    if is_gpu_frame(frame):
        return sub.astype("float64").to_cupy(na_value=np.nan)
    return sub.to_numpy(dtype="float64", na_value=np.nan)


def frame_from_arrays(like: Frame, columns: Mapping[str, Array], *, day_columns: Sequence[str] = ()) -> Frame:
    """A frame of ``like``'s kind from 1-D arrays; ``day_columns`` hold days since 1970 and
    become ``datetime64[s]`` dates.

    pandas: built with ``copy=False`` (one block per column, no consolidation copy of the ~10
    float columns); cuDF: ``cudf.DataFrame`` from CuPy arrays with ``nan_as_null=False`` (by
    default cuDF turns NaN into null, where pandas keeps NaN).

    >>> frame_from_arrays(pd.DataFrame(), {"d": np.array([0, 1]), "x": np.array([1.0, 2.0])},
    ...                   day_columns=["d"])["d"].dt.strftime("%Y-%m-%d").tolist()
    ['1970-01-01', '1970-01-02']
    """
    xdf = dataframe_module(like)
    data: dict[str, Any] = dict(columns)
    for name in day_columns:
        data[name] = date_of_day(xdf.Series(data[name]))
    if is_gpu_frame(like):
        return xdf.DataFrame(data, nan_as_null=False)
    return xdf.DataFrame(data, copy=False)


def frame_like(like: Frame, table: pd.DataFrame) -> Frame:
    """A small pandas table as a frame of ``like``'s kind (to join or compare with it).

    pandas: the table itself; cuDF: ``cudf.from_pandas(table)`` (a host-to-device copy).

    >>> frame_like(pd.DataFrame(), pd.DataFrame({"a": [1]})).columns.tolist()
    ['a']
    """
    return dataframe_module(like).from_pandas(table) if is_gpu_frame(like) else table


def divide_rows(frame: Frame, divisor: Array) -> Frame:
    """Each row of a numeric frame divided by one number of ``divisor`` (float64).

    pandas has ``DataFrame.div(s, axis=0)``; cuDF's binary operators accept only ``axis=1``
    ("Only axis=1 supported at this time", ``cudf/core/dataframe.py``), so both compute on
    the matrix and rebuild the frame (the same division, bit for bit, as ``div``).

    >>> divide_rows(pd.DataFrame({"a": [2.0, 9.0], "b": [4.0, 3.0]}), np.array([2.0, 3.0])).values.tolist()
    [[1.0, 2.0], [3.0, 1.0]]
    """
    values = matrix(frame, list(frame.columns))
    xp = array_namespace(values)
    divisor = xp.astype(xp.asarray(divisor), xp.float64)
    return frame_from_matrix(frame, values / xp.expand_dims(divisor, axis=1), list(frame.columns))


def frame_from_matrix(like: Frame, values: Array, columns: Sequence[str]) -> Frame:
    """A frame of ``like``'s kind from a 2-D array, as one block.

    Wide frames built column by column hold one block per column; pandas then warns that
    they are "highly fragmented" at the next insert (a groupby's keys, ``reset_index``), and
    every insert copies. cuDF keeps NaN (``nan_as_null=False``), as pandas does.

    >>> frame_from_matrix(pd.DataFrame(), np.ones((2, 3)), ["a", "b", "c"])._mgr.nblocks
    1
    """
    xdf = dataframe_module(like)
    if is_gpu_frame(like):
        return xdf.DataFrame(values, columns=list(columns), nan_as_null=False)
    return xdf.DataFrame(values, columns=list(columns), copy=False)


def replace_with_backrefs(series: Column, pattern: str, replacement: str) -> Column:
    """Regex replacement with ``\\1``-style back-references.

    pandas: ``Series.str.replace(pat, repl, regex=True)``; cuDF: ``str.replace`` does not
    expand back-references, ``str.replace_with_backrefs(pat, repl)`` does.

    >>> replace_with_backrefs(pd.Series(["a$b"]), r"([a-z])\\$", r"\\1#").tolist()
    ['a#b']
    """
    if is_gpu_frame(series):
        return series.str.replace_with_backrefs(pattern, replacement)
    return series.str.replace(pattern, replacement, regex=True)


def concat_columns(frames: Sequence[Frame]) -> Frame:
    """Frames of one kind side by side (``pandas.concat`` / ``cudf.concat`` with ``axis=1``).

    >>> concat_columns([pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [2]})]).columns.tolist()
    ['a', 'b']
    """
    return dataframe_module(frames[0]).concat(list(frames), axis=1)


def preferred_tokenizer(frame: Frame) -> str:
    """The token extractor that suits a frame: the NumPy byte scanner (``scan``) for pandas,
    string operations (``strings``) for cuDF, whose strings live on the device.

    >>> preferred_tokenizer(pd.DataFrame())
    'scan'
    """
    return "strings" if is_gpu_frame(frame) else "scan"
