"""Benchmark of one training window's elastic-net cross-validation, from moments and from rows.

The default grid of ``train.enet``: 4 l1_ratios x 10 lambdas x 3 blocked folds, then a refit
on the window; ``size`` stock-days over 48 months (4 training years) of synthetic rows with
4 HAR terms and ``p - 4`` text columns, at two widths: ``p = 64`` (HAR + a 60-column text
set) and ``p = 772`` (the seed's width). All data in memory (kernel only, no Parquet).

Rows (see benchmarks/common.py), stage ``enet-p<p>`` per width:

* ``wsb_gpu/stats``: :func:`~wsb_gpu.models.enet.enet_cv_from_moments` from the window's
  per-month moments (HAR unpenalised): what the training stage does once the statistics
  pass, shared by HAR, ridge and the elastic net, has run. The note gives the Numba
  kernel's first call (compilation, or loading it from the on-disk cache).
* ``wsb_gpu/stats+pass``: the same plus that pass over the rows
  (:func:`~wsb_gpu.models.moments.array_moments`, one BLAS thread as in the pipeline), i.e.
  one window from its rows.
* ``wsb_gpu/estimator``: :func:`~wsb_gpu.models.enet.enet_cv_from_rows`, one
  scikit-learn ``ElasticNet`` fit per fold, l1_ratio and lambda on the standardised rows
  (warm-started along each path; cuML on ``--backend gpu``). Only up to ``--estimator-max-p``
  columns: at ``p = 772`` it takes many minutes.
* ``scikit-learn``: the peer a user would write: ``StandardScaler`` on the window, then
  ``ElasticNetCV(l1_ratio=[...], alphas=10, eps=1e-3, precompute=True, cv=<the same
  blocked folds>)`` (one Gram matrix per fold, warm-started paths). It penalises the HAR
  terms (scikit-learn cannot leave coefficients unpenalised) and its scaler sees the
  validation rows; otherwise the same grid rule (``lambda_max / a`` down to
  ``eps * lambda_max``), folds, tolerance and refit.

The speed-ups printed at the end are ``peer seconds / ours`` at the same width.

Run: ``python -m benchmarks.enet --backend cpu --size 200000 --repeats 3``.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import compute_ratios, error_row, make_row, print_rows, stage_parser, time_call
from wsb_gpu.sysinfo import usable_cores

STAGE = "enet"
HAR_TERMS = 4
WIDTHS = (64, 772)
MONTHS = 48  # 4 training years
GRID = {"l1_ratios": (0.1, 0.5, 0.9, 1.0), "n_lambdas": 10, "eps": 1e-3, "max_iter": 1000, "tol": 1e-7}
FOLDS = 3


def make_window(size: int, p: int, seed: int = 0) -> tuple[Any, Any, Any]:
    """``(X, y, periods)``: ``size`` rows of 4 positive, correlated HAR-like terms and
    ``p - 4`` standard-normal text columns, 3 of them weakly predictive, over 48 months."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((size, p))
    level = 0.02 * np.exp(0.5 * rng.standard_normal(size))
    X[:, :HAR_TERMS] = level[:, None] * np.exp(0.2 * rng.standard_normal((size, HAR_TERMS)))
    y = 0.004 + 0.5 * level + 0.002 * X[:, 4] - 0.001 * X[:, 5] + 0.0005 * X[:, 6] + 0.01 * rng.standard_normal(size)
    periods = np.sort(rng.integers(0, MONTHS, size)).astype(np.int64)
    return X, y, periods


def _first_kernel_call() -> float:
    """Seconds of the first coordinate-descent call in this process (Numba compile or cache load)."""
    import numpy as np

    from wsb_gpu.models.enet import enet_path_from_moments
    from wsb_gpu.models.moments import Moments

    t0 = time.perf_counter()
    enet_path_from_moments(Moments.from_array(np.random.default_rng(0).normal(size=(20, 3))), [0.1], 0.5)
    return time.perf_counter() - t0


def _peer(X: Any, y: Any, periods: Any) -> Any:
    """scikit-learn's ElasticNetCV on the standardised window, over the same blocked folds."""
    from sklearn.linear_model import ElasticNetCV
    from sklearn.preprocessing import StandardScaler

    from wsb_gpu.models.splits import BlockedTimeFolds

    Z = StandardScaler().fit_transform(X)
    cv = list(BlockedTimeFolds(FOLDS).split(groups=periods))
    return ElasticNetCV(
        l1_ratio=list(GRID["l1_ratios"]),
        alphas=GRID["n_lambdas"],
        eps=GRID["eps"],
        precompute=True,
        cv=cv,
        tol=GRID["tol"],
        max_iter=GRID["max_iter"],
        selection="cyclic",
    ).fit(Z, y)


def _bench_width(
    be: Any, backend: str, size: int, p: int, repeats: int, peer_repeats: int, estimator_max_p: int, first: float
) -> list[dict]:
    """The rows of one width (see the module docstring)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from wsb_gpu.backend import to_numpy
    from wsb_gpu.models.enet import enet_cv_from_moments, enet_cv_from_rows
    from wsb_gpu.models.moments import array_moments
    from wsb_gpu.models.splits import BlockedTimeFolds

    stage = f"{STAGE}-p{p}"
    shape = f"p={p}, {size:,} rows, 4 a x 10 lambda x {FOLDS} folds + refit"
    X, y, periods = make_window(size, p)
    xp = be.xp
    V = xp.asarray(np.column_stack([X, y]))
    keys = xp.asarray(periods)
    table = array_moments(V, keys)
    blocks = BlockedTimeFolds(FOLDS).blocks(sorted(table))
    kw = {**GRID, "free": HAR_TERMS}
    out: dict[str, Any] = {}

    def stats() -> None:
        out["stats"] = enet_cv_from_moments(table, blocks, **kw)

    def stats_pass() -> None:
        # One BLAS thread, as collect_moments runs the pass in the pipeline: on 2 busy cores
        # threaded OpenBLAS made the same pass take 0.3 s to 6.5 s.
        with threadpool_limits(1, user_api="blas"):
            table = array_moments(V, keys)
        enet_cv_from_moments(table, blocks, **kw)

    rows = []
    times = time_call(stats, repeats=repeats, warmup=1)
    r = out["stats"]
    chose = f"chose a={r.l1_ratio:g}, lambda={r.fit.lam:.3g}, {np.count_nonzero(r.fit.coef[HAR_TERMS:])} text nonzero"
    note = f"{shape}; kernel only, moments in memory; numba's first call in the process {first:.2f} s; {chose}"
    rows.append(make_row(stage, "wsb_gpu/stats", backend, size, times, unit="stock-days/s", note=note, workers=1))
    times = time_call(stats_pass, repeats=repeats, warmup=0)
    note = f"{shape}; kernel only, rows in memory, per-month statistics pass included"
    rows.append(make_row(stage, "wsb_gpu/stats+pass", backend, size, times, unit="stock-days/s", note=note))
    if p <= estimator_max_p:
        Xd, yd = xp.asarray(X), xp.asarray(y)

        def estimator() -> None:
            out["est"] = enet_cv_from_rows(Xd, yd, periods, BlockedTimeFolds(FOLDS), backend=be, **kw)

        times = time_call(estimator, repeats=peer_repeats, warmup=0)
        diff = float(np.max(np.abs(to_numpy(out["est"].fit.coef) - r.fit.coef)) / np.max(np.abs(r.fit.coef)))
        note = f"{shape}; kernel only, rows in memory; coef vs stats max diff {diff:.1e} of the largest"
        rows.append(make_row(stage, "wsb_gpu/estimator", backend, size, times, unit="stock-days/s", note=note))

    def peer() -> None:
        out["peer"] = _peer(X, y, periods)

    times = time_call(peer, repeats=peer_repeats, warmup=0)
    m = out["peer"]
    chose = f"chose a={m.l1_ratio_:g}, lambda={m.alpha_:.3g}, {np.count_nonzero(m.coef_[HAR_TERMS:])} text nonzero"
    note = f"{shape}; kernel only, rows in memory; ElasticNetCV(precompute=True), HAR penalised; {chose}"
    rows.append(make_row(stage, "scikit-learn", "cpu", size, times, unit="stock-days/s", note=note))
    return rows


def bench(
    backend: str,
    size: int,
    repeats: int = 3,
    widths: tuple[int, ...] = WIDTHS,
    peer_repeats: int = 1,
    estimator_max_p: int = 100,
) -> list[dict]:
    """Rows for each width: ours from moments (with and without the pass), from rows, and the peer."""
    from wsb_gpu.backend import resolve_backend

    try:
        be = resolve_backend(backend)
    except Exception as e:  # e.g. --backend gpu without a GPU
        return [error_row(f"{STAGE}-p{p}", "wsb_gpu/stats", backend, size, str(e)) for p in widths]
    rows: list[dict] = []
    first = _first_kernel_call()
    for p in widths:
        try:
            rows.extend(_bench_width(be, backend, size, p, repeats, peer_repeats, estimator_max_p, first))
        except Exception as e:
            traceback.print_exc()
            rows.append(error_row(f"{STAGE}-p{p}", "wsb_gpu/stats", backend, size, f"{type(e).__name__}: {e}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, size=200_000, size_help="stock-days in the training window")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="comma-separated column counts")
    parser.add_argument("--peer-repeats", type=int, default=1, help="timed runs of the slow rows (from rows)")
    parser.add_argument("--estimator-max-p", type=int, default=100, help="widest p for the estimator engine")
    args = parser.parse_args(argv)
    widths = tuple(int(w) for w in args.widths.split(","))
    rows = bench(args.backend, args.size, args.repeats, widths, args.peer_repeats, args.estimator_max_p)
    ok = print_rows(rows)
    print(f"({usable_cores()} usable cores)")
    for r in compute_ratios(rows):
        print(
            f"{r['stage']:10} {r['peer']} / {r['ours']}: {r['speedup']:.1f}x ({r['peer_s']:.3g} s / {r['ours_s']:.3g} s)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
