"""The benchmark harness: which module measures which stage, at which size, and how the
stage modules and the Spark peer are run side by side.

The command line is ``python -m benchmarks`` (:mod:`benchmarks.__main__`), which parses the
arguments, calls :func:`run` and writes the results; :mod:`benchmarks.scaling` measures
more sizes with the same :func:`run_module` and :func:`run_spark`.

For each selected stage :func:`run` calls ``benchmarks/<module>.bench(backend, size,
repeats)`` (our implementation and its pandas/seed-loop peers; each module owns its data
and its timing of those), then runs the seed's PySpark steps (:mod:`benchmarks.spark_peer`)
on the same data with the same cores and derives ``ingest+mentions`` rows and the speed-ups.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import STAGES, error_row, normalise_row

# Which module measures which stage (ingest.py measures both ingest and mentions).
MODULES = {
    "ingest": "ingest",
    "mentions": "ingest",
    "embed": "embed",
    "signals": "signals",  # signals.py also measures the lexicon, TF-IDF and topics families
    "volatility": "volatility",
    "train": "train",
    "enet": "enet",  # one window's elastic-net CV from moments (rows enet-p64, enet-p772)
    "sequence": "sequence",  # one window's LSTM fit
}
# Default sizes: records (ingest, mentions), posts (embed, signals), stock-days (volatility, train).
# Volatility and train are the seed's shapes (25.7M CRSP rows; ~1M stock-days x 772).
DEFAULT_SIZES = {
    "ingest": 1_000_000,
    "mentions": 1_000_000,
    "embed": 2_000,
    "signals": 100_000,
    "volatility": 25_700_000,
    "train": 1_000_000,
    "enet": 200_000,  # rows of one window
    "sequence": 40_000,  # training stock-days of one window
}
# MLlib's CrossValidator needs minutes per 10k stock-days at 772 features on 2 cores: at
# the seed's 1M it would run for hours, so the Spark ridge peer (and ours beside it, for
# the ratio) is measured at this size, and ours alone at the full size.
SPARK_TRAIN_SIZE = 20_000


def parse_sizes(text: str | None, stages: list[str]) -> dict[str, int]:
    """``"N"`` (every stage) or ``"stage=N,stage=N"`` -> a size per stage (defaults for the rest).

    ``ingest`` and ``mentions`` are measured together (on the same dumps), so naming one
    sets both.

    >>> parse_sizes("1000", ["ingest", "train"])
    {'ingest': 1000, 'train': 1000}
    >>> parse_sizes("mentions=5e4", ["ingest", "mentions"])
    {'ingest': 50000, 'mentions': 50000}
    """
    sizes = {s: DEFAULT_SIZES[s] for s in stages}
    if not text:
        return sizes
    if "=" not in text:
        return {s: int(float(text)) for s in stages}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in DEFAULT_SIZES:
            raise SystemExit(f"error: unknown stage {key!r} in --size {text!r}; stages: {', '.join(STAGES)}")
        targets = {"ingest", "mentions"} if key in ("ingest", "mentions") else {key}
        for k in targets & set(sizes):
            sizes[k] = int(float(value))
    return sizes


def parse_repeats(text: str | int | None, stages: list[str]) -> dict[str, int]:
    """``"3"`` or ``"3,train=1"`` -> timed runs per stage (the ridge grid at the seed's
    shape takes minutes per run with the estimator engine, so it is often run once).

    >>> parse_repeats("3,train=1", ["embed", "train"])
    {'embed': 3, 'train': 1}
    """
    default, per = 3, {}
    for part in str(text if text is not None else 3).split(","):
        if not part.strip():
            continue
        if "=" in part:
            key, _, value = part.partition("=")
            if key.strip() not in DEFAULT_SIZES:
                raise SystemExit(f"error: unknown stage {key.strip()!r} in --repeats {text!r}")
            per[key.strip()] = int(value)
        else:
            default = int(part)
    out = {s: per.get(s, default) for s in stages}
    for a, b in (("ingest", "mentions"), ("mentions", "ingest")):
        if a in per and b in out and b not in per:
            out[b] = per[a]
    return out


def default_repeats(text: str | int | None) -> int:
    """The plain number in ``--repeats`` (3 when only per-stage values are given).

    >>> default_repeats("2,train=1")
    2
    """
    nums = [p for p in str(text if text is not None else 3).split(",") if p.strip() and "=" not in p]
    return int(nums[0]) if nums else 3


def call_bench(module: Any, backend: str, size: int, repeats: int, warmup: int) -> list[dict[str, Any]]:
    """``module.bench(backend, size, repeats)``, passing ``warmup`` where the module takes it."""
    params = inspect.signature(module.bench).parameters
    kwargs = {"warmup": warmup} if "warmup" in params else {}
    return module.bench(backend, size, repeats, **kwargs)


def run_module(
    name: str, backend: str, size: int, repeats: int, warmup: int, wanted: set[str], log: Any = print
) -> list[dict[str, Any]]:
    """Rows of ``benchmarks/<name>.py`` for the wanted stages; failures become error rows."""
    stages_of_module = sorted(s for s, m in MODULES.items() if m == name and s in wanted)
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ImportError as e:
        why = f"benchmarks/{name}.py cannot be imported ({type(e).__name__}: {e})"
        log(f"  {why}")
        return [error_row(s, common.OURS, backend, size, why) for s in stages_of_module]
    t0 = time.perf_counter()
    try:
        raw = call_bench(module, backend, size, repeats, warmup)
    except Exception as e:
        traceback.print_exc()
        why = f"benchmarks/{name}.py bench() failed: {type(e).__name__}: {e}"
        return [error_row(s, common.OURS, backend, size, why) for s in stages_of_module]
    log(f"  benchmarks/{name}.py: {len(raw)} rows in {time.perf_counter() - t0:.0f} s")
    rows = [normalise_row(r, backend=backend, size=size, stage=stages_of_module[0]) for r in raw]
    # ingest.py measures both stages; keep what was asked for (plus any combined row).
    return [r for r in rows if r["stage"] in wanted or r["stage"] not in STAGES]


# --- the Spark peer on the modules' own data ----------------------------------------------------


def _ingest_inputs(size: int) -> dict[str, Any]:
    """The dumps that benchmarks/ingest.py measures at ``size``, for Spark to read too."""
    return common.synthetic_inputs(size)


def _volatility_input(size: int, folder: Path) -> Path:
    """The panel benchmarks/volatility.py measures, as the Parquet file its stage row reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    volatility = importlib.import_module("benchmarks.volatility")
    panel = volatility.make_panel(size)
    table = pa.table(
        {
            "PERMNO": panel["permno"].to_numpy(),
            "date": pa.array(panel["date"].to_numpy()).cast(pa.date32()),
            "RET": panel["ret"].to_numpy(),
        }
    )
    del panel
    path = folder / "crsp.parquet"
    pq.write_table(table, path, row_group_size=1 << 20)
    return path


def _train_input(size: int) -> Path:
    """The features dataset benchmarks/train.py measures at ``size``."""
    train = importlib.import_module("benchmarks.train")
    return Path(train.make_features(size, common.DATA_DIR / f"train_features_{size}"))


def run_spark(
    stages: list[str],
    sizes: dict[str, int],
    backend: str,
    repeats: int,
    warmup: int,
    *,
    memory: str,
    train_size: int,
    ndjson_variant: bool,
    log: Any = print,
) -> list[dict[str, Any]]:
    """The seed's PySpark steps on the same data as ours, or rows saying why they were skipped."""
    from benchmarks import spark_peer

    spark_stages = [s for s in stages if s in ("ingest", "mentions", "volatility", "train")]
    if not spark_stages:
        return []
    ok, why = spark_peer.spark_status()
    if not ok:
        log(f"  PySpark peer skipped: {why}")
        return [r for s in spark_stages for r in spark_peer.unavailable_rows([s], sizes[s], backend, why)]
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="wsb-bench-"))
    with spark_peer.SparkPeer(memory=memory) as peer:
        if "ingest" in stages or "mentions" in stages:
            size = sizes.get("ingest", sizes.get("mentions"))
            try:
                got = peer.ingest_mentions(
                    _ingest_inputs(size), size, repeats=repeats, warmup=warmup, ndjson_variant=ndjson_variant
                )
                rows += [r for r in got if r["stage"] in stages]
            except Exception as e:
                traceback.print_exc()
                rows += [
                    error_row(s, spark_peer.IMPL, backend, size, f"{type(e).__name__}: {e}")
                    for s in ("ingest", "mentions")
                    if s in stages
                ]
        if "volatility" in stages:
            size = sizes["volatility"]
            try:
                path = _volatility_input(size, tmp)
                rows += peer.volatility(path, size, repeats=repeats, warmup=warmup)
            except Exception as e:
                traceback.print_exc()
                rows.append(error_row("volatility", spark_peer.IMPL, backend, size, f"{type(e).__name__}: {e}"))
        if "train" in stages:
            size = min(sizes["train"], train_size)
            try:
                rows += peer.train(_train_input(size), size, repeats=1, warmup=0)
            except Exception as e:
                traceback.print_exc()
                rows.append(error_row("train", spark_peer.IMPL, backend, size, f"{type(e).__name__}: {e}"))
        if peer.startup_s is not None:
            log(f"  Spark session start-up (not in any timing): {peer.startup_s:.1f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, log: Any = print) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure what ``args`` asks for; returns (rows, ratios)."""
    stages = list(STAGES) if "all" in args.stage else list(dict.fromkeys(args.stage))
    sizes = parse_sizes(args.size, stages)
    repeats = parse_repeats(args.repeats, stages)
    rows: list[dict[str, Any]] = []
    wanted = set(stages)
    done_modules: set[tuple[str, int]] = set()
    for stage in stages:
        name, size = MODULES[stage], sizes[stage]
        if (name, size) in done_modules:
            continue
        done_modules.add((name, size))
        log(f"[{stage}] ours and the pandas/seed peers at size {size:,} ...")
        rows += run_module(name, args.backend, size, repeats[stage], args.warmup, wanted, log)
    if "spark" in args.peers:
        log("[spark] the seed's PySpark steps on the same data ...")
        rows += run_spark(
            stages,
            sizes,
            args.backend,
            args.spark_repeats or default_repeats(args.repeats),
            args.warmup,
            memory=args.spark_memory,
            train_size=args.spark_train_size,
            ndjson_variant=args.ndjson_variant,
            log=log,
        )
        # The ridge ratio needs ours at the size Spark could do.
        if (
            "train" in stages
            and sizes["train"] > args.spark_train_size
            and any(r["impl"] == "pyspark" and r["stage"] == "train" and common.ok(r) for r in rows)
        ):
            log(f"[train] ours again at the Spark peer's size {args.spark_train_size:,} ...")
            rows += run_module("train", args.backend, args.spark_train_size, repeats["train"], args.warmup, wanted, log)
    rows = [r for r in rows if r["stage"] in wanted or r["stage"] not in STAGES]
    rows += common.combine_ingest_mentions(rows)
    if args.workers_tag is not None:
        for r in rows:
            r["workers"] = args.workers_tag
    return rows, common.compute_ratios(rows)
