"""Per-post text signals that need no training: VADER sentiment and the post's words.

For every post that mentions a stock (the posts the embed stage embeds), one row:

* ``vader_compound, vader_pos, vader_neg, vader_neu`` -- VADER on the cleaned text
  (:mod:`wsb_gpu.signals.vader`);
* ``tokens`` -- the post's words, lower case, space-separated
  (:func:`wsb_gpu.signals.words.words`), **without the symbols of the stocks it mentions**,
  which the fitted families (lexicon, TF-IDF, topic words) read inside each training window
  instead of the raw text;
* ``n_words`` -- how many.

Why the post's own tickers are left out of its words: a ticker names the stock, it does not
say anything about it. Left in, the most frequent terms of a WSB window are tickers (TF-IDF
takes the K most frequent), and the word families become stock dummies that predict a
stock's *average* volatility level -- which a pooled HAR forecast does not fully capture --
and not what the posts say (docs/signals.md has what the synthetic placebo showed). Tickers
of other stocks named in passing stay words.

VADER is pure Python: this stage runs on the workers' CPU threads on both backends (its
partitions are pandas, as the embed stage's are), so on a GPU cluster it runs beside the
GPU stages rather than on the GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa

from wsb_gpu.backend import Backend
from wsb_gpu.config import EmptyParams
from wsb_gpu.progress import compute
from wsb_gpu.signals import vader
from wsb_gpu.signals.words import words
from wsb_gpu.stages.base import StageResult
from wsb_gpu.text import clean_text

if TYPE_CHECKING:
    from distributed import Client

META = pd.DataFrame(
    {
        "id": pd.Series([], dtype="string"),
        **{c: pd.Series([], dtype="float32") for c in vader.COLUMNS},
        "tokens": pd.Series([], dtype="string"),
        "n_words": pd.Series([], dtype="int32"),
    }
)
SCHEMA = {"id": pa.string(), "tokens": pa.string()}


def score_partition(posts: pd.DataFrame) -> pd.DataFrame:
    """Kernel: the signals of a partition of (post, ticker) rows (``id, text, ticker``; pandas).

    A post with several tickers has several rows (all in this partition): it is scored once,
    and none of its tickers is one of its words.

    >>> rows = pd.DataFrame({"id": ["a", "a", "b"], "text": ["I love $GME calls!! TSLA too"] * 2 + ["AMD ok"],
    ...                      "ticker": ["GME", "TSLA", "AMD"]})
    >>> out = score_partition(rows)
    >>> out["tokens"].tolist(), bool(out["vader_compound"].iloc[0] > 0.5), out["n_words"].tolist()
    (['love calls too', 'ok'], True, [3, 1])
    """
    own: dict[str, set[str]] = {}
    for pid, tick in zip(posts["id"].astype("string").tolist(), posts["ticker"].astype("string").fillna("").tolist()):
        own.setdefault(pid, set()).add(tick.lower())
    posts = posts.drop_duplicates(subset="id")
    ids = posts["id"].astype("string").tolist()
    raw = posts["text"].astype("string").fillna("").tolist()
    texts = [clean_text(t) for t in raw]
    # words() cleans again; cleaning is cheap next to VADER, and keeps one definition of a word.
    toks = [[w for w in words(t) if w not in own[pid]] for pid, t in zip(ids, raw)]
    values = vader.scores(texts)
    out = {"id": posts["id"].astype("string").to_numpy()}
    out.update({c: values[:, i] for i, c in enumerate(vader.COLUMNS)})
    out["tokens"] = pd.array([" ".join(t) for t in toks], dtype="string")
    out["n_words"] = np.array([len(t) for t in toks], dtype=np.int32)
    return pd.DataFrame(out).astype(META.dtypes.to_dict())


class SignalsInputs(TypedDict):
    """The inputs of signals: the posts and mentions datasets."""

    posts: Path
    mentions: Path


class SignalsFields(TypedDict):
    """The manifest fields of signals (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    signals: list[str]
    vader: str


def run(
    inputs: SignalsInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: EmptyParams,
    progress: bool = False,
) -> StageResult:
    """Score every post that has a mention (VADER) and store its words.

    Parameters
    ----------
    inputs
        ``posts`` and ``mentions``: folders of those datasets.
    out
        The folder to write into.
    backend
        Not used: the signals are computed on the CPU on both backends (see the module
        docstring).
    """
    posts = dd.read_parquet(str(inputs["posts"]), columns=["id", "text"])
    ticks = dd.read_parquet(str(inputs["mentions"]), columns=["id", "ticker"])
    ticks = ticks.assign(id=ticks["id"].astype("string"), ticker=ticks["ticker"].astype("string"))
    ticks = ticks.drop_duplicates(split_out=max(ticks.npartitions, 1))
    posts = posts.assign(id=posts["id"].astype("string"))
    # One row per (post, ticker), every row of a post in one partition: a hash join shuffles
    # both sides on id (a broadcast join could split a post's tickers over partitions).
    mentioned = posts.merge(ticks, on="id", how="inner", broadcast=False)
    scored = mentioned.map_partitions(score_partition, meta=META)
    write = scored.to_parquet(str(out), write_index=False, compute=False, schema=SCHEMA)
    n_posts = posts.shape[0]
    _, rows_in = compute(write, n_posts, label="signals", show=progress)
    return StageResult(
        rows_in=int(rows_in),
        fields=SignalsFields(signals=[*vader.COLUMNS, "tokens", "n_words"], vader="vaderSentiment, CPU"),
    )
