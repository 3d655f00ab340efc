"""The report's figures (matplotlib, Agg backend), one function per figure.

Each takes what :mod:`wsb_gpu.report.load` read and a path, draws, saves a PNG and returns
the path, or None when there is nothing to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsb_gpu.models import MODELS
from wsb_gpu.report.load import SAMPLE_COLUMNS, WINDOWS, models_of
from wsb_gpu.report.names import color, spike_short
from wsb_gpu.report.names import label as model_label

WINDOW_LABEL = {"vol_1": "1 day", "vol_5": "5 days (week)", "vol_22": "22 days (month)", "vol_63": "63 days (quarter)"}
FIGURES = {
    "signals": "fig0_which_signal_helps.png",
    "volatility": "fig1_volatility.png",
    "r2": "fig2_r2_by_year.png",
    "predicted": "fig3_predicted_vs_realized.png",
    "ridge": "fig4_ridge_lambda_coefficients.png",
    "mentions": "fig5_mentions_top_tickers.png",
    "scatter_matrix": "fig6_scatter_matrix.png",
    "rolling_beta": "fig7_rolling_beta.png",
    "roc_pr": "fig8_spike_roc_pr.png",
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


def _log_limits(values: np.ndarray) -> tuple[float, float]:
    """Axis limits of a log axis: the 0.5 % and 99.5 % quantiles of the positive values,
    widened a little (and around the value when there is only one).

    >>> _log_limits(np.array([1.0, 1.0]))
    (0.5, 2.0)
    """
    lo, hi = (float(q) for q in np.quantile(values, [0.005, 0.995])) if values.size else (1e-3, 1.0)
    return (lo / 2, hi * 2) if hi <= lo * 1.5 else (lo / 1.1, hi * 1.1)


def _density(ax: Any, values: np.ndarray, limits: tuple[float, float]) -> None:
    """The diagonal panel: a KDE of log10 of the values, a histogram when that fails."""
    from scipy.stats import gaussian_kde

    logs = np.log10(values)
    grid = np.linspace(np.log10(limits[0]), np.log10(limits[1]), 200)
    try:
        # gaussian_kde needs spread: a constant column makes its covariance singular.
        density = gaussian_kde(logs)(grid)
    except (np.linalg.LinAlgError, ValueError):
        ax.hist(values, bins=np.logspace(grid[0], grid[-1], 30), color="0.5")
        return
    ax.fill_between(10**grid, density, color="C0", alpha=0.35, lw=0)
    ax.plot(10**grid, density, color="C0", lw=1.2)
    ax.set_ylim(bottom=0)


def _log_ticks(axis: Any) -> None:
    """Plain-number ticks at 1 and 3 × 10ᵏ on a log axis, no minor labels: a panel of a
    pairs plot is too small for 10ᵏ labels at every minor tick."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0), numticks=6))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_scatter_matrix(sample: Any, path: Path) -> Path | None:
    """Pairwise scatter of ``vol_1 … vol_63`` and ``y_1`` with a KDE of each on the diagonal.

    ``sample`` is :func:`wsb_gpu.report.load.volatility_sample`'s frame. All axes are log
    scale, limited to each column's 0.5 %–99.5 % quantiles of the positive values: the
    volatilities are right-skewed over orders of magnitude, and a linear axis would squash
    the bulk into a corner. Rows with a zero (days without a price change) cannot be shown
    on a log axis; the title counts them. The diagonal is the KDE of log10 of the column
    (a histogram when the column is constant); each scatter panel notes the correlation
    of the logs.
    """
    if sample is None or sample.empty or any(c not in sample.columns for c in SAMPLE_COLUMNS):
        return None
    data = sample[list(SAMPLE_COLUMNS)].to_numpy(float)
    positive = np.isfinite(data).all(axis=1) & (data > 0).all(axis=1)
    shown, hidden = data[positive], int((~positive).sum())
    if len(shown) < 2:
        return None
    plt = _pyplot()
    k = len(SAMPLE_COLUMNS)
    limits = [_log_limits(shown[:, j]) for j in range(k)]
    logs = np.log10(shown)
    fig, axes = plt.subplots(k, k, figsize=(11, 11), squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            ax.set_xscale("log")
            if i == j:
                _density(ax, shown[:, j], limits[j])
                ax.set_yticks([])
            else:
                ax.set_yscale("log")
                ax.scatter(shown[:, j], shown[:, i], s=2, alpha=0.15, color="C0", lw=0, rasterized=True)
                ax.set_ylim(limits[i])
                if logs[:, j].std() > 0 and logs[:, i].std() > 0:
                    rho = np.corrcoef(logs[:, j], logs[:, i])[0, 1]
                    ax.text(0.04, 0.92, f"ρ = {rho:.2f}", transform=ax.transAxes, fontsize=8, va="top")
            ax.set_xlim(limits[j])
            ax.tick_params(labelsize=7)
            _log_ticks(ax.xaxis)
            if i != j:
                _log_ticks(ax.yaxis)
            # Labels on the outer panels only, as in a pairs plot (the diagonal has no y scale).
            ax.tick_params(which="both", labelbottom=i == k - 1, labelleft=j == 0 and i != 0)
            if i == k - 1:
                ax.set_xlabel(SAMPLE_COLUMNS[j])
                ax.tick_params(axis="x", which="both", labelrotation=45)
            if j == 0 and i != 0:
                ax.set_ylabel(SAMPLE_COLUMNS[i])
    note = f"; {hidden:,} rows with a zero not shown" if hidden else ""
    fig.suptitle(
        f"Volatility lags vs next-day volatility y_1: {len(shown):,} sampled stock-days{note}\n"
        "log axes (0.5–99.5 % quantiles); diagonal: KDE of log10; ρ: correlation of the logs"
    )
    return _save(fig, path)


def plot_rolling_beta(beta: Any, path: Path, window: int = 22) -> Path | None:
    """The rolling β of ``y_1`` on ``vol_1`` over time, with a zero line.

    ``beta`` is :func:`wsb_gpu.report.load.rolling_beta`'s frame (``date, beta, n``),
    computed over ``window`` trading dates (for the title).
    """
    if beta is None or beta.empty or "beta" not in beta.columns or not np.isfinite(beta["beta"]).any():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(pd.to_datetime(beta["date"]), beta["beta"].to_numpy(float), lw=0.9, color="C0")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_title(f"Rolling {window}-trading-day β of y_1 on vol_1 (OLS pooled over every stock-day in the window)")
    ax.set_xlabel("last trading date of the window")
    ax.set_ylabel("β  (Δ y_1 per unit of vol_1)")
    return _save(fig, path)


def plot_roc_pr(pred: Any, keys: list[str], path: Path) -> Path | None:
    """The spike task: ROC and precision–recall curves of each forecast on the pooled test rows."""
    if pred is None or len(pred) == 0 or "label" not in pred or not keys:
        return None
    y = pred["label"].to_numpy(bool)
    if y.all() or not y.any():
        return None
    from wsb_gpu.models.classify import _sorted_counts, average_precision, roc_auc

    plt = _pyplot()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4.4))
    for key in keys:
        col = f"p_{key}"
        if col not in pred:
            continue
        p = pred[col].to_numpy(float)
        # One point per distinct score, as the AUC and AP in the legend count ties.
        tp, fp, _ = _sorted_counts(y, p)
        tpr, fpr = np.r_[0.0, tp / y.sum()], np.r_[0.0, fp / (~y).sum()]
        precision = tp / (tp + fp)
        model, _, fs = key.partition("__")
        name = spike_short(model) + (f" · {fs}" if fs else "")
        kw = {"color": color(key), "lw": 1.4 if model == "har" else 1.1}
        ax_roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y, p):.3f})", **kw)
        ax_pr.plot(tpr[1:], precision, label=f"{name} (AP {average_precision(y, p):.3f})", **kw)
    ax_roc.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax_pr.axhline(y.mean(), color="0.6", lw=0.8, ls="--", label=f"base rate {y.mean():.3f}")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision–recall", ylim=(0, 1.02))
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "upper right")
    return _save(fig, path)
