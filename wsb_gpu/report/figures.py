"""The report's figures (matplotlib, Agg backend), one function per figure.

Each takes what :mod:`wsb_gpu.report.load` read and a path, draws, saves a PNG and returns
the path, or None when there is nothing to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsb_gpu.models import MODELS, color
from wsb_gpu.models import label as model_label
from wsb_gpu.report.load import WINDOWS, models_of

WINDOW_LABEL = {"vol_1": "1 day", "vol_5": "5 days (week)", "vol_22": "22 days (month)", "vol_63": "63 days (quarter)"}
FIGURES = {
    "signals": "fig0_which_signal_helps.png",
    "volatility": "fig1_volatility.png",
    "r2": "fig2_r2_by_year.png",
    "predicted": "fig3_predicted_vs_realized.png",
    "ridge": "fig4_ridge_lambda_coefficients.png",
    "mentions": "fig5_mentions_top_tickers.png",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
        }
    )
    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_signals(table: pd.DataFrame, path: Path) -> Path | None:
    """Which signal helps: ΔR² against HAR per feature set (rows) and model (columns).

    ``table`` is :func:`wsb_gpu.report.load.signal_table`'s frame. Each cell is coloured by
    ΔR² (red: worse than HAR, blue: better) and marked ``*`` when the one-sided
    Diebold–Mariano p-value is below 0.05 and ``●`` / ``○`` when the forecast is in the
    90 % / only the 75 %... Model Confidence Set.
    """
    if table is None or table.empty:
        return None
    plt = _pyplot()
    sets = list(dict.fromkeys(table["feature_set"]))
    models = list(dict.fromkeys(table["family"]))
    values = np.full((len(sets), len(models)), np.nan)
    marks = [["" for _ in models] for _ in sets]
    for _, r in table.iterrows():
        i, j = sets.index(r["feature_set"]), models.index(r["family"])
        values[i, j] = r["d_r2"]
        mark = "*" if np.isfinite(r["dm_pvalue"]) and r["dm_pvalue"] < 0.05 else ""
        if r.get("in_mcs_25") is True:
            mark += " ●"
        elif r.get("in_mcs_10") is True:
            mark += " ○"
        marks[i][j] = f"{r['d_r2']:+.3f}{mark}" if np.isfinite(r["d_r2"]) else "—"
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 + 1.9 * len(models)), max(3.0, 0.9 + 0.42 * len(sets))))
    ax.grid(False)
    im = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    for i in range(len(sets)):
        for j in range(len(models)):
            dark = np.isfinite(values[i, j]) and abs(values[i, j]) > 0.6 * bound
            ax.text(j, i, marks[i][j], ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.set_xticks(range(len(models)), [model_label(m).split(" (")[0] for m in models])
    ax.set_yticks(range(len(sets)), sets)
    ax.set_xlabel("model (HAR terms + the feature set)")
    ax.set_ylabel("feature set")
    ax.set_title(
        "Which signal helps? Pooled ΔR² against HAR\n* DM p < 0.05   ● in the 75 % MCS   ○ in the 90 % MCS only"
    )
    fig.colorbar(im, ax=ax, label="ΔR² vs HAR", shrink=0.8)
    return _save(fig, path)


def plot_volatility(daily: Any, path: Path) -> Path | None:
    if daily is None or daily.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 5))
    for col in WINDOWS:
        if col in daily.columns:
            ax.plot(
                daily.index,
                daily[col],
                lw=0.9 if col == "vol_1" else 1.4,
                alpha=0.75 if col == "vol_1" else 1.0,
                label=WINDOW_LABEL[col],
            )
    ax.set_title("Daily average realized volatility across stocks, by window")
    ax.set_xlabel("trading date")
    ax.set_ylabel("realized volatility  √Σ r²  (mean over stocks)")
    ax.legend(title="window", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, frameon=False)
    return _save(fig, path)


def plot_r2(metrics: pd.DataFrame, path: Path) -> Path | None:
    per_year = metrics[metrics["test_year"] != "all"]
    if per_year.empty:
        return None
    plt = _pyplot()
    models = models_of(per_year)
    years = sorted(per_year["test_year"].astype(int).unique())
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(years))
    for i, model in enumerate(models):
        sub = per_year[per_year["model"] == model].assign(year=lambda d: d["test_year"].astype(int))
        vals = sub.set_index("year")["r2"].reindex(years)
        pooled = metrics[(metrics["model"] == model) & (metrics["test_year"] == "all")]["r2"]
        label = model_label(model)
        if len(pooled):
            label += f"  (pooled R² {float(pooled.iloc[0]):.3f})"
        ax.bar(x + (i - (len(models) - 1) / 2) * width, vals.to_numpy(), width, label=label, color=color(model))
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
    return {m: out[m] for m in [*MODELS, *sorted(out)] if m in out}


def plot_predicted(pred: Any, path: Path) -> Path | None:
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
    lo, hi = np.quantile(values, [0.005, 0.995]) if values.size else (1e-3, 1.0)
    for ax, (model, (y, yhat)) in zip(axes[0], series.items()):
        ok = np.isfinite(y) & np.isfinite(yhat) & (y > 0) & (yhat > 0)
        hidden = int((np.isfinite(yhat) & (yhat <= 0)).sum())
        y, yhat = y[ok], yhat[ok]
        ax.hexbin(
            yhat,
            y,
            gridsize=40,
            bins="log",
            cmap="viridis",
            mincnt=1,
            xscale="log",
            yscale="log",
            extent=(np.log10(lo), np.log10(hi), np.log10(lo), np.log10(hi)),
        )
        ax.plot([lo, hi], [lo, hi], color="red", lw=1.2, ls="--")
        corr = float(np.corrcoef(np.log(y), np.log(yhat))[0, 1]) if y.size > 2 else float("nan")
        note = f" ({hidden:,} with ŷ ≤ 0 not shown)" if hidden else ""
        ax.set_title(
            f"{model_label(model)}\nn = {y.size:,}{note}, corr(log ŷ, log y) = {corr:.2f}", fontsize=9 if hidden else 10
        )
        ax.set_xlabel("predicted next-day volatility ŷ")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    axes[0][0].set_ylabel("realized next-day volatility y")
    fig.suptitle(
        "Predicted vs realized next-day volatility on the test rows (log axes; colour = log count; dashed: y = ŷ)"
    )
    return _save(fig, path)


def plot_ridge(
    lambdas: Any, coefs: Any, path: Path, har_coefs: Any = None, grid: list[float] | None = None
) -> Path | None:
    if (lambdas is None or lambdas.empty) and (coefs is None or coefs.empty):
        return None
    plt = _pyplot()
    panels = int(lambdas is not None and not lambdas.empty) + int(coefs is not None and not coefs.empty)
    fig, axes = plt.subplots(1, panels, figsize=(5.8 * panels, 4.6), squeeze=False)
    i = 0
    if lambdas is not None and not lambdas.empty:
        ax = axes[0][i]
        i += 1
        ax.plot(lambdas.index, lambdas.to_numpy(), marker="o", color=color("ridge"))
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
            ax.plot(
                coefs.index,
                coefs[term],
                marker="o",
                color=colors[k % len(colors)],
                label=f"ridge: {WINDOW_LABEL.get(term, term)}",
            )
            if har_coefs is not None and term in getattr(har_coefs, "columns", ()):
                ax.plot(
                    har_coefs.index,
                    har_coefs[term],
                    ls="--",
                    marker="x",
                    color=colors[k % len(colors)],
                    alpha=0.7,
                    label=f"HAR: {WINDOW_LABEL.get(term, term)}",
                )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(list(coefs.index))
        ax.set_title(
            "HAR-term coefficients (solid: ridge, dashed: HAR)"
            if har_coefs is not None and not har_coefs.empty
            else "Ridge coefficients of the HAR terms"
        )
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
    fig, axes = plt.subplots(
        len(tickers), 1, figsize=(10, 1.5 + 1.35 * len(tickers)), sharex=True, sharey=True, squeeze=False
    )
    smooth = per_day.rolling(30, min_periods=1).mean()
    for k, (ax, ticker) in enumerate(zip(axes[:, 0], tickers)):
        # fill_between draws one polygon; bar() would draw thousands of rectangles (slow).
        ax.fill_between(per_day.index, per_day[ticker].to_numpy(), step="mid", color="0.8", lw=0, label="per day")
        ax.plot(smooth.index, smooth[ticker], color=colors[k % len(colors)], lw=1.6, label="30-day mean")
        ax.text(
            0.005,
            0.92,
            f"{ticker}: {int(per_day[ticker].sum()):,} posts",
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            fontweight="bold",
        )
        ax.set_ylabel("posts")
    axes[0, 0].legend(loc="upper right", frameon=False, fontsize=8, ncol=2)
    axes[-1, 0].set_xlabel("UTC date of the post")
    fig.suptitle(f"Posts per day mentioning the {len(tickers)} most mentioned tickers")
    return _save(fig, path)
