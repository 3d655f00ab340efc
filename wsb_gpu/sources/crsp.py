"""Daily stock files: CRSP daily (as exported from WRDS) and Yahoo-style OHLCV.

Reading happens in three steps, so that a bad file fails in a second with a one-line
message instead of minutes into a Dask computation:

1. :func:`input_columns` reads only the header (CSV, compressed CSV) or the schema
   (Parquet) of the file.
2. :func:`resolve_columns` matches the roles this stage needs (``permno``, ``date``,
   ``ret`` ... or ``date``, ``symbol``, ``close``) to the file's columns, case-insensitively,
   through known aliases and the user's ``--columns role=name`` mapping, and raises a
   :class:`~wsb_gpu.errors.WsbError` listing the columns found when a role is missing.
3. The file is read in pieces as Arrow tables: :func:`csv_ranges` + :func:`read_csv_range`
   (an uncompressed CSV cut into ~64 MiB byte ranges at line ends, parsed independently and
   in parallel), :func:`iter_csv_stream` (a bounded-memory stream for ``.gz``/``.zst``/
   ``.bz2``/``.xz`` CSV, which cannot be split without decompressing), or
   :func:`parquet_pieces` + :func:`read_parquet_piece` (groups of row groups). CSV values
   are read as text (letter codes would break type inference), dates and symbols
   dictionary-encoded.
4. :func:`parse_table` turns a piece into NumPy arrays: ``permno: int64``, ``date: int32``
   (days since 1970-01-01) and either ``ret: float64`` + ``ret_source: int8`` (CRSP) or
   ``close: float64`` (OHLCV).

Return selection (CRSP): the first of ``RET``, ``RETX``, ``DLRET`` that parses as a finite
number not below -1 (a simple return cannot lose more than 100%; CRSP's numeric missing
codes -66, -77, -88, -99 are thereby missing too). Letter codes (``B``, ``C`` ...) and
empty strings are missing. ``DLRET`` is a fallback, never compounded into a present
``RET``. A row whose return is missing stays in the panel.

OHLCV ids: a symbol's ``permno`` is :func:`symbol_id` of its upper-cased symbol, a
deterministic 63-bit hash, so it is the same in every run, every file and on every machine.

Parsing is vectorised pyarrow compute on both backends (the GPU backend sorts and computes
on the GPU afterwards): numbers by Arrow's string cast after blanking letter codes (the exact
number pattern runs only on a piece where that cast fails), dates once per distinct value
(a CRSP file has a few thousand distinct dates), OHLCV symbols hashed once per distinct symbol.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import lzma
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import zstandard

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
        return gzip.open(path, "rb")
    if compression == "bz2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")

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
            hint = (
                f"if '{by_lower['close']}' is already split/dividend-adjusted, pass --columns close={by_lower['close']}"
            )
        if format == "crsp" and {"adj close", "close"} & set(by_lower):
            hint += " (this looks like an OHLCV file: pass --format ohlcv)"
        msg = f"{what} in {source} (columns: {shown}); {hint} or see docs/inputs.md"
        raise WsbError(msg)
    return resolved


# --- reading: pieces of the file as Arrow tables ----------------------------------------------

BLOCK_BYTES = 64 << 20
"""Bytes of an uncompressed CSV per piece (~1M CRSP rows)."""
CHUNK_ROWS = 1 << 20
"""Rows per piece of a compressed CSV or a Parquet input."""


def csv_ranges(path: str | Path, block_bytes: int | None = None) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of an uncompressed CSV's data lines (header excluded), each
    about ``block_bytes`` (default :data:`BLOCK_BYTES`) long and cut at line ends, so each can
    be parsed on its own.

    Like ``dask.dataframe.read_csv``, this assumes no quoted value holds a line break (CRSP
    and Yahoo files have none).
    """
    block_bytes = block_bytes or BLOCK_BYTES
    size = Path(path).stat().st_size
    ranges = []
    with open(path, "rb") as f:
        f.readline()
        start = f.tell()
        while start < size:
            f.seek(min(start + block_bytes, size))
            if f.tell() < size:
                f.readline()  # finish the line the block boundary falls in
            end = f.tell()
            ranges.append((start, end))
            start = end
    return ranges


def read_csv_range(
    path: str | Path, start: int, end: int, *, found: list[str], resolved: Mapping[str, str], delimiter: str = ","
) -> Any:
    """The resolved columns of the data lines in bytes ``[start, end)`` of a CSV, as an Arrow table.

    Values are read as text (CRSP letter codes would break type inference); dates and
    symbols dictionary-encoded, so that each distinct value is parsed once.
    """

    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        # 16 MiB parse blocks (default 1 MiB): fewer, larger chunks, still several per thread pool.
        read = pcsv.ReadOptions(column_names=found, block_size=16 << 20)
        return pcsv.read_csv(
            pa.py_buffer(data),
            read_options=read,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=_csv_convert(resolved),
        )
    except pa.ArrowInvalid as e:
        raise _csv_error(path, e) from e


def iter_csv_stream(
    path: str | Path,
    *,
    found: list[str],
    resolved: Mapping[str, str],
    delimiter: str = ",",
    chunk_rows: int | None = None,
) -> Iterator[Any]:
    """Arrow tables of about ``chunk_rows`` (default :data:`CHUNK_ROWS`) rows streamed from a
    compressed CSV.

    A ``.gz``/``.zst`` file cannot be split without decompressing it, so it is read once,
    in bounded memory, with pyarrow's incremental (multi-threaded) CSV reader.
    """

    chunk_rows = chunk_rows or CHUNK_ROWS
    _, compression = file_kind(path)
    stream = open_binary(path, compression)
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(column_names=found, skip_rows=1, block_size=16 << 20),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=_csv_convert(resolved),
        )
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows >= chunk_rows:
                yield pa.Table.from_batches(batches)
                batches, rows = [], 0
        if batches:
            yield pa.Table.from_batches(batches)
    except pa.ArrowInvalid as e:
        raise _csv_error(path, e) from e
    finally:
        stream.close()


def parquet_pieces(path: str | Path, chunk_rows: int | None = None) -> list[tuple[str, list[int]]]:
    """``(file, row groups)`` pieces of about ``chunk_rows`` (default :data:`CHUNK_ROWS`) rows
    of a Parquet file or folder."""

    chunk_rows = chunk_rows or CHUNK_ROWS
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(("_", "."))) if p.is_dir() else [p]
    pieces = []
    for f in files:
        meta = pq.ParquetFile(f).metadata
        groups, rows = [], 0
        for i in range(meta.num_row_groups):
            groups.append(i)
            rows += meta.row_group(i).num_rows
            if rows >= chunk_rows:
                pieces.append((str(f), groups))
                groups, rows = [], 0
        if groups:
            pieces.append((str(f), groups))
    return pieces


def read_parquet_piece(path: str, row_groups: list[int], *, resolved: Mapping[str, str]) -> Any:
    """The resolved columns of some row groups of a Parquet file, as an Arrow table."""

    return pq.ParquetFile(path).read_row_groups(row_groups, columns=list(dict.fromkeys(resolved.values())))


def sample_table(
    path: str | Path, *, found: list[str], resolved: Mapping[str, str], delimiter: str = ",", rows: int = 20_000
) -> pa.Table:
    """About the first ``rows`` data rows of the file (CSV, compressed CSV or Parquet), read
    on the driver: what :func:`check_sample` parses before any task is sent out."""
    kind, compression = file_kind(path)
    if kind == "csv" and compression is None:
        first = csv_ranges(path, block_bytes=1 << 20)[:1]
        if not first:
            return pa.table({name: pa.array([], pa.string()) for name in dict.fromkeys(resolved.values())})
        return read_csv_range(path, *first[0], found=found, resolved=resolved, delimiter=delimiter)
    if kind == "csv":
        return next(
            iter_csv_stream(path, found=found, resolved=resolved, delimiter=delimiter, chunk_rows=rows), None
        ) or pa.table({name: pa.array([], pa.string()) for name in dict.fromkeys(resolved.values())})
    pieces = parquet_pieces(path, chunk_rows=rows)
    return read_parquet_piece(pieces[0][0], pieces[0][1][:1], resolved=resolved).slice(0, rows) if pieces else None


def check_sample(
    path: str | Path, *, resolved: Mapping[str, str], found: list[str], delimiter: str = ",", format: str = "crsp"
) -> None:
    """Parse the first rows of the file on the driver, so that a bad date or PERMNO format
    fails at once in one line, not in a distributed task."""
    table = sample_table(path, found=found, resolved=resolved, delimiter=delimiter)
    if table is not None and table.num_rows:
        parse_table(table, resolved, format=format, source=Path(path).name)


def _csv_convert(resolved: Mapping[str, str]) -> Any:
    keyed = {resolved[r] for r in ("date", "symbol") if r in resolved}
    names = list(dict.fromkeys(resolved.values()))
    types = {n: pa.dictionary(pa.int32(), pa.string()) if n in keyed else pa.string() for n in names}
    # Only the empty string is missing: "NA" or "null" in a PERMNO column should be reported as such.
    return pcsv.ConvertOptions(include_columns=names, column_types=types, strings_can_be_null=True, null_values=[""])


def _csv_error(path: str | Path, e: Exception) -> WsbError:
    return WsbError(f"cannot parse {Path(path).name} as CSV: {e}; check the delimiter and the header line")


# --- parsing one piece -----------------------------------------------------------------------


def parse_table(
    table: pa.Table, resolved: Mapping[str, str], *, format: str = "crsp", source: str = "the input"
) -> dict[str, Any]:
    """Parse the raw columns of one piece into the NumPy arrays of the panel.

    Parameters
    ----------
    table
        pyarrow Table holding the resolved columns (text, dictionary-encoded text, or
        already typed, e.g. from Parquet).
    resolved
        ``{role: column}`` from :func:`resolve_columns`.
    format
        ``crsp`` -> ``permno`` (int64), ``date`` (int32 days since 1970-01-01), ``ret``
        (float64, NaN = missing), ``ret_source`` (int8: which column gave the return, 0 RET,
        1 RETX, 2 DLRET, -1 none); ``ohlcv`` -> ``permno, date, close``.
    source
        The file name, for messages.

    Raises
    ------
    WsbError
        On a PERMNO that is not an integer or a date that is not a date.

    Examples
    --------
    >>> import pyarrow as pa
    >>> t = pa.table({"PERMNO": ["7", "7"], "date": ["2020-01-02", "20200103"], "RET": ["C", "0.01"],
    ...               "DLRET": ["-0.3", ""]})
    >>> out = parse_table(t, {"permno": "PERMNO", "date": "date", "ret": "RET", "dlret": "DLRET"})
    >>> out["date"].tolist(), out["ret"].tolist(), out["ret_source"].tolist()
    ([18263, 18264], [-0.3, 0.01], [2, 0])
    """

    day = _days(table.column(resolved["date"]), resolved["date"], source)
    if format == "ohlcv":
        close = _numbers(table.column(resolved["close"]))
        close[~(close > 0)] = np.nan  # a non-positive price cannot make a return
        return {"permno": _symbol_ids(table.column(resolved["symbol"])), "date": day, "close": close}
    permno = _permnos(table.column(resolved["permno"]), resolved["permno"], source)
    ret = code = None
    for k, role in enumerate(RETURN_ROLES):
        if role not in resolved:
            continue
        column = table.column(resolved[role])
        if ret is None:
            ret = _valid_return(_numbers(column))
            code = np.where(np.isnan(ret), -1, k).astype(np.int8)
            continue
        missing = np.flatnonzero(np.isnan(ret))
        if not len(missing):
            break
        # Parse a fallback column only where the return is still missing (it is rare).
        fallback = _valid_return(_numbers(column.take(missing)))
        filled = missing[~np.isnan(fallback)]
        ret[filled] = fallback[~np.isnan(fallback)]
        code[filled] = k
    return {"permno": permno, "date": day, "ret": ret, "ret_source": code}


def _valid_return(value: Any) -> Any:
    """NaN where not finite or below -1 (a simple return cannot lose more than 100%)."""

    with np.errstate(invalid="ignore"):
        value[~((value >= -1.0) & (value < np.inf))] = np.nan
    return value


def _numbers(values: Any) -> Any:
    """float64 NumPy values of an Arrow column; anything that is not a number is NaN.

    Text goes through Arrow's cast after blanking the values that are obviously not
    numbers (letter codes, ``""``); only when that cast still fails (stray spaces, odd
    tokens) does the slower exact pattern match run.

    >>> import pyarrow as pa
    >>> _numbers(pa.chunked_array([["0.01", "C", "", None, "-1e-2", " 2 "]])).tolist()
    [0.01, nan, nan, nan, -0.01, 2.0]
    """

    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        if pa.types.is_null(values.type):
            return np.full(len(values), np.nan)
        return np.array(pc.cast(values, pa.float64()).to_numpy(), dtype=np.float64)  # a writable copy
    blank = pa.scalar(None, values.type)
    text = pc.if_else(pc.or_kleene(pc.utf8_is_alpha(values), pc.equal(values, "")), blank, values)
    try:
        parsed = pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        ok = pc.fill_null(pc.match_substring_regex(values, _NUMBER), False)
        parsed = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, values, blank)), pa.float64())
    return np.array(parsed.to_numpy(), dtype=np.float64)  # a writable copy


def _permnos(values: Any, column: str, source: str) -> Any:
    """int64 NumPy PERMNOs; a value that is not an integer is an error naming it."""

    if values.null_count == 0 and not pa.types.is_floating(values.type):
        try:
            return pc.cast(values, pa.int64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # " 10001", "10001.0", "ABC": look closer
    number = _numbers(values)
    bad = np.isnan(number) | (number != np.round(number))
    if bad.any():
        example = values[int(np.flatnonzero(bad)[0])].as_py()
        msg = (
            f"column '{column}' of {source} holds {example!r}, which is not an integer "
            f"PERMNO; fix the file or map another column with --columns permno=<name>"
        )
        raise WsbError(msg)
    return number.astype(np.int64)


def _days(values: Any, column: str, source: str) -> Any:
    """int32 days since 1970-01-01 of a date column: ``YYYY-MM-DD``, ``YYYYMMDD`` (text or
    integer), or a date/timestamp column. Text is parsed once per distinct value.

    >>> import pyarrow as pa
    >>> _days(pa.chunked_array([["2020-01-02", "20200103", "2020-01-06 00:00:00", "2020-01-02"]]), "d", "f").tolist()
    [18263, 18264, 18267, 18263]
    """

    if values.null_count:
        _bad_date(None, column, source)
    if pa.types.is_temporal(values.type):
        seconds = pc.cast(pc.cast(values, pa.timestamp("s"), safe=False), pa.int64()).to_numpy()
        return np.floor_divide(seconds, 86400).astype(np.int32)
    distinct, indices = _distinct(values)
    text = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(pc.cast(distinct, pa.string())), 0, 10)
    text = pc.replace_substring(pc.replace_substring(text, "-", ""), "/", "")
    parsed = pc.strptime(text, format="%Y%m%d", unit="s", error_is_null=True)
    if parsed.null_count:
        bad = np.flatnonzero(parsed.is_null().to_numpy(zero_copy_only=False))[0]
        _bad_date(distinct[int(bad)].as_py(), column, source)
    day = (pc.cast(parsed, pa.int64()).to_numpy() // 86400).astype(np.int32)
    return day[indices]


def _bad_date(example: Any, column: str, source: str) -> None:
    msg = (
        f"column '{column}' of {source} holds {example!r}, which is not a date (expected YYYY-MM-DD "
        f"or YYYYMMDD); fix the file or map another column with --columns date=<name>"
    )
    raise WsbError(msg)


def _symbol_ids(values: Any) -> Any:
    """int64 NumPy :func:`symbol_id` values of a symbol column (each distinct symbol hashed once)."""

    if values.null_count:
        msg = "a row has an empty Ticker/Symbol; fix the file or map another column with --columns symbol=<name>"
        raise WsbError(msg)
    distinct, indices = _distinct(values)
    ids = np.array([symbol_id(str(s)) for s in distinct.to_pylist()], dtype=np.int64)
    return ids[indices]


def _distinct(values: Any) -> tuple[Any, Any]:
    """The distinct values of a column without nulls (Arrow) and each row's index into them (NumPy)."""

    if pa.types.is_dictionary(values.type):
        encoded = values.unify_dictionaries()
    else:
        encoded = pc.dictionary_encode(values)
    if encoded.num_chunks == 0:
        return pa.array([], pa.string()), np.empty(0, dtype=np.int64)
    indices = [c.indices.to_numpy() for c in encoded.chunks]
    return encoded.chunk(0).dictionary, np.concatenate(indices)


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
