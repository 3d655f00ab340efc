"""The report's Markdown: number formats, the tables, the verdict and the provenance."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from wsb_gpu.models import ordered
from wsb_gpu.report.load import headline, mcs_of, models_of, pooled_rows, signal_table, versus_har
from wsb_gpu.report.names import label as model_label
from wsb_gpu.signals.families import FAMILIES


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


def fixed(value: Any, digits: int = 3, scale: float = 1.0, suffix: str = "") -> str:
    """A number with fixed decimals (times ``scale``), ``—`` when missing or not finite.

    >>> fixed(0.6461), fixed(0.4512, 2, 100, " %"), fixed(float("nan")), fixed(None)
    ('0.646', '45.12 %', '—', '—')
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{scale * v:.{digits}f}{suffix}" if math.isfinite(v) else "—"


def losses_table(metrics: pd.DataFrame) -> str:
    """Every forecast's pooled RMSE, MAE, MAPE and QLIKE, and the Diebold–Mariano p-values
    against HAR on squared error and on QLIKE ("" for results without these columns)."""
    if "qlike" not in metrics.columns:
        return ""
    pooled = metrics[metrics["test_year"] == "all"].set_index("model")
    if "har" not in pooled.index:
        return ""
    har_q = pooled.loc["har", "qlike"]
    rows = []
    for key in ordered(list(pooled.index)):
        r = pooled.loc[key]
        is_har = key == "har"
        rows.append(
            [
                f"**{model_label(key)}**" if is_har else model_label(key),
                fmt(r.get("rmse")),
                fmt(r.get("mae")),
                fixed(r.get("mape"), 2, 100, " %"),
                fmt(r.get("qlike")),
                "—" if is_har else f"{r.get('qlike') - har_q:+.4f}",
                "—" if is_har else pvalue(r.get("dm_pvalue")),
                "—" if is_har else pvalue(r.get("dm_qlike_pvalue")),
            ]
        )
    return markdown_table(
        ["forecast", "RMSE", "MAE", "MAPE", "QLIKE", "QLIKE − HAR", "DM p (squared error)", "DM p (QLIKE)"], rows
    )


def _int(v: Any) -> Any:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def per_year_table(metrics: pd.DataFrame, model: str) -> str:
    sub = metrics[metrics["model"] == model]
    years = sub[sub["test_year"] != "all"].assign(y=lambda d: d["test_year"].astype(int)).sort_values("y")
    with_lambda = model.split("__")[0] in ("ridge", "enet") and "lambda" in sub.columns
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


def versus_har_table(metrics: pd.DataFrame, models: Iterable[str] | None = None) -> str:
    """Per test year (and pooled): each model's MSE change, ΔR² and DM p-value against HAR."""
    vs = versus_har(metrics)
    models = [m for m in (models if models is not None else models_of(metrics)) if m != "har"]
    har_years = [y for (m, y) in vs.index if m == "har"]
    if not har_years or not models:
        return ""
    header = ["Test Year"]
    for m in models:
        name = model_label(m).split(" (HAR")[0]
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


def mcs_mark(in_10: Any, in_25: Any) -> str:
    """The Model Confidence Set membership of a forecast as a table cell.

    >>> mcs_mark(True, True), mcs_mark(True, False), mcs_mark(False, False), mcs_mark(None, None)
    ('75 % and 90 %', '90 % only', 'out', '—')
    """
    if in_10 is None:
        return "—"
    if in_25:
        return "75 % and 90 %"
    return "90 % only" if in_10 else "out"


def signal_section(metrics: pd.DataFrame) -> str:
    """The table that opens the report: per feature set and model, the pooled change against
    HAR, the Diebold–Mariano p-value and the Model Confidence Set membership."""
    table = signal_table(metrics)
    if table.empty:
        return "_One forecast only: no feature sets to compare._"
    families = list(dict.fromkeys(table["family"]))
    base = "dm_base_pvalue" in table and table["dm_base_pvalue"].notna().any()
    width = 5 if base else 4
    header = ["feature set"]
    for fam in families:
        name = model_label(fam).split(" (")[0]
        header += [f"{name}: ΔR²", f"{name}: MSE vs HAR", f"{name}: DM p"]
        header += [f"{name}: DM p vs own HAR set"] if base else []
        header += [f"{name}: MCS"]
    rows = []
    for fs in dict.fromkeys(table["feature_set"]):
        row = [f"**{fs}**"]
        for fam in families:
            hit = table[(table["feature_set"] == fs) & (table["family"] == fam)]
            if not len(hit):
                row += ["—"] * width
                continue
            r = hit.iloc[0]
            p = r["dm_pvalue"]
            star = " *" if isinstance(p, float) and math.isfinite(p) and p < 0.05 else ""
            row += [r2(r["d_r2"], sign=True) + star, pct(r["mse_change"]), pvalue(p)]
            row += [pvalue(r["dm_base_pvalue"]) if fs != "har" else "—"] if base else []
            row += [mcs_mark(r["in_mcs_10"], r["in_mcs_25"])]
        rows.append(row)
    return markdown_table(header, rows, "l" + "r" * (len(header) - 1))


def verdict(metrics: pd.DataFrame) -> str:
    """Which signal helps: per model, its best feature set against HAR, and the Model
    Confidence Set."""
    vs = versus_har(metrics)
    if ("har", "all") not in vs.index:
        return "No HAR baseline in these results, so no comparison is made."
    har = vs.loc[("har", "all")]
    table = signal_table(metrics)
    lines = []
    for fam in dict.fromkeys(table["family"]) if len(table) else []:
        rows = table[table["family"] == fam].sort_values("d_r2", ascending=False, kind="stable")
        best = rows.iloc[0]
        c = vs.loc[(best["model"], "all")]
        p = best["dm_pvalue"]
        significant = isinstance(p, float) and math.isfinite(p) and p < 0.05
        helped = rows[(rows["dm_pvalue"] < 0.05) & (rows["d_r2"] > 0)]["feature_set"].tolist()
        word = "beats" if c["mse"] < har["mse"] else "does not beat"
        how = "significantly" if significant else ("but not significantly" if c["mse"] < har["mse"] else "")
        lines.append(
            f"- **{model_label(fam).split(' (')[0]}**: best on **{best['feature_set']}**, which {word} HAR {how} "
            f"(ΔR² {r2(c['d_r2'], sign=True)}, MSE {pct(c['mse_change'])}, Diebold–Mariano p {pvalue(p)}). "
            + (
                f"Sets that beat HAR at p < 0.05: {', '.join(helped)}."
                if helped
                else "No feature set beats HAR at p < 0.05."
            )
        )
    in90, in75 = mcs_of(metrics, 10), mcs_of(metrics, 25)
    if in90:
        lines.append(
            f"- **Model Confidence Set** (the forecasts not beaten by any other): 90 % set "
            f"{', '.join(model_label(k) for k in in90)}; 75 % set {', '.join(model_label(k) for k in in75) or 'empty'}."
            + (" HAR is in it: the text adds nothing the data can tell apart." if "har" in in90 else "")
        )
    return "\n".join(lines)


def signal_details(signals: Mapping[str, Any]) -> str:
    """What the fitted families learned in the last window (the others in a folded block)."""
    if not signals:
        return ""
    years = sorted(signals, key=int)
    last = years[-1]
    parts = [
        f"Fitted on the training years of test year {last} (each window fits its own; `signals.json` has all):",
        "",
    ]
    info = signals[last]
    topics = info.get("topics")
    if topics:
        rows = []
        sizes = topics.get("sizes", [])
        for k, words in topics.get("words", {}).items():
            idx = len(sizes) - 1 if k == "other" else int(k)
            size = sizes[idx] if 0 <= idx < len(sizes) else None
            rows.append([f"`{k}`", fmt(size), ", ".join(w for w, _ in words[:8])])
        parts += [
            f"**Topics** ({topics.get('clusters_found')} HDBSCAN clusters on {fmt(topics.get('n_sample'))} sampled posts; "
            f"the {topics.get('topics')} largest kept, assignment `{topics.get('assign')}`):",
            "",
            markdown_table(["topic", "sample posts", "top words (c-TF-IDF)"], rows, "lrl"),
            "",
        ]
    lex = info.get("lexicon")
    if lex:
        hi = ", ".join(f"{w} ({s:+.3f})" for w, s, _ in lex.get("highest", [])[:8])
        lo = ", ".join(f"{w} ({s:+.3f})" for w, s, _ in lex.get("lowest", [])[:8])
        parts += [
            f"**Lexicon** ({fmt(lex.get('words'))} words seen on at least {lex.get('min_dates')} dates, of "
            f"{fmt(lex.get('candidates'))}; label `{lex.get('label')}`): highest {hi}; lowest {lo}.",
            "",
        ]
    tf = info.get("tfidf")
    if tf:
        parts += [f"**TF-IDF** terms ({len(tf.get('terms', []))}): {', '.join(tf.get('terms', [])[:50])}.", ""]
    return "\n".join(parts)


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
    signals: Mapping[str, Any] | None = None,
) -> str:
    target = None
    try:
        target = ((run or {}).get("config") or {}).get("train", {}).get("target")
    except AttributeError:
        target = None
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    shown = headline(metrics)
    years = sorted({int(y) for y in metrics["test_year"] if y != "all"})
    parts = [
        "# wsb_gpu report: do WallStreetBets posts help forecast next-day volatility, and which signal does?",
        "",
        f"Generated {now} from `{results_dir}`. Target: `{target or 'y_1'}` (realized volatility of the "
        f"next trading day). Test years {years[0]}–{years[-1]}, each forecast by models trained on the "
        "preceding years only (rolling windows; ridge λ chosen by cross-validation with folds that are "
        "contiguous blocks in time; the topic, lexicon and TF-IDF families fitted on the training years only)."
        if years
        else f"Generated {now} from `{results_dir}`.",
        "",
        "## Which signal helps?",
        "",
        signal_section(metrics),
        "",
        "Each row is a feature set: the four HAR terms plus the set's families of text columns "
        "(docs/signals.md). ΔR² and MSE are pooled over the test years against HAR; * = one-sided "
        'Diebold–Mariano p < 0.05 (H1: smaller loss than HAR). "DM p vs own HAR set" tests the same '
        "model with and without the set's text columns (the model on the HAR terms alone, set `har`): "
        "a set can beat HAR only because trees bend the HAR terms (ridge leaves them unpenalised "
        "unless train.ridge.penalize_har); this column separates what the text adds. MCS = the Model Confidence Set of "
        "Hansen, Lunde and Nason (2011) over every forecast of the run, HAR included: the forecasts "
        "the test days cannot tell apart from the best, at 90 % (p ≥ 0.10) and 75 % (p ≥ 0.25).",
        "",
    ]
    if figures.get("signals") is not None:
        fig0 = figures["signals"]
        parts += [
            f"![Which signal helps]({fig0.name})",
            "",
            "*Figure 0. Pooled ΔR² against HAR by feature set and model.*",
            "",
        ]
    parts += [
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
    losses = losses_table(metrics)
    if losses:
        parts += [
            "## Losses of the volatility literature",
            "",
            losses,
            "",
            "Pooled over the test years. QLIKE (Patton 2011) = mean of log h + y²/h with h the squared "
            "forecast, floored at train.forecast_floor × the training window's mean target (a linear forecast can be ≤ 0); it ranks volatility "
            "forecasts consistently under a noisy proxy and weighs under-prediction more. Its level has no "
            "meaning on its own; a negative QLIKE − HAR is better. MAPE skips the rows with y = 0. The DM "
            "p-values are one-sided (H1: smaller loss than HAR).",
            "",
        ]
    for model in shown:
        parts += [f"## {model_label(model)}", "", per_year_table(metrics, model), ""]
    vs = versus_har_table(metrics, shown)
    if vs:
        parts += ["## Against HAR, per test year", "", vs, ""]
    details = signal_details(signals or {})
    if details:
        parts += ["## What the fitted families learned", "", details, ""]
    fams = ", ".join(f"`{k}` ({f.description})" for k, f in FAMILIES.items())
    parts += [f"_Families_: {fams}.", ""]
    captions = {
        "volatility": "Figure 1. Daily average realized volatility across stocks for the four windows.",
        "r2": "Figure 2. Out-of-sample R² per test year: HAR and each model on its headline feature set.",
        "predicted": "Figure 3. Predicted vs realized next-day volatility on the test rows.",
        "ridge": "Figure 4. Ridge: λ chosen in each training window, and the coefficients of the HAR terms.",
        "mentions": "Figure 5. Posts per day mentioning the most mentioned tickers.",
        "scatter_matrix": "Figure 6. Scatter / KDE matrix of vol_1, vol_5, vol_22, vol_63 and the target y_1 on a "
        "uniform sample of up to 5,000 stock-days (log axes limited to the 0.5–99.5 % quantiles; days with a zero "
        "are not shown).",
        "rolling_beta": "Figure 7. Rolling β of y_1 on vol_1: the OLS slope pooled over every stock-day of the "
        "trailing 22 trading dates.",
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
                "scatter_matrix": "no volatility dataset beside the results, or no stock-days with "
                "vol_1 … vol_63 and y_1 all positive",
                "rolling_beta": "no volatility dataset beside the results, or fewer than 22 trading dates "
                "with vol_1 and y_1 (or no spread in vol_1)",
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
