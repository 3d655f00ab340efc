"""TF-IDF of a post over the K most frequent terms of the training window.

Fitted inside one training window, on its distinct posts (a post linked to two stocks is
one document):

* the vocabulary: the ``K`` content words (stop words out) with the highest total count,
  among those in at least ``min_df`` posts (``train.tfidf.terms``, ``min_df``; ties by
  word), as scikit-learn's ``TfidfVectorizer(max_features=K, min_df=...)`` chooses them;
* the inverse document frequency ``idf(t) = ln((1 + n) / (1 + df(t))) + 1`` over the ``n``
  training posts (scikit-learn's ``smooth_idf=True``).

A post's vector is its raw term counts times ``idf``, scaled to unit length (``norm="l2"``);
a post with none of the terms is the zero vector. A stock-day's ``tfidf_00 …`` columns are
the mean vector of its posts; column ``k`` is the window's ``k``-th term (the terms differ
between windows; ``signals.json`` lists them).

:class:`TfidfFamily` is the ``tfidf`` feature family (settings: ``train.tfidf``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import pandas as pd

from wsb_gpu.signals.base import FittedFamily, Labels, Posts
from wsb_gpu.signals.words import content_words

if TYPE_CHECKING:
    from wsb_gpu.backend import Backend


def term_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Kernel: per content word of a partition of posts (``tokens``): in how many posts it
    appears (``df``) and how often in all (``tf``).

    >>> term_counts(pd.DataFrame({"tokens": ["moon moon dip", "moon"]})).values.tolist()
    [['moon', 2, 3], ['dip', 1, 1]]
    """
    df: Counter = Counter()
    tf: Counter = Counter()
    for tokens in frame["tokens"].astype("string").fillna("").tolist():
        words = content_words(tokens)
        tf.update(words)
        df.update(set(words))
    return pd.DataFrame(
        {
            "word": pd.array(list(tf), dtype="string"),
            "df": np.fromiter((df[w] for w in tf), dtype=np.int64, count=len(tf)),
            "tf": np.fromiter(tf.values(), dtype=np.int64, count=len(tf)),
        }
    )


@dataclass
class Tfidf:
    """A fitted vocabulary and its IDF (see the module docstring).

    ``terms`` has exactly ``K`` entries; when the window has fewer eligible words the rest
    are empty strings (zero columns).
    """

    terms: tuple[str, ...]
    idf: np.ndarray
    n_docs: int

    def transform(self, tokens: Sequence[str | None]) -> np.ndarray:
        """``(n, K)`` float64 TF-IDF vectors of posts (their ``tokens`` values), unit length.

        >>> t = Tfidf(("moon", "dip"), np.array([1.0, 2.0]), 3)
        >>> t.transform(["moon moon", "dip moon", "hello"]).round(4).tolist()
        [[1.0, 0.0], [0.4472, 0.8944], [0.0, 0.0]]
        """
        index = {t: k for k, t in enumerate(self.terms) if t}
        out = np.zeros((len(tokens), len(self.terms)), dtype=np.float64)
        for i, value in enumerate(tokens):
            for w in content_words(value):
                k = index.get(w)
                if k is not None:
                    out[i, k] += 1.0
        out *= self.idf[None, :]
        norm = np.sqrt((out * out).sum(axis=1))
        np.divide(out, norm[:, None], out=out, where=norm[:, None] > 0)
        return out

    def info(self) -> dict:
        return {
            "terms": [t for t in self.terms if t],
            "idf": [round(float(v), 6) for t, v in zip(self.terms, self.idf) if t],
            "n_docs": self.n_docs,
        }


def tfidf_from_counts(counts: pd.DataFrame, n_docs: int, terms: int, min_df: int) -> Tfidf:
    """The vocabulary and IDF from per-word ``df`` and ``tf`` summed over the window's posts.

    >>> c = pd.DataFrame({"word": ["a", "b", "c"], "df": [2, 3, 1], "tf": [5, 3, 9]})
    >>> t = tfidf_from_counts(c, n_docs=4, terms=3, min_df=2)
    >>> t.terms, t.idf.round(4).tolist()
    (('a', 'b', ''), [1.5108, 1.2231, 0.0])
    """
    eligible = counts[counts["df"] >= min_df]
    order = np.lexsort((eligible["word"].astype(str).to_numpy(), -eligible["tf"].to_numpy()))
    chosen = eligible.iloc[order[:terms]]
    words = chosen["word"].astype(str).tolist()
    df = chosen["df"].to_numpy(np.float64)
    idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    pad = terms - len(words)
    return Tfidf(tuple(words) + ("",) * pad, np.concatenate([idf, np.zeros(pad)]), int(n_docs))


class TfidfSettings(Protocol):
    """``train.tfidf``: the number of terms K and the minimum document frequency of a term."""

    terms: int
    min_df: int


@dataclass(frozen=True)
class TfidfFamily(FittedFamily):
    """The ``tfidf`` family: ``tfidf_00 …``, the mean TF-IDF vector of the stock-day's posts.

    >>> from types import SimpleNamespace
    >>> TfidfFamily("tfidf", "").configured(SimpleNamespace(terms=3, min_df=2)).columns()
    ['tfidf_00', 'tfidf_01', 'tfidf_02']
    """

    settings: TfidfSettings | None = None
    section: ClassVar[str | None] = "tfidf"

    def columns(self, available: Sequence[str] = ()) -> list[str]:
        return [f"{self.name}_{k:02d}" for k in range(self.settings_of().terms)]

    def fit(self, posts: Posts, labels: Labels, backend: Backend, *, progress: bool = False) -> Tfidf:
        """The vocabulary and IDF of the training window's distinct posts."""
        from wsb_gpu.progress import compute

        p = self.settings_of()
        train = posts.frame
        nparts = max(train.npartitions, 1)
        docs = train[["id", "tokens"]].drop_duplicates(subset="id", split_out=nparts)
        meta = pd.DataFrame(
            {
                "word": pd.Series([], dtype="string"),
                "df": pd.Series([], dtype="int64"),
                "tf": pd.Series([], dtype="int64"),
            }
        )
        counts = docs.map_partitions(term_counts, meta=meta).groupby("word").sum(split_out=nparts).reset_index()
        counts, n_docs = compute(counts, docs.shape[0], label="train: tf-idf", show=progress)
        return tfidf_from_counts(counts, int(n_docs), p.terms, p.min_df)

    def score(self, state: Tfidf, posts: pd.DataFrame) -> dict[str, np.ndarray]:
        """A post's TF-IDF vector, one value per term."""
        vectors = state.transform(posts["tokens"].astype("string").fillna("").tolist())
        names = self.columns()
        return {names[k]: vectors[:, k] for k in range(vectors.shape[1])}
