"""wsb_gpu: r/WallStreetBets text signals for next-day volatility, on Dask with a GPU or CPU backend.

``import wsb_gpu`` never imports a GPU library: cuDF, CuPy, cuML and dask-cuda are
imported lazily by the functions that need them (see :mod:`wsb_gpu.backend`).
"""

from wsb_gpu.errors import WsbError

__version__ = "0.1.0"

__all__ = ["WsbError", "__version__"]
