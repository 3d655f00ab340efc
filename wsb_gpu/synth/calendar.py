"""The synthetic trading calendar: weekdays minus a fixed, rule-based NYSE holiday list.

The rules are the exchange's regular full-day holidays (New Year's Day, Martin Luther King
Jr. Day, Washington's Birthday, Good Friday, Memorial Day, Juneteenth from 2022,
Independence Day, Labor Day, Thanksgiving, Christmas) with the usual weekend
observance (Saturday -> Friday before, Sunday -> Monday after; a New Year's Day on a
Saturday is not observed). One-off closures (2012 hurricane Sandy, national days of
mourning) are deliberately left out: the calendar must be a pure function of the dates
so that every run and machine agrees on it.

Sessions open at 09:30 and close at 16:00 New York time, 13:00 on the exchange's regular
early-close days (the day after Thanksgiving, and 3 July and 24 December when they fall on
Monday to Thursday); :func:`sessions_utc` turns them into UTC instants with ``zoneinfo``, so
daylight saving time is handled (a session is 13:30-20:00 UTC in summer, 14:30-21:00 in
winter).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np

NEW_YORK = ZoneInfo("America/New_York")
OPEN_LOCAL = dt.time(9, 30)
CLOSE_LOCAL = dt.time(16, 0)
EARLY_CLOSE_LOCAL = dt.time(13, 0)


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


def early_closes(year: int) -> list[dt.date]:
    """The regular 13:00 early closes of one year (sorted).

    The day after Thanksgiving always; 3 July and 24 December when they fall on Monday to
    Thursday (on a Friday they are the observed holiday; at weekends there is no session).
    One-off early closes are left out, like one-off closures.

    >>> [d.isoformat() for d in early_closes(2019)]
    ['2019-07-03', '2019-11-29', '2019-12-24']
    >>> [d.isoformat() for d in early_closes(2015)]   # 3 July 2015 was a Friday: the holiday
    ['2015-11-27', '2015-12-24']
    """
    out = [_nth_weekday(year, 11, 3, 4) + dt.timedelta(days=1)]
    out += [d for d in (dt.date(year, 7, 3), dt.date(year, 12, 24)) if d.weekday() <= 3]
    return sorted(out)


def _utc_seconds(day: dt.date, at: dt.time) -> int:
    return int(dt.datetime.combine(day, at, tzinfo=NEW_YORK).timestamp())


def sessions_utc(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Open and close of each trading day as UTC epoch seconds (int64 arrays).

    09:30 and 16:00 New York time (13:00 on :func:`early_closes`), converted with the
    ``zoneinfo`` rules of America/New_York.

    >>> o, c = sessions_utc(np.array(["2019-07-01", "2019-07-03", "2019-12-02"], dtype="datetime64[D]"))
    >>> [dt.datetime.fromtimestamp(int(x), dt.timezone.utc).strftime("%H:%M") for x in (*o, *c)]
    ['13:30', '13:30', '14:30', '20:00', '17:00', '21:00']
    """
    dates = [dt.date.fromisoformat(str(d)) for d in days]
    early = {d for y in {d.year for d in dates} for d in early_closes(y)}
    opens = np.array([_utc_seconds(d, OPEN_LOCAL) for d in dates], dtype=np.int64)
    closes = np.array(
        [_utc_seconds(d, EARLY_CLOSE_LOCAL if d in early else CLOSE_LOCAL) for d in dates], dtype=np.int64
    )
    return opens, closes
