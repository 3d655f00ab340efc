"""The benchmark harness: every stage, ours beside its peers, on one machine, in one run.

Run ``python -m benchmarks --help``. Examples::

    python -m benchmarks --backend cpu --stage all                  # default sizes, CSV + RESULTS.md
    python -m benchmarks --backend cpu --stage volatility --size 1000000 --repeats 3
    python -m benchmarks --backend cpu --stage all --scaling --workers 1,2

For each selected stage the harness calls ``benchmarks/<module>.bench(backend, size,
repeats)`` (our implementation and its pandas/seed-loop peers; each module owns its data
and its timing of those), then runs the seed's PySpark steps (:mod:`benchmarks.spark_peer`)
on the same data with the same cores, derives ``ingest+mentions`` rows and the speed-ups,
and writes ``benchmarks/results/<date>-<host>-<backend>.csv`` and a dated section of
``benchmarks/RESULTS.md`` (appended, never overwritten). ``--scaling`` adds the growth
with input size (3+ sizes per stage) and ``--workers`` the growth with cores, and draws
``benchmarks/scaling.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", choices=["cpu", "gpu"], default="cpu")
    p.add_argument(
        "--stage", nargs="+", default=["all"], choices=[*STAGES, "all"], help="stages to measure (default: all)"
    )
    p.add_argument(
        "--size",
        default=None,
        help="records/stock-days: one number for every stage, or stage=N,... "
        f"(defaults: {', '.join(f'{k}={v:,}' for k, v in DEFAULT_SIZES.items())})",
    )
    p.add_argument(
        "--repeats",
        default="3,train=1",
        help="timed runs per measurement (median, min-max): N, or N,stage=M,... (e.g. 3,train=1)",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (where the module takes it)")
    p.add_argument(
        "--peers",
        default="spark",
        help="extra peers run by the harness: spark or none (the pandas and seed-loop peers live in the stage modules)",
    )
    p.add_argument("--spark-memory", default="4g", help="Spark driver memory (local mode: all Spark gets)")
    p.add_argument(
        "--spark-repeats",
        type=int,
        default=None,
        help="timed runs of the Spark peer (default: --repeats); the MLlib ridge grid always runs once",
    )
    p.add_argument(
        "--spark-train-size",
        type=int,
        default=SPARK_TRAIN_SIZE,
        help="largest stock-day count given to the MLlib ridge peer",
    )
    p.add_argument(
        "--ndjson-variant", action="store_true", help="also time Spark on pre-decompressed NDJSON (its best case)"
    )
    p.add_argument("--scaling", action="store_true", help="also measure 3+ sizes per stage, draw scaling.png")
    p.add_argument(
        "--scaling-sizes", default=None, help="stage=a:b:c,... sizes for --scaling (default: see benchmarks/scaling.py)"
    )
    p.add_argument(
        "--workers",
        default=None,
        help="also measure with these core counts, e.g. 1,2 (CPU; each in a pinned subprocess)",
    )
    p.add_argument(
        "--workers-size", default=None, help="sizes for the --workers runs (same syntax as --size; default: --size)"
    )
    p.add_argument("--out-dir", default=str(common.HERE), help="where RESULTS.md, results/ and scaling.png go")
    p.add_argument("--csv", default=None, help="CSV path (default: <out-dir>/results/<date>-<host>-<backend>.csv)")
    p.add_argument("--no-md", action="store_true", help="do not append to RESULTS.md")
    p.add_argument("--workers-tag", type=int, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.backend == "gpu":
        from wsb_gpu.backend import gpu_status

        usable, why = gpu_status()
        if not usable:
            print(
                f"error: --backend gpu asked for, but {why}; run on a machine with a CUDA GPU and "
                "RAPIDS (pip install 'wsb_gpu[gpu]'), or use --backend cpu",
                file=sys.stderr,
            )
            return 2
    t0 = time.perf_counter()
    info = common.machine_info()
    print(
        f"machine: {info['cpu_model']}, {info['usable_cores']} usable cores, {info['memory_gib']} GiB; "
        f"{info['gpu_status']}"
    )
    rows, ratios = run(args)
    extra = ""
    if args.scaling or args.workers:
        from benchmarks import scaling

        scaling_rows, extra = scaling.run_scaling(args, out_dir=out_dir, main_rows=rows)
        rows += scaling_rows
    csv_path = Path(args.csv) if args.csv else common.csv_path(args.backend, folder=out_dir / "results")
    common.write_csv(rows, csv_path)
    print(f"\n{common.results_table([r for r in rows if not r.get('series')])}\n")
    if ratios:
        print(common.ratios_table(ratios) + "\n")
    print(f"CSV: {csv_path}")
    if not args.no_md:
        cmd = "python -m benchmarks " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        title = (
            f"{dt.date.today().isoformat()} · {info['host']} · {args.backend} · "
            f"{info['usable_cores']} cores · {info['cpu_model']}"
        )
        md = common.append_section(
            out_dir / "RESULTS.md",
            title=title,
            info=info,
            command=cmd,
            rows=[r for r in rows if not r.get("series")],
            ratios=ratios,
            extra=extra,
        )
        print(f"appended a section to {md}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0 if any(common.ok(r) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
