"""Which post counts for which stock-day: every (stock, post) pair, dated by trading day.

Rules
-----
* A post counts once per stock, however often and under however many tickers it names the
  stock: ``n_occ`` sums its occurrences over the tickers.
* **When**: the row of trading day *t* forecasts the close-*t* → close-*t+1* volatility, so
  it is made at the close of session *t* and may use the posts created up to then. A post
  counts for the first NYSE session whose cutoff is at or after its instant
  (``created_utc``): with ``links.cutoff: close`` (default) the session's close, 16:00 New
  York time (13:00 on early-close days); weekends, holidays and one-off closures go to the
  next session. ``"HH:MM"`` moves the cutoff to that New York time (or the close when
  earlier); ``utc_day`` is the seed's rule, the post's UTC date (look-ahead: posts made
  after the close count for that day). Rules and calendar: :mod:`wsb_gpu.sources.sessions`.
* **Which row**: the stock's first trading date on or after that session's date, taken
  from that PERMNO's own rows in the volatility dataset (a day the stock does not trade goes
  to its next one); posts after a stock's last trading date are dropped.

The features stage averages the per-post signals over these links; the training stage reads
them again to fit the word and topic families inside each rolling window (a lexicon needs
to know which stock-day, and so which label, each post belongs to).

How it runs (one Dask graph): the mentions are reduced to one row per (permno, post)
(groupby, shuffled on the keys); these rows and the volatility calendar are both
hash-shuffled on ``permno`` into the same number of partitions, so each pair of partitions
holds whole stocks; the kernel :func:`assign_posts` then finds each post's session with a
sorted search in the cutoff table and its trading row with a second one. The cutoff table
(a few thousand int64 instants covering the posts' range, read from the mentions' Parquet
footers) is one task of the graph, built while the shuffles run and shared by every kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import dask
import dask.dataframe as dd
import pyarrow as pa

from wsb_gpu.backend import Backend, array_namespace, column_array
from wsb_gpu.config import LinksParams
from wsb_gpu.datasets import parquet_dataset
from wsb_gpu.dates import (
    SECONDS_PER_DAY,
    date_of_day,
    day_number,  # still imported from here by modules not yet moved to wsb_gpu.dates
)
from wsb_gpu.manifest import Manifest
from wsb_gpu.progress import compute, log
from wsb_gpu.sources.sessions import UTC_DAY, CutoffTable, cutoff_day, cutoff_table, describe, parse_cutoff
from wsb_gpu.stages.base import StageResult

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Array, Frame

_DAY_BITS = 17  # day numbers since 1970 stay below 2**17 until the year 2328
COLUMNS = ["permno", "date", "id", "post_date", "created_utc", "n_occ"]


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


def assign_posts(posts: Frame, calendar: Frame, table: CutoffTable) -> Frame:
    """Kernel: each (permno, post) row dated by the session it counts for, then by its
    stock's first trading row on or after that session's date.

    Parameters
    ----------
    posts
        One partition of ``permno, id, created_utc, n_occ`` (one row per stock and post;
        ``created_utc`` in UTC seconds).
    calendar
        The volatility rows (``permno, date``) of the same stocks.
    table
        The cutoff table of the run's rule (:func:`~wsb_gpu.sources.sessions.cutoff_table`).

    Returns
    -------
    ``permno, date, id, post_date, created_utc, n_occ`` for the posts that have a trading
    day, sorted by ``permno, date, id`` (pandas or cuDF, like the inputs); ``post_date`` is
    the post's UTC date.
    """
    cal = calendar[["permno", "date"]].sort_values(["permno", "date"]).reset_index(drop=True)
    posts = posts.reset_index(drop=True)
    created = column_array(posts["created_utc"], "int64")
    session, dated = cutoff_day(created, table.instants, table.days)
    safe, hit = next_trading_row(
        column_array(cal["permno"], "int64"),
        column_array(day_number(cal["date"]), "int64"),
        column_array(posts["permno"], "int64"),
        session,
    )
    hit = hit & dated
    kept = posts[hit]
    rows = safe[hit]
    out = kept[["permno", "id", "created_utc", "n_occ"]].reset_index(drop=True)
    created_utc = out["created_utc"].astype("int64")
    out = out.assign(
        date=cal["date"].take(rows).reset_index(drop=True),
        # The UTC date, of the calendar's date type (pandas: Arrow date32; cuDF: datetime64[s]).
        post_date=date_of_day(created_utc // SECONDS_PER_DAY).astype(cal["date"].dtype),
        created_utc=created_utc,
        permno=out["permno"].astype("int64"),
        n_occ=out["n_occ"].astype("int32"),
    )
    return out[COLUMNS].sort_values(["permno", "date", "id"]).reset_index(drop=True)


def created_range(mentions: Path) -> tuple[int, int] | None:
    """The first and last ``created_utc`` of the mentions, from the Parquet footers'
    statistics (no data read); ``None`` when a file lacks them (or holds no rows)."""
    lo: int | None = None
    hi: int | None = None
    for fragment in parquet_dataset(mentions).get_fragments():
        meta = fragment.metadata
        paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
        if "created_utc" not in paths:
            return None
        j = paths.index("created_utc")
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            if group.num_rows == 0:
                continue
            stats = group.column(j).statistics
            if stats is None or not stats.has_min_max or stats.null_count:
                return None
            lo = int(stats.min) if lo is None else min(lo, int(stats.min))
            hi = int(stats.max) if hi is None else max(hi, int(stats.max))
    return None if lo is None or hi is None else (lo, hi)


def links_frame(mentions: Path, volatility: Path, *, backend: Backend, cutoff: str = "close") -> dd.DataFrame:
    """The lazy Dask frame of the links (see the module docstring)."""
    m = backend.read_parquet(mentions, ["permno", "id", "created_utc", "n_occ"])
    m = m.assign(
        permno=m["permno"].astype("int64"),
        created_utc=m["created_utc"].astype("int64"),
        n_occ=m["n_occ"].astype("int64"),
    )
    nparts = max(m.npartitions, 1)
    # One row per (stock, post): a post naming a stock twice (two tickers) counts once.
    per_post = m.groupby(["permno", "id"]).agg({"created_utc": "min", "n_occ": "sum"}, split_out=nparts).reset_index()
    v = backend.read_parquet(volatility, ["permno", "date"])
    v = v.assign(permno=v["permno"].astype("int64"))
    n_out = max(v.npartitions, 1)
    # Both sides hash-partitioned on the same int64 key into the same number of partitions:
    # partition i of each holds the same stocks (what dask's hash join uses).
    posts_by_stock = per_post.shuffle("permno", npartitions=n_out)
    cal_by_stock = v.shuffle("permno", npartitions=n_out)
    # The cutoff table: one task (the calendar is built while the shuffles run), its result
    # shared by every kernel. Its range comes from the footers; without statistics, from a
    # min/max pass over the column.
    span = created_range(mentions)
    if span is None:
        lo, hi = m["created_utc"].min(), m["created_utc"].max()
        table = dask.delayed(_table_of, pure=True)(cutoff, lo, hi)
    else:
        table = dask.delayed(cutoff_table, pure=True)(cutoff, *span)
    meta = assign_posts(per_post._meta, v._meta, CutoffTable.empty(cutoff))
    return dd.map_partitions(
        assign_posts, posts_by_stock, cal_by_stock, table, meta=meta, align_dataframes=False, enforce_metadata=False
    )


def _table_of(cutoff: str, lo: Any, hi: Any) -> CutoffTable:
    """:func:`cutoff_table` of a computed min and max (missing when there are no posts)."""
    import pandas as pd

    if pd.isna(lo) or pd.isna(hi):
        return CutoffTable.empty(cutoff)
    return cutoff_table(cutoff, int(lo), int(hi))


def assignment(cutoff: str) -> str:
    """The rule in words, for the manifest.

    >>> assignment("utc_day")
    "first trading date of the permno on or after the post's UTC date (look-ahead: counts posts made after the close)"
    """
    if cutoff == UTC_DAY:
        return "first trading date of the permno on or after the post's UTC date (look-ahead: counts posts made after the close)"
    return (
        "first trading date of the permno on or after the first NYSE session whose cutoff is at or after the post; "
        f"cutoff: {describe(cutoff)}"
    )


class LinksInputs(TypedDict):
    """The inputs of links: the mentions and volatility datasets."""

    mentions: Path
    volatility: Path


class LinksFields(TypedDict):
    """The manifest fields of links (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    assignment: str
    cutoff: str


class LinksManifest(Manifest, LinksFields):
    """The manifest of the links dataset."""


def run(
    inputs: LinksInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: LinksParams,
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
    params
        ``cutoff``: ``close``, ``HH:MM`` (New York time) or ``utc_day`` (look-ahead).
    """
    cutoff = parse_cutoff(params.cutoff)
    if cutoff == UTC_DAY:
        log(
            "links: warning: cutoff utc_day dates posts by their UTC day, so posts made after the close "
            "(16:00-20:00 New York time in summer) count for that day's forecast (look-ahead); use cutoff close"
        )
    frame = links_frame(inputs["mentions"], inputs["volatility"], backend=backend, cutoff=cutoff)
    write = backend.to_parquet(frame, out, dates=("date", "post_date"), schema={"id": pa.string()})
    n_mentions = backend.read_parquet(inputs["mentions"], ["id"]).shape[0]
    _, rows_in = compute(write, n_mentions, label="links", show=progress)
    return StageResult(
        rows_in=int(rows_in),
        fields=LinksFields(assignment=assignment(cutoff), cutoff=cutoff),
    )
