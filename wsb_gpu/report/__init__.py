"""The run's report, in three parts: :mod:`~wsb_gpu.report.load` reads the results and the
lake, :mod:`~wsb_gpu.report.figures` draws, :mod:`~wsb_gpu.report.markdown` writes
``report.md``. The stage that puts them together is :mod:`wsb_gpu.stages.report`.
"""

from wsb_gpu.report.figures import FIGURES
from wsb_gpu.report.load import daily_mean_volatility, mentions_per_day, read_metrics, read_ridge_details, versus_har
from wsb_gpu.report.markdown import pct, pvalue, r2

__all__ = [
    "FIGURES",
    "daily_mean_volatility",
    "mentions_per_day",
    "pct",
    "pvalue",
    "r2",
    "read_metrics",
    "read_ridge_details",
    "versus_har",
]
