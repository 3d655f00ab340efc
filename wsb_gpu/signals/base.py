"""The family contract: what a feature family is, and what a fitted family does in a window.

A **family** is a named set of stock-day columns (:class:`Family`). There are two kinds:

* a **plain** family (:class:`PlainFamily`) names columns the features stage already wrote:
  the stock-day means of per-post columns of the ``embeddings`` or ``signals`` dataset (its
  ``source``), or columns the training sample derives (``attention``, no source). Its
  ``pattern`` matches its column names, per post and per stock-day alike; the features stage
  averages the per-post columns of its source that match it, and ``derive`` may add per-post
  columns computed from them (``p_net``, the VADER shares) that are averaged too.
* a **fitted** family (:class:`FittedFamily`) is fitted inside each rolling training window
  on the training years' posts only: :meth:`~FittedFamily.fit` learns a state from the
  training posts (:class:`Posts`) and labels (:class:`Labels`), :meth:`~FittedFamily.score`
  gives every post of the window its per-post values, which are summed per stock-day and
  turned into the family's columns by :meth:`~FittedFamily.finish` (by default: the mean over
  the stock-day's posts). Its settings are its own section of ``train`` (``train.lexicon`` …),
  handed over by the training task (:meth:`~FittedFamily.configured`).

The registry of every family is :data:`wsb_gpu.signals.families.FAMILIES`.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from wsb_gpu.errors import WsbError

if TYPE_CHECKING:
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd

    from wsb_gpu.backend import Array, Backend, Frame


@dataclass(frozen=True)
class Family(ABC):
    """A feature family: a name, what it measures, and the stock-day columns it gives."""

    name: str
    description: str

    fitted: ClassVar[bool] = False
    """Whether it is fitted inside each training window (:class:`FittedFamily`)."""

    @abstractmethod
    def columns(self, available: Sequence[str]) -> list[str]:
        """Its stock-day columns, given the columns of the run's sample (``available``)."""


@dataclass(frozen=True)
class PlainFamily(Family):
    """A family of columns the features stage wrote (or the sample derives); see the module
    docstring.

    Attributes
    ----------
    pattern
        A regular expression that matches its column names (``re.fullmatch``), per post in
        its source dataset and per stock-day in the features dataset (derived ones included).
    source
        The per-post dataset whose matching columns the features stage averages per stock-day
        (``"embeddings"`` or ``"signals"``); None for columns the training sample derives.
    key
        The order of its columns (a sort key); None keeps the order of the dataset.
    derive
        Per-post columns computed from its per-post columns (given as one float32 frame,
        pandas or cuDF), averaged like them: ``{name: 1-D array}``.

    >>> fam = PlainFamily("words", "mean words per post", pattern="n_words", source="signals")
    >>> fam.columns(["id", "n_words", "tokens"])
    ['n_words']
    """

    pattern: str = r"(?!)"
    source: str | None = None
    key: Callable[[str], Any] | None = None
    derive: Callable[[Frame], Mapping[str, Array]] | None = None

    def columns(self, available: Sequence[str]) -> list[str]:
        found = [c for c in available if re.fullmatch(self.pattern, c)]
        return sorted(found, key=self.key) if self.key is not None else found


@dataclass
class Posts:
    """The per-(stock, post) rows a fitted family reads, and where their embeddings are.

    ``frame`` is a lazy host (pandas) Dask frame with ``permno, day, year, id, tokens,
    vader_compound``: one row per link of a post to a stock-day (``day`` in days since 1970,
    ``year`` its calendar year).
    """

    frame: dd.DataFrame
    embeddings: Path | None = None

    def years(self, years: Sequence[int]) -> Posts:
        """The rows of the stock-days of ``years``."""
        return Posts(self.frame[self.frame["year"].isin(list(years))], self.embeddings)

    def embedding_columns(self) -> list[str]:
        """The embedding columns (``e000`` …) of the embeddings dataset (none without it)."""
        if self.embeddings is None:
            return []
        import pyarrow.dataset as ds

        names = ds.dataset(str(self.embeddings), format="parquet", exclude_invalid_files=True).schema.names
        return embedding_columns(names)

    def embeddings_frame(self) -> dd.DataFrame:
        """``id`` and the embedding columns of every post, as a lazy host frame."""
        import dask.dataframe as dd

        emb = dd.read_parquet(str(self.embeddings), columns=["id", *self.embedding_columns()])
        return emb.assign(id=emb["id"].astype("string"))

    def with_embeddings(self) -> dd.DataFrame:
        """The rows with their post's embedding columns (posts without one dropped)."""
        return self.frame.merge(self.embeddings_frame(), on="id", how="inner")


def embedding_columns(names: Sequence[str]) -> list[str]:
    """The embedding columns among ``names``, by number.

    >>> embedding_columns(["id", "e010", "e002", "p_negative"])
    ['e002', 'e010']
    """
    return sorted((c for c in names if c[:1] == "e" and c[1:].isdigit()), key=lambda c: int(c[1:]))


@dataclass
class Labels:
    """What a window's fitted family may learn from besides the posts: the training rows
    (a host Dask frame with ``permno, day``, the target, ``vol_22`` and the HAR terms), the
    target's name and the window's HAR fit (None when not fitted)."""

    rows: dd.DataFrame
    target: str
    har: Any = None


@dataclass(frozen=True)
class FittedFamily(Family):
    """A family fitted inside each rolling training window (see the module docstring).

    A subclass sets :attr:`section` when its settings are a section of ``train`` and
    :attr:`embeddings` when it reads the posts' embeddings, and implements :meth:`columns`,
    :meth:`fit` and :meth:`score` (and :meth:`finish` when its columns are not the means of
    its per-post values, :meth:`info` for what ``signals.json`` shows of a fitted state).
    Families that share one fitted model (``topics`` and ``topic_tone``) name the family that
    fits it as their :attr:`model`; that family's :meth:`outputs` are all of its columns.
    """

    settings: Any = None
    """Its own section of ``train`` (``train.lexicon`` …): see :meth:`configured`."""

    fitted: ClassVar[bool] = True
    section: ClassVar[str | None] = None
    """The section of ``train`` that holds its settings (None: it has none)."""
    embeddings: ClassVar[bool] = False
    """Whether it reads the posts' embeddings (the run then needs the embeddings dataset)."""

    @property
    def model(self) -> str:
        """The family whose fit gives this family's columns (itself unless shared)."""
        return self.name

    def configured(self, settings: Any) -> FittedFamily:
        """The same family with ``settings`` (its section of ``train``)."""
        return dataclasses.replace(self, settings=settings)

    @abstractmethod
    def columns(self, available: Sequence[str] = ()) -> list[str]:
        """Its stock-day columns (named by its settings; ``available`` is not needed)."""

    def outputs(self) -> list[str]:
        """Every stock-day column its fitted state gives (:meth:`finish`'s keys, in order)."""
        return self.columns()

    @abstractmethod
    def fit(self, posts: Posts, labels: Labels, backend: Backend, *, progress: bool = False) -> Any:
        """Learn the window's state from the training years' ``posts`` (and ``labels``)."""

    @abstractmethod
    def score(self, state: Any, posts: pd.DataFrame) -> dict[str, np.ndarray]:
        """Kernel: per-post values (float64, summed per stock-day) of a pandas partition of
        posts (the columns of :class:`Posts`, and ``e000`` … when :attr:`embeddings`)."""

    def finish(self, state: Any, sums: Mapping[str, np.ndarray], n_posts: np.ndarray) -> dict[str, np.ndarray]:
        """Kernel: the stock-day columns from the per-stock-day sums of :meth:`score`'s values
        and the number of posts; by default the means."""
        return {name: values / n_posts for name, values in sums.items()}

    def info(self, state: Any) -> dict[str, Any]:
        """What ``signals.json`` records of a fitted state (its ``info()`` when it has one)."""
        describe = getattr(state, "info", None)
        return dict(describe()) if callable(describe) else {}

    def settings_of(self) -> Any:
        """Its settings; a clear error when it was not configured."""
        if self.settings is None:
            msg = f"the {self.name} family has no settings; configure it with train.{self.section}"
            raise WsbError(msg)
        return self.settings
