"""What every benchmark shares: timing, result rows, ratios, machine description, tables.

A result row is a plain dict with the fields of :data:`ROW_FIELDS` (the stage modules'
``bench()`` return the first nine; the harness adds the rest). ``impl`` is ``"wsb_gpu"``
for our implementation and a peer's name otherwise (``"pandas"``, ``"pyspark"``, the seed's
FinBERT loop ...). Ratios are always *speed-ups of ours over a peer measured in the same
run at the same size*: ``peer median seconds / our median seconds`` (equal to our
throughput / the peer's throughput), so ``3.0`` means "ours is three times faster".

The machine a run is measured on is described by :mod:`wsb_gpu.sysinfo` (the same
description as ``run.json`` and ``wsb-gpu info``), plus what only a benchmark section records:
the date, Java (the Spark peer's runtime), the peers' library versions and whether the GPU
backend runs here. Synthetic WSB + CRSP inputs come from :func:`wsb_gpu.synth.generate`,
cached under ``benchmarks/data``; :func:`crsp_panel` and :func:`features_frame` make the
smaller CRSP-daily and feature tables some checks need.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from wsb_gpu import sysinfo

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"  # git-ignored cache of generated inputs
SYNTH_SPAN = ("2012-01-01", "2019-12-31")  # the synthetic posts' dates (wsb_gpu.synth's defaults)
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"

STAGES = ("ingest", "mentions", "embed", "signals", "volatility", "train", "enet", "sequence")
ROW_FIELDS = (
    "stage",
    "impl",
    "backend",
    "size",
    "unit",
    "median_s",
    "min_s",
    "max_s",
    "throughput",
    "repeats",
    "workers",
    "note",
    "error",
    "series",
)
OURS = "wsb_gpu"

# The project's goals, as minimum speed-ups of ours over a peer (matched on a substring of
# the peer's name). Ridge CV has no measured peer at the seed's shape: its goal is an
# absolute time, see SEED_REPORTED.
GOALS: dict[tuple[str, str], float] = {
    ("ingest+mentions", "pyspark"): 3.0,
    ("volatility", "pyspark"): 3.0,
    ("embed", "seed"): 3.0,
}
# The seed's ridge CV: ~1M stock-days x 772 features, 9 windows x 3 folds x 5 lambdas, in
# about 7 minutes on a 32-core node. Ours must be "well under" that at the same shape.
SEED_TRAIN_SHAPE = 1_000_000
SEED_TRAIN_SECONDS = 420.0
# What the seed reports for its own runs (not measured here; shown for reference only).
SEED_REPORTED = {
    "train": "ridge CV, 9 windows x 3 folds x 5 lambdas, ~1M stock-days x 772 features: "
    "~7 min on a 32-core node (Spark MLlib CrossValidator)",
    "embed": "FinBERT, ~21M posts: 1 h 47 min on 1 A100 (~3,300 posts/s)",
}


# --- timing ------------------------------------------------------------------------------


def time_call(
    fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, setup: Callable[[], Any] | None = None
) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    ``setup`` runs, untimed, before every call (e.g. to delete the previous output).

    >>> times = time_call(lambda: None, repeats=2, warmup=0)
    >>> len(times), all(t >= 0 for t in times)
    (2, True)
    """
    for _ in range(max(0, warmup)):
        if setup is not None:
            setup()
        fn()
    times = []
    for _ in range(max(1, repeats)):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def make_row(
    stage: str,
    impl: str,
    backend: str,
    size: int,
    times: Sequence[float],
    *,
    unit: str = "records/s",
    items: float | None = None,
    note: str = "",
    workers: int | None = None,
) -> dict[str, Any]:
    """A result row from repeated timings: median, min, max and throughput.

    ``items`` is what the throughput counts (records, MB ...); default ``size``.

    >>> r = make_row("volatility", "pandas", "cpu", 100, [2.0, 1.0, 4.0])
    >>> r["median_s"], r["min_s"], r["max_s"], r["throughput"]
    (2.0, 1.0, 4.0, 50.0)
    """
    med = statistics.median(times)
    items = size if items is None else items
    return {
        "stage": stage,
        "impl": impl,
        "backend": backend,
        "size": int(size),
        "unit": unit,
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "throughput": (items / med) if med > 0 else math.inf,
        "repeats": len(times),
        "workers": workers,
        "note": note,
        "error": "",
        "series": "",
    }


def error_row(stage: str, impl: str, backend: str, size: int, error: str) -> dict[str, Any]:
    """A row that records why a measurement could not be taken (no timing in it)."""
    return {
        "stage": stage,
        "impl": impl,
        "backend": backend,
        "size": int(size),
        "unit": "",
        "median_s": math.nan,
        "min_s": math.nan,
        "max_s": math.nan,
        "throughput": math.nan,
        "repeats": 0,
        "workers": None,
        "note": "",
        "error": error.splitlines()[0][:300] if error else "failed",
        "series": "",
    }


def stage_parser(doc: str | None, *, size: int, size_help: str, repeats: int = 3) -> Any:
    """The command line every ``benchmarks/<stage>.py`` program shares:
    ``--backend --size --repeats`` (a module adds its own options to the parser).

    >>> stage_parser("Demo.", size=10, size_help="rows").parse_args([]).size
    10
    """
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--backend", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--size", type=int, default=size, help=size_help)
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs (median, min-max)")
    return parser


def print_rows(rows: Iterable[dict[str, Any]]) -> bool:
    """Print result rows as one aligned line each; True when at least one row has no error."""
    any_ok = False
    for r in rows:
        head = f"{r['stage']:10} {r['impl']:18} {r['backend']:4} {r['size']:>12,}"
        if r.get("error"):
            print(f"{head}  error: {r['error']}")
            continue
        any_ok = True
        print(
            f"{head}  median {r['median_s']:9.3f} s (min {r['min_s']:.3f}, max {r['max_s']:.3f})  "
            f"{r['throughput']:>14,.1f} {r['unit']}  {r.get('note') or ''}"
        )
    return any_ok


def normalise_row(row: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """Fill the harness fields a stage module left out, keep everything it gave."""
    out = {k: row.get(k, defaults.get(k)) for k in ROW_FIELDS}
    for k, v in defaults.items():
        if out.get(k) in (None, ""):
            out[k] = v
    for k in ("median_s", "min_s", "max_s", "throughput"):
        try:
            out[k] = float(out[k]) if out[k] not in (None, "") else math.nan
        except (TypeError, ValueError):
            out[k] = math.nan
    out["size"] = int(float(out["size"])) if out.get("size") not in (None, "") else 0
    for k in ("note", "error", "series"):
        out[k] = out.get(k) or ""
    if row.get("scope"):
        out["scope"] = row["scope"]
    return out


def ok(row: dict[str, Any]) -> bool:
    """True when the row holds a timing (not an error row)."""
    return not row.get("error") and isinstance(row.get("median_s"), float) and math.isfinite(row["median_s"])


# --- derived rows and ratios ---------------------------------------------------------------


def combine_ingest_mentions(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for ``ingest+mentions``: per (impl, backend, size), the sum of both stages.

    The seed's first job does both in one Spark program; our pipeline runs them as two
    stages. The sum of medians is compared (min and max are summed too: a bound, not a
    measured run).

    >>> rows = [dict(stage="ingest", impl="x", backend="cpu", size=5, median_s=1.0, min_s=1.0,
    ...              max_s=2.0, unit="records/s", error=""),
    ...         dict(stage="mentions", impl="x", backend="cpu", size=5, median_s=0.5, min_s=0.5,
    ...              max_s=0.5, unit="records/s", error="")]
    >>> [(r["stage"], r["median_s"], r["throughput"]) for r in combine_ingest_mentions(rows)]
    [('ingest+mentions', 1.5, 3.3333333333333335)]
    """
    rows = [r for r in rows if ok(r) and not r.get("series")]
    out = []
    keys = sorted({(r["impl"], r["backend"], r["size"]) for r in rows}, key=str)
    for impl, backend, size in keys:
        parts = {r["stage"]: r for r in rows if (r["impl"], r["backend"], r["size"]) == (impl, backend, size)}
        if "ingest" in parts and "mentions" in parts:
            a, b = parts["ingest"], parts["mentions"]
            med = a["median_s"] + b["median_s"]
            out.append(
                {
                    "stage": "ingest+mentions",
                    "impl": impl,
                    "backend": backend,
                    "size": size,
                    "unit": "records/s",
                    "median_s": med,
                    "min_s": a["min_s"] + b["min_s"],
                    "max_s": a["max_s"] + b["max_s"],
                    "throughput": size / med if med > 0 else math.inf,
                    "repeats": min(a.get("repeats") or 0, b.get("repeats") or 0),
                    "workers": a.get("workers"),
                    "note": "sum of the ingest and mentions medians",
                    "error": "",
                    "series": "",
                }
            )
    return out


def is_ours(impl: str) -> bool:
    """Our implementation's rows: ``wsb_gpu`` or a named variant ``wsb_gpu/<engine>``.

    >>> is_ours("wsb_gpu/stats"), is_ours("pandas")
    (True, False)
    """
    return impl == OURS or impl.startswith(OURS + "/")


def scope(row: dict[str, Any]) -> str:
    """``kernel`` for a compute-only measurement (data already in memory), else ``stage``.

    Taken from the row's ``scope`` field when a module sets it, else from its note.

    >>> scope({"note": "kernel only, 13 partitions"}), scope({"note": "whole stage: Parquet in"})
    ('kernel', 'stage')
    """
    if row.get("scope") in ("kernel", "stage"):
        return row["scope"]
    note = (row.get("note") or "").lower()
    return "kernel" if re.search(r"kernel only|compute only|in memory", note) else "stage"


def goal_for(stage: str, peer: str) -> float | None:
    """The project's minimum speed-up of ours over ``peer`` for ``stage``, if it sets one.

    >>> goal_for("volatility", "pyspark"), goal_for("volatility", "pandas")
    (3.0, None)
    """
    for (s, p), g in GOALS.items():
        if s == stage and p in peer.lower():
            return g
    return None


def _variant(row: dict[str, Any]) -> str:
    """A short name for one of several rows of the same implementation (from its note)."""
    note = (row.get("note") or "").split(",")[0].split(";")[0].strip()
    return f"{row['impl']} ({note})" if note else row["impl"]


def compute_ratios(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-ups of ours over each peer measured at the same stage and size.

    Every peer row is paired with every row of ours at that stage and size (a module may
    time several variants: kernel only, whole stage, two engines). A goal is
    judged only where both sides measured the same scope (both whole stage, or both
    compute only). Peers that run on the CPU are compared with ours on whichever
    backend the run measured.

    >>> rows = [dict(stage="volatility", impl="wsb_gpu", backend="cpu", size=10, median_s=1.0, error="", note=""),
    ...         dict(stage="volatility", impl="pyspark", backend="cpu", size=10, median_s=4.0, error="", note=""),
    ...         dict(stage="volatility", impl="pandas", backend="cpu", size=99, median_s=4.0, error="", note="")]
    >>> [(r["peer"], r["speedup"], r["goal"], r["met"]) for r in compute_ratios(rows)]
    [('pyspark', 4.0, 3.0, True)]
    """
    rows = [r for r in rows if ok(r) and not r.get("series")]
    out = []
    for r in rows:
        if is_ours(r["impl"]):
            continue
        mine = [m for m in rows if is_ours(m["impl"]) and (m["stage"], m["size"]) == (r["stage"], r["size"])]
        for m in mine:
            speedup = r["median_s"] / m["median_s"] if m["median_s"] > 0 else math.inf
            same = scope(m) == scope(r)
            goal = goal_for(r["stage"], r["impl"]) if same else None
            out.append(
                {
                    "stage": r["stage"],
                    "backend": m["backend"],
                    "size": r["size"],
                    "peer": _variant(r)
                    if sum(x["impl"] == r["impl"] for x in rows if x["stage"] == r["stage"] and x["size"] == r["size"])
                    > 1
                    else r["impl"],
                    "ours": _variant(m) if len(mine) > 1 else m["impl"],
                    "ours_s": m["median_s"],
                    "peer_s": r["median_s"],
                    "speedup": speedup,
                    "same_scope": same,
                    "goal": goal,
                    "met": None if goal is None else bool(speedup >= goal),
                }
            )
    return out


# --- machine description -----------------------------------------------------------------

# The peers' libraries, reported beside the ones wsb_gpu.sysinfo.versions() always lists.
PEER_LIBRARIES = ("polars", "duckdb", "pyspark", "sentence_transformers", "onnxruntime")


def java_path() -> str | None:
    """The ``java`` PySpark starts: ``$JAVA_HOME/bin/java``, else the one on ``PATH``."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    return java if java and Path(java).exists() else None


def java_status() -> tuple[bool, str]:
    """``(True, first line of java -version)``, or ``(False, why Java cannot run)``."""
    java = java_path()
    if java is None:
        return False, "no Java runtime found (PySpark needs Java 17+ on PATH or JAVA_HOME)"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"Java does not start ({e})"
    text = (out.stderr or out.stdout).strip()
    if out.returncode != 0:
        return False, f"Java does not start: {text[:200]}"
    return True, text.splitlines()[0].strip() if text else "unknown version"


def java_version() -> str:
    """The Java runtime PySpark would use, for the machine description: ``java -version``'s
    first line, ``absent`` without Java, ``unknown`` when it does not start.

    >>> isinstance(java_version(), str)
    True
    """
    ok, line = java_status()
    if ok:
        return line
    return "absent" if java_path() is None else "unknown"


def machine_info() -> dict[str, Any]:
    """:func:`wsb_gpu.sysinfo.machine` plus what a benchmark section records besides.

    The keys of :func:`wsb_gpu.sysinfo.machine` (``host, os, machine, cpu_model, cpu_count,
    usable_cores, memory_gib, gpus, gpu_driver`` ...) and ``date``, ``python``, ``java``
    (the runtime the Spark peer would use), ``versions`` (:func:`wsb_gpu.sysinfo.versions`
    with the peers' libraries, Python left out) and ``gpu_status`` (whether the GPU backend
    runs here, and why not: the reason a section has no GPU figures).
    """
    from wsb_gpu.backend import gpu_status

    versions = sysinfo.versions(extra=PEER_LIBRARIES)
    usable, why = gpu_status()
    return {
        **sysinfo.machine(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": versions.pop("python"),
        "java": java_version(),
        "versions": versions,
        "gpu_status": ("GPU backend usable: " if usable else "no GPU backend on this machine: ") + why,
    }


# --- output: CSV and Markdown --------------------------------------------------------------


def _fmt_s(x: float) -> str:
    """Seconds with three significant digits.

    >>> _fmt_s(0.012345), _fmt_s(12.345), _fmt_s(1234.5)
    ('0.0123', '12.3', '1234')
    """
    if not isinstance(x, (int, float)) or not math.isfinite(x):
        return "–"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _fmt_n(x: float) -> str:
    """A count or rate with thousands separators.

    >>> _fmt_n(1234567.8), _fmt_n(12.34)
    ('1,234,568', '12.3')
    """
    if not isinstance(x, (int, float)) or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def csv_path(backend: str, when: dt.date | None = None, host: str | None = None, folder: Path = RESULTS_DIR) -> Path:
    """``benchmarks/results/<date>-<host>-<backend>.csv``."""
    when = when or dt.date.today()
    host = (host or socket.gethostname()).split(".")[0]
    return Path(folder) / f"{when.isoformat()}-{host}-{backend}.csv"


def write_csv(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Append rows to a CSV (header written once), creating folders as needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS})
    return path


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows written by :func:`write_csv`, with numbers parsed back."""
    with Path(path).open(newline="") as f:
        return [normalise_row(r) for r in csv.DictReader(f)]


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    """The measured rows as a Markdown table."""
    lines = [
        "| stage | implementation | backend | size | median s | min–max s | throughput | note |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if ok(r):
            lines.append(
                f"| {r['stage']} | {r['impl']} | {r['backend']} | {r['size']:,} | {_fmt_s(r['median_s'])} "
                f"| {_fmt_s(r['min_s'])}–{_fmt_s(r['max_s'])} | {_fmt_n(r['throughput'])} {r.get('unit') or ''} "
                f"| {r.get('note') or ''} |"
            )
        else:
            lines.append(
                f"| {r['stage']} | {r['impl']} | {r['backend']} | {r['size']:,} | – | – | – "
                f"| not measured: {r.get('error') or 'failed'} |"
            )
    return "\n".join(lines)


def ratios_table(ratios: Sequence[dict[str, Any]]) -> str:
    """The speed-ups as a Markdown table."""
    lines = [
        "| stage | size | ours | peer | ours s | peer s | speed-up (peer s / ours s) | goal | met |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for q in ratios:
        goal = f"≥ {q['goal']:g}×" if q["goal"] else ""
        met = "" if q["met"] is None else ("yes" if q["met"] else "**no**")
        lines.append(
            f"| {q['stage']} | {q['size']:,} | {q.get('ours', OURS)} | {q['peer']} | {_fmt_s(q['ours_s'])} | {_fmt_s(q['peer_s'])} "
            f"| {q['speedup']:.2f}× | {goal} | {met} |"
        )
    return "\n".join(lines)


def train_goal_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Our ridge CV at the seed's shape against the seed's reported 7 minutes.

    >>> train_goal_lines([dict(stage="train", impl="wsb_gpu/stats", size=1_000_000, median_s=42.0,
    ...                        backend="cpu", error="")])[0].split(": ")[1]
    "42 s against the seed's ~420 s on 32 cores (10.0× less time)"
    """
    out = []
    for r in rows:
        if r["stage"] == "train" and is_ours(r["impl"]) and ok(r) and r["size"] >= SEED_TRAIN_SHAPE:
            out.append(
                f"- ridge CV at the seed's shape ({r['size']:,} stock-days), {r['impl']} on {r['backend']}: "
                f"{_fmt_s(r['median_s'])} s against the seed's ~{SEED_TRAIN_SECONDS:.0f} s on 32 cores "
                f"({SEED_TRAIN_SECONDS / r['median_s']:.1f}× less time)"
            )
    return out


def machine_block(info: dict[str, Any]) -> str:
    """The machine description as Markdown bullet lines."""
    libs = ", ".join(f"{k} {v}" for k, v in sorted(info["versions"].items()))
    gpus = "; ".join(info["gpus"]) if info["gpus"] else "none"
    if info["gpus"] and info.get("gpu_driver"):
        gpus += f" (driver {info['gpu_driver']})"
    return "\n".join(
        [
            f"- Host: `{info['host']}` ({info['os']}), Python {info['python']}, Java: {info['java']}",
            (
                f"- CPU: {info['cpu_model']}, {info['cpu_count']} cores ({info['usable_cores']} usable by the benchmark)"
                f", RAM {info['memory_gib']} GiB"
            ),
            f"- GPU: {gpus} — {info['gpu_status']}",
            f"- Libraries: {libs}",
        ]
    )


RESULTS_HEADER = """# Benchmark results

Each section below was appended by one run of the harness (`python -m benchmarks ...`) on
one machine; sections are never edited or overwritten. Times are wall-clock seconds of the
whole stage (read the input files, compute, write the output dataset) unless a row's note
says "kernel only" (data already in memory); median of the repeated runs after the
warm-up; min–max is the spread of those runs. Speed-ups are *peer seconds / our
seconds* for the same stage, size and data, measured in the same run on the same cores.
How to reproduce: see `docs/benchmarks.md` (or the command line in each section).
"""


def append_section(
    md_path: str | Path,
    *,
    title: str,
    info: dict[str, Any],
    command: str,
    rows: Sequence[dict[str, Any]],
    ratios: Sequence[dict[str, Any]],
    extra: str = "",
) -> Path:
    """Append one dated section for this machine to ``RESULTS.md`` (creating it if needed).

    Never rewrites what is already there: the file is opened in append mode.
    """
    md_path = Path(md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    if not md_path.exists() or md_path.stat().st_size == 0:
        parts.append(RESULTS_HEADER)
    parts.append(f"\n## {title}\n")
    parts.append(machine_block(info) + "\n")
    parts.append(f"Command: `{command}`\n")
    if not info["gpus"] or not info["gpu_status"].startswith("GPU backend usable"):
        parts.append(
            "**GPU: no GPU on this machine, so this section has no GPU figures** "
            f"({info['gpu_status']}). GPU numbers are recorded only from a run of "
            "`python -m benchmarks --backend gpu` on a machine that has one.\n"
        )
    parts.append("### Measurements\n\n" + results_table(rows) + "\n")
    if ratios:
        parts.append("### Speed-ups of wsb_gpu over the peers\n\n" + ratios_table(ratios) + "\n")
    goal = train_goal_lines(rows)
    if goal:
        parts.append(
            "Goal check against the seed's reported time (not a same-machine ratio):\n\n" + "\n".join(goal) + "\n"
        )
    refs = [f"- {stage}: {text}" for stage, text in SEED_REPORTED.items() if any(r["stage"] == stage for r in rows)]
    if refs:
        parts.append("Reported by the seed (other hardware, not measured here):\n\n" + "\n".join(refs) + "\n")
    if extra:
        parts.append(extra.rstrip() + "\n")
    with md_path.open("a") as f:
        f.write("\n".join(parts))
    return md_path


# --- synthetic inputs ----------------------------------------------------------------------


def synthetic_inputs(
    size: int, *, seed: int = 0, folder: str | Path | None = None, tickers: int | None = None
) -> dict[str, Path]:
    """Dumps, ticker table and CRSP daily with about ``size`` posts+comments, cached on disk.

    Written by :func:`wsb_gpu.synth.generate` over :data:`SYNTH_SPAN` with
    ``posts_per_day = size / days`` (so the record count is close to ``size``, not equal;
    the stages' rows say how many were read) and ``tickers`` stocks (default 50). Returns
    the paths ``submissions, comments, stocknames, crsp``. Later calls with the same
    arguments reuse the files (the folder name is the cache key), so the generation cost is
    paid once per size.
    """
    from wsb_gpu.synth import FILES, GENERATOR_VERSION, generate

    name = f"wsb-{size}-seed{seed}" + (f"-tickers{tickers}" if tickers else "")
    folder = Path(folder) if folder else DATA_DIR / name
    paths = {k: folder / FILES[k] for k in ("submissions", "comments", "stocknames", "crsp")}
    done = folder / ".complete"
    made = json.loads(done.read_text() or "{}") if done.exists() else {}
    current = made.get("generator") == "synth" and made.get("version") == GENERATOR_VERSION
    if current and all(p.exists() for p in paths.values()):  # older generators' files are made again
        return paths
    done.unlink(missing_ok=True)  # an interrupted generation must not look complete
    start, end = (dt.date.fromisoformat(d) for d in SYNTH_SPAN)
    generate(
        folder, seed=seed, tickers=tickers or 50, start=start, end=end, posts_per_day=size / ((end - start).days + 1)
    )
    done.write_text(
        json.dumps(
            {"size": size, "seed": seed, "tickers": tickers or 50, "generator": "synth", "version": GENERATOR_VERSION}
        )
    )
    return paths


def crsp_panel(
    path: str | Path,
    *,
    n_stocks: int | None = None,
    rows: int | None = None,
    start: str = "2012-01-01",
    end: str = "2019-12-31",
    seed: int = 0,
    symbols: Sequence[str] | None = None,
) -> Path:
    """Write a CRSP-daily-like CSV (``PERMNO, date, TICKER, PRC, VOL, RET, RETX, DLRET``).

    Give ``n_stocks`` or ``rows`` (stock-days; the stock count is derived from the number
    of weekdays between ``start`` and ``end``). Rows are date-major as WRDS exports them;
    about 0.1% of RET are letter codes with RETX numeric; each stock's last row is a
    DLRET-only delisting row. Returns the path.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    days = pd.bdate_range(start, end)
    if n_stocks is None:
        n_stocks = max(1, math.ceil((rows or len(days)) / len(days)))
    if rows is not None and rows < n_stocks * len(days):
        days = days[: max(2, math.ceil(rows / n_stocks))]
    rng = np.random.default_rng(seed)
    T, N = len(days), n_stocks
    # HAR-like persistence in log volatility plus fat (Student-t) tails.
    logv = np.empty((T, N))
    logv[0] = np.log(0.02)
    shocks = rng.normal(0, 0.15, size=(T, N))
    for t in range(1, T):
        logv[t] = 0.97 * logv[t - 1] + 0.03 * np.log(0.02) + shocks[t]
    ret = np.exp(logv) * rng.standard_t(5, size=(T, N)) / math.sqrt(5 / 3)
    permno = np.tile(np.arange(10001, 10001 + N, dtype=np.int64), T)
    date = np.repeat(days.strftime("%Y-%m-%d").to_numpy(), N)
    r = ret.reshape(-1)
    ret_s = np.char.mod("%.6f", r).astype(object)
    code = rng.random(r.size) < 0.001
    ret_s[code] = np.where(rng.random(code.sum()) < 0.5, "B", "C")
    retx_s = np.char.mod("%.6f", r * 0.999).astype(object)
    dlret = np.full(r.size, "", dtype=object)
    last = np.arange((T - 1) * N, T * N)
    ret_s[last] = ""
    retx_s[last] = ""
    dlret[last] = "-0.300000"
    tick = np.array(
        list(symbols) if symbols is not None and len(symbols) >= N else [f"S{i:05d}" for i in range(N)], dtype=object
    )[:N]
    table = pa.table(
        {
            "PERMNO": permno,
            "date": date,
            "TICKER": np.tile(tick, T),
            "PRC": np.round(20 * np.exp(np.cumsum(ret, axis=0)).reshape(-1), 4),
            "VOL": rng.integers(1000, 10_000_000, size=r.size),
            "RET": ret_s.astype(str),
            "RETX": retx_s.astype(str),
            "DLRET": dlret.astype(str),
        }
    )
    if rows is not None:
        table = table.slice(0, rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, path)
    return path


def features_frame(rows: int, *, n_embed: int = 768, first_year: int = 2008, last_year: int = 2020, seed: int = 0):
    """A stock-day feature frame at the seed's ridge shape: HAR terms + ``n_embed`` floats.

    ``permno, date, vol_1, vol_5, vol_22, vol_63, e000.., y_1``; rows spread evenly over
    ``first_year`` … ``last_year`` so that a 4-year rolling window yields
    ``last_year - first_year - 3`` test years (9 with the defaults, as in the seed).
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    days = pd.bdate_range(f"{first_year}-01-01", f"{last_year}-12-31")
    date = days[np.sort(rng.integers(0, len(days), size=rows))]
    vol = np.abs(rng.normal(0.02, 0.01, size=(rows, 4)))
    emb = rng.normal(0, 1, size=(rows, n_embed)).astype(np.float32)
    y = vol @ np.array([0.4, 0.3, 0.2, 0.1]) + 0.002 * emb[:, 0] + rng.normal(0, 0.005, size=rows)
    frame = pd.DataFrame({"permno": rng.integers(10001, 13000, size=rows), "date": date})
    for j, w in enumerate((1, 5, 22, 63)):
        frame[f"vol_{w}"] = vol[:, j]
    frame = pd.concat([frame, pd.DataFrame(emb, columns=[f"e{j:03d}" for j in range(n_embed)])], axis=1)
    frame["y_1"] = y
    return frame
