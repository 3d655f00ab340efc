"""Forecast accuracy, the losses of the volatility literature and the Diebold–Mariano test.

* ``mse`` = SSE / n; ``rmse`` its root; ``mae`` = mean |y - yhat|; ``mape`` = mean
  |y - yhat| / y over the rows with y > 0 (a zero next-day return has no percentage error).
* ``qlike`` (Patton 2011): with the variance proxy ``s = y^2`` and the forecast variance
  ``h = max(yhat, floor)^2``, ``L = log h + s / h``. It differs from the normalised form
  ``s/h - log(s/h) - 1`` only by a term of ``y`` alone, so differences between models (the
  Diebold–Mariano input) and rankings are the same, and it is defined when ``y = 0`` (a
  day without a price change), where the normalised form is not. QLIKE is the loss that
  ranks volatility forecasts consistently when the proxy is noisy (Patton 2011) and
  penalises under-prediction more than over-prediction; the floor (``train.forecast_floor``)
  makes it defined for forecasts at or below zero, which a linear model can produce.
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


def loss_terms(y: Array, yhat: Array, floor: float) -> dict[str, Array]:
    """Row-wise losses of a volatility forecast (Array API: NumPy, CuPy, array-api-strict).

    Returns ``se`` (squared error), ``ae`` (absolute error), ``ql`` (QLIKE, see the module
    docstring) and ``ape`` (absolute percentage error, 0 where ``y <= 0``; divide its sum by
    the count of ``y > 0``).

    >>> t = loss_terms(np.array([0.02, 0.0]), np.array([0.01, -0.01]), floor=1e-4)
    >>> [round(float(v), 6) for v in (t["se"][0], t["ae"][1], t["ape"][0], t["ape"][1])]
    [0.0001, 0.01, 0.5, 0.0]
    >>> round(float(t["ql"][0]), 4) == round(2 * math.log(0.01) + 4.0, 4)
    True
    """
    from wsb_gpu.backend import array_namespace

    xp = array_namespace(y, yhat)
    e = y - yhat
    h = xp.maximum(yhat, xp.asarray(floor, dtype=yhat.dtype))
    ratio = y / h
    positive = y > 0
    ape = xp.where(positive, xp.abs(e) / xp.where(positive, y, xp.ones_like(y)), xp.zeros_like(y))
    return {"se": e * e, "ae": xp.abs(e), "ql": 2.0 * xp.log(h) + ratio * ratio, "ape": ape}


def qlike(y: Array, yhat: Any, floor: float = 1e-4) -> float:
    """Mean QLIKE ``log h + y^2 / h`` with ``h = max(yhat, floor)^2`` (NumPy reference form).

    >>> round(qlike(np.array([0.02]), np.array([0.02])), 6) == round(2 * math.log(0.02) + 1, 6)
    True
    """
    y = np.asarray(y, dtype=np.float64)
    h = np.maximum(np.asarray(yhat, dtype=np.float64), floor) ** 2
    return float(np.mean(np.log(h) + y * y / h))


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
    >>> model_confidence_set(L.assign(twin=L["bad"], triplet=L["bad"]), reps=200)["triplet"] == p["bad"]
    True
    """
    from arch.bootstrap import MCS

    table = losses.dropna()
    # Forecasts identical up to round-off (HAR, and ridge / elastic net on the HAR terms
    # alone, unpenalised) enter once and share its p-value: arch's elimination fails on
    # three identical columns, and duplicates carry no information about each other.
    same: dict[str, str] = {}
    kept: list[str] = []
    for c in table.columns:
        v = table[c].to_numpy(float)
        twin = next(
            (k for k in kept if np.max(np.abs(v - table[k].to_numpy(float))) <= 1e-8 * np.mean(np.abs(v))), None
        )
        same[str(c)] = str(twin if twin is not None else c)
        if twin is None:
            kept.append(c)
    if len(kept) < 2 or len(table) < 10:
        return {str(c): float("nan") for c in losses.columns}
    mcs = MCS(table[kept], size=0.10, reps=int(reps), block_size=block_size, method="R", seed=int(seed))
    mcs.compute()
    pvalues = mcs.pvalues["Pvalue"]
    return {str(c): float(pvalues.get(same.get(str(c), c), float("nan"))) for c in losses.columns}
