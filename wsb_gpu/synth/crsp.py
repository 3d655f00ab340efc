"""CRSP-style files: the name history (``stocknames.csv``) and the daily file (``crsp_daily.csv``).

``crsp_daily.csv`` is written date-major (all stocks of one day, then the next day), as
WRDS exports often are, with ``date`` as ``YYYYMMDD``; ``stocknames.csv`` uses
``YYYY-MM-DD``. The quirks of real CRSP daily files are planted in fixed shares:

* ``RET = "C"`` and ``RETX = "C"`` on the first row of a stock listed inside the range
  (no previous price: no return at all);
* ``RET = "B"`` or ``"C"`` with a numeric ``RETX`` on a small share of rows (``RETX`` is
  then the return, because those rows are not dividend days);
* ``RET`` and ``RETX`` both empty on a very small share of rows (a missing return);
* ``RET != RETX`` on quarterly ex-dividend days of dividend payers (``RET`` includes the
  dividend);
* negative ``PRC`` (a bid/ask average) on a small share of rows;
* one delisting row with only ``DLRET`` (empty ``PRC, VOL, RET, RETX``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wsb_gpu.synth.process import STREAM_CRSP, Stock

DEFAULT_CRSP_QUIRKS: dict = {
    "letter_code": 0.001,  # RET = "B" or "C" with numeric RETX
    "missing_return": 0.0002,  # RET and RETX both empty
    "negative_price": 0.005,  # PRC < 0 (bid/ask average)
    "dividend_every": 63,  # trading days between ex-dividend days of payers
}

STOCKNAMES_COLUMNS = ["PERMNO", "NAMEDT", "NAMEENDT", "SHRCD", "EXCHCD", "SICCD", "NCUSIP", "TICKER", "COMNAM"]
DAILY_COLUMNS = ["PERMNO", "date", "TICKER", "PRC", "VOL", "RET", "RETX", "DLRET"]


def write_stocknames(stocks: list[Stock], path: Path, seed: int) -> int:
    """Write the CRSP name history; returns the number of rows."""

    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(STREAM_CRSP, 0))))
    alnum = np.array(list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"))
    rows = []
    for s in sorted(stocks, key=lambda s: s.permno):
        cusip = "".join(rng.choice(alnum, 6)) + "10"
        for n in s.names:
            rows.append(
                (
                    s.permno,
                    n.namedt.isoformat(),
                    n.nameendt.isoformat(),
                    s.shrcd,
                    s.exchcd,
                    s.siccd,
                    cusip,
                    n.ticker,
                    n.comnam,
                )
            )
    pd.DataFrame(rows, columns=STOCKNAMES_COLUMNS).to_csv(path, index=False)
    return len(rows)


def _fmt(x: np.ndarray, decimals: int) -> np.ndarray:
    """Fixed-decimal strings of an array (vectorised)."""
    return np.char.mod(f"%.{decimals}f", x)


def daily_panel(stocks: list[Stock], days: np.ndarray, latent: dict, seed: int, quirks: dict | None = None) -> dict:
    """The daily file as arrays in stock-major layout (days x stocks) plus the used return.

    Returns ``ret_str, retx_str, dlret_str, prc_str, vol_str`` (object arrays, '' = empty),
    ``ret_used`` (float: the return a reader applying RET -> RETX -> DLRET gets; NaN when
    none parses) and ``counts`` of each quirk.
    """
    q = {**DEFAULT_CRSP_QUIRKS, **(quirks or {})}
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(STREAM_CRSP, 1))))
    n_days, n = len(days), len(stocks)
    r = np.round(latent["ret"], 6)
    alive = latent["alive"]

    ret_s = np.empty((n_days, n), dtype=object)
    retx_s = np.empty((n_days, n), dtype=object)
    dl_s = np.full((n_days, n), "", dtype=object)
    prc_s = np.empty((n_days, n), dtype=object)
    vol_s = np.empty((n_days, n), dtype=object)
    used = np.where(alive, r, np.nan)
    counts = {
        "letter_C": 0,
        "letter_B": 0,
        "listing_C": 0,
        "missing_return": 0,
        "dividend_days": 0,
        "negative_price": 0,
        "dlret_only": 0,
    }

    for j, s in enumerate(stocks):
        a, b = s.first, s.last + 1
        rj = r[a:b, j]
        retx = rj.copy()
        is_div = np.zeros(b - a, dtype=bool)
        if s.dividend:
            off = int(rng.integers(1, q["dividend_every"]))
            is_div[off :: q["dividend_every"]] = True
            retx[is_div] = np.round(rj[is_div] - rng.uniform(0.002, 0.012, is_div.sum()), 6)
            counts["dividend_days"] += int(is_div.sum())
        u = rng.random(b - a)
        letter = (u < q["letter_code"]) & ~is_div
        missing = (u >= q["letter_code"]) & (u < q["letter_code"] + q["missing_return"])
        letter[0] = missing[0] = False
        rs = _fmt(rj, 6).astype(object)
        xs = _fmt(retx, 6).astype(object)
        codes = np.where(rng.random(b - a) < 0.5, "B", "C")
        rs[letter] = codes[letter]
        rs[missing] = ""
        xs[missing] = ""
        counts["letter_B"] += int((letter & (codes == "B")).sum())
        counts["letter_C"] += int((letter & (codes == "C")).sum())
        counts["missing_return"] += int(missing.sum())
        used[a:b, j][missing] = np.nan
        if a > 0:
            # A new listing: no previous price, so CRSP has no return on its first day.
            rs[0] = xs[0] = "C"
            counts["listing_C"] += 1
            used[a, j] = np.nan

        price = np.exp(rng.normal(np.log(30.0), 0.8)) * np.cumprod(1.0 + np.where(np.arange(b - a) == 0, 0.0, retx))
        price = np.maximum(price, 0.01)
        neg = rng.random(b - a) < q["negative_price"]
        counts["negative_price"] += int(neg.sum())
        ps = _fmt(np.where(neg, -price, price), 2).astype(object)
        base_vol = rng.normal(13.0, 1.0)
        volume = np.exp(
            base_vol + 1.2 * (latent["log_sigma"][a:b, j] - latent["mu"][j]) + 0.3 * rng.standard_normal(b - a)
        )
        vs = (np.round(volume / 100.0).astype(np.int64) * 100).astype(str).astype(object)

        if s.delisted:
            dl = round(float(rng.uniform(-0.9, -0.3)), 6)
            rs[-1] = xs[-1] = ps[-1] = vs[-1] = ""
            dl_s[b - 1, j] = f"{dl:.6f}"
            used[b - 1, j] = dl
            counts["dlret_only"] += 1
        ret_s[a:b, j], retx_s[a:b, j], prc_s[a:b, j], vol_s[a:b, j] = rs, xs, ps, vs
    return {
        "ret_str": ret_s,
        "retx_str": retx_s,
        "dlret_str": dl_s,
        "prc_str": prc_s,
        "vol_str": vol_s,
        "ret_used": used,
        "counts": counts,
    }


def write_daily(stocks: list[Stock], days: np.ndarray, panel: dict, alive: np.ndarray, path: Path) -> int:
    """Write ``crsp_daily.csv`` date-major, one calendar year per block; returns rows."""

    permno = np.array([s.permno for s in stocks], dtype=np.int64)
    order = np.argsort(permno, kind="stable")
    ymd = np.char.replace(days.astype(str), "-", "")
    years = days.astype("datetime64[Y]").astype(int) + 1970
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(DAILY_COLUMNS) + "\n")
        for y in np.unique(years):
            t_idx = np.flatnonzero(years == y)
            sub = alive[np.ix_(t_idx, order)]
            ti, jj = np.nonzero(sub)  # date-major: row order by day, then PERMNO
            t_abs, j_abs = t_idx[ti], order[jj]
            tick = np.empty(len(t_abs), dtype=object)
            for j in np.unique(j_abs):
                sel = j_abs == j
                starts = np.array([np.datetime64(n.namedt, "D") for n in stocks[j].names])
                syms = np.array([n.ticker for n in stocks[j].names], dtype=object)
                tick[sel] = syms[np.searchsorted(starts, days[t_abs[sel]], side="right") - 1]
            frame = pd.DataFrame(
                {
                    "PERMNO": permno[j_abs],
                    "date": ymd[t_abs],
                    "TICKER": tick,
                    "PRC": panel["prc_str"][t_abs, j_abs],
                    "VOL": panel["vol_str"][t_abs, j_abs],
                    "RET": panel["ret_str"][t_abs, j_abs],
                    "RETX": panel["retx_str"][t_abs, j_abs],
                    "DLRET": panel["dlret_str"][t_abs, j_abs],
                }
            )
            frame.to_csv(fh, header=False, index=False, lineterminator="\n")
            rows += len(frame)
    return rows
