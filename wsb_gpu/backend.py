"""The compute backend, chosen once at the edge and handed down.

A :class:`Backend` says which dataframe module (pandas or cuDF), array module (NumPy or
CuPy), torch device, XGBoost device and ridge estimator the stages use. Stage kernels are
written in the API that pandas and cuDF share and work on whatever frame they receive;
the few places where the two differ live in the small helpers at the bottom of this
module (``to_pandas``, ``to_numpy``, ``is_gpu_frame``), which are tested on the CPU.

GPU libraries are imported only inside functions, so ``import wsb_gpu`` works on a
laptop without them.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd

from wsb_gpu.errors import GPU_INSTALL, WsbError, missing_package

if TYPE_CHECKING:
    import cudf
    import cupy

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
        return _import("cudf", "the GPU backend") if self.is_gpu else importlib.import_module("pandas")

    @property
    def xp(self) -> ModuleType:
        """The array module: :mod:`numpy` or :mod:`cupy`."""
        return _import("cupy", "the GPU backend") if self.is_gpu else importlib.import_module("numpy")

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

    def ridge_estimator(self, alpha: float, fit_intercept: bool = True) -> Any:
        """A ridge regressor with the scikit-learn contract: cuML on GPU, scikit-learn on CPU."""
        if self.is_gpu:
            cuml_linear = _import("cuml.linear_model", "the GPU ridge engine", package="cuml-cu12")
            # cuML's "cd" solver is gone and "eig" can be unstable on collinear HAR terms:
            # "svd" is the robust choice.
            return cuml_linear.Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
        from sklearn.linear_model import Ridge

        return Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="auto")

    def from_pandas(self, frame: Any) -> Any:
        """Move a pandas frame to this backend (a no-op on CPU)."""
        return self.xdf.from_pandas(frame) if self.is_gpu else frame

    def asarray(self, values: Any) -> Any:
        """Move an array to this backend's array module."""
        return self.xp.asarray(values)


def _import(module: str, purpose: str, package: str | None = None) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise missing_package(package or module.split(".")[0], GPU_INSTALL, purpose) from e


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """Whether the GPU backend can run here, and why not.

    A usable GPU is detected through CuPy or PyTorch (RAPIDS imports succeed without a GPU
    and fail at first use, so importing cuDF proves nothing); cuDF must also import.
    """
    has_cuda = False
    try:
        import cupy

        has_cuda = bool(cupy.cuda.is_available())
    except Exception:
        try:
            import torch

            has_cuda = bool(torch.cuda.is_available())
        except Exception:
            has_cuda = False
    if not has_cuda:
        return False, "no usable CUDA device (checked with cupy / torch)"
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


# --- where pandas and cuDF differ --------------------------------------------------------


def is_gpu_frame(obj: Any) -> bool:
    """True for cuDF frames, series and CuPy arrays (checked by module, without importing them).

    >>> import pandas as pd
    >>> is_gpu_frame(pd.DataFrame())
    False
    """
    module = type(obj).__module__.split(".")[0]
    return module in ("cudf", "cupy")


def to_pandas(obj: Any) -> Any:
    """A pandas copy of a cuDF object; pandas objects pass through unchanged."""
    return obj.to_pandas() if is_gpu_frame(obj) and hasattr(obj, "to_pandas") else obj


def to_numpy(values: Any) -> Any:
    """A NumPy array from NumPy, CuPy, pandas or cuDF values.

    >>> import numpy as np
    >>> to_numpy(np.arange(3)).tolist()
    [0, 1, 2]
    """

    if type(values).__module__.split(".")[0] == "cupy":
        return values.get()
    if hasattr(values, "to_numpy"):  # pandas and cuDF (which copies to the host)
        return values.to_numpy()
    return np.asarray(values)


def frame_module(frame: Any) -> ModuleType:
    """The module (pandas or cudf) a frame belongs to, to build new frames of the same kind."""
    return importlib.import_module("cudf" if is_gpu_frame(frame) else "pandas")
