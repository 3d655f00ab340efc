"""The regression task's evaluation: metrics per entry and test year, pooled, and the tests.

The squared error of an entry in a year is exact from the moments where the model can tell
it (:meth:`~wsb_gpu.models.base.Model.test_sse`), else summed from the prediction pass's
daily rows (:mod:`wsb_gpu.training.predict`), which also give the other losses and the
Diebold–Mariano loss differentials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wsb_gpu.models.base import target_horizon
from wsb_gpu.models.metrics import diebold_mariano, newey_west_lag

if TYPE_CHECKING:
    from wsb_gpu.models.base import Sample
    from wsb_gpu.training.entries import Entry
    from wsb_gpu.training.regression import WindowRun

METRIC_COLUMNS = [
    "model",
    "feature_set",
    "test_year",
    "n_train",
    "n_test",
    "mse",
    "r2",
    "r2_oos",
    "rmse",
    "mae",
    "mape",
    "qlike",
    "lambda",
    "dm_stat",
    "dm_pvalue",
    "dm_qlike_stat",
    "dm_qlike_pvalue",
    "dm_base_stat",
    "dm_base_pvalue",
]
MCS_LEVELS = (0.10, 0.25)
DM_LAG_RULE = (
    "floor(4 * (T / 100) ** (2 / 9)) (Newey and West, 1994), at least h - 1 for an h-day target, Bartlett kernel"
)
DM_PVALUE = (
    "one-sided, standard normal: H1 = the model's loss is below HAR's (p = Phi(dm_stat)); "
    "the two-sided p-value is dm_pvalue_two_sided in metrics.json"
)


def _group_sst(n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> tuple[int, float, float]:
    """Total count, mean and centred sum of squares of several groups."""
    N = float(n.sum())
    mu = float((n * mean).sum() / N)
    return int(N), mu, float(m2.sum() + (n * (mean - mu) ** 2).sum())


def _differential(daily: pd.DataFrame, key: str, benchmark: str, loss: str = "sse") -> np.ndarray:
    """The daily mean loss differential of ``key`` against ``benchmark`` (``loss`` one of
    :data:`LOSSES`); NaN when the two forecasts are the same up to round-off (ridge on the
    HAR terms alone, unpenalised, is HAR: a DM test of round-off would be noise)."""
    a, b = daily[f"{loss}_{key}"].to_numpy(float), daily[f"{loss}_{benchmark}"].to_numpy(float)
    n = daily["n"].to_numpy(float)
    if len(b) and np.max(np.abs(a - b)) <= 1e-8 * np.mean(np.abs(b)):
        return np.full(len(n), np.nan)
    return (a - b) / n


# The Diebold–Mariano comparisons of every row: (column prefix, benchmark, loss).
_DM_TESTS = (("dm", "har", "sse"), ("dm_qlike", "har", "sql"), ("dm_base", "base", "sse"))


def _dm_columns(series: Mapping[str, np.ndarray | None], min_lag: int = 0) -> dict[str, Any]:
    """The DM statistic and one-sided p-value of each comparison (NaN without a series);
    the two-sided p-value and the lag of the squared-error test against HAR."""
    out: dict[str, Any] = {}
    for prefix, _, _ in _DM_TESTS:
        stat = p = float("nan")
        lag = None
        d = series.get(prefix)
        if d is not None:
            # An h-day target's forecast errors overlap for h - 1 days: the lag is at least that.
            least = max(newey_west_lag(int(np.isfinite(d).sum())), min_lag) if min_lag else None
            stat, p, lag = diebold_mariano(d, lag=least, alternative="less")
        out[f"{prefix}_stat"], out[f"{prefix}_pvalue"] = stat, p
        if prefix == "dm":
            out["dm_pvalue_two_sided"] = diebold_mariano(d, lag=lag)[1] if d is not None else float("nan")
            out["dm_lag"] = lag
    return out


def _loss_columns(acc: Mapping[str, float]) -> dict[str, float]:
    """MSE, R², RMSE, MAE, MAPE and QLIKE from summed losses and counts."""
    n, sse = acc["n"], acc["sse"]
    return {
        "mse": sse / n,
        "r2": 1.0 - sse / acc["sst"],
        "r2_oos": 1.0 - sse / acc["sst_oos"],
        "rmse": math.sqrt(sse / n),
        "mae": acc["sae"] / n,
        "mape": acc["sape"] / acc["n_pos"] if acc["n_pos"] else float("nan"),
        "qlike": acc["sql"] / n,
    }


def evaluate(
    runs: Sequence[WindowRun], entries: Sequence[Entry], sample: Sample
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], pd.DataFrame]:
    """Metric rows (per entry × test year, then pooled), the HAR-term coefficient rows and
    the daily loss table (one column per entry) of the Model Confidence Set.

    The squared error of an entry in a year is exact from the moments where the model can
    tell it (:meth:`Model.test_sse`), else summed from the prediction pass's daily rows,
    which also give the other losses and the Diebold–Mariano loss differentials: against
    HAR on squared error (``dm_*``) and on QLIKE (``dm_qlike_*``), and against the same
    model on its ``har`` set (``dm_base_*``).
    """
    har_cols = sample.har_columns
    min_lag = target_horizon(sample.target) - 1
    rows, coefs = [], []
    # The same model on the HAR terms alone (its ``har`` feature set, when the run has one):
    # the "with vs without the text" comparison, which separates what the set's columns add
    # from what the model does differently with the HAR terms (ridge shrinks them, trees bend them).
    keys = {e.key for e in entries}
    base = {
        e.key: f"{e.model}__har"
        for e in entries
        if e.key != "har" and e.set_name != "har" and f"{e.model}__har" in keys
    }
    days: dict[str, dict[str, list[np.ndarray]]] = {e.key: {p: [] for p, _, _ in _DM_TESTS} for e in entries}
    loss_parts = []
    zero = dict.fromkeys(("sse", "sae", "sql", "sape", "sst", "sst_oos", "n", "n_pos", "n_train"), 0.0)
    pooled = {e.key: dict(zero) for e in entries}
    for r in runs:
        window, d = r.window, r.daily
        year = window.test_year
        train_m = window.moments(har_cols)
        if len(d) == 0:
            continue
        n_test, mean_test, sst = _group_sst(d["n"].to_numpy(float), d["y_mean"].to_numpy(), d["y_m2"].to_numpy())
        sst_oos = sst + n_test * (mean_test - train_m.y_mean) ** 2
        loss_parts.append(
            pd.DataFrame({e.key: (d[f"sse_{e.key}"] / d["n"]).to_numpy() for e in entries}, index=d["date"].to_numpy())
        )
        for e in entries:
            model = r.fits[e.key]
            exact = model.test_sse(window)
            sse, n = exact if exact is not None else (float(d[f"sse_{e.key}"].sum()), n_test)
            series: dict[str, np.ndarray] = {}
            for prefix, bench, loss in _DM_TESTS:
                against = base.get(e.key) if bench == "base" else (bench if e.key != bench else None)
                if against is not None:
                    series[prefix] = _differential(d, e.key, against, loss)
                    days[e.key][prefix].append(series[prefix])
            acc = {
                "sse": sse,
                "sst": sst,
                "sst_oos": sst_oos,
                "n": n,
                "n_pos": float(d["n_pos"].sum()),
                **{loss: float(d[f"{loss}_{e.key}"].sum()) for loss in ("sae", "sql", "sape")},
            }
            lam = model.lam
            rows.append(
                {
                    "key": e.key,
                    "model": e.model,
                    "feature_set": e.set_name,
                    "test_year": str(year),
                    "n_train": int(train_m.n),
                    "n_test": int(n),
                    **_loss_columns(acc),
                    "lambda": lam,
                    **_dm_columns(series, min_lag),
                    "n_days": int(len(d)),
                }
            )
            total = pooled[e.key]
            for k, v in acc.items():
                total[k] += v
            total["n_train"] += train_m.n
            fit = model.linear
            if fit is not None:
                har_coef = fit.coef[[model.columns_.index(c) for c in har_cols]]
                coefs.append(
                    {
                        "model": e.model,
                        "feature_set": e.set_name,
                        "test_year": year,
                        "lambda": lam,
                        "intercept": fit.intercept,
                        **{c: float(v) for c, v in zip(har_cols, har_coef)},
                    }
                )
    for e in entries:
        acc = pooled[e.key]
        if acc["n"] == 0:
            continue
        series = {p: np.concatenate(parts) for p, parts in days[e.key].items() if parts}
        rows.append(
            {
                "key": e.key,
                "model": e.model,
                "feature_set": e.set_name,
                "test_year": "all",
                "n_train": int(acc["n_train"]),
                "n_test": int(acc["n"]),
                **_loss_columns(acc),
                "lambda": float("nan"),
                **_dm_columns(series, min_lag),
                "n_days": len(series["dm"]) if "dm" in series else None,
            }
        )
    losses = pd.concat(loss_parts) if loss_parts else pd.DataFrame(columns=[e.key for e in entries])
    return rows, coefs, losses


def fits_json(runs: Sequence[WindowRun], entries: Sequence[Entry]) -> dict[str, Any]:
    """Every linear entry's fitted state per test year: λ, intercept, coefficients, scaler."""
    out: dict[str, Any] = {}
    for e in entries:
        for r in runs:
            model = r.fits[e.key]
            fit = model.linear
            if fit is not None:
                out.setdefault(e.key, {})[str(r.window.test_year)] = {
                    "model": e.model,
                    "feature_set": e.set_name,
                    "lambda": float(fit.lam),
                    "intercept": float(fit.intercept),
                    "columns": list(model.columns_),
                    "coef": np.asarray(fit.coef).tolist(),
                    "mean": np.asarray(fit.mean).tolist(),
                    "scale": np.asarray(fit.scale).tolist(),
                }
    return out
