"""The synthetic trading calendar: weekdays minus a fixed, rule-based NYSE holiday list.

The rules are the exchange's regular full-day holidays (New Year's Day, Martin Luther King
Jr. Day, Washington's Birthday, Good Friday, Memorial Day, Juneteenth from 2022,
Independence Day, Labor Day, Thanksgiving, Christmas) with the usual weekend
observance (Saturday -> Friday before, Sunday -> Monday after; a New Year's Day on a
Saturday is not observed). One-off closures (2012 hurricane Sandy, national days of
mourning) are deliberately left out: the calendar must be a pure function of the dates
so that every run and machine agrees on it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np


def easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm).

    >>> easter(2019), easter(2021)
    (datetime.date(2019, 4, 21), datetime.date(2021, 4, 4))
    """
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l = (32 + 2 * e + 2 * i - h - k) % 7  # noqa: E741 (the algorithm's own name)
    m = (a + 11 * h + 22 * l) // 451
    month, day = divmod(h + l - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """n-th (1-based; -1 = last) given weekday (Mon=0) of a month."""
    if n > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: dt.date) -> dt.date:
    if day.weekday() == 5:
        return day - dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + dt.timedelta(days=1)
    return day


def holidays(year: int) -> list[dt.date]:
    """The exchange holidays of one year under the fixed rules above (sorted).

    >>> [d.isoformat() for d in holidays(2019)][:4]
    ['2019-01-01', '2019-01-21', '2019-02-18', '2019-04-19']
    >>> dt.date(2021, 12, 31) in holidays(2022)  # New Year 2022 on a Saturday: not observed
    False
    """
    out = []
    new_year = dt.date(year, 1, 1)
    if new_year.weekday() != 5:
        out.append(_observed(new_year))
    out += [
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        easter(year) - dt.timedelta(days=2),  # Good Friday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _observed(dt.date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed(dt.date(year, 12, 25)),  # Christmas
    ]
    if year >= 2022:
        out.append(_observed(dt.date(year, 6, 19)))  # Juneteenth
    return sorted(d for d in out if d.year == year)


def trading_days(start: dt.date, end: dt.date) -> np.ndarray:
    """Trading dates in ``[start, end]`` as ``datetime64[D]`` (weekdays minus holidays).

    >>> days = trading_days(dt.date(2019, 12, 23), dt.date(2020, 1, 3))
    >>> [str(d) for d in days]
    ['2019-12-23', '2019-12-24', '2019-12-26', '2019-12-27', '2019-12-30', '2019-12-31', '2020-01-02', '2020-01-03']
    """
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday (3)
    hol = np.array(
        [np.datetime64(h, "D") for y in range(start.year, end.year + 1) for h in holidays(y)],
        dtype="datetime64[D]",
    )
    keep = (weekday < 5) & ~np.isin(days, hol)
    return days[keep]
