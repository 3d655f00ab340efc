"""Per-post text signals that need no training: VADER sentiment and the post's words.

For every post that mentions a stock (the posts the embed stage embeds), one row:

* ``vader_compound, vader_pos, vader_neg, vader_neu`` -- VADER on the cleaned text
  (:mod:`wsb_gpu.signals.vader`);
* ``tokens`` -- the post's words, lower case, space-separated
  (:func:`wsb_gpu.signals.words.tokens`), which the fitted families (lexicon, TF-IDF,
  topic words) read inside each training window instead of the raw text;
* ``n_words`` -- how many.

VADER is pure Python: this stage runs on the workers' CPU threads on both backends (its
partitions are pandas, as the embed stage's are), so on a GPU cluster it runs beside the
GPU stages rather than on the GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

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
    """Kernel: the signals of a partition of posts (``id, text``; pandas).

    >>> out = score_partition(pd.DataFrame({"id": ["a"], "text": ["I love $GME calls!!"]}))
    >>> out["tokens"].tolist(), bool(out["vader_compound"].iloc[0] > 0.5), out["n_words"].tolist()
    (['love gme calls'], True, [3])
    """
    raw = posts["text"].astype("string").fillna("").tolist()
    texts = [clean_text(t) for t in raw]
    # words() cleans again; cleaning is cheap next to VADER, and keeps one definition of a word.
    toks = [words(t) for t in raw]
    values = vader.scores(texts)
    out = {"id": posts["id"].astype("string").to_numpy()}
    out.update({c: values[:, i] for i, c in enumerate(vader.COLUMNS)})
    out["tokens"] = pd.array([" ".join(t) for t in toks], dtype="string")
    out["n_words"] = np.array([len(t) for t in toks], dtype=np.int32)
    return pd.DataFrame(out).astype(META.dtypes.to_dict())


def run(
    inputs: Mapping[str, Path | None],
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
    ids = dd.read_parquet(str(inputs["mentions"]), columns=["id"])
    ids = ids.assign(id=ids["id"].astype("string")).drop_duplicates(split_out=max(ids.npartitions, 1))
    posts = posts.assign(id=posts["id"].astype("string"))
    mentioned = posts.merge(ids, on="id", how="inner")
    scored = mentioned.map_partitions(score_partition, meta=META)
    write = scored.to_parquet(str(out), write_index=False, compute=False, schema=SCHEMA)
    n_posts = posts.shape[0]
    _, rows_in = compute(write, n_posts, label="signals", show=progress)
    return StageResult(
        rows_in=int(rows_in),
        fields={"signals": [*vader.COLUMNS, "tokens", "n_words"], "vader": "vaderSentiment, CPU"},
    )
