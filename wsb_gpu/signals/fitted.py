"""The fitted families inside one rolling window: fit on the training years, score every post
of the window, average per stock-day.

The per-post inputs are the links (which stock-day a post belongs to), the signals dataset
(the post's words and VADER compound) and, for the families that read them, the embeddings.
They are read as pandas partitions on both backends: words are host work, as the
tokenizer's are. Posts and stock-days are keyed by ``(permno, day)`` with ``day`` the trading
date as days since 1970 (an integer joins the same way in pandas and cuDF; dates do not).

For a window with training years ``T`` and test year ``Y``, given the fitted families asked
(objects of the registry, each with its own settings; :mod:`wsb_gpu.signals.base`):

1. :func:`fit_families` fits each of them on the posts of ``T`` only (``family.fit``): the
   lexicon from the labels of ``T``'s stock-days (cross-fitted: a training post is scored by
   the lexicon of the *other* training years, or its own label would be in its score), the
   TF-IDF vocabulary and IDF from ``T``'s posts, the topic model from a sample of ``T``'s
   posts. Nothing of ``Y`` is read.
2. :func:`family_columns_frame` scores every post of ``T`` and ``Y`` with what was fitted
   (``family.score``), sums per stock-day and finishes the sums into the family columns
   (``family.finish``: the means, the shares, the within-topic tone), which the training
   task joins to the window's rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from wsb_gpu.dates import day_number
from wsb_gpu.progress import Timings
from wsb_gpu.signals.base import FittedFamily, Labels, Posts
from wsb_gpu.signals.families import FAMILIES

if TYPE_CHECKING:
    from wsb_gpu.backend import Backend


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

    def window_posts(self, frame: dd.DataFrame | None = None) -> Posts:
        """The posts (``frame``, default :meth:`posts`) with where their embeddings are."""
        return Posts(self.posts() if frame is None else frame, self.embeddings)


def _with_day(frame: pd.DataFrame) -> pd.DataFrame:
    """``date`` (the trading date) replaced by ``day`` (days since 1970) and ``year``.

    >>> _with_day(pd.DataFrame({"date": pd.to_datetime(["1970-01-02", "2020-03-01"])}))[["day", "year"]].values.tolist()
    [[1, 1970], [18322, 2020]]
    """
    dates = frame["date"].astype("datetime64[s]")
    out = frame.drop(columns=["date"])
    return out.assign(day=day_number(dates).astype("int64"), year=dates.dt.year.astype("int64"))


@dataclass
class Fitted(Mapping[str, Any]):
    """What one window's fitted families learned: a mapping of family name to fitted state
    (``fitted["lexicon"]``), the families in the order they were fitted, and the seconds each
    fit took."""

    families: list[FittedFamily] = field(default_factory=list)
    states: dict[str, Any] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)

    def __getitem__(self, name: str) -> Any:
        return self.states[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.states)

    def __len__(self) -> int:
        return len(self.states)

    def columns(self) -> list[str]:
        """The stock-day columns of the window's fitted families, family by family."""
        return [c for fam in self.families for c in fam.outputs()]

    def info(self) -> dict[str, Any]:
        """Per family: what it learned (its ``info``) and the seconds its fit took."""
        return {
            fam.name: {**fam.info(self.states[fam.name]), "seconds": round(self.timings.get(fam.name, 0.0), 3)}
            for fam in self.families
        }


def fit_families(
    families: Sequence[FittedFamily], posts: Posts, labels: Labels, *, backend: Backend, progress: bool = False
) -> Fitted:
    """Fit each of ``families`` on ``posts``, the training years' posts (see the module
    docstring); ``labels`` holds the window's training rows."""
    fitted = Fitted()
    for fam in families:
        with fitted.timings.timed(fam.name):
            fitted.states[fam.name] = fam.fit(posts, labels, backend, progress=progress)
        fitted.families.append(fam)
    return fitted


def score_posts(frame: pd.DataFrame, fitted: Fitted) -> pd.DataFrame:
    """Kernel: per (stock, post) row, ``permno, day, _posts`` and the per-post values of every
    fitted family (as ``<family>:<value>``, float64), to be summed per stock-day and finished
    by :func:`finish_columns`."""
    out: dict[str, Any] = {
        "permno": frame["permno"].to_numpy(np.int64),
        "day": frame["day"].to_numpy(np.int64),
        "_posts": np.ones(len(frame)),
    }
    for fam in fitted.families:
        for name, values in fam.score(fitted[fam.name], frame).items():
            out[f"{fam.name}:{name}"] = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(out)


def finish_columns(sums: pd.DataFrame, fitted: Fitted) -> pd.DataFrame:
    """Kernel: per-stock-day sums -> ``permno, day`` and the family columns."""
    n = sums["_posts"].to_numpy(np.float64)
    out: dict[str, Any] = {"permno": sums["permno"].to_numpy(np.int64), "day": sums["day"].to_numpy(np.int64)}
    for fam in fitted.families:
        prefix = f"{fam.name}:"
        own = {c[len(prefix) :]: sums[c].to_numpy(np.float64) for c in sums.columns if c.startswith(prefix)}
        out.update(fam.finish(fitted[fam.name], own, n))
    return pd.DataFrame(out)


def family_columns_frame(fitted: Fitted, posts: Posts) -> dd.DataFrame:
    """The fitted family columns per stock-day of ``posts`` (the window's training and test
    years), as a lazy host frame keyed by ``permno, day``."""
    window = posts.with_embeddings() if any(f.embeddings for f in fitted.families) else posts.frame
    fit = dask.delayed(fitted, pure=True)
    scored_meta = score_posts(window._meta, fitted)
    scored = window.map_partitions(score_posts, fit, meta=scored_meta)
    sums = (
        scored.groupby(["permno", "day"])
        .sum(split_out=max(scored.npartitions, 1), shuffle_method="tasks")
        .reset_index()
    )
    return sums.map_partitions(finish_columns, fit, meta=finish_columns(scored_meta, fitted))


def families_asked(sets: Sequence[Any]) -> list[str]:
    """The fitted families to fit for the feature sets: each family's model (``topics`` for
    either topic family), in the registry's order.

    >>> from wsb_gpu.signals.families import FeatureSet
    >>> families_asked([FeatureSet("a", ("topic_tone", "lexicon", "vader"), ())])
    ['topics', 'lexicon']
    """
    fams = [FAMILIES[f] for s in sets for f in s.fitted]
    asked = {f.model for f in fams if isinstance(f, FittedFamily)}
    return [name for name in FAMILIES if name in asked]


def window_info(fitted: Mapping[int, Fitted]) -> dict[str, Any]:
    """``signals.json``: per test year, what each fitted family learned."""
    return {str(year): f.info() for year, f in sorted(fitted.items())}
