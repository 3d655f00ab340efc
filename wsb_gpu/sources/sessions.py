"""When a post counts: the NYSE sessions, their cutoffs, and each post's forecast day.

The row of trading day *t* forecasts the volatility of the close-*t* → close-*t+1* return,
so its forecast is made at the close of session *t* and may use only the posts created up to
that close. A post therefore counts for the **first NYSE session whose cutoff is at or after
the post's instant** (``links.cutoff``):

* ``close`` (default): the session's close from the exchange calendar, 16:00 America/New_York
  (EST or EDT, as the date has it), 13:00 on early-close days; weekends, holidays and one-off
  closures (2012-10-29/30 Hurricane Sandy, 2018-12-05 national day of mourning) are no
  sessions, so their posts go to the next one;
* ``"HH:MM"`` (e.g. ``"15:45"``): that New York time on each session's date, or its close when
  the close is earlier (an early-close day): the forecast is made a little before the close,
  as a trader who must act at the close would (execution realism);
* ``utc_day``: the end of the post's UTC calendar day, whether or not the market is open
  (the seed project's rule). **Look-ahead**: a post made after the close (16:00–20:00 New
  York time in summer, 16:00–19:00 in winter) counts for the forecast of that day's close,
  although it was written inside the period whose return is the target.

The links stage then gives each post the stock's first trading row on or after that day.

A rule becomes a :class:`CutoffTable`: the cutoff instants (UTC seconds, increasing) of every
session (or UTC day) over the posts' range and the day number each stands for. It is built
once per run (:func:`cutoff_table`, a few thousand rows) and dating the posts is one sorted
search per partition (:func:`cutoff_day`, array API: NumPy and CuPy alike).

The exchange calendar is ``exchange-calendars`` (``XNYS``): maintained, with the NYSE's
early closes and one-off closures. ``pandas-market-calendars`` (its ``NYSE`` calendar) was
the alternative considered: it depends on ``exchange-calendars`` itself and adds
market-hours machinery this stage does not use, so the direct dependency is the smaller one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from wsb_gpu.backend import array_namespace
from wsb_gpu.dates import SECONDS_PER_DAY
from wsb_gpu.errors import WsbError, missing_package

if TYPE_CHECKING:
    from wsb_gpu.backend import Array

CLOSE = "close"
UTC_DAY = "utc_day"
NEW_YORK = "America/New_York"
CALENDAR = "XNYS"
_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
# Sessions looked up beyond the last post's date: longer than any NYSE closure since 1933
# (the longest, 11-14 September 2001, is four sessions).
_MARGIN_DAYS = 31


def parse_cutoff(value: Any) -> str:
    """The cutoff setting in its canonical form: ``close``, ``utc_day`` or ``HH:MM``.

    A YAML 1.1 reader turns an unquoted ``15:45`` into the sexagesimal integer 945; that
    integer is read back as the time it was written as.

    >>> parse_cutoff("close"), parse_cutoff("9:30"), parse_cutoff(945), parse_cutoff("utc_day")
    ('close', '09:30', '15:45', 'utc_day')
    >>> parse_cutoff("16:60")
    Traceback (most recent call last):
    ...
    wsb_gpu.errors.WsbError: cutoff '16:60' is not close, utc_day or a New York time HH:MM such as '15:45'
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        value = f"{value // 60}:{value % 60:02d}"
    text = str(value).strip()
    if text in (CLOSE, UTC_DAY):
        return text
    match = _HHMM.fullmatch(text)
    if match is None:
        msg = f"cutoff {value!r} is not {CLOSE}, {UTC_DAY} or a New York time HH:MM such as '15:45'"
        raise WsbError(msg)
    return f"{int(match[1]):02d}:{match[2]}"


def describe(cutoff: str) -> str:
    """The rule in words, for the manifest and the summary line.

    >>> describe("close")
    'the NYSE close (16:00 New York, 13:00 on early-close days)'
    >>> describe("15:45")
    '15:45 New York time, or the NYSE close when earlier'
    """
    cutoff = parse_cutoff(cutoff)
    if cutoff == CLOSE:
        return "the NYSE close (16:00 New York, 13:00 on early-close days)"
    if cutoff == UTC_DAY:
        return "the end of the post's UTC day (look-ahead: counts posts made after the close)"
    return f"{cutoff} New York time, or the NYSE close when earlier"


@dataclass(frozen=True)
class CutoffTable:
    """The cutoff instants of one rule and the day each stands for.

    Attributes
    ----------
    cutoff
        The rule (``close``, ``HH:MM`` or ``utc_day``).
    instants
        int64 UTC seconds, strictly increasing: a post created at or before ``instants[i]``
        (and after ``instants[i-1]``) counts for day ``days[i]``.
    days
        int64 day numbers (days since 1970-01-01) of the sessions (or UTC days).
    """

    cutoff: str
    instants: np.ndarray
    days: np.ndarray

    @classmethod
    def empty(cls, cutoff: str = CLOSE) -> CutoffTable:
        """A table with no session: every post is undated (for empty inputs and metadata)."""
        return cls(cutoff, np.zeros(0, np.int64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.instants.shape[0])


def _seconds(stamps: Any) -> np.ndarray:
    """UTC seconds (int64) of tz-aware pandas timestamps, whatever their unit."""
    import pandas as pd

    return np.asarray((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1), dtype=np.int64)


def nyse_sessions(first_day: int, last_day: int) -> tuple[np.ndarray, np.ndarray]:
    """The NYSE sessions with a date in ``[first_day, last_day]`` (day numbers): their day
    numbers and their closes (UTC seconds), from ``exchange-calendars``' ``XNYS``.

    >>> days, closes = nyse_sessions(17867, 17873)  # 2018-12-03 .. 2018-12-09
    >>> [str(np.datetime64(int(d), "D")) for d in days]  # 2018-12-05 closed (mourning for G. H. W. Bush)
    ['2018-12-03', '2018-12-04', '2018-12-06', '2018-12-07']
    >>> str(np.datetime64(int(closes[0]), "s"))  # 16:00 EST
    '2018-12-03T21:00:00'
    """
    import pandas as pd

    try:
        import exchange_calendars
    except ImportError as e:
        raise missing_package(
            "exchange-calendars", "pip install exchange-calendars", "dating posts by the NYSE close"
        ) from e
    start = dt.date(1970, 1, 1) + dt.timedelta(days=int(first_day))
    end = dt.date(1970, 1, 1) + dt.timedelta(days=int(last_day))
    try:
        calendar = exchange_calendars.get_calendar(CALENDAR, start=pd.Timestamp(start), end=pd.Timestamp(end))
    except Exception as e:  # exchange_calendars raises its own errors for dates out of its bounds
        msg = f"the {CALENDAR} exchange calendar cannot cover {start} .. {end}: {e}"
        raise WsbError(msg) from e
    schedule = calendar.schedule
    sessions = pd.DatetimeIndex(schedule.index)
    days = np.asarray((sessions - pd.Timestamp(0)) // pd.Timedelta(days=1), dtype=np.int64)
    return days, _seconds(pd.DatetimeIndex(schedule["close"]))


def cutoff_table(cutoff: str, first: int | None, last: int | None) -> CutoffTable:
    """The table of ``cutoff`` covering posts created from ``first`` to ``last`` (UTC
    seconds; ``None`` = no posts): every post in the range finds its cutoff in it.

    >>> t = cutoff_table("15:45", 1561939200, 1562025600)  # 2019-07-01 00:00 .. 07-02 00:00 UTC
    >>> [str(np.datetime64(int(s), "s")) for s in t.instants[:3]]  # 15:45 EDT; 13:00 EDT on 07-03
    ['2019-07-01T19:45:00', '2019-07-02T19:45:00', '2019-07-03T17:00:00']
    >>> t = cutoff_table("utc_day", 86400, 2 * 86400)
    >>> t.days.tolist(), t.instants.tolist()
    ([1, 2], [172799, 259199])
    """
    cutoff = parse_cutoff(cutoff)
    if first is None or last is None:
        return CutoffTable.empty(cutoff)
    first_day, last_day = int(first) // SECONDS_PER_DAY, int(last) // SECONDS_PER_DAY
    if cutoff == UTC_DAY:
        days = np.arange(first_day, last_day + 1, dtype=np.int64)
        return CutoffTable(cutoff, (days + 1) * SECONDS_PER_DAY - 1, days)
    # A session's close is later in UTC than its date's midnight, so no session before the
    # first post's UTC date can hold it; the margin after the last covers closures.
    days, closes = nyse_sessions(first_day, last_day + _MARGIN_DAYS)
    if cutoff == CLOSE:
        return CutoffTable(cutoff, closes, days)
    import pandas as pd

    hours, minutes = (int(x) for x in cutoff.split(":"))
    local = pd.DatetimeIndex(days.astype("datetime64[D]")) + pd.Timedelta(hours=hours, minutes=minutes)
    # A session is never on a Sunday, when the clocks change: no time of a session's date
    # is missing or doubled; shift_forward only keeps the call total.
    fixed = _seconds(local.tz_localize(NEW_YORK, nonexistent="shift_forward", ambiguous=False).tz_convert("UTC"))
    return CutoffTable(cutoff, np.minimum(closes, fixed), days)


def cutoff_day(created: Array, instants: Array, days: Array) -> tuple[Array, Array]:
    """For each post (``created``, UTC seconds), the day of the first cutoff at or after
    it, and whether the table has one (array API; NumPy, CuPy or array-api-strict).

    ``instants`` and ``days`` are a :class:`CutoffTable`'s (host arrays are moved to the
    posts' device, a few kilobytes).

    >>> d, ok = cutoff_day(np.array([5, 10, 11, 25]), np.array([10, 20]), np.array([1, 2]))
    >>> d.tolist(), ok.tolist()
    ([1, 1, 2, 1], [True, True, True, False])
    """
    xp = array_namespace(created)
    n = int(instants.shape[0])
    if n == 0:
        return xp.zeros(created.shape[0], dtype=xp.int64), xp.zeros(created.shape[0], dtype=xp.bool)
    instants = xp.asarray(instants, dtype=xp.int64)
    days = xp.asarray(days, dtype=xp.int64)
    pos = xp.searchsorted(instants, created, side="left")
    hit = pos < n
    return xp.take(days, xp.where(hit, pos, 0)), hit
