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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsb_gpu.backend import Backend, frame_module, to_numpy, to_pandas
from wsb_gpu.errors import WsbError
from wsb_gpu.lake import atomic_dataset, file_fingerprint, parquet_schema, read_manifest, write_manifest
from wsb_gpu.models.har import HAR, HAR_COLUMNS
from wsb_gpu.models.metrics import diebold_mariano
from wsb_gpu.models.ridge import (
    LinearFit,
    Moments,
    array_module,
    collect_moments,
    frame_matrix,
    lambda_grid,
    moments_sse,
    ridge_cv_from_moments,
    ridge_cv_from_rows,
    sum_moments,
)
from wsb_gpu.models.splits import BlockedTimeFolds, RollingYearSplit, month_period, period_year
from wsb_gpu.stages.features import text_columns

MODELS = ("har", "ridge", "xgboost")
COUNT_FEATURES = ("log_posts", "log_mentions")
METRIC_COLUMNS = ["model", "test_year", "n_train", "n_test", "mse", "r2", "r2_oos", "lambda", "dm_stat", "dm_pvalue"]
DM_LAG_RULE = "floor(4 * (T / 100) ** (2 / 9)) (Newey and West, 1994), Bartlett kernel"
DM_PVALUE = ("one-sided, standard normal: H1 = the model's loss is below HAR's (p = Phi(dm_stat)); "
             "the two-sided p-value is dm_pvalue_two_sided in metrics.json")


@dataclass
class Sample:
    """The rows every model of a run is fitted and scored on (a lazy Dask frame)."""

    ddf: Any
    target: str
    har_columns: list[str]
    feature_columns: list[str]
    source: str
    sample: str
    inputs: dict[str, Any] = field(default_factory=dict)


# --- the sample ------------------------------------------------------------------------


def prepare_partition(frame: Any, *, target: str, text_cols: Sequence[str], sample: str | None) -> Any:
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
            frame = frame_module(frame).concat([frame.drop(columns=list(text_cols)), filled], axis=1)
        new["log_posts"] = np.log1p(n_posts)
        new["log_mentions"] = np.log1p(n_mentions)
        if sample == "all":
            new["has_posts"] = (n_posts > 0).astype("float64")
    year = frame["date"].dt.year.astype("int64")
    new["year"] = year
    new["period"] = month_period(year, frame["date"].dt.month.astype("int64"))
    return frame.assign(**new)


def _read(path: Any, backend: Backend, what: str) -> Any:
    import dask.dataframe as dd

    if path is None or not Path(path).exists():
        msg = f"{what} dataset '{path}' does not exist; run `wsb-gpu {what}` first or fix the path"
        raise WsbError(msg)
    ddf = dd.read_parquet(str(path))
    return ddf.to_backend(backend.dask_backend) if backend.is_gpu else ddf


def load_sample(*, features: Any, volatility: Any, sample: str, target: str, backend: Backend) -> Sample:
    """Build the run's sample from the features (or volatility-only) dataset."""
    if features is None and volatility is None:
        msg = "train needs --features DIR (text) or --volatility DIR (HAR only); pass one of them"
        raise WsbError(msg)
    inputs: dict[str, Any] = {}
    if features is None:
        v = _read(volatility, backend, "volatility")
        _require(v, [*HAR_COLUMNS, target, "permno", "date"], "volatility", volatility)
        v = v[["permno", "date", *HAR_COLUMNS, target]]
        ddf = v.map_partitions(prepare_partition, target=target, text_cols=[], sample=None)
        inputs["volatility"] = file_fingerprint(volatility)
        return Sample(ddf, target, list(HAR_COLUMNS), list(HAR_COLUMNS), "volatility", "panel", inputs)

    f = _read(features, backend, "features")
    _require(f, ["permno", "date", "n_posts", "n_mentions", *HAR_COLUMNS, target], "features", features)
    tcols = text_columns(list(f.columns))
    inputs["features"] = file_fingerprint(features)
    if sample == "all":
        if volatility is None:
            volatility = ((read_manifest(features) or {}).get("inputs", {}).get("volatility", {}) or {}).get("path")
        if volatility is None:
            msg = (f"--sample all needs the volatility dataset to add the stock-days without posts; "
                   f"features '{features}' does not record it, so pass --volatility DIR")
            raise WsbError(msg)
        v = _read(volatility, backend, "volatility")
        _require(v, ["permno", "date", *HAR_COLUMNS, target], "volatility", volatility)
        inputs["volatility"] = file_fingerprint(volatility)
        text = f[["permno", "date", "n_posts", "n_mentions", *tcols]]
        base = v[["permno", "date", *HAR_COLUMNS, target]]
        joined = base.merge(text, on=["permno", "date"], how="left")
        extra = ["has_posts"]
    elif sample == "posts":
        joined = f[["permno", "date", "n_posts", "n_mentions", *tcols, *HAR_COLUMNS, target]]
        extra = []
    else:
        msg = f"unknown sample {sample!r}; choose posts or all"
        raise WsbError(msg)
    ddf = joined.map_partitions(prepare_partition, target=target, text_cols=tcols, sample=sample)
    cols = [*HAR_COLUMNS, *tcols, *COUNT_FEATURES, *extra]
    return Sample(ddf, target, list(HAR_COLUMNS), cols, "features", sample, inputs)


def _require(ddf: Any, cols: Sequence[str], what: str, path: Any) -> None:
    missing = [c for c in cols if c not in ddf.columns]
    if missing:
        msg = (f"{what} dataset '{path}' lacks column(s) {', '.join(missing)}; "
               f"pass the folder written by `wsb-gpu {what}` (and a --target it contains)")
        raise WsbError(msg)


# --- prediction pass -------------------------------------------------------------------


def predict_partition(frame: Any, *, feature_cols: Sequence[str], target: str, models: Sequence[str],
                      fits: Mapping[str, Mapping[int, Any]], columns: Mapping[str, Sequence[int]]) -> Any:
    """Kernel: ``permno, date, y, yhat_<model>…`` for the rows of the fitted test years."""
    X = frame_matrix(frame, feature_cols)
    xp = array_module(X)
    years = xp.asarray(frame["year"].values)
    out = frame[["permno", "date"]].reset_index(drop=True)
    out["y"] = frame[target].astype("float64").values
    for model in models:
        yhat = xp.full(len(frame), np.nan)
        cols = [int(c) for c in columns[model]]
        # The model's columns are taken once (not per year), and not at all when it uses them all.
        Xm = X if cols == list(range(X.shape[1])) else X[:, xp.asarray(np.asarray(cols))]
        for year, fit in fits[model].items():
            rows = years == year
            if bool(rows.any()):
                yhat[rows] = fit.predict_array(Xm[rows])
        out[f"yhat_{model}"] = yhat
    return out


def daily_partition(frame: Any, *, models: Sequence[str]) -> Any:
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


def combine_daily(daily: Any, models: Sequence[str]) -> Any:
    """Merge per-partition daily rows into one row per date (stable combination)."""
    import pandas as pd

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


# --- the training loop -----------------------------------------------------------------


def _models(models: Sequence[str] | str) -> list[str]:
    asked = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    bad = [m for m in asked if m not in MODELS]
    if bad:
        msg = f"unknown model(s) {', '.join(bad)}; choose from {', '.join(MODELS)} (comma-separated)"
        raise WsbError(msg)
    # HAR is the benchmark of the Diebold–Mariano test: always fitted, always first.
    return ["har", *[m for m in MODELS[1:] if m in asked]]


def train(out: Any, *, features: Any = None, volatility: Any = None, backend: Backend, client: Any = None,
          models: Sequence[str] | str, target: str, train_years: int, sample: str, ridge: Mapping[str, Any],
          xgboost: Mapping[str, Any], progress: bool = False) -> dict:
    """Fit and evaluate every model in every rolling window; write the results folder.

    Parameters
    ----------
    out
        Results folder (written atomically).
    features, volatility
        The features dataset (text models) and/or the volatility dataset (HAR on the whole
        panel when given alone; the stock-days without posts for ``sample="all"``).
    backend
        CPU or GPU; decides the frames, the ridge estimator and the XGBoost device.
    client
        Optional distributed client.
    models
        Subset of ``har, ridge, xgboost`` (HAR is always included: it is the DM benchmark).
    target
        ``y_1 | y_5 | y_22 | y_63``.
    train_years
        Years in each training window.
    sample
        ``posts`` (stock-days with posts) or ``all``; ignored without features.
    ridge
        ``engine`` (stats|estimator), ``n_lambdas``, ``lambda_min``, ``lambda_max``, ``cv_folds``.
    xgboost
        ``n_estimators``, ``early_stopping_rounds`` and the booster parameters.
    progress
        Show progress bars.

    Returns
    -------
    The manifest written into ``out``.
    """
    t0 = time.perf_counter()
    models = _models(models)
    engine = ridge.get("engine", "stats")
    if engine not in ("stats", "estimator"):
        msg = f"unknown ridge engine {engine!r}; choose stats or estimator"
        raise WsbError(msg)
    lambdas = lambda_grid(int(ridge["n_lambdas"]), float(ridge["lambda_min"]), float(ridge["lambda_max"]))
    folds = BlockedTimeFolds(int(ridge["cv_folds"]))
    splitter = RollingYearSplit(int(train_years))
    S = load_sample(features=features, volatility=volatility, sample=sample, target=target, backend=backend)
    feats, har_cols = S.feature_columns, S.har_columns
    timings: dict[str, float] = {}

    # Pass 1: per-month statistics (all features for the stats engine, else the HAR block).
    stat_cols = feats if engine == "stats" else har_cols
    t = time.perf_counter()
    stats = collect_moments(S.ddf, stat_cols, target, progress=progress, label="train: statistics")
    timings["statistics"] = time.perf_counter() - t
    if not stats:
        msg = "the sample is empty after dropping rows with a missing target or HAR regressor; check the inputs"
        raise WsbError(msg)
    har_ix = [stat_cols.index(c) for c in har_cols] + [len(stat_cols)]
    har_stats = {p: m.select(har_ix) for p, m in stats.items()}
    years_present = sorted({int(period_year(p)) for p in stats})
    windows = [(y, tr) for y, tr in splitter.windows(years_present)
               if any(period_year(p) == y for p in stats) and any(period_year(p) in tr for p in stats)]
    if not windows:
        msg = (f"the sample covers the years {years_present[0]}–{years_present[-1]}: too few for "
               f"--train-years {train_years} plus one test year; lower --train-years or add data")
        raise WsbError(msg)

    def months(years: Sequence[int], table: Mapping[int, Moments]) -> dict[int, Moments]:
        return {p: m for p, m in table.items() if period_year(p) in years}

    xp = backend.xp if backend.is_gpu else np
    fits: dict[str, dict[int, Any]] = {m: {} for m in models}
    cv_info: dict[str, dict[int, Any]] = {"ridge": {}}
    xgb_info: dict[int, Any] = {}
    stat_metrics: dict[tuple[str, int], tuple[float, float]] = {}  # (model, year) -> (sse, n)
    t = time.perf_counter()
    for test_year, tr_years in windows:
        train_months = months(tr_years, stats)
        blocks = folds.blocks(sorted(train_months)) if "ridge" in models else []
        if engine == "stats":
            har_m = sum_moments(months(tr_years, har_stats)[p] for p in sorted(train_months))
            fits["har"][test_year] = HAR.from_moments(har_m).to_fit()
            n_window = int(har_m.n)
            if "ridge" in models:
                cv = ridge_cv_from_moments(train_months, blocks, lambdas, xp=xp)
                fits["ridge"][test_year] = cv.fit
                cv_info["ridge"][test_year] = cv
            test_m = sum_moments(months([test_year], stats)[p] for p in sorted(months([test_year], stats)))
            for model in ("har", "ridge"):
                if model in fits and test_year in fits[model]:
                    fit = fits[model][test_year]
                    tm = test_m.select(har_ix) if model == "har" else test_m
                    stat_metrics[(model, test_year)] = (float(moments_sse(tm, fit.coef, fit.intercept)[0]), tm.n)
        else:
            cols = feats if "ridge" in models else har_cols
            part = S.ddf[S.ddf["year"].isin(list(tr_years))][[*cols, target, "period"]].compute()
            X = frame_matrix(part, cols)
            y = frame_matrix(part, [target])[:, 0]
            n_window = len(y)
            hx = [cols.index(c) for c in har_cols]
            fits["har"][test_year] = HAR().fit(X[:, hx], y).to_fit()
            if "ridge" in models:
                periods = np.asarray(to_numpy(part["period"].values), dtype=np.int64)
                cv = ridge_cv_from_rows(X, y, periods, folds.blocks(periods), lambdas, backend=backend)
                fits["ridge"][test_year] = cv.fit
                cv_info["ridge"][test_year] = cv
        if "xgboost" in models:
            from wsb_gpu.models.xgb import fit_window

            xfit = fit_window(S.ddf, feats, target, tr_years, backend=backend, client=client, params=xgboost,
                              n_rows=n_window)
            fits["xgboost"][test_year] = xfit
            xgb_info[test_year] = {"n_rounds": xfit.n_rounds}
    timings["fit"] = time.perf_counter() - t

    # Pass 3: predictions of every model, written, plus per-day error sums.
    columns = {"har": [feats.index(c) for c in har_cols], "ridge": list(range(len(feats))),
               "xgboost": list(range(len(feats)))}
    test_years = [y for y, _ in windows]
    t = time.perf_counter()
    with atomic_dataset(out) as tmp:
        preds = S.ddf[S.ddf["year"].isin(test_years)].map_partitions(
            predict_partition, feature_cols=feats, target=target, models=models, fits=fits, columns=columns,
            meta=_pred_meta(S.ddf._meta, models),
        )
        write = preds.to_parquet(str(tmp / "predictions"), write_index=False, compute=False)
        daily_parts = preds.map_partitions(daily_partition, models=models, meta=_daily_meta(S.ddf._meta, models))
        from wsb_gpu.progress import compute

        _, daily_raw = compute(write, daily_parts, label="train: predictions", show=progress)
        timings["predict"] = time.perf_counter() - t
        daily = combine_daily(daily_raw, models)

        rows, coefs = _results(models, windows, fits, har_stats, stat_metrics, daily, engine, cv_info, har_cols, feats)
        metrics = _frame(rows, METRIC_COLUMNS)
        metrics.to_csv(tmp / "metrics.csv", index=False)
        _frame(coefs, list(coefs[0].keys()) if coefs else ["model", "test_year"]).to_csv(
            tmp / "coefficients.csv", index=False)
        report = {
            "target": target, "sample": S.sample, "source": S.source, "engine": engine,
            "train_years": int(train_years), "models": models, "lambdas": lambdas.tolist(),
            "cv_folds": int(ridge["cv_folds"]), "features": feats,
            "dm": {"benchmark": "har", "loss": "squared error, averaged across stocks per trading day",
                   "lag_rule": DM_LAG_RULE, "pvalue": DM_PVALUE},
            "metrics": _jsonable(rows),
            "cv": {str(y): {"lambda": c.fit.lam, "cv_mse": c.cv_mse.tolist(), "fold_mse": c.fold_mse.tolist()}
                   for y, c in cv_info["ridge"].items()},
            "xgboost": {str(y): v for y, v in xgb_info.items()},
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        (tmp / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
        (tmp / "models.json").write_text(json.dumps(_fits_json(fits, feats, har_cols), allow_nan=True) + "\n")
        return write_manifest(
            tmp,
            stage="train",
            inputs=S.inputs,
            params={"models": models, "target": target, "train_years": int(train_years), "sample": S.sample,
                    "ridge": dict(ridge), "xgboost": dict(xgboost)},
            rows_in=int(sum(m.n for m in har_stats.values())),
            rows_out=int(daily["n"].sum()),
            test_years=test_years,
            seconds=round(time.perf_counter() - t0, 3),
            timings_s={k: round(v, 3) for k, v in timings.items()},
            backend=backend.name,
            schema=parquet_schema(tmp / "predictions"),
            outputs=["metrics.csv", "metrics.json", "coefficients.csv", "models.json", "predictions/"],
        )


def _pred_meta(meta: Any, models: Sequence[str]) -> Any:
    xdf = frame_module(meta)
    out = meta[["permno", "date"]].iloc[:0].reset_index(drop=True)
    out["y"] = np.zeros(0, dtype="float64")
    for m in models:
        out[f"yhat_{m}"] = np.zeros(0, dtype="float64")
    return out if xdf is not None else out


def _daily_meta(meta: Any, models: Sequence[str]) -> Any:
    out = meta[["date"]].iloc[:0].reset_index(drop=True)
    out["y_sum"] = np.zeros(0, dtype="float64")
    for m in models:
        out[f"sse_{m}"] = np.zeros(0, dtype="float64")
    out["n"] = np.zeros(0, dtype="int64")
    out["y_m2"] = np.zeros(0, dtype="float64")
    return out


def _results(models, windows, fits, har_stats, stat_metrics, daily, engine, cv_info, har_cols, feats):
    """Metric rows (per model × year and pooled) and coefficient rows."""
    rows, coefs = [], []
    day_d: dict[str, list[tuple[int, np.ndarray]]] = {m: [] for m in models}
    pooled: dict[str, dict[str, float]] = {m: {"sse": 0.0, "sst": 0.0, "sst_oos": 0.0, "n": 0, "n_train": 0}
                                           for m in models}
    for test_year, tr_years in windows:
        train_m = sum_moments(m for p, m in sorted(har_stats.items()) if period_year(p) in tr_years)
        d = daily[daily["year"] == test_year]
        if len(d) == 0:
            continue
        n_test, mean_test, sst = _group_sst(d["n"].to_numpy(float), d["y_mean"].to_numpy(), d["y_m2"].to_numpy())
        sst_oos = sst + n_test * (mean_test - train_m.y_mean) ** 2
        for model in models:
            if (model, test_year) in stat_metrics:
                sse, n = stat_metrics[(model, test_year)]
            else:
                sse, n = float(d[f"sse_{model}"].sum()), n_test
            dm_stat = dm_p = dm_p2 = float("nan")
            dm_lag = None
            if model != "har":
                series = ((d[f"sse_{model}"] - d["sse_har"]) / d["n"]).to_numpy()
                dm_stat, dm_p, dm_lag = diebold_mariano(series, alternative="less")
                dm_p2 = diebold_mariano(series)[1]
                day_d[model].append((test_year, series))
            fit = fits[model][test_year]
            lam = float(fit.lam) if model == "ridge" else float("nan")
            rows.append({"model": model, "test_year": str(test_year), "n_train": int(train_m.n), "n_test": int(n),
                         "mse": sse / n, "r2": 1.0 - sse / sst, "r2_oos": 1.0 - sse / sst_oos, "lambda": lam,
                         "dm_stat": dm_stat, "dm_pvalue": dm_p, "dm_pvalue_two_sided": dm_p2, "dm_lag": dm_lag,
                         "n_days": int(len(d))})
            acc = pooled[model]
            acc["sse"] += sse
            acc["sst"] += sst
            acc["sst_oos"] += sst_oos
            acc["n"] += n
            acc["n_train"] += train_m.n
            if isinstance(fit, LinearFit):
                har_coef = fit.coef[[feats.index(c) for c in har_cols]] if model != "har" else fit.coef
                coefs.append({"model": model, "test_year": test_year, "lambda": lam, "intercept": fit.intercept,
                              **{c: float(v) for c, v in zip(har_cols, har_coef)}})
    for model in models:
        acc = pooled[model]
        if acc["n"] == 0:
            continue
        dm_stat = dm_p = dm_p2 = float("nan")
        dm_lag = None
        n_days = sum(len(s) for _, s in day_d[model]) if model != "har" else None
        if model != "har" and day_d[model]:
            series = np.concatenate([s for _, s in day_d[model]])
            dm_stat, dm_p, dm_lag = diebold_mariano(series, alternative="less")
            dm_p2 = diebold_mariano(series)[1]
        rows.append({"model": model, "test_year": "all", "n_train": int(acc["n_train"]), "n_test": int(acc["n"]),
                     "mse": acc["sse"] / acc["n"], "r2": 1.0 - acc["sse"] / acc["sst"],
                     "r2_oos": 1.0 - acc["sse"] / acc["sst_oos"], "lambda": float("nan"),
                     "dm_stat": dm_stat, "dm_pvalue": dm_p, "dm_pvalue_two_sided": dm_p2, "dm_lag": dm_lag,
                     "n_days": n_days})
    return rows, coefs


def _fits_json(fits: Mapping[str, Mapping[int, Any]], feats: Sequence[str], har_cols: Sequence[str]) -> dict:
    """Every linear model's fitted state per test year: lambda, intercept, coefficients and scaler."""
    out: dict[str, Any] = {}
    for model, by_year in fits.items():
        for year, fit in by_year.items():
            if isinstance(fit, LinearFit):
                cols = list(har_cols) if model == "har" else list(feats)
                out.setdefault(model, {})[str(year)] = {
                    "lambda": float(fit.lam), "intercept": float(fit.intercept), "columns": cols,
                    "coef": np.asarray(fit.coef).tolist(), "mean": np.asarray(fit.mean).tolist(),
                    "scale": np.asarray(fit.scale).tolist(),
                }
    return out


def _frame(rows: list[dict], columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


def _jsonable(rows: list[dict]) -> list[dict]:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v.item() if hasattr(v, "item") else v

    return [{k: clean(v) for k, v in r.items()} for r in rows]
