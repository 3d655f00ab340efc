"""Rolling-year training and evaluation: HAR against every model on every feature set.

For every test year ``Y`` each model is fitted on the rows dated in ``Y - train_years …
Y - 1`` and evaluated on year ``Y`` (see :class:`~wsb_gpu.models.splits.RollingYearSplit`).
All models of a run use the same rows: the sample is built once (rows with a missing
target or HAR regressor dropped) and every model is scored on it.

Ridge, the elastic net and XGBoost are fitted once per **feature set**
(``train.feature_sets``: the HAR terms plus named families of text columns,
:mod:`wsb_gpu.signals.families`), so the run answers which signal helps, not only whether
the text as a whole does; HAR and log-HAR are fitted once, the sequence models on the set
``train.sequence.feature_set`` (else the first set). HAR is the benchmark of every
comparison. With ``train.task: spike`` the stage classifies volatility spikes instead
(:mod:`wsb_gpu.stages.spike`).

Passes over the data
--------------------
1. Statistics: per-month :class:`~wsb_gpu.models.moments.Moments`, computed on the workers
   and tree-reduced: of every column with the ``stats`` engine (every HAR and ridge
   window, fold, λ and feature set is then solved from them, and the test metrics follow
   exactly), of the HAR block otherwise.
2. When a set uses a **fitted family** (topics, lexicon, TF-IDF), each window first fits
   those families on its training years (:mod:`wsb_gpu.signals.fitted`), scores the posts
   of its training and test years, joins the stock-day columns to its rows and computes
   its own statistics: nothing fitted ever sees the test year.
3. XGBoost: one fit per window and set (``xgboost.dask`` on a multi-worker cluster).
4. Predictions: per window, one ``map_partitions`` over the test year applies every
   model, writes ``predictions/test_year=Y/`` and returns per-day error sums (the input of
   the Diebold–Mariano tests and of the Model Confidence Set).

Outputs in ``out``: ``metrics.csv``, ``metrics.json``, ``coefficients.csv``,
``models.json``, ``signals.json``, ``predictions/`` and ``_manifest.json``. See
docs/models.md and docs/signals.md.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    frame_from_matrix,
    matrix,
    to_host,
    to_pandas,
)
from wsb_gpu.config import TrainParams
from wsb_gpu.errors import WsbError
from wsb_gpu.lake import read_manifest
from wsb_gpu.models import MODELS, ordered
from wsb_gpu.models.base import Model, Sample, Window, in_years
from wsb_gpu.models.har import HAR_COLUMNS
from wsb_gpu.models.metrics import diebold_mariano, loss_terms, model_confidence_set
from wsb_gpu.models.moments import Moments, collect_moments, solve_ols, sum_moments
from wsb_gpu.models.ridge import lambda_grid
from wsb_gpu.models.splits import RollingYearSplit, month_period, period_year
from wsb_gpu.progress import compute, log
from wsb_gpu.signals.families import FeatureSet, resolve_feature_sets
from wsb_gpu.signals.fitted import (
    Fitted,
    PostSources,
    families_asked,
    family_columns_frame,
    fit_families,
    output_columns,
    window_info,
)
from wsb_gpu.stages.base import StageResult
from wsb_gpu.stages.features import text_columns
from wsb_gpu.stages.links import day_number

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Frame

COUNT_FEATURES = ("log_posts", "log_mentions")
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
DM_LAG_RULE = "floor(4 * (T / 100) ** (2 / 9)) (Newey and West, 1994), Bartlett kernel"
DM_PVALUE = (
    "one-sided, standard normal: H1 = the model's loss is below HAR's (p = Phi(dm_stat)); "
    "the two-sided p-value is dm_pvalue_two_sided in metrics.json"
)


# --- the sample ------------------------------------------------------------------------


def prepare_partition(frame: Frame, *, target: str, text_cols: Sequence[str], sample: str | None) -> Frame:
    """Kernel: derived features, missing-value rule, ``year``, ``period`` and ``day`` columns.

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
    new["day"] = day_number(frame["date"]).astype("int64")
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
    tcols = text_columns(list(f.columns)) + [c for c in f.columns if c.startswith("vader_")]
    if sample == "all":
        if volatility is None:
            volatility = _recorded_input(features, "volatility")
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


def _recorded_input(features: Path, name: str) -> Path | None:
    """An input of the features stage as its manifest recorded it (None when absent)."""
    entry = ((read_manifest(features) or {}).get("inputs", {}) or {}).get(name) or {}
    path = entry.get("path") if isinstance(entry, Mapping) else None
    return Path(path) if path else None


def post_sources(inputs: Mapping[str, Path | None], features: Path | None) -> PostSources | None:
    """Where the fitted families' per-post inputs are: the stage's inputs, else the datasets
    the features stage read (its manifest); None when the links or signals are missing."""
    if features is None:
        return None
    links = inputs.get("links") or _recorded_input(features, "links")
    signals = inputs.get("signals") or _recorded_input(features, "signals")
    embeddings = inputs.get("embeddings") or _recorded_input(features, "embeddings")
    if not (links and signals and Path(links).exists() and Path(signals).exists()):
        return None
    emb = Path(embeddings) if embeddings and Path(embeddings).exists() else None
    return PostSources(Path(links), Path(signals), emb)


# --- what is fitted: one entry per (model, feature set) ----------------------------------


@dataclass(frozen=True)
class Entry:
    """One forecast of the run: a model on a feature set (HAR: on its own terms)."""

    model: str
    feature_set: FeatureSet | None

    @property
    def set_name(self) -> str:
        return self.feature_set.name if self.feature_set is not None else "har"

    @property
    def key(self) -> str:
        """Its name in the predictions' ``yhat_<key>`` columns: ``har``, ``ridge__text`` …"""
        return self.model if self.feature_set is None else f"{self.model}__{self.feature_set.name}"

    def make(self, params: TrainParams) -> Model:
        return MODELS[self.model](params, self.feature_set)


def model_names(models: Sequence[str]) -> list[str]:
    """The models to fit, in the registry's order; HAR, the benchmark of the Diebold–Mariano
    test, always first.

    >>> model_names(["xgboost", "ridge"])
    ['har', 'ridge', 'xgboost']
    """
    return ordered(["har", *[m for m in models if m != "har"]])


def entries_of(models: Sequence[str], sets: Sequence[FeatureSet], sequence_set: str | None = None) -> list[Entry]:
    """HAR once, the other models without feature sets (log-HAR) once, the sequence models
    on the set named ``sequence_set`` (else on the first set), every other model on every set.

    >>> fs = [FeatureSet("har", (), ()), FeatureSet("vader", ("vader",), ("vader_compound",))]
    >>> [e.key for e in entries_of(["har", "log_har", "ridge"], fs)]
    ['har', 'log_har', 'ridge__har', 'ridge__vader']
    """
    out = [Entry("har", None)]
    for m in models:
        cls = MODELS[m]
        if m == "har":
            continue
        if not cls.uses_feature_sets:
            out.append(Entry(m, None))
        elif getattr(cls, "predicts_by_key", False):
            chosen = [fs for fs in sets if fs.name == sequence_set] or list(sets[:1])
            out += [Entry(m, fs) for fs in chosen]
        else:
            out += [Entry(m, fs) for fs in sets]
    return out


# --- prediction pass -------------------------------------------------------------------


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
        if getattr(fit, "predicts_by_key", False):
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


def _group_sst(n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> tuple[int, float, float]:
    """Total count, mean and centred sum of squares of several groups."""
    N = float(n.sum())
    mu = float((n * mean).sum() / N)
    return int(N), mu, float(m2.sum() + (n * (mean - mu) ** 2).sum())


def _pred_meta(meta: Frame, keys: Sequence[str]) -> Frame:
    out = meta[["permno", "date"]].iloc[:0].reset_index(drop=True)
    cols = ["y", *[f"yhat_{k}" for k in keys]]
    # One block: column-by-column insertion fragments a frame of hundreds of columns.
    return concat_columns([out, frame_from_arrays(out, {c: np.zeros(0, dtype="float64") for c in cols})])


def _daily_meta(meta: Frame, keys: Sequence[str]) -> Frame:
    out = meta[["date"]].iloc[:0].reset_index(drop=True)
    cols: dict[str, Any] = {"y_sum": np.zeros(0), "n_pos": np.zeros(0)}
    cols |= {f"{loss}_{k}": np.zeros(0) for k in keys for loss in LOSSES}
    cols |= {"n": np.zeros(0, dtype="int64"), "y_m2": np.zeros(0)}
    return concat_columns([out, frame_from_arrays(out, cols)])


# --- the windows ------------------------------------------------------------------------


def plan(stats: Mapping[int, Moments], train_years: int) -> list[tuple[int, tuple[int, ...]]]:
    """``(test year, training years)`` of the windows that have training and test rows."""
    years_present = sorted({int(period_year(p)) for p in stats})
    out = []
    for test_year, years in RollingYearSplit(train_years).windows(years_present):
        if in_years(stats, years) and in_years(stats, [test_year]):
            out.append((int(test_year), tuple(int(y) for y in years)))
    if not out:
        msg = (
            f"the sample covers the years {years_present[0]}–{years_present[-1]}: too few for "
            f"--train-years {train_years} plus one test year; lower --train-years or add data"
        )
        raise WsbError(msg)
    return out


@dataclass
class WindowRun:
    """One window's fits and its test year's daily error sums."""

    window: Window
    fits: dict[str, Model]
    daily: pd.DataFrame
    fitted: Fitted | None


@dataclass
class WindowFrame:
    """A window's rows with its fitted family columns (None without fitted families: the
    run's sample then serves), the columns of its design matrix and the family fits."""

    frame: dd.DataFrame | None
    columns: list[str]
    fitted: Fitted | None
    scratch: Path | None

    def close(self) -> None:
        """Remove the window's scratch rows."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def window_frame(
    test_year: int,
    train_years: tuple[int, ...],
    S: Sample,
    stats: Mapping[int, Moments],
    stats_columns: Sequence[str],
    *,
    params: TrainParams,
    out: Path,
    backend: Backend,
    fams: Sequence[str],
    sources: PostSources | None,
    posts: dd.DataFrame | None,
    progress: bool,
    timings: dict[str, float],
) -> WindowFrame:
    """Fit the window's families on its training years and join their stock-day columns to
    its rows (training and test years), written once to a scratch folder and read back."""
    if not fams:
        return WindowFrame(None, list(S.feature_columns), None, None)
    target = S.target
    years = [*train_years, test_year]
    t = time.perf_counter()
    # The window's HAR fit from the statistics (for the lexicon's har_residual label).
    idx = [stats_columns.index(c) for c in HAR_COLUMNS] + [len(stats_columns)]
    har = solve_ols(sum_moments(stats[p].select(idx) for p in sorted(in_years(stats, train_years))))
    train_rows = S.ddf[S.ddf["year"].isin(list(train_years))]
    labels = to_host(train_rows[["permno", "day", target, *HAR_COLUMNS]])
    fitted = fit_families(
        fams,
        posts,
        sources,
        labels,
        train_years,
        params=params,
        target=target,
        har=har,
        backend=backend,
        progress=progress,
    )
    timings["families_fit"] = timings.get("families_fit", 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    fam_cols = output_columns(params, fams)
    cols = family_columns_frame(fitted, posts, sources, years, max_topics=params.topics.max_topics)
    rows = S.ddf[S.ddf["year"].isin(years)]
    frame = rows.merge(backend.from_host(cols), on=["permno", "day"], how="left")
    frame = frame.assign(**{c: frame[c].fillna(0.0) for c in fam_cols})
    # The window's rows with its family columns are computed once and written, then read
    # by every pass of the window (statistics, XGBoost's rows, predictions) and removed.
    # (Persisting them in cluster memory instead hits dask/dask#11160 with dask 2026.8.)
    scratch = out / f"_window-{test_year}"
    compute(backend.to_parquet(frame, scratch), label=f"train {test_year}: score posts", show=progress)
    frame = backend.read_parquet(scratch)
    timings["families_columns"] = timings.get("families_columns", 0.0) + time.perf_counter() - t
    return WindowFrame(frame, [*S.feature_columns, *fam_cols], fitted, scratch)


def run_window(
    test_year: int,
    train_years: tuple[int, ...],
    S: Sample,
    entries: Sequence[Entry],
    stats: Mapping[int, Moments],
    stats_columns: Sequence[str],
    *,
    params: TrainParams,
    out: Path,
    backend: Backend,
    client: Client | None,
    fams: Sequence[str],
    sources: PostSources | None,
    posts: dd.DataFrame | None,
    progress: bool,
    timings: dict[str, float],
) -> WindowRun:
    """Fit every entry in one window and predict its test year."""
    engine, target = params.ridge.engine, S.target
    wf = window_frame(
        test_year,
        train_years,
        S,
        stats,
        stats_columns,
        params=params,
        out=out,
        backend=backend,
        fams=fams,
        sources=sources,
        posts=posts,
        progress=progress,
        timings=timings,
    )
    frame, all_cols, fitted = wf.frame, wf.columns, wf.fitted
    stat_cols = all_cols if engine == "stats" else list(S.har_columns)
    if frame is not None:
        t = time.perf_counter()
        months = collect_moments(frame, stat_cols, target, progress=progress, label=f"train {test_year}: statistics")
        timings["window_statistics"] = timings.get("window_statistics", 0.0) + time.perf_counter() - t
    else:
        months = dict(stats)
    window = Window(
        test_year,
        train_years,
        S,
        in_years(months, train_years),
        in_years(months, [test_year]),
        stat_cols,
        engine,
        backend,
        client,
        frame=frame,
        columns=all_cols,
    )
    window.floor = float(params.forecast_floor) * window.moments(S.har_columns).y_mean
    fits = {}
    for e in entries:
        t = time.perf_counter()
        fits[e.key] = e.make(params).fit(window)
        timings[f"fit_{e.model}"] = timings.get(f"fit_{e.model}", 0.0) + time.perf_counter() - t

    t = time.perf_counter()
    keys = [e.key for e in entries]
    columns = {k: [all_cols.index(c) for c in m.columns_] for k, m in fits.items()}
    data = window.data
    test = data[data["year"] == test_year]
    preds = test.map_partitions(
        predict_partition,
        feature_cols=all_cols,
        target=target,
        fits=fits,
        columns=columns,
        meta=_pred_meta(data._meta, keys),
    )
    write = backend.to_parquet(preds, out / "predictions" / f"test_year={test_year}")
    daily_parts = preds.map_partitions(
        daily_partition, keys=keys, floor=window.floor, meta=_daily_meta(data._meta, keys)
    )
    _, daily_raw = compute(write, daily_parts, label=f"train {test_year}: predictions", show=progress)
    timings["predict"] = timings.get("predict", 0.0) + time.perf_counter() - t
    wf.close()
    return WindowRun(window, fits, combine_daily(daily_raw, keys), fitted)


@dataclass
class Prepared:
    """What every task of the stage starts from: the sample, its feature sets, the
    per-month statistics of pass 1 and the windows they allow."""

    sample: Sample
    sources: PostSources | None
    sets: list[FeatureSet]
    skipped: dict[str, str]
    fams: list[str]
    models: list[str]
    stats: dict[int, Moments]
    stat_cols: list[str]
    windows: list[tuple[int, tuple[int, ...]]]
    posts: dd.DataFrame | None
    timings: dict[str, float]


def prepare(
    inputs: Mapping[str, Path | None], *, params: TrainParams, backend: Backend, progress: bool, stat_all: bool
) -> Prepared:
    """Load the sample, resolve the feature sets and compute the per-month statistics (of
    every feature column when ``stat_all``, else of the HAR block)."""
    features = inputs.get("features")
    models = model_names(params.models) if features is not None else ["har"]
    if features is None and params.models != ("har",):
        log("train: no --features, so no text: fitting HAR on the volatility panel only")
    target = params.target
    S = load_sample(
        features=features, volatility=inputs.get("volatility"), sample=params.sample, target=target, backend=backend
    )
    sources = post_sources(inputs, features)
    sets: list[FeatureSet] = []
    skipped: dict[str, str] = {}
    if features is not None:
        sets, skipped = resolve_feature_sets(
            params.feature_sets,
            S.feature_columns,
            tfidf_terms=params.tfidf.terms,
            max_topics=params.topics.max_topics,
            fitted_available=sources is not None,
            embeddings_available=sources is not None and sources.embeddings is not None,
        )
        for name, why in skipped.items():
            log(f"train: feature set '{name}' skipped: {why}")
        if not sets:
            reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
            raise WsbError(f"none of the feature sets can run ({reasons}); fix train.feature_sets")
    fams = list(families_asked(sets))
    timings: dict[str, float] = {}

    # Pass 1: per-month statistics (every column with the stats engine, else the HAR block).
    stat_cols = list(S.feature_columns if stat_all else S.har_columns)
    t = time.perf_counter()
    stats = collect_moments(S.ddf, stat_cols, target, progress=progress, label="train: statistics")
    timings["statistics"] = time.perf_counter() - t
    if not stats:
        msg = "the sample is empty after dropping rows with a missing target or HAR regressor; check the inputs"
        raise WsbError(msg)
    windows = plan(stats, params.train_years)
    posts = sources.posts() if fams else None
    return Prepared(S, sources, sets, skipped, fams, models, stats, stat_cols, windows, posts, timings)


def run(
    inputs: Mapping[str, Path | None],
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: TrainParams,
    progress: bool = False,
) -> StageResult:
    """Fit and evaluate every model on every feature set in every rolling window.

    Parameters
    ----------
    inputs
        ``features`` (text models) and/or ``volatility`` (HAR on the whole panel when given
        alone; the stock-days without posts for ``sample="all"``); ``links``, ``signals``
        and ``embeddings`` for the fitted families (default: the datasets the features
        stage read).
    out
        The results folder.
    backend
        CPU or GPU; decides the frames, the ridge estimator and the XGBoost device.
    params
        ``models`` (HAR is always included: it is the benchmark), ``feature_sets``,
        ``target``, ``train_years``, ``sample`` and the model and family sections.
    """
    if params.task == "spike":
        from wsb_gpu.stages.spike import run_spike

        return run_spike(inputs, out, backend=backend, client=client, params=params, progress=progress)
    engine = params.ridge.engine
    R = prepare(inputs, params=params, backend=backend, progress=progress, stat_all=engine == "stats")
    S, sources, sets, skipped, fams, models = R.sample, R.sources, R.sets, R.skipped, R.fams, R.models
    target, stats, stat_cols, windows, posts, timings = S.target, R.stats, R.stat_cols, R.windows, R.posts, R.timings
    entries = entries_of(models, sets, params.sequence.feature_set)
    sequence = [m for m in models if getattr(MODELS[m], "predicts_by_key", False)]
    if sequence and sets and params.sequence.feature_set not in {s.name for s in sets}:
        log(
            f"train: train.sequence.feature_set '{params.sequence.feature_set}' is not among the run's feature "
            f"sets; {', '.join(sequence)} read the set '{sets[0].name}'"
        )

    runs = []
    for test_year, train_years in windows:
        runs.append(
            run_window(
                test_year,
                train_years,
                S,
                entries,
                stats,
                stat_cols,
                params=params,
                out=out,
                backend=backend,
                client=client,
                fams=fams,
                sources=sources,
                posts=posts,
                progress=progress,
                timings=timings,
            )
        )

    rows, coefs, losses = evaluate(runs, entries, S)
    t = time.perf_counter()
    pvalues = model_confidence_set(losses, reps=params.mcs.reps, block_size=params.mcs.block_size, seed=params.mcs.seed)
    timings["mcs"] = time.perf_counter() - t
    for row in rows:
        if row["test_year"] == "all":
            p = pvalues.get(row["key"], float("nan"))
            row["mcs_pvalue"] = p
            for level in MCS_LEVELS:
                row[f"in_mcs_{round(level * 100):d}"] = bool(p >= level) if math.isfinite(p) else None
    table = pd.DataFrame(rows)
    table[[*METRIC_COLUMNS, *[c for c in ("mcs_pvalue", "in_mcs_10", "in_mcs_25") if c in table]]].to_csv(
        out / "metrics.csv", index=False
    )
    pd.DataFrame(coefs, columns=list(coefs[0]) if coefs else ["model", "feature_set", "test_year"]).to_csv(
        out / "coefficients.csv", index=False
    )
    test_years = [r.window.test_year for r in runs]
    report = {
        "target": target,
        "sample": S.sample,
        "source": S.source,
        "engine": engine,
        "train_years": int(params.train_years),
        "models": models,
        "feature_sets": {s.name: {"families": list(s.families), "columns": len(s.columns)} for s in sets},
        "skipped_feature_sets": skipped,
        "entries": [{"key": e.key, "model": e.model, "feature_set": e.set_name} for e in entries],
        "lambdas": lambda_grid(params.ridge.n_lambdas, params.ridge.lambda_min, params.ridge.lambda_max).tolist(),
        "cv_folds": int(params.ridge.cv_folds),
        "features": S.feature_columns,
        "dm": {
            "benchmark": "har",
            "loss": "squared error (dm_*) and QLIKE (dm_qlike_*), averaged across stocks per trading day",
            "lag_rule": DM_LAG_RULE,
            "pvalue": DM_PVALUE,
        },
        "losses": {
            "qlike": "mean of log(h) + y^2 / h, h = max(yhat, floor)^2, floor = forecast_floor x the "
            "training window's mean target (Patton 2011)",
            "mape": "mean |y - yhat| / y over the test rows with y > 0",
            "forecast_floor": float(params.forecast_floor),
            "floor": {str(r.window.test_year): r.window.floor for r in runs},
        },
        "mcs": {
            "method": "Hansen, Lunde and Nason (2011), range statistic, stationary bootstrap (arch.bootstrap.MCS)",
            "loss": "daily mean squared error of each (model, feature set) over every test day",
            "reps": int(params.mcs.reps),
            "block_size": params.mcs.block_size,
            "levels": {f"{round(level * 100):d}": f"in the MCS when mcs_pvalue >= {level}" for level in MCS_LEVELS},
            "pvalues": {k: (None if not math.isfinite(v) else v) for k, v in pvalues.items()},
            "days": int(len(losses.dropna())),
        },
        "metrics": _jsonable([{k: v for k, v in r.items() if k != "key"} for r in rows]),
        "cv": {
            e.key: {str(r.window.test_year): r.fits[e.key].info() for r in runs} for e in entries if e.model == "ridge"
        },
        "xgboost": {
            e.key: {str(r.window.test_year): r.fits[e.key].info() for r in runs}
            for e in entries
            if e.model == "xgboost"
        },
        # What the other models' fits chose: elastic net (a, λ), log-HAR, the sequence models.
        "fits": {
            e.key: {str(r.window.test_year): r.fits[e.key].info() for r in runs}
            for e in entries
            if e.model not in ("har", "ridge", "xgboost")
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    (out / "models.json").write_text(json.dumps(fits_json(runs, entries), allow_nan=True) + "\n")
    (out / "signals.json").write_text(
        json.dumps(window_info({r.window.test_year: r.fitted for r in runs if r.fitted is not None}), indent=1) + "\n"
    )
    return StageResult(
        rows_in=sum(int(m.n) for m in stats.values()),
        rows_out=int(sum(r.daily["n"].sum() for r in runs)),
        fields={
            "models": models,
            "feature_sets": [s.name for s in sets],
            "fitted_families": list(fams),
            "test_years": test_years,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "outputs": [
                "metrics.csv",
                "metrics.json",
                "coefficients.csv",
                "models.json",
                "signals.json",
                "predictions/",
            ],
        },
    )


# --- evaluation -------------------------------------------------------------------------


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


def _dm_columns(series: Mapping[str, np.ndarray | None]) -> dict[str, Any]:
    """The DM statistic and one-sided p-value of each comparison (NaN without a series);
    the two-sided p-value and the lag of the squared-error test against HAR."""
    out: dict[str, Any] = {}
    for prefix, _, _ in _DM_TESTS:
        stat = p = float("nan")
        lag = None
        d = series.get(prefix)
        if d is not None:
            stat, p, lag = diebold_mariano(d, alternative="less")
        out[f"{prefix}_stat"], out[f"{prefix}_pvalue"] = stat, p
        if prefix == "dm":
            out["dm_pvalue_two_sided"] = diebold_mariano(d)[1] if d is not None else float("nan")
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
            series: dict[str, np.ndarray | None] = {}
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
                    **_dm_columns(series),
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
                **_dm_columns(series),
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


def _jsonable(rows: list[dict]) -> list[dict]:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v.item() if hasattr(v, "item") else v

    return [{k: clean(v) for k, v in r.items()} for r in rows]
