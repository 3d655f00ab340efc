"""Time splits: rolling years for evaluation, contiguous blocks for cross-validation.

Both splitters follow scikit-learn's splitter contract (``split(X, y, groups)`` yields
``(train_index, test_index)`` pairs of integer positions) and never shuffle. The time
label of a row is passed as ``groups``: the calendar year of the row's date for
:class:`RollingYearSplit`, the month period (:func:`month_period`) for
:class:`BlockedTimeFolds`. Because they work from labels, not row positions, the splits
do not depend on the order of the rows.

The same rules are also exposed on the labels alone (:meth:`RollingYearSplit.windows`,
:meth:`BlockedTimeFolds.blocks`), which is what the sufficient-statistics ridge engine
uses: it holds statistics per month, not rows, and assembles every window and fold from
them. Both engines therefore see exactly the same rows in every window and fold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from wsb_gpu.errors import WsbError


def month_period(year: Any, month: Any) -> Any:
    """Integer month label ``12 * year + (month - 1)``: consecutive months differ by one.

    >>> int(month_period(2020, 12)) + 1 == int(month_period(2021, 1))
    True
    """
    return year * 12 + (month - 1)


def period_year(period: Any) -> Any:
    """The calendar year of a :func:`month_period` label.

    >>> int(period_year(month_period(2019, 12)))
    2019
    """
    return period // 12


class RollingYearSplit:
    """Train on ``train_years`` calendar years, test on the next one, for every year.

    For each test year ``Y`` the training rows are those whose year lies in
    ``Y - train_years … Y - 1``; test years run from the first year present plus
    ``train_years`` to the last year present.

    Parameters
    ----------
    train_years
        Length of the training window in years.

    Examples
    --------
    >>> years = np.array([2015, 2016, 2017, 2018, 2018, 2019])
    >>> [(int(y), list(tr)) for y, tr in RollingYearSplit(2).windows(years)]
    [(2017, [2015, 2016]), (2018, [2016, 2017]), (2019, [2017, 2018])]
    >>> [(tr.tolist(), te.tolist()) for tr, te in RollingYearSplit(3).split(groups=years)]
    [([0, 1, 2], [3, 4]), ([1, 2, 3, 4], [5])]
    """

    def __init__(self, train_years: int = 4) -> None:
        self.train_years = train_years

    def _check(self) -> int:
        k = int(self.train_years)
        if k < 1:
            msg = f"train_years must be at least 1, got {self.train_years!r}; pass --train-years 4 (the seed's window)"
            raise WsbError(msg)
        return k

    def windows(self, years: Sequence[int] | np.ndarray) -> list[tuple[int, tuple[int, ...]]]:
        """``(test_year, training_years)`` for every test year, from the years present."""
        k = self._check()
        present = np.unique(np.asarray(years, dtype=np.int64))
        if present.size == 0:
            return []
        first, last = int(present[0]), int(present[-1])
        return [(y, tuple(range(y - k, y))) for y in range(first + k, last + 1)]

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self.windows(groups))

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_index, test_index)`` per test year; ``groups`` = year of each row.

        A test year without rows is skipped (the window list is still the one of
        :meth:`windows`).
        """
        if groups is None:
            msg = "RollingYearSplit.split needs groups= the calendar year of each row; pass groups=years"
            raise WsbError(msg)
        years = np.asarray(groups, dtype=np.int64)
        for test_year, train in self.windows(years):
            test = np.flatnonzero(years == test_year)
            if test.size == 0:
                continue
            yield np.flatnonzero((years >= train[0]) & (years <= train[-1])), test


class BlockedTimeFolds:
    """K-fold cross-validation whose folds are contiguous blocks of months, never shuffled.

    The distinct month periods of the training rows are sorted and cut into
    ``n_splits`` contiguous runs of (almost) equal numbers of months
    (``numpy.array_split``); fold ``k`` validates on block ``k`` and trains on the other
    blocks. Cutting at month boundaries is what lets the sufficient-statistics engine
    assemble any fold from per-month statistics.

    With ``gap`` months (a target spanning several days), a fold's training part also leaves
    out the ``gap`` months before its validation block: their rows' targets reach into the
    block (:func:`~wsb_gpu.models.base.gap_months`).

    Parameters
    ----------
    n_splits
        Number of blocks (folds), at least 2.
    gap
        Months purged before each validation block from that fold's training part.

    Examples
    --------
    >>> periods = np.array([5, 1, 2, 2, 3, 4])
    >>> [b.tolist() for b in BlockedTimeFolds(2).blocks(periods)]
    [[1, 2, 3], [4, 5]]
    >>> [(tr.tolist(), te.tolist()) for tr, te in BlockedTimeFolds(2).split(groups=periods)]
    [([0, 5], [1, 2, 3, 4]), ([1, 2, 3, 4], [0, 5])]
    >>> [(tr.tolist(), te.tolist()) for tr, te in BlockedTimeFolds(2, gap=1).split(groups=periods)]
    [([0, 5], [1, 2, 3, 4]), ([1, 2, 3], [0, 5])]
    """

    def __init__(self, n_splits: int = 3, gap: int = 0) -> None:
        self.n_splits = n_splits
        self.gap = gap

    def purged(self, blocks: Sequence[np.ndarray], k: int) -> np.ndarray:
        """The months left out of fold ``k``'s training part: its block and the :attr:`gap`
        months before the block.

        >>> BlockedTimeFolds(2, gap=2).purged([np.array([1, 2]), np.array([3, 4])], 1).tolist()
        [1, 2, 3, 4]
        """
        block = np.asarray(blocks[k], dtype=np.int64)
        first = int(block.min())
        before = np.arange(first - int(self.gap), first, dtype=np.int64)
        return np.union1d(before, block)

    def blocks(self, periods: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """The month periods of each block, in time order."""
        k = int(self.n_splits)
        present = np.unique(np.asarray(periods, dtype=np.int64))
        if k < 2:
            msg = f"cv_folds must be at least 2, got {self.n_splits!r}; set train.ridge.cv_folds: 3"
            raise WsbError(msg)
        if present.size < k:
            msg = (
                f"cannot cut {present.size} month(s) of training data into {k} time blocks; "
                "lower train.ridge.cv_folds or use more training years"
            )
            raise WsbError(msg)
        return list(np.array_split(present, k))

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return int(self.n_splits)

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_index, validation_index)``; ``groups`` = month period of each row."""
        if groups is None:
            msg = "BlockedTimeFolds.split needs groups= the month period of each row (see month_period)"
            raise WsbError(msg)
        periods = np.asarray(groups, dtype=np.int64)
        blocks = self.blocks(periods)
        for k, block in enumerate(blocks):
            held = np.isin(periods, block)
            out = np.isin(periods, self.purged(blocks, k)) if self.gap else held
            yield np.flatnonzero(~out), np.flatnonzero(held)
