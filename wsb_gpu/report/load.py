"""Reading what the report shows: metrics, predictions, coefficients, the lake's datasets.

Everything read is small (metrics) or streamed in record batches (volatility, mentions,
predictions), so the report works at full scale on the driver.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from wsb_gpu.errors import WsbError
from wsb_gpu.models import MODELS, model_class, ordered, split_key

WINDOWS = ("vol_1", "vol_5", "vol_22", "vol_63")
HAR_TERMS = WINDOWS
METRIC_COLUMNS = ("model", "test_year", "n_train", "n_test", "mse", "r2")


def read_metrics(results_dir: Path) -> Any:
    """``metrics.csv`` as a pandas frame, ``test_year`` as a string (``all`` = pooled)."""
    path = results_dir / "metrics.csv"
    if not path.is_file():
        msg = (
            f"no metrics.csv in '{results_dir}'; pass --results the folder the train stage "
            "wrote (e.g. wsb-run/results), or run `wsb-gpu train` first"
        )
        raise WsbError(msg)
    metrics = pd.read_csv(path, dtype={"test_year": str})
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        msg = (
            f"metrics.csv in '{results_dir}' lacks the columns {missing} "
            f"(columns: {', '.join(metrics.columns)}); it must be written by `wsb-gpu train`"
        )
        raise WsbError(msg)
    metrics["model"] = metrics["model"].astype(str)
    metrics["test_year"] = metrics["test_year"].astype(str).str.replace(r"\.0$", "", regex=True)
    # One row per forecast: `model` becomes the forecast's key (`har`, `ridge__vader` …) so
    # that every table and figure below works per forecast; `family` keeps the model.
    metrics["family"] = metrics["model"]
    if "feature_set" not in metrics.columns:  # results of an older train stage: one set, every column
        metrics["feature_set"] = ["har" if m == "har" else "all" for m in metrics["model"]]
        return metrics
    fs = metrics["feature_set"].where(metrics["feature_set"].notna(), None)
    metrics["model"] = [_key(m, f) for m, f in zip(metrics["model"], fs)]
    return metrics


def _key(model: str, feature_set: str | None) -> str:
    """The forecast key of a metrics row: the bare model for HAR and the models without
    feature sets (log-HAR), ``<model>__<set>`` otherwise.

    >>> _key("har", "har"), _key("log_har", "har"), _key("ridge", "har"), _key("ridge", None)
    ('har', 'log_har', 'ridge__har', 'ridge')
    """
    if feature_set is None or feature_set == "":
        return model
    if model in MODELS and not model_class(model).uses_feature_sets:
        return model
    return f"{model}__{feature_set}"


def headline(metrics: pd.DataFrame) -> list[str]:
    """The forecasts the per-year tables and figures show: HAR, and each other model on its
    ``all`` feature set when there is one, else on its best set (lowest pooled MSE).

    >>> m = pd.DataFrame({"model": ["har", "ridge__a", "ridge__b"], "family": ["har", "ridge", "ridge"],
    ...                   "feature_set": ["har", "a", "b"], "test_year": ["all"] * 3, "mse": [3.0, 1.0, 2.0]})
    >>> headline(m)
    ['har', 'ridge__a']
    """
    pooled = metrics[metrics["test_year"] == "all"]
    out = []
    for fam in dict.fromkeys(metrics["family"]):
        rows = pooled[pooled["family"] == fam]
        if fam == "har" or not len(rows):
            out += list(dict.fromkeys(metrics.loc[metrics["family"] == fam, "model"]))[:1]
            continue
        named = rows[rows["feature_set"] == "all"]
        best = named if len(named) else rows.sort_values("mse", kind="stable")
        out.append(str(best["model"].iloc[0]))
    return ordered(out)


def signal_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The "which signal helps" table: per (feature set, model), the pooled ΔR², MSE change
    and one-sided DM p-value against HAR, the DM p-value against the same model on the HAR
    terms alone (``dm_base_pvalue``, when the run has a ``har`` set) and the Model Confidence
    Set membership.

    >>> m = pd.DataFrame({"model": ["har", "ridge__v"], "family": ["har", "ridge"], "feature_set": ["har", "v"],
    ...                   "test_year": ["all", "all"], "mse": [2.0, 1.0], "r2": [0.1, 0.3], "n_test": [5, 5],
    ...                   "dm_pvalue": [None, 0.01], "in_mcs_10": [False, True], "in_mcs_25": [False, True]})
    >>> signal_table(m)[["feature_set", "family", "d_r2", "mse_change", "in_mcs_25"]].values.tolist()
    [['v', 'ridge', 0.19999999999999998, -0.5, True]]
    """
    vs = versus_har(metrics)
    # The models without feature sets (log-HAR) have no signal to tell apart: they are in the
    # pooled and losses tables.
    no_sets = {m for m in MODELS if not model_class(m).uses_feature_sets}
    pooled = metrics[(metrics["test_year"] == "all") & ~metrics["family"].isin(no_sets)]
    rows = []
    for _, r in pooled.iterrows():
        if (r["model"], "all") not in vs.index:
            continue
        c = vs.loc[(r["model"], "all")]
        rows.append(
            {
                "feature_set": r["feature_set"],
                "family": r["family"],
                "model": r["model"],
                "d_r2": float(c["d_r2"]),
                "mse_change": float(c["mse_change"]),
                "dm_pvalue": float(r["dm_pvalue"]) if pd.notna(r.get("dm_pvalue")) else float("nan"),
                "dm_base_pvalue": float(r["dm_base_pvalue"]) if pd.notna(r.get("dm_base_pvalue")) else float("nan"),
                "mcs_pvalue": float(r["mcs_pvalue"]) if pd.notna(r.get("mcs_pvalue")) else float("nan"),
                "in_mcs_10": _flag(r.get("in_mcs_10")),
                "in_mcs_25": _flag(r.get("in_mcs_25")),
            }
        )
    return pd.DataFrame(rows)


def _flag(v: Any) -> bool | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, str):
        return v.strip().lower() == "true"
    return bool(v)


def mcs_of(metrics: pd.DataFrame, level: int) -> list[str]:
    """The forecasts in the Model Confidence Set at ``level`` (10 or 25 %), HAR included."""
    col = f"in_mcs_{level}"
    if col not in metrics.columns:
        return []
    pooled = metrics[metrics["test_year"] == "all"]
    return [str(k) for k, v in zip(pooled["model"], pooled[col]) if _flag(v)]


def read_signals(results_dir: Path) -> dict[str, Any]:
    """``signals.json``: per test year, what the fitted families learned ({} when absent)."""
    try:
        return json.loads((results_dir / "signals.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def models_of(metrics: pd.DataFrame) -> list[str]:
    """The models in ``metrics``, in the registry's order."""
    return ordered(list(dict.fromkeys(metrics["model"])))


def _parquet_batches(folder: Path, columns: list[str], required: Iterable[str] = ()) -> Iterable[Any]:
    """pandas frames of the wanted columns, one record batch at a time (bounded memory);
    nothing when a ``required`` column is absent."""
    dataset = ds.dataset(str(folder), format="parquet", exclude_invalid_files=True)
    names = set(dataset.schema.names)
    cols = [c for c in columns if c in names]
    if required and not set(required) <= names:
        return
    for batch in dataset.to_batches(columns=cols, batch_size=1 << 20):
        yield batch.to_pandas()


def has_parquet(folder: Path | None) -> TypeGuard[Path]:
    """Whether ``folder`` is a folder holding Parquet files (to mypy: then it is a Path)."""
    return folder is not None and folder.is_dir() and any(folder.rglob("*.parquet"))


def daily_mean_volatility(volatility: Path) -> Any:
    """Mean of ``vol_1 … vol_63`` across stocks for each date, streamed."""
    sums = None
    for frame in _parquet_batches(volatility, ["date", *WINDOWS], required=["date"]):
        frame["date"] = pd.to_datetime(frame["date"])
        cols = [c for c in WINDOWS if c in frame.columns]
        part = frame.groupby("date")[cols].agg(["sum", "count"])
        sums = part if sums is None else sums.add(part, fill_value=0)
    if sums is None or sums.empty:
        return pd.DataFrame()
    out = pd.DataFrame({c: sums[(c, "sum")] / sums[(c, "count")] for c in WINDOWS if (c, "sum") in sums})
    return out.sort_index()


SAMPLE_COLUMNS = (*WINDOWS, "y_1")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser: a fixed, well-mixed 64-bit hash of each value (wraps mod 2⁶⁴).

    >>> int(_splitmix64(np.array([0], dtype=np.uint64))[0])
    16294208416658607535
    """
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _row_hash(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each row's ``(permno, date)``: the row's sampling key."""
    permno = frame["permno"].to_numpy(np.int64).view(np.uint64)
    day = pd.to_datetime(frame["date"]).to_numpy("datetime64[D]").astype(np.int64).view(np.uint64)
    return _splitmix64(_splitmix64(permno ^ _splitmix64(np.array([seed], dtype=np.uint64))) ^ day)


def _smallest(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` rows of ``frame`` with the smallest ``_key``."""
    if len(frame) <= n:
        return frame
    keep = np.argpartition(frame["_key"].to_numpy(), n - 1)[:n]
    return frame.iloc[keep]


def volatility_sample(volatility: Path, n: int = 5000, seed: int = 0) -> Any:
    """A reproducible uniform sample of the stock-days that have ``vol_1 … vol_63`` and ``y_1``.

    Bottom-k hash sampling: every complete row gets the key SplitMix64(permno, date, seed)
    and the ``n`` rows with the smallest keys are kept, a running selection over the record
    batches (memory: one batch plus ``n`` rows). As the key depends on the row only, the
    sample is a uniform draw without replacement that does not depend on how the dataset is
    split into files or batches; another ``seed`` draws another sample.

    Parameters
    ----------
    volatility
        The volatility stage's Parquet folder (``permno, date, vol_1 … vol_63, y_1, …``).
    n
        Rows wanted (all complete rows when there are fewer).
    seed
        Selects the sample.

    Returns
    -------
    pandas.DataFrame
        ``permno, date, vol_1, vol_5, vol_22, vol_63, y_1`` sorted by permno, date; empty
        when the dataset lacks one of these columns or has no complete row.
    """
    columns = ["permno", "date", *SAMPLE_COLUMNS]
    kept = None
    for frame in _parquet_batches(volatility, columns, required=columns):
        frame = frame.dropna(subset=list(SAMPLE_COLUMNS))
        if not len(frame):
            continue
        frame = frame.assign(_key=_row_hash(frame, seed))
        kept = _smallest(frame if kept is None else pd.concat([kept, _smallest(frame, n)]), n)
    if kept is None:
        return pd.DataFrame(columns=columns)
    kept = kept.drop(columns="_key").assign(date=lambda d: pd.to_datetime(d["date"]))
    return kept.sort_values(["permno", "date"], kind="stable").reset_index(drop=True)


_MOMENTS = ["n", "mx", "my", "cxx", "cxy"]


def _daily_moments(frame: pd.DataFrame) -> pd.DataFrame:
    """Per date: count, means of x and y, centred sums of squares Σ(x−x̄)² and products
    Σ(x−x̄)(y−ȳ) of the rows of ``frame`` (columns ``date, x, y``, no missing values)."""
    g = frame.groupby("date", sort=True)
    dx = frame["x"] - g["x"].transform("mean")
    dy = frame["y"] - g["y"].transform("mean")
    centred = pd.DataFrame({"date": frame["date"], "cxx": dx * dx, "cxy": dx * dy}).groupby("date", sort=True)
    return pd.DataFrame(
        {
            "n": g.size().astype(float),
            "mx": g["x"].mean(),
            "my": g["y"].mean(),
            "cxx": centred["cxx"].sum(),
            "cxy": centred["cxy"].sum(),
        }
    )


def _combine(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pooled moments of two groups from theirs (Chan, Golub and LeVeque's parallel formula);
    a group with ``n = 0`` leaves the other unchanged.

    >>> one = {"n": np.array([2.0]), "mx": np.array([1.0]), "my": np.array([2.0]),
    ...        "cxx": np.array([2.0]), "cxy": np.array([4.0])}     # x = 0, 2; y = 0, 4
    >>> two = {"n": np.array([1.0]), "mx": np.array([4.0]), "my": np.array([8.0]),
    ...        "cxx": np.array([0.0]), "cxy": np.array([0.0])}     # x = 4; y = 8
    >>> {k: float(v[0]) for k, v in _combine(one, two).items()}   # x = 0, 2, 4; y = 0, 4, 8
    {'n': 3.0, 'mx': 2.0, 'my': 4.0, 'cxx': 8.0, 'cxy': 16.0}
    """
    n = a["n"] + b["n"]
    share = np.divide(b["n"], n, out=np.zeros_like(n), where=n > 0)
    dx, dy = b["mx"] - a["mx"], b["my"] - a["my"]
    return {
        "n": n,
        "mx": a["mx"] + dx * share,
        "my": a["my"] + dy * share,
        "cxx": a["cxx"] + b["cxx"] + dx * dx * a["n"] * share,
        "cxy": a["cxy"] + b["cxy"] + dx * dy * a["n"] * share,
    }


def _accumulate(total: pd.DataFrame | None, part: pd.DataFrame) -> pd.DataFrame:
    """Per-date moments of two sets of batches (dates seen in either)."""
    if total is None:
        return part
    index = total.index.union(part.index)
    a = total.reindex(index, fill_value=0.0)
    b = part.reindex(index, fill_value=0.0)
    out = _combine({k: a[k].to_numpy() for k in _MOMENTS}, {k: b[k].to_numpy() for k in _MOMENTS})
    return pd.DataFrame(out, index=index)


def _trailing(daily: pd.DataFrame, window: int) -> dict[str, np.ndarray]:
    """Moments pooled over each run of ``window`` consecutive dates, summed directly over the
    window's dates (no running cumulative sums, whose differences lose precision)."""
    from numpy.lib.stride_tricks import sliding_window_view

    win = {k: sliding_window_view(daily[k].to_numpy(float), window) for k in _MOMENTS}
    n = win["n"].sum(axis=1)
    mx = (win["n"] * win["mx"]).sum(axis=1) / n
    my = (win["n"] * win["my"]).sum(axis=1) / n
    dx, dy = win["mx"] - mx[:, None], win["my"] - my[:, None]
    cxx = (win["cxx"] + win["n"] * dx * dx).sum(axis=1)
    cxy = (win["cxy"] + win["n"] * dx * dy).sum(axis=1)
    return {"n": n, "mx": mx, "cxx": cxx, "cxy": cxy}


def rolling_beta(volatility: Path, window: int = 22) -> Any:
    """The trailing ``window``-trading-day OLS slope of ``y_1`` on ``vol_1``, per date.

    This is the pooled cross-section version of the seed's rolling β (the seed computed it
    from rolling cov and var windows and does not say how it pooled the stocks): for date
    t, the slope β_t = Sxy / Sxx of the OLS fit of y = y_1 on x = vol_1 (with intercept)
    over every stock-day of the last ``window`` dates up to t that has both, i.e.
    β_t = (Σxy − ΣxΣy/n) / (Σx² − (Σx)²/n).

    The dataset is streamed: per date, the count, the means and the centred sums
    Σ(x−x̄)², Σ(x−x̄)(y−ȳ) of each record batch are merged with the parallel-variance
    formula (a date's rows span many batches, as the data is sorted by permno); the window
    then pools its dates' centred moments directly, so no large raw sums are subtracted.

    Parameters
    ----------
    volatility
        The volatility stage's Parquet folder (``permno, date, vol_1, y_1, …``).
    window
        Trading dates per window: the dates with at least one stock-day that has both.

    Returns
    -------
    pandas.DataFrame
        ``date, beta, n`` per such date: β (NaN for the first ``window − 1`` dates and
        where vol_1 does not vary in the window) and the stock-days in the window (fewer
        dates at the start). Empty when the dataset lacks the columns or has no such row.
    """
    total = None
    for frame in _parquet_batches(volatility, ["date", "vol_1", "y_1"], required=["date", "vol_1", "y_1"]):
        frame = frame.dropna(subset=["vol_1", "y_1"])
        if len(frame):
            part = pd.DataFrame(
                {
                    "date": pd.to_datetime(frame["date"]),
                    "x": frame["vol_1"].to_numpy(float),
                    "y": frame["y_1"].to_numpy(float),
                }
            )
            total = _accumulate(total, _daily_moments(part))
    if total is None or total.empty:
        return pd.DataFrame(columns=["date", "beta", "n"])
    total = total.sort_index()
    counts = total["n"].rolling(window, min_periods=1).sum().to_numpy()
    beta = np.full(len(total), np.nan)
    if len(total) >= window:
        w = _trailing(total, window)
        # Identical x values still leave a centred sum of about 1e-32 · n · x̄² from rounding.
        varies = w["cxx"] > w["n"] * (1e-12 * np.abs(w["mx"])) ** 2
        beta[window - 1 :] = np.where(varies, w["cxy"] / np.where(varies, w["cxx"], 1.0), np.nan)
    return pd.DataFrame({"date": total.index, "beta": beta, "n": counts.astype(np.int64)})


def mentions_per_day(mentions: Path, top: int = 5) -> Any:
    """Posts mentioning each of the ``top`` most mentioned tickers, per UTC day (streamed)."""
    counts = None
    for frame in _parquet_batches(mentions, ["date", "ticker"], required=["date", "ticker"]):
        frame["date"] = pd.to_datetime(frame["date"])
        part = frame.groupby(["ticker", "date"]).size()
        counts = part if counts is None else counts.add(part, fill_value=0)
    if counts is None or counts.empty:
        return pd.DataFrame()
    totals = counts.groupby(level="ticker").sum().sort_values(ascending=False)
    keep = list(totals.index[:top])
    wide = counts.loc[keep].unstack("ticker").fillna(0.0)
    full = pd.date_range(wide.index.min(), wide.index.max(), freq="D")
    return wide.reindex(full, fill_value=0.0)[keep]


def read_predictions(results_dir: Path, keys: Iterable[str] = (), max_rows: int = 300_000) -> Any:
    """``predictions/`` as pandas, the forecasts ``keys`` only (default: the bare models),
    a fixed-seed sample of at most ``max_rows`` rows."""
    folder = results_dir / "predictions"
    if not has_parquet(folder):
        return pd.DataFrame()
    wanted = list(keys) or list(MODELS)
    frames = list(_parquet_batches(folder, ["permno", "date", "y", "model", "yhat"] + [f"yhat_{m}" for m in wanted]))
    if not frames:
        return pd.DataFrame()
    pred = pd.concat(frames, ignore_index=True)
    if len(pred) > max_rows:
        pred = pred.sample(max_rows, random_state=0)
    return pred


def read_ridge_details(results_dir: Path, metrics: pd.DataFrame, model: str = "ridge") -> tuple[Any, Any]:
    """Chosen λ per test year and a model's coefficients of the HAR terms per test year.

    λ comes from ``metrics.csv``; the coefficients from ``coefficients.csv`` as the train
    stage writes it (wide: ``model, test_year, lambda, intercept, vol_1 … vol_63``; a long
    layout ``model, test_year, term, coef`` is read too), else from ``metrics.json``.
    Returns ``(lambdas, coefficients)``: a Series by year and a frame year × HAR term
    (either may be empty).
    """
    per_year = metrics[(metrics["model"] == model) & (metrics["test_year"] != "all")]
    lambdas = pd.Series(dtype=float)
    if "lambda" in per_year.columns and len(per_year):
        lambdas = (
            pd.Series(
                pd.to_numeric(per_year["lambda"], errors="coerce").to_numpy(),
                index=per_year["test_year"].astype(int).to_numpy(),
            )
            .dropna()
            .sort_index()
        )
    coefs = pd.DataFrame()
    csv = results_dir / "coefficients.csv"
    if csv.is_file():
        raw = pd.read_csv(csv)
        if "model" in raw.columns:
            family, fs = split_key(model)
            keep = raw["model"].astype(str) == family
            if fs is not None and "feature_set" in raw.columns:
                keep &= raw["feature_set"].astype(str) == fs
            raw = raw[keep]
        if "test_year" in raw.columns:
            raw = raw[raw["test_year"].astype(str) != "all"]
        term_col = next((c for c in ("term", "feature", "name") if c in raw.columns), None)
        value_col = next((c for c in ("coef", "coefficient", "value", "beta") if c in raw.columns), None)
        if term_col and value_col:
            raw = raw[raw[term_col].isin(HAR_TERMS)]
            coefs = raw.pivot_table(index="test_year", columns=term_col, values=value_col)
        elif "test_year" in raw.columns and any(t in raw.columns for t in HAR_TERMS):
            coefs = raw.set_index("test_year")[[t for t in HAR_TERMS if t in raw.columns]]
    elif split_key(model)[0] == "ridge":
        path = results_dir / "metrics.json"
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            data = {}
        found = _find_coefficients(data)
        if found:
            coefs = pd.DataFrame(found).T
    if len(coefs):
        coefs.index = coefs.index.astype(int)
        coefs = coefs[[t for t in HAR_TERMS if t in coefs.columns]].sort_index()
    return lambdas, coefs


def lambda_grid_of(results_dir: Path) -> list[float] | None:
    """The λ grid the train stage searched (``lambdas`` in metrics.json), if recorded."""
    try:
        grid = json.loads((results_dir / "metrics.json").read_text()).get("lambdas")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return [float(v) for v in grid] if isinstance(grid, list) and grid else None


def _find_coefficients(data: Any) -> dict[int, dict[str, float]]:
    """Ridge HAR coefficients per year from a metrics.json of any reasonable nesting."""
    found: dict[int, dict[str, float]] = {}

    def visit(node: Any, year: Any = None, model: Any = None) -> None:
        if isinstance(node, Mapping):
            year = node.get("test_year", year)
            model = node.get("model", model)
            for key in ("coefficients", "coef", "coefs"):
                c = node.get(key)
                if isinstance(c, Mapping) and model in (None, "ridge") and str(year).isdigit():
                    terms = {t: float(c[t]) for t in HAR_TERMS if isinstance(c.get(t), (int, float))}
                    if terms:
                        found[int(year)] = terms
            for k, v in node.items():
                if str(k).isdigit() and len(str(k)) == 4:
                    visit(v, k, model)
                elif k in MODELS:
                    visit(v, year, k)
                else:
                    visit(v, year, model)
        elif isinstance(node, list):
            for v in node:
                visit(v, year, model)

    visit(data)
    return found


def find_lake(results_dir: Path, lake: str | Path | None) -> Path | None:
    if lake is not None:
        return Path(lake)
    parent = results_dir.resolve().parent
    return parent if (parent / "run.json").is_file() or (parent / "volatility").is_dir() else None


def read_run(lake: Path | None) -> dict[str, Any] | None:
    """``run.json`` of a run directory, or None."""
    if lake is None or not (lake / "run.json").is_file():
        return None
    try:
        return json.loads((lake / "run.json").read_text())
    except json.JSONDecodeError:
        return None


def pooled_rows(metrics: pd.DataFrame) -> list[tuple[str, pd.Series, pd.Series | None]]:
    """``(model, pooled metrics row, its figures against HAR or None)`` per model, in order:
    what the report's pooled table and the demo's summary both show."""
    pooled = metrics[metrics["test_year"] == "all"].set_index("model")
    vs = versus_har(metrics)
    out = []
    for model in models_of(metrics):
        if model in pooled.index:
            change = vs.loc[(model, "all")] if (model, "all") in vs.index and model != "har" else None
            out.append((model, pooled.loc[model], change))
    return out


def versus_har(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each model's figures against HAR in the same test year (``all`` = pooled).

    One row per (model, test year) that has a HAR row of the same year, HAR itself included
    (with NaN changes): ``mse, r2, r2_oos, n_test, dm_stat, dm_pvalue`` of the model, and
    ``mse_change = mse / mse_HAR - 1`` and ``d_r2 = r2 - r2_HAR``. The report's tables, its
    verdict and the demo's summary all read these numbers from here.

    >>> m = pd.DataFrame({"model": ["har", "ridge"], "test_year": ["all", "all"], "mse": [2.0, 1.0],
    ...                   "r2": [0.1, 0.3], "n_test": [5, 5]})
    >>> versus_har(m).loc[("ridge", "all"), ["mse_change", "d_r2"]].round(6).tolist()
    [-0.5, 0.2]
    """
    har = metrics[metrics["model"] == "har"].set_index("test_year")
    rows = []
    for _, r in metrics.iterrows():
        year = r["test_year"]
        if year not in har.index:
            continue
        base = har.loc[year]
        is_har = r["model"] == "har"
        rows.append(
            {
                "model": r["model"],
                "test_year": year,
                "mse": r["mse"],
                "r2": r["r2"],
                "r2_oos": r.get("r2_oos"),
                "n_test": r.get("n_test"),
                "dm_stat": np.nan if is_har else r.get("dm_stat"),
                "dm_pvalue": np.nan if is_har else r.get("dm_pvalue"),
                "mse_change": np.nan if is_har else r["mse"] / base["mse"] - 1,
                "d_r2": np.nan if is_har else r["r2"] - base["r2"],
            }
        )
    return pd.DataFrame(
        rows,
        columns=["model", "test_year", "mse", "r2", "r2_oos", "n_test", "dm_stat", "dm_pvalue", "mse_change", "d_r2"],
    ).set_index(["model", "test_year"])
