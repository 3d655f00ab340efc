"""The report of the spike task (``train.task: spike``): does the text help to foresee
next-day volatility spikes, and which signal does?

Reads ``metrics.csv`` / ``metrics.json`` of :mod:`wsb_gpu.stages.spike` and writes the
Markdown; the figures are drawn by :mod:`wsb_gpu.report.figures`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from wsb_gpu.errors import WsbError
from wsb_gpu.report.load import _parquet_batches, has_parquet
from wsb_gpu.report.markdown import fixed, fmt, markdown_table, provenance_section, pvalue
from wsb_gpu.report.names import spike_label, spike_short

SPIKE_COLUMNS = ("model", "feature_set", "test_year", "n_test", "auc", "ap", "brier")


def is_spike(results_dir: Path) -> bool:
    """Whether ``results_dir`` holds the results of the spike task."""
    try:
        return json.loads((results_dir / "metrics.json").read_text()).get("task") == "spike"
    except (OSError, ValueError, AttributeError):
        return False


def read_spike_metrics(results_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``metrics.csv`` with a ``key`` column per forecast, and ``metrics.json``."""
    table = pd.read_csv(results_dir / "metrics.csv", dtype={"test_year": str})
    missing = [c for c in SPIKE_COLUMNS if c not in table.columns]
    if missing:
        msg = f"metrics.csv in '{results_dir}' lacks {missing}; it must be written by `wsb-gpu train --task spike`"
        raise WsbError(msg)
    table["key"] = [m if m == "har" else f"{m}__{f}" for m, f in zip(table["model"], table["feature_set"])]
    return table, json.loads((results_dir / "metrics.json").read_text())


def read_spike_predictions(results_dir: Path, keys: list[str], max_rows: int = 500_000) -> pd.DataFrame:
    """The pooled test rows' labels and probabilities (a fixed-seed sample of ``max_rows``)."""
    folder = results_dir / "predictions"
    if not has_parquet(folder):
        return pd.DataFrame()
    frames = list(_parquet_batches(folder, ["label", *[f"p_{k}" for k in keys]], required=["label"]))
    if not frames:
        return pd.DataFrame()
    pred = pd.concat(frames, ignore_index=True)
    return pred.sample(max_rows, random_state=0) if len(pred) > max_rows else pred


def name(key: str) -> str:
    """A forecast's name in the spike report.

    >>> name("har"), name("xgboost__vader")
    ('Logistic HAR', 'XGBoost · vader')
    """
    model, _, fs = key.partition("__")
    return spike_label(model) if not fs else f"{spike_short(model)} · {fs}"


def signal_table(table: pd.DataFrame) -> str:
    """Per feature set (rows) and model (columns): pooled AUC, ΔAUC against the logistic
    HAR and DeLong's one-sided p-value."""
    pooled = table[table["test_year"] == "all"]
    har = pooled[pooled["key"] == "har"]
    if har.empty:
        return "_No logistic HAR baseline in these results._"
    har_auc = float(har["auc"].iloc[0])
    models = [m for m in dict.fromkeys(pooled["model"]) if m != "har"]
    header = ["feature set"]
    for m in models:
        short = spike_short(m)
        header += [f"{short}: AUC", f"{short}: ΔAUC", f"{short}: DeLong p", f"{short}: AP"]
    rows = []
    for fs in dict.fromkeys(pooled.loc[pooled["model"] != "har", "feature_set"]):
        row = [f"**{fs}**"]
        for m in models:
            hit = pooled[(pooled["model"] == m) & (pooled["feature_set"] == fs)]
            if hit.empty:
                row += ["—"] * 4
                continue
            r = hit.iloc[0]
            p = r.get("auc_pvalue")
            star = " *" if isinstance(p, float) and math.isfinite(p) and p < 0.05 else ""
            row += [fixed(r["auc"]), f"{r['auc'] - har_auc:+.3f}{star}", pvalue(p), fixed(r["ap"])]
        rows.append(row)
    return markdown_table(header, rows, "l" + "r" * (len(header) - 1))


def pooled_table(table: pd.DataFrame) -> str:
    """Every forecast's pooled classification metrics."""
    pooled = table[table["test_year"] == "all"]
    rows = [
        [
            f"**{name(r['key'])}**" if r["key"] == "har" else name(r["key"]),
            fmt(int(r["n_test"])),
            fixed(r["base_rate"]),
            fixed(r["auc"]),
            fixed(r["ap"]),
            fixed(r["brier"], 4),
            fixed(r["log_loss"], 4),
            fixed(r["precision"]),
            fixed(r["recall"]),
            fixed(r["f1"]),
        ]
        for _, r in pooled.iterrows()
    ]
    header = ["forecast", "test rows", "spike rate", "AUC", "AP", "Brier", "log loss", "precision", "recall", "F1"]
    return markdown_table(header, rows, "l" + "r" * (len(header) - 1))


def per_year_table(table: pd.DataFrame) -> str:
    """AUC per test year (rows) and forecast (columns)."""
    years = sorted({y for y in table["test_year"] if y != "all"}, key=int)
    keys = list(dict.fromkeys(table["key"]))
    auc = table.set_index(["key", "test_year"])["auc"]
    rate = table[table["key"] == "har"].set_index("test_year")["base_rate"]
    rows = [
        [y, fixed(rate.get(y))] + [fixed(auc.get((k, y))) for k in keys] for y in [*years, "all"] if (keys[0], y) in auc
    ]
    if rows and rows[-1][0] == "all":
        rows[-1][0] = "**Overall**"
    return markdown_table(["Test Year", "spike rate", *[name(k) for k in keys]], rows, "c" + "r" * (len(keys) + 1))


def verdict(table: pd.DataFrame) -> str:
    """Per model: its best feature set by pooled AUC against the logistic HAR."""
    pooled = table[table["test_year"] == "all"]
    har = pooled[pooled["key"] == "har"]
    if har.empty:
        return "No logistic HAR baseline in these results, so no comparison is made."
    har_auc = float(har["auc"].iloc[0])
    lines = []
    for m in [m for m in dict.fromkeys(pooled["model"]) if m != "har"]:
        rows = pooled[pooled["model"] == m].sort_values("auc", ascending=False, kind="stable")
        best = rows.iloc[0]
        p = best.get("auc_pvalue")
        significant = isinstance(p, float) and math.isfinite(p) and p < 0.05
        word = "beats" if best["auc"] > har_auc else "does not beat"
        how = "significantly" if significant else ("but not significantly" if best["auc"] > har_auc else "")
        helped = rows[(rows["auc_pvalue"] < 0.05) & (rows["auc"] > har_auc)]["feature_set"].tolist()
        lines.append(
            f"- **{spike_label(m)}**: best on **{best['feature_set']}**, which {word} the "
            f"logistic HAR {how} (AUC {best['auc']:.3f} vs {har_auc:.3f}, DeLong p {pvalue(p)}). "
            + (f"Sets ahead at p < 0.05: {', '.join(helped)}." if helped else "No set is ahead at p < 0.05.")
        )
    return "\n".join(lines)


def render_spike_markdown(
    table: pd.DataFrame,
    info: Mapping[str, Any],
    figures: Mapping[str, Path | None],
    run: Mapping[str, Any] | None,
    results_dir: Path,
) -> str:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    years = sorted({int(y) for y in table["test_year"] if y != "all"})
    rates = info.get("spike_rate", {})
    train_rates = [v.get("train") for v in rates.values() if v.get("train") is not None]
    parts = [
        "# wsb_gpu report: do WallStreetBets posts help foresee next-day volatility spikes, and which signal does?",
        "",
        f"Generated {now} from `{results_dir}`. Task: **spike**, label {info.get('label', 'y_1 > k * vol_22')}"
        + (
            f"; {min(train_rates):.1%}–{max(train_rates):.1%} of the training windows' stock-days are spikes"
            if train_rates
            else ""
        )
        + (
            f". Test years {years[0]}–{years[-1]}, each scored by classifiers trained on the preceding years only."
            if years
            else "."
        ),
        "",
        "## Which signal helps?",
        "",
        signal_table(table),
        "",
        "Each row is a feature set: the four HAR terms plus the set's families. ΔAUC is pooled over "
        "the test years against the logistic regression on the HAR terms alone; * = DeLong's one-sided "
        "p < 0.05 (H1: larger AUC; the test treats stock-days as independent, so read it as indicative). "
        "AP = average precision, the area under the precision–recall curve: its no-skill level is the spike rate.",
        "",
        "## Verdict",
        "",
        verdict(table),
        "",
        "## Pooled out-of-sample results (all test years)",
        "",
        pooled_table(table),
        "",
        "Precision, recall and F1 at each window's threshold, chosen on its training years (the F1-maximising "
        "score; for XGBoost on its held-out last training year); the test year never sets it.",
        "",
        "## AUC per test year",
        "",
        per_year_table(table),
        "",
        "## Figures",
        "",
    ]
    captions = {
        "roc_pr": "Figure 8. ROC and precision–recall curves of every forecast on the pooled test rows.",
        "volatility": "Figure 1. Daily average realized volatility across stocks for the four windows.",
        "scatter_matrix": "Figure 6. Scatter / KDE matrix of the volatility lags and the target (log axes).",
        "rolling_beta": "Figure 7. 22-trading-day rolling β of y_1 on vol_1, pooled over stocks.",
    }
    for key, caption in captions.items():
        fig = figures.get(key)
        parts += (
            [f"![{caption}]({fig.name})", "", f"*{caption}*", ""]
            if fig is not None
            else [f"_{caption} Not drawn._", ""]
        )
    parts += ["## Provenance", "", provenance_section(run)]
    return "\n".join(parts)
