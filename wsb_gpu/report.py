"""The run's report: ``report.md`` with the seed-style tables and five PNG figures.

:func:`write_report` reads the results of the train stage (``metrics.csv``,
``metrics.json``, ``predictions/`` and, when present, the ridge coefficients), and, when
it is given the run directory, the volatility and mentions datasets and ``run.json`` for
the figures and the provenance. Everything it reads is small (metrics) or streamed in
record batches (volatility, mentions, predictions), so it works at full scale on the driver.

The report folder is written atomically with a ``_manifest.json`` like every dataset.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wsb_gpu.errors import WsbError
from wsb_gpu.lake import atomic_dataset, file_fingerprint, write_manifest

MODEL_ORDER = ("har", "ridge", "xgboost")
MODEL_LABEL = {"har": "HAR", "ridge": "Ridge (HAR + text)", "xgboost": "XGBoost (HAR + text)"}
MODEL_COLOR = {"har": "#4C72B0", "ridge": "#DD8452", "xgboost": "#55A868"}
WINDOWS = ("vol_1", "vol_5", "vol_22", "vol_63")
WINDOW_LABEL = {"vol_1": "1 day", "vol_5": "5 days (week)", "vol_22": "22 days (month)", "vol_63": "63 days (quarter)"}
HAR_TERMS = WINDOWS
FIGURES = {
    "volatility": "fig1_volatility.png",
    "r2": "fig2_r2_by_year.png",
    "predicted": "fig3_predicted_vs_realized.png",
    "ridge": "fig4_ridge_lambda_coefficients.png",
    "mentions": "fig5_mentions_top_tickers.png",
}
METRIC_COLUMNS = ("model", "test_year", "n_train", "n_test", "mse", "r2")


# --- small formatting helpers -------------------------------------------------------------


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a Markdown table: 4 significant digits, ``—`` for missing.

    >>> fmt(0.000987123), fmt(0.13149), fmt(None), fmt(float("nan")), fmt(12345)
    ('0.0009871', '0.1315', '—', '—', '12,345')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "—"
    if v != 0 and (abs(v) < 1e-4 or abs(v) >= 1e6):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}g}"


def r2(value: Any, sign: bool = False) -> str:
    """An R² (or a difference of two) with three decimals, as the seed reports it.

    >>> r2(0.1314), r2(-0.0151, sign=True), r2(None)
    ('0.131', '-0.015', '—')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):+.3f}" if sign else f"{float(value):.3f}"


def lam(value: Any) -> str:
    """A ridge penalty: whole numbers with separators, small ones with 3 digits.

    >>> lam(10000.0), lam(316.2278), lam(0.01), lam(None)
    ('10,000', '316', '0.01', '—')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    v = float(value)
    return f"{v:,.0f}" if v >= 1 else f"{v:.3g}"


def pct(value: Any) -> str:
    """A relative change in percent with its sign.

    >>> pct(-0.0612), pct(None)
    ('-6.12 %', '—')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):+.2f} %"


def pvalue(p: Any) -> str:
    """A p-value: three decimals, ``< 0.001`` below that.

    >>> pvalue(0.0312), pvalue(1e-9), pvalue(None)
    ('0.031', '< 0.001', '—')
    """
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "< 0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def markdown_table(header: list[str], rows: Iterable[list[str]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one letter per column (l, r, c).

    >>> print(markdown_table(["a", "b"], [["1", "2"]], "lr"))
    | a | b |
    | :-- | --: |
    | 1 | 2 |
    """
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --- reading ----------------------------------------------------------------------------


def read_metrics(results_dir: Path) -> Any:
    """``metrics.csv`` as a pandas frame, ``test_year`` as a string (``all`` = pooled)."""
    import pandas as pd

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
    return metrics


def _models(metrics: Any) -> list[str]:
    present = list(dict.fromkeys(metrics["model"]))
    return [m for m in MODEL_ORDER if m in present] + [m for m in present if m not in MODEL_ORDER]


def _parquet_batches(folder: Path, columns: list[str], required: Iterable[str] = ()) -> Iterable[Any]:
    """pandas frames of the wanted columns, one record batch at a time (bounded memory);
    nothing when a ``required`` column is absent."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(folder), format="parquet", exclude_invalid_files=True)
    names = set(dataset.schema.names)
    cols = [c for c in columns if c in names]
    if required and not set(required) <= names:
        return
    for batch in dataset.to_batches(columns=cols, batch_size=1 << 20):
        yield batch.to_pandas()


def _has_parquet(folder: Path | None) -> bool:
    return folder is not None and folder.is_dir() and any(folder.rglob("*.parquet"))


def daily_mean_volatility(volatility: Path) -> Any:
    """Mean of ``vol_1 … vol_63`` across stocks for each date, streamed."""
    import pandas as pd

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


def mentions_per_day(mentions: Path, top: int = 5) -> Any:
    """Posts mentioning each of the ``top`` most mentioned tickers, per UTC day (streamed)."""
    import pandas as pd

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


def read_predictions(results_dir: Path, max_rows: int = 300_000) -> Any:
    """``predictions/`` as pandas (a fixed-seed sample of at most ``max_rows`` rows)."""
    import pandas as pd

    folder = results_dir / "predictions"
    if not _has_parquet(folder):
        return pd.DataFrame()
    frames = list(_parquet_batches(folder, ["permno", "date", "y", "test_year", "model", "yhat"] + [
        f"yhat_{m}" for m in MODEL_ORDER]))
    if not frames:
        return pd.DataFrame()
    pred = pd.concat(frames, ignore_index=True)
    if len(pred) > max_rows:
        pred = pred.sample(max_rows, random_state=0)
    return pred


def read_ridge_details(results_dir: Path, metrics: Any, model: str = "ridge") -> tuple[Any, Any]:
    """Chosen λ per test year and a model's coefficients of the HAR terms per test year.

    λ comes from ``metrics.csv``; the coefficients from ``coefficients.csv`` as the train
    stage writes it (wide: ``model, test_year, lambda, intercept, vol_1 … vol_63``; a long
    layout ``model, test_year, term, coef`` is read too), else from ``metrics.json``.
    Returns ``(lambdas, coefficients)``: a Series by year and a frame year × HAR term
    (either may be empty).
    """
    import pandas as pd

    per_year = metrics[(metrics["model"] == "ridge") & (metrics["test_year"] != "all")]
    lambdas = pd.Series(dtype=float)
    if "lambda" in per_year.columns and len(per_year):
        lambdas = pd.Series(pd.to_numeric(per_year["lambda"], errors="coerce").to_numpy(),
                            index=per_year["test_year"].astype(int).to_numpy()).dropna().sort_index()
    coefs = pd.DataFrame()
    csv = results_dir / "coefficients.csv"
    if csv.is_file():
        raw = pd.read_csv(csv)
        if "model" in raw.columns:
            raw = raw[raw["model"].astype(str) == model]
        if "test_year" in raw.columns:
            raw = raw[raw["test_year"].astype(str) != "all"]
        term_col = next((c for c in ("term", "feature", "name") if c in raw.columns), None)
        value_col = next((c for c in ("coef", "coefficient", "value", "beta") if c in raw.columns), None)
        if term_col and value_col:
            raw = raw[raw[term_col].isin(HAR_TERMS)]
            coefs = raw.pivot_table(index="test_year", columns=term_col, values=value_col)
        elif "test_year" in raw.columns and any(t in raw.columns for t in HAR_TERMS):
            coefs = raw.set_index("test_year")[[t for t in HAR_TERMS if t in raw.columns]]
    elif model == "ridge":
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


def _lambda_grid(results_dir: Path) -> list[float] | None:
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
                elif k in MODEL_ORDER:
                    visit(v, year, k)
                else:
                    visit(v, year, model)
        elif isinstance(node, list):
            for v in node:
                visit(v, year, model)

    visit(data)
    return found


# --- figures ----------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False, "font.size": 10})
    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_volatility(daily: Any, path: Path) -> Path | None:
    if daily is None or daily.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 5))
    for col in WINDOWS:
        if col in daily.columns:
            ax.plot(daily.index, daily[col], lw=0.9 if col == "vol_1" else 1.4,
                    alpha=0.75 if col == "vol_1" else 1.0, label=WINDOW_LABEL[col])
    ax.set_title("Daily average realized volatility across stocks, by window")
    ax.set_xlabel("trading date")
    ax.set_ylabel("realized volatility  √Σ r²  (mean over stocks)")
    ax.legend(title="window", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, frameon=False)
    return _save(fig, path)


def plot_r2(metrics: Any, path: Path) -> Path | None:
    import numpy as np

    per_year = metrics[metrics["test_year"] != "all"]
    if per_year.empty:
        return None
    plt = _pyplot()
    models = _models(per_year)
    years = sorted(per_year["test_year"].astype(int).unique())
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(years))
    for i, model in enumerate(models):
        sub = per_year[per_year["model"] == model].assign(year=lambda d: d["test_year"].astype(int))
        vals = sub.set_index("year")["r2"].reindex(years)
        pooled = metrics[(metrics["model"] == model) & (metrics["test_year"] == "all")]["r2"]
        label = MODEL_LABEL.get(model, model)
        if len(pooled):
            label += f"  (pooled R² {float(pooled.iloc[0]):.3f})"
        ax.bar(x + (i - (len(models) - 1) / 2) * width, vals.to_numpy(), width,
               label=label, color=MODEL_COLOR.get(model))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [str(y) for y in years])
    ax.set_title("Out-of-sample R² per test year (SST around the test-year mean)")
    ax.set_xlabel("test year (trained on the preceding years)")
    ax.set_ylabel("R²")
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(models))
    return _save(fig, path)


def _long_predictions(pred: Any) -> dict[str, Any]:
    """model -> (y, yhat) arrays from a wide (``yhat_<model>``) or long (``model, yhat``) frame."""
    out = {}
    if pred is None or pred.empty or "y" not in pred.columns:
        return out
    if "model" in pred.columns and "yhat" in pred.columns:
        for model, sub in pred.groupby("model"):
            out[str(model)] = (sub["y"].to_numpy(float), sub["yhat"].to_numpy(float))
    for col in pred.columns:
        if col.startswith("yhat_"):
            out[col[5:]] = (pred["y"].to_numpy(float), pred[col].to_numpy(float))
    return {m: out[m] for m in [*MODEL_ORDER, *sorted(out)] if m in out}


def plot_predicted(pred: Any, path: Path) -> Path | None:
    import numpy as np

    series = _long_predictions(pred)
    if not series:
        return None
    plt = _pyplot()
    n = len(series)
    fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 4.6), sharex=True, sharey=True, squeeze=False)
    # Volatility is right-skewed over two orders of magnitude: log axes show the bulk and the
    # tail at once. Limits: the 0.5 % and 99.5 % quantiles of everything plotted.
    values = np.concatenate([np.concatenate([y, yh]) for y, yh in series.values()])
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = (np.quantile(values, [0.005, 0.995]) if values.size else (1e-3, 1.0))
    for ax, (model, (y, yhat)) in zip(axes[0], series.items()):
        ok = np.isfinite(y) & np.isfinite(yhat) & (y > 0) & (yhat > 0)
        hidden = int((np.isfinite(yhat) & (yhat <= 0)).sum())
        y, yhat = y[ok], yhat[ok]
        ax.hexbin(yhat, y, gridsize=40, bins="log", cmap="viridis", mincnt=1, xscale="log", yscale="log",
                  extent=(np.log10(lo), np.log10(hi), np.log10(lo), np.log10(hi)))
        ax.plot([lo, hi], [lo, hi], color="red", lw=1.2, ls="--")
        corr = float(np.corrcoef(np.log(y), np.log(yhat))[0, 1]) if y.size > 2 else float("nan")
        note = f" ({hidden:,} with ŷ ≤ 0 not shown)" if hidden else ""
        ax.set_title(f"{MODEL_LABEL.get(model, model)}\nn = {y.size:,}{note}, corr(log ŷ, log y) = {corr:.2f}",
                     fontsize=9 if hidden else 10)
        ax.set_xlabel("predicted next-day volatility ŷ")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    axes[0][0].set_ylabel("realized next-day volatility y")
    fig.suptitle("Predicted vs realized next-day volatility on the test rows "
                 "(log axes; colour = log count; dashed: y = ŷ)")
    return _save(fig, path)


def plot_ridge(lambdas: Any, coefs: Any, path: Path, har_coefs: Any = None,
               grid: list[float] | None = None) -> Path | None:
    if (lambdas is None or lambdas.empty) and (coefs is None or coefs.empty):
        return None
    plt = _pyplot()
    panels = int(lambdas is not None and not lambdas.empty) + int(coefs is not None and not coefs.empty)
    fig, axes = plt.subplots(1, panels, figsize=(5.8 * panels, 4.6), squeeze=False)
    i = 0
    if lambdas is not None and not lambdas.empty:
        ax = axes[0][i]
        i += 1
        ax.plot(lambdas.index, lambdas.to_numpy(), marker="o", color=MODEL_COLOR["ridge"])
        for year, lam in lambdas.items():
            ax.annotate(f"{lam:.3g}", (year, lam), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
        ax.set_yscale("log")
        if grid is not None and len(grid):
            ax.set_ylim(min(grid) / 2, max(grid) * 2)  # the whole grid searched, for scale
        ax.set_xticks(list(lambdas.index))
        ax.set_title("Ridge penalty λ chosen by blocked CV" + (" (y range: the grid)" if grid else ""))
        ax.set_xlabel("test year (λ chosen inside its training window)")
        ax.set_ylabel("λ (log scale)")
    if coefs is not None and not coefs.empty:
        ax = axes[0][i]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for k, term in enumerate(coefs.columns):
            ax.plot(coefs.index, coefs[term], marker="o", color=colors[k % len(colors)],
                    label=f"ridge: {WINDOW_LABEL.get(term, term)}")
            if har_coefs is not None and term in getattr(har_coefs, "columns", ()):
                ax.plot(har_coefs.index, har_coefs[term], ls="--", marker="x", color=colors[k % len(colors)],
                        alpha=0.7, label=f"HAR: {WINDOW_LABEL.get(term, term)}")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(list(coefs.index))
        ax.set_title("HAR-term coefficients (solid: ridge, dashed: HAR)"
                     if har_coefs is not None and not har_coefs.empty else "Ridge coefficients of the HAR terms")
        ax.set_xlabel("test year")
        ax.set_ylabel("coefficient (per unit of the regressor)")
        ax.legend(frameon=False, fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return _save(fig, path)


def plot_mentions(per_day: Any, path: Path) -> Path | None:
    if per_day is None or per_day.empty:
        return None
    plt = _pyplot()
    tickers = list(per_day.columns)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # One panel per ticker (shared axes): five noisy daily series on one axis are unreadable.
    fig, axes = plt.subplots(len(tickers), 1, figsize=(10, 1.5 + 1.35 * len(tickers)), sharex=True, sharey=True,
                             squeeze=False)
    smooth = per_day.rolling(30, min_periods=1).mean()
    for k, (ax, ticker) in enumerate(zip(axes[:, 0], tickers)):
        # fill_between draws one polygon; bar() would draw thousands of rectangles (slow).
        ax.fill_between(per_day.index, per_day[ticker].to_numpy(), step="mid", color="0.8", lw=0, label="per day")
        ax.plot(smooth.index, smooth[ticker], color=colors[k % len(colors)], lw=1.6, label="30-day mean")
        ax.text(0.005, 0.92, f"{ticker}: {int(per_day[ticker].sum()):,} posts", transform=ax.transAxes,
                va="top", fontsize=9, fontweight="bold")
        ax.set_ylabel("posts")
    axes[0, 0].legend(loc="upper right", frameon=False, fontsize=8, ncol=2)
    axes[-1, 0].set_xlabel("UTC date of the post")
    fig.suptitle(f"Posts per day mentioning the {len(tickers)} most mentioned tickers")
    return _save(fig, path)


# --- the Markdown -----------------------------------------------------------------------


def pooled_table(metrics: Any) -> str:
    pooled = metrics[metrics["test_year"] == "all"].set_index("model")
    har = pooled.loc["har"] if "har" in pooled.index else None
    rows = []
    for model in _models(metrics):
        if model not in pooled.index:
            continue
        r = pooled.loc[model]
        d_mse = (r["mse"] / har["mse"] - 1) if har is not None and model != "har" else None
        d_r2 = (r["r2"] - har["r2"]) if har is not None and model != "har" else None
        rows.append([
            f"**{MODEL_LABEL.get(model, model)}**", fmt(_int(r.get("n_test"))), fmt(r["mse"]), r2(r["r2"]),
            r2(r.get("r2_oos")), pct(d_mse), r2(d_r2, sign=True),
            fmt(r.get("dm_stat")) if model != "har" else "—", pvalue(r.get("dm_pvalue")) if model != "har" else "—",
        ])
    return markdown_table(
        ["model", "test rows", "MSE", "R²", "R² (OOS)", "MSE vs HAR", "ΔR² vs HAR", "DM stat", "DM p-value"], rows)


def _int(v: Any) -> Any:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def per_year_table(metrics: Any, model: str) -> str:
    sub = metrics[metrics["model"] == model]
    years = sub[sub["test_year"] != "all"].assign(y=lambda d: d["test_year"].astype(int)).sort_values("y")
    with_lambda = model == "ridge" and "lambda" in sub.columns
    header = ["Test Year", "train rows", "test rows", "MSE", "R²"] + (["λ"] if with_lambda else [])
    rows = []
    for _, r in years.iterrows():
        rows.append([str(r["y"]), fmt(_int(r["n_train"])), fmt(_int(r["n_test"])), fmt(r["mse"]), r2(r["r2"])]
                    + ([lam(r["lambda"])] if with_lambda else []))
    pooled = sub[sub["test_year"] == "all"]
    if len(pooled):
        r = pooled.iloc[0]
        rows.append(["**Overall**", "", f"**{fmt(_int(r['n_test']))}**", f"**{fmt(r['mse'])}**",
                     f"**{r2(r['r2'])}**"] + ([""] if with_lambda else []))
    return markdown_table(header, rows, "c" + "r" * (len(header) - 1))


def versus_har_table(metrics: Any) -> str:
    per_year = metrics[metrics["test_year"] != "all"]
    har = per_year[per_year["model"] == "har"].set_index("test_year")
    models = [m for m in _models(metrics) if m != "har"]
    if har.empty or not models:
        return ""
    header = ["Test Year"]
    for m in models:
        name = MODEL_LABEL.get(m, m).split(" (")[0]
        header += [f"{name}: MSE vs HAR", f"{name}: ΔR²", f"{name}: DM p"]
    rows = []
    years = sorted(har.index, key=int) + (["all"] if (metrics["test_year"] == "all").any() else [])
    for y in years:
        row = ["**Overall**" if y == "all" else y]
        for m in models:
            sub = metrics[(metrics["model"] == m) & (metrics["test_year"] == y)]
            base = metrics[(metrics["model"] == "har") & (metrics["test_year"] == y)]
            if sub.empty or base.empty:
                row += ["—", "—", "—"]
                continue
            r, b = sub.iloc[0], base.iloc[0]
            row += [pct(r["mse"] / b["mse"] - 1), r2(r["r2"] - b["r2"], sign=True), pvalue(r.get("dm_pvalue"))]
        rows.append(row)
    return markdown_table(header, rows, "c" + "r" * (len(header) - 1))


def verdict(metrics: Any) -> str:
    """One sentence per text model: did it beat HAR out of sample (pooled, DM test)?"""
    pooled = metrics[metrics["test_year"] == "all"].set_index("model")
    if "har" not in pooled.index:
        return "No HAR baseline in these results, so no comparison is made."
    har = pooled.loc["har"]
    lines = []
    for model in [m for m in _models(metrics) if m != "har" and m in pooled.index]:
        r = pooled.loc[model]
        p = r.get("dm_pvalue")
        better = r["mse"] < har["mse"]
        significant = p is not None and not (isinstance(p, float) and math.isnan(p)) and float(p) < 0.05
        word = ("beats" if better else "does not beat") + " HAR"
        sig = ("significantly (Diebold–Mariano p " + pvalue(p) + ")") if significant else \
              ("but not significantly (Diebold–Mariano p " + pvalue(p) + ")" if better else
               "(Diebold–Mariano p " + pvalue(p) + ")")
        lines.append(
            f"- **{MODEL_LABEL.get(model, model)}** {word} {sig}: pooled MSE {fmt(r['mse'])} vs "
            f"{fmt(har['mse'])} ({pct(r['mse'] / har['mse'] - 1)}), R² {r2(r['r2'])} vs {r2(har['r2'])}."
        )
    return "\n".join(lines)


def provenance_section(run: Mapping[str, Any] | None) -> str:
    import yaml

    if not run:
        return "_No run.json was found beside the results, so the provenance is unknown._\n"
    out = []
    backend = run.get("backend") or {}
    cluster = run.get("cluster") or {}
    hw = run.get("hardware") or {}
    workers = cluster.get("workers") or {}
    out.append(markdown_table(["", ""], [
        ["run started", str(run.get("started_at"))],
        ["run directory", f"`{run.get('lake')}`"],
        ["backend", f"{backend.get('name')} ({backend.get('reason')})"],
        ["cluster", f"{cluster.get('kind')}, {workers.get('n_workers', '?')} workers, "
                    f"{workers.get('threads', '?')} threads"],
        ["machine", f"{hw.get('cpu_model', '?')}, {hw.get('cpu_count', '?')} cores, "
                    f"{hw.get('memory_gib', '?')} GiB" + (f", GPUs: {', '.join(hw['gpus'])}" if hw.get("gpus") else ", no GPU")],
        ["config sources", ", ".join(run.get("config_sources") or [])],
    ], "ll"))
    stages = run.get("stages") or []
    if stages:
        rows = []
        for s in stages:
            speed = f"{s['throughput']:,.1f} {s.get('unit', '')}" if s.get("throughput") else "—"
            own = s.get("manifest_seconds")
            rows.append([s["stage"], s["status"], fmt(_int(s.get("rows_in"))), fmt(_int(s.get("rows_out"))),
                         speed, f"{own:.1f}" if isinstance(own, (int, float)) else "—"])
        out.append("\n**Stage timings** (seconds as recorded in each dataset's manifest; "
                   "`skipped` = reused from an earlier run):\n")
        out.append(markdown_table(["stage", "this run", "rows in", "rows out", "throughput", "seconds"], rows))
    vers = run.get("versions") or {}
    if vers:
        out.append("\n**Versions**: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    config = run.get("config")
    if config:
        out.append("\n<details><summary>Configuration of the run</summary>\n\n```yaml\n"
                   + yaml.safe_dump(config, sort_keys=False).rstrip() + "\n```\n</details>")
    return "\n".join(out) + "\n"


# --- entry point --------------------------------------------------------------------------


def _find_lake(results_dir: Path, lake: str | Path | None) -> Path | None:
    if lake is not None:
        return Path(lake)
    parent = results_dir.resolve().parent
    return parent if (parent / "run.json").is_file() or (parent / "volatility").is_dir() else None


def write_report(results_dir: str | Path, out_dir: str | Path, *, lake: str | Path | None = None) -> Path:
    """Write ``report.md`` and its figures into ``out_dir`` (atomically) and return its path.

    Parameters
    ----------
    results_dir
        The train stage's output: ``metrics.csv``, ``metrics.json``, ``predictions/``.
    out_dir
        Folder to write (replaced as a whole): ``report.md``, ``fig*.png``, ``_manifest.json``.
    lake
        The run directory, for the volatility and mentions figures and ``run.json``; default:
        the parent of ``results_dir`` when it looks like a run directory.

    Returns
    -------
    Path
        ``out_dir / "report.md"``.
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    metrics = read_metrics(results_dir)
    lake_dir = _find_lake(results_dir, lake)
    run = None
    if lake_dir is not None and (lake_dir / "run.json").is_file():
        try:
            run = json.loads((lake_dir / "run.json").read_text())
        except json.JSONDecodeError:
            run = None
    vol_dir = lake_dir / "volatility" if lake_dir is not None else None
    men_dir = lake_dir / "mentions" if lake_dir is not None else None
    with atomic_dataset(out_dir) as tmp:
        figures: dict[str, Path | None] = {}
        figures["volatility"] = plot_volatility(
            daily_mean_volatility(vol_dir) if _has_parquet(vol_dir) else None, tmp / FIGURES["volatility"])
        figures["r2"] = plot_r2(metrics, tmp / FIGURES["r2"])
        figures["predicted"] = plot_predicted(read_predictions(results_dir), tmp / FIGURES["predicted"])
        lambdas, coefs = read_ridge_details(results_dir, metrics)
        _, har_coefs = read_ridge_details(results_dir, metrics, model="har")
        figures["ridge"] = plot_ridge(lambdas, coefs, tmp / FIGURES["ridge"], har_coefs, _lambda_grid(results_dir))
        figures["mentions"] = plot_mentions(
            mentions_per_day(men_dir) if _has_parquet(men_dir) else None, tmp / FIGURES["mentions"])
        text = render_markdown(metrics, figures, run, results_dir, coefs)
        (tmp / "report.md").write_text(text, encoding="utf-8")
        made = sorted(p.name for p in figures.values() if p is not None)
        write_manifest(
            tmp, stage="report",
            inputs={"results": file_fingerprint(results_dir)},
            params={"lake": str(lake_dir) if lake_dir else None},
            rows_in=int(len(metrics)), rows_out=len(made), seconds=round(time.perf_counter() - t0, 3),
            backend="cpu", schema={"report.md": "markdown", **{m: "png" for m in made}},
            figures=made,
        )
    return out_dir / "report.md"


def render_markdown(metrics: Any, figures: Mapping[str, Path | None], run: Mapping[str, Any] | None,
                    results_dir: Path, coefs: Any) -> str:
    target = None
    try:
        target = ((run or {}).get("config") or {}).get("train", {}).get("target")
    except AttributeError:
        target = None
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    models = _models(metrics)
    years = sorted({int(y) for y in metrics["test_year"] if y != "all"})
    parts = [
        "# wsb_gpu report: do WallStreetBets posts help forecast next-day volatility?",
        "",
        f"Generated {now} from `{results_dir}`. Target: `{target or 'y_1'}` (realized volatility of the "
        f"next trading day). Test years {years[0]}–{years[-1]}, each forecast by models trained on the "
        "preceding years only (rolling windows; ridge λ chosen by cross-validation with folds that are "
        "contiguous blocks in time)." if years else f"Generated {now} from `{results_dir}`.",
        "",
        "## Verdict",
        "",
        verdict(metrics),
        "",
        "## Pooled out-of-sample results (all test years)",
        "",
        pooled_table(metrics),
        "",
        "R² = 1 − SSE/SST with SST around each test year's own mean (as the seed reports); "
        "R² (OOS) uses the training-window mean instead. DM = Diebold–Mariano test of equal "
        "squared-error loss against HAR (loss differential averaged across stocks per trading day, "
        "Newey–West variance); a negative statistic means smaller errors than HAR.",
        "",
    ]
    for model in models:
        parts += [f"## {MODEL_LABEL.get(model, model)}", "", per_year_table(metrics, model), ""]
    vs = versus_har_table(metrics)
    if vs:
        parts += ["## Against HAR, per test year", "", vs, ""]
    captions = {
        "volatility": "Figure 1. Daily average realized volatility across stocks for the four windows.",
        "r2": "Figure 2. Out-of-sample R² per test year by model.",
        "predicted": "Figure 3. Predicted vs realized next-day volatility on the test rows.",
        "ridge": "Figure 4. Ridge: λ chosen in each training window, and the coefficients of the HAR terms.",
        "mentions": "Figure 5. Posts per day mentioning the most mentioned tickers.",
    }
    parts += ["## Figures", ""]
    for key, caption in captions.items():
        fig = figures.get(key)
        if fig is None:
            why = {
                "volatility": "no volatility dataset beside the results",
                "mentions": "no mentions dataset beside the results",
                "ridge": "no ridge results",
                "predicted": "no predictions in the results",
                "r2": "no per-year metrics",
            }[key]
            parts += [f"_{caption} Not drawn: {why}._", ""]
        else:
            parts += [f"![{caption}]({fig.name})", "", f"*{caption}*", ""]
    if key_missing_coefs(coefs) and figures.get("ridge") is not None:
        parts += ["_The train stage did not record ridge coefficients; Figure 4 shows λ only._", ""]
    parts += ["## Provenance", "", provenance_section(run)]
    return "\n".join(parts)


def key_missing_coefs(coefs: Any) -> bool:
    return coefs is None or getattr(coefs, "empty", True)
