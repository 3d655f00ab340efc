"""The CRSP name history ("stocknames"): which PERMNO traded under which ticker, when.

Columns are matched case-insensitively: ``PERMNO, TICKER, NAMEDT, NAMEENDT``; other
columns are ignored. Dates are ``YYYY-MM-DD`` or ``YYYYMMDD`` (text or integer). A missing
``NAMEENDT`` means the name is still in use (open-ended). CSV (any extension but
``.parquet``/``.pq``) or Parquet. See ``docs/inputs.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from wsb_gpu.errors import WsbError

REQUIRED = ("permno", "ticker", "namedt", "nameendt")
_DATE_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_NUM = re.compile(r"^\d{8}$")
OPEN_END = np.datetime64("9999-12-31", "D")


def read_stocknames(path: str | Path) -> pd.DataFrame:
    """Read the name history into ``ticker, permno (int64), namedt, nameendt`` (dates as
    ``datetime64[D]``-valued ``datetime64[s]``), one row per (PERMNO, ticker, period).

    Raises
    ------
    WsbError
        When the file is missing, a column is missing, or a value cannot be read; the
        message names the file, the column and the value.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"tickers file '{path}' does not exist; pass the CRSP stocknames file with --tickers (see docs/inputs.md)"
        raise WsbError(msg)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as e:
        msg = f"cannot read tickers file '{path}' ({type(e).__name__}: {e}); it must be CSV or Parquet (see docs/inputs.md)"
        raise WsbError(msg) from e
    by_lower = {str(c).strip().lower(): c for c in raw.columns}
    missing = [c.upper() for c in REQUIRED if c not in by_lower]
    if missing:
        have = ", ".join(map(str, raw.columns))
        msg = (
            f"column(s) {', '.join(missing)} not found in {path.name} (columns: {have}); "
            "the tickers file needs PERMNO, TICKER, NAMEDT, NAMEENDT (any case), see docs/inputs.md"
        )
        raise WsbError(msg)
    cols = {c: raw[by_lower[c]] for c in REQUIRED}
    permno = pd.to_numeric(cols["permno"].astype("string").str.strip(), errors="coerce")
    bad = permno.isna() | (permno != np.floor(permno))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        msg = f"PERMNO {cols['permno'].iloc[i]!r} in {path.name} (data row {i + 1}) is not an integer; fix or drop that row"
        raise WsbError(msg)
    ticker = cols["ticker"].astype("string").str.strip()
    out = pd.DataFrame(
        {
            "ticker": ticker.astype(str).where(ticker.notna(), None),
            "permno": permno.astype("int64"),
            "namedt": parse_dates(cols["namedt"], "NAMEDT", path.name, allow_missing=False),
            "nameendt": parse_dates(cols["nameendt"], "NAMEENDT", path.name, allow_missing=True),
        }
    )
    out = out[out["ticker"].notna() & (out["ticker"] != "")]
    return out.reset_index(drop=True)


def parse_dates(values: pd.Series, column: str, source: str, *, allow_missing: bool) -> pd.Series:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` values into ``datetime64[s]`` (missing -> 9999-12-31
    where allowed).

    >>> parse_dates(pd.Series(["2020-01-31", "20200201", None]), "NAMEENDT", "x", allow_missing=True).dt.strftime("%Y-%m-%d").tolist()
    ['2020-01-31', '2020-02-01', '9999-12-31']
    """
    text = values.astype("string").str.strip()
    text = text.str.replace(r"\.0$", "", regex=True)  # integers read through a float column
    missing = text.isna() | (text == "")
    if missing.any() and not allow_missing:
        i = int(np.flatnonzero(missing.to_numpy())[0])
        msg = f"{column} is empty in {source} (data row {i + 1}); every name period needs a start date"
        raise WsbError(msg)
    iso = text.str.match(_DATE_ISO.pattern).fillna(False)
    num = text.str.match(_DATE_NUM.pattern).fillna(False)
    norm = text.where(~num, text.str.slice(0, 4) + "-" + text.str.slice(4, 6) + "-" + text.str.slice(6, 8))
    days = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[D]")
    fmt_ok = (iso | num).to_numpy(dtype=bool)
    cache: dict[str, np.datetime64] = {}
    for i in np.flatnonzero(fmt_ok):
        v = norm.iloc[i]
        if v not in cache:
            try:
                cache[v] = np.datetime64(v, "D")
            except ValueError:  # e.g. 2020-02-30
                cache[v] = np.datetime64("NaT")
        days[i] = cache[v]
    parsed = pd.Series(days.astype("datetime64[s]"), index=values.index)
    bad = ~missing & parsed.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        msg = (
            f"{column} value {values.iloc[i]!r} in {source} (data row {i + 1}) is not a date; "
            "use YYYY-MM-DD or YYYYMMDD"
        )
        raise WsbError(msg)
    if allow_missing and missing.any():
        days[missing.to_numpy(dtype=bool)] = OPEN_END
        parsed = pd.Series(days.astype("datetime64[s]"), index=values.index)
    return parsed
