"""The stock universe and the latent processes: hype, HAR log-volatility, returns.

Everything here is a pure function of the seed and the parameters. Each latent series
draws from its own random stream (``numpy`` ``PCG64`` seeded by
``SeedSequence(seed, spawn_key=(stream,))``), so the hype shocks, the volatility shocks
and the return shocks never share random numbers: with ``effect = 0`` the volatility and
the returns are bit-identical whatever the hype does.

The model (``t`` = trading day of the global calendar, ``i`` = stock)::

    h[t, i] = phi * h[t-1, i] + sqrt(1 - phi**2) * eta[t, i]            hype, N(0, 1)
    g, u, q = three more states of the same AR(1) form, each on its own stream:
              attention (only how many posts), tone (only what share of hype phrases)
              and topic (only how many posts are earnings talk)
    a[t, i] = c_d * a[t-1] + c_w * mean(a[t-5:t]) + c_m * mean(a[t-22:t]) + s_a * e[t, i]
    m[t]    = same HAR recursion with s_m (market-wide log-volatility)
    log_sigma[t, i] = mu_i + m[t] + a[t, i]
                      + b * h[t-1, i] + b_att * g[t-1, i] + b_tone * u[t-1, i] + b_topic * q[t-1, i]
    ret[t, i] = sigma[t, i] * z[t, i],   z ~ Student-t(nu) scaled to unit variance

``e`` is Student-t too (fat-tailed volatility shocks). Each state of day ``t`` raises the
log-volatility of the *next* trading day only; none enters ``a`` or ``m``. The hype ``h``
moves both the number and the tone of the posts (the world of ``effect``); ``g``, ``u`` and
``q`` each move one observable only, so each text channel can be planted on its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from wsb_gpu.errors import WsbError

# Random streams (spawn keys); fixed forever so that outputs stay reproducible.
STREAM_UNIVERSE, STREAM_HYPE, STREAM_VOL, STREAM_MARKET, STREAM_RET, STREAM_CRSP = range(1, 7)
STREAM_ATTENTION, STREAM_TONE, STREAM_TOPIC = range(7, 10)

CHANNELS = ("attention", "tone", "topic")
"""The text channels that can be planted one at a time (``effects`` of :func:`simulate_latent`)."""

MIN_TICKERS = 10

# Default parameters of the latent processes (all written to truth.json).
DEFAULT_PARAMS: dict = {
    "hype_phi": 0.5,  # AR(1) persistence of the hype state
    "har_c_d": 0.35,  # HAR coefficients of the log-volatility (daily, weekly, monthly)
    "har_c_w": 0.30,
    "har_c_m": 0.25,
    "vol_shock_sd": 0.40,  # s_a: stock log-volatility shock scale
    "market_shock_sd": 0.12,  # s_m: market log-volatility shock scale
    "vol_shock_df": 6.0,  # Student-t degrees of freedom of the volatility shocks
    "ret_df": 5.0,  # Student-t degrees of freedom of the return shocks
    "mu_mean": float(np.log(0.018)),  # mean of mu_i (daily volatility about 1.8 %)
    "mu_sd": 0.5,  # cross-sectional spread of mu_i
    "burn_in": 250,  # trading days simulated and dropped before the start
}


@dataclass(frozen=True)
class NameSpell:
    """One row of the CRSP name history: a ticker and name valid from ``namedt`` to ``nameendt``."""

    ticker: str
    comnam: str
    namedt: dt.date
    nameendt: dt.date


@dataclass(frozen=True)
class Stock:
    """One PERMNO of the synthetic universe."""

    permno: int
    names: tuple[NameSpell, ...]
    first: int  # index of its first trading day in the calendar
    last: int  # index of its last trading day (inclusive)
    delisted: bool  # its last row is a DLRET-only delisting row
    weight: float  # share of the stock-mentioning posts it attracts
    dividend: bool  # pays quarterly dividends (RET != RETX on ex-dates)
    common_word: bool  # its ticker is a common English / WSB word
    exchcd: int = 1
    siccd: int = 7370
    shrcd: int = 11
    extra: dict = field(default_factory=dict, compare=False)

    def ticker_on(self, day: dt.date) -> str | None:
        """The ticker valid on a calendar date, or None."""
        for n in self.names:
            if n.namedt <= day <= n.nameendt:
                return n.ticker
        return None


# Named pool: (ticker, company name, dividend, common word). Positions 0-9 carry the
# special cases every universe has (ticker change, reuse, common words, single letter).
_POOL = [
    ("GME", "GAMESTOP CORP NEW", False, False),
    ("TSLA", "TESLA INC", False, False),
    ("FB", "FACEBOOK INC", False, False),  # -> META (ticker change)
    ("CHK", "CHESAPEAKE ENERGY CORP", True, False),  # delists; CHK reused by the next one
    ("CHK", "CHARTWELL HOLDINGS INC", False, False),  # reuses CHK the day after
    ("ALL", "ALLSTATE CORP", True, True),
    ("IT", "GARTNER INC", False, True),
    ("CEO", "CNOOC LTD", True, True),
    ("DD", "DU PONT E I DE NEMOURS & CO", True, True),  # -> DOWDUPONT INC (name change)
    ("F", "FORD MOTOR CO DEL", True, False),  # single letter: only $F counts
    ("AMC", "A M C ENTERTAINMENT HOLDINGS INC", False, False),
    ("AAPL", "APPLE INC", True, False),
    ("AMD", "ADVANCED MICRO DEVICES INC", False, False),
    ("NVDA", "NVIDIA CORP", True, False),
    ("MSFT", "MICROSOFT CORP", True, False),
    ("BB", "BLACKBERRY LTD", False, False),
    ("NOK", "NOKIA CORP", True, False),
    ("MU", "MICRON TECHNOLOGY INC", False, False),
    ("NFLX", "NETFLIX INC", False, False),
    ("AMZN", "AMAZON COM INC", False, False),
    ("BABA", "ALIBABA GROUP HOLDING LTD", False, False),
    ("NIO", "NIO INC", False, False),
    ("SPCE", "VIRGIN GALACTIC HOLDINGS INC", False, False),
    ("PLTR", "PALANTIR TECHNOLOGIES INC", False, False),
    ("BBBY", "BED BATH & BEYOND INC", False, False),
    ("T", "A T & T INC", True, False),
    ("INTC", "INTEL CORP", True, False),
    ("SNAP", "SNAP INC", False, False),
    ("TWTR", "TWITTER INC", False, False),
    ("GE", "GENERAL ELECTRIC CO", True, False),
    ("BAC", "BANK OF AMERICA CORP", True, False),
    ("XOM", "EXXON MOBIL CORP", True, False),
    ("DIS", "DISNEY WALT CO", True, False),
    ("SQ", "SQUARE INC", False, False),
    ("ROKU", "ROKU INC", False, False),
    ("UBER", "UBER TECHNOLOGIES INC", False, False),
    ("ZM", "ZOOM VIDEO COMMUNICATIONS INC", False, False),
    ("WORK", "SLACK TECHNOLOGIES INC", False, True),
    ("LUV", "SOUTHWEST AIRLINES CO", True, False),
    ("GOOG", "ALPHABET INC", False, False),
    ("JNUG", "DIREXION SHS ETF TR", False, False),
    ("SPY", "SPDR S & P 500 ETF TR", True, False),
]

_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_SUFFIXES = ("INC", "CORP", "HOLDINGS INC", "GROUP INC", "CO", "LTD", "TECHNOLOGIES INC")


def _date_at(days: np.ndarray, frac: float) -> int:
    return int(round(frac * (len(days) - 1)))


def _to_date(d: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(d))


def build_universe(days: np.ndarray, n_tickers: int, seed: int) -> list[Stock]:
    """The stock universe: ``n_tickers`` PERMNOs with the special cases built in.

    Always present: a ticker change (FB -> META at 55 % of the range), a symbol reused by
    two PERMNOs on adjacent calendar days (CHK; the first delists at 40 % of the range),
    common-word tickers (ALL, IT, CEO, DD), a company-name change without a ticker change
    (DD at 70 %) and a single-letter ticker (F). Beyond the named pool, tickers are random
    3-4 letter symbols.
    """
    if n_tickers < MIN_TICKERS:
        raise WsbError(
            f"--tickers must be at least {MIN_TICKERS} (got {n_tickers}): the universe always "
            f"holds the special cases (ticker change, reused symbol, common words); pass "
            f"--tickers {MIN_TICKERS} or more"
        )
    if len(days) < 20:
        raise WsbError(
            f"the date range holds only {len(days)} trading days; the generator needs at "
            f"least 20 (about a month) to place ticker changes and delistings; "
            f"widen --start/--end"
        )
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(STREAM_UNIVERSE,))))
    first_day, last_day = _to_date(days[0]), _to_date(days[-1])
    permnos = np.sort(rng.choice(np.arange(10001, 93999), size=n_tickers, replace=False))
    permnos = rng.permutation(permnos)

    specs = list(_POOL[:n_tickers])
    taken = {t for t, *_ in _POOL}
    while len(specs) < n_tickers:
        length = int(rng.integers(3, 5))
        sym = "".join(rng.choice(_LETTERS, size=length))
        if sym in taken:
            continue
        taken.add(sym)
        name = f"{sym} {_SUFFIXES[int(rng.integers(len(_SUFFIXES)))]}"
        specs.append((sym, name, bool(rng.random() < 0.4), False))

    i_reuse = _date_at(days, 0.40)
    i_change = _date_at(days, 0.55)
    i_rename = _date_at(days, 0.70)
    d_reuse, d_change, d_rename = (_to_date(days[i]) for i in (i_reuse, i_change, i_rename))
    one = dt.timedelta(days=1)
    # Popularity: a few names draw most of the talk (GME, TSLA first), a long thin tail.
    raw_w = 1.0 / (np.arange(n_tickers) + 3.0) ** 0.6

    stocks = []
    for k, (sym, name, div, common) in enumerate(specs):
        first, last, delisted = 0, len(days) - 1, False
        if k == 2:
            names = (
                NameSpell("FB", name, first_day, d_change),
                NameSpell("META", "META PLATFORMS INC", d_change + one, last_day),
            )
        elif k == 3:
            names = (NameSpell(sym, name, first_day, d_reuse),)
            last, delisted = i_reuse, True
        elif k == 4:
            names = (NameSpell(sym, name, d_reuse + one, last_day),)
            first = i_reuse + 1
        elif k == 8:
            names = (
                NameSpell(sym, name, first_day, d_rename),
                NameSpell(sym, "DOWDUPONT INC", d_rename + one, last_day),
            )
        else:
            names = (NameSpell(sym, name, first_day, last_day),)
        if first == 0:
            # Listed long before the sample starts (CRSP name histories go back decades).
            listed = first_day - dt.timedelta(days=int(rng.integers(400, 12000)))
            names = (NameSpell(names[0].ticker, names[0].comnam, listed, names[0].nameendt),) + names[1:]
        stocks.append(
            Stock(
                permno=int(permnos[k]),
                names=names,
                first=first,
                last=last,
                delisted=delisted,
                weight=float(raw_w[k] / raw_w.sum()),
                dividend=div,
                common_word=common,
                exchcd=3 if sym in ("TSLA", "AAPL", "AMD", "NVDA", "MSFT", "NFLX", "AMZN", "MU", "INTC") else 1,
                shrcd=73 if name.endswith("ETF TR") else 11,
                siccd=int(rng.choice([1311, 2834, 3571, 3674, 4813, 5331, 6020, 6331, 7370, 7372])),
            )
        )
    return stocks


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream,))))


def _unit_t(rng: np.random.Generator, df: float, size) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(df, size=size) * np.sqrt((df - 2.0) / df)


def _har(shocks: np.ndarray, c_d: float, c_w: float, c_m: float) -> np.ndarray:
    """Run the HAR recursion over axis 0 of ``shocks`` (time x series), zero start."""
    n = shocks.shape[0]
    out = np.zeros_like(shocks)
    hist = np.zeros((n + 22,) + shocks.shape[1:])  # 22 zeros of history before t = 0
    s5 = np.zeros(shocks.shape[1:])
    s22 = np.zeros(shocks.shape[1:])
    for t in range(n):
        prev = hist[t + 21]
        x = c_d * prev + c_w * s5 / 5.0 + c_m * s22 / 22.0 + shocks[t]
        hist[t + 22] = x
        out[t] = x
        s5 += x - hist[t + 17]
        s22 += x - hist[t]
    return out


def _ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float) -> np.ndarray:
    """A stationary AR(1) with unit variance along axis 0."""
    eta = rng.standard_normal(shape)
    out = np.empty(shape)
    out[0] = eta[0]
    scale = np.sqrt(1.0 - phi * phi)
    for t in range(1, shape[0]):
        out[t] = phi * out[t - 1] + scale * eta[t]
    return out


def simulate_latent(
    stocks: list[Stock],
    n_days: int,
    *,
    seed: int,
    effect: float,
    effects: dict | None = None,
    params: dict | None = None,
) -> dict[str, np.ndarray]:
    """Simulate the latent panel on ``n_days`` trading days (arrays of shape days x stocks).

    Returns the states ``hype``, ``attention``, ``tone`` and ``topic``, ``log_sigma_base``
    (the log-volatility without any text term), ``log_sigma`` (= base + ``effect`` * hype +
    ``effects[c]`` * state ``c`` of the previous trading day, for the :data:`CHANNELS`),
    ``ret`` and ``alive`` (bool). Every state and shock has its own random stream, so
    ``log_sigma_base`` and ``ret / sigma`` do not depend on the effects.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    effects = {c: float((effects or {}).get(c, 0.0)) for c in CHANNELS}
    n, burn = len(stocks), int(p["burn_in"])
    total = n_days + burn

    phi = p["hype_phi"]
    hype = _ar1(_rng(seed, STREAM_HYPE), (total, n), phi)
    states = {
        "attention": _ar1(_rng(seed, STREAM_ATTENTION), (total, n), phi),
        "tone": _ar1(_rng(seed, STREAM_TONE), (total, n), phi),
        "topic": _ar1(_rng(seed, STREAM_TOPIC), (total, n), phi),
    }

    rng_v = _rng(seed, STREAM_VOL)
    mu = p["mu_mean"] + p["mu_sd"] * rng_v.standard_normal(n)
    shocks = p["vol_shock_sd"] * _unit_t(rng_v, p["vol_shock_df"], (total, n))
    a = _har(shocks, p["har_c_d"], p["har_c_w"], p["har_c_m"])
    rng_m = _rng(seed, STREAM_MARKET)
    m = _har(
        p["market_shock_sd"] * _unit_t(rng_m, p["vol_shock_df"], (total, 1)), p["har_c_d"], p["har_c_w"], p["har_c_m"]
    )

    base = mu[None, :] + m + a

    def previous(x: np.ndarray) -> np.ndarray:
        return np.vstack([np.zeros((1, n)), x[:-1]])

    log_sigma = base + effect * previous(hype) if effect != 0 else base.copy()
    for c in CHANNELS:
        if effects[c] != 0:
            log_sigma += effects[c] * previous(states[c])

    rng_r = _rng(seed, STREAM_RET)
    z = _unit_t(rng_r, p["ret_df"], (total, n))
    ret = np.clip(np.exp(log_sigma) * z, -0.95, 5.0)

    alive = np.zeros((n_days, n), dtype=bool)
    for j, s in enumerate(stocks):
        alive[s.first : s.last + 1, j] = True
    sl = slice(burn, None)
    return {
        "hype": hype[sl],
        **{c: states[c][sl] for c in CHANNELS},
        "log_sigma_base": base[sl],
        "log_sigma": log_sigma[sl],
        "ret": ret[sl],
        "alive": alive,
        "mu": mu,
    }
