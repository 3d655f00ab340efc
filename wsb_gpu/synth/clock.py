"""When in the day posts are made: a stylised New York time-of-day profile.

The posting rate at New York local time ``h`` (hours, DST-aware) is

    w(h) = floor + sum_k a_k * exp(-d(h, c_k)**2 / (2 * s_k**2))

with ``d`` the distance on the 24-hour circle and the bumps of :data:`PROFILE_BUMPS`:
quiet overnight, rising from about 07:00, a broad peak through the session with a spike at
the open, a dip after the close and a second, smaller evening peak (the daily "what are
your moves tomorrow" talk). The shape is **stylised**: inspired by descriptive hourly
activity counts of r/wallstreetbets and by the intraday pattern of StockTwits messages
(concentrated in trading hours, e.g. Renault 2017, *Journal of Banking & Finance* 84),
not fitted to any data. The same profile holds on every calendar day (weekends and
holidays included, where the session peak is simply a daytime peak).

A calendar day's posts keep the count the plan gives its UTC date; their instants inside
that UTC day follow ``w`` evaluated at each instant's New York time. The density is
piecewise constant per UTC minute (the profile at the minute's midpoint); the CDF is linear
inside a minute, so a post can be drawn inside any interval of seconds (a session, the time
after the close) with :func:`sample_seconds`. Every function here is vectorised NumPy.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from wsb_gpu.synth.calendar import NEW_YORK

PROFILE_FLOOR = 0.10
"""Rate at every hour (overnight activity: night owls and other time zones)."""

PROFILE_BUMPS: tuple[tuple[str, float, float, float], ...] = (
    # (name, centre in New York hours, sd in hours, amplitude)
    ("day", 12.5, 2.6, 1.0),
    ("open", 9.75, 0.5, 0.35),
    ("evening", 20.5, 1.6, 0.45),
)
"""The bumps of the stylised profile (see the module docstring)."""

DAY_SECONDS = 86400


def profile(hours: np.ndarray) -> np.ndarray:
    """Relative posting rate at New York local time ``hours`` (0 <= h < 24; not normalised).

    >>> w = profile(np.array([3.0, 12.5, 17.5, 20.5]))
    >>> [round(float(x), 2) for x in w]
    [0.1, 1.1, 0.33, 0.56]
    """
    h = np.asarray(hours, dtype=np.float64)
    w = np.full(h.shape, PROFILE_FLOOR)
    for _, centre, sd, amp in PROFILE_BUMPS:
        d = np.abs(h - centre) % 24.0
        d = np.minimum(d, 24.0 - d)
        w = w + amp * np.exp(-0.5 * (d / sd) ** 2)
    return w


PROFILE_MINUTES = profile((np.arange(1440) + 0.5) / 60.0)
"""The profile on New York local minutes 0..1439 (at each minute's midpoint)."""


def utc_offsets(cal: np.ndarray) -> np.ndarray:
    """New York's UTC offset in hours (-5 or -4) for each UTC hour of each calendar day.

    ``cal`` is ``datetime64[D]``; returns an ``int8`` array of shape ``(len(cal), 24)``.
    DST switches on the hour in UTC (07:00 UTC in March, 06:00 UTC in November).

    >>> off = utc_offsets(np.array(["2019-03-10", "2019-07-01"], dtype="datetime64[D]"))
    >>> off[0, 6], off[0, 7], off[1, 0]
    (np.int8(-5), np.int8(-4), np.int8(-4))
    """
    start = cal.astype("datetime64[s]").astype(np.int64)
    out = np.empty((len(cal), 24), dtype=np.int8)

    def offset(ts: int) -> int:
        u = dt.datetime.fromtimestamp(ts, NEW_YORK).utcoffset()
        return int(u.total_seconds() // 3600)

    for i, s in enumerate(start.tolist()):
        a, b = offset(s), offset(s + 23 * 3600)
        if a == b:
            out[i] = a
        else:
            out[i] = [offset(s + 3600 * k) for k in range(24)]
    return out


def minute_cdfs(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The within-day CDF of post times for each distinct offset pattern.

    Returns ``(cdf, pattern)``: ``cdf[k]`` (1441 values, 0 to 1) is the cumulative share of a
    UTC day's posts before each UTC minute for offset pattern ``k``, and ``pattern[i]`` the
    pattern of calendar day ``i``. Only a few patterns exist (winter, summer, the two switch
    days), so this is small whatever the range.
    """
    pat, inv = np.unique(offsets, axis=0, return_inverse=True)
    minute = np.arange(1440)
    local = (minute[None, :] + 60 * pat[:, minute // 60].astype(np.int64)) % 1440
    w = PROFILE_MINUTES[local]
    cdf = np.zeros((len(pat), 1441))
    np.cumsum(w, axis=1, out=cdf[:, 1:])
    cdf /= cdf[:, -1:]
    return cdf, inv.reshape(-1).astype(np.int32)


def cdf_at(cdf: np.ndarray, seconds: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """A within-day CDF at seconds of the UTC day (linear inside each minute).

    ``cdf`` is one row (1441,) when ``rows`` is None, else the pattern table of
    :func:`minute_cdfs` and ``rows`` the pattern of each entry of ``seconds``.
    """
    s = np.asarray(seconds, dtype=np.float64)
    m = np.minimum((s // 60).astype(np.int64), 1439)
    frac = (s - 60.0 * m) / 60.0
    if rows is None:
        lo, hi = cdf[m], cdf[m + 1]
    else:
        lo, hi = cdf[rows, m], cdf[rows, m + 1]
    return lo + frac * (hi - lo)


def sample_seconds(rng: np.random.Generator, cdf: np.ndarray, lo: int, hi: int, n: int) -> np.ndarray:
    """``n`` integer seconds of the UTC day in ``[lo, hi)`` drawn from the profile ``cdf`` (one row).

    >>> cdf, _ = minute_cdfs(np.full((1, 24), -4, dtype=np.int8))
    >>> x = sample_seconds(np.random.default_rng(0), cdf[0], 72000, 86400, 1000)
    >>> bool(x.min() >= 72000 and x.max() < 86400)
    True
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    a, b = cdf_at(cdf, np.array([lo, hi]))
    u = a + rng.random(n) * (b - a)
    m = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, 1439)
    width = cdf[m + 1] - cdf[m]
    frac = np.where(width > 0, (u - cdf[m]) / np.where(width > 0, width, 1.0), 0.0)
    x = np.floor(60.0 * (m + np.clip(frac, 0.0, 1.0))).astype(np.int64)
    return np.clip(x, lo, hi - 1)
