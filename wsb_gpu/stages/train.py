"""Rolling-year training and evaluation: HAR, ridge on HAR + text, XGBoost.

For every test year ``Y`` each model is fitted on the rows dated in ``Y - train_years …
Y - 1`` and evaluated on year ``Y`` (see :class:`~wsb_gpu.models.splits.RollingYearSplit`).
All models of a run use the same rows: the sample is built once (rows with a missing
target or HAR regressor dropped) and every model is scored on it.

Passes over the data
--------------------
1. Statistics: per-month :class:`~wsb_gpu.models.ridge.Moments` of the features and the
   target, computed on the workers and tree-reduced. With the ``stats`` engine every HAR
   and ridge window, fold and lambda is solved from them, and the test metrics follow
   exactly. With the ``estimator`` engine only the HAR block is summarised (counts and
   training means), and each window is collected and fitted with the estimator.
2. XGBoost: one fit per window (``xgboost.dask`` on a multi-worker cluster).
3. Predictions: one ``map_partitions`` over the test years applies every model, writes
   ``predictions/`` and returns per-day error sums (the Diebold–Mariano input).

Outputs in ``out``: ``metrics.csv``, ``metrics.json``, ``coefficients.csv``,
``predictions/`` and ``_manifest.json``. See docs/models.md.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

from wsb_gpu.backend import (
    Backend,
    array_namespace,
    column_array,
    concat_columns,
    frame_from_arrays,
    matrix,
    to_pandas,
)
from wsb_gpu.config import TrainParams
from wsb_gpu.errors import WsbError
from wsb_gpu.lake import read_manifest
from wsb_gpu.models import MODELS, ordered
from wsb_gpu.models.base import Model, Sample, Window, in_years
from wsb_gpu.models.har import HAR_COLUMNS
from wsb_gpu.models.metrics import diebold_mariano
from wsb_gpu.models.moments import Moments, collect_moments
from wsb_gpu.models.ridge import lambda_grid
from wsb_gpu.models.splits import RollingYearSplit, month_period, period_year
from wsb_gpu.progress import compute, log
from wsb_gpu.stages.base import StageResult
from wsb_gpu.stages.features import text_columns

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Frame

COUNT_FEATURES = ("log_posts", "log_mentions")
METRIC_COLUMNS = ["model", "test_year", "n_train", "n_test", "mse", "r2", "r2_oos", "lambda", "dm_stat", "dm_pvalue"]
DM_LAG_RULE = "floor(4 * (T / 100) ** (2 / 9)) (Newey and West, 1994), Bartlett kernel"
DM_PVALUE = (
    "one-sided, standard normal: H1 = the model's loss is below HAR's (p = Phi(dm_stat)); "
    "the two-sided p-value is dm_pvalue_two_sided in metrics.json"
)


# --- the sample ------------------------------------------------------------------------


def prepare_partition(frame: Frame, *, target: str, text_cols: Sequence[str], sample: str | None) -> Frame:
    """Kernel: derived features, missing-value rule, ``year`` and ``period`` columns.

    ``sample`` is None for the volatility-only panel; ``"all"`` fills stock-days without
    posts with zero text features and adds ``has_posts``. Rows whose target or any HAR
    regressor is missing are dropped.
    """
    frame = frame.dropna(subset=[target, *HAR_COLUMNS])
    new: dict[str, Any] = {}
    if sample is not None:
        n_posts = frame["n_posts"].fillna(0).astype("float64")
        n_mentions = frame["n_mentions"].fillna(0).astype("float64")
        if sample == "posts":
            keep = (n_posts > 0).values
            frame, n_posts, n_mentions = frame[keep], n_posts[keep], n_mentions[keep]
        if text_cols:
            # One block operation: per-column assignment fragments a frame of ~800 columns.
            filled = frame[list(text_cols)].fillna(0.0)
            frame = concat_columns([frame.drop(columns=list(text_cols)), filled])
        new["log_posts"] = np.log1p(n_posts)
        new["log_mentions"] = np.log1p(n_mentions)
        if sample == "all":
            new["has_posts"] = (n_posts > 0).astype("float64")
    year = frame["date"].dt.year.astype("int64")
    new["year"] = year
    new["period"] = month_period(year, frame["date"].dt.month.astype("int64"))
    return frame.assign(**new)


def _read(path: Path, backend: Backend) -> dd.DataFrame:
    return backend.read_parquet(path)


def load_sample(
    *, features: Path | None, volatility: Path | None, sample: str, target: str, backend: Backend
) -> Sample:
    """Build the run's sample from the features (or volatility-only) dataset."""
    if features is None and volatility is None:
        msg = "train needs --features DIR (text) or --volatility DIR (HAR only); pass one of them"
        raise WsbError(msg)
    if features is None:
        v = _read(volatility, backend)
        v = v[["permno", "date", *HAR_COLUMNS, target]]
        ddf = v.map_partitions(prepare_partition, target=target, text_cols=[], sample=None)
        return Sample(ddf, target, list(HAR_COLUMNS), list(HAR_COLUMNS), "volatility", "panel")

    f = _read(features, backend)
    tcols = text_columns(list(f.columns))
    if sample == "all":
        if volatility is None:
            volatility = ((read_manifest(features) or {}).get("inputs", {}).get("volatility", {}) or {}).get("path")
        if volatility is None:
            msg = (
                f"--sample all needs the volatility dataset to add the stock-days without posts; "
                f"features '{features}' does not record it, so pass --volatility DIR"
            )
            raise WsbError(msg)
        v = _read(volatility, backend)
        text = f[["permno", "date", "n_posts", "n_mentions", *tcols]]
        base = v[["permno", "date", *HAR_COLUMNS, target]]
        joined = base.merge(text, on=["permno", "date"], how="left")
        extra = ["has_posts"]
    else:
        joined = f[["permno", "date", "n_posts", "n_mentions", *tcols, *HAR_COLUMNS, target]]
        extra = []
    ddf = joined.map_partitions(prepare_partition, target=target, text_cols=tcols, sample=sample)
    cols = [*HAR_COLUMNS, *tcols, *COUNT_FEATURES, *extra]
    return Sample(ddf, target, list(HAR_COLUMNS), cols, "features", sample)


# --- prediction pass -------------------------------------------------------------------


def predict_partition(
    frame: Frame,
    *,
    feature_cols: Sequence[str],
    target: str,
    models: Sequence[str],
    fits: Mapping[str, Mapping[int, Model]],
    columns: Mapping[str, Sequence[int]],
) -> Any:
    """Kernel: ``permno, date, y, yhat_<model>…`` for the rows of the fitted test years."""
    X = matrix(frame, feature_cols)
    xp = array_namespace(X)
    years = column_array(frame["year"], "int64")
    out = frame[["permno", "date"]].reset_index(drop=True)
    columns_out = {"y": column_array(frame[target], "float64")}
    for model in models:
        yhat = xp.full(X.shape[0], np.nan, dtype=xp.float64)
        cols = [int(c) for c in columns[model]]
        # The model's columns are taken once (not per year), and not at all when it uses them all.
        Xm = X if cols == list(range(X.shape[1])) else xp.take(X, xp.asarray(cols), axis=1)
        for year, fit in fits[model].items():
            rows = years == year
            if bool(xp.any(rows)):
                yhat[rows] = fit.predict_array(Xm[rows])
        columns_out[f"yhat_{model}"] = yhat
    # NaN predictions stay NaN on cuDF too (frame_from_arrays keeps NaN, not null).
    return concat_columns([out, frame_from_arrays(out, columns_out)])


def daily_partition(frame: Frame, *, models: Sequence[str]) -> Frame:
    """Kernel: per date, the count, mean and centred sum of squares of ``y`` and each SSE."""
    work = frame[["date", "y"]].copy()
    for m in models:
        e = frame["y"] - frame[f"yhat_{m}"]
        work[f"sse_{m}"] = (e * e).values
    g = work.groupby("date")
    out = g.sum().rename(columns={"y": "y_sum"})
    out["n"] = g.size()
    out["y_m2"] = g["y"].var(ddof=0) * out["n"]
    return out.reset_index()


def combine_daily(daily: Frame, models: Sequence[str]) -> pd.DataFrame:
    """Merge per-partition daily rows into one row per date (stable combination)."""
    d = to_pandas(daily).copy()
    d["y_mean"] = d["y_sum"] / d["n"]
    g = d.groupby("date", sort=True)
    out = g[["n", "y_sum", *[f"sse_{m}" for m in models]]].sum()
    out["y_mean"] = out["y_sum"] / out["n"]
    d = d.join(out["y_mean"].rename("day_mean"), on="date")
    d["y_m2"] = d["y_m2"].fillna(0.0) + d["n"] * (d["y_mean"] - d["day_mean"]) ** 2
    out["y_m2"] = d.groupby("date", sort=True)["y_m2"].sum()
    out = out.reset_index()
    out["year"] = pd.to_datetime(out["date"].astype("datetime64[s]")).dt.year.astype("int64")
    return out


def _group_sst(n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> tuple[int, float, float]:
    """Total count, mean and centred sum of squares of several groups."""
    N = float(n.sum())
    mu = float((n * mean).sum() / N)
    return int(N), mu, float(m2.sum() + (n * (mean - mu) ** 2).sum())


def _pred_meta(meta: Frame, models: Sequence[str]) -> Frame:
    out = meta[["permno", "date"]].iloc[:0].reset_index(drop=True)
    out["y"] = np.zeros(0, dtype="float64")
    for m in models:
        out[f"yhat_{m}"] = np.zeros(0, dtype="float64")
    return out


def _daily_meta(meta: Frame, models: Sequence[str]) -> Frame:
    out = meta[["date"]].iloc[:0].reset_index(drop=True)
    out["y_sum"] = np.zeros(0, dtype="float64")
    for m in models:
        out[f"sse_{m}"] = np.zeros(0, dtype="float64")
    out["n"] = np.zeros(0, dtype="int64")
    out["y_m2"] = np.zeros(0, dtype="float64")
    return out


# --- the training loop -----------------------------------------------------------------


def model_names(models: Sequence[str]) -> list[str]:
    """The models to fit, in the registry's order; HAR, the benchmark of the Diebold–Mariano
    test, always first.

    >>> model_names(["xgboost", "ridge"])
    ['har', 'ridge', 'xgboost']
    """
    return ordered(["har", *[m for m in models if m != "har"]])


def plan_windows(
    sample: Sample,
    stats: Mapping[int, Moments],
    stat_columns: list[str],
    params: TrainParams,
    *,
    backend: Backend,
    client: Client | None,
) -> list[Window]:
    """The rolling windows that have both training and test rows."""
    years_present = sorted({int(period_year(p)) for p in stats})
    windows = []
    for test_year, train_years in RollingYearSplit(params.train_years).windows(years_present):
        train, test = in_years(stats, train_years), in_years(stats, [test_year])
        if train and test:
            windows.append(
                Window(
                    test_year,
                    tuple(train_years),
                    sample,
                    train,
                    test,
                    stat_columns,
                    params.ridge.engine,
                    backend,
                    client,
                )
            )
    if not windows:
        msg = (
            f"the sample covers the years {years_present[0]}–{years_present[-1]}: too few for "
            f"--train-years {params.train_years} plus one test year; lower --train-years or add data"
        )
        raise WsbError(msg)
    return windows


def run(
    inputs: Mapping[str, Path | None],
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: TrainParams,
    progress: bool = False,
) -> StageResult:
    """Fit and evaluate every model in every rolling window; write the results folder.

    Parameters
    ----------
    inputs
        ``features`` (text models) and/or ``volatility`` (HAR on the whole panel when given
        alone; the stock-days without posts for ``sample="all"``).
    out
        The results folder.
    backend
        CPU or GPU; decides the frames, the ridge estimator and the XGBoost device.
    params
        ``models`` (HAR is always included: it is the DM benchmark), ``target``,
        ``train_years``, ``sample`` and the ``ridge`` and ``xgboost`` sections.
    """
    models = model_names(params.models) if inputs.get("features") is not None else ["har"]
    if inputs.get("features") is None and params.models != ("har",):
        log("train: no --features, so no text: fitting HAR on the volatility panel only")
    target, engine = params.target, params.ridge.engine
    S = load_sample(
        features=inputs.get("features"),
        volatility=inputs.get("volatility"),
        sample=params.sample,
        target=target,
        backend=backend,
    )
    timings: dict[str, float] = {}

    # Pass 1: per-month statistics (all features for the stats engine, else the HAR block).
    stat_cols = S.feature_columns if engine == "stats" else S.har_columns
    t = time.perf_counter()
    stats = collect_moments(S.ddf, stat_cols, target, progress=progress, label="train: statistics")
    timings["statistics"] = time.perf_counter() - t
    if not stats:
        msg = "the sample is empty after dropping rows with a missing target or HAR regressor; check the inputs"
        raise WsbError(msg)
    windows = plan_windows(S, stats, stat_cols, params, backend=backend, client=client)

    # Pass 2: every model in every window.
    t = time.perf_counter()
    fitted: dict[str, dict[int, Model]] = {name: {} for name in models}
    for window in windows:
        for name in models:
            fitted[name][window.test_year] = MODELS[name](params).fit(window)
    timings["fit"] = time.perf_counter() - t

    # Pass 3: predictions of every model, written, plus per-day error sums.
    test_years = [w.test_year for w in windows]
    t = time.perf_counter()
    feats = S.feature_columns
    columns = {
        name: [feats.index(c) for c in next(iter(by_year.values())).columns_] for name, by_year in fitted.items()
    }
    preds = S.ddf[S.ddf["year"].isin(test_years)].map_partitions(
        predict_partition,
        feature_cols=feats,
        target=target,
        models=models,
        fits=fitted,
        columns=columns,
        meta=_pred_meta(S.ddf._meta, models),
    )
    write = backend.to_parquet(preds, out / "predictions")
    daily_parts = preds.map_partitions(daily_partition, models=models, meta=_daily_meta(S.ddf._meta, models))
    _, daily_raw = compute(write, daily_parts, label="train: predictions", show=progress)
    timings["predict"] = time.perf_counter() - t
    daily = combine_daily(daily_raw, models)

    rows, coefs = evaluate(windows, fitted, daily, S)
    pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(out / "metrics.csv", index=False)
    pd.DataFrame(coefs, columns=list(coefs[0]) if coefs else ["model", "test_year"]).to_csv(
        out / "coefficients.csv", index=False
    )
    report = {
        "target": target,
        "sample": S.sample,
        "source": S.source,
        "engine": engine,
        "train_years": int(params.train_years),
        "models": models,
        "lambdas": lambda_grid(params.ridge.n_lambdas, params.ridge.lambda_min, params.ridge.lambda_max).tolist(),
        "cv_folds": int(params.ridge.cv_folds),
        "features": feats,
        "dm": {
            "benchmark": "har",
            "loss": "squared error, averaged across stocks per trading day",
            "lag_rule": DM_LAG_RULE,
            "pvalue": DM_PVALUE,
        },
        "metrics": _jsonable(rows),
        "cv": {str(y): m.info() for y, m in fitted.get("ridge", {}).items()},
        "xgboost": {str(y): m.info() for y, m in fitted.get("xgboost", {}).items()},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    (out / "models.json").write_text(json.dumps(fits_json(fitted, S), allow_nan=True) + "\n")
    return StageResult(
        rows_in=sum(int(m.n) for m in stats.values()),
        rows_out=int(daily["n"].sum()),
        fields={
            "models": models,
            "test_years": test_years,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "outputs": ["metrics.csv", "metrics.json", "coefficients.csv", "models.json", "predictions/"],
        },
    )


# --- evaluation -------------------------------------------------------------------------


def evaluate(
    windows: Sequence[Window], fitted: Mapping[str, Mapping[int, Model]], daily: pd.DataFrame, sample: Sample
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Metric rows (per model × test year, then pooled) and the HAR-term coefficient rows.

    The squared error of a model in a year is exact from the moments where the model can
    tell it (:meth:`Model.test_sse`), else summed from the prediction pass's daily rows,
    which also give the Diebold–Mariano loss differentials against HAR.
    """
    models = list(fitted)
    har_cols = sample.har_columns
    rows, coefs = [], []
    day_d: dict[str, list[np.ndarray]] = {m: [] for m in models}
    pooled = {m: {"sse": 0.0, "sst": 0.0, "sst_oos": 0.0, "n": 0, "n_train": 0} for m in models}
    for window in windows:
        year = window.test_year
        train_m = window.moments(har_cols)
        d = daily[daily["year"] == year]
        if len(d) == 0:
            continue
        n_test, mean_test, sst = _group_sst(d["n"].to_numpy(float), d["y_mean"].to_numpy(), d["y_m2"].to_numpy())
        sst_oos = sst + n_test * (mean_test - train_m.y_mean) ** 2
        for name in models:
            model = fitted[name][year]
            exact = model.test_sse(window)
            sse, n = exact if exact is not None else (float(d[f"sse_{name}"].sum()), n_test)
            dm_stat = dm_p = dm_p2 = float("nan")
            dm_lag = None
            if name != "har":
                series = ((d[f"sse_{name}"] - d["sse_har"]) / d["n"]).to_numpy()
                dm_stat, dm_p, dm_lag = diebold_mariano(series, alternative="less")
                dm_p2 = diebold_mariano(series)[1]
                day_d[name].append(series)
            lam = model.lam
            rows.append(
                {
                    "model": name,
                    "test_year": str(year),
                    "n_train": int(train_m.n),
                    "n_test": int(n),
                    "mse": sse / n,
                    "r2": 1.0 - sse / sst,
                    "r2_oos": 1.0 - sse / sst_oos,
                    "lambda": lam,
                    "dm_stat": dm_stat,
                    "dm_pvalue": dm_p,
                    "dm_pvalue_two_sided": dm_p2,
                    "dm_lag": dm_lag,
                    "n_days": int(len(d)),
                }
            )
            acc = pooled[name]
            acc["sse"] += sse
            acc["sst"] += sst
            acc["sst_oos"] += sst_oos
            acc["n"] += n
            acc["n_train"] += train_m.n
            fit = model.linear
            if fit is not None:
                har_coef = fit.coef[[model.columns_.index(c) for c in har_cols]] if name != "har" else fit.coef
                coefs.append(
                    {
                        "model": name,
                        "test_year": year,
                        "lambda": lam,
                        "intercept": fit.intercept,
                        **{c: float(v) for c, v in zip(har_cols, har_coef)},
                    }
                )
    for name in models:
        acc = pooled[name]
        if acc["n"] == 0:
            continue
        dm_stat = dm_p = dm_p2 = float("nan")
        dm_lag = None
        n_days = sum(len(s) for s in day_d[name]) if name != "har" else None
        if name != "har" and day_d[name]:
            series = np.concatenate(day_d[name])
            dm_stat, dm_p, dm_lag = diebold_mariano(series, alternative="less")
            dm_p2 = diebold_mariano(series)[1]
        rows.append(
            {
                "model": name,
                "test_year": "all",
                "n_train": int(acc["n_train"]),
                "n_test": int(acc["n"]),
                "mse": acc["sse"] / acc["n"],
                "r2": 1.0 - acc["sse"] / acc["sst"],
                "r2_oos": 1.0 - acc["sse"] / acc["sst_oos"],
                "lambda": float("nan"),
                "dm_stat": dm_stat,
                "dm_pvalue": dm_p,
                "dm_pvalue_two_sided": dm_p2,
                "dm_lag": dm_lag,
                "n_days": n_days,
            }
        )
    return rows, coefs


def fits_json(fitted: Mapping[str, Mapping[int, Model]], sample: Sample) -> dict[str, Any]:
    """Every linear model's fitted state per test year: λ, intercept, coefficients and scaler."""
    out: dict[str, Any] = {}
    for name, by_year in fitted.items():
        for year, model in by_year.items():
            fit = model.linear
            if fit is not None:
                out.setdefault(name, {})[str(year)] = {
                    "lambda": float(fit.lam),
                    "intercept": float(fit.intercept),
                    "columns": list(model.columns_),
                    "coef": np.asarray(fit.coef).tolist(),
                    "mean": np.asarray(fit.mean).tolist(),
                    "scale": np.asarray(fit.scale).tolist(),
                }
    return out


def _jsonable(rows: list[dict]) -> list[dict]:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v.item() if hasattr(v, "item") else v

    return [{k: clean(v) for k, v in r.items()} for r in rows]
