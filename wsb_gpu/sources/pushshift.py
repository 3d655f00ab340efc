"""Pushshift dumps: streamed zstd decompression, newline-aligned blocks, validated parsing.

A dump is one zstd stream of NDJSON (one Reddit object per line) compressed with a 2 GiB
window and no content size in its header, so it cannot be split without decompressing it.
:func:`iter_blocks` streams it on the host and yields blocks of whole lines of about
``block_size`` bytes; the caller hands each block to a worker, which parses it with
:func:`parse_block` and never sees the rest of the file. Nothing here holds more than one
block (plus one partial line) in memory.

Validation rules (``docs/inputs.md``): lines are split on the byte ``\\n``; a line is
*malformed* and skipped when it is

* ``blank``      empty or only ASCII white space (``bytes.strip()``),
* ``bad_utf8``   not strict UTF-8,
* ``bad_json``   not one JSON value that is an object (Python's :func:`json.loads` decides;
  it accepts ``NaN`` and ``Infinity``),
* ``bad_record`` an object without a string ``id``, or whose ``created_utc`` is neither a
  JSON integer nor a string of ASCII digits (or does not fit in int64).

A lone UTF-16 surrogate escape (``"\\ud83d"``) decodes to a code point that UTF-8 cannot
hold; it is replaced by U+FFFD in the kept fields and counted.

Fast path: lines that start with ``{`` and hold no invalid UTF-8, no lone-surrogate escape
and no byte-order mark are parsed together by :mod:`pyarrow.json` (CPU) or
``cudf.read_json`` (GPU) with only the needed fields; on the CPU, lines whose
``created_utc`` is a string and those where it is a number are parsed as two groups, each
with its own column type (:func:`_created_groups`). If the fast parser rejects the set,
or returns types it cannot vouch for, the set is bisected until the guilty lines are found
and those few lines go through the exact line-by-line path (:func:`parse_line`), so a bad
line costs a couple of re-parses of its block, not a slow block.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import zstandard
from dask.utils import parse_bytes

from wsb_gpu.errors import WsbError

MAX_WINDOW_SIZE = 2**31
"""zstd window of the Pushshift dumps (``zstd --long=31``)."""

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
REASONS = ("blank", "bad_utf8", "bad_json", "bad_record")

FIELDS = {
    "submission": ("id", "created_utc", "author", "title", "selftext"),
    "comment": ("id", "created_utc", "author", "body"),
}
"""JSON fields read per kind; every other field is skipped unparsed into columns."""

TEXT_FIELDS = {"submission": ("author", "title", "selftext"), "comment": ("author", "body")}

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_BISECT_MIN_LINES = 64
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]+\Z")
GPU_DIGITS = r"^[0-9]+\Z"
r"""A ``created_utc`` string the GPU path accepts (libcudf regex; ``\Z`` = end of string)."""
GPU_INTEGER = r"^-?(0|[1-9][0-9]*)\Z"
"""A JSON integer as ``keep_quotes`` shows it (libcudf regex): no leading zeros, as in JSON."""
GPU_STRICT = {"strict_validation": True, "allow_numeric_leading_zeros": False, "allow_unquoted_control_chars": False}
"""libcudf's JSON reader is lenient by default (``cudf/io/json.hpp``: leading zeros, raw control
characters in strings); these options make it reject what ``json.loads`` and pyarrow reject.
``strict_validation`` must come first: the other two apply only under it."""


# --- reading the stream -----------------------------------------------------------------


def parse_block_size(value: int | str) -> int:
    """Bytes from ``64MiB``-style sizes (dask's parser); at least 1 KiB, at most 1 GiB.

    >>> parse_block_size("64MiB")
    67108864
    >>> parse_block_size(4096)
    4096
    """

    try:
        n = int(value) if isinstance(value, int) else int(parse_bytes(str(value)))
    except (ValueError, TypeError) as e:
        msg = f"block_size {value!r} is not a size; use a value like '64MiB' (ingest.block_size)"
        raise WsbError(msg) from e
    if not 1024 <= n <= 2**30:
        msg = f"block_size {value!r} must be between 1KiB and 1GiB; use a value like '64MiB'"
        raise WsbError(msg)
    return n


# What a file that is not a zstd stream starts like: (magic bytes, name, how to fix).
_OTHER_FORMATS = (
    (b"\x1f\x8b", "gzip", "gzip -dc {path} | zstd --long=31 -o {stem}.zst"),
    (b"BZh", "bzip2", "bzip2 -dc {path} | zstd --long=31 -o {stem}.zst"),
    (b"\xfd7zXZ\x00", "xz", "xz -dc {path} | zstd --long=31 -o {stem}.zst"),
    (b"PK\x03\x04", "a zip archive", "unzip -p {path} | zstd --long=31 -o {stem}.zst"),
)


def check_dump(path: str | Path) -> str:
    """Check at the door that a dump is a zstd stream (or, named otherwise, plain NDJSON).

    Returns ``"zstd"`` or ``"ndjson"``. A file named ``.zst`` must start with the zstd magic
    bytes: a gzip file renamed ``.zst``, plain text or an empty file would otherwise read as
    an empty stream and fail stages later.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.zst"; _ = p.write_bytes(bytes([0x1F, 0x8B, 8, 0]))
    >>> check_dump(p)
    Traceback (most recent call last):
    ...
    wsb_gpu.errors.WsbError: 'x.zst' is not a zstd file (it starts like gzip); Pushshift dumps are zstd, recompress it with: gzip -dc x.zst | zstd --long=31 -o x.zst
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        msg = f"'{path}' is empty (0 bytes); pass a Pushshift dump (zstd-compressed NDJSON)"
        raise WsbError(msg)
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    named_zstd = path.suffix.lower() in (".zst", ".zstd")
    for magic, kind, fix in _OTHER_FORMATS:
        if head.startswith(magic):
            hint = fix.format(path=path.name, stem=path.name.split(".")[0])
            msg = f"'{path.name}' is not a zstd file (it starts like {kind}); Pushshift dumps are zstd, recompress it with: {hint}"
            raise WsbError(msg)
    if head.lstrip()[:1] == b"{" and not named_zstd:
        return "ndjson"
    if head.lstrip()[:1] == b"{":
        msg = (
            f"'{path.name}' is not a zstd file (it is plain NDJSON named .zst); rename it (e.g. "
            f"{path.stem}.ndjson) or compress it with: zstd --long=31 {path.name} -o {path.stem}.fixed.zst"
        )
        raise WsbError(msg)
    msg = (
        f"'{path.name}' is neither a zstd file nor NDJSON (it starts with {head[:8]!r}); "
        "pass a Pushshift dump (zstd-compressed NDJSON, one JSON object per line)"
    )
    raise WsbError(msg)


def decompressed_chunks(path: str | Path, read_size: int = 1 << 16) -> Iterator[bytes]:
    """Stream the decompressed bytes of a dump (plain NDJSON is passed through).

    Uses a zstd decompression object so that a truncated file is an error (the stream
    reader of ``zstandard`` ends silently at a cut frame). Concatenated frames are read
    one after the other. Compressed input is fed ``read_size`` bytes at a time, so the
    output pieces stay small (about 0.5 MB for Reddit JSON, which compresses ~7x; only a
    pathologically repetitive file yields pieces much larger than that).
    """

    path = Path(path)
    if not path.is_file():
        msg = f"dump '{path}' does not exist; pass the path of a Pushshift .zst file"
        raise WsbError(msg)
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        if head != ZSTD_MAGIC:
            while chunk := fh.read(read_size * 8):
                yield chunk
            return
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
        dobj = dctx.decompressobj()
        fed = False
        while chunk := fh.read(read_size):
            while chunk:
                out = dobj.decompress(chunk)
                fed = True
                if out:
                    yield out
                if dobj.eof:  # end of a frame: the rest of the chunk starts the next one
                    chunk = dobj.unused_data
                    dobj = dctx.decompressobj()
                    fed = False
                else:
                    chunk = b""
        if fed and not dobj.eof:
            raise zstandard.ZstdError("the file ends in the middle of a zstd frame (truncated)")


def iter_blocks(path: str | Path, block_size: int | str = "64MiB") -> Iterator[bytes]:
    """Yield the decompressed dump as blocks of whole lines of about ``block_size`` bytes.

    Every block but the last ends with ``\\n``; a line longer than ``block_size`` makes its
    block longer. The last block may end without a newline (a final unterminated line).

    >>> import tempfile, zstandard
    >>> p = Path(tempfile.mkdtemp()) / "d.zst"
    >>> _ = p.write_bytes(zstandard.ZstdCompressor().compress(b"a\\nbb\\nccc"))
    >>> list(iter_blocks(p, 1024))
    [b'a\\nbb\\nccc']
    """
    size = parse_block_size(block_size)
    buf = bytearray()
    try:
        for chunk in decompressed_chunks(path):
            buf += chunk
            while len(buf) >= size:
                # the last newline inside the first `size` bytes, else the first after it
                cut = buf.rfind(b"\n", 0, size)
                if cut < 0:
                    cut = buf.find(b"\n", size)
                    if cut < 0:
                        break  # one line longer than a block: keep reading it
                with memoryview(buf) as mv:
                    out = bytes(mv[: cut + 1])
                del buf[: cut + 1]
                yield out
    except WsbError:
        raise
    except Exception as e:  # zstandard.ZstdError and OSError: a corrupt or truncated file
        msg = (
            f"cannot decompress '{path}' ({type(e).__name__}: {e}); "
            "check that the file is a complete zstd dump (zstd -t FILE)"
        )
        raise WsbError(msg) from e
    if buf:
        yield bytes(buf)


# --- parsing one block ------------------------------------------------------------------


@dataclass
class BlockCounts:
    """What happened to the lines of one block (summed per file by the ingest stage)."""

    lines: int = 0
    valid: int = 0
    malformed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    surrogates_replaced: int = 0

    def add(self, other: BlockCounts) -> None:
        self.lines += other.lines
        self.valid += other.valid
        for k in REASONS:
            self.malformed[k] += other.malformed[k]
        self.surrogates_replaced += other.surrogates_replaced

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "valid": self.valid,
            "malformed": dict(self.malformed),
            "surrogates_replaced": self.surrogates_replaced,
        }


class _FastParseFailed(Exception):
    """The fast parser cannot vouch for this set of lines: bisect it."""


def parse_line(raw: bytes, kind: str) -> tuple[str | None, tuple | None, int]:
    """Classify and parse one line exactly (the reference the fast paths must agree with).

    Returns ``(reason, record, surrogates)``: ``reason`` is None for a valid line, whose
    ``record`` holds the values of ``FIELDS[kind]`` (``created_utc`` as int, text fields
    str or None).

    >>> parse_line(b'{"id": "a", "created_utc": "17", "body": 5}', "comment")
    (None, ('a', 17, None, None), 0)
    >>> parse_line(b'{"id": 1, "created_utc": 17}', "comment")[0]
    'bad_record'
    >>> parse_line(b'  \\r', "comment")[0]
    'blank'
    """
    if not raw.strip():
        return "blank", None, 0
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bad_utf8", None, 0
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return "bad_json", None, 0
    if not isinstance(obj, dict):
        return "bad_json", None, 0
    rid = obj.get("id")
    cu = obj.get("created_utc")
    if not isinstance(rid, str):
        return "bad_record", None, 0
    if type(cu) is int:
        created = cu
    elif isinstance(cu, str) and _DIGITS.match(cu):
        created = int(cu)
    else:
        return "bad_record", None, 0
    if not _INT64_MIN <= created <= _INT64_MAX:
        return "bad_record", None, 0
    n_sur = 0
    rid, n = _LONE_SURROGATE.subn("\ufffd", rid)
    n_sur += n
    values: list[Any] = [rid, created]
    for name in TEXT_FIELDS[kind]:
        v = obj.get(name)
        if isinstance(v, str):
            v, n = _LONE_SURROGATE.subn("\ufffd", v)
            n_sur += n
        else:
            v = None
        values.append(v)
    return None, tuple(values), n_sur


def line_bounds(block: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, without ``\\n``) byte offsets of the lines of a block.

    >>> s, e = line_bounds(b"ab\\n\\ncd")
    >>> s.tolist(), e.tolist()
    ([0, 3, 4], [2, 3, 6])
    >>> line_bounds(b"ab\\n")[0].tolist()
    [0]
    """
    arr = np.frombuffer(block, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [len(arr)])).astype(np.int64)
    if len(arr) and arr[-1] == 10 or len(arr) == 0:
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends


def _suspect_lines(block: bytes, arr: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Line indices the fast parsers must not see: those with a lone surrogate escape.

    (A line starting with a byte-order mark, which pyarrow accepts and Python does not,
    never reaches the fast parsers: they only get lines whose first byte is ``{``.)

    Conservative on purpose (an escaped backslash followed by ``ud83d`` is flagged too):
    a flagged line only goes through the exact slow path.
    """
    bs = np.flatnonzero(arr == 0x5C)
    bs = bs[bs + 5 < len(arr)]
    c1, c2, c3 = arr[bs + 1], arr[bs + 2], arr[bs + 3]
    sur = (c1 == 0x75) & ((c2 == 0x64) | (c2 == 0x44))
    hi = bs[sur & np.isin(c3, np.frombuffer(b"89abAB", np.uint8))]
    lo = bs[sur & np.isin(c3, np.frombuffer(b"cdefCDEF", np.uint8))]
    pos = np.concatenate((hi[~np.isin(hi + 6, lo)], lo[~np.isin(lo - 6, hi)]))
    if pos.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.searchsorted(starts, pos, side="right") - 1)


def _bad_utf8_lines(block: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of the lines that are not strict UTF-8 (usually none).

    The whole block is validated at once by Arrow's SIMD UTF-8 check (~10x faster than
    ``bytes.decode``); only a block that fails is checked line by line.
    """

    offsets = pa.array([0, len(block)], type=pa.int64()).buffers()[1]
    whole = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(block)])
    try:
        whole.validate(full=True)
        return np.empty(0, dtype=np.int64)
    except pa.ArrowInvalid:
        pass
    bad = []
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        try:
            block[s:e].decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
    return np.asarray(bad, dtype=np.int64)


def _line_array(block: bytes, starts: np.ndarray) -> Any:
    """The block's lines as a zero-copy Arrow binary array, each line with its ``\\n``.

    Vectorised per-line work (a regex, a gather) then runs in Arrow's C++ kernels.
    """
    offsets = np.append(starts, len(block)).astype(np.int64)
    return pa.Array.from_buffers(pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(block)])


def _gather(block: bytes, lines: Any, idx: np.ndarray) -> Any:
    """The given lines of the block, in order, as one buffer (the block itself when all are given).

    ``lines.take`` copies the chosen lines, newlines included, into one contiguous data
    buffer: a single C++ pass, whatever the number of lines kept.

    >>> b = b'{"a":1}\\n{"b":2}\\n{"c":3}'
    >>> lines = _line_array(b, line_bounds(b)[0])
    >>> _gather(b, lines, np.array([0, 2])).to_pybytes()
    b'{"a":1}\\n{"c":3}'
    """
    if idx.size == len(lines):
        return pa.py_buffer(block)
    kept = lines.take(pa.array(idx))
    offsets = np.frombuffer(kept.buffers()[1], dtype=np.int64, count=len(kept) + 1, offset=kept.offset * 8)
    return kept.buffers()[2][int(offsets[0]) : int(offsets[-1])]


def _created_groups(lines: Any, idx: np.ndarray) -> list[tuple[np.ndarray, Any]]:
    """Split lines by the JSON type of their ``created_utc``: ``(lines, Arrow type)`` pairs.

    Pushshift dumps mix both (older records hold ``"created_utc": "1325376000"``) and a
    typed Arrow parse takes one type per column, so each group is parsed with its own.
    A regex over each line decides; it is only a hint (a key inside a text, say): a line in
    the wrong group fails its group's parse, which is then bisected as any other failure.

    >>> b = b'{"created_utc": "1"}\\n{"created_utc": 2}\\n'
    >>> [(g.tolist(), str(t)) for g, t in _created_groups(_line_array(b, line_bounds(b)[0]), np.array([0, 1]))]
    [([0], 'string'), ([1], 'int64')]
    """
    is_str = pc.match_substring_regex(lines, r'"created_utc"\s*:\s*"').to_numpy(zero_copy_only=False)[idx]
    groups = ((idx[is_str], pa.string()), (idx[~is_str], pa.int64()))
    return [(g, t) for g, t in groups if g.size]


def parse_block(block: bytes, kind: str, *, engine: str = "cpu") -> tuple[Any, BlockCounts]:
    """Parse one block of NDJSON lines into an Arrow table of the kind's fields.

    Parameters
    ----------
    block
        Whole lines (as cut by :func:`iter_blocks`).
    kind
        ``"submission"`` or ``"comment"``: which fields to read.
    engine
        ``"cpu"`` (pyarrow.json) or ``"gpu"`` (cudf.read_json) for the fast path.

    Returns
    -------
    table, counts
        ``pyarrow.Table`` with columns ``FIELDS[kind]`` (``created_utc`` int64) in line
        order, and the block's :class:`BlockCounts`.
    """

    fields = FIELDS[kind]
    counts = BlockCounts()
    starts, ends = line_bounds(block)
    n = len(starts)
    counts.lines = n
    if n == 0:
        return _empty_table(kind), counts
    arr = np.frombuffer(block, dtype=np.uint8)
    safe_starts = np.minimum(starts, max(len(arr) - 1, 0))
    fast = (arr[safe_starts] == 0x7B) & (ends > starts)  # '{' first: cannot be blank
    fast[_bad_utf8_lines(block, starts, ends)] = False
    fast[_suspect_lines(block, arr, starts)] = False
    fast_idx = np.flatnonzero(fast)
    slow_idx = [int(i) for i in np.flatnonzero(~fast)]

    tables: list[tuple[np.ndarray, Any]] = []
    lines = _line_array(block, starts)
    if not fast_idx.size:
        stack = []
    elif engine == "gpu":  # cudf reads created_utc as text: one parse takes both JSON types
        stack = [(fast_idx, pa.string())]
    else:
        stack = _created_groups(lines, fast_idx)
    while stack:
        idx, created_type = stack.pop()
        try:
            table, ok = _parse_fast(_gather(block, lines, idx), idx.size, kind, engine, created_type)
        except _FastParseFailed:
            if idx.size <= _BISECT_MIN_LINES:
                slow_idx.extend(int(i) for i in idx)
            else:
                half = idx.size // 2
                stack.extend(((idx[half:], created_type), (idx[:half], created_type)))
            continue
        n_ok = int(ok.sum())
        counts.malformed["bad_record"] += int(idx.size - n_ok)
        if n_ok < idx.size:
            keep = np.flatnonzero(ok)
            idx, table = idx[keep], table.take(pa.array(keep))
        tables.append((idx, table))

    if slow_idx:
        rows: list[tuple] = []
        line_no: list[int] = []
        for i in sorted(slow_idx):
            reason, record, n_sur = parse_line(block[starts[i] : ends[i]], kind)
            if reason is not None:
                counts.malformed[reason] += 1
                continue
            counts.surrogates_replaced += n_sur
            rows.append(record)
            line_no.append(i)
        if rows:
            cols = list(zip(*rows))
            tables.append(
                (
                    np.asarray(line_no, dtype=np.int64),
                    pa.table({name: pa.array(col, type=_arrow_type(name)) for name, col in zip(fields, cols)}),
                )
            )
    if not tables:
        return _empty_table(kind), _finish(counts)
    if len(tables) == 1:
        return tables[0][1], _finish(counts)
    # rows of the fast parts, then the slow ones: the order within a block carries no
    # meaning, and re-sorting would copy every string of the block once more
    return pa.concat_tables([t[1] for t in tables]), _finish(counts)


def _finish(counts: BlockCounts) -> BlockCounts:
    counts.valid = counts.lines - sum(counts.malformed.values())
    return counts


def _arrow_type(name: str) -> Any:
    return pa.int64() if name == "created_utc" else pa.string()


def _empty_table(kind: str) -> Any:
    return pa.table({name: pa.array([], type=_arrow_type(name)) for name in FIELDS[kind]})


def _parse_fast(buf: Any, n_lines: int, kind: str, engine: str, created_type: Any) -> tuple[Any, np.ndarray]:
    if engine == "gpu":
        return _parse_fast_gpu(buf.to_pybytes(), n_lines, kind)
    return _parse_fast_cpu(buf, n_lines, kind, created_type)


def _parse_fast_cpu(buf: Any, n_lines: int, kind: str, first: Any) -> tuple[Any, np.ndarray]:
    """pyarrow.json over known-clean lines; ``ok`` marks rows with a valid id/created_utc.

    Every field has an explicit type, so pyarrow rejects a block where ``id`` is not a
    string, ``created_utc`` is neither of type ``first`` (the line group's hint, see
    :func:`_created_groups`) nor, on the second try, of the other type, or a text field
    is not a string; the caller then bisects and the exact path decides.
    """

    last_error = ""
    for cu_type in (first, pa.string() if first == pa.int64() else pa.int64()):
        schema = pa.schema([(name, cu_type if name == "created_utc" else pa.string()) for name in FIELDS[kind]])
        try:
            table = pj.read_json(
                pa.BufferReader(buf),
                read_options=pj.ReadOptions(use_threads=False, block_size=max(buf.size + 1, 1 << 16)),
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            )
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as e:
            last_error = str(e)
    else:
        raise _FastParseFailed(last_error)
    if table.num_rows != n_lines:  # e.g. two objects on one line
        raise _FastParseFailed("row count")
    ids = table.column("id")
    created = table.column("created_utc")
    ok = ids.is_valid().to_numpy(zero_copy_only=False) & created.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_string(created.type):
        digits = pc.match_substring_regex(created, r"^[0-9]+$").fill_null(False)
        ok &= digits.to_numpy(zero_copy_only=False)
        try:
            cu = pc.if_else(digits, created, pa.scalar("0")).cast(pa.int64())
        except pa.ArrowInvalid as e:  # more digits than int64 holds
            raise _FastParseFailed("created_utc overflow") from e
        table = table.set_column(table.schema.get_field_index("created_utc"), "created_utc", cu)
    return table, ok


def _parse_fast_gpu(buf: bytes, n_lines: int, kind: str) -> tuple[Any, np.ndarray]:
    """cudf.read_json over known-clean lines, checked like the CPU path.

    Two reads: one decoding the fields as strings, one with ``keep_quotes=True`` that
    tells JSON strings (quoted) from numbers and other values, so ``id`` must be a string
    and ``created_utc`` a JSON integer or digit string, exactly as on the CPU.
    """

    import cudf

    fields = FIELDS[kind]
    dtype = dict.fromkeys(fields, "str")
    try:
        dec = cudf.read_json(io.BytesIO(buf), lines=True, engine="cudf", dtype=dtype, prune_columns=True, **GPU_STRICT)
        raw = cudf.read_json(
            io.BytesIO(buf),
            lines=True,
            engine="cudf",
            dtype=dtype,
            prune_columns=True,
            keep_quotes=True,
            **GPU_STRICT,
        )
    except Exception as e:  # cuDF raises RuntimeError / ValueError on invalid JSON
        raise _FastParseFailed(str(e)) from e
    if len(dec) != n_lines or len(raw) != n_lines:
        raise _FastParseFailed("row count")
    for name in fields:
        if name not in dec.columns:
            dec[name] = cudf.Series([None] * n_lines, dtype="str")
            raw[name] = cudf.Series([None] * n_lines, dtype="str")
    quoted = {name: raw[name].str.startswith('"').fillna(False) for name in fields}
    for name in TEXT_FIELDS[kind]:
        # a non-string text field is read as missing by the exact path: let it decide
        if bool((raw[name].notna() & ~quoted[name]).any()):
            raise _FastParseFailed(f"{name} not a string")
    id_ok = quoted["id"]
    cu_raw, cu_dec = raw["created_utc"], dec["created_utc"]
    is_str = quoted["created_utc"]
    # libcudf's `$` also matches before a final "\n" (as Python's does), so "17\n" would pass;
    # `\Z` is the end of the string, as RE2's `$` on the CPU path and `\Z` of parse_line.
    str_ok = is_str & cu_dec.str.match(GPU_DIGITS).fillna(False)
    num_ok = ~is_str & cu_raw.str.match(GPU_INTEGER).fillna(False)
    cu_ok = str_ok | num_ok
    if bool((cu_ok & (cu_dec.str.len() > 18)).any()):
        raise _FastParseFailed("created_utc may overflow int64")  # the exact path decides
    ok = (id_ok & cu_ok).to_numpy()  # (cuDF 26.08 removed the host-values property; to_numpy works on both)
    cu = cu_dec.where(cu_ok, "0").astype("int64")
    out = cudf.DataFrame({name: dec[name] for name in fields})
    out["created_utc"] = cu
    table = out.to_arrow()
    return pa.table({name: table.column(name).cast(_arrow_type(name)) for name in fields}), np.asarray(ok)


# --- posts rows -------------------------------------------------------------------------


def to_posts(table: pa.Table, kind: str, source: str) -> Any:
    """Turn a parsed block into rows of the posts dataset (an Arrow table).

    Submissions: ``text = title + "\\n" + selftext`` (a missing field counts as empty);
    comments: ``text = body``. ``date`` is the UTC calendar date of ``created_utc``.
    """

    n = table.num_rows
    created = table.column("created_utc").combine_chunks().cast(pa.int64())
    days = np.floor_divide(created.to_numpy(zero_copy_only=False), 86400).astype(np.int32)
    if kind == "submission":
        text = pc.binary_join_element_wise(
            pc.fill_null(table.column("title"), ""), pc.fill_null(table.column("selftext"), ""), "\n"
        )
    else:
        text = pc.fill_null(table.column("body"), "")
    return pa.table(
        {
            "id": table.column("id").cast(pa.string()),
            "kind": pa.array([kind] * n, type=pa.string()) if n else pa.array([], pa.string()),
            "created_utc": created,
            "date": pa.array(days, type=pa.int32()).cast(pa.date32()),
            "author": table.column("author").cast(pa.string()),
            "text": text.cast(pa.string()) if n else pa.array([], pa.string()),
            "source": pa.array([source] * n, type=pa.string()) if n else pa.array([], pa.string()),
        }
    )


def posts_schema() -> Any:
    """The Arrow schema of the posts dataset."""

    return pa.schema(
        [
            ("id", pa.string()),
            ("kind", pa.string()),
            ("created_utc", pa.int64()),
            ("date", pa.date32()),
            ("author", pa.string()),
            ("text", pa.string()),
            ("source", pa.string()),
        ]
    )
