"""A market-learned lexicon: each word's score is what followed the stock-days it appeared on.

Fitted inside one training window (never on the test year):

1. Every training post's distinct content words (stop words out) are paired with the
   stock-day the post belongs to (its link), and that stock-day's **label**: by default
   ``log(y / vol_22)``, the log of the next-day volatility over its monthly level, i.e.
   how unusually volatile the next day was (``train.lexicon.label``).
2. What counts is whether a word appears on a stock-day, not how often: the unit is the
   distinct (word, stock-day) pair.
3. A word's score is the mean label over its pairs minus the mean label of the window's
   training rows (so an unknown or uninformative word scores about 0), kept only when the
   word appears on at least ``min_dates`` distinct dates (``train.lexicon.min_dates``,
   default 10): rare words give spurious scores.
4. A post's score is the mean score of its distinct content words, unknown words counting
   0; a stock-day's ``lexicon`` column is the mean over its posts.
5. **Cross-fitted** on the training years: a word's score averages the labels of the days it
   appears on, so a training post scored with the whole window's lexicon carries its own
   stock-day's label, and a model fitted on those rows trusts the column far more than it
   deserves out of sample (on the synthetic placebo the lexicon set lost 0.1-0.2 points of
   R² to HAR on every seed). A training post of year ``t`` is therefore scored with the
   lexicon of the window's other training years (``held_out[t]``); test-year posts with
   the whole window's lexicon.

This is the dictionary of the PolicyPulse seed (word × date presence, forward market
change, a minimum number of distinct dates) built per rolling window, where the seed built
it once on the whole sample.

:class:`LexiconFamily` is the ``lexicon`` feature family: it fits the lexicon on a window's
training posts (settings: ``train.lexicon``) and scores every post of the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from wsb_gpu.datasets import HAR_COLUMNS
from wsb_gpu.dates import year_of
from wsb_gpu.signals.base import FittedFamily, Labels, Posts
from wsb_gpu.signals.words import content_words, distinct

if TYPE_CHECKING:
    from wsb_gpu.backend import Backend

LABELS = ("log_ratio", "har_residual")


def label_values(y: np.ndarray, vol_22: np.ndarray, har_prediction: np.ndarray | None, kind: str) -> np.ndarray:
    """The lexicon's label of each training row: ``log(y / vol_22)`` or ``y - HAR(y)``.

    Rows where ``log_ratio`` is undefined (a zero volatility) get NaN and are left out.

    >>> label_values(np.array([2.0, 1.0, 0.0]), np.array([1.0, 1.0, 1.0]), None, "log_ratio").round(4).tolist()
    [0.6931, 0.0, nan]
    """
    if kind == "log_ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(y / vol_22)
        return np.where(np.isfinite(out), out, np.nan)
    if kind == "har_residual":
        return y - har_prediction
    raise ValueError(f"unknown lexicon label {kind!r}; choose from {', '.join(LABELS)}")


def word_day_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Kernel: one row per (word, post) from posts with ``tokens, permno, day, label``.

    The words are each post's distinct content words; the caller drops the duplicates of a
    word on the same stock-day (two posts of the day with the same word count once).

    >>> f = pd.DataFrame({"tokens": ["the moon moon", "dip"], "permno": [1, 2], "day": [18263, 18263],
    ...                   "label": [0.5, -1.0]})
    >>> word_day_rows(f)[["word", "permno", "label"]].values.tolist()
    [['moon', 1, 0.5], ['dip', 2, -1.0]]
    """
    words = [distinct(content_words(t)) for t in frame["tokens"].astype("string").fillna("").tolist()]
    counts = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    take = np.repeat(np.arange(len(words)), counts)
    out = frame[["permno", "day", "label"]].iloc[take].reset_index(drop=True)
    out.insert(0, "word", pd.array([w for ws in words for w in ws], dtype="string"))
    return out


@dataclass
class Lexicon:
    """A fitted lexicon (see the module docstring).

    Attributes
    ----------
    scores
        Word -> score (mean label of its stock-days minus ``mean_label``).
    n_dates
        Word -> distinct dates it appeared on, in the training window.
    mean_label
        The mean label of the window's training rows.
    min_dates
        The threshold a word passed.
    held_out
        Training year -> the lexicon fitted on the window's other training years, which
        scores that year's posts (cross-fitting; empty = score every post with this one).
    """

    scores: dict[str, float]
    n_dates: dict[str, int]
    mean_label: float
    min_dates: int
    candidates: int = 0
    label: str = "log_ratio"
    held_out: dict[int, Lexicon] = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    def score(self, tokens: str | None) -> float:
        """The score of a post (its ``tokens`` value): the mean over its distinct content
        words, unknown words counting 0; 0 for a post without words.

        >>> Lexicon({"moon": 0.4, "dip": -0.2}, {}, 0.0, 10).score("to the moon and the dip and rockets")
        0.06666666666666667
        """
        words = distinct(content_words(tokens))
        if not words:
            return 0.0
        get = self.scores.get
        return math.fsum(get(w, 0.0) for w in words) / len(words)

    def scores_of(self, tokens: Sequence[str | None], years: np.ndarray | None = None) -> np.ndarray:
        """:meth:`score` of many posts (float64); with ``years``, a post of a held-out
        training year is scored by that year's lexicon (:attr:`held_out`).

        >>> lex = Lexicon({"moon": 0.4}, {}, 0.0, 10, held_out={2019: Lexicon({"moon": 0.1}, {}, 0.0, 10)})
        >>> lex.scores_of(["moon", "moon"], np.array([2019, 2020])).tolist()
        [0.1, 0.4]
        """
        if years is None or not self.held_out:
            return np.fromiter((self.score(t) for t in tokens), dtype=np.float64, count=len(tokens))
        pick = self.held_out.get
        return np.fromiter(
            ((pick(int(y)) or self).score(t) for t, y in zip(tokens, years)), dtype=np.float64, count=len(tokens)
        )

    def top(self, k: int = 10) -> dict[str, list[list]]:
        """The ``k`` highest and lowest scoring words with their scores and date counts."""
        ranked = sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0]))
        row = lambda w, s: [w, round(s, 6), int(self.n_dates.get(w, 0))]  # noqa: E731
        return {"highest": [row(w, s) for w, s in ranked[:k]], "lowest": [row(w, s) for w, s in ranked[::-1][:k]]}

    def info(self) -> dict:
        return {
            "label": self.label,
            "cross_fitted": {str(y): len(lex.scores) for y, lex in sorted(self.held_out.items())},
            "words": len(self.scores),
            "candidates": self.candidates,
            "min_dates": self.min_dates,
            "mean_label": self.mean_label,
            **self.top(),
        }


def lexicon_from_counts(counts: pd.DataFrame, mean_label: float, min_dates: int, label: str = "log_ratio") -> Lexicon:
    """The lexicon from per-word sums over distinct (word, stock-day) pairs.

    ``counts`` has ``word, label_sum, n, n_dates``: the sum and number of the labels of the
    word's stock-days and its number of distinct dates.

    >>> c = pd.DataFrame({"word": ["a", "b"], "label_sum": [3.0, 1.0], "n": [3, 1], "n_dates": [12, 1]})
    >>> lexicon_from_counts(c, 0.5, 10).scores
    {'a': 0.5}
    """
    kept = counts[counts["n_dates"] >= min_dates]
    means = (kept["label_sum"].to_numpy(np.float64) / kept["n"].to_numpy(np.float64)) - float(mean_label)
    words = kept["word"].astype(str).tolist()
    return Lexicon(
        scores=dict(zip(words, means.tolist())),
        n_dates=dict(zip(words, kept["n_dates"].astype(int).tolist())),
        mean_label=float(mean_label),
        min_dates=int(min_dates),
        candidates=len(counts),
        label=label,
    )


def fit_lexicon_reference(
    posts: Iterable[tuple[str, object, object, float]], mean_label: float, min_dates: int
) -> dict[str, float]:
    """The lexicon by a plain loop, as the seed builds it: for each word, the set of
    (stock, date) pairs it appears on and their labels. For the tests.

    ``posts`` yields ``(tokens, permno, date, label)``.

    >>> fit_lexicon_reference([("moon", 1, "d1", 1.0), ("moon moon", 1, "d1", 1.0), ("moon", 2, "d2", 0.0)], 0.0, 2)
    {'moon': 0.5}
    """
    seen: dict[str, dict[tuple, float]] = {}
    for tokens, permno, date, label in posts:
        for w in set(content_words(tokens)):
            seen.setdefault(w, {})[(permno, date)] = label
    out = {}
    for w, days in seen.items():
        if len({d for _, d in days}) >= min_dates:
            out[w] = sum(days.values()) / len(days) - mean_label
    return out


def label_rows(frame: pd.DataFrame, target: str, kind: str, har: Any) -> pd.DataFrame:
    """Kernel: ``permno, day, label`` of training rows (rows without a label dropped).

    >>> rows = pd.DataFrame({"permno": [1, 1], "day": [5, 6], "y_1": [2.0, 0.0], "vol_22": [1.0, 1.0]})
    >>> label_rows(rows, "y_1", "log_ratio", None).round(4).values.tolist()
    [[1.0, 5.0, 0.6931]]
    """
    y = frame[target].to_numpy(np.float64)
    vol = frame["vol_22"].to_numpy(np.float64)
    pred = None
    if kind == "har_residual":
        pred = har.predict_array(frame[list(HAR_COLUMNS)].to_numpy(np.float64))
    label = label_values(y, vol, pred, kind)
    out = frame[["permno", "day"]].reset_index(drop=True).assign(label=label)
    return out[np.isfinite(label)]


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


class LexiconSettings(Protocol):
    """``train.lexicon``: the label and the minimum number of distinct dates of a word."""

    label: str
    min_dates: int


@dataclass(frozen=True)
class LexiconFamily(FittedFamily):
    """The ``lexicon`` family: one column, the mean lexicon score of the stock-day's posts.

    >>> from types import SimpleNamespace
    >>> LexiconFamily("lexicon", "").configured(SimpleNamespace(label="log_ratio", min_dates=10)).columns()
    ['lexicon']
    """

    settings: LexiconSettings | None = None
    section: ClassVar[str | None] = "lexicon"

    def columns(self, available: Sequence[str] = ()) -> list[str]:
        return [self.name]

    def fit(self, posts: Posts, labels: Labels, backend: Backend, *, progress: bool = False) -> Lexicon:
        """The cross-fitted lexicon of the training posts (see the module docstring)."""
        from wsb_gpu.progress import compute

        p = self.settings_of()
        train = posts.frame
        nparts = max(train.npartitions, 1)
        lab = labels.rows.map_partitions(
            label_rows,
            labels.target,
            p.label,
            labels.har,
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
        per_day = per_day.assign(year=year_of(per_day["day"]))
        # Per (word, year): the lexicon of the whole window and the cross-fitted ones (each
        # training year scored by the lexicon of the other years) are sums of these rows.
        per_word = per_day.groupby(["word", "year"]).agg(
            {"sum": "sum", "count": "sum", "day": "count"}, split_out=nparts, shuffle_method="tasks"
        )
        lab_year = lab.assign(year=year_of(lab["day"])).groupby("year")["label"].agg(["sum", "count"])
        counts, by_year = compute(per_word.reset_index(), lab_year, label="train: lexicon", show=progress)
        counts = counts.rename(columns={"sum": "label_sum", "count": "n", "day": "n_dates"})
        return cross_fitted_lexicon(counts, by_year, p.min_dates, p.label)

    def score(self, state: Lexicon, posts: pd.DataFrame) -> dict[str, np.ndarray]:
        """A post's lexicon score (a training year's post by that year's held-out lexicon)."""
        tokens = posts["tokens"].astype("string").fillna("").tolist()
        years = posts["year"].to_numpy(np.int64) if tokens else None
        return {self.name: state.scores_of(tokens, years)}
