"""The report's Markdown: number formats, the tables, the verdict and the provenance."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from wsb_gpu.models import label as model_label
from wsb_gpu.report.load import models_of, pooled_rows, versus_har


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


def pooled_table(metrics: pd.DataFrame) -> str:
    """The pooled results of every model, with the changes against HAR."""
    rows = []
    for model, r, c in pooled_rows(metrics):
        rows.append(
            [
                f"**{model_label(model)}**",
                fmt(_int(r.get("n_test"))),
                fmt(r["mse"]),
                r2(r["r2"]),
                r2(r.get("r2_oos")),
                pct(None if c is None else c["mse_change"]),
                r2(None if c is None else c["d_r2"], sign=True),
                fmt(r.get("dm_stat")) if model != "har" else "—",
                pvalue(r.get("dm_pvalue")) if model != "har" else "—",
            ]
        )
    return markdown_table(
        ["model", "test rows", "MSE", "R²", "R² (OOS)", "MSE vs HAR", "ΔR² vs HAR", "DM stat", "DM p-value"], rows
    )


def _int(v: Any) -> Any:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def per_year_table(metrics: pd.DataFrame, model: str) -> str:
    sub = metrics[metrics["model"] == model]
    years = sub[sub["test_year"] != "all"].assign(y=lambda d: d["test_year"].astype(int)).sort_values("y")
    with_lambda = model == "ridge" and "lambda" in sub.columns
    header = ["Test Year", "train rows", "test rows", "MSE", "R²"] + (["λ"] if with_lambda else [])
    rows = []
    for _, r in years.iterrows():
        rows.append(
            [str(r["y"]), fmt(_int(r["n_train"])), fmt(_int(r["n_test"])), fmt(r["mse"]), r2(r["r2"])]
            + ([lam(r["lambda"])] if with_lambda else [])
        )
    pooled = sub[sub["test_year"] == "all"]
    if len(pooled):
        r = pooled.iloc[0]
        rows.append(
            ["**Overall**", "", f"**{fmt(_int(r['n_test']))}**", f"**{fmt(r['mse'])}**", f"**{r2(r['r2'])}**"]
            + ([""] if with_lambda else [])
        )
    return markdown_table(header, rows, "c" + "r" * (len(header) - 1))


def versus_har_table(metrics: pd.DataFrame) -> str:
    """Per test year (and pooled): each model's MSE change, ΔR² and DM p-value against HAR."""
    vs = versus_har(metrics)
    models = [m for m in models_of(metrics) if m != "har"]
    har_years = [y for (m, y) in vs.index if m == "har"]
    if not har_years or not models:
        return ""
    header = ["Test Year"]
    for m in models:
        name = model_label(m).split(" (")[0]
        header += [f"{name}: MSE vs HAR", f"{name}: ΔR²", f"{name}: DM p"]
    rows = []
    years = sorted((y for y in har_years if y != "all"), key=int) + (["all"] if "all" in har_years else [])
    for y in years:
        row = ["**Overall**" if y == "all" else y]
        for m in models:
            if (m, y) not in vs.index:
                row += ["—", "—", "—"]
                continue
            c = vs.loc[(m, y)]
            row += [pct(c["mse_change"]), r2(c["d_r2"], sign=True), pvalue(c["dm_pvalue"])]
        rows.append(row)
    return markdown_table(header, rows, "c" + "r" * (len(header) - 1))


def verdict(metrics: pd.DataFrame) -> str:
    """One sentence per text model: did it beat HAR out of sample (pooled, DM test)?"""
    vs = versus_har(metrics)
    if ("har", "all") not in vs.index:
        return "No HAR baseline in these results, so no comparison is made."
    har = vs.loc[("har", "all")]
    lines = []
    for model in [m for m in models_of(metrics) if m != "har" and (m, "all") in vs.index]:
        c = vs.loc[(model, "all")]
        p = c["dm_pvalue"]
        better = c["mse"] < har["mse"]
        significant = p is not None and not (isinstance(p, float) and math.isnan(p)) and float(p) < 0.05
        word = ("beats" if better else "does not beat") + " HAR"
        sig = (
            ("significantly (Diebold–Mariano p " + pvalue(p) + ")")
            if significant
            else (
                "but not significantly (Diebold–Mariano p " + pvalue(p) + ")"
                if better
                else "(Diebold–Mariano p " + pvalue(p) + ")"
            )
        )
        lines.append(
            f"- **{model_label(model)}** {word} {sig}: pooled MSE {fmt(c['mse'])} vs "
            f"{fmt(har['mse'])} ({pct(c['mse_change'])}), R² {r2(c['r2'])} vs {r2(har['r2'])}."
        )
    return "\n".join(lines)


def provenance_section(run: Mapping[str, Any] | None) -> str:
    if not run:
        return "_No run.json was found beside the results, so the provenance is unknown._\n"
    out = []
    backend = run.get("backend") or {}
    cluster = run.get("cluster") or {}
    hw = run.get("hardware") or {}
    workers = cluster.get("workers") or {}
    out.append(
        markdown_table(
            ["", ""],
            [
                ["run started", str(run.get("started_at"))],
                ["run directory", f"`{run.get('lake')}`"],
                ["backend", f"{backend.get('name')} ({backend.get('reason')})"],
                [
                    "cluster",
                    f"{cluster.get('kind')}, {workers.get('n_workers', '?')} workers, "
                    f"{workers.get('threads', '?')} threads",
                ],
                [
                    "machine",
                    f"{hw.get('cpu_model', '?')}, {hw.get('cpu_count', '?')} cores, "
                    f"{hw.get('memory_gib', '?')} GiB"
                    + (f", GPUs: {', '.join(hw['gpus'])}" if hw.get("gpus") else ", no GPU"),
                ],
                ["config sources", ", ".join(run.get("config_sources") or [])],
            ],
            "ll",
        )
    )
    stages = run.get("stages") or []
    if stages:
        rows = []
        for s in stages:
            speed = f"{s['throughput']:,.1f} {s.get('unit', '')}" if s.get("throughput") else "—"
            own = s.get("manifest_seconds")
            rows.append(
                [
                    s["stage"],
                    s["status"],
                    fmt(_int(s.get("rows_in"))),
                    fmt(_int(s.get("rows_out"))),
                    speed,
                    f"{own:.1f}" if isinstance(own, (int, float)) else "—",
                ]
            )
        out.append(
            "\n**Stage timings** (seconds as recorded in each dataset's manifest; "
            "`skipped` = reused from an earlier run):\n"
        )
        out.append(markdown_table(["stage", "this run", "rows in", "rows out", "throughput", "seconds"], rows))
    vers = run.get("versions") or {}
    if vers:
        out.append("\n**Versions**: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    config = run.get("config")
    if config:
        out.append(
            "\n<details><summary>Configuration of the run</summary>\n\n```yaml\n"
            + yaml.safe_dump(config, sort_keys=False).rstrip()
            + "\n```\n</details>"
        )
    return "\n".join(out) + "\n"


def render_markdown(
    metrics: pd.DataFrame,
    figures: Mapping[str, Path | None],
    run: Mapping[str, Any] | None,
    results_dir: Path,
    coefs: Any,
) -> str:
    target = None
    try:
        target = ((run or {}).get("config") or {}).get("train", {}).get("target")
    except AttributeError:
        target = None
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    models = models_of(metrics)
    years = sorted({int(y) for y in metrics["test_year"] if y != "all"})
    parts = [
        "# wsb_gpu report: do WallStreetBets posts help forecast next-day volatility?",
        "",
        f"Generated {now} from `{results_dir}`. Target: `{target or 'y_1'}` (realized volatility of the "
        f"next trading day). Test years {years[0]}–{years[-1]}, each forecast by models trained on the "
        "preceding years only (rolling windows; ridge λ chosen by cross-validation with folds that are "
        "contiguous blocks in time)."
        if years
        else f"Generated {now} from `{results_dir}`.",
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
        parts += [f"## {model_label(model)}", "", per_year_table(metrics, model), ""]
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
