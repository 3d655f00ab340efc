"""Which post counts for which stock-day: every (stock, post) pair, dated by trading day.

Rules
-----
* A post counts once per stock, however often and under however many tickers it names the
  stock: ``n_occ`` sums its occurrences over the tickers.
* A post belongs to the stock's **first trading date on or after the post's UTC date**,
  taken from that PERMNO's own rows in the volatility dataset: weekend and holiday posts go
  to the next trading day; posts after a stock's last trading date are dropped.

The features stage averages the per-post signals over these links; the training stage reads
them again to fit the word and topic families inside each rolling window (a lexicon needs
to know which stock-day, and so which label, each post belongs to).

How it runs (one Dask graph): the mentions are reduced to one row per (permno, post)
(groupby, shuffled on the keys); these rows and the volatility calendar are both
hash-shuffled on ``permno`` into the same number of partitions, so each pair of partitions
holds whole stocks; the kernel :func:`assign_posts` then finds each post's trading day with a
sorted search.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import dask.dataframe as dd
import pyarrow as pa

from wsb_gpu.backend import Backend, array_namespace, column_array
from wsb_gpu.config import EmptyParams
from wsb_gpu.dates import day_number  # still imported from here by modules not yet moved to wsb_gpu.dates
from wsb_gpu.progress import compute
from wsb_gpu.stages.base import StageResult

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Array, Frame

_DAY_BITS = 17  # day numbers since 1970 stay below 2**17 until the year 2328
COLUMNS = ["permno", "date", "id", "post_date", "n_occ"]


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


def assign_posts(posts: Frame, calendar: Frame) -> Frame:
    """Kernel: each (permno, post) row dated by its stock's next trading day.

    Parameters
    ----------
    posts
        One partition of ``permno, id, date, n_occ`` (one row per stock and post; ``date``
        is the post's UTC date).
    calendar
        The volatility rows (``permno, date``) of the same stocks.

    Returns
    -------
    ``permno, date, id, post_date, n_occ`` for the posts that have a trading day, sorted by
    ``permno, date, id`` (pandas or cuDF, like the inputs).
    """
    cal = calendar[["permno", "date"]].sort_values(["permno", "date"]).reset_index(drop=True)
    posts = posts.reset_index(drop=True)
    safe, hit = next_trading_row(
        column_array(cal["permno"], "int64"),
        column_array(day_number(cal["date"]), "int64"),
        column_array(posts["permno"], "int64"),
        column_array(day_number(posts["date"]), "int64"),
    )
    kept = posts[hit]
    rows = safe[hit]
    out = kept[["permno", "id", "n_occ"]].reset_index(drop=True)
    out = out.assign(
        date=cal["date"].take(rows).reset_index(drop=True),
        post_date=kept["date"].reset_index(drop=True),
        permno=out["permno"].astype("int64"),
        n_occ=out["n_occ"].astype("int32"),
    )
    return out[COLUMNS].sort_values(["permno", "date", "id"]).reset_index(drop=True)


def links_frame(mentions: Path, volatility: Path, *, backend: Backend) -> dd.DataFrame:
    """The lazy Dask frame of the links (see the module docstring)."""
    m = backend.read_parquet(mentions, ["permno", "id", "date", "n_occ"])
    m = m.assign(permno=m["permno"].astype("int64"), n_occ=m["n_occ"].astype("int64"))
    nparts = max(m.npartitions, 1)
    # One row per (stock, post): a post naming a stock twice (two tickers) counts once.
    per_post = m.groupby(["permno", "id"]).agg({"date": "min", "n_occ": "sum"}, split_out=nparts).reset_index()
    v = backend.read_parquet(volatility, ["permno", "date"])
    v = v.assign(permno=v["permno"].astype("int64"))
    n_out = max(v.npartitions, 1)
    # Both sides hash-partitioned on the same int64 key into the same number of partitions:
    # partition i of each holds the same stocks (what dask's hash join uses).
    posts_by_stock = per_post.shuffle("permno", npartitions=n_out)
    cal_by_stock = v.shuffle("permno", npartitions=n_out)
    meta = assign_posts(per_post._meta, v._meta)
    return dd.map_partitions(
        assign_posts, posts_by_stock, cal_by_stock, meta=meta, align_dataframes=False, enforce_metadata=False
    )


class LinksInputs(TypedDict):
    """The inputs of links: the mentions and volatility datasets."""

    mentions: Path
    volatility: Path


class LinksFields(TypedDict):
    """The manifest fields of links (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    assignment: str


def run(
    inputs: LinksInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: EmptyParams,
    progress: bool = False,
) -> StageResult:
    """Write the links dataset (see the module docstring for the rules).

    Parameters
    ----------
    inputs
        ``mentions`` and ``volatility``: folders written by those stages.
    out
        The folder to write into.
    backend
        CPU (pandas) or GPU (cuDF) partitions.
    """
    frame = links_frame(inputs["mentions"], inputs["volatility"], backend=backend)
    write = backend.to_parquet(frame, out, dates=("date", "post_date"), schema={"id": pa.string()})
    n_mentions = backend.read_parquet(inputs["mentions"], ["id"]).shape[0]
    _, rows_in = compute(write, n_mentions, label="links", show=progress)
    return StageResult(
        rows_in=int(rows_in),
        fields=LinksFields(assignment="first trading date of the permno on or after the post's UTC date"),
    )
