"""How time grows with input size (3+ sizes per stage) and with cores (1 vs 2 on CPU).

Called by the harness (``python -m benchmarks ... --scaling --workers 1,2``); also runs on
its own: ``python -m benchmarks.scaling --backend cpu``, which is the same as
``python -m benchmarks --scaling --workers 1,2``.

* **Size**: each stage module (and the Spark peer) at every size of
  :data:`SCALING_SIZES` (or ``--scaling-sizes``); the log-log slope of time against size
  says how close to linear each implementation is (1.0 = linear).
* **Cores**: the whole harness again in a subprocess pinned to the first *n* cores
  (``sched_setaffinity``) with every thread pool (OpenMP/MKL/BLAS, torch, polars, dask,
  Spark ``local[n]``) told *n*, so "1 worker" really means one core.

Draws ``benchmarks/scaling.png`` (top row: seconds vs size, log-log, one line per
implementation; bottom row: seconds with 1 and with 2 cores).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from benchmarks.harness import MODULES, default_repeats, parse_repeats, run_module, run_spark

SCALING_SIZES: dict[str, tuple[int, ...]] = {
    "ingest": (100_000, 300_000, 1_000_000),
    "mentions": (100_000, 300_000, 1_000_000),
    "embed": (250, 500, 1_000),
    "signals": (25_000, 50_000, 100_000),
    "volatility": (1_000_000, 5_000_000, 25_700_000),
    "train": (100_000, 300_000, 1_000_000),
    "enet": (50_000, 100_000, 200_000),
    "sequence": (10_000, 20_000, 40_000),
}
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "POLARS_MAX_THREADS",
    "RAYON_NUM_THREADS",
    "ARROW_NUM_THREADS",
    "DASK_NUM_WORKERS",
)


def parse_scaling_sizes(text: str | None, stages: list[str]) -> dict[str, tuple[int, ...]]:
    """``"stage=a:b:c,..."`` -> sizes per stage (defaults for the stages not named).

    >>> parse_scaling_sizes("volatility=1e5:2e5:4e5", ["volatility"])
    {'volatility': (100000, 200000, 400000)}
    """
    sizes = {s: SCALING_SIZES[s] for s in stages}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, _, values = part.partition("=")
        key = key.strip()
        if key not in SCALING_SIZES:
            raise SystemExit(f"error: unknown stage {key!r} in --scaling-sizes {text!r}")
        parsed = tuple(int(float(v)) for v in values.split(":") if v.strip())
        for k in {key, "mentions"} if key == "ingest" else {key, "ingest"} if key == "mentions" else {key}:
            if k in sizes:
                sizes[k] = parsed
    return sizes


def loglog_slope(sizes: list[float], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(size): 1.0 = linear growth.

    >>> round(loglog_slope([1, 10, 100], [2, 20, 200]), 6)
    1.0
    """
    pts = [(math.log(s), math.log(t)) for s, t in zip(sizes, seconds) if s > 0 and t > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def _label(row: dict[str, Any]) -> str:
    """The series a row belongs to: its implementation plus the words of its note that do
    not change with the size (parts holding numbers, such as MB/s, are left out).

    >>> _label({"impl": "wsb_gpu", "note": "kernel only, 3 partitions of whole stocks, rows in order"})
    'wsb_gpu (kernel only, rows in order)'
    >>> _label({"impl": "wsb_gpu", "note": "87 MB/s of JSON (191 MB); 296,791 rows out"})
    'wsb_gpu'
    """
    parts = [p.strip() for p in (row.get("note") or "").split(";")[0].split(",")]
    note = ", ".join(p for p in parts if p and not any(ch.isdigit() for ch in p))
    return f"{row['impl']} ({note})" if note and common.is_ours(row["impl"]) else row["impl"]


# --- measurements ----------------------------------------------------------------------------


def size_series(
    args: Any, stages: list[str], main_rows: list[dict[str, Any]], log: Any = print
) -> list[dict[str, Any]]:
    """Every stage at every scaling size (sizes the main run measured are reused)."""
    plan = parse_scaling_sizes(getattr(args, "scaling_sizes", None), stages)
    repeats = parse_repeats(args.repeats, stages)
    measured = {(r["stage"], r["size"]) for r in main_rows if not r.get("series")}
    rows: list[dict[str, Any]] = []
    for r in main_rows:
        if not r.get("series") and r["size"] in plan.get(r["stage"], ()):
            rows.append({**r, "series": "size"})
    done: set[tuple[str, int]] = set()
    for stage in stages:
        for size in plan[stage]:
            key = (MODULES[stage], size)
            if key in done or (stage, size) in measured:
                continue
            done.add(key)
            log(f"[scaling] {stage} at {size:,} ...")
            got = run_module(MODULES[stage], args.backend, size, repeats[stage], args.warmup, set(stages), log)
            # MLlib's ridge grid is measured only up to --spark-train-size (see harness.run).
            spark_fits = stage != "train" or size <= args.spark_train_size
            if "spark" in args.peers and spark_fits and stage in ("ingest", "mentions", "volatility", "train"):
                spark_stages = [s for s in stages if MODULES[s] == MODULES[stage]]
                got += run_spark(
                    spark_stages,
                    dict.fromkeys(spark_stages, size),
                    args.backend,
                    args.spark_repeats or default_repeats(args.repeats),
                    args.warmup,
                    memory=args.spark_memory,
                    train_size=args.spark_train_size,
                    ndjson_variant=False,
                    log=log,
                )
            got += common.combine_ingest_mentions(got)
            rows += [{**r, "series": "size"} for r in got]
    return rows


def _pin(cores: list[int]) -> Any:
    def pin() -> None:  # runs in the child before exec
        os.sched_setaffinity(0, set(cores))

    return pin


def workers_series(args: Any, stages: list[str], counts: list[int], log: Any = print) -> list[dict[str, Any]]:
    """The harness again, pinned to 1, 2, … cores, each in its own subprocess."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    rows: list[dict[str, Any]] = []
    for n in counts:
        if available and n > len(available):
            log(f"[workers] {n} cores asked for, only {len(available)} usable: skipped")
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"wsb-bench-w{n}-"))
        csv = tmp / "rows.csv"
        cmd = [
            sys.executable,
            "-m",
            "benchmarks",
            "--backend",
            args.backend,
            "--stage",
            *stages,
            "--repeats",
            str(args.repeats),
            "--warmup",
            str(args.warmup),
            "--peers",
            args.peers,
            "--spark-memory",
            args.spark_memory,
            "--spark-train-size",
            str(args.spark_train_size),
            *(["--spark-repeats", str(args.spark_repeats)] if args.spark_repeats else []),
            "--no-md",
            "--csv",
            str(csv),
            "--out-dir",
            str(tmp),
            "--workers-tag",
            str(n),
        ]
        size = getattr(args, "workers_size", None) or args.size
        if size:
            cmd += ["--size", str(size)]
        env = {**os.environ, **{v: str(n) for v in THREAD_VARS}}
        env["PYTHONPATH"] = os.pathsep.join([str(common.HERE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        log(f"[workers] {n} core(s): {' '.join(cmd[2:])}")
        proc = subprocess.run(
            cmd, env=env, cwd=str(common.HERE.parent), preexec_fn=_pin(available[:n]) if available else None
        )
        if csv.exists():
            rows += [{**r, "series": "workers", "workers": n} for r in common.read_csv(csv)]
        elif proc.returncode != 0:
            log(f"[workers] the {n}-core run failed (exit {proc.returncode})")
    return rows


# --- outputs ---------------------------------------------------------------------------------


def plot(rows: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Draw the size (log-log) and cores panels into one PNG; None when nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size_rows = [r for r in rows if r.get("series") == "size" and common.ok(r)]
    worker_rows = [r for r in rows if r.get("series") == "workers" and common.ok(r)]
    stages = [s for s in (*common.STAGES, "ingest+mentions") if any(r["stage"] == s for r in size_rows + worker_rows)]
    if not stages:
        return None
    nrows = 2 if worker_rows else 1
    fig, axes = plt.subplots(nrows, len(stages), figsize=(4.2 * len(stages), 3.8 * nrows), squeeze=False)
    for j, stage in enumerate(stages):
        ax = axes[0][j]
        lines: dict[str, list[tuple[int, float]]] = {}
        for r in size_rows:
            if r["stage"] == stage:
                lines.setdefault(_label(r), []).append((r["size"], r["median_s"]))
        for label, pts in sorted(lines.items()):
            pts.sort()
            slope = loglog_slope([p[0] for p in pts], [p[1] for p in pts])
            name = f"{label[:38]}" + (f"  (slope {slope:.2f})" if slope is not None else "")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{stage}: time vs input size")
        ax.set_xlabel("stock-days" if stage in ("volatility", "train") else "posts" if stage == "embed" else "records")
        ax.set_ylabel("median seconds")
        ax.grid(True, which="both", alpha=0.3)
        if lines:
            ax.legend(fontsize=6.5)
        if nrows == 2:
            ax = axes[1][j]
            by: dict[str, dict[int, float]] = {}
            for r in worker_rows:
                if r["stage"] == stage:
                    by.setdefault(_label(r), {})[int(r["workers"])] = r["median_s"]
            counts = sorted({w for d in by.values() for w in d})
            width = 0.8 / max(1, len(counts))
            for k, w in enumerate(counts):
                xs = [i + k * width for i in range(len(by))]
                ax.bar(xs, [by[lab].get(w, float("nan")) for lab in sorted(by)], width=width, label=f"{w} core(s)")
            ax.set_xticks([i + width * (len(counts) - 1) / 2 for i in range(len(by))])
            ax.set_xticklabels([lab[:22] for lab in sorted(by)], rotation=30, ha="right", fontsize=6.5)
            ax.set_title(f"{stage}: 1 vs 2 cores")
            ax.set_ylabel("median seconds")
            ax.legend(fontsize=7)
    fig.suptitle(
        "wsb_gpu benchmarks: scaling (CPU)"
        if all(r["backend"] == "cpu" for r in size_rows + worker_rows)
        else "wsb_gpu benchmarks: scaling"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(rows: list[dict[str, Any]], png: Path | None, md_dir: Path) -> str:
    """The scaling tables (and the plot's link) for the RESULTS.md section."""
    out = []
    size_rows = [r for r in rows if r.get("series") == "size" and common.ok(r)]
    if size_rows:
        out.append("### Scaling with input size\n")
        out.append("| stage | implementation | sizes | median s | log-log slope |")
        out.append("|---|---|---|---|---:|")
        groups: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for r in size_rows:
            groups.setdefault((r["stage"], _label(r)), []).append((r["size"], r["median_s"]))
        for (stage, label), pts in sorted(groups.items()):
            pts.sort()
            slope = loglog_slope([p[0] for p in pts], [p[1] for p in pts])
            out.append(
                f"| {stage} | {label} | {' / '.join(f'{s:,}' for s, _ in pts)} | "
                f"{' / '.join(common._fmt_s(t) for _, t in pts)} | {'' if slope is None else f'{slope:.2f}'} |"
            )
        out.append("")
    worker_rows = [r for r in rows if r.get("series") == "workers" and common.ok(r)]
    if worker_rows:
        out.append("### Scaling with cores (each run pinned to the first n cores)\n")
        counts = sorted({int(r["workers"]) for r in worker_rows})
        out.append(
            "| stage | implementation | size | "
            + " | ".join(f"{c} core(s) s" for c in counts)
            + f" | speed-up {counts[0]}→{counts[-1]} |"
        )
        out.append("|---|---|---:|" + "---:|" * (len(counts) + 1))
        groups2: dict[tuple[str, str, int], dict[int, float]] = {}
        for r in worker_rows:
            groups2.setdefault((r["stage"], _label(r), r["size"]), {})[int(r["workers"])] = r["median_s"]
        for (stage, label, size), by in sorted(groups2.items()):
            lo, hi = by.get(counts[0]), by.get(counts[-1])
            sp = f"{lo / hi:.2f}×" if lo and hi else ""
            out.append(
                f"| {stage} | {label} | {size:,} | "
                + " | ".join(common._fmt_s(by.get(c, math.nan)) for c in counts)
                + f" | {sp} |"
            )
        out.append("")
    if png is not None:
        rel = os.path.relpath(png, md_dir)
        out.append(f"![scaling]({rel})\n")
    return "\n".join(out)


def run_scaling(
    args: Any, out_dir: Path, main_rows: list[dict[str, Any]] | None = None, log: Any = print
) -> tuple[list[dict[str, Any]], str]:
    """Measure what ``--scaling`` / ``--workers`` ask for; returns (rows, Markdown for RESULTS.md)."""
    stages = list(common.STAGES) if "all" in args.stage else list(dict.fromkeys(args.stage))
    rows: list[dict[str, Any]] = []
    if args.scaling:
        rows += size_series(args, stages, main_rows or [], log)
    if args.workers:
        counts = [int(c) for c in str(args.workers).split(",") if c.strip()]
        if args.backend == "gpu":
            log("[workers] the cores series is a CPU measurement: skipped on --backend gpu")
        else:
            rows += workers_series(args, stages, counts, log)
    png = plot(rows, Path(out_dir) / "scaling.png")
    if png is not None:
        log(f"plot: {png}")
    return rows, markdown(rows, png, Path(out_dir))


if __name__ == "__main__":
    # The harness's command line with --scaling --workers 1,2, run as `python -m benchmarks`
    # (runpy, not an import: the command line imports this module, not the other way round).
    import runpy

    argv = sys.argv[1:]
    if "--scaling" not in argv:
        argv.append("--scaling")
    if not any(a.startswith("--workers") for a in argv):
        argv += ["--workers", "1,2"]
    sys.argv = [sys.argv[0], *argv]
    runpy.run_module("benchmarks", run_name="__main__", alter_sys=True)
