"""Stage 3: the realised-volatility panel from CRSP daily (or OHLCV) files.

For each stock (``permno``) and window ``w`` in 1, 5, 22, 63 trading rows::

    vol_w(t) = sqrt(sum_{k=0}^{w-1} ret_{t-k}^2)      y_w(t) = sqrt(sum_{k=1}^{w} ret_{t+k}^2) = vol_w(t+w)

over the stock's own rows in date order: no mean, no annualisation. ``vol_w`` is NaN when
the stock has fewer than ``w`` rows up to ``t`` or any return in the window is missing.
``y_w`` is the realised volatility of the next ``w`` rows (the HAR literature's h-day-ahead
target, on the scale of ``vol_w``): it shares no return with ``vol_w(t)`` and is NaN on the
stock's last ``w`` rows. (The seed project's ``y_w`` was ``vol_w`` of the next row, a
window ending at ``t+1`` that shares ``w - 1`` returns with ``vol_w(t)``: for ``w > 1`` most
of it is known at ``t``.)

The kernel
----------
:func:`volatility_kernel` works on one partition holding whole stock histories. It is
vectorised over the whole partition (no groupby, no per-stock loop) and does not use a
running cumulative sum: ``cumsum(r^2)[t] - cumsum(r^2)[t-w]`` cancels catastrophically
over long histories (a 1-day window of a tiny return would be the difference of two
sums of thousands of squares). Instead :func:`window_sums` builds power-of-two block
sums by doubling (``P_2m[t] = P_m[t] + P_m[t-m]``) and adds the blocks that make up each
window (63 = 32+16+8+4+2+1): about a dozen whole-array additions for all four windows,
all of non-negative terms, so the relative error is at most ~12 ulp (the direct sequential
sum of 63 terms has up to 63 ulp). Missing returns are NaN and NaN propagates through the
additions, so a window holding one is NaN without a separate missing-count pass. Windows
that would cross into the previous stock are masked by comparing ``permno[t-w+1]`` with
``permno[t]`` (rows are sorted by permno, date).

The arithmetic runs on NumPy or CuPy arrays taken from the pandas or cuDF frame; the
places where the two libraries differ are the small helpers at the bottom of the module.

The stage
---------
:func:`build_volatility` is a two-phase, file-based sort (no Dask DataFrame shuffle):

1. **Stage** (one task per input piece: a ~64 MiB byte range of a CSV, a group of Parquet
   row groups, or a chunk of a compressed CSV's stream): read with pyarrow, parse
   (:func:`wsb_gpu.sources.crsp.parse_table`), sort by (permno, date) and write the piece
   as an Arrow IPC *run* in ``_staging``; return its distinct permnos and row counts.
2. **Cut**: from those counts, :func:`partition_ranges` cuts the permnos into contiguous
   ranges of ~``partition_rows`` rows (a stock is never split).
3. **Compute** (one task per range): slice the range out of every run (memory-mapped,
   binary search: the runs are sorted), merge-sort the slices (a stable sort of sorted runs),
   drop identical duplicate (permno, date) rows (conflicting ones are an error), compute
   OHLCV returns if needed, run :func:`panel_volatility` (NumPy, or CuPy on the GPU backend)
   and write ``part.NNNNN.parquet`` sorted by permno, date.
4. Write the manifest; the dataset is renamed into place.

Memory is bounded by one piece (phase 1) or one partition (phase 3) per worker, never the
whole panel.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import dask
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wsb_gpu.backend import Backend, array_namespace, column_array, frame_from_arrays, to_numpy
from wsb_gpu.config import VolatilityParams
from wsb_gpu.dates import day_number, iso_day
from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import Manifest
from wsb_gpu.progress import compute
from wsb_gpu.sources import crsp as src
from wsb_gpu.stages.base import StageResult

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Array, Column, Frame

WINDOWS = (1, 5, 22, 63)
OUTPUT_COLUMNS = ["permno", "date", "ret"] + [f"vol_{w}" for w in WINDOWS] + [f"y_{w}" for w in WINDOWS]
RETURN_SOURCES = ("RET", "RETX", "DLRET")
NAN = float("nan")


# --- the kernel ----------------------------------------------------------------------------


def volatility_kernel(frame: Frame, windows: Sequence[int] = WINDOWS) -> Frame:
    """Rolling realised volatility and next-row targets of one partition.

    Parameters
    ----------
    frame
        pandas or cuDF frame with ``permno`` (integer), ``date`` (datetime) and ``ret``
        (float, NaN = missing), holding whole stock histories in any row order and without
        duplicate (permno, date) rows.
    windows
        Window lengths in rows.

    Returns
    -------
    frame
        Same kind as ``frame``: ``permno, date, ret, vol_<w>..., y_<w>...`` sorted by
        permno, date, with a fresh RangeIndex.

    Examples
    --------
    >>> import pandas as pd
    >>> f = pd.DataFrame({"permno": [1, 1, 1], "date": pd.to_datetime(["2020-01-03", "2020-01-01", "2020-01-02"]),
    ...                   "ret": [0.04, 0.03, None]})
    >>> volatility_kernel(f, windows=(1, 2))[["ret", "vol_1", "vol_2", "y_1"]].round(6).values.tolist()
    [[0.03, 0.03, nan, nan], [nan, nan, nan, 0.04], [0.04, 0.04, nan, nan]]
    """
    permno = column_array(frame["permno"], "int64")
    day = _day_numbers(frame["date"])
    ret = column_array(frame["ret"], "float64", na_value=np.nan)
    order = sort_order(permno, day)
    if order is not None:
        xp = array_namespace(permno)
        permno, day, ret = (xp.take(a, order) for a in (permno, day, ret))
    columns = {"permno": permno, "date": day, **panel_volatility(permno, ret, windows)}
    return frame_from_arrays(frame, columns, day_columns=["date"])


def panel_volatility(permno: Array, ret: Array, windows: Sequence[int] = WINDOWS) -> dict[str, Array]:
    """``ret, vol_<w>..., y_<w>...`` arrays of a panel sorted by permno, date.

    The array form of :func:`volatility_kernel`, which the stage runs on each partition;
    written against the array API standard (NumPy or CuPy arrays in, the same out).

    >>> import numpy as np
    >>> out = panel_volatility(np.array([1, 1, 2]), np.array([0.03, -0.04, 0.05]), windows=(1, 2))
    >>> out["vol_2"].tolist(), out["y_1"].tolist()
    ([nan, 0.05, nan], [0.04, nan, nan])
    >>> out = panel_volatility(np.array([1, 1, 1, 1]), np.array([0.03, -0.04, 0.0, 0.03]), windows=(1, 2))
    >>> out["y_2"].tolist()  # sqrt(0.04² + 0²), sqrt(0² + 0.03²), then too few rows ahead
    [0.04, 0.03, nan, nan]
    """
    xp = array_namespace(permno, ret)
    n = ret.shape[0]
    sums = window_sums(ret * ret, windows)
    columns: dict[str, Array] = {"ret": ret}
    if n == 0:
        empty = {f"{p}_{w}": xp.empty(0, dtype=ret.dtype) for p in ("vol", "y") for w in windows}
        return {"ret": ret, **empty}
    # The position of each row within its stock: its first w-1 rows have windows reaching
    # into the previous stock (or too few rows) and are masked.
    first = xp.concat([xp.ones(1, dtype=xp.bool), permno[1:] != permno[:-1]])
    stock = xp.cumulative_sum(xp.astype(first, xp.int64)) - 1
    position = xp.arange(n, dtype=xp.int64) - xp.take(xp.nonzero(first)[0], stock)
    for w in windows:
        vol = xp.sqrt(sums[w])
        if w > 1:
            vol = xp.where(position < w - 1, NAN, vol)
        columns[f"vol_{w}"] = vol
        columns[f"y_{w}"] = _ahead(vol, permno, w)
    return {k: columns[k] for k in ("ret", *(f"vol_{w}" for w in windows), *(f"y_{w}" for w in windows))}


def _ahead(vol: Array, permno: Array, w: int) -> Array:
    """``vol[t + w]`` where row ``t + w`` belongs to the same stock as row ``t``, else NaN."""
    xp = array_namespace(vol)
    n = vol.shape[0]
    k = min(w, n)
    tail = xp.full(k, NAN, dtype=vol.dtype)
    if n <= w:
        return tail
    same = permno[w:] == permno[:-w]
    return xp.concat([xp.where(same, vol[w:], NAN), tail])


def window_sums(x: Array, windows: Sequence[int]) -> dict[int, Array]:
    """Trailing window sums ``S_w[t] = x[t-w+1] + ... + x[t]`` for each ``w``.

    Built from power-of-two block sums by doubling, so each element of the result is a
    sum of non-negative terms (for ``x >= 0``) over at most ``2 log2(w)`` levels: no
    cancellation, relative error a few ulp. ``S_w[t]`` is NaN for ``t < w - 1`` and
    wherever ``x`` is NaN inside the window. Array API (NumPy, CuPy).

    >>> import numpy as np
    >>> window_sums(np.array([1.0, 2, 3, 4, 5]), (1, 3))[3].tolist()
    [nan, nan, 6.0, 9.0, 12.0]
    >>> window_sums(np.array([1.0, np.nan, 3, 4, 5]), (2,))[2].tolist()
    [nan, nan, nan, 7.0, 9.0]
    """
    windows = sorted({int(w) for w in windows})
    if not windows or windows[0] < 1:
        msg = f"window lengths must be positive integers, got {windows}"
        raise ValueError(msg)
    acc: dict[int, Array] = {}
    covered = dict.fromkeys(windows, 0)
    block, m, top = x, 1, windows[-1]
    while m <= top:
        for w in windows:
            if w & m:
                # Block P_m ending covered[w] rows back extends the window further into the past.
                if w in acc:
                    _add_lagged(acc[w], block, covered[w])
                else:
                    acc[w] = _lagged(block, covered[w])
                covered[w] += m
        if 2 * m <= top:
            block = _doubled(block, m)
        m *= 2
    return acc


def _lagged(a: Array, k: int) -> Array:
    """A new array: ``a`` shifted ``k`` places later, NaN in front."""
    xp = array_namespace(a)
    if k == 0:
        return xp.asarray(a, copy=True)
    n = a.shape[0]
    out = xp.empty_like(a)
    out[: min(k, n)] = NAN
    if k < n:
        out[k:] = a[: n - k]
    return out


def _add_lagged(acc: Array, a: Array, k: int) -> None:
    """``acc += a`` shifted ``k`` places later (in place), NaN in front."""
    n = a.shape[0]
    if k < n:
        acc[k:] = acc[k:] + a[: n - k]
    acc[: min(k, n)] = NAN


def _doubled(a: Array, m: int) -> Array:
    """``P_2m`` from ``P_m``: a new array ``a[t] + a[t-m]``."""
    xp = array_namespace(a)
    n = a.shape[0]
    out = xp.empty_like(a)
    out[: min(m, n)] = NAN
    if m < n:
        out[m:] = a[m:] + a[: n - m]
    return out


def sort_order(permno: Array, day: Array) -> Array | None:
    """Row order sorting by (permno, day), or None when the rows are already in order.

    One stable ``argsort`` of a combined int64 key when the permno and date ranges fit in
    62 bits (always for CRSP), else two stable sorts (OHLCV hash ids: the array API has no
    ``lexsort``; sorting by day, then stably by permno, gives the same order). Stable, so of
    duplicate rows the first read stays first; NumPy's stable sort (timsort) also merges
    the already-sorted runs the stage feeds it in about linear time.

    >>> import numpy as np
    >>> sort_order(np.array([2, 1, 1]), np.array([0, 9, 3])).tolist()
    [2, 1, 0]
    """
    n = permno.shape[0]
    if n < 2:
        return None
    xp = array_namespace(permno, day)
    later = (permno[1:] > permno[:-1]) | ((permno[1:] == permno[:-1]) & (day[1:] >= day[:-1]))
    if bool(xp.all(later)):
        return None
    pmin, pmax = int(xp.min(permno)), int(xp.max(permno))
    dmin, dmax = int(xp.min(day)), int(xp.max(day))
    span = dmax - dmin + 1
    if (pmax - pmin + 1) * span < 2**62:
        return xp.argsort((permno - pmin) * span + (day - dmin), stable=True)
    by_day = xp.argsort(day, stable=True)
    return xp.take(by_day, xp.argsort(xp.take(permno, by_day), stable=True))


# --- phase 1: pieces of the input -> sorted staging runs -------------------------------------


class _RunSettings(TypedDict):
    """What every staging run of one input shares (the keywords of :func:`_stage_table`)."""

    folder: str
    resolved: Mapping[str, str]
    format: str
    source: str


def _stage_task(
    read: Callable[[], Any], *, index: int, folder: str, resolved: Mapping[str, str], format: str, source: str
) -> dict[str, Any]:
    """Read and stage one piece of the input (see :func:`_stage_table`)."""
    return _stage_table(read(), index=index, folder=folder, resolved=resolved, format=format, source=source)


def _stage_table(
    table: pa.Table, *, index: int, folder: str, resolved: Mapping[str, str], format: str, source: str
) -> dict[str, Any]:
    """Parse one piece, sort it by (permno, date) and write it as an Arrow IPC run.

    Returns the run's file, rows, and its distinct permnos with their row counts (from
    which the driver cuts the output partitions).
    """
    columns = src.parse_table(table, resolved, format=format, source=source)
    del table
    permno = columns["permno"]
    n = len(permno)
    if n == 0:
        return {"rows": 0, "file": None, "permnos": np.empty(0, np.int64), "counts": np.empty(0, np.int64)}
    order = sort_order(permno, columns["date"])
    if order is not None:
        columns = {k: v[order] for k, v in columns.items()}
        permno = columns["permno"]
    path = Path(folder) / f"run.{index:05d}.arrow"
    table = pa.table(columns)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    starts = np.flatnonzero(np.r_[True, permno[1:] != permno[:-1]])
    return {"rows": n, "file": str(path), "permnos": permno[starts], "counts": np.diff(np.r_[starts, n])}


def partition_ranges(permnos: np.ndarray, counts: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """Cut permnos into contiguous ``(first, last)`` ranges of about ``rows`` rows each.

    ``permnos``/``counts`` may repeat a permno (one entry per staging run); a stock is
    never split, so a range can exceed ``rows`` by one stock's history.

    >>> import numpy as np
    >>> partition_ranges(np.array([3, 1, 2, 1]), np.array([5, 2, 4, 2]), rows=6)
    [(1, 2), (3, 3)]
    """
    distinct, inverse = np.unique(permnos, return_inverse=True)
    total = np.bincount(inverse, weights=counts, minlength=len(distinct)).astype(np.int64)
    group = (np.cumsum(total) - total) // max(1, int(rows))
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    last = np.r_[first[1:] - 1, len(distinct) - 1]
    return [(int(distinct[a]), int(distinct[b])) for a, b in zip(first, last)]


# --- phase 2: one permno range -> one output file ---------------------------------------------


def _read_range(runs: Sequence[str], first: int, last: int) -> pa.Table:
    """The rows of permnos ``first..last`` from every staging run (memory-mapped, sliced by
    binary search: each run is sorted by permno), as one Arrow table of sorted runs."""
    slices = []
    for run in runs:
        table = pa.ipc.open_file(pa.memory_map(run)).read_all()
        permno = table.column("permno").to_numpy()
        a, b = np.searchsorted(permno, first, side="left"), np.searchsorted(permno, last, side="right")
        if b > a:
            slices.append(table.slice(a, b - a))
    return pa.concat_tables(slices).combine_chunks()


def _partition_task(
    runs: Sequence[str], first: int, last: int, *, index: int, folder: str, format: str, backend: Backend
) -> dict[str, Any]:
    """Everything one output partition does: gather, sort, dedupe, returns, kernel, write.

    The arrays go to the backend's device (CuPy on the GPU backend); the arithmetic is the
    same array-API code.
    """
    table = _read_range(runs, first, last)
    cols = backend.to_device({name: table.column(name).to_numpy() for name in table.column_names})
    del table
    value = "close" if format == "ohlcv" else "ret"
    xp = array_namespace(cols["permno"])
    rows_in = cols["permno"].shape[0]
    stats: dict[str, Any] = {"index": index, "rows_in": rows_in, "conflicts": 0, "conflict_example": None}
    order = sort_order(cols["permno"], cols["date"])
    if order is not None:
        cols = {k: xp.take(v, order) for k, v in cols.items()}
    dup, conflict = duplicate_rows(cols["permno"], cols["date"], cols[value])
    stats["duplicates"] = int(xp.count_nonzero(dup))
    stats["conflicts"] = int(xp.count_nonzero(conflict))
    if stats["conflicts"]:
        i = int(xp.nonzero(conflict)[0][0])
        a, b = float(cols[value][i - 1]), float(cols[value][i])
        stats["conflict_example"] = (
            f"PERMNO {int(cols['permno'][i])} on {iso_day(int(cols['date'][i]))}: {value} {a!r} vs {b!r}"
        )
        return stats
    if stats["duplicates"]:
        cols = {k: v[~dup] for k, v in cols.items()}
    permno, day = cols["permno"], cols["date"]
    if format == "ohlcv":
        ret = ohlcv_returns(permno, cols["close"])
    else:
        ret = cols["ret"]
        for code, name in enumerate(RETURN_SOURCES):
            stats[f"ret_from_{name}"] = int(xp.count_nonzero(cols["ret_source"] == code))
    result = {"permno": permno, "date": day, **panel_volatility(permno, ret)}
    y1, vol_long = result[f"y_{WINDOWS[0]}"], result[f"vol_{WINDOWS[-1]}"]
    name = f"part.{index:05d}.parquet"
    stats.update(
        file=name,
        rows_out=permno.shape[0],
        ret_missing=int(xp.count_nonzero(xp.isnan(ret))),
        permnos=int(xp.count_nonzero(permno[1:] != permno[:-1])) + 1,
        permno_min=int(permno[0]),
        permno_max=int(permno[-1]),
        y_rows=int(xp.count_nonzero(~xp.isnan(y1))),
        full_window_rows=int(xp.count_nonzero(~xp.isnan(vol_long))),
        date_min=iso_day(int(xp.min(day))),
        date_max=iso_day(int(xp.max(day))),
    )
    write_part(result, Path(folder) / name)
    return stats


def duplicate_rows(permno: Array, day: Array, value: Array) -> tuple[Array, Array]:
    """Masks of repeated (permno, day) rows after the first, and of those whose ``value``
    differs from the previous row (NaN equals NaN), on arrays sorted by permno, day.

    >>> import numpy as np
    >>> dup, conflict = duplicate_rows(np.array([1, 1, 1, 2]), np.array([5, 5, 5, 5]), np.array([0.1, 0.1, 0.2, 0.3]))
    >>> dup.tolist(), conflict.tolist()
    ([False, True, True, False], [False, False, True, False])
    """
    xp = array_namespace(permno, day, value)
    n = value.shape[0]
    dup = xp.zeros(n, dtype=xp.bool)
    conflict = xp.zeros(n, dtype=xp.bool)
    if n > 1:
        dup[1:] = (permno[1:] == permno[:-1]) & (day[1:] == day[:-1])
        same = (value[1:] == value[:-1]) | (xp.isnan(value[1:]) & xp.isnan(value[:-1]))
        conflict[1:] = dup[1:] & ~same
    return dup, conflict


def ohlcv_returns(permno: Array, close: Array) -> Array:
    """Simple returns ``close[t] / close[t-1] - 1`` per stock, on arrays sorted by permno,
    date; NaN on a stock's first row and next to a missing close.

    >>> import numpy as np
    >>> ohlcv_returns(np.array([1, 1, 2, 2]), np.array([10.0, 11.0, 5.0, 4.0])).round(6).tolist()
    [nan, 0.1, nan, -0.2]
    """
    xp = array_namespace(permno, close)
    ret = xp.full(close.shape[0], NAN, dtype=xp.float64)
    if close.shape[0] > 1:
        ret[1:] = xp.where(permno[1:] == permno[:-1], close[1:] / close[:-1] - 1.0, NAN)
    return ret


def write_part(columns: Mapping[str, Array], path: str | Path) -> None:
    """Write one output partition (NumPy or CuPy arrays) as Parquet, atomically.

    ``date`` (day numbers) is stored as ``date32`` and float NaN as null. Dictionary
    encoding and statistics only for ``permno``/``date``: on the float columns they cost
    more time than the writing itself and buy nothing.
    """
    arrays = {}
    for name, values in columns.items():
        values = to_numpy(values)  # CuPy -> host
        if name == "date":
            arrays[name] = pa.array(values.astype(np.int32), pa.date32())
        else:
            arrays[name] = pa.array(values, from_pandas=values.dtype.kind == "f")  # NaN -> null
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(
        pa.table(arrays),
        tmp,
        row_group_size=1 << 20,
        use_dictionary=["permno", "date"],
        write_statistics=["permno", "date"],
    )
    os.replace(tmp, path)


# --- the stage ------------------------------------------------------------------------------------


def check(inputs: Mapping[str, Path], params: VolatilityParams) -> None:
    """At the door: the file's columns resolve, and its first rows parse (on the driver)."""
    path = inputs.get("crsp")
    if path is None:
        return
    found, delimiter = src.input_columns(path)
    resolved = src.resolve_columns(found, format=params.format, columns=dict(params.columns), source=path.name)
    src.check_sample(path, resolved=resolved, found=found, delimiter=delimiter, format=params.format)


class VolatilityInputs(TypedDict):
    """The input of volatility: the CRSP daily (or OHLCV) file."""

    crsp: Path


class VolatilityFields(TypedDict):
    """The manifest fields of volatility (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    windows: list[int]
    partition_rows: int
    columns_used: dict[str, str]
    duplicates_dropped: int
    ret_missing: int
    ret_from: dict[str, int]
    permnos: int
    date_min: str
    date_max: str
    partitions: list[dict[str, Any]]


class VolatilityManifest(Manifest, VolatilityFields):
    """The manifest of the volatility dataset."""


def run(
    inputs: VolatilityInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: VolatilityParams,
    progress: bool = False,
) -> StageResult:
    """Build the volatility dataset from a CRSP daily or OHLCV file.

    Parameters
    ----------
    inputs
        ``crsp``: a CRSP daily file (CSV, ``.csv.gz``/``.zst``/``.bz2``/``.xz``, Parquet file
        or folder), or a Yahoo-style OHLCV file with ``format="ohlcv"``.
    out
        The folder to write into (its workers must see it).
    backend
        The GPU backend sorts and computes each partition with CuPy (parsing is pyarrow on
        the CPU on both backends).
    params
        ``format`` (``crsp`` | ``ohlcv``, see docs/inputs.md), ``columns`` (``{role: column}``
        overrides, e.g. ``{"ret": "my_ret"}``) and ``partition_rows`` (rows per output
        partition; None = 2 million on CPU, 20 million on GPU).

    Raises
    ------
    WsbError
        On unrecognisable columns, unparseable PERMNOs/dates, conflicting duplicate
        (permno, date) rows, or an empty input.
    """
    path = inputs["crsp"]
    fmt, columns = params.format, dict(params.columns)
    source = path.name
    found, delimiter = src.input_columns(path)
    resolved = src.resolve_columns(found, format=fmt, columns=columns, source=source)
    kind, compression = src.file_kind(path)
    partition_rows = params.partition_rows or backend.partition_rows
    staging = out / "_staging"
    staging.mkdir()
    # 1. pieces of the input -> parsed, sorted runs (permno, date, ret, ret_source | close)
    kw: _RunSettings = {"folder": str(staging), "resolved": resolved, "format": fmt, "source": source}
    if kind == "csv" and compression is not None:
        reads = src.iter_csv_stream(path, found=found, resolved=resolved, delimiter=delimiter)
        runs = [_stage_table(table, index=i, **kw) for i, table in enumerate(reads)]
    else:
        if kind == "csv":
            pieces = [
                partial(src.read_csv_range, str(path), a, b, found=found, resolved=resolved, delimiter=delimiter)
                for a, b in src.csv_ranges(path)
            ]
        else:
            pieces = [
                partial(src.read_parquet_piece, f, groups, resolved=resolved) for f, groups in src.parquet_pieces(path)
            ]
        tasks = [dask.delayed(_stage_task)(read, index=i, **kw) for i, read in enumerate(pieces)]
        runs = list(compute(*tasks, label="volatility: parse", show=progress))
    rows_in = sum(r["rows"] for r in runs)
    if rows_in == 0:
        msg = f"{source} holds no data rows; pass a file with at least one row"
        raise WsbError(msg)
    # 2. permno ranges of ~partition_rows rows; each reads its slice of every run
    ranges = partition_ranges(
        np.concatenate([r["permnos"] for r in runs]), np.concatenate([r["counts"] for r in runs]), partition_rows
    )
    files = [r["file"] for r in runs if r["file"]]
    tasks = [
        dask.delayed(_partition_task)(files, first, last, index=i, folder=str(out), format=fmt, backend=backend)
        for i, (first, last) in enumerate(ranges)
    ]
    stats = list(compute(*tasks, label="volatility: compute", show=progress))
    shutil.rmtree(staging)
    conflicts = sum(s["conflicts"] for s in stats)
    if conflicts:
        example = next(s["conflict_example"] for s in stats if s["conflict_example"])
        value = "close" if fmt == "ohlcv" else "return"
        msg = (
            f"{conflicts} duplicate (PERMNO, date) row(s) in {source} disagree on the {value}, "
            f"e.g. {example}; remove the wrong rows (identical duplicates are dropped and reported)"
        )
        raise WsbError(msg)
    return StageResult(
        rows_in=int(rows_in),
        rows_out=sum(s["rows_out"] for s in stats),
        fields=VolatilityFields(
            windows=list(WINDOWS),
            partition_rows=int(partition_rows),
            columns_used=dict(resolved),
            duplicates_dropped=sum(s["duplicates"] for s in stats),
            ret_missing=sum(s["ret_missing"] for s in stats),
            ret_from={name: sum(s.get(f"ret_from_{name}", 0) for s in stats) for name in RETURN_SOURCES}
            if fmt == "crsp"
            else {"adj_close": sum(s["rows_out"] for s in stats)},
            permnos=sum(s["permnos"] for s in stats),
            date_min=min(s["date_min"] for s in stats),
            date_max=max(s["date_max"] for s in stats),
            partitions=[{k: s[k] for k in ("file", "rows_out", "permno_min", "permno_max")} for s in stats],
        ),
    )


# --- helpers -----------------------------------------------------------------------------------------


def _day_numbers(series: Column) -> Array:
    """Days since 1970-01-01 (int64) of a datetime column; integer columns pass through."""
    if series.dtype.kind in "iu":
        return column_array(series, "int64")
    return column_array(day_number(series), "int64")
