"""The stage table: every stage of the pipeline, declared once, in data-flow order.

Each entry is a :class:`~wsb_gpu.stages.base.Stage`: its inputs, the dataset it writes (a
contract of :mod:`wsb_gpu.datasets`), its settings section (a model of
:mod:`wsb_gpu.config`), its entry point and the help of its command. The CLI builds one
command per entry (:mod:`wsb_gpu.cli`), ``wsb-gpu run`` schedules them by their inputs
(:mod:`wsb_gpu.pipeline`), and :func:`~wsb_gpu.stages.base.run_stage` is the one place
that calls them. The table names each entry point as ``"module:function"``, so reading it
imports no stage module (``wsb-gpu --help`` and ``info`` stay quick); the stage modules
(``wsb_gpu.stages.ingest`` …) hold the work.

Adding a stage: write its module with a ``run(inputs, out, *, backend, client, params,
progress) -> StageResult`` function (a :class:`~wsb_gpu.stages.base.StageEntry`: its
inputs a ``TypedDict``), add its dataset's contract to :data:`wsb_gpu.datasets.DATASETS`
and its settings section to :mod:`wsb_gpu.config` (and ``defaults.yaml``), and add its
entry here, with the settings that do not change its output in ``output_neutral``. See
docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsb_gpu.config import (
    EmbedParams,
    EmptyParams,
    IngestParams,
    LinksParams,
    MentionsParams,
    Section,
    TrainParams,
    VolatilityParams,
)
from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import Manifest
from wsb_gpu.stages import base
from wsb_gpu.stages.base import (
    Input,
    ResumableStageEntry,
    Stage,
    StageEntry,
    StageResult,
    interrupted_message,
    preflight,
    resolve_inputs,
)

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Backend
    from wsb_gpu.stages.embed import EmbedManifest
    from wsb_gpu.stages.ingest import IngestManifest
    from wsb_gpu.stages.links import LinksManifest
    from wsb_gpu.stages.mentions import MentionsManifest
    from wsb_gpu.stages.report import ReportManifest
    from wsb_gpu.stages.train import TrainManifest
    from wsb_gpu.stages.volatility import VolatilityManifest

# --- the one-line summaries the commands print ---------------------------------------------


def format_summary(manifest: IngestManifest) -> str:
    """The human summary the ``ingest`` command prints.

    >>> m = {"files": {"c.zst": {"lines": 3, "valid": 2, "surrogates_replaced": 0,
    ...      "malformed": {"blank": 1, "bad_utf8": 0, "bad_json": 0, "bad_record": 0},
    ...      "bytes_json": 10}}, "rows_in": 3, "rows_out": 2, "bytes_json": 10,
    ...      "bytes_out": 5, "seconds": 1.0, "backend": "cpu"}
    >>> print(format_summary(m))  # doctest: +NORMALIZE_WHITESPACE
    c.zst: 3 lines, 2 valid, malformed: blank 1, bad_utf8 0, bad_json 0, bad_record 0; surrogates replaced 0
    posts: 2 rows of 3 lines; 0.0 MB JSON -> 0.0 MB Parquet in 1.0 s (0.0 MB/s, cpu)
    """
    lines = []
    for name, f in manifest["files"].items():
        mal = ", ".join(f"{k} {v}" for k, v in f["malformed"].items())
        lines.append(
            f"{name}: {f['lines']} lines, {f['valid']} valid, malformed: {mal}; "
            f"surrogates replaced {f['surrogates_replaced']}"
        )
    seconds = manifest["seconds"]
    rate = manifest["bytes_json"] / 1e6 / seconds if seconds else 0.0
    lines.append(
        f"posts: {manifest['rows_out']} rows of {manifest['rows_in']} lines; "
        f"{manifest['bytes_json'] / 1e6:.1f} MB JSON -> {manifest['bytes_out'] / 1e6:.1f} MB Parquet "
        f"in {seconds:.1f} s ({rate:.1f} MB/s, {manifest['backend']})"
    )
    return "\n".join(lines)


def _mentions_summary(m: MentionsManifest) -> str:
    rate = m["rows_in"] / m["seconds"] if m["seconds"] else 0.0
    return (
        f"mentions: {m['rows_out']:,} (post, ticker, permno) rows, {m['mentions']:,} occurrences "
        f"from {m['rows_in']:,} posts ({m['seconds']:.1f} s, {rate:,.0f} posts/s, {m['backend']})"
    )


def _embed_summary(m: EmbedManifest) -> str:
    rate = (
        f", {m['posts_per_s']:,.0f} posts/s, {m['tokens_per_s']:,.0f} tokens/s on {m['device']} ({m['precision']})"
        if m.get("posts_per_s")
        else ""
    )
    labels = " + " + "/".join(m["labels"]) if m["labels"] else ""
    return (
        f"embed: {m['rows_out']:,} posts x {m['dim']} dims{labels} in {m['n_shards']} shards "
        f"({m.get('shards_written', 0)} written this run) ({m['seconds']:.1f} s{rate})"
    )


def _volatility_summary(m: VolatilityManifest) -> str:
    dups = f", {m['duplicates_dropped']:,} identical duplicate rows dropped" if m["duplicates_dropped"] else ""
    return (
        f"volatility: {m['rows_out']:,} stock-days of {m['permnos']:,} stocks "
        f"({m['date_min']} .. {m['date_max']}), {m['ret_missing']:,} missing returns{dups}, "
        f"{len(m['partitions'])} partitions ({m['seconds']:.1f} s, {m['backend']})"
    )


def _train_summary(m: TrainManifest) -> str:
    sets = m.get("feature_sets") or []
    on = f" on {len(sets)} feature set{'' if len(sets) == 1 else 's'}" if sets else ""
    on += " (spike task)" if m.get("task") == "spike" else ""
    return (
        f"train: {len(m['test_years'])} test years x {len(m['models'])} models "
        f"({', '.join(m['models'])}){on}, {m['rows_in']:,} rows ({m['seconds']:.1f} s, {m['backend']})"
    )


def _signals_summary(m: Manifest) -> str:
    return (
        f"signals: {m['rows_out']:,} posts scored (VADER + words) of {m['rows_in']:,} "
        f"({m['seconds']:.1f} s, {m['rows_out'] / max(m['seconds'], 1e-9):,.0f} posts/s)"
    )


def _links_summary(m: LinksManifest) -> str:
    cutoff = m.get("cutoff", "utc_day")
    rule = {"close": "NYSE close", "utc_day": "UTC day, look-ahead"}.get(cutoff, f"{cutoff} New York")
    return (
        f"links: {m['rows_out']:,} (stock, post) pairs on trading days from {m['rows_in']:,} mentions, "
        f"posts counted up to the cutoff ({rule}) ({m['seconds']:.1f} s, {m['backend']})"
    )


def _features_summary(m: Manifest) -> str:
    return (
        f"features: {m['rows_out']:,} stock-days with posts from {m['rows_in']:,} links "
        f"({m['seconds']:.1f} s, {m['backend']})"
    )


def _report_summary(m: ReportManifest) -> str:
    return f"report: {len(m['figures'])} figures, report.md ({m['seconds']:.1f} s)"


# --- the table ---------------------------------------------------------------------------------

STAGES: tuple[Stage, ...] = (
    Stage(
        name="ingest",
        inputs=(
            Input(
                "submissions",
                "file",
                required=False,
                help="wallstreetbets_submissions.zst (Pushshift NDJSON, zstd) [default: inputs.submissions].",
            ),
            Input("comments", "file", required=False, help="wallstreetbets_comments.zst [default: inputs.comments]."),
        ),
        output="posts",
        params=IngestParams,
        entry="wsb_gpu.stages.ingest:run",
        check="wsb_gpu.stages.ingest:check",
        doc="""Read the Pushshift dumps into the posts dataset, counting malformed lines per file.

        \b
        Example:
          wsb-gpu ingest --submissions wallstreetbets_submissions.zst \\
            --comments wallstreetbets_comments.zst --out run/posts
          wsb-gpu --backend gpu --cluster cuda ingest --comments wallstreetbets_comments.zst --out run/posts
        """,
        summary=format_summary,
        unit="MB/s",
        output_neutral=("window",),
    ),
    Stage(
        name="mentions",
        inputs=(
            Input("posts"),
            Input(
                "tickers",
                "file",
                dir_ok=True,
                help="CRSP name history: PERMNO, TICKER, NAMEDT, NAMEENDT (CSV or Parquet) [default: inputs.tickers].",
            ),
        ),
        output="mentions",
        params=MentionsParams,
        entry="wsb_gpu.stages.mentions:run",
        check="wsb_gpu.stages.mentions:check",
        doc="""Extract $TICKER and bare TICKER mentions alive on each post's UTC date.

        \b
        Example:
          wsb-gpu mentions --posts run/posts --tickers stocknames.csv --out run/mentions
          wsb-gpu mentions --posts run/posts --tickers stocknames.csv --stoplist my_stop.txt --out run/mentions
        """,
        summary=_mentions_summary,
        unit="posts/s",
    ),
    Stage(
        name="embed",
        inputs=(Input("posts"), Input("mentions")),
        output="embeddings",
        params=EmbedParams,
        entry="wsb_gpu.stages.embed:run",
        doc="""Embed every post that mentions a stock (CLS vector + FinBERT sentiment), one shard
        per partition, resumable.

        \b
        Example:
          wsb-gpu embed --posts run/posts --mentions run/mentions --out run/embeddings
          wsb-gpu embed --posts run/posts --mentions run/mentions --model minilm --out run/emb-minilm
          wsb-gpu --backend gpu --cluster cuda embed --posts run/posts --mentions run/mentions \\
            --model ./finbert --local-files-only --out run/embeddings
        """,
        summary=_embed_summary,
        unit="posts/s",
        resumable=True,
        claims=("_embed_state.json",),
        # Batch size and where the weights may come from change the speed, not the vectors.
        output_neutral=("token_budget", "allow_pickle", "local_files_only"),
    ),
    Stage(
        name="signals",
        inputs=(Input("posts"), Input("mentions")),
        output="signals",
        params=EmptyParams,
        entry="wsb_gpu.stages.signals:run",
        doc="""Score every post that mentions a stock with VADER and store its words (for the
        lexicon, TF-IDF and topic families); CPU on both backends.

        \b
        Example:
          wsb-gpu signals --posts run/posts --mentions run/mentions --out run/signals
        """,
        summary=_signals_summary,
        unit="posts/s",
        holds_gil=True,
    ),
    Stage(
        name="volatility",
        inputs=(
            Input(
                "crsp",
                "file",
                dir_ok=True,
                help="CRSP daily file (CSV, .csv.gz/.zst, Parquet) or, with --format ohlcv, a Yahoo-style file "
                "[default: inputs.crsp].",
            ),
        ),
        output="volatility",
        params=VolatilityParams,
        entry="wsb_gpu.stages.volatility:run",
        check="wsb_gpu.stages.volatility:check",
        doc="""Build the realised-volatility panel (vol_1/5/22/63 and next-row targets y_*) from a
        CRSP daily or OHLCV file.

        \b
        Example:
          wsb-gpu volatility --crsp crsp_daily.csv.zst --out run/volatility
          wsb-gpu volatility --crsp prices.csv --format ohlcv --out run/volatility
          wsb-gpu volatility --crsp ciz.parquet --columns ret=DlyRet,date=DlyCalDt --out run/volatility
        """,
        summary=_volatility_summary,
    ),
    Stage(
        name="links",
        inputs=(
            Input("mentions"),
            Input("volatility", help="Volatility dataset folder; gives each stock's trading days."),
        ),
        output="links",
        params=LinksParams,
        entry="wsb_gpu.stages.links:run",
        doc="""Link every (stock, post) pair to the stock-day whose forecast it feeds: the first
        NYSE session whose close (16:00 New York, 13:00 on early-close days) is at or after the
        post, then the stock's first trading date on or after it. --cutoff HH:MM moves the
        cutoff earlier; --cutoff utc_day is the seed's UTC-day rule (look-ahead).

        \b
        Example:
          wsb-gpu links --mentions run/mentions --volatility run/volatility --out run/links
          wsb-gpu links --mentions run/mentions --volatility run/volatility --cutoff 15:45 --out run/links-1545
        """,
        summary=_links_summary,
        version=2,  # 2: posts dated by the NYSE close (links.cutoff), created_utc kept
    ),
    Stage(
        name="features",
        inputs=(
            Input("links"),
            Input("embeddings"),
            Input("signals"),
            Input("volatility"),
        ),
        output="features",
        params=EmptyParams,
        entry="wsb_gpu.stages.features:run",
        doc="""Build stock-day features: posts per (permno, trading date), mean embedding,
        sentiment and VADER scores, joined with the volatility columns.

        \b
        Example:
          wsb-gpu features --links run/links --embeddings run/embeddings --signals run/signals \\
            --volatility run/volatility --out run/features
        """,
        summary=_features_summary,
    ),
    Stage(
        name="train",
        inputs=(
            Input("features", required=False, help="Features dataset folder (from `wsb-gpu features`)."),
            Input(
                "volatility",
                required=False,
                help="Volatility dataset: alone = HAR on the whole panel; with --sample all = the stock-days "
                "without posts.",
            ),
            Input("links", required=False, help="Links dataset, for the fitted families [default: the features' own]."),
            Input(
                "signals", required=False, help="Signals dataset, for the fitted families [default: the features' own]."
            ),
            Input(
                "embeddings",
                required=False,
                help="Embeddings dataset, for the topics family [default: the features' own].",
            ),
        ),
        output="results",
        params=TrainParams,
        entry="wsb_gpu.stages.train:run",
        doc="""Fit HAR, and ridge, elastic net, XGBoost (and log-HAR, LSTM, CNN, CNN-LSTM when
        asked) on every feature set, in rolling yearly windows; evaluate them out of sample
        (MSE, QLIKE, MAE, R², Diebold–Mariano against HAR, Model Confidence Set). With
        --task spike: classify next-day volatility spikes (AUC, average precision, F1).

        \b
        Example:
          wsb-gpu train --features run/features --out run/results
          wsb-gpu train --volatility run/volatility --models har --out run/har-only
          wsb-gpu train --features run/features --models har,ridge --engine estimator --out run/r2
          wsb-gpu train --features run/features --models har,log_har,lstm --out run/seq
          wsb-gpu train --features run/features --task spike --out run/spikes
        """,
        summary=_train_summary,
    ),
    Stage(
        name="report",
        inputs=(
            Input(
                "results",
                "folder",
                dataset="results",
                help="The train stage's output folder (metrics.csv, predictions/).",
            ),
            Input(
                "lake",
                "lake",
                required=False,
                help="Run directory with volatility/, mentions/ and run.json [default: RESULTS/.. when it is one].",
            ),
        ),
        output="report",
        params=EmptyParams,
        entry="wsb_gpu.stages.report:run",
        doc="""Write report.md (per-year and pooled MSE/R², change against HAR, Diebold–Mariano
        p-values, provenance) and five PNG figures from a run's results.

        \b
        Example:
          wsb-gpu report --results wsb-run/results --out wsb-run/report
          wsb-gpu report --results wsb-run/results --out /tmp/report --lake wsb-run
        """,
        summary=_report_summary,
        lake_reads=("volatility", "mentions"),
        default_out=lambda inputs: Path(inputs["results"]).resolve().parent / "report",
    ),
)
if TYPE_CHECKING:  # each entry point against the protocol, as mypy checks it (nothing runs here)
    from wsb_gpu.stages import embed, features, ingest, links, mentions, report, signals, train, volatility

    _ingest: StageEntry[ingest.IngestInputs, IngestParams] = ingest.run
    _mentions: StageEntry[mentions.MentionsInputs, MentionsParams] = mentions.run
    _embed: ResumableStageEntry[embed.EmbedInputs, EmbedParams] = embed.run
    _signals: StageEntry[signals.SignalsInputs, EmptyParams] = signals.run
    _volatility: StageEntry[volatility.VolatilityInputs, VolatilityParams] = volatility.run
    _links: StageEntry[links.LinksInputs, LinksParams] = links.run
    _features: StageEntry[features.FeaturesInputs, EmptyParams] = features.run
    _train: StageEntry[train.TrainInputs, TrainParams] = train.run
    _report: StageEntry[report.ReportInputs, EmptyParams] = report.run

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
PRODUCER: dict[str, str] = {s.output: s.name for s in STAGES}
"""Dataset name -> the stage that writes it."""


def get_stage(name: str) -> Stage:
    """The stage called ``name``.

    >>> get_stage("embed").output
    'embeddings'
    """
    try:
        return BY_NAME[name]
    except KeyError:
        msg = f"unknown stage {name!r}; choose one of: {', '.join(STAGE_NAMES)}"
        raise WsbError(msg) from None


def upstream(stage: Stage) -> tuple[str, ...]:
    """The stages whose datasets ``stage`` reads, through its inputs or from its lake.

    >>> upstream(get_stage("features")), upstream(get_stage("report"))
    (('links', 'embed', 'signals', 'volatility'), ('train', 'volatility', 'mentions'))
    """
    datasets = [i.reads for i in stage.inputs if i.reads is not None] + list(stage.lake_reads)
    return tuple(dict.fromkeys(PRODUCER[d] for d in datasets))


def run_stage(
    stage: Stage | str,
    out: str | Path,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    params: Section | Mapping[str, Any] | None = None,
    backend: Backend | None = None,
    client: Client | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> Manifest:
    """Run one stage, given by its declaration or its name, into ``out``; return its manifest.

    The runner itself is :func:`wsb_gpu.stages.base.run_stage` (see its parameters); this is
    the same call with the name looked up in the table:
    ``run_stage("features", out, links=…, embeddings=…, signals=…, volatility=…)``.
    """
    return base.run_stage(
        get_stage(stage) if isinstance(stage, str) else stage,
        out,
        inputs=inputs,
        params=params,
        backend=backend,
        client=client,
        progress=progress,
        **kwargs,
    )


__all__ = [
    "BY_NAME",
    "STAGES",
    "STAGE_NAMES",
    "Input",
    "ResumableStageEntry",
    "Stage",
    "StageEntry",
    "StageResult",
    "get_stage",
    "interrupted_message",
    "preflight",
    "resolve_inputs",
    "run_stage",
    "upstream",
]
