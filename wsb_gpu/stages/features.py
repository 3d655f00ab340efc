"""Stock-day features: the per-post signals averaged per (permno, trading date).

Rules
-----
* The posts of a stock-day are its links (:mod:`wsb_gpu.stages.links`): a post counts once
  per stock, on the stock's first trading date on or after the post's UTC date.
  ``n_posts`` counts them, ``n_mentions`` sums their occurrences.
* Every other column is a mean over the stock-day's posts of a per-post column that a plain
  feature family declares (:func:`wsb_gpu.signals.families.averaged`: the family's columns
  of the ``embeddings`` or ``signals`` dataset, and the per-post columns it derives from
  them): the embedding (``e000`` …), the sentiment probabilities (``p_*``) and, when the
  model has them, ``p_net`` = the mean of ``p_positive - p_negative``; VADER's
  ``vader_compound, vader_pos, vader_neg, vader_neu`` and the shares of positive and
  negative posts (``vader_pos_share``: compound > 0.05, ``vader_neg_share``: < -0.05).
  Posts without an embedding or signals row are dropped.
* One output row per (permno, trading date) with at least one post, with the volatility
  columns of that stock-day attached.

The families fitted on data (topics, lexicon, TF-IDF) are not here: they are fitted inside
each rolling training window by the training stage, from the links and the signals.

How it runs (one Dask graph, no driver loop): links ⋈ signals on ``id`` (narrow rows: a
hash join), then those rows are broadcast to the embedding partitions, so the wide embedding
rows (hundreds of float32 columns per post) never move; each partition sums its rows per
(permno, date) in float32 (pandas and cuDF sum with a compensated / wider accumulator), and
only these partial sums, one row per stock-day and partition, are combined (a tree
reduction), turned into means and joined with the volatility rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypedDict

import dask.dataframe as dd

from wsb_gpu.backend import Backend, array_namespace, column_array, concat_columns, divide_rows, frame_from_arrays
from wsb_gpu.config import EmptyParams
from wsb_gpu.datasets import count_rows
from wsb_gpu.errors import WsbError
from wsb_gpu.progress import compute
from wsb_gpu.signals.families import averaged
from wsb_gpu.stages.base import StageResult

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Frame
    from wsb_gpu.signals.base import PlainFamily

    # The plain families to average, each with its per-post columns (signals.families.averaged).
    Averaged: TypeAlias = Sequence[tuple[PlainFamily, Sequence[str]]]

PARTIAL_SUM_BYTES = 256 * 2**20
"""Bytes of per-(permno, date) sums per output partition of the reduction (see features_frame)."""


def post_columns(frame: Frame, families: Averaged, keys: Sequence[str] = ("id",)) -> Frame:
    """Kernel: the ``keys`` and every per-post column to average, as float32 blocks.

    Family by family: its per-post columns, then the ones it derives from them (``p_net``,
    the VADER shares' indicators). One block per family, not one column insert at a time:
    hundreds of embedding columns would fragment the frame and make every later insert (by
    us or by a shuffle) slow.

    >>> import pandas as pd
    >>> from wsb_gpu.signals.families import FAMILIES
    >>> f = pd.DataFrame({"id": ["a"], "p_negative": [0.25], "p_positive": [0.5], "vader_compound": [-0.2],
    ...                   "vader_pos": [0.0], "vader_neg": [0.3], "vader_neu": [0.7]})
    >>> fams = [(FAMILIES["finbert_sentiment"], ["p_negative", "p_positive"]),
    ...         (FAMILIES["vader"], ["vader_compound", "vader_pos", "vader_neg", "vader_neu"])]
    >>> out = post_columns(f, fams)
    >>> list(out.columns[1:4]), out.iloc[0, 1:].astype(float).round(6).tolist()
    (['p_negative', 'p_positive', 'p_net'], [0.25, 0.5, 0.25, -0.2, 0.0, 0.3, 0.7, 0.0, 1.0])
    """
    values = frame[[c for _, cols in families for c in cols]].astype("float32").reset_index(drop=True)
    blocks = [frame[list(keys)].reset_index(drop=True)]
    for fam, cols in families:
        own = values[list(cols)]
        blocks.append(own)
        derived = fam.derive(own) if fam.derive is not None else {}
        if derived:
            blocks.append(frame_from_arrays(frame, derived))
    return concat_columns(blocks)


def stock_day_sums(linked: Frame, families: Averaged) -> Frame:
    """Kernel: one partition's (post, stock) rows -> per-(permno, date) sums of every column
    to average, with ``_posts`` (rows) and ``n_mentions`` (occurrences), in float32."""
    block = post_columns(linked, families, keys=("permno", "date"))
    n_occ = column_array(linked["n_occ"], "int64")
    xp = array_namespace(n_occ)
    counts = frame_from_arrays(linked, {"_posts": xp.ones_like(n_occ), "n_mentions": n_occ})
    block = concat_columns([block, counts])
    return block.groupby(["permno", "date"], sort=False).sum().reset_index()


def stock_day_means(sums: Frame, cols: Sequence[str]) -> Frame:
    """Kernel: per-(permno, date) sums, indexed by (permno, date) as the groupby leaves them,
    -> ``permno, date, n_posts, n_mentions`` and the means (float32).

    The keys come from ``index.to_frame``, not ``reset_index``: a frame that comes out of a
    distributed (p2p) shuffle holds one block per column, and inserting the keys into it is
    what made pandas warn that the frame "is highly fragmented".
    """
    counts = column_array(sums["_posts"], "float64")
    means = divide_rows(sums[list(cols)].reset_index(drop=True), counts).astype("float32")
    head = sums.index.to_frame(index=False)
    head = head.assign(
        n_posts=sums["_posts"].astype("int64").reset_index(drop=True),
        n_mentions=sums["n_mentions"].astype("int64").reset_index(drop=True),
    )
    return concat_columns([head, means])


def features_frame(
    links: Path, embeddings: Path, signals: Path, volatility: Path, *, backend: Backend
) -> tuple[dd.DataFrame, list[str]]:
    """The lazy Dask frame of stock-day features and its averaged column names."""
    e = backend.read_parquet(embeddings)
    from_embeddings = averaged("embeddings", list(e.columns))
    if not from_embeddings:
        msg = (
            f"embeddings dataset '{embeddings}' has no e000… or p_* columns; pass the folder written by `wsb-gpu embed`"
        )
        raise WsbError(msg)
    from_signals = averaged("signals", list(backend.read_parquet(signals).columns))
    lk = backend.read_parquet(links, ["permno", "date", "id", "n_occ"])
    s = backend.read_parquet(signals, ["id", *(c for _, cols in from_signals for c in cols)])
    v = backend.read_parquet(volatility)

    narrow = lk.merge(s, on="id", how="inner")
    ecols = [c for _, cols in from_embeddings for c in cols]
    linked = e[["id", *ecols]].merge(narrow, on="id", how="inner", broadcast=True)
    partial = linked.map_partitions(stock_day_sums, [*from_embeddings, *from_signals])
    cols = [c for c in partial.columns if c not in ("permno", "date", "_posts", "n_mentions")]
    # Stock-days <= links: the partial sums' size is bounded before anything runs, and one
    # output partition per PARTIAL_SUM_BYTES keeps them apart only when they are large (a
    # shuffle costs seconds of fixed latency; at demo size a tree reduction into one is faster).
    bound = count_rows(links) * (len(cols) + 4) * 4
    sums = partial.groupby(["permno", "date"]).sum(split_out=max(1, math.ceil(bound / PARTIAL_SUM_BYTES)))
    means = sums.map_partitions(stock_day_means, cols)
    vol = v.assign(permno=v["permno"].astype("int64"))
    out = means.merge(vol, on=["permno", "date"], how="inner")
    vol_cols = [c for c in vol.columns if c not in ("permno", "date")]
    return out[["permno", "date", "n_posts", "n_mentions", *cols, *vol_cols]], cols


class FeaturesInputs(TypedDict):
    """The inputs of features: the links, embeddings, signals and volatility datasets."""

    links: Path
    embeddings: Path
    signals: Path
    volatility: Path


class FeaturesFields(TypedDict):
    """The manifest fields of features (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    assignment: str
    text_columns: int


def run(
    inputs: FeaturesInputs,
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
        ``links``, ``embeddings``, ``signals`` and ``volatility``: folders written by those
        stages.
    out
        The folder to write into.
    backend
        CPU (pandas) or GPU (cuDF) partitions.
    client
        Optional distributed client (collections compute on it automatically).
    """
    frame, cols = features_frame(
        inputs["links"], inputs["embeddings"], inputs["signals"], inputs["volatility"], backend=backend
    )
    write = backend.to_parquet(frame, out)
    n_links = backend.read_parquet(inputs["links"], ["id"]).shape[0]
    _, rows_in = compute(write, n_links, label="features", show=progress)
    return StageResult(
        rows_in=int(rows_in),
        fields=FeaturesFields(
            assignment="the links: first trading date of the permno on or after the post's UTC date",
            text_columns=len(cols),
        ),
    )
