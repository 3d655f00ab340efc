"""The prediction pass of the regression task: every fit applied to the test year's rows.

One ``map_partitions`` over a window's test year applies every model, writes
``predictions/test_year=Y/`` and returns per-day loss sums (:data:`LOSSES`): the input of
the pooled metrics, the Diebold–Mariano tests and the Model Confidence Set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wsb_gpu.backend import (
    array_namespace,
    column_array,
    concat_columns,
    frame_from_arrays,
    frame_from_matrix,
    matrix,
    to_pandas,
)
from wsb_gpu.models.metrics import loss_terms

if TYPE_CHECKING:
    from wsb_gpu.backend import Frame
    from wsb_gpu.models.base import Model


def predict_partition(
    frame: Frame,
    *,
    feature_cols: Sequence[str],
    target: str,
    fits: Mapping[str, Model],
    columns: Mapping[str, Sequence[int]],
) -> Any:
    """Kernel: ``permno, date, y, yhat_<entry>…`` for the rows of one test year."""
    X = matrix(frame, feature_cols)
    xp = array_namespace(X)
    out = frame[["permno", "date"]].reset_index(drop=True)
    columns_out = {"y": column_array(frame[target], "float64")}
    all_cols = list(range(X.shape[1]))
    for key, fit in fits.items():
        if fit.predicts_by_key:
            # Sequence models forecast from stock histories they kept at fit time: by (permno, day).
            yhat = fit.predict_frame(frame) if X.shape[0] else np.zeros(0)
            columns_out[f"yhat_{key}"] = xp.astype(xp.asarray(yhat), xp.float64)
            continue
        cols = [int(c) for c in columns[key]]
        # The entry's columns are taken once, and not at all when it uses them all.
        Xm = X if cols == all_cols else xp.take(X, xp.asarray(cols), axis=1)
        yhat = fit.predict_array(Xm) if X.shape[0] else xp.zeros(0, dtype=xp.float64)
        columns_out[f"yhat_{key}"] = xp.astype(xp.asarray(yhat), xp.float64)
    # NaN predictions stay NaN on cuDF too (frame_from_arrays keeps NaN, not null).
    return concat_columns([out, frame_from_arrays(out, columns_out)])


LOSSES = ("sse", "sae", "sql", "sape")
"""The per-day loss sums of the prediction pass: squared, absolute, QLIKE and absolute
percentage error (:func:`~wsb_gpu.models.metrics.loss_terms`)."""
_TERM = {"sse": "se", "sae": "ae", "sql": "ql", "sape": "ape"}


def daily_partition(frame: Frame, *, keys: Sequence[str], floor: float) -> Frame:
    """Kernel: per date, the count, mean and centred sum of squares of ``y``, the count of
    ``y > 0`` and each entry's loss sums (:data:`LOSSES`)."""
    y = column_array(frame["y"], "float64")
    xp = array_namespace(y)
    cols: dict[str, Any] = {"y": y, "n_pos": xp.astype(y > 0, xp.float64)}
    for k in keys:
        terms = loss_terms(y, column_array(frame[f"yhat_{k}"], "float64"), floor)
        for loss in LOSSES:
            cols[f"{loss}_{k}"] = terms[_TERM[loss]]
    dates = frame[["date"]].reset_index(drop=True)
    names = list(cols)  # one block: with a hundred loss columns, one per column would fragment
    work = concat_columns([dates, frame_from_matrix(dates, xp.stack([cols[c] for c in names], axis=1), names)])
    g = work.groupby("date")
    out = g.sum().rename(columns={"y": "y_sum"})
    out["n"] = g.size()
    out["y_m2"] = g["y"].var(ddof=0) * out["n"]
    return out.reset_index()


def combine_daily(daily: Frame, keys: Sequence[str]) -> pd.DataFrame:
    """Merge per-partition daily rows into one row per date (stable combination)."""
    d = to_pandas(daily).copy()
    d["y_mean"] = d["y_sum"] / d["n"]
    g = d.groupby("date", sort=True)
    out = g[["n", "n_pos", "y_sum", *[f"{loss}_{k}" for k in keys for loss in LOSSES]]].sum()
    out["y_mean"] = out["y_sum"] / out["n"]
    d = d.join(out["y_mean"].rename("day_mean"), on="date")
    d["y_m2"] = d["y_m2"].fillna(0.0) + d["n"] * (d["y_mean"] - d["day_mean"]) ** 2
    out["y_m2"] = d.groupby("date", sort=True)["y_m2"].sum()
    out = out.reset_index()
    out["year"] = pd.to_datetime(out["date"].astype("datetime64[s]")).dt.year.astype("int64")
    return out


def pred_meta(meta: Frame, keys: Sequence[str]) -> Frame:
    out = meta[["permno", "date"]].iloc[:0].reset_index(drop=True)
    cols = ["y", *[f"yhat_{k}" for k in keys]]
    # One block: column-by-column insertion fragments a frame of hundreds of columns.
    return concat_columns([out, frame_from_arrays(out, {c: np.zeros(0, dtype="float64") for c in cols})])


def daily_meta(meta: Frame, keys: Sequence[str]) -> Frame:
    out = meta[["date"]].iloc[:0].reset_index(drop=True)
    cols: dict[str, Any] = {"y_sum": np.zeros(0), "n_pos": np.zeros(0)}
    cols |= {f"{loss}_{k}": np.zeros(0) for k in keys for loss in LOSSES}
    cols |= {"n": np.zeros(0, dtype="int64"), "y_m2": np.zeros(0)}
    return concat_columns([out, frame_from_arrays(out, cols)])
