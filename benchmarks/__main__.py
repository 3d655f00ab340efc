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

This module is the command line only: what it runs is :mod:`benchmarks.harness` (and
:mod:`benchmarks.scaling` for ``--scaling`` / ``--workers``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from benchmarks.common import STAGES
from benchmarks.harness import DEFAULT_SIZES, SPARK_TRAIN_SIZE, run


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
