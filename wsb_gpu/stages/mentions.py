"""Stage ``mentions``: posts x CRSP name history -> the **mentions** dataset.

One row per (post, ticker, PERMNO) with ``n_occ`` = occurrences that counted. The rules
(``docs/mentions.md``; every line is tested against a plain-``re`` reference):

1. The text is HTML-unescaped once (:func:`html.unescape`: ``&amp;`` -> ``&``).
2. Dollar token: ``$`` + 1-5 ASCII capitals, the ``$`` not preceded by ``[A-Za-z0-9_]``,
   the capitals not followed by ``[A-Za-z0-9_]``. The stoplist does not apply.
3. Bare token: 2-5 ASCII capitals not preceded by ``[A-Za-z0-9_$]`` and not followed by
   ``[A-Za-z0-9_]``; it counts only if not in the stoplist.
4. A token counts only if its ticker is *alive* on the post's UTC date ``d``: the name
   history has a row with ``NAMEDT <= d <= NAMEENDT``; it maps to every PERMNO alive so.

Candidates are extracted first and then joined with the alive table (a sorted-key /
broadcast hash join of ~27k names), never matched with a regex alternation of tickers.
Two interchangeable token extractors implement rules 2-3:

* ``scan`` (CPU twin): a vectorised NumPy scanner over the Arrow string buffer: runs of
  bytes ``A-Z`` are found with byte masks and their neighbouring bytes are checked.
  UTF-8 continuation bytes are never in ``[A-Za-z0-9_$]``, so ``GME🚀`` counts and
  full-width letters never form tokens, exactly as the character rules say.
* ``strings`` (GPU, cuDF string ops; runs on pandas too): characters outside
  ``[A-Za-z0-9_$]`` become spaces, a ``$`` preceded by a word character becomes ``#``
  (it ends a token but cannot start a dollar token, and blocks a bare one), and then
  whole space-delimited tokens ``#?\\$*[A-Z]{1,5}`` are found with ``findall`` -- no
  lookaround needed (cuDF has none).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from wsb_gpu.backend import (
    Backend,
    dataframe_module,
    frame_like,
    preferred_tokenizer,
    replace_with_backrefs,
    to_pandas,
)
from wsb_gpu.config import MentionsImpl, MentionsParams, choices
from wsb_gpu.datasets import count_rows, parquet_dataset
from wsb_gpu.dates import to_days
from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import Manifest, read_manifest
from wsb_gpu.progress import compute, log
from wsb_gpu.sources.tickers import read_stocknames
from wsb_gpu.stages.base import StageResult

if TYPE_CHECKING:
    from distributed import Client

    from wsb_gpu.backend import Column, Frame
    from wsb_gpu.stages.ingest import IngestManifest

COLUMNS_IN = ("id", "kind", "created_utc", "text")
COLUMNS_OUT = ("id", "kind", "created_utc", "date", "ticker", "permno", "n_occ")
_TICKER = re.compile(r"^[A-Z]{1,5}$")
_SIMPLE_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&amp;", "&"))
"""Entities html.unescape turns into one character whatever follows them; ``&amp;`` last
so that ``&amp;lt;`` becomes ``&lt;`` (one pass, as html.unescape)."""
_SIMPLE_REGEX = "&(?:lt|gt|quot|#39|amp);"

_WORD = np.zeros(256, dtype=bool)
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD[_c] = True
_WORD_OR_DOLLAR = _WORD.copy()
_WORD_OR_DOLLAR[ord("$")] = True


# --- inputs ---------------------------------------------------------------------------------


def load_stoplist(path: str | Path | None = None) -> frozenset[str]:
    """Symbols that never count as bare tokens: one per line, ``#`` starts a comment.

    ``None`` loads the packaged default (``wsb_gpu/data/stoplist.txt``).

    >>> "YOLO" in load_stoplist()
    True
    """
    if path is None:
        text = resources.files("wsb_gpu").joinpath("data/stoplist.txt").read_text(encoding="utf-8")
        source = "the packaged stoplist"
    else:
        p = Path(path)
        if not p.is_file():
            msg = f"stoplist '{p}' does not exist; pass a text file with one symbol per line (# comments), or leave --stoplist out"
            raise WsbError(msg)
        text = p.read_text(encoding="utf-8")
        source = str(p)
    words = set()
    for i, line in enumerate(text.splitlines(), 1):
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        if not _TICKER.match(word):
            msg = f"stoplist line {i} of {source} is {word!r}; each entry must be 1-5 capitals A-Z"
            raise WsbError(msg)
        words.add(word)
    return frozenset(words)


def alive_table(stocknames: pd.DataFrame) -> pd.DataFrame:
    """The join table: ``ticker, permno, first_day, last_day`` (days since 1970, int64),
    keeping only names a token can match (1-5 capitals), without duplicate rows.

    >>> t = pd.DataFrame({"ticker": ["GME", "BRK.B"], "permno": [1, 2],
    ...      "namedt": pd.to_datetime(["2020-01-01"] * 2), "nameendt": pd.to_datetime(["2020-01-02"] * 2)})
    >>> alive_table(t).to_dict("records")
    [{'ticker': 'GME', 'permno': 1, 'first_day': 18262, 'last_day': 18263}]
    """
    ok = stocknames["ticker"].astype(str).str.fullmatch(_TICKER.pattern[1:-1]).fillna(False).to_numpy(dtype=bool)
    t = stocknames[ok]
    out = pd.DataFrame(
        {
            "ticker": t["ticker"].astype(str).to_numpy(dtype=object),
            "permno": t["permno"].astype("int64").to_numpy(),
            "first_day": to_days(t["namedt"]),
            "last_day": to_days(t["nameendt"]),
        }
    )
    out = out[out["first_day"] <= out["last_day"]].drop_duplicates()
    return out.sort_values(["ticker", "first_day", "permno"]).reset_index(drop=True)


def reversed_periods(stocknames: pd.DataFrame) -> dict[str, Any]:
    """The name-history rows whose ``NAMEDT`` is after their ``NAMEENDT``: no date can be in
    such a period, so the row is dropped; counted, with a few examples, for the manifest.

    >>> t = pd.DataFrame({"ticker": ["GME", "AMC"], "permno": [1, 2],
    ...      "namedt": pd.to_datetime(["2020-02-01", "2020-01-01"]), "nameendt": pd.to_datetime(["2020-01-31"] * 2)})
    >>> reversed_periods(t)
    {'rows': 1, 'examples': ['PERMNO 1 GME 2020-02-01 > 2020-01-31']}
    """
    bad = stocknames[stocknames["namedt"] > stocknames["nameendt"]]
    examples = [
        f"PERMNO {r.permno} {r.ticker} {r.namedt:%Y-%m-%d} > {r.nameendt:%Y-%m-%d}" for r in bad.head(3).itertuples()
    ]
    return {"rows": len(bad), "examples": examples}


# --- HTML unescaping ------------------------------------------------------------------------


def unescape_arrow(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``html.unescape`` of every string of an Arrow array, vectorised where it can be.

    Rows whose every ``&`` starts one of ``&amp; &lt; &gt; &quot; &#39;`` (almost all of
    Reddit's) are unescaped with Arrow substring replacement; other rows with ``&`` go
    through :func:`html.unescape` itself.

    >>> import pyarrow as pa
    >>> unescape_arrow(pa.array(["a &amp;lt; b", "x", "&#36;GME &copy", "AT&amp;T"])).to_pylist()
    ['a &lt; b', 'x', '$GME ©', 'AT&T']
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    has = pc.match_substring(texts, "&").fill_null(False)
    if not pc.any(has).as_py():
        return texts
    idx = pa.array(np.flatnonzero(has.to_numpy(zero_copy_only=False)))
    sub = texts.take(idx)
    n_amp = pc.count_substring(sub, "&")
    n_simple = pc.count_substring_regex(sub, _SIMPLE_REGEX)
    simple = pc.equal(n_amp, n_simple).to_numpy(zero_copy_only=False)
    fast = sub
    for ent, rep in _SIMPLE_ENTITIES:
        fast = pc.replace_substring(fast, ent, rep)
    if not simple.all():
        hard = np.flatnonzero(~simple)
        values = [html.unescape(s) for s in sub.take(pa.array(hard)).to_pylist()]
        fast = pc.replace_with_mask(fast, pa.array(~simple), pa.array(values, type=fast.type))
    return pc.replace_with_mask(texts, has, fast)


def unescape_series(text: Column) -> Column:
    """``html.unescape`` of a pandas or cuDF string series (the ``strings`` kernel's)."""
    has = text.str.contains("&", regex=False).fillna(False)
    if not bool(has.any()):
        return text
    n_amp = text.str.count("&")
    n_simple = sum(text.str.count(ent) for ent, _ in _SIMPLE_ENTITIES)
    hard = has & (n_amp != n_simple)
    fast = text
    for ent, rep in _SIMPLE_ENTITIES:
        fast = fast.str.replace(ent, rep, regex=False)
    if bool(hard.any()):
        values = to_pandas(text[hard]).map(html.unescape)
        fast = _set_masked(fast, hard, values)
    return fast


def _set_masked(series: Column, mask: Column, values: pd.Series) -> Column:
    """``series`` with the rows under ``mask`` replaced by ``values`` (in order).

    Built by concatenating and re-sorting on the index, which pandas and cuDF share
    (boolean-mask assignment of a shorter series differs between the two).

    >>> s = pd.Series(["a", "b", "c"])
    >>> _set_masked(s, pd.Series([False, True, False]), pd.Series(["B"])).tolist()
    ['a', 'B', 'c']
    """
    xdf = dataframe_module(series)
    sel = series[mask]
    repl = xdf.Series(list(values.to_numpy(dtype=object)), index=sel.index, dtype="str")
    return xdf.concat([series[~mask], repl]).sort_index()


# --- token extraction: the NumPy scanner (CPU) ----------------------------------------------


def scan_tokens(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find dollar and bare token candidates in an Arrow string array.

    Returns ``(row, code, dollar)``: the row of each token, its symbol as a base-27 code
    (see :func:`ticker_codes`), and whether it is a dollar token (else bare).

    >>> import pyarrow as pa
    >>> row, key, dollar = scan_tokens(pa.array(["$F GME🚀 xGME $$AMC TSLA2 A", "BB's x$NOK"]))
    >>> list(zip(row.tolist(), codes_to_tickers(key), dollar.tolist()))
    [(0, 'F', True), (0, 'GME', False), (0, 'AMC', True), (1, 'BB', False)]
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = texts.cast(pa.large_string()).fill_null("")
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool))
    n_rows = len(texts)
    if n_rows == 0:
        return empty
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + n_rows + 1]
    base = int(offsets[0])
    buf = np.frombuffer(texts.buffers()[2], dtype=np.uint8)[base : int(offsets[-1])]
    offs = offsets - base
    pos = np.flatnonzero((buf - np.uint8(65)) < np.uint8(26))  # bytes A-Z
    if pos.size == 0:
        return empty
    row_start = np.zeros(buf.size + 1, dtype=bool)
    row_start[offs[:-1]] = True  # a run never continues into the next text
    brk = np.empty(pos.size, dtype=bool)
    brk[0] = True
    np.not_equal(np.diff(pos), 1, out=brk[1:])
    brk |= row_start[pos]
    first = np.flatnonzero(brk)
    length = np.diff(np.append(first, pos.size))
    short = length <= 5
    first, length = first[short], length[short]
    start = pos[first]
    row = np.searchsorted(offs, start, side="right") - 1
    end = start + length
    lo, hi = offs[row], offs[row + 1]
    n = buf.size
    space = np.uint8(32)
    nxt = np.where(end < hi, buf[np.minimum(end, n - 1)], space)
    prev = np.where(start - 1 >= lo, buf[np.maximum(start - 1, 0)], space)
    prev2 = np.where(start - 2 >= lo, buf[np.maximum(start - 2, 0)], space)
    dollar = (prev == 36) & ~_WORD[prev2]
    bare = ~_WORD_OR_DOLLAR[prev] & (length >= 2)
    keep = ~_WORD[nxt] & (dollar | bare)
    start, length, row, dollar = start[keep], length[keep], row[keep], dollar[keep]
    code = np.zeros(start.size, dtype=np.int64)
    for j in range(5):
        byte = buf[np.minimum(start + j, n - 1)].astype(np.int64) - 64  # A..Z -> 1..26
        code = code * 27 + np.where(length > j, byte, 0)
    return row.astype(np.int64), code, dollar


N_CODES = 27**5
"""Symbols of 1-5 capitals map one-to-one onto ``0 .. 27**5 - 1`` (base 27, A=1, pad 0)."""


def ticker_codes(tickers: Iterable[str]) -> np.ndarray:
    """Base-27 codes of 1-5 capital symbols (the join key of the scanner).

    >>> ticker_codes(["A", "AB", "ZZZZZ"]).tolist()
    [531441, 570807, 14348906]
    """
    tickers = list(tickers)
    arr = np.frombuffer(np.array([t.encode("ascii") for t in tickers], dtype="S5").tobytes(), dtype=np.uint8)
    arr = arr.reshape(len(tickers), 5).astype(np.int64)
    digits = np.where(arr > 0, arr - 64, 0)
    return digits @ (27 ** np.arange(4, -1, -1, dtype=np.int64)) if len(tickers) else np.empty(0, np.int64)


def codes_to_tickers(codes: np.ndarray) -> list[str]:
    """Inverse of :func:`ticker_codes`.

    >>> codes_to_tickers(ticker_codes(["GME", "F"]))
    ['GME', 'F']
    """
    out = []
    for c in np.asarray(codes, dtype=np.int64).tolist():
        chars = []
        for _ in range(5):
            c, d = divmod(c, 27)
            if d:
                chars.append(chr(64 + d))
        out.append("".join(reversed(chars)))
    return out


def _kernel_scan(posts: pd.DataFrame, alive: pd.DataFrame, stoplist: frozenset[str]) -> pd.DataFrame:
    texts = pa.array(posts["text"], type=pa.large_string(), from_pandas=True).fill_null("")
    texts = unescape_arrow(texts)
    row, code, dollar = scan_tokens(texts)
    # a dense lookup table over every possible symbol (14 MB): 1 = has a name period,
    # 2 = stoplisted too; one gather per token instead of a search
    acodes = ticker_codes(alive["ticker"].tolist())
    lut = np.zeros(N_CODES, dtype=np.uint8)
    lut[acodes] = 1
    if stoplist:
        scodes = ticker_codes(sorted(stoplist))
        lut[scodes] = np.where(lut[scodes] == 1, 2, 0)
    kind = lut[code]
    counted = (kind == 1) | ((kind == 2) & dollar)
    row, code = row[counted], code[counted]
    if row.size == 0:
        return empty_mentions()
    # one count per (row, symbol)
    uniq, n_occ = np.unique(row * N_CODES + code, return_counts=True)
    urow, ucode = np.divmod(uniq, N_CODES)
    # sorted-key join with the alive table (small, broadcast): every period of the symbol
    order = np.argsort(acodes, kind="stable")
    akeys = acodes[order]
    lo = np.searchsorted(akeys, ucode, side="left")
    cnt = np.searchsorted(akeys, ucode, side="right") - lo
    total = int(cnt.sum())
    if total == 0:
        return empty_mentions()
    cand = np.repeat(np.arange(ucode.size), cnt)
    within = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    aidx = order[np.repeat(lo, cnt) + within]
    created = posts["created_utc"].to_numpy(dtype=np.int64)
    day = np.floor_divide(created[urow[cand]], 86400)
    first = alive["first_day"].to_numpy(dtype=np.int64)[aidx]
    last = alive["last_day"].to_numpy(dtype=np.int64)[aidx]
    hit = (first <= day) & (day <= last)
    cand, aidx, day = cand[hit], aidx[hit], day[hit]
    rows = urow[cand]
    return _assemble(
        posts,
        rows,
        pa.array(alive["ticker"], type=pa.string(), from_pandas=True).take(pa.array(aidx)),
        alive["permno"].to_numpy(dtype=np.int64)[aidx],
        n_occ[cand].astype(np.int32),
        day,
    )


def _assemble(posts: pd.DataFrame, rows: np.ndarray, ticker: Any, permno: Any, n_occ: Any, day: Any) -> pd.DataFrame:
    if not _PANDAS_TYPES:
        _PANDAS_TYPES.update(_pandas_types())
    take = pa.array(np.asarray(rows, dtype=np.int64))
    table = pa.table(
        {
            "id": pa.array(posts["id"], type=pa.string(), from_pandas=True).take(take),
            "kind": pa.array(posts["kind"], type=pa.string(), from_pandas=True).take(take),
            "created_utc": pa.array(posts["created_utc"].to_numpy(dtype=np.int64)[rows]),
            "date": pa.array(np.asarray(day, dtype=np.int32)).cast(pa.date32()),
            "ticker": ticker
            if isinstance(ticker, pa.Array)
            else pa.array(np.asarray(ticker, dtype=object), type=pa.string()),
            "permno": pa.array(np.asarray(permno, dtype=np.int64)),
            "n_occ": pa.array(np.asarray(n_occ, dtype=np.int32)),
        }
    )
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def _pandas_types() -> dict:
    return {pa.string(): pd.StringDtype("pyarrow"), pa.date32(): pd.ArrowDtype(pa.date32())}


_PANDAS_TYPES: dict = {}


def empty_mentions() -> pd.DataFrame:
    """An empty frame with the mentions columns and dtypes (the Dask ``meta``)."""
    return _assemble(
        pd.DataFrame(
            {
                "id": pd.Series([], dtype=object),
                "kind": pd.Series([], dtype=object),
                "created_utc": np.empty(0, np.int64),
            }
        ),
        np.empty(0, np.int64),
        [],
        [],
        [],
        [],
    )


# --- token extraction: cuDF / pandas string ops (GPU) ---------------------------------------


def tokens_strings(text: Column) -> Frame:
    """Token candidates with string ops shared by pandas and cuDF (no lookaround).

    Returns a frame ``row, ticker, dollar, bare`` (``row`` = position in ``text``).

    >>> t = tokens_strings(pd.Series(["$F GME🚀 xGME $$AMC TSLA2 A", "BB's x$NOK x$$GM"]))
    >>> t[t.dollar | t.bare].to_dict("list")["ticker"]
    ['F', 'GME', 'AMC', 'BB', 'GM']
    """
    xdf = dataframe_module(text)
    s = text.reset_index(drop=True).fillna("")
    s = s.str.replace(r"[^A-Za-z0-9_$]", "  ", regex=True)
    # a '$' right after a word character can neither start a dollar token nor precede a
    # bare one, but it still ends the token before it: mark it '#' in a token of its own
    s = replace_with_backrefs(s, r"([A-Za-z0-9_])\$", r"\1  #")
    s = " " + s + " "
    found = s.str.findall(r" #?\$*[A-Z]{1,5} ")
    tokens = found.explode().dropna()
    if len(tokens) == 0:
        return xdf.DataFrame(
            {
                "row": xdf.Series([], dtype="int64"),
                "ticker": xdf.Series([], dtype="str"),
                "dollar": xdf.Series([], dtype="bool"),
                "bare": xdf.Series([], dtype="bool"),
            }
        )
    tokens = tokens.astype("str").str.strip()
    dollar = tokens.str.contains("$", regex=False)
    bare = ~dollar & ~tokens.str.startswith("#") & (tokens.str.len() >= 2)
    out = xdf.DataFrame(
        {
            "row": tokens.index.to_series().astype("int64").reset_index(drop=True),
            "ticker": tokens.str.lstrip("#$").reset_index(drop=True),
            "dollar": dollar.reset_index(drop=True),
            "bare": bare.reset_index(drop=True),
        }
    )
    return out


def _kernel_strings(posts: Frame, alive: pd.DataFrame, stoplist: frozenset[str]) -> pd.DataFrame:
    posts = posts.reset_index(drop=True)
    cand = tokens_strings(unescape_series(posts["text"]))
    keep = cand["dollar"] | (cand["bare"] & ~cand["ticker"].isin(sorted(stoplist)))
    cand = cand[keep]
    if len(cand) == 0:
        return empty_mentions()
    counts = cand.groupby(["row", "ticker"]).size().reset_index()
    counts.columns = ["row", "ticker", "n_occ"]
    m = counts.merge(frame_like(posts, alive), on="ticker", how="inner")
    m["day"] = (posts["created_utc"] // 86400).take(m["row"]).values
    m = m[(m["first_day"] <= m["day"]) & (m["day"] <= m["last_day"])]
    m = to_pandas(m).sort_values(["row", "ticker", "permno"])
    host_posts = to_pandas(posts[["id", "kind", "created_utc"]])
    return _assemble(
        host_posts,
        m["row"].to_numpy(dtype=np.int64),
        m["ticker"].to_numpy(dtype=object),
        m["permno"].to_numpy(dtype=np.int64),
        m["n_occ"].to_numpy(dtype=np.int32),
        m["day"].to_numpy(dtype=np.int64),
    )


# --- the partition function and the Dask wrapper --------------------------------------------


def mention_kernel(posts: Frame, alive: pd.DataFrame, stoplist: Iterable[str] = (), impl: str = "auto") -> pd.DataFrame:
    """Mentions of one partition of posts (pandas or cuDF; columns ``id, kind,
    created_utc, text``).

    Parameters
    ----------
    posts
        A partition of the posts dataset.
    alive
        :func:`alive_table` of the name history.
    stoplist
        Symbols that never count as bare tokens.
    impl
        ``scan`` (NumPy scanner, CPU), ``strings`` (string ops: cuDF on GPU, pandas on
        CPU for testing) or ``auto`` (``strings`` for cuDF frames, else ``scan``).

    Returns
    -------
    pandas.DataFrame
        Columns ``id, kind, created_utc, date (date32), ticker, permno, n_occ`` -- always
        pandas, since the mentions are few and are written with pyarrow as ``date32``.
    """
    stop = frozenset(stoplist)
    if impl == "auto":
        impl = preferred_tokenizer(posts)
    if impl == "scan":
        return _kernel_scan(to_pandas(posts).reset_index(drop=True), alive, stop)
    if impl == "strings":
        return _kernel_strings(posts, alive, stop)
    msg = f"unknown mentions impl {impl!r}; choose one of: {', '.join(choices(MentionsImpl))}"
    raise WsbError(msg)


def check(inputs: Mapping[str, Path], params: MentionsParams) -> None:
    """At the door: the name history and the stoplist read (columns, PERMNOs, dates)."""
    if inputs.get("tickers") is not None:
        read_stocknames(inputs["tickers"])
    load_stoplist(params.stoplist)


class MentionsInputs(TypedDict):
    """The inputs of mentions: the posts dataset and the CRSP name history."""

    posts: Path
    tickers: Path


class MentionsFields(TypedDict):
    """The manifest fields of mentions (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    stoplist_size: int
    alive_names: int
    names_dropped: dict[str, dict[str, Any]]
    mentions: int
    text_bytes: int | None


class MentionsManifest(Manifest, MentionsFields):
    """The manifest of the mentions dataset."""


def run(
    inputs: MentionsInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: MentionsParams,
    progress: bool = False,
) -> StageResult:
    """Write the mentions of the ``posts`` dataset against the ``tickers`` name history.

    Parameters
    ----------
    inputs
        ``posts`` (the dataset folder from ``ingest``) and ``tickers`` (CRSP name history:
        ``PERMNO, TICKER, NAMEDT, NAMEENDT``, CSV or Parquet).
    out
        The folder to write into.
    backend
        ``gpu`` reads the posts as cuDF partitions and extracts with cuDF string ops.
    params
        ``stoplist`` (a file; None = the packaged default) and ``impl`` (the token
        extractor, see :func:`mention_kernel`).
    """
    posts, tickers = inputs["posts"], inputs["tickers"]
    stop = load_stoplist(params.stoplist)
    names = read_stocknames(tickers)
    reversed_rows = reversed_periods(names)
    if reversed_rows["rows"]:
        log(
            f"mentions: {reversed_rows['rows']:,} name-history row(s) of {tickers.name} have NAMEDT after NAMEENDT "
            f"(e.g. {reversed_rows['examples'][0]}); they were dropped, so those tickers count only in their other "
            "name periods; fix the rows to count them"
        )
    alive = alive_table(names)
    ddf = backend.read_parquet(posts, COLUMNS_IN)
    result = ddf.map_partitions(
        mention_kernel,
        dask.delayed(alive, pure=True),
        tuple(sorted(stop)),
        params.impl,
        meta=empty_mentions(),
        enforce_metadata=False,
    )
    # Pin the string columns to `string` (dask infers `large_string` from Arrow-backed
    # pandas strings), so that mentions and posts agree on the contract's types.
    strings = {c: pa.string() for c in ("id", "kind", "ticker")}
    write = backend.to_parquet(result, out, schema=strings)
    compute(write, label="mentions", show=progress)
    col = parquet_dataset(out).to_table(columns=["n_occ"]).column("n_occ")
    posted = cast("IngestManifest | None", read_manifest(posts))
    return StageResult(
        rows_in=count_rows(posts),
        fields=MentionsFields(
            stoplist_size=len(stop),
            alive_names=len(alive),
            names_dropped={"namedt_after_nameendt": reversed_rows},
            mentions=int(pc.sum(col).as_py() or 0),
            text_bytes=posted.get("bytes_json") if posted is not None else None,
        ),
    )
