"""Stock-day features: posts that mention a stock, averaged per (permno, trading date).

Rules
-----
* A post counts once per stock, however often and under however many tickers it names
  the stock: ``n_mentions`` sums its ``n_occ``, ``n_posts`` counts distinct posts.
* A post belongs to the stock's **first trading date on or after the post's UTC date**,
  taken from that PERMNO's own rows in the volatility dataset: weekend and holiday posts
  go to the next trading day; posts after a stock's last trading date are dropped.
* The embedding and sentiment columns are means over the stock-day's distinct posts.
  Posts without an embedding row are dropped.
* One output row per (permno, trading date) with at least one post, with the volatility
  columns of that stock-day attached.

How it runs (one Dask graph, no driver loop)
--------------------------------------------
1. mentions → one row per (permno, post) (groupby, shuffle on the keys);
2. join the embeddings on ``id`` (hash join);
3. partial sums per (permno, post date) (groupby with a tree reduction, which shrinks the
   wide embedding data before it moves again);
4. these sums and the volatility rows are both hash-shuffled on ``permno`` into the same
   number of partitions, so each pair of partitions holds whole stocks; the kernel
   :func:`assign_to_trading_days` then assigns each post date to the next trading date
   (a sorted search on the key ``permno · 2^17 + day``), re-aggregates and attaches the
   volatility row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import dask.dataframe as dd
import numpy as np

from wsb_gpu.backend import (
    Backend,
    array_namespace,
    column_array,
    concat_columns,
    dataframe_module,
    divide_rows,
)
from wsb_gpu.config import EmptyParams
from wsb_gpu.errors import WsbError
from wsb_gpu.progress import compute
from wsb_gpu.stages.base import StageResult

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Array, Column, Frame

_DAY_BITS = 17  # day numbers since 1970 stay below 2**17 until the year 2328


def text_columns(columns: Sequence[str]) -> list[str]:
    """The embedding (``e000`` …) and sentiment (``p_*``) columns, in a stable order.

    >>> text_columns(["id", "e001", "e000", "p_negative", "n_tokens", "p_positive"])
    ['e000', 'e001', 'p_negative', 'p_positive']
    """
    emb = sorted((c for c in columns if re.fullmatch(r"e\d+", c)), key=lambda c: int(c[1:]))
    probs = sorted(c for c in columns if c.startswith("p_"))
    return emb + probs


def day_number(dates: Column) -> Column:
    """Days since 1970-01-01 (int64) of a date or datetime column, pandas or cuDF.

    >>> import pandas as pd
    >>> day_number(pd.Series(pd.to_datetime(["1970-01-02", "2020-01-01"]))).tolist()
    [1, 18262]
    """
    return dates.astype("datetime64[s]").astype("int64") // 86400


def next_trading_row(cal_permno: Array, cal_day: Array, permno: Array, day: Array) -> tuple[Array, Array]:
    """For each (permno, day), the calendar row of the stock's first trading day on or
    after it, and whether there is one (array API; the calendar sorted by permno, day).

    The search key is ``rank · 2^17 + day`` with ``rank`` the stock's position among the
    calendar's permnos (not the permno itself: OHLCV ids are 62-bit hashes, and shifting
    them would overflow int64).

    >>> import numpy as np
    >>> cal_p, cal_d = np.array([1, 1, 2 ** 62]), np.array([10, 12, 11])
    >>> row, hit = next_trading_row(cal_p, cal_d, np.array([1, 1, 2 ** 62, 7]), np.array([11, 13, 9, 1]))
    >>> row.tolist(), hit.tolist()
    ([1, 2, 2, 2], [True, False, True, False])
    """
    xp = array_namespace(cal_permno, permno)
    n = cal_permno.shape[0]
    if n == 0:
        return xp.zeros(permno.shape[0], dtype=xp.int64), xp.zeros(permno.shape[0], dtype=xp.bool)
    stocks = xp.sort(xp.unique_values(cal_permno))
    cal_rank = xp.searchsorted(stocks, cal_permno)
    rank = xp.searchsorted(stocks, permno)
    known = xp.take(stocks, xp.where(rank < stocks.shape[0], rank, 0)) == permno
    cal_key = cal_rank * (1 << _DAY_BITS) + cal_day
    post_key = rank * (1 << _DAY_BITS) + day
    pos = xp.searchsorted(cal_key, post_key, side="left")
    inside = pos < n
    safe = xp.where(inside, pos, 0)
    # The first calendar key >= the post key must belong to the same stock.
    hit = known & inside & (xp.take(cal_permno, safe) == permno)
    return safe, hit


def assign_to_trading_days(sums: Frame, calendar: Frame, text_cols: Sequence[str]) -> Frame:
    """Kernel: map post-date sums to trading dates and attach the volatility rows.

    Parameters
    ----------
    sums
        One partition of per-(permno, post date) sums: ``permno, date, _posts, n_mentions``
        and the ``text_cols`` (sums, float64).
    calendar
        The volatility rows of the same stocks (``permno, date`` and the volatility columns).
    text_cols
        Embedding and sentiment columns to average.

    Returns
    -------
    One row per (permno, trading date) with posts: ``permno, date, n_posts, n_mentions``,
    the text means (float32) and the volatility columns.
    """
    xdf = dataframe_module(calendar)
    vol_cols = [c for c in calendar.columns if c not in ("permno", "date")]
    out_cols = ["permno", "date", "n_posts", "n_mentions", *text_cols, *vol_cols]
    if len(sums) == 0 or len(calendar) == 0:
        return _empty_like(xdf, calendar, text_cols, vol_cols)[out_cols]
    cal = calendar.sort_values(["permno", "date"]).reset_index(drop=True)
    safe, hit = next_trading_row(
        column_array(cal["permno"], "int64"),
        column_array(day_number(cal["date"]), "int64"),
        column_array(sums["permno"], "int64"),
        column_array(day_number(sums["date"]), "int64"),
    )
    xp = array_namespace(safe)
    if not bool(xp.any(hit)):
        return _empty_like(xdf, calendar, text_cols, vol_cols)[out_cols]
    kept = sums.reset_index(drop=True)[hit][["_posts", "n_mentions", *text_cols]].reset_index(drop=True)
    kept = kept.assign(_row=safe[hit])
    agg = kept.groupby("_row").sum().sort_index()
    rows = agg.index.values
    result = cal.take(rows).reset_index(drop=True)
    text = agg[list(text_cols)].reset_index(drop=True)
    means = divide_rows(text, column_array(agg["_posts"], "float64")).astype("float32")
    result["n_posts"] = column_array(agg["_posts"], "int64")
    result["n_mentions"] = column_array(agg["n_mentions"], "int64")
    return concat_columns([result, means])[out_cols]


def _empty_like(xdf: ModuleType, calendar: Frame, text_cols: Sequence[str], vol_cols: Sequence[str]) -> Frame:
    frame = calendar.iloc[:0][["permno", "date", *vol_cols]].reset_index(drop=True)
    counts = {"n_posts": np.zeros(0, dtype="int64"), "n_mentions": np.zeros(0, dtype="int64")}
    text = {c: np.zeros(0, dtype="float32") for c in text_cols}
    # One concat, not one insert per column: hundreds of embedding columns would fragment it.
    return xdf.concat([frame, xdf.DataFrame({**counts, **text})], axis=1)


def _as_float64(frame: Frame, cols: Sequence[str]) -> Frame:
    """The ``id`` and the text columns as float64, in one block rather than one per column.

    Hundreds of separately stored embedding columns make every later column insert (by
    us or by dask's shuffle) slow and noisy, so the text columns are cast in one go.

    >>> import pandas as pd
    >>> _as_float64(pd.DataFrame({"id": ["a"], "e000": [1.0]}), ["e000"])["e000"].dtype
    dtype('float64')
    """
    return concat_columns([frame[["id"]], frame[list(cols)].astype("float64")])


def _read(path: Path, backend: Backend, columns: Sequence[str] | None = None) -> dd.DataFrame:
    return backend.read_parquet(path, columns)


def features_frame(
    mentions: Path, embeddings: Path, volatility: Path, *, backend: Backend
) -> tuple[dd.DataFrame, list[str]]:
    """The lazy Dask frame of stock-day features and its text column names."""
    m = _read(mentions, backend)
    e = _read(embeddings, backend)
    v = _read(volatility, backend)
    tcols = text_columns(list(e.columns))
    if not tcols:
        msg = (
            f"embeddings dataset '{embeddings}' has no e000… or p_* columns; pass the folder written by `wsb-gpu embed`"
        )
        raise WsbError(msg)

    m = m[["permno", "id", "date", "n_occ"]]
    m = m.assign(permno=m["permno"].astype("int64"), n_occ=m["n_occ"].astype("int64"))
    # One row per (stock, post): a post naming a stock twice (two tickers) counts once.
    nparts = max(m.npartitions, 1)
    per_post = m.groupby(["permno", "id"]).agg({"date": "min", "n_occ": "sum"}, split_out=nparts).reset_index()
    emb = e[["id", *tcols]]
    emb = emb.map_partitions(_as_float64, tcols)
    joined = per_post.merge(emb, on="id", how="inner")
    joined = joined.assign(_posts=1).rename(columns={"n_occ": "n_mentions"})
    # Partial sums per (stock, post date): shrinks the wide rows before the stock shuffle.
    sums = (
        joined[["permno", "date", "_posts", "n_mentions", *tcols]]
        .groupby(["permno", "date"])
        .sum(split_out=max(joined.npartitions, 1))
        .reset_index()
    )
    n_out = max(v.npartitions, 1)
    vol = v.assign(permno=v["permno"].astype("int64"))
    # Both sides hash-partitioned on the same int64 key into the same number of
    # partitions: partition i of each holds the same stocks (what dask's hash join uses).
    sums_by_stock = sums.shuffle("permno", npartitions=n_out)
    vol_by_stock = vol.shuffle("permno", npartitions=n_out)
    vol_cols = [c for c in vol.columns if c not in ("permno", "date")]
    meta = _empty_like(dataframe_module(vol._meta), vol._meta, tcols, vol_cols)[
        ["permno", "date", "n_posts", "n_mentions", *tcols, *vol_cols]
    ]
    out = dd.map_partitions(
        assign_to_trading_days,
        sums_by_stock,
        vol_by_stock,
        tcols,
        meta=meta,
        align_dataframes=False,
        enforce_metadata=False,
    )
    return out, tcols


def run(
    inputs: Mapping[str, Path | None],
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: EmptyParams,
    progress: bool = False,
) -> StageResult:
    """Write the stock-day features (see the module docstring for the rules).

    Parameters
    ----------
    inputs
        ``mentions``, ``embeddings`` and ``volatility``: folders written by those stages.
    out
        The folder to write into.
    backend
        CPU (pandas) or GPU (cuDF) partitions.
    client
        Optional distributed client (collections compute on it automatically).
    """
    frame, tcols = features_frame(inputs["mentions"], inputs["embeddings"], inputs["volatility"], backend=backend)
    write = backend.to_parquet(frame, out)
    n_mentions = _read(inputs["mentions"], backend, columns=["id"]).shape[0]
    _, rows_in = compute(write, n_mentions, label="features", show=progress)
    return StageResult(
        rows_in=int(rows_in),
        fields={
            "assignment": "first trading date of the permno on or after the post's UTC date",
            "text_columns": len(tcols),
        },
    )
