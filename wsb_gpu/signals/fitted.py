"""The fitted families inside one rolling window: fit on the training years, score every post
of the window, average per stock-day.

The per-post inputs are the links (which stock-day a post belongs to), the signals dataset
(the post's words and VADER compound) and, for topics, the embeddings. They are read as
pandas partitions on both backends: words are host work, as the tokenizer's are. Posts and
stock-days are keyed by ``(permno, day)`` with ``day`` the trading date as days since 1970
(an integer joins the same way in pandas and cuDF; dates do not).

For a window with training years ``T`` and test year ``Y``:

1. :func:`fit_families` fits each asked family on the posts of ``T`` only: the lexicon from
   the labels of ``T``'s stock-days (cross-fitted: a training post is scored by the lexicon
   of the *other* training years, or its own label would be in its score), the TF-IDF vocabulary and IDF from ``T``'s posts, the
   topic model from a sample of ``T``'s posts. Nothing of ``Y`` is read.
2. :func:`family_columns_frame` scores every post of ``T`` and ``Y`` with what was fitted
   and averages per stock-day: the window's ``lexicon``, ``tfidf_*`` and ``topic_*``
   columns, which the training stage joins to the window's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from wsb_gpu.backend import Backend
from wsb_gpu.errors import WsbError
from wsb_gpu.models.har import HAR_COLUMNS
from wsb_gpu.progress import compute
from wsb_gpu.signals.families import family_columns
from wsb_gpu.signals.lexicon import Lexicon, label_values, lexicon_from_counts, word_day_rows
from wsb_gpu.signals.tfidf import Tfidf, term_counts, tfidf_from_counts
from wsb_gpu.signals.topics import OTHER, TopicModel, fit_topics
from wsb_gpu.stages.links import day_number

if TYPE_CHECKING:
    from wsb_gpu.config import TrainParams


@dataclass
class PostSources:
    """Where the per-post inputs of the fitted families are."""

    links: Path
    signals: Path
    embeddings: Path | None = None

    def posts(self) -> dd.DataFrame:
        """``permno, day, year, id, tokens, vader_compound``: one row per (stock, post) link."""
        links = dd.read_parquet(str(self.links), columns=["permno", "date", "id"])
        sig = dd.read_parquet(str(self.signals), columns=["id", "tokens", "vader_compound"])
        links = links.assign(id=links["id"].astype("string"), permno=links["permno"].astype("int64"))
        sig = sig.assign(id=sig["id"].astype("string"))
        frame = links.merge(sig, on="id", how="inner")
        return frame.map_partitions(_with_day, meta=_with_day(frame._meta))

    def embedding_columns(self) -> list[str]:
        if self.embeddings is None:
            return []
        import pyarrow.dataset as ds

        names = ds.dataset(str(self.embeddings), format="parquet", exclude_invalid_files=True).schema.names
        return sorted((c for c in names if c[:1] == "e" and c[1:].isdigit()), key=lambda c: int(c[1:]))

    def embeddings_frame(self) -> dd.DataFrame:
        cols = self.embedding_columns()
        emb = dd.read_parquet(str(self.embeddings), columns=["id", *cols])
        return emb.assign(id=emb["id"].astype("string"))


def _with_day(frame: pd.DataFrame) -> pd.DataFrame:
    """``date`` (the trading date) replaced by ``day`` (days since 1970) and ``year``.

    >>> _with_day(pd.DataFrame({"date": pd.to_datetime(["1970-01-02", "2020-03-01"])}))[["day", "year"]].values.tolist()
    [[1, 1970], [18322, 2020]]
    """
    dates = frame["date"].astype("datetime64[s]")
    out = frame.drop(columns=["date"])
    return out.assign(day=day_number(dates).astype("int64"), year=dates.dt.year.astype("int64"))


@dataclass
class Fitted:
    """What one window's fitted families learned (each None when not asked for)."""

    lexicon: Lexicon | None = None
    tfidf: Tfidf | None = None
    topics: TopicModel | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("lexicon", "tfidf", "topics"):
            part = getattr(self, name)
            if part is not None:
                out[name] = {**part.info(), "seconds": round(self.seconds.get(name, 0.0), 3)}
        return out


def _label_partition(frame: pd.DataFrame, target: str, kind: str, har: Any) -> pd.DataFrame:
    """Kernel: ``permno, day, label`` of training rows (rows without a label dropped)."""
    y = frame[target].to_numpy(np.float64)
    vol = frame["vol_22"].to_numpy(np.float64)
    pred = None
    if kind == "har_residual":
        pred = har.predict_array(frame[list(HAR_COLUMNS)].to_numpy(np.float64))
    label = label_values(y, vol, pred, kind)
    out = frame[["permno", "day"]].reset_index(drop=True).assign(label=label)
    return out[np.isfinite(label)]


def fit_families(
    families: Sequence[str],
    posts: dd.DataFrame,
    sources: PostSources,
    labels: dd.DataFrame,
    train_years: Sequence[int],
    *,
    params: TrainParams,
    target: str,
    har: Any,
    backend: Backend,
    progress: bool = False,
) -> Fitted:
    """Fit the asked ``families`` on the training years' posts (see the module docstring).

    ``labels`` is the window's training rows as a host Dask frame with ``permno, day``, the
    target, ``vol_22`` and the HAR terms; ``har`` the window's HAR fit (for the
    ``har_residual`` label).
    """
    import time

    fitted = Fitted()
    train = posts[posts["year"].isin(list(train_years))]
    nparts = max(train.npartitions, 1)
    if "lexicon" in families:
        t = time.perf_counter()
        p = params.lexicon
        lab = labels.map_partitions(
            _label_partition,
            target,
            p.label,
            har,
            meta=pd.DataFrame(
                {
                    "permno": pd.Series([], dtype="int64"),
                    "day": pd.Series([], dtype="int64"),
                    "label": pd.Series([], dtype="float64"),
                }
            ),
        )
        pairs = train[["permno", "day", "tokens"]].merge(lab, on=["permno", "day"], how="inner")
        meta = pd.DataFrame(
            {
                "word": pd.Series([], dtype="string"),
                "permno": pd.Series([], dtype="int64"),
                "day": pd.Series([], dtype="int64"),
                "label": pd.Series([], dtype="float64"),
            }
        )
        rows = pairs.map_partitions(word_day_rows, meta=meta)
        # The unit is the (word, stock-day) pair: a word used twice on a stock-day counts once.
        # Float sums in a fixed order (the task-based shuffle concatenates in partition order;
        # a shuffle that concatenates in arrival order would change the last bits run to run).
        rows = rows.drop_duplicates(subset=["word", "permno", "day"], split_out=nparts, shuffle_method="tasks")
        per_day = (
            rows.groupby(["word", "day"])["label"]
            .agg(["sum", "count"], split_out=nparts, shuffle_method="tasks")
            .reset_index()
        )
        per_day = per_day.assign(year=_year_of(per_day["day"]))
        # Per (word, year): the lexicon of the whole window and the cross-fitted ones (each
        # training year scored by the lexicon of the other years) are sums of these rows.
        per_word = per_day.groupby(["word", "year"]).agg(
            {"sum": "sum", "count": "sum", "day": "count"}, split_out=nparts, shuffle_method="tasks"
        )
        lab_year = lab.assign(year=_year_of(lab["day"])).groupby("year")["label"].agg(["sum", "count"])
        counts, by_year = compute(per_word.reset_index(), lab_year, label="train: lexicon", show=progress)
        counts = counts.rename(columns={"sum": "label_sum", "count": "n", "day": "n_dates"})
        fitted.lexicon = cross_fitted_lexicon(counts, by_year, p.min_dates, p.label)
        fitted.seconds["lexicon"] = time.perf_counter() - t
    docs = None
    if "tfidf" in families or "topics" in families:
        docs = train[["id", "tokens"]].drop_duplicates(subset="id", split_out=nparts)
    if "tfidf" in families:
        t = time.perf_counter()
        meta = pd.DataFrame(
            {
                "word": pd.Series([], dtype="string"),
                "df": pd.Series([], dtype="int64"),
                "tf": pd.Series([], dtype="int64"),
            }
        )
        counts = docs.map_partitions(term_counts, meta=meta).groupby("word").sum(split_out=nparts).reset_index()
        counts, n_docs = compute(counts, docs.shape[0], label="train: tf-idf", show=progress)
        fitted.tfidf = tfidf_from_counts(counts, int(n_docs), params.tfidf.terms, params.tfidf.min_df)
        fitted.seconds["tfidf"] = time.perf_counter() - t
    if "topics" in families:
        t = time.perf_counter()
        if sources.embeddings is None:
            raise WsbError("the topics family needs the embeddings dataset; pass --embeddings DIR")
        p = params.topics
        # The sample: the posts whose id hashes lowest. A first cut by a hash threshold keeps
        # about 1.2 x the sample size on the workers; the exact cut is made here.
        (n_ids,) = compute(train["id"].nunique_approx(), label="train: count posts", show=progress)
        share = min(1.0, 1.2 * int(p.sample) / max(float(n_ids), 1.0))
        ids = train[["id", "tokens"]]
        hashes = ids["id"].map_partitions(_id_hash, meta=("_h", "uint64"))
        cut = ids[hashes <= np.uint64(min(int(share * 2**64), 2**64 - 1))]
        picked = cut.merge(sources.embeddings_frame(), on="id", how="inner")
        (table,) = compute(picked, label="train: topic sample", show=progress)
        # The rows with the smallest hashes, picked by position: no column is inserted into the
        # frame a p2p merge returned (one block per column: pandas would warn it is fragmented).
        table = table.drop_duplicates("id")
        lowest = np.argsort(np.asarray(_id_hash(table["id"]).to_numpy()), kind="stable")[: int(p.sample)]
        table = table.iloc[lowest].sort_values("id", kind="stable").reset_index(drop=True)
        cols = sources.embedding_columns()
        X = table[cols].to_numpy(np.float32)
        fitted.topics = fit_topics(
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
        fitted.seconds["topics"] = time.perf_counter() - t
    return fitted


def _year_of(day: Any) -> Any:
    """Calendar year of a day number (days since 1970), for pandas or Dask series.

    >>> _year_of(pd.Series([0, 18322])).tolist()
    [1970, 2020]
    """
    return (day.astype("int64") * 86400).astype("datetime64[s]").dt.year.astype("int64")


def cross_fitted_lexicon(counts: pd.DataFrame, by_year: pd.DataFrame, min_dates: int, label: str) -> Lexicon:
    """The window's lexicon and, per training year, the lexicon of the other training years.

    ``counts`` has ``word, year, label_sum, n, n_dates`` (sums over the word's distinct
    (word, stock-day) pairs of that year), ``by_year`` the sum and count of the training
    rows' labels per year. A word's dates add up across years (a date lies in one year).

    >>> c = pd.DataFrame({"word": ["a", "a", "b"], "year": [1, 2, 1], "label_sum": [2.0, 4.0, 1.0],
    ...                   "n": [2, 2, 1], "n_dates": [2, 2, 1]})
    >>> y = pd.DataFrame({"sum": [2.0, 2.0], "count": [4, 4]}, index=[1, 2])
    >>> lex = cross_fitted_lexicon(c, y, 2, "log_ratio")
    >>> lex.scores, lex.held_out[1].scores, lex.held_out[2].scores
    ({'a': 1.0}, {'a': 1.5}, {'a': 0.5})
    """
    total = counts.groupby("word", sort=False)[["label_sum", "n", "n_dates"]].sum().reset_index()
    full = lexicon_from_counts(total, float(by_year["sum"].sum() / by_year["count"].sum()), min_dates, label)
    # Only words of the whole window's lexicon can reach min_dates in a subset of its years.
    counts = counts[counts["word"].isin(set(full.scores))]
    kept = total[total["word"].isin(set(full.scores))].set_index("word")
    for year in sorted(int(y) for y in by_year.index):
        mine = counts[counts["year"] == year].set_index("word")[["label_sum", "n", "n_dates"]]
        rest = kept.sub(mine.reindex(kept.index, fill_value=0), fill_value=0)
        rest = rest[rest["n"] > 0].reset_index()
        others = by_year.drop(index=year)
        if others.empty:
            continue
        mean = float(others["sum"].sum() / others["count"].sum())
        full.held_out[year] = lexicon_from_counts(rest, mean, min_dates, label)
    return full


def _id_hash(ids: pd.Series) -> pd.Series:
    """A fixed hash of each post id (pandas' SipHash with its fixed key): the topic sample."""
    return pd.Series(pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy(), index=ids.index, name="_h")


def output_columns(params: TrainParams, families: Sequence[str]) -> list[str]:
    """The stock-day columns the fitted ``families`` add: every column of the topic model
    when either topic family is asked (one model gives both), in family order."""
    cols: list[str] = []
    for fam in ("topics", "topic_tone", "lexicon", "tfidf"):
        if fam in families or (fam.startswith("topic") and "topics" in families_fitted(families)):
            cols += family_columns(fam, [], tfidf_terms=params.tfidf.terms, max_topics=params.topics.max_topics)
    return cols


def families_fitted(families: Sequence[str]) -> list[str]:
    """The models to fit for the asked families: ``topics`` for either topic family.

    >>> families_fitted(["topic_tone", "lexicon"])
    ['topics', 'lexicon']
    """
    out = ["topics"] if any(f in ("topics", "topic_tone") for f in families) else []
    return out + [f for f in ("lexicon", "tfidf") if f in families]


def score_posts(frame: pd.DataFrame, fitted: Fitted, emb_cols: Sequence[str], max_topics: int) -> pd.DataFrame:
    """Kernel: per (stock, post) row the summable per-post values of the fitted families.

    Returns ``permno, day, _posts`` and, per family, ``lexicon``; ``tfidf_*``; the topic
    indicators ``_t_00 …, _t_other`` and ``_c_00 …`` (VADER compound times the indicator),
    all float64, to be summed per stock-day and finished by :func:`finish_columns`.
    """
    tokens = frame["tokens"].astype("string").fillna("").tolist()
    n = len(tokens)
    out: dict[str, Any] = {
        "permno": frame["permno"].to_numpy(np.int64),
        "day": frame["day"].to_numpy(np.int64),
        "_posts": np.ones(n),
    }
    if fitted.topics is not None:
        topic = fitted.topics.assign(frame[list(emb_cols)].to_numpy(np.float32)) if n else np.zeros(0, np.int64)
        compound = frame["vader_compound"].to_numpy(np.float64)
        for k in range(max_topics):
            ind = (topic == k).astype(np.float64)
            out[f"_t_{k:02d}"] = ind
            out[f"_c_{k:02d}"] = ind * compound
        out["_t_other"] = (topic == OTHER).astype(np.float64)
    if fitted.lexicon is not None:
        out["lexicon"] = fitted.lexicon.scores_of(tokens, frame["year"].to_numpy(np.int64) if n else None)
    if fitted.tfidf is not None:
        vectors = fitted.tfidf.transform(tokens)
        for k in range(vectors.shape[1]):
            out[f"tfidf_{k:02d}"] = vectors[:, k]
    return pd.DataFrame(out)


def finish_columns(sums: pd.DataFrame, *, fitted: Fitted, max_topics: int) -> pd.DataFrame:
    """Kernel: per-stock-day sums -> the family columns (means, shares, within-topic tone)."""
    n = sums["_posts"].to_numpy(np.float64)
    out: dict[str, Any] = {"permno": sums["permno"].to_numpy(np.int64), "day": sums["day"].to_numpy(np.int64)}
    if fitted.topics is not None:
        for k in range(max_topics):
            out[f"topic_{k:02d}"] = sums[f"_t_{k:02d}"].to_numpy(np.float64) / n
        out["topic_other"] = sums["_t_other"].to_numpy(np.float64) / n
        for k in range(max_topics):
            members = sums[f"_t_{k:02d}"].to_numpy(np.float64)
            tone = sums[f"_c_{k:02d}"].to_numpy(np.float64)
            out[f"topic_tone_{k:02d}"] = np.divide(tone, members, out=np.zeros_like(tone), where=members > 0)
    if fitted.lexicon is not None:
        out["lexicon"] = sums["lexicon"].to_numpy(np.float64) / n
    if fitted.tfidf is not None:
        for k in range(len(fitted.tfidf.terms)):
            out[f"tfidf_{k:02d}"] = sums[f"tfidf_{k:02d}"].to_numpy(np.float64) / n
    return pd.DataFrame(out)


def family_columns_frame(
    fitted: Fitted, posts: dd.DataFrame, sources: PostSources, years: Sequence[int], *, max_topics: int
) -> dd.DataFrame:
    """The window's fitted family columns per stock-day of ``years`` (a lazy host frame keyed
    by ``permno, day``)."""
    window = posts[posts["year"].isin(list(years))]
    emb_cols: list[str] = []
    if fitted.topics is not None:
        emb_cols = sources.embedding_columns()
        window = window.merge(sources.embeddings_frame(), on="id", how="inner")
    fit = dask.delayed(fitted, pure=True)
    meta_in = window._meta
    scored_meta = score_posts(meta_in, fitted, emb_cols, max_topics)
    scored = window.map_partitions(score_posts, fit, emb_cols, max_topics, meta=scored_meta)
    sums = (
        scored.groupby(["permno", "day"])
        .sum(split_out=max(scored.npartitions, 1), shuffle_method="tasks")
        .reset_index()
    )
    meta = finish_columns(scored_meta, fitted=fitted, max_topics=max_topics)
    return sums.map_partitions(_finish, fit, max_topics, meta=meta)


def _finish(sums: pd.DataFrame, fitted: Fitted, max_topics: int) -> pd.DataFrame:
    return finish_columns(sums, fitted=fitted, max_topics=max_topics)


def families_asked(sets: Sequence[Any]) -> list[str]:
    """The models to fit for the feature sets (``topics`` for either topic family)."""
    return families_fitted([f for s in sets for f in s.fitted])


def window_info(fitted: Mapping[int, Fitted]) -> dict[str, Any]:
    """``signals.json``: per test year, what each fitted family learned."""
    return {str(year): f.info() for year, f in sorted(fitted.items())}
