"""Benchmark of the volatility stage: our kernel vs pandas ``groupby().rolling()``.

Rows (see benchmarks/common.py), all on the same synthetic panel of ``size`` stock-days
(default 25.7M = ~7,000 permnos x ~3,670 trading days, the seed's CRSP size; 0.5% of the
returns missing), generated in memory:

* ``wsb_gpu`` / kernel: :func:`~wsb_gpu.stages.volatility.volatility_kernel` over
  partitions of ~2M rows holding whole stocks (as the stage partitions), run on all cores
  with dask's threaded scheduler. Compute only: the panel is already in memory.
* ``wsb_gpu`` / kernel, dates shuffled: the same with the rows of each partition in random
  order, so the kernel's sort is included (worst case).
* ``pandas`` / groupby-rolling: the named baseline: ``groupby("permno").rolling(w,
  min_periods=w).sum()`` of the squared returns for w in 1, 5, 22, 63, ``sqrt``, and
  ``groupby().shift(-w)`` for the targets, on the whole panel (what a pandas user writes).
* ``wsb_gpu`` / stage: the ``volatility`` stage (:func:`wsb_gpu.stages.run_stage`) from the
  panel's input file to the written dataset (read -> parse -> sorted runs -> per-range
  merge, kernel -> write), with the threaded scheduler (``client=None``), once from a
  Parquet file (``PERMNO: int64, date: date32, RET: float64``, what the harness also gives
  the PySpark peer) and once from a CRSP-style CSV (``PERMNO,date,RET``, ``YYYY-MM-DD``,
  6-decimal returns, missing returns written as the letter code ``C``: what users run).
* ``polars`` / ``duckdb``: the tools a researcher who wants speed on one machine reaches
  for, file to file on the same CSV: :func:`polars_file` (``rolling_sum().over("permno")``)
  and :func:`duckdb_file` (window functions), each writing the same columns to Parquet, on
  every core (``pip install -e '.[bench]'``; a row says so when one is missing).

The input files are generated once per size into ``benchmarks/data/volatility-<size>/``
(git-ignored) and reused. ``--spark`` also times the seed's PySpark implementation
(:func:`benchmarks.spark_peer.spark_volatility`, ``local[<cores>]``) on the same two files
and prints the ratio (the harness, ``python -m benchmarks``, does this for Parquet).

Run: ``python -m benchmarks.volatility --backend cpu --size 25700000 --repeats 3 [--spark]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA_DIR, error_row, make_row, print_rows, stage_parser, time_call
from wsb_gpu.sysinfo import usable_cores

STAGE = "volatility"
DAYS_PER_STOCK = 3671  # ~14.6 years of trading days: 7,000 stocks -> 25.7M rows
PARTITION_ROWS = 2_000_000
LABELS = {"parquet": "Parquet", "csv": "CSV"}  # input file kinds of the stage rows


def make_panel(size: int, seed: int = 0) -> Any:
    """A pandas panel ``permno, date, ret`` of about ``size`` rows, sorted by permno, date."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_stocks = max(1, round(size / DAYS_PER_STOCK))
    base = size // n_stocks
    lengths = np.full(n_stocks, base)
    lengths[: size - base * n_stocks] += 1
    days = pd.bdate_range("2010-01-04", periods=int(lengths.max())).values.astype("datetime64[s]")
    permno = np.repeat(np.arange(10000, 10000 + n_stocks, dtype=np.int64), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(size) - starts
    sigma = np.repeat(rng.uniform(0.005, 0.05, n_stocks), lengths)
    ret = rng.standard_normal(size) * sigma
    ret[rng.random(size) < 0.005] = np.nan
    return pd.DataFrame({"permno": permno, "date": days[position], "ret": ret})


def partitions(panel: Any, rows: int = PARTITION_ROWS, shuffle: bool = False) -> list:
    """Split a sorted panel into frames of ~``rows`` rows that hold whole stocks."""
    import numpy as np

    permno = panel["permno"].to_numpy()
    starts = np.flatnonzero(np.r_[True, permno[1:] != permno[:-1]])
    cuts = [0]
    for s in starts[1:]:
        if s - cuts[-1] >= rows:
            cuts.append(int(s))
    cuts.append(len(panel))
    parts = [panel.iloc[a:b].reset_index(drop=True) for a, b in zip(cuts, cuts[1:])]
    if shuffle:
        rng = np.random.default_rng(1)
        parts = [p.take(rng.permutation(len(p))).reset_index(drop=True) for p in parts]
    return parts


def run_kernel(parts: list, backend: str) -> None:
    """The kernel over all partitions, in parallel, like the stage's per-partition tasks."""
    import dask

    from wsb_gpu.stages.volatility import volatility_kernel

    if backend == "gpu":
        import cudf

        parts = [cudf.from_pandas(p) for p in parts]
        for p in parts:
            volatility_kernel(p)
        return
    tasks = [dask.delayed(volatility_kernel)(p) for p in parts]
    dask.compute(*tasks, scheduler="threads", num_workers=usable_cores())


def stage_inputs(size: int, panel: Any = None) -> dict[str, Path]:
    """:func:`make_panel` as ``crsp.parquet`` and ``crsp.csv`` under benchmarks/data (written once)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder = DATA_DIR / f"volatility-{size}"
    paths = {"parquet": folder / "crsp.parquet", "csv": folder / "crsp.csv"}
    if all(p.exists() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    if panel is None:
        panel = make_panel(size)
    permno = pa.array(panel["permno"].to_numpy())
    date = pa.array(panel["date"].to_numpy()).cast(pa.date32())
    ret = pa.array(panel["ret"].to_numpy(), from_pandas=True)
    pq.write_table(pa.table({"PERMNO": permno, "date": date, "RET": ret}), paths["parquet"], row_group_size=1 << 20)
    text = pc.fill_null(pc.cast(pc.round(ret, 6), pa.string()), "C")  # a CRSP letter code for missing
    tmp = paths["csv"].with_suffix(".tmp")
    pacsv.write_csv(
        pa.table({"PERMNO": permno, "date": pc.cast(date, pa.string()), "RET": text}),
        tmp,
        write_options=pacsv.WriteOptions(quoting_style="none"),
    )
    tmp.replace(paths["csv"])
    return paths


def pandas_rolling(panel: Any) -> Any:
    """The baseline: pandas grouped rolling sums of squares, sqrt, grouped shift."""
    import numpy as np

    df = panel.sort_values(["permno", "date"], ignore_index=True)
    r2 = df["ret"] ** 2
    g = r2.groupby(df["permno"])
    out = df[["permno", "date", "ret"]].copy()
    for w in (1, 5, 22, 63):
        s = g.rolling(w, min_periods=w).sum().reset_index(level=0, drop=True)
        out[f"vol_{w}"] = np.sqrt(s.sort_index())
    for w in (1, 5, 22, 63):
        out[f"y_{w}"] = out.groupby("permno")[f"vol_{w}"].shift(-w)
    return out


WINDOWS = (1, 5, 22, 63)


def polars_file(src: Path, dst: Path) -> None:
    """The polars peer, file to file: read the CRSP-style CSV (letter codes as missing), sort,
    ``sqrt(rolling_sum(ret², w)).over(permno)`` (missing when the window holds fewer than w
    returns), the value w rows ahead per stock (the forward target), write Parquet — what a polars user writes."""
    import polars as pl

    df = pl.read_csv(
        src, schema_overrides={"PERMNO": pl.Int64, "date": pl.Date, "RET": pl.Float64}, null_values=["C"]
    ).sort(["PERMNO", "date"])
    r2 = pl.col("RET") ** 2
    df = df.with_columns(r2.rolling_sum(w, min_samples=w).over("PERMNO").sqrt().alias(f"vol_{w}") for w in WINDOWS)
    df = df.with_columns(pl.col(f"vol_{w}").shift(-w).over("PERMNO").alias(f"y_{w}") for w in WINDOWS)
    df.write_parquet(dst)


def duckdb_file(src: Path, dst: Path, threads: int | None = None) -> None:
    """The DuckDB peer, file to file: the same with window functions
    (``sum(ret²) OVER (PARTITION BY permno ORDER BY date ROWS w-1 PRECEDING)``, kept when the
    window counts w returns; ``lead`` for the targets), ``COPY … TO`` Parquet."""
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    win = {w: f"(PARTITION BY PERMNO ORDER BY date ROWS BETWEEN {w - 1} PRECEDING AND CURRENT ROW)" for w in WINDOWS}
    vols = ", ".join(
        f"CASE WHEN count(RET) OVER {win[w]} = {w} THEN sqrt(sum(RET * RET) OVER {win[w]}) END AS vol_{w}"
        for w in WINDOWS
    )
    leads = ", ".join(f"lead(vol_{w}, {w}) OVER (PARTITION BY PERMNO ORDER BY date) AS y_{w}" for w in WINDOWS)
    src_sql = (
        f"read_csv('{src}', header = true, nullstr = 'C', "
        "columns = {'PERMNO': 'BIGINT', 'date': 'DATE', 'RET': 'DOUBLE'})"
    )
    con.execute(
        f"COPY (WITH v AS (SELECT PERMNO, date, RET, {vols} FROM {src_sql}) "
        f"SELECT *, {leads} FROM v ORDER BY PERMNO, date) TO '{dst}' (FORMAT parquet)"
    )
    con.close()


def peer_rows(inputs: dict[str, Path], size: int, repeats: int) -> list[dict]:
    """polars and DuckDB from the CSV to a Parquet file, on every core (skipped when absent)."""
    import importlib.util

    rows: list[dict] = []
    for name, fn in (("polars", polars_file), ("duckdb", duckdb_file)):
        if importlib.util.find_spec(name) is None:
            rows.append(error_row(STAGE, name, "cpu", size, f"{name} is not installed (pip install -e '.[bench]')"))
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"wsb-bench-vol-{name}-"))
        try:
            times = time_call(
                lambda fn=fn, tmp=tmp: fn(inputs["csv"], tmp / "out.parquet"),
                repeats=max(1, min(repeats, 2)),
                warmup=0,
            )
            rows.append(
                make_row(
                    STAGE,
                    name,
                    "cpu",
                    size,
                    times,
                    unit="rows/s",
                    workers=usable_cores(),
                    note="whole stage: CSV in -> rolling window sums per permno -> next row -> Parquet out",
                )
            )
        except Exception as e:  # pragma: no cover - recorded, not hidden
            rows.append(error_row(STAGE, name, "cpu", size, f"{type(e).__name__}: {e}"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def bench(backend: str, size: int, repeats: int = 3) -> list[dict]:
    """Rows for the kernel, the kernel on unsorted partitions, the pandas baseline, the stage."""
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.stages import run_stage

    rows: list[dict] = []
    workers = 1 if backend == "gpu" else usable_cores()
    panel = make_panel(size)
    try:
        parts = partitions(panel)
        times = time_call(lambda: run_kernel(parts, backend), repeats=repeats)
        rows.append(
            make_row(
                STAGE,
                "wsb_gpu",
                backend,
                size,
                times,
                unit="rows/s",
                workers=workers,
                note=f"kernel only, {len(parts)} partitions of whole stocks, rows in order",
            )
        )
        parts = None  # free it before the next copy
        shuffled = partitions(panel, shuffle=True)
        times = time_call(lambda: run_kernel(shuffled, backend), repeats=repeats, warmup=0)
        rows.append(
            make_row(
                STAGE,
                "wsb_gpu",
                backend,
                size,
                times,
                unit="rows/s",
                workers=workers,
                note="kernel only, rows shuffled inside each partition (sort included)",
            )
        )
        shuffled = None
    except Exception as e:  # pragma: no cover - recorded, not hidden
        rows.append(error_row(STAGE, "wsb_gpu", backend, size, f"{type(e).__name__}: {e}"))
    try:
        times = time_call(lambda: pandas_rolling(panel), repeats=repeats, warmup=0)
        rows.append(
            make_row(
                STAGE,
                "pandas",
                "cpu",
                size,
                times,
                unit="rows/s",
                workers=1,
                note="groupby().rolling(w).sum() x4 + sqrt + groupby().shift(-w), whole panel",
            )
        )
    except Exception as e:  # pragma: no cover
        rows.append(error_row(STAGE, "pandas", "cpu", size, f"{type(e).__name__}: {e}"))
    inputs = stage_inputs(size, panel)
    panel = None
    be = resolve_backend(backend)
    for kind, path in inputs.items():
        tmp = Path(tempfile.mkdtemp(prefix="wsb-bench-vol-"))
        try:
            times = time_call(
                lambda: run_stage("volatility", tmp / "vol", crsp=path, backend=be),  # noqa: B023 (called at once)
                repeats=max(1, min(repeats, 2)),
                warmup=0,
            )
            rows.append(
                make_row(
                    STAGE,
                    "wsb_gpu",
                    backend,
                    size,
                    times,
                    unit="rows/s",
                    workers=workers,
                    note=f"whole stage: {LABELS[kind]} in -> parse -> sorted runs -> kernel -> Parquet out",
                )
            )
        except Exception as e:  # pragma: no cover
            rows.append(error_row(STAGE, "wsb_gpu", backend, size, f"stage ({kind}): {type(e).__name__}: {e}"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows + peer_rows(inputs, size, repeats)


def spark_rows(size: int, repeats: int, cores: int, backend: str = "cpu") -> list[dict]:
    """The PySpark peer (the seed's implementation) on the stage rows' input files."""
    from benchmarks import spark_peer

    ok, why = spark_peer.spark_status()
    if not ok:
        return spark_peer.unavailable_rows([STAGE], size, backend, why)
    rows = []
    with spark_peer.SparkPeer(cores=cores) as peer:
        for kind, path in stage_inputs(size).items():
            for r in peer.volatility(path, size, repeats=max(1, min(repeats, 2)), warmup=0, backend=backend):
                r["note"] += f"; {LABELS[kind]} in"
                rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, size=25_700_000, size_help="stock-days in the synthetic panel")
    parser.add_argument("--spark", action="store_true", help="also time the PySpark peer on the same input files")
    parser.add_argument("--spark-cores", type=int, default=2, help="local[N] for the PySpark peer")
    args = parser.parse_args(argv)
    rows = bench(args.backend, args.size, args.repeats)
    if args.spark:
        rows += spark_rows(args.size, args.repeats, args.spark_cores, args.backend)
    print_rows(rows)
    ok = [r for r in rows if not r.get("error")]
    base = next((r for r in ok if r["impl"] == "pandas"), None)
    if base:
        for r in ok:
            if r["impl"] == "wsb_gpu":
                print(
                    f"speed-up over pandas groupby().rolling() ({r['note'].split(',')[0]}"
                    f"{', shuffled' if 'shuffled' in r['note'] else ''}): "
                    f"{base['median_s'] / r['median_s']:.1f}x"
                )
    for label in LABELS.values():
        ours = next((r for r in ok if r["impl"] == "wsb_gpu" and f"stage: {label} in" in r["note"]), None)
        peer = next((r for r in ok if r["impl"] != "wsb_gpu" and r["note"].endswith(f"{label} in")), None)
        if ours and peer:
            print(f"speed-up over PySpark ({peer['note']}), whole stage: {peer['median_s'] / ours['median_s']:.1f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
