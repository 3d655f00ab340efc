"""Benchmark of the ridge cross-validation in the training stage, both engines.

The seed's shape: ~1M stock-days x 772 features (4 HAR terms + text), 9 rolling windows
(13 years, 4 training years each) x 3 blocked folds x 5 lambdas, then a refit per window.
The seed took ~7 min on a 32-core node with Spark MLlib's CrossValidator.

Rows (see benchmarks/common.py), all on the same synthetic features dataset of ``size``
stock-days written once to Parquet (cached in benchmarks/data/):

* ``wsb_gpu`` / stats engine: :func:`~wsb_gpu.stages.train.train` with ``models=har,ridge``
  and ``engine=stats``: one pass of per-month sufficient statistics, all 9 x (3 x 5 + 1)
  ridge problems solved from them, the prediction pass, metrics and files written.
* ``wsb_gpu`` / estimator engine: the same with ``engine=estimator`` (scikit-learn ``Ridge``
  on CPU, cuML on GPU: one fit per window, fold and lambda), which is what the seed did.

Both run with dask's threaded scheduler in this process (``client=None``), so every core
of the machine is used; on a shared machine the timings include other users' load.

Run: ``python -m benchmarks.train --backend cpu --size 1000000 --repeats 1``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA_DIR, error_row, make_row, print_rows, stage_parser, time_call
from wsb_gpu.sysinfo import usable_cores

STAGE = "train"
N_FEATURES = 772  # 4 HAR + 766 embedding dims + log_posts + log_mentions
FIRST_YEAR, LAST_YEAR = 2008, 2020  # 13 years -> 9 windows of 4 training years
RIDGE = {"n_lambdas": 5, "lambda_min": 0.01, "lambda_max": 1e4, "cv_folds": 3}


def make_features(size: int, folder: Path, seed: int = 0, rows_per_file: int = 100_000) -> Path:
    """Write a synthetic features dataset of ``size`` stock-days (float32 text columns)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (folder / "_done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(f"{FIRST_YEAR}-01-01", f"{LAST_YEAR}-12-31")
    dim = N_FEATURES - 6
    for i, start in enumerate(range(0, size, rows_per_file)):
        n = min(rows_per_file, size - start)
        date = np.sort(rng.choice(days.values, n)).astype("datetime64[D]")
        h = rng.normal(size=n) * 0.5
        cols: dict[str, Any] = {
            "permno": rng.integers(10000, 17000, n).astype("int64"),
            "date": pa.array(date, pa.date32()),
            "n_posts": rng.integers(1, 20, n).astype("int64"),
            "n_mentions": rng.integers(1, 40, n).astype("int64"),
        }
        E = rng.normal(size=(n, dim)).astype("float32")
        for j in range(dim):
            cols[f"e{j:03d}"] = E[:, j]
        v = 0.02 * np.exp(h)
        for w, s in ((1, 0.3), (5, 0.2), (22, 0.1), (63, 0.05)):
            cols[f"vol_{w}"] = v * np.exp(s * rng.normal(size=n))
        cols["y_1"] = 0.004 + 0.5 * v + 0.002 * E[:, 0] + 0.005 * rng.normal(size=n)
        pq.write_table(pa.table(cols), folder / f"part.{i:04d}.parquet")
    (folder / "_done").write_text("")
    return folder


def bench(backend: str, size: int, repeats: int = 3, engines: tuple[str, ...] = ("stats", "estimator")) -> list[dict]:
    """Time the ridge CV (har + ridge models, 9 windows x 3 folds x 5 lambdas) per engine."""
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.stages import run_stage

    rows: list[dict] = []
    try:
        be = resolve_backend(backend)
    except Exception as e:  # e.g. --backend gpu without a GPU
        return [error_row(STAGE, f"wsb_gpu/{eng}", backend, size, str(e)) for eng in engines]
    data = make_features(size, DATA_DIR / f"train_features_{size}")
    for engine in engines:
        out = Path(tempfile.mkdtemp(prefix="bench_train_"))
        try:

            def run(out: Path = out, engine: str = engine) -> None:
                run_stage(
                    "train",
                    out / "results",
                    features=data,
                    backend=be,
                    client=None,
                    models=["har", "ridge"],
                    target="y_1",
                    train_years=4,
                    sample="posts",
                    ridge={**RIDGE, "engine": engine},
                    # One set of the seed's shape (HAR + embedding + attention = 772 columns).
                    feature_sets={"text": ["embedding", "attention"]},
                )

            times = time_call(run, repeats=repeats, warmup=0)
            rows.append(
                make_row(
                    STAGE,
                    f"wsb_gpu/{engine}",
                    backend,
                    size,
                    times,
                    unit="stock-days/s",
                    workers=usable_cores(),
                    note=f"ridge CV {N_FEATURES} features, 9 windows x 3 folds x 5 lambdas, "
                    "threaded scheduler, end to end from Parquet",
                )
            )
        except Exception as e:
            traceback.print_exc()
            rows.append(error_row(STAGE, f"wsb_gpu/{engine}", backend, size, f"{type(e).__name__}: {e}"))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, size=1_000_000, size_help="stock-days (seed: ~1M)", repeats=1)
    parser.add_argument("--engines", default="stats,estimator", help="comma-separated: stats,estimator")
    args = parser.parse_args(argv)
    rows = bench(args.backend, args.size, args.repeats, tuple(args.engines.split(",")))
    return 0 if print_rows(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
