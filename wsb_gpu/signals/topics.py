"""Topics of posts: BERTopic's recipe on the post embeddings, fitted per training window.

Fitted inside one training window, on a bounded sample of its posts (``train.topics.sample``,
default 200,000; chosen by a hash of the post id, so the same posts on every run):

1. UMAP reduces the embeddings to ``n_components`` dimensions (cosine metric,
   ``n_neighbors``, ``min_dist = 0``: BERTopic's defaults);
2. HDBSCAN clusters the reduced points (``min_topic_size``); points in no cluster are
   outliers;
3. the ``max_topics`` largest clusters become topics ``0 … max_topics - 1`` (by size); the
   other clusters and the outliers form ``other``;
4. each topic's words are ranked by c-TF-IDF over the sample's posts: the topic's posts are
   one document, ``tf(t, c)`` the share of the topic's words that are ``t``, and
   ``c-TF-IDF(t, c) = tf(t, c) · log(N / (1 + df(t)))`` with ``N`` topics (``other``
   included) and ``df(t)`` the number of them whose posts use ``t`` (the inverse class
   frequency of the BERTopic seed).

Every post of the window, sample included, then gets its topic the same way
(``train.topics.assign``): ``centroid`` (default) -- the topic whose mean normalised
embedding is nearest in cosine, or ``other`` when even that is less similar than 95 % of
the sample's topic members are to their own topic (BERTopic's outlier reduction by
embeddings); ``transform`` -- ``UMAP.transform`` then HDBSCAN's approximate prediction
(BERTopic's ``transform``; much slower on a CPU). The stock-day columns are the share of
posts per topic (``topic_00 …``, ``topic_other``) and the mean VADER compound of the
posts within each topic (``topic_tone_00 …``, 0 when the day has none).

CPU: ``umap-learn`` and ``hdbscan``; GPU: cuML's ``UMAP`` and ``HDBSCAN`` (same API).

One topic model gives two feature families: :class:`TopicsFamily` (``topics``, which fits it;
settings: ``train.topics``) and :class:`TopicToneFamily` (``topic_tone``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from wsb_gpu.backend import Backend, array_namespace, to_numpy
from wsb_gpu.errors import WsbError, missing_package
from wsb_gpu.signals.base import FittedFamily, Labels, Posts, embedding_columns
from wsb_gpu.signals.words import content_words

OTHER = -1
_MEMBER_QUANTILE = 0.05


def _cluster_classes(backend: Backend) -> tuple[Any, Any, Any]:
    """``(UMAP, HDBSCAN, approximate_predict)`` of the backend: cuML on GPU, umap-learn and
    hdbscan on CPU."""
    if backend.is_gpu:
        try:
            from cuml.cluster.hdbscan import HDBSCAN, approximate_predict
            from cuml.manifold import UMAP
        except ImportError as e:
            raise missing_package("cuml-cu12", "pip install 'wsb_gpu[gpu]'", "the topics family on the GPU") from e
        return UMAP, HDBSCAN, approximate_predict
    try:
        import hdbscan
        from umap import UMAP
    except ImportError as e:
        raise missing_package("umap-learn and hdbscan", "pip install umap-learn hdbscan", "the topics family") from e
    return UMAP, hdbscan.HDBSCAN, hdbscan.approximate_predict


def normalise(X: Any) -> Any:
    """Rows scaled to unit length (array API; zero rows stay zero).

    >>> normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    xp = array_namespace(X)
    norm = xp.sqrt(xp.sum(X * X, axis=1, keepdims=True))
    return X / xp.where(norm > 0, norm, 1.0)


def c_tf_idf(tokens: Sequence[str | None], labels: Iterable[int], top: int = 10) -> dict[int, list[list]]:
    """The ``top`` words of each class by c-TF-IDF (see the module docstring).

    >>> docs = ["earnings guidance", "earnings eps", "moon rocket", "moon squeeze", "dip", "dip hold"]
    >>> c_tf_idf(docs, [0, 0, 1, 1, -1, -1], top=2)[0]
    [['earnings', 0.202733], ['eps', 0.101366]]
    """
    per_class: dict[int, Counter] = {}
    for value, label in zip(tokens, labels):
        per_class.setdefault(int(label), Counter()).update(content_words(value))
    n_classes = len(per_class)
    df: Counter = Counter()
    for counts in per_class.values():
        df.update(counts.keys())
    out = {}
    for label in sorted(per_class):
        counts = per_class[label]
        total = sum(counts.values()) or 1
        scored = [(w, c / total * math.log(n_classes / (1 + df[w])), c) for w, c in counts.items()]
        # With few classes many words tie on the score (0 for N = 2): the count breaks ties.
        scored.sort(key=lambda wsc: (-wsc[1], -wsc[2], wsc[0]))
        out[label] = [[w, round(s, 6)] for w, s, _ in scored[:top]]
    return out


@dataclass
class TopicModel:
    """A fitted topic model (see the module docstring).

    Attributes
    ----------
    centroids
        ``(T, d)`` unit-length mean embedding of each topic (host float32).
    threshold
        Cosine similarity below which a post is ``other`` (centroid assignment).
    sizes
        Sample posts per topic, then ``other``.
    words
        Topic -> its top c-TF-IDF words with scores.
    """

    centroids: np.ndarray
    threshold: float
    sizes: list[int]
    words: dict[int, list[list]]
    n_sample: int
    n_clusters: int
    max_topics: int
    assign_mode: str = "centroid"
    reducer: Any = field(default=None, repr=False)
    clusterer: Any = field(default=None, repr=False)
    label_map: dict[int, int] = field(default_factory=dict, repr=False)
    backend: Backend = field(default_factory=lambda: Backend("cpu"), repr=False)

    def assign(self, X: Any) -> np.ndarray:
        """Topic ids (``0 … T-1``, or ``-1`` for other) of embeddings ``X`` (NumPy/CuPy)."""
        if X.shape[0] == 0 or self.centroids.shape[0] == 0:
            return np.full(X.shape[0], OTHER, dtype=np.int64)
        if self.assign_mode == "transform":
            return self._transform(X)
        xp = array_namespace(X)
        sims = normalise(xp.astype(X, xp.float32)) @ xp.asarray(self.centroids).T
        best = xp.argmax(sims, axis=1)
        top = xp.max(sims, axis=1)
        return to_numpy(xp.where(top >= self.threshold, best, OTHER)).astype(np.int64)

    def _transform(self, X: Any) -> np.ndarray:
        _, _, approximate_predict = _cluster_classes(self.backend)
        reduced = self.reducer.transform(X)
        labels, _ = approximate_predict(self.clusterer, reduced)
        labels = np.asarray(to_numpy(labels)).astype(np.int64)
        return np.array([self.label_map.get(int(v), OTHER) for v in labels], dtype=np.int64)

    def info(self) -> dict:
        return {
            "n_sample": self.n_sample,
            "clusters_found": self.n_clusters,
            "topics": len(self.centroids),
            "sizes": self.sizes,
            "assign": self.assign_mode,
            "threshold": round(float(self.threshold), 6),
            "words": {("other" if k == OTHER else f"{k:02d}"): v for k, v in self.words.items()},
        }


def fit_topics(
    X: Any,
    tokens: Sequence[str | None],
    *,
    max_topics: int,
    min_topic_size: int,
    n_neighbors: int,
    n_components: int,
    assign: str,
    seed: int,
    backend: Backend,
) -> TopicModel:
    """Fit the topic model on a sample: embeddings ``X`` (n, d) and the posts' ``tokens``."""
    n = int(X.shape[0])
    if n < max(2 * min_topic_size, n_neighbors + 2):
        msg = (
            f"the topics family has only {n} posts in the training window; it needs at least "
            f"{max(2 * min_topic_size, n_neighbors + 2)} (lower train.topics.min_topic_size or use more data)"
        )
        raise WsbError(msg)
    UMAP, HDBSCAN, _ = _cluster_classes(backend)
    xp = backend.xp
    Xd = xp.asarray(X, dtype=xp.float32)
    # umap-learn runs single-threaded when seeded (and warns unless told so); cuML has no n_jobs.
    threads = {} if backend.is_gpu else {"n_jobs": 1}
    reducer = UMAP(
        n_neighbors=int(n_neighbors),
        n_components=int(n_components),
        min_dist=0.0,
        metric="cosine",
        random_state=seed,
        **threads,
    )
    reduced = reducer.fit_transform(Xd)
    clusterer = HDBSCAN(min_cluster_size=int(min_topic_size), prediction_data=assign == "transform")
    clusterer.fit(reduced)
    raw = np.asarray(to_numpy(clusterer.labels_)).astype(np.int64)
    found = sorted(set(raw.tolist()) - {OTHER})
    sizes = Counter(raw[raw != OTHER].tolist())
    ranked = sorted(found, key=lambda c: (-sizes[c], c))[:max_topics]
    label_map = {c: k for k, c in enumerate(ranked)}
    labels = np.array([label_map.get(int(c), OTHER) for c in raw], dtype=np.int64)
    unit = to_numpy(normalise(xp.asarray(Xd))).astype(np.float32)
    centroids = np.zeros((len(ranked), unit.shape[1]), dtype=np.float32)
    for k in range(len(ranked)):
        centroids[k] = unit[labels == k].mean(axis=0)
    centroids = to_numpy(normalise(centroids)).astype(np.float32)
    member = labels != OTHER
    if member.any():
        own = (unit[member] * centroids[labels[member]]).sum(axis=1)
        threshold = float(np.quantile(own, _MEMBER_QUANTILE))
    else:
        threshold = 1.0
    counts = [int((labels == k).sum()) for k in range(len(ranked))] + [int((labels == OTHER).sum())]
    return TopicModel(
        centroids=centroids,
        threshold=threshold,
        sizes=counts,
        words=c_tf_idf(tokens, labels),
        n_sample=n,
        n_clusters=len(found),
        max_topics=int(max_topics),
        assign_mode=assign,
        reducer=reducer if assign == "transform" else None,
        clusterer=clusterer if assign == "transform" else None,
        label_map=label_map,
        backend=backend,
    )


def _id_hash(ids: pd.Series) -> pd.Series:
    """A fixed hash of each post id (pandas' SipHash with its fixed key): the topic sample."""
    return pd.Series(pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy(), index=ids.index, name="_h")


class TopicsSettings(Protocol):
    """``train.topics``: the sample, the clustering and how posts are assigned a topic."""

    sample: int
    max_topics: int
    min_topic_size: int
    n_neighbors: int
    n_components: int
    assign: str
    seed: int


@dataclass(frozen=True)
class TopicsFamily(FittedFamily):
    """The ``topics`` family: ``topic_00 …``, ``topic_other``, the share of the stock-day's
    posts per topic. It fits the topic model, which also gives ``topic_tone``'s columns.

    >>> from types import SimpleNamespace
    >>> fam = TopicsFamily("topics", "").configured(SimpleNamespace(max_topics=2))
    >>> fam.columns(), fam.outputs()[3:]
    (['topic_00', 'topic_01', 'topic_other'], ['topic_tone_00', 'topic_tone_01'])
    """

    settings: TopicsSettings | None = None
    section: ClassVar[str | None] = "topics"
    embeddings: ClassVar[bool] = True

    def columns(self, available: Sequence[str] = ()) -> list[str]:
        return self.share_columns()

    def share_columns(self) -> list[str]:
        """The ``topics`` columns: the share of the posts in each topic, and in none."""
        return [*(f"topic_{k:02d}" for k in range(self.settings_of().max_topics)), "topic_other"]

    def tone_columns(self) -> list[str]:
        """The ``topic_tone`` columns: the mean VADER compound of the posts within each topic."""
        return [f"topic_tone_{k:02d}" for k in range(self.settings_of().max_topics)]

    def outputs(self) -> list[str]:
        return [*self.share_columns(), *self.tone_columns()]

    def fit(self, posts: Posts, labels: Labels, backend: Backend, *, progress: bool = False) -> TopicModel:
        """The topic model of a sample of the training posts (see the module docstring)."""
        from wsb_gpu.progress import compute

        if posts.embeddings is None:
            raise WsbError("the topics family needs the embeddings dataset; pass --embeddings DIR")
        p = self.settings_of()
        train = posts.frame
        # The sample: the posts whose id hashes lowest. A first cut by a hash threshold keeps
        # about 1.2 x the sample size on the workers; the exact cut is made here.
        (n_ids,) = compute(train["id"].nunique_approx(), label="train: count posts", show=progress)
        share = min(1.0, 1.2 * int(p.sample) / max(float(n_ids), 1.0))
        ids = train[["id", "tokens"]]
        hashes = ids["id"].map_partitions(_id_hash, meta=("_h", "uint64"))
        cut = ids[hashes <= np.uint64(min(int(share * 2**64), 2**64 - 1))]
        picked = cut.merge(posts.embeddings_frame(), on="id", how="inner")
        (table,) = compute(picked, label="train: topic sample", show=progress)
        # The rows with the smallest hashes, picked by position: no column is inserted into the
        # frame a p2p merge returned (one block per column: pandas would warn it is fragmented).
        table = table.drop_duplicates("id")
        lowest = np.argsort(np.asarray(_id_hash(table["id"]).to_numpy()), kind="stable")[: int(p.sample)]
        table = table.iloc[lowest].sort_values("id", kind="stable").reset_index(drop=True)
        X = table[posts.embedding_columns()].to_numpy(np.float32)
        return fit_topics(
            X,
            table["tokens"].astype("string").fillna("").tolist(),
            max_topics=p.max_topics,
            min_topic_size=p.min_topic_size,
            n_neighbors=p.n_neighbors,
            n_components=p.n_components,
            assign=p.assign,
            seed=p.seed,
            backend=backend,
        )

    def score(self, state: TopicModel, posts: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per post: an indicator per topic (``t_00 …``, ``t_other``) and the VADER compound
        within each topic (``c_00 …``), summed per stock-day by the caller."""
        n = len(posts)
        emb = embedding_columns(list(posts.columns))
        topic = state.assign(posts[emb].to_numpy(np.float32)) if n else np.zeros(0, np.int64)
        compound = posts["vader_compound"].to_numpy(np.float64)
        out: dict[str, np.ndarray] = {}
        for k in range(self.settings_of().max_topics):
            ind = (topic == k).astype(np.float64)
            out[f"t_{k:02d}"] = ind
            out[f"c_{k:02d}"] = ind * compound
        out["t_other"] = (topic == OTHER).astype(np.float64)
        return out

    def finish(self, state: TopicModel, sums: Mapping[str, np.ndarray], n_posts: np.ndarray) -> dict[str, np.ndarray]:
        """The share of posts per topic, and the mean compound within each topic (0 without posts)."""
        k_topics = self.settings_of().max_topics
        shares = [sums[f"t_{k:02d}"] / n_posts for k in range(k_topics)] + [sums["t_other"] / n_posts]
        out = dict(zip(self.share_columns(), shares))
        for k, name in enumerate(self.tone_columns()):
            members, tone = sums[f"t_{k:02d}"], sums[f"c_{k:02d}"]
            out[name] = np.divide(tone, members, out=np.zeros_like(tone), where=members > 0)
        return out


@dataclass(frozen=True)
class TopicToneFamily(TopicsFamily):
    """The ``topic_tone`` family: ``topic_tone_00 …``, from the model ``topics`` fits.

    >>> from types import SimpleNamespace
    >>> fam = TopicToneFamily("topic_tone", "").configured(SimpleNamespace(max_topics=2))
    >>> fam.model, fam.columns()
    ('topics', ['topic_tone_00', 'topic_tone_01'])
    """

    @property
    def model(self) -> str:
        return "topics"

    def columns(self, available: Sequence[str] = ()) -> list[str]:
        return self.tone_columns()

    def outputs(self) -> list[str]:
        return self.tone_columns()
