"""Rolling-year windows and blocked folds: exact index sets, no shuffling, order-free."""

import numpy as np
import pytest

from wsb_gpu.errors import WsbError
from wsb_gpu.models.splits import BlockedTimeFolds, RollingYearSplit, month_period


def test_rolling_year_windows_follow_the_rule():
    years = np.repeat(np.arange(2012, 2021), 3)
    windows = RollingYearSplit(4).windows(years)
    assert [w[0] for w in windows] == list(range(2016, 2021))
    for test_year, train in windows:
        assert train == tuple(range(test_year - 4, test_year))
    for (tr, te), (test_year, train) in zip(RollingYearSplit(4).split(groups=years), windows):
        assert set(years[te]) == {test_year}
        assert set(years[tr]) == set(train)
        assert years[tr].max() < test_year


def test_rolling_split_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    years = rng.integers(2010, 2016, 200)
    perm = rng.permutation(200)
    a = [(set(tr), set(te)) for tr, te in RollingYearSplit(2).split(groups=years)]
    b = [({perm[i] for i in tr}, {perm[i] for i in te}) for tr, te in RollingYearSplit(2).split(groups=years[perm])]
    assert a == b


def test_blocked_folds_are_contiguous_and_cover_every_month():
    periods = month_period(np.repeat([2016, 2017, 2018, 2019], 12), np.tile(np.arange(1, 13), 4))
    blocks = BlockedTimeFolds(3).blocks(periods)
    assert [len(b) for b in blocks] == [16, 16, 16]
    flat = np.concatenate(blocks)
    assert (np.diff(flat) == 1).all() and flat.size == 48
    for tr, va in BlockedTimeFolds(3).split(groups=periods):
        assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 48
        assert np.all(np.diff(np.sort(periods[va])) == 1)


def test_bad_settings_give_one_line_errors():
    with pytest.raises(WsbError, match="cv_folds"):
        BlockedTimeFolds(1).blocks([1, 2, 3])
    with pytest.raises(WsbError, match="cannot cut"):
        BlockedTimeFolds(5).blocks([1, 2])
    with pytest.raises(WsbError, match="train_years"):
        RollingYearSplit(0).windows([2020])
