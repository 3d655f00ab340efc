"""Forecast accuracy and the Diebold–Mariano test.

* ``mse`` = SSE / n.
* ``r2`` = 1 - SSE / SST with SST around the **test-year mean** (as the seed reports).
* ``r2_oos`` = 1 - SSE / SST with SST around the **training-window mean** (Campbell and
  Thompson's out-of-sample R²: positive only if the model beats the historical mean).
* Diebold–Mariano: the loss differential of each row, ``(y - yhat_model)^2 - (y -
  yhat_har)^2``, is averaged across stocks per trading day, ``d_t``; the statistic is
  ``mean(d) / sqrt(V / T)`` with ``V`` the Newey–West (Bartlett kernel) long-run variance
  of ``d_t`` at lag ``L = floor(4 (T / 100)^(2/9))`` (Newey and West, 1994). Negative
  statistics mean the model has the smaller loss. The p-value is from the standard
  normal, either two-sided or one-sided for the alternative "the model's loss is lower
  than the benchmark's" (``alternative="less"``, ``p = Phi(stat)``), which is the
  question "does the text improve the forecast?" that the training stage reports.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from wsb_gpu.backend import Array


def mse(y: Array, yhat: Any) -> float:
    """Mean squared error.

    >>> mse(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    2.0
    """
    e = np.asarray(y, dtype=np.float64) - np.asarray(yhat, dtype=np.float64)
    return float(np.mean(e * e))


def r2(y: Array, yhat: Any, center: float | None = None) -> float:
    """``1 - SSE / SST``; SST around ``center`` (default: the mean of ``y``).

    >>> r2(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    1.0
    >>> r2(np.array([1.0, 3.0]), np.array([2.0, 2.0]), center=0.0)
    0.8
    """
    y = np.asarray(y, dtype=np.float64)
    e = y - np.asarray(yhat, dtype=np.float64)
    c = y.mean() if center is None else center
    return float(1.0 - (e @ e) / ((y - c) @ (y - c)))


def r2_oos(y: Array, yhat: Any, train_mean: float) -> float:
    """Out-of-sample R² against the training mean as the naive forecast."""
    return r2(y, yhat, center=train_mean)


def newey_west_lag(T: int) -> int:
    """Newey–West (1994) automatic lag ``floor(4 (T / 100)^(2/9))``.

    >>> newey_west_lag(252), newey_west_lag(2268), newey_west_lag(1)
    (4, 8, 1)
    """
    return max(1, int(math.floor(4.0 * (max(T, 1) / 100.0) ** (2.0 / 9.0))))


def newey_west_variance(d: Any, lag: int) -> float:
    """Bartlett-kernel long-run variance of a series (divisor T, weights ``1 - k/(L+1)``).

    >>> round(newey_west_variance(np.array([1.0, -1.0, 1.0, -1.0]), 0), 6)
    1.0
    """
    d = np.asarray(d, dtype=np.float64)
    T = d.size
    u = d - d.mean()
    v = float(u @ u) / T
    for k in range(1, min(lag, T - 1) + 1):
        v += 2.0 * (1.0 - k / (lag + 1.0)) * float(u[k:] @ u[:-k]) / T
    return v


def diebold_mariano(d: Any, lag: int | None = None, alternative: str = "two-sided") -> tuple[float, float, int]:
    """DM statistic, normal p-value and the lag used, for a loss differential.

    Parameters
    ----------
    d
        Daily loss differentials (model minus benchmark), in time order.
    lag
        Newey–West lag; None = :func:`newey_west_lag` of the series length.
    alternative
        ``"two-sided"``, or ``"less"`` (the model's mean loss is below the benchmark's).

    Returns
    -------
    (stat, pvalue, lag); NaNs when fewer than 3 days or a non-positive variance.
    """
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    T = d.size
    L = newey_west_lag(T) if lag is None else int(lag)
    if T < 3:
        return float("nan"), float("nan"), L
    v = newey_west_variance(d, L)
    if not v > 0:
        return float("nan"), float("nan"), L
    stat = float(d.mean() / math.sqrt(v / T))
    if alternative == "less":
        return stat, float(0.5 * math.erfc(-stat / math.sqrt(2.0))), L
    return stat, float(math.erfc(abs(stat) / math.sqrt(2.0))), L


def model_confidence_set(
    losses: Any, *, reps: int = 1000, block_size: int | None = None, seed: int = 0
) -> dict[str, float]:
    """MCS p-values (Hansen, Lunde and Nason, 2011) of the columns of a loss table.

    ``losses`` is a pandas frame: one row per day, one column per forecast (its daily mean
    squared error). The set is found by elimination with the range statistic (``method
    "R"``) and a stationary bootstrap of the days (``arch.bootstrap.MCS``). A forecast is
    in the MCS at level ``a`` when its p-value is at least ``a``: the 90 % set holds those
    with p >= 0.10, the 75 % set those with p >= 0.25. Days where any forecast is missing
    are dropped.

    >>> import pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> L = pd.DataFrame({"good": rng.normal(1.0, 0.1, 400), "bad": rng.normal(2.0, 0.1, 400)})
    >>> p = model_confidence_set(L, reps=200)
    >>> p["good"] == 1.0, p["bad"] < 0.01
    (True, True)
    """
    from arch.bootstrap import MCS

    table = losses.dropna()
    if table.shape[1] < 2 or len(table) < 10:
        return {str(c): float("nan") for c in losses.columns}
    mcs = MCS(table, size=0.10, reps=int(reps), block_size=block_size, method="R", seed=int(seed))
    mcs.compute()
    pvalues = mcs.pvalues["Pvalue"]
    return {str(c): float(pvalues.get(c, float("nan"))) for c in losses.columns}
