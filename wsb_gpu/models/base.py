"""The contract every model family follows, and the rolling window it is fitted on.

A model is a small class with the scikit-learn shape (it is a scikit-learn
``BaseEstimator``): ``__init__`` takes the feature set and the model's hyperparameters as
keywords and stores them unchanged under the same names, :meth:`Model.fit` learns from one
:class:`Window` and returns ``self`` (learned state ends in ``_``), :meth:`Model.predict`
scores a partition of the sample. ``get_params()`` lists the feature set and the
hyperparameters and ``sklearn.base.clone(model)`` gives an unfitted copy. The training stage
is a loop over (window, model) and needs to know nothing else about a model; adding one is
a new class plus an entry in :data:`wsb_gpu.models.MODELS`.

A model never reads the settings: it declares where its hyperparameters come from
(:attr:`Model.sections`, :attr:`Model.settings`) and
:func:`wsb_gpu.training.build.make_model` passes it those values, and only those.

A :class:`Window` gives a model its training data in the form it wants: the per-month
sufficient statistics of the ``stats`` engine (no pass over the rows), the window's rows
collected once (the ``estimator`` engine; shared by every model of the window), or the lazy
Dask frame itself (XGBoost, which can train where the partitions live).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from wsb_gpu.backend import Backend, array_namespace, matrix, to_numpy, to_pandas
from wsb_gpu.models.moments import LinearFit, Moments, sum_moments
from wsb_gpu.models.splits import period_year

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client

    from wsb_gpu.backend import Array, Frame
    from wsb_gpu.signals.families import FeatureSet


@dataclass
class Sample:
    """The rows every model of a run is fitted and scored on (a lazy Dask frame).

    Attributes
    ----------
    ddf
        Dask frame with the features, the target, ``year`` and ``period`` (month) columns.
    target
        The target column.
    har_columns
        The HAR regressors.
    feature_columns
        Every feature column (HAR first), in the order of the design matrix.
    source, sample
        Where the rows come from (``features`` / ``volatility``) and which rows
        (``posts``, ``all``, ``panel``).
    """

    ddf: dd.DataFrame
    target: str
    har_columns: list[str]
    feature_columns: list[str]
    source: str
    sample: str


@dataclass
class Window:
    """One rolling window: test year, training years and the ways to read its data.

    Attributes
    ----------
    test_year, train_years
        The year forecast and the years the models learn from.
    sample
        The run's sample.
    months
        ``{month period: Moments}`` of the training months, over :attr:`stat_columns`
        plus the target (all features with the ``stats`` engine, the HAR block otherwise).
    test_months
        The same for the test year's months.
    stat_columns
        The columns of those moments (without the target).
    engine
        ``stats`` (fit from the moments) or ``estimator`` (fit on the collected rows).
    floor
        The smallest forecast QLIKE scores (``train.forecast_floor`` x the training mean of
        the target); log-HAR takes logs at it.
    backend, client
        Where to compute.
    train_end
        The last month period whose rows the models learn from (None: every month of the
        training years). With an ``h``-day target the last training rows' targets reach into
        the test year, so the window ends :func:`gap_months` months before it; the rows of
        those months are left out of the moments, the collected rows, and the histories'
        targets (their features still feed the sequences).
    cv_gap
        Months left out of a CV fold's training part before its validation block, for the
        same reason (:class:`~wsb_gpu.models.splits.BlockedTimeFolds`).
    """

    test_year: int
    train_years: tuple[int, ...]
    sample: Sample
    months: Mapping[int, Moments]
    test_months: Mapping[int, Moments]
    stat_columns: list[str]
    engine: str
    backend: Backend
    client: Client | None = None
    frame: dd.DataFrame | None = None
    columns: list[str] | None = None
    floor: float = float("nan")
    train_end: int | None = None
    cv_gap: int = 0
    _rows: Any = field(default=None, repr=False)
    _year_rows: dict = field(default_factory=dict, repr=False)
    _history: Any = field(default=None, repr=False)

    @property
    def data(self) -> dd.DataFrame:
        """The rows the window's models read: the window's own frame (its fitted family
        columns joined, training and test years only), else the run's sample."""
        return self.frame if self.frame is not None else self.sample.ddf

    def learnable(self, frame: Any) -> Any:
        """The rows of ``frame`` (a Dask frame with ``year`` and ``period``) a model may learn
        from or be tested on: the training years up to :attr:`train_end`, and the test year."""
        rows = frame[frame["year"].isin([*self.train_years, self.test_year])]
        if self.train_end is None:
            return rows
        return rows[(rows["period"] <= self.train_end) | (rows["year"] == self.test_year)]

    @property
    def feature_columns(self) -> list[str]:
        """Every feature column of the window (the sample's, then the fitted families')."""
        return list(self.columns) if self.columns is not None else list(self.sample.feature_columns)

    def moments(self, columns: Sequence[str]) -> Moments:
        """The training window's moments of ``[columns…, target]``: each month's columns
        selected, then summed in time order."""
        ix = self.index(columns)
        return sum_moments(self.months[p].select(ix) for p in sorted(self.months))

    def test_moments(self, columns: Sequence[str]) -> Moments:
        """The test year's moments of ``[columns…, target]`` (summed, then selected)."""
        total = sum_moments(self.test_months[p] for p in sorted(self.test_months))
        return total if list(columns) == self.stat_columns else total.select(self.index(columns))

    def index(self, columns: Sequence[str]) -> list[int]:
        """Positions of ``columns`` and the target in the window's moments."""
        return [self.stat_columns.index(c) for c in columns] + [len(self.stat_columns)]

    @property
    def n_train(self) -> int:
        """Training rows of the window (counted by the statistics pass)."""
        return int(sum(m.n for m in self.months.values()))

    @property
    def xp(self) -> Any:
        """The array module the driver solves with (CuPy on the GPU backend)."""
        return self.backend.xp

    def year_rows(self, years: Sequence[int], columns: Sequence[str]) -> tuple[Any, Any]:
        """``(X float32, y)`` of the window's rows in ``years`` with ``columns``: every feature
        column is collected once per set of years and kept, so the models fitted on several
        feature sets (XGBoost) collect the rows once per window, not once per set."""
        key = tuple(int(y) for y in years)
        cache = self._year_rows
        if key not in cache:
            S, data, cols = self.sample, self.data, self.feature_columns
            rows = self.learnable(data)
            part = _in_key_order(rows[rows["year"].isin(list(key))][["permno", "day", *cols, S.target]].compute())
            cache[key] = (matrix(part, cols).astype("float32"), matrix(part, [S.target])[:, 0])
        X, y = cache[key]
        all_cols = self.feature_columns
        if list(columns) == all_cols:
            return X, y
        xp = array_namespace(X)
        return xp.take(X, xp.asarray([all_cols.index(c) for c in columns]), axis=1), y

    def rows(self, columns: Sequence[str] | None = None) -> tuple[Any, Any, np.ndarray]:
        """``(X, y, periods)`` of the training rows; ``X`` holds ``columns`` (default: every
        feature column). The rows are collected from the workers once per window and shared
        by the models that fit on rows."""
        if self._rows is None:
            S = self.sample
            cols = self.feature_columns
            data = self.data
            rows = self.learnable(data)
            part = rows[rows["year"].isin(list(self.train_years))][["permno", "day", *cols, S.target, "period"]]
            part = _in_key_order(part.compute())
            X = matrix(part, cols)
            y = matrix(part, [S.target])[:, 0]
            periods = np.asarray(to_numpy(part["period"].values), dtype=np.int64)
            self._rows = (X, y, periods)
        X, y, periods = self._rows
        if columns is None or list(columns) == self.feature_columns:
            return X, y, periods
        all_cols = self.feature_columns
        xp = array_namespace(X)
        return xp.take(X, xp.asarray([all_cols.index(c) for c in columns]), axis=1), y, periods

    def history(self, columns: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """The training and test years' rows of every stock, in time order, for the models
        that read a stock's past rows (:mod:`wsb_gpu.models.sequence`).

        The rows (``permno, day, year``, ``columns`` and the target only) are collected once
        per window, moved to the host and kept: a later call whose columns are among the kept
        ones reads them from that copy (the three sequence models share one collection).

        Returns
        -------
        keys : pandas.DataFrame
            ``permno, day, year`` (int64) of the ``n`` rows, sorted by ``(permno, day)``,
            index ``0 … n-1``.
        X : (n, len(columns)) float32 NumPy array
            The columns, NaN where missing.
        y : (n,) float64 NumPy array
            The target.
        """
        cols = list(columns)
        kept = self._history
        if kept is None or not set(cols) <= set(kept[1]):
            have = list(kept[1]) if kept is not None else []
            need = have + [c for c in cols if c not in have]
            data, target = self.data, self.sample.target
            years = [*self.train_years, self.test_year]
            part = data[data["year"].isin(years)][["permno", "day", "year", "period", *need, target]].compute()
            part = to_pandas(part).sort_values(["permno", "day"]).reset_index(drop=True)
            keys = part[["permno", "day", "year"]].astype("int64")
            X = part[need].to_numpy(dtype="float32", na_value=np.nan)
            y = part[target].to_numpy(dtype="float64", na_value=np.nan)
            if self.train_end is not None:  # targets not yet known at the end of the window
                gap = (part["period"].to_numpy() > self.train_end) & (part["year"].to_numpy() != self.test_year)
                y[gap] = np.nan
            kept = self._history = (keys, need, X, y)
        keys, have, X, y = kept
        if cols == have:
            return keys, X, y
        return keys, X[:, [have.index(c) for c in cols]], y


def gap_months(horizon: int) -> int:
    """Months to leave out at the end of a training window (and before a CV block) for an
    ``horizon``-day target: every month has at least 19 sessions, so the rows whose target
    reaches past the window all fall in the last ``ceil((horizon - 1) / 19)`` months.

    >>> [gap_months(h) for h in (1, 5, 22, 63)]
    [0, 1, 2, 4]
    """
    return -(-(int(horizon) - 1) // 19)


def target_horizon(target: str) -> int:
    """The days a target spans (``y_22`` -> 22).

    >>> target_horizon("y_1"), target_horizon("y_63")
    (1, 63)
    """
    return int(target.rsplit("_", 1)[1])


def _in_key_order(part: Frame) -> Frame:
    """Collected rows sorted by ``(permno, day)`` (unique per stock-day): the order in which a shuffle delivers a
    window's partitions varies from run to run, and a fit on rows (XGBoost's quantile sketch,
    an iterative solver) should not."""
    return part.sort_values(["permno", "day"]).reset_index(drop=True)


def in_years(table: Mapping[int, Moments], years: Sequence[int]) -> dict[int, Moments]:
    """The months of ``table`` that fall in ``years``."""
    return {p: m for p, m in table.items() if period_year(p) in years}


class Model(BaseEstimator, ABC):
    """Base class of the model families (see the module docstring).

    Subclasses set the class attributes, take their hyperparameters as keyword-only
    ``__init__`` parameters (stored unchanged) and implement :meth:`fit` and
    :meth:`predict_array`.

    Attributes
    ----------
    name
        The name in ``train.models``, ``metrics.csv`` and the ``yhat_<name>`` column.
    sections
        The sections of ``train`` whose values are the model's hyperparameters (``("ridge",)``:
        ``train.ridge.*``); where two sections share a key, the later one's value is taken.
    settings
        Top-level ``train`` keys that are hyperparameters too (``("forecast_floor",)``).
    uses_feature_sets
        False for a model fitted once per window whatever the feature sets (HAR, log-HAR).
    predicts_by_key
        True for a model that forecasts the test rows during :meth:`fit` and looks them up by
        ``(permno, day)`` (:meth:`predict_frame`).

    Of the declared settings a model receives those that are keyword-only parameters of its
    ``__init__`` (:meth:`hyperparameters`), nothing else.
    """

    name: ClassVar[str]
    sections: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[str, ...]] = ()
    uses_feature_sets: ClassVar[bool] = True
    predicts_by_key: ClassVar[bool] = False

    def __init__(self, feature_set: FeatureSet | None = None) -> None:
        self.feature_set = feature_set

    @classmethod
    def hyperparameters(cls) -> tuple[str, ...]:
        """The names of the model's hyperparameters: the keyword-only parameters of its
        ``__init__`` (every parameter but ``feature_set``)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)

    def columns(self, window: Window) -> list[str]:
        """The feature columns the model reads: the HAR terms and its feature set's columns
        (every feature of the window when it has no set)."""
        if self.feature_set is None:
            return window.feature_columns
        har = list(window.sample.har_columns)
        return har + [c for c in self.feature_set.columns if c not in har]

    def _start(self, window: Window) -> None:
        """Record what every fit records: the columns and the window's years."""
        self.columns_ = self.columns(window)
        self.test_year_ = window.test_year

    @abstractmethod
    def fit(self, window: Window) -> Model:
        """Learn from the window's training years; return ``self``."""

    @abstractmethod
    def predict_array(self, X: Array) -> Any:
        """Predictions for a float64 NumPy/CuPy matrix of :meth:`columns`."""

    def predict(self, frame: Frame) -> Any:
        """Predictions for a pandas/cuDF partition holding :meth:`columns`."""
        return self.predict_array(matrix(frame, self.columns_))

    def predict_frame(self, frame: Frame) -> Any:
        """Predictions for a partition of the test year's rows (``permno``, ``day`` and the
        feature columns), aligned with its rows.

        The prediction pass calls this for the models with ``predicts_by_key = True``, which
        forecast every test row during :meth:`fit` (from each stock's history) and look the
        rows up by ``(permno, day)``: they return a float64 NumPy array, NaN where they have
        no forecast. The default is :meth:`predict`.
        """
        return self.predict(frame)

    def test_sse(self, window: Window) -> tuple[float, int] | None:
        """The exact test-year squared error and row count, when the model can tell them
        without predicting row by row (linear models on the ``stats`` engine); else None."""
        return None

    def info(self) -> dict[str, Any]:
        """What the fit chose, for ``metrics.json`` (λ, CV errors, rounds …)."""
        return {}

    @property
    def linear(self) -> LinearFit | None:
        """The fitted linear predictor (coefficients, scaler, λ), for linear models."""
        return None

    @property
    def lam(self) -> float:
        """The penalty the fit chose (NaN for models without one)."""
        return float("nan")
