"""Stage 3: the realised-volatility panel from CRSP daily (or OHLCV) files.

For each stock (``permno``) and window ``w`` in 1, 5, 22, 63 trading rows::

    vol_w(t) = sqrt(sum_{k=0}^{w-1} ret_{t-k}^2)      y_w(t) = vol_w(next row of the stock)

over the stock's own rows in date order: no mean, no annualisation. ``vol_w`` is NaN when
the stock has fewer than ``w`` rows up to ``t`` or any return in the window is missing;
``y_w`` is NaN on the stock's last row.

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

The Dask wrapper
----------------
:func:`build_volatility` (1) parses the input into a staging Parquet copy
(``permno, date, ret``), (2) range-partitions it on ``permno`` with ``set_index``, so each
stock's history lives in exactly one partition and each output file covers a contiguous
permno range (later stages read one stock cheaply), (3) per partition: sorts, drops
identical duplicate (permno, date) rows (conflicting ones are an error), computes OHLCV
returns if needed, runs the kernel and writes ``part.NNNNN.parquet`` sorted by permno,
date, and (4) writes the manifest and renames the dataset into place.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsb_gpu.backend import Backend, frame_module, is_gpu_frame
from wsb_gpu.errors import WsbError

WINDOWS = (1, 5, 22, 63)
OUTPUT_COLUMNS = ["permno", "date", "ret"] + [f"vol_{w}" for w in WINDOWS] + [f"y_{w}" for w in WINDOWS]
RETURN_SOURCES = ("RET", "RETX", "DLRET")
NAN = float("nan")


# --- the kernel ----------------------------------------------------------------------------


def volatility_kernel(frame: Any, windows: Sequence[int] = WINDOWS) -> Any:
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
    permno = _int_values(frame["permno"])
    day = _day_numbers(frame["date"])
    ret = _float_values(frame["ret"])
    order = _sort_order(permno, day)
    if order is not None:
        permno, day, ret = permno[order], day[order], ret[order]
    xp = _array_module(ret)
    n = len(ret)
    sums = window_sums(ret * ret, windows)
    # Rows where a stock begins; the w-1 rows from there have windows reaching into the
    # previous stock (or too few rows) and are masked. A stock shorter than w-1 rows lets
    # the mask run into the next stock's first w-1 rows, which are masked anyway.
    starts = xp.flatnonzero(permno[1:] != permno[:-1]) + 1
    columns: dict[str, Any] = {"permno": permno, "date": day, "ret": ret}
    vols = {}
    for w in windows:
        vol = xp.sqrt(sums[w], out=sums[w])
        if w > 1 and len(starts):
            head = (starts[:, None] + xp.arange(w - 1)[None, :]).ravel()
            vol[head[head < n]] = NAN
        vols[w] = vol
        columns[f"vol_{w}"] = vol
    for w in windows:
        y = xp.empty(n)
        if n:
            y[:-1] = vols[w][1:]
            y[-1] = NAN
            y[starts - 1] = NAN  # a stock's last row: the next row is another stock
        columns[f"y_{w}"] = y
    return _frame_from_arrays(frame, columns)


def window_sums(x: Any, windows: Sequence[int]) -> dict[int, Any]:
    """Trailing window sums ``S_w[t] = x[t-w+1] + ... + x[t]`` for each ``w``.

    Built from power-of-two block sums by doubling, so each element of the result is a
    sum of non-negative terms (for ``x >= 0``) over at most ``2 log2(w)`` levels: no
    cancellation, relative error a few ulp. ``S_w[t]`` is NaN for ``t < w - 1`` and
    wherever ``x`` is NaN inside the window. Works on NumPy and CuPy arrays.

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
    acc: dict[int, Any] = {}
    covered = {w: 0 for w in windows}
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


def _lagged(a: Any, k: int) -> Any:
    """A new array: ``a`` shifted ``k`` places later, NaN in front."""
    if k == 0:
        return a.copy()
    xp = _array_module(a)
    n = len(a)
    out = xp.empty_like(a)
    out[: min(k, n)] = NAN
    if k < n:
        out[k:] = a[: n - k]
    return out


def _add_lagged(acc: Any, a: Any, k: int) -> None:
    """``acc += a`` shifted ``k`` places later (in place), NaN in front."""
    n = len(a)
    if k < n:
        acc[k:] += a[: n - k]
    acc[: min(k, n)] = NAN


def _doubled(a: Any, m: int) -> Any:
    """``P_2m`` from ``P_m``: a new array ``a[t] + a[t-m]`` (one pass, no copy first)."""
    xp = _array_module(a)
    n = len(a)
    out = xp.empty_like(a)
    out[: min(m, n)] = NAN
    if m < n:
        xp.add(a[m:], a[: n - m], out=out[m:])
    return out


def _sort_order(permno: Any, day: Any) -> Any | None:
    """Row order sorting by (permno, day), or None when the rows are already in order.

    One ``argsort`` of a combined int64 key when the permno and date ranges fit in 62 bits
    (always for CRSP), else a two-key ``lexsort`` (OHLCV hash ids).
    """
    n = len(permno)
    if n < 2:
        return None
    xp = _array_module(permno)
    later = (permno[1:] > permno[:-1]) | ((permno[1:] == permno[:-1]) & (day[1:] >= day[:-1]))
    if bool(later.all()):
        return None
    pmin, pmax = int(permno.min()), int(permno.max())
    dmin, dmax = int(day.min()), int(day.max())
    span = dmax - dmin + 1
    if (pmax - pmin + 1) * span < 2**62:
        return xp.argsort((permno - pmin) * span + (day - dmin))
    return xp.lexsort(xp.stack([day, permno]))


# --- per-partition steps of the stage -------------------------------------------------------


def sort_panel(frame: Any, values: Sequence[str]) -> Any:
    """``permno, date`` and the ``values`` columns, sorted by permno, date (fresh index)."""
    permno = _int_values(frame["permno"])
    day = _day_numbers(frame["date"])
    order = _sort_order(permno, day)
    columns: dict[str, Any] = {"permno": permno, "date": day}
    for name in values:
        columns[name] = _values(frame[name])
    if order is not None:
        columns = {k: v[order] for k, v in columns.items()}
    return _frame_from_arrays(frame, columns)


def duplicate_rows(frame: Any, value: str) -> tuple[Any, Any]:
    """Masks of repeated (permno, date) rows after the first, and of those whose ``value``
    differs from the previous row (NaN equals NaN), on a frame sorted by permno, date."""
    permno = _int_values(frame["permno"])
    day = _day_numbers(frame["date"])
    v = _float_values(frame[value])
    xp = _array_module(v)
    n = len(v)
    dup = xp.zeros(n, dtype=bool)
    conflict = xp.zeros(n, dtype=bool)
    if n > 1:
        dup[1:] = (permno[1:] == permno[:-1]) & (day[1:] == day[:-1])
        same = (v[1:] == v[:-1]) | (xp.isnan(v[1:]) & xp.isnan(v[:-1]))
        conflict[1:] = dup[1:] & ~same
    return dup, conflict


def ohlcv_returns(frame: Any) -> Any:
    """Simple returns ``close[t] / close[t-1] - 1`` per stock from a frame sorted by permno,
    date; NaN on a stock's first row and next to a missing close."""
    permno = _int_values(frame["permno"])
    close = _float_values(frame["close"])
    xp = _array_module(close)
    ret = xp.full(len(close), NAN)
    if len(close) > 1:
        ret[1:] = xp.where(permno[1:] == permno[:-1], close[1:] / close[:-1] - 1.0, NAN)
    return _frame_from_arrays(frame, {"permno": permno, "date": _day_numbers(frame["date"]), "ret": ret})


def _partition_task(frame: Any, *, index: int, folder: str, format: str) -> dict[str, Any]:
    """Everything one output partition does: sort, dedupe, returns, kernel, write."""
    frame = frame.reset_index()
    value = "close" if format == "ohlcv" else "ret"
    extra = ("ret_source",) if format == "crsp" else ()
    rows_in = len(frame)
    stats: dict[str, Any] = {"index": index, "rows_in": rows_in, "rows_out": 0, "duplicates": 0,
                             "conflicts": 0, "conflict_example": None, "file": None}
    if rows_in == 0:
        return stats
    frame = sort_panel(frame, (value, *extra))
    dup, conflict = duplicate_rows(frame, value)
    xp = _array_module(dup)
    stats["duplicates"] = int(dup.sum())
    stats["conflicts"] = int(conflict.sum())
    if stats["conflicts"]:
        i = int(xp.flatnonzero(conflict)[0])
        host = _host_rows(frame, [i - 1, i], ["permno", "date", value])
        stats["conflict_example"] = (
            f"PERMNO {host['permno'][0]} on {str(host['date'][0])[:10]}: "
            f"{value} {host[value][0]!r} vs {host[value][1]!r}"
        )
    if stats["duplicates"]:
        frame = frame[_mask_for(frame, ~dup)].reset_index(drop=True)
    if format == "ohlcv":
        frame = ohlcv_returns(frame)
    else:
        src = _int_values(frame["ret_source"])
        for code, name in enumerate(RETURN_SOURCES):
            stats[f"ret_from_{name}"] = int((src == code).sum())
    result = volatility_kernel(frame)
    permno = _int_values(result["permno"])
    ret = _float_values(result["ret"])
    y1 = _float_values(result[f"y_{WINDOWS[0]}"])
    vol_long = _float_values(result[f"vol_{WINDOWS[-1]}"])
    stats.update(
        rows_out=len(result),
        ret_missing=int(_array_module(ret).isnan(ret).sum()),
        permnos=int((permno[1:] != permno[:-1]).sum()) + 1,
        permno_min=int(permno[0]),
        permno_max=int(permno[-1]),
        y_rows=int((~_array_module(y1).isnan(y1)).sum()),
        full_window_rows=int((~_array_module(vol_long).isnan(vol_long)).sum()),
    )
    day = _day_numbers(result["date"])
    stats["date_min"] = _iso_day(int(day.min()))
    stats["date_max"] = _iso_day(int(day.max()))
    name = f"part.{index:05d}.parquet"
    write_parquet(result, Path(folder) / name, dates=("date",))
    stats["file"] = name
    return stats


def _stage_task(frame: Any, *, index: int, folder: str, resolved: Mapping[str, str], format: str,
                source: str) -> int:
    """Normalise one raw partition and write it to the staging folder; returns its rows."""
    from wsb_gpu.sources.crsp import normalize

    out = normalize(frame, resolved, format=format, source=source)
    if len(out):
        write_parquet(out, Path(folder) / f"part.{index:05d}.parquet")
    return len(out)


# --- the Dask wrapper ---------------------------------------------------------------------------


def build_volatility(
    crsp: str | Path,
    out: str | Path,
    *,
    backend: Backend,
    client: Any = None,
    format: str = "crsp",
    columns: Mapping[str, str] | None = None,
    partition_rows: int | None = None,
    progress: bool = False,
) -> dict:
    """Build the volatility dataset from a CRSP daily or OHLCV file.

    Parameters
    ----------
    crsp
        CRSP daily file (CSV, ``.csv.gz``/``.zst``/``.bz2``/``.xz``, Parquet file or folder),
        or a Yahoo-style OHLCV file with ``format="ohlcv"``.
    out
        Dataset folder to write (replaced atomically).
    backend
        :class:`~wsb_gpu.backend.Backend`; the GPU backend reads and computes with cuDF.
    client
        Optional distributed client (collections compute on the active client anyway).
    format
        ``crsp`` or ``ohlcv`` (see docs/inputs.md).
    columns
        ``{role: column}`` overrides, e.g. ``{"ret": "my_ret"}``.
    partition_rows
        Rows per output partition; None = 2 million on CPU, 20 million on GPU.
    progress
        Show progress bars on stderr.

    Returns
    -------
    dict
        The manifest written to ``out/_manifest.json``.

    Raises
    ------
    WsbError
        On unrecognisable columns, unparseable PERMNOs/dates, conflicting duplicate
        (permno, date) rows, or an empty input.
    """
    import dask
    import dask.dataframe as dd

    from wsb_gpu.lake import atomic_dataset, file_fingerprint, parquet_schema, write_manifest
    from wsb_gpu.progress import compute
    from wsb_gpu.sources.crsp import file_kind, input_columns, iter_compressed_csv, resolve_columns

    path = Path(crsp)
    if not path.exists():
        msg = f"input file '{crsp}' does not exist; pass --crsp with a CRSP daily CSV/Parquet file"
        raise WsbError(msg)
    source = path.name
    found, delimiter = input_columns(path)
    resolved = resolve_columns(found, format=format, columns=columns, source=source)
    kind, compression = file_kind(path)
    if partition_rows is None:
        partition_rows = 20_000_000 if backend.is_gpu else 2_000_000
    t0 = time.perf_counter()
    with atomic_dataset(out) as tmp:
        staging = tmp / "_staging"
        staging.mkdir()
        # 1. raw file -> staging Parquet (permno, date, ret[, ret_source] | close)
        if kind == "csv" and compression is not None:
            rows_in = 0
            for i, chunk in enumerate(iter_compressed_csv(path, resolved, delimiter=delimiter)):
                rows_in += _stage_task(backend.from_pandas(chunk), index=i, folder=str(staging),
                                       resolved=resolved, format=format, source=source)
        else:
            raw = read_raw_input(path, resolved, delimiter, backend)
            tasks = [
                dask.delayed(_stage_task)(part, index=i, folder=str(staging), resolved=resolved,
                                          format=format, source=source)
                for i, part in enumerate(raw.to_delayed())
            ]
            rows_in = sum(compute(*tasks, label="volatility: parse", show=progress))
        if rows_in == 0:
            msg = f"{source} holds no data rows; pass a file with at least one row"
            raise WsbError(msg)
        # 2. range-partition on permno: each stock's history in exactly one partition
        with dask.config.set({"dataframe.backend": backend.dask_backend}):
            staged = dd.read_parquet(str(staging))
        nparts = max(1, math.ceil(rows_in / int(partition_rows)))
        indexed = staged.set_index("permno", npartitions=nparts)
        # 3. per partition: sort, dedupe, kernel, write
        tasks = [
            dask.delayed(_partition_task)(part, index=i, folder=str(tmp), format=format)
            for i, part in enumerate(indexed.to_delayed())
        ]
        stats = list(compute(*tasks, label="volatility: compute", show=progress))
        shutil.rmtree(staging)
        conflicts = sum(s["conflicts"] for s in stats)
        if conflicts:
            example = next(s["conflict_example"] for s in stats if s["conflict_example"])
            value = "close" if format == "ohlcv" else "return"
            msg = (
                f"{conflicts} duplicate (PERMNO, date) row(s) in {source} disagree on the {value}, "
                f"e.g. {example}; remove the wrong rows (identical duplicates are dropped and reported)"
            )
            raise WsbError(msg)
        written = sorted((s for s in stats if s["file"]), key=lambda s: s["permno_min"])
        manifest = write_manifest(
            tmp,
            stage="volatility",
            inputs={"crsp": file_fingerprint(path)},
            params={"format": format, "columns": dict(columns or {}), "partition_rows": int(partition_rows),
                    "windows": list(WINDOWS)},
            columns_used=dict(resolved),
            rows_in=int(rows_in),
            rows_out=sum(s["rows_out"] for s in stats),
            duplicates_dropped=sum(s["duplicates"] for s in stats),
            ret_missing=sum(s.get("ret_missing", 0) for s in stats),
            ret_from={name: sum(s.get(f"ret_from_{name}", 0) for s in stats) for name in RETURN_SOURCES}
            if format == "crsp" else {"adj_close": sum(s["rows_out"] for s in stats)},
            permnos=sum(s.get("permnos", 0) for s in written),
            date_min=min((s["date_min"] for s in written), default=None),
            date_max=max((s["date_max"] for s in written), default=None),
            partitions=[{k: s[k] for k in ("file", "rows_out", "permno_min", "permno_max")} for s in written],
            seconds=round(time.perf_counter() - t0, 3),
            backend=backend.name,
            schema=parquet_schema(tmp),
        )
    return manifest


def read_raw_input(path: Path, resolved: Mapping[str, str], delimiter: str, backend: Backend) -> Any:
    """The raw columns of an uncompressed CSV or a Parquet input as a Dask collection."""
    from wsb_gpu.sources.crsp import read_raw

    return read_raw(path, resolved, delimiter=delimiter, dask_backend=backend.dask_backend)


# --- writing --------------------------------------------------------------------------------------


def write_parquet(frame: Any, path: str | Path, *, dates: Sequence[str] = ()) -> None:
    """Write one partition as a Parquet file (atomically: temporary name, then rename).

    ``dates`` columns are stored as ``date32`` (the dataset contract) and float NaN as
    null, the same on both backends, which is why this goes through Arrow rather than
    ``to_parquet``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = _to_arrow(frame)
    for i, field in enumerate(table.schema):
        col = table.column(i)
        if field.name in dates:
            table = table.set_column(i, field.name, pc.cast(col, pa.date32()))
        elif pa.types.is_floating(field.type):
            table = table.set_column(i, field.name, pc.if_else(pc.is_nan(col), pa.scalar(None, field.type), col))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, row_group_size=1 << 20)
    os.replace(tmp, path)


# --- where pandas and cuDF differ -------------------------------------------------------------------


def _array_module(arr: Any) -> Any:
    """NumPy or CuPy, whichever ``arr`` belongs to."""
    import importlib

    return importlib.import_module("cupy" if type(arr).__module__.split(".")[0] == "cupy" else "numpy")


def _float_values(series: Any) -> Any:
    """float64 NumPy/CuPy values with NaN for missing (cuDF nulls included)."""
    import numpy as np

    if is_gpu_frame(series):
        return series.astype("float64").to_cupy(na_value=np.nan)
    return series.to_numpy(dtype="float64", na_value=np.nan)


def _int_values(series: Any) -> Any:
    """int64 NumPy/CuPy values."""
    if is_gpu_frame(series):
        return series.astype("int64").to_cupy()
    return series.to_numpy(dtype="int64")


def _values(series: Any) -> Any:
    """Values in their own dtype (float columns with NaN for missing)."""
    if series.dtype.kind == "f":
        return _float_values(series)
    if is_gpu_frame(series):
        return series.to_cupy()
    return series.to_numpy()


def _day_numbers(series: Any) -> Any:
    """Days since 1970-01-01 (int64) of a datetime column; int64 columns pass through."""
    if series.dtype.kind in "iu":
        return _int_values(series)
    return _int_values(series.astype("datetime64[s]").astype("int64")) // 86400


def _frame_from_arrays(like: Any, columns: Mapping[str, Any]) -> Any:
    """A frame of ``like``'s kind from arrays (not copied); ``date`` holds day numbers."""
    xdf = frame_module(like)
    data = dict(columns)
    if "date" in data:
        data["date"] = xdf.Series(data["date"] * 86400).astype("datetime64[s]")
    if is_gpu_frame(like):
        return xdf.DataFrame(data)
    # copy=False keeps one block per column: no consolidation copy of ~10 float columns.
    return xdf.DataFrame(data, copy=False)


def _mask_for(frame: Any, mask: Any) -> Any:
    """A boolean row mask usable in ``frame[...]`` (a Series of the frame's kind)."""
    return frame_module(frame).Series(mask, index=frame.index)


def _host_rows(frame: Any, rows: Sequence[int], columns: Sequence[str]) -> dict[str, list]:
    """A few rows of a frame as plain Python lists (copied to the host on GPU)."""
    part = frame[list(columns)].iloc[list(rows)]
    part = part.to_pandas() if is_gpu_frame(part) else part
    return {c: part[c].tolist() for c in columns}


def _to_arrow(frame: Any) -> Any:
    """A pyarrow Table of a pandas or cuDF frame (index dropped)."""
    import pyarrow as pa

    if is_gpu_frame(frame):
        return frame.to_arrow(preserve_index=False)
    return pa.Table.from_pandas(frame, preserve_index=False)


def _iso_day(day: int) -> str:
    """ISO date of a day number.

    >>> _iso_day(0), _iso_day(18262)
    ('1970-01-01', '2020-01-01')
    """
    import datetime as dt

    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
