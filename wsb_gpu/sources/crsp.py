"""Daily stock files: CRSP daily (as exported from WRDS) and Yahoo-style OHLCV.

Reading happens in three steps, so that a bad file fails in a second with a one-line
message instead of minutes into a Dask computation:

1. :func:`input_columns` reads only the header (CSV, compressed CSV) or the schema
   (Parquet) of the file.
2. :func:`resolve_columns` matches the roles this stage needs (``permno``, ``date``,
   ``ret`` ... or ``date``, ``symbol``, ``close``) to the file's columns, case-insensitively,
   through known aliases and the user's ``--columns role=name`` mapping, and raises a
   :class:`~wsb_gpu.errors.WsbError` listing the columns found when a role is missing.
3. :func:`read_raw` (a Dask collection of the raw columns, as strings for CSV) or
   :func:`iter_compressed_csv` (a bounded-memory stream of pandas chunks for ``.gz``/
   ``.zst``/``.bz2``/``.xz`` CSV, which cannot be split without decompressing), and then
   :func:`normalize` per partition: ``permno: int64, date: datetime64[s]`` and either
   ``ret: float64`` (CRSP) or ``close: float64`` (OHLCV).

Return selection (CRSP): the first of ``RET``, ``RETX``, ``DLRET`` that parses as a finite
number not below -1 (a simple return cannot lose more than 100%; CRSP's numeric missing
codes -66, -77, -88, -99 are thereby missing too). Letter codes (``B``, ``C`` ...) and
empty strings are missing. ``DLRET`` is a fallback, never compounded into a present
``RET``. A row whose return is missing stays in the panel.

OHLCV ids: a symbol's ``permno`` is :func:`symbol_id` of its upper-cased symbol, a
deterministic 63-bit hash, so it is the same in every run, every file and on every machine.

:func:`normalize` is written in the API pandas and cuDF share; the two places where they
differ (parsing numbers and dates from strings) are the helpers ``_to_float`` and
``_to_dates`` (pyarrow compute on the CPU, which is several times faster than
``pandas.to_numeric`` on strings; ``cudf.to_numeric`` / ``cudf.to_datetime`` on the GPU).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wsb_gpu.backend import frame_module, is_gpu_frame
from wsb_gpu.errors import WsbError

FORMATS = ("crsp", "ohlcv")

# role -> accepted column names (lower case), in order of preference. CRSP 2.0 (CIZ)
# daily files name their columns DlyCalDt / DlyRet / DlyRetx.
ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "crsp": {
        "permno": ("permno",),
        "date": ("date", "dlycaldt", "caldt"),
        "ret": ("ret", "dlyret"),
        "retx": ("retx", "dlyretx"),
        "dlret": ("dlret",),
    },
    "ohlcv": {
        "symbol": ("ticker", "symbol"),
        "date": ("date", "datetime"),
        "close": ("adj close", "adj_close", "adjclose", "adjusted close", "adjusted_close"),
    },
}
RETURN_ROLES = ("ret", "retx", "dlret")
"""The CRSP return columns in order of precedence."""

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}
PARQUET_SUFFIXES = (".parquet", ".pq")

# A number as CRSP and Yahoo write them; anything else (letter codes, "", "null") is missing.
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


# --- the file: kind and header -------------------------------------------------------------


def file_kind(path: str | Path) -> tuple[str, str | None]:
    """``("parquet", None)`` or ``("csv", compression)`` from the file name.

    >>> file_kind("crsp_daily.csv.zst")
    ('csv', 'zstd')
    >>> file_kind("crsp.parquet")
    ('parquet', None)
    """
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if p.is_dir() or (suffixes and suffixes[-1] in PARQUET_SUFFIXES):
        return "parquet", None
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    return "csv", compression


def open_text(path: str | Path, compression: str | None) -> io.TextIOBase:
    """Open a (possibly compressed) text file for streaming reads.

    zstd frames are read with a 2 GiB window limit (files compressed with ``zstd --long``
    need more than the library default).
    """
    if compression is None:
        return open(path, encoding="utf-8-sig", newline="")
    return io.TextIOWrapper(open_binary(path, compression), encoding="utf-8-sig", newline="")


def open_binary(path: str | Path, compression: str | None) -> Any:
    """A decompressing binary stream of ``path``."""
    if compression is None:
        return open(path, "rb")
    if compression == "gzip":
        import gzip

        return gzip.open(path, "rb")
    if compression == "bz2":
        import bz2

        return bz2.open(path, "rb")
    if compression == "xz":
        import lzma

        return lzma.open(path, "rb")
    import zstandard

    return zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(open(path, "rb"), closefd=True)


def sniff_delimiter(header: str) -> str:
    """Comma, unless the header line is tab- or semicolon-separated (WRDS ``.txt`` exports).

    >>> sniff_delimiter("PERMNO\\tdate\\tRET")
    '\\t'
    >>> sniff_delimiter("PERMNO,date,RET")
    ','
    """
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def input_columns(path: str | Path) -> tuple[list[str], str]:
    """The column names of a CSV (header line) or Parquet file, and the CSV delimiter.

    Raises
    ------
    WsbError
        When the file is empty or unreadable.
    """
    kind, compression = file_kind(path)
    name = Path(path).name
    if kind == "parquet":
        import pyarrow.dataset as ds

        try:
            schema = ds.dataset(str(path), format="parquet").schema
        except Exception as e:
            msg = f"cannot read the Parquet schema of {name}: {e}; pass a CRSP daily CSV or Parquet file"
            raise WsbError(msg) from e
        return [f.name for f in schema if not f.name.startswith("__")], ","
    try:
        with open_text(path, compression) as f:
            header = f.readline()
    except Exception as e:
        msg = f"cannot read the header of {name} ({type(e).__name__}: {e}); pass a CSV file (optionally .gz/.zst) or Parquet"
        raise WsbError(msg) from e
    if not header.strip():
        msg = f"{name} is empty: no header line; pass a CSV file with a header (PERMNO, date, RET ...)"
        raise WsbError(msg)
    delimiter = sniff_delimiter(header)
    columns = next(csv.reader([header.rstrip("\r\n")], delimiter=delimiter))
    return [c.strip() for c in columns], delimiter


# --- roles -> columns ------------------------------------------------------------------------


def resolve_columns(
    found: list[str],
    *,
    format: str = "crsp",
    columns: Mapping[str, str] | None = None,
    source: str = "the input",
) -> dict[str, str]:
    """Match the roles of ``format`` to the columns of a file.

    Parameters
    ----------
    found
        The file's column names.
    format
        ``crsp`` (roles ``permno, date, ret, retx, dlret``; at least one return) or
        ``ohlcv`` (roles ``symbol, date, close``).
    columns
        ``{role: column name}`` overrides (``--columns ret=my_ret``), matched
        case-insensitively.
    source
        The file name, for messages.

    Returns
    -------
    dict
        ``{role: column name as spelled in the file}`` for each role present.

    Examples
    --------
    >>> resolve_columns(["PERMNO", "DATE", "RET", "TICKER"])
    {'permno': 'PERMNO', 'date': 'DATE', 'ret': 'RET'}
    >>> resolve_columns(["Date", "Symbol", "Adj Close"], format="ohlcv")
    {'symbol': 'Symbol', 'date': 'Date', 'close': 'Adj Close'}
    """
    if format not in FORMATS:
        msg = f"unknown input format {format!r}; choose one of: {', '.join(FORMATS)}"
        raise WsbError(msg)
    roles = ROLES[format]
    by_lower = {c.strip().lower(): c for c in found}
    shown = ", ".join(found) if found else "none"
    mapping = {str(k).lower(): str(v) for k, v in (columns or {}).items() if v not in (None, "")}
    unknown = sorted(set(mapping) - set(roles))
    if unknown:
        msg = (
            f"--columns names the role(s) {', '.join(unknown)}, which format '{format}' does not have; "
            f"the roles are: {', '.join(roles)}"
        )
        raise WsbError(msg)
    resolved: dict[str, str] = {}
    for role, aliases in roles.items():
        if role in mapping:
            wanted = mapping[role]
            if wanted.lower() not in by_lower:
                msg = (
                    f"--columns {role}={wanted}: column '{wanted}' not found in {source} "
                    f"(columns: {shown}); pass --columns {role}=<name> with one of those"
                )
                raise WsbError(msg)
            resolved[role] = by_lower[wanted.lower()]
            continue
        for alias in aliases:
            if alias in by_lower:
                resolved[role] = by_lower[alias]
                break
    if format == "crsp":
        need = [r for r in ("permno", "date") if r not in resolved]
        if not any(r in resolved for r in RETURN_ROLES):
            need.append("ret")
    else:
        need = [r for r in roles if r not in resolved]
    if need:
        role = need[0]
        what = {
            "permno": "no PERMNO column",
            "date": "no date column",
            "ret": "no return column (RET, RETX or DLRET)",
            "symbol": "no Ticker/Symbol column",
            "close": "no adjusted-close column ('Adj Close')",
        }[role]
        hint = f"pass --columns {role}=<name>"
        if role == "close" and "close" in by_lower:
            hint = f"if '{by_lower['close']}' is already split/dividend-adjusted, pass --columns close={by_lower['close']}"
        elif format == "crsp" and role in ("symbol", "close"):  # pragma: no cover - roles differ
            hint = "pass --format ohlcv"
        if format == "crsp" and {"adj close", "close"} & set(by_lower):
            hint += " (this looks like an OHLCV file: pass --format ohlcv)"
        msg = f"{what} in {source} (columns: {shown}); {hint} or see docs/inputs.md"
        raise WsbError(msg)
    return resolved


# --- reading ---------------------------------------------------------------------------------


def read_raw(
    path: str | Path,
    resolved: Mapping[str, str],
    *,
    delimiter: str = ",",
    blocksize: str | int = "64MiB",
    dask_backend: str = "pandas",
) -> Any:
    """A Dask DataFrame of the resolved columns of an uncompressed CSV or a Parquet file.

    CSV columns are read as strings (CRSP letter codes would break type inference);
    :func:`normalize` parses them. ``dask_backend="cudf"`` reads straight into cuDF.
    """
    import dask
    import dask.dataframe as dd

    kind, compression = file_kind(path)
    names = list(dict.fromkeys(resolved.values()))
    with dask.config.set({"dataframe.backend": dask_backend}):
        if kind == "parquet":
            return dd.read_parquet(str(path), columns=names)
        if compression is not None:  # pragma: no cover - callers stream these instead
            msg = f"{Path(path).name} is compressed: read it with iter_compressed_csv()"
            raise ValueError(msg)
        return dd.read_csv(
            str(path), sep=delimiter, usecols=names, dtype={n: "str" for n in names},
            blocksize=blocksize, keep_default_na=False, na_values=[""],
        )


def iter_compressed_csv(
    path: str | Path,
    resolved: Mapping[str, str],
    *,
    delimiter: str = ",",
    chunk_rows: int = 2_000_000,
) -> Iterator[Any]:
    """Stream a compressed CSV as pandas frames of about ``chunk_rows`` rows (string columns).

    A ``.gz``/``.zst`` file cannot be split without decompressing it, so it is streamed
    once, in bounded memory, with pyarrow's incremental CSV reader.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    _, compression = file_kind(path)
    names = list(dict.fromkeys(resolved.values()))
    read = pcsv.ReadOptions(block_size=16 << 20)
    parse = pcsv.ParseOptions(delimiter=delimiter)
    convert = pcsv.ConvertOptions(
        include_columns=names, column_types={n: pa.string() for n in names}, strings_can_be_null=True,
    )
    stream = open_binary(path, compression)
    try:
        reader = pcsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows >= chunk_rows:
                yield pa.Table.from_batches(batches).to_pandas()
                batches, rows = [], 0
        if batches:
            yield pa.Table.from_batches(batches).to_pandas()
    except pa.ArrowInvalid as e:
        msg = f"cannot parse {Path(path).name} as CSV: {e}; check the delimiter and the header line"
        raise WsbError(msg) from e
    finally:
        stream.close()


# --- normalising one partition ---------------------------------------------------------------


def normalize(
    frame: Any, resolved: Mapping[str, str], *, format: str = "crsp", source: str = "the input"
) -> Any:
    """Parse one partition of raw columns into the panel the volatility kernel reads.

    Parameters
    ----------
    frame
        pandas or cuDF frame holding the resolved columns (strings or already typed).
    resolved
        ``{role: column}`` from :func:`resolve_columns`.
    format
        ``crsp`` -> ``permno, date, ret, ret_source``; ``ohlcv`` -> ``permno, date, close``.
        ``ret_source`` (int8) says which column gave the return: 0 RET, 1 RETX, 2 DLRET,
        -1 none (missing).

    Raises
    ------
    WsbError
        On a PERMNO that is not an integer or a date that is not a date.
    """
    xdf = frame_module(frame)
    out = xdf.DataFrame(index=frame.index)
    date = _to_dates(frame[resolved["date"]])
    _check_parsed(frame[resolved["date"]], date, "date", resolved["date"], source,
                  "expected YYYY-MM-DD or YYYYMMDD")
    if format == "ohlcv":
        out["permno"] = _symbol_ids(frame[resolved["symbol"]])
        out["date"] = date
        close = _to_float(frame[resolved["close"]])
        # A non-positive price cannot make a return.
        out["close"] = close.where(close > 0)
        return out.reset_index(drop=True)
    permno = _to_float(frame[resolved["permno"]])
    bad = permno.isna() | (permno != permno.round())
    if bool(bad.any()):
        example = _first(frame[resolved["permno"]][bad])
        msg = (
            f"column '{resolved['permno']}' of {source} holds {example!r}, which is not an integer "
            f"PERMNO; fix the file or map another column with --columns permno=<name>"
        )
        raise WsbError(msg)
    out["permno"] = permno.astype("int64")
    out["date"] = date
    ret = source_code = None
    for code, role in enumerate(RETURN_ROLES):
        if role not in resolved:
            continue
        column = frame[resolved[role]]
        if ret is None:
            ret = _valid_return(_to_float(column))
            source_code = ret.notna().astype("int8") * (code + 1) - 1
            continue
        missing = ret.isna()
        if not bool(missing.any()):
            break
        # Parse a fallback column only where the return is still missing (it is rare).
        fallback = _valid_return(_to_float(column[missing])).dropna()
        ret = ret.fillna(fallback)  # aligned on the index: fills those rows only
        source_code = source_code.where(~(missing & ret.notna()), code)
    out["ret"] = ret.astype("float64")
    out["ret_source"] = source_code.astype("int8")
    return out.reset_index(drop=True)


def _valid_return(value: Any) -> Any:
    """Finite and >= -1 (a simple return cannot be below -100%); NaN/inf compare False."""
    return value.where((value >= -1.0) & (value < float("inf")))


def _check_parsed(raw: Any, parsed: Any, role: str, column: str, source: str, expected: str) -> None:
    bad = parsed.isna()
    if bool(bad.any()):
        example = _first(raw[bad])
        msg = (
            f"column '{column}' of {source} holds {example!r}, which is not a {role} ({expected}); "
            f"fix the file or map another column with --columns {role}=<name>"
        )
        raise WsbError(msg)


def _first(series: Any) -> Any:
    value = series.head(1)
    value = value.to_pandas() if is_gpu_frame(value) else value
    return None if len(value) == 0 else (None if value.isna().iloc[0] else value.iloc[0])


def symbol_id(symbol: str) -> int:
    """The stable integer id (``permno``) of an OHLCV symbol.

    The first 8 bytes of the BLAKE2b digest of the stripped, upper-cased UTF-8 symbol,
    shifted right by one bit: a non-negative int64, identical in every run, file and
    machine. Two of 30,000 symbols collide with probability about 5e-11.

    >>> symbol_id("GME")
    5880126692409098232
    >>> symbol_id(" gme ") == symbol_id("GME")
    True
    """
    digest = hashlib.blake2b(symbol.strip().upper().encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# --- where pandas and cuDF differ --------------------------------------------------------------


def _symbol_ids(symbols: Any) -> Any:
    """Map a symbol column to :func:`symbol_id` values (hashing each distinct symbol once)."""
    xdf = frame_module(symbols)
    if bool(symbols.isna().any()):
        msg = "a row has an empty Ticker/Symbol; fix the file or map another column with --columns symbol=<name>"
        raise WsbError(msg)
    distinct = symbols.drop_duplicates()
    host = distinct.to_pandas() if is_gpu_frame(distinct) else distinct
    ids = [symbol_id(str(s)) for s in host.tolist()]
    table = xdf.DataFrame({"symbol": distinct.reset_index(drop=True), "permno": xdf.Series(ids, dtype="int64")})
    keyed = xdf.DataFrame({"symbol": symbols, "row": xdf.Series(range(len(symbols)), index=symbols.index)})
    merged = keyed.merge(table, on="symbol", how="left").sort_values("row")
    result = merged["permno"]
    result.index = symbols.index
    return result.astype("int64")


def _to_float(values: Any) -> Any:
    """Numbers from strings (or numbers): anything that is not a number becomes missing.

    >>> import pandas as pd
    >>> _to_float(pd.Series(["0.01", "C", "", None, "-1e-2", " 2 "])).tolist()
    [0.01, nan, nan, nan, -0.01, 2.0]
    """
    if is_gpu_frame(values):
        import cudf

        if values.dtype.kind in "biuf":
            return values.astype("float64")
        return cudf.to_numeric(values.str.strip(), errors="coerce").astype("float64")
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.dtype.kind in "biuf":
        return values.astype("float64")
    arr = pa.array(values.astype("str").array if values.dtype != "str" else values.array)
    arr = pc.cast(arr, pa.string())
    ok = pc.fill_null(pc.match_substring_regex(arr, _NUMBER), False)
    parsed = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, arr, pa.scalar(None, pa.string()))), pa.float64())
    return pd.Series(parsed.to_numpy(zero_copy_only=False).astype(np.float64), index=values.index)


def _to_dates(values: Any) -> Any:
    """Dates (``datetime64[s]`` at midnight) from ``YYYY-MM-DD``, ``YYYYMMDD`` (text or
    integer), or a date/datetime column; unparseable values become missing.

    >>> import pandas as pd
    >>> [str(d.date()) for d in _to_dates(pd.Series(["2020-01-02", "20200103", "2020-01-06 00:00:00"]))]
    ['2020-01-02', '2020-01-03', '2020-01-06']
    """
    kind = values.dtype.kind
    if kind == "M":
        return values.astype("datetime64[s]").dt.floor("D")
    if is_gpu_frame(values):
        import cudf

        text = values.astype("str") if kind in "iu" else values.str.strip()
        text = text.str.replace("-", "", regex=False).str.replace("/", "", regex=False).str.slice(0, 8)
        return cudf.to_datetime(text, format="%Y%m%d", errors="coerce").astype("datetime64[s]")
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind == "O":
        sample = values.dropna().head(1).tolist()
        if sample and not isinstance(sample[0], str):  # datetime.date objects (Parquet date32)
            return pd.to_datetime(values, errors="coerce").astype("datetime64[s]").dt.floor("D")
    text = values.astype("str") if kind in "iu" else values
    arr = pc.cast(pa.array(text.array if text.dtype == "str" else text.astype("str").array), pa.string())
    arr = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(arr), 0, 10)
    arr = pc.replace_substring(pc.replace_substring(arr, "-", ""), "/", "")
    parsed = pc.strptime(arr, format="%Y%m%d", unit="s", error_is_null=True)
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index).astype("datetime64[s]")
