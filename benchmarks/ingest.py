"""Ingest and mentions throughput on synthetic Pushshift dumps, against a pandas peer.

* ``ingest``   -- ``wsb_gpu.stages.ingest.ingest`` (streamed zstd, newline-aligned blocks,
  pyarrow.json on CPU / cudf.read_json on GPU, every line validated) versus the named peer
  ``pandas``: ``pd.read_json(lines=True, chunksize=...)`` over the same decompressed stream,
  building the same posts columns (no per-line validation: it would crash on a bad line).
* ``mentions`` -- the ``mentions`` stage (NumPy byte scanner on CPU,
  cuDF string ops on GPU) versus ``pandas``: ``html.unescape`` + ``str.findall`` with the
  two lookaround regexes of the rules, explode, merge with the name history, date filter,
  count -- the same rows.

Rows report records/s (``throughput``); the note gives MB/s of JSON (ingest) or of text
(mentions) and the rows out. Inputs come from ``benchmarks.common.synthetic_inputs``
(``wsb_gpu.synth.generate``), cached under ``benchmarks/data``.

    python -m benchmarks.ingest --backend cpu --size 200000 --repeats 3
"""

from __future__ import annotations

import html
import io
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import make_row, print_rows, stage_parser, synthetic_inputs, time_call  # noqa: E402

DOLLAR = r"(?<![A-Za-z0-9_])\$([A-Z]{1,5})(?![A-Za-z0-9_])"
BARE = r"(?<![A-Za-z0-9_$])([A-Z]{2,5})(?![A-Za-z0-9_])"


# --- the pandas peer ------------------------------------------------------------------------


def pandas_ingest(submissions: Path, comments: Path, out: Path) -> int:
    """The peer: pandas.read_json(lines=True) in chunks, same columns, one Parquet file per chunk."""
    import pandas as pd
    import zstandard

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for path, kind in ((submissions, "submission"), (comments, "comment")):
        dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
        with open(path, "rb") as fh, dctx.stream_reader(fh) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
            for i, chunk in enumerate(pd.read_json(text, lines=True, chunksize=200_000, dtype=False)):
                created = pd.to_numeric(chunk["created_utc"]).astype("int64")
                if kind == "submission":
                    body = (
                        chunk["title"].fillna("")
                        + "\n"
                        + chunk.get("selftext", pd.Series("", index=chunk.index)).fillna("")
                    )
                else:
                    body = chunk["body"].fillna("")
                frame = pd.DataFrame(
                    {
                        "id": chunk["id"].astype(str),
                        "kind": kind,
                        "created_utc": created,
                        "date": pd.to_datetime(created, unit="s").dt.date,
                        "author": chunk.get("author"),
                        "text": body,
                        "source": path.name,
                    }
                )
                frame.to_parquet(out / f"{kind}-{i:05d}.parquet", index=False)
                n += len(frame)
    return n


def pandas_mentions(posts: Path, tickers: Path, stop: frozenset[str], out: Path) -> int:
    """The peer: the rules with pandas string methods (regex lookarounds) and a merge."""
    import pandas as pd

    from wsb_gpu.dates import to_days
    from wsb_gpu.sources.tickers import read_stocknames

    names = read_stocknames(tickers)
    names = names.assign(first_day=to_days(names["namedt"]), last_day=to_days(names["nameendt"]))
    frame = pd.read_parquet(posts, columns=["id", "kind", "created_utc", "text"])
    text = frame["text"].astype(object).map(html.unescape)
    dollar = text.str.findall(DOLLAR).explode().dropna()
    bare = text.str.findall(BARE).explode().dropna()
    bare = bare[~bare.isin(stop)]
    tokens = pd.concat([dollar, bare]).rename("ticker").reset_index().rename(columns={"index": "row"})
    counts = tokens.groupby(["row", "ticker"]).size().rename("n_occ").reset_index()
    counts["day"] = frame["created_utc"].to_numpy()[counts["row"].to_numpy()] // 86400
    m = counts.merge(names[["ticker", "permno", "first_day", "last_day"]], on="ticker")
    m = m[(m["first_day"] <= m["day"]) & (m["day"] <= m["last_day"])]
    res = frame.iloc[m["row"].to_numpy()][["id", "kind", "created_utc"]].reset_index(drop=True)
    res["ticker"] = m["ticker"].to_numpy()
    res["permno"] = m["permno"].to_numpy()
    res["n_occ"] = m["n_occ"].to_numpy().astype("int32")
    out.mkdir(parents=True, exist_ok=True)
    res.to_parquet(out / "part.0.parquet", index=False)
    return len(res)


# --- the polars and DuckDB peers: ingest + mentions in one program ------------------------------
#
# Neither library reads the dumps itself: polars has no zstd NDJSON reader for a stream, and
# DuckDB's zstd reader refuses the 2 GiB window ("Frame requires too much memory"). So both
# get the same help a user would write: Python's zstandard streams the file and cuts
# newline-aligned 64 MiB blocks, which the library parses (on all cores) into the posts rows
# (Parquet, one file per block) and the mention rows of the same rules, written as
# polars expressions / SQL. No lookaround exists in either (Rust regex, RE2), so the token
# rules are those of our ``strings`` extractor (:func:`wsb_gpu.stages.mentions.tokens_strings`).
# Differences to ours, counted by :func:`compare_mentions`: HTML entities other than the five
# replaced below stay escaped; DuckDB's ``ignore_errors`` drops the lines it cannot parse (the
# lone-surrogate escapes, which we keep with U+FFFD); malformed lines are dropped, not counted.

PEER_BLOCK = 64 << 20
ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&amp;", "&"))
PEER_FIELDS = {
    "submission": ("id", "created_utc", "author", "title", "selftext"),
    "comment": ("id", "created_utc", "author", "body"),
}


def zstd_blocks(path: Path, size: int = PEER_BLOCK):
    """Decompressed newline-aligned blocks of a dump (2 GiB window), what a peer's user writes."""
    import zstandard

    dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
    rest = b""
    with open(path, "rb") as fh, dctx.stream_reader(fh, read_size=1 << 20) as raw:
        while chunk := raw.read(size):
            buf = rest + chunk
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                rest = buf
                continue
            rest = buf[cut:]
            yield buf[:cut]
    if rest:
        yield rest


def peer_alive(tickers: Path) -> Any:
    """The name history as ``ticker, permno, first_day, last_day`` (days since 1970), as pandas."""
    from wsb_gpu.sources.tickers import read_stocknames
    from wsb_gpu.stages.mentions import alive_table

    return alive_table(read_stocknames(tickers))


def polars_ingest_mentions(
    submissions: Path, comments: Path, tickers: Path, stop: frozenset[str], out: Path
) -> tuple[int, int]:
    """The polars peer: ``read_ndjson`` per block -> posts Parquet; token expressions + join -> mentions."""

    import polars as pl

    alive = pl.from_pandas(peer_alive(tickers))
    stop_s = pl.Series(sorted(stop), dtype=pl.String)
    (out / "posts").mkdir(parents=True, exist_ok=True)
    n_posts, mentions = 0, []
    for path, kind in ((submissions, "submission"), (comments, "comment")):
        schema = dict.fromkeys(PEER_FIELDS[kind], pl.String)
        for i, block in enumerate(zstd_blocks(path)):
            raw = _polars_block(block, schema)
            text = (
                pl.col("title").fill_null("") + "\n" + pl.col("selftext").fill_null("")
                if kind == "submission"
                else pl.col("body").fill_null("")
            )
            posts = raw.select(
                pl.col("id"),
                pl.lit(kind).alias("kind"),
                pl.col("created_utc").cast(pl.Int64, strict=False),
                pl.col("author"),
                text.alias("text"),
                pl.lit(path.name).alias("source"),
            ).filter(pl.col("id").is_not_null() & pl.col("created_utc").is_not_null())
            posts = posts.with_columns((pl.col("created_utc") // 86400).cast(pl.Int32).cast(pl.Date).alias("date"))
            posts.write_parquet(out / "posts" / f"{kind}-{i:05d}.parquet")
            n_posts += posts.height
            s = pl.col("text")
            for ent, rep in ENTITIES:
                s = s.str.replace_all(ent, rep, literal=True)
            s = s.str.replace_all(r"[^A-Za-z0-9_$]", "  ").str.replace_all(r"([A-Za-z0-9_])\$", "${1}  #")
            tokens = (
                posts.select(
                    "id",
                    "kind",
                    "created_utc",
                    (pl.lit(" ") + s + pl.lit(" ")).str.extract_all(r" #?\$*[A-Z]{1,5} ").alias("tok"),
                )
                .explode("tok")
                .drop_nulls("tok")
                .with_columns(pl.col("tok").str.strip_chars(" "))
                .with_columns(pl.col("tok").str.strip_chars_start("#$").alias("ticker"))
            )
            dollar = pl.col("tok").str.contains("$", literal=True)
            bare = (
                ~dollar
                & ~pl.col("tok").str.starts_with("#")
                & (pl.col("tok").str.len_bytes() >= 2)
                & ~pl.col("ticker").is_in(stop_s.implode())
            )
            counted = (
                tokens.filter(dollar | bare)
                .group_by("id", "kind", "created_utc", "ticker")
                .agg(pl.len().cast(pl.Int32).alias("n_occ"))
                .with_columns((pl.col("created_utc") // 86400).alias("day"))
            )
            m = counted.join(alive, on="ticker").filter(
                (pl.col("first_day") <= pl.col("day")) & (pl.col("day") <= pl.col("last_day"))
            )
            mentions.append(m.select("id", "kind", "created_utc", "ticker", "permno", "n_occ"))
    result = pl.concat(mentions) if mentions else pl.DataFrame()
    (out / "mentions").mkdir(parents=True, exist_ok=True)
    result.write_parquet(out / "mentions" / "part.0.parquet")
    return n_posts, result.height


def _polars_block(block: bytes, schema: dict) -> Any:
    """``read_ndjson`` of a block; a block it rejects (``ignore_errors`` does not cover a line
    that is not JSON) is read again without the lines ``json.loads`` refuses."""
    import io
    import json

    import polars as pl

    try:
        return pl.read_ndjson(io.BytesIO(block), schema=schema, ignore_errors=True)
    except pl.exceptions.ComputeError:
        pass

    def is_object(line: bytes) -> bool:
        try:
            return isinstance(json.loads(line.decode("utf-8")), dict)
        except ValueError:
            return False

    good = b"\n".join(line for line in block.split(b"\n") if is_object(line))
    return pl.read_ndjson(io.BytesIO(good), schema=schema, ignore_errors=True)


def duckdb_ingest_mentions(
    submissions: Path, comments: Path, tickers: Path, stop: frozenset[str], out: Path
) -> tuple[int, int]:
    """The DuckDB peer: ``read_json`` per block (``ignore_errors``) -> posts Parquet; SQL regexes + a range join -> mentions."""
    import io
    import warnings

    import duckdb

    con = duckdb.connect()
    con.register("alive", peer_alive(tickers))
    con.register("stop", __import__("pandas").DataFrame({"ticker": sorted(stop)}))
    (out / "posts").mkdir(parents=True, exist_ok=True)
    text_sql = {
        "submission": "coalesce(title, '') || chr(10) || coalesce(selftext, '')",
        "comment": "coalesce(body, '')",
    }
    unescape = "text"
    for ent, rep in ENTITIES:
        unescape = f"replace({unescape}, '{ent}', '{rep.replace(chr(39), chr(39) * 2)}')"
    n_posts, parts = 0, []
    for path, kind in ((submissions, "submission"), (comments, "comment")):
        columns = dict.fromkeys(PEER_FIELDS[kind], "VARCHAR")
        for i, block in enumerate(zstd_blocks(path)):
            raw = con.read_json(io.BytesIO(block), format="newline_delimited", columns=columns, ignore_errors=True)
            con.register("raw", raw)
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE posts AS
                SELECT id, '{kind}' AS kind, TRY_CAST(created_utc AS BIGINT) AS created_utc, author,
                       {text_sql[kind]} AS text, '{path.name}' AS source
                FROM raw WHERE id IS NOT NULL AND TRY_CAST(created_utc AS BIGINT) IS NOT NULL"""
            )
            part = out / "posts" / f"{kind}-{i:05d}.parquet"
            con.execute(
                f"COPY (SELECT id, kind, created_utc, CAST(to_timestamp(created_utc) AS DATE) AS date, author, text, source "
                f"FROM posts) TO '{part}' (FORMAT parquet)"
            )
            n_posts += con.execute("SELECT count(*) FROM posts").fetchone()[0]
            result = con.execute(
                rf"""WITH s AS (
                        SELECT id, kind, created_utc,
                               ' ' || regexp_replace(regexp_replace({unescape}, '[^A-Za-z0-9_$]', '  ', 'g'),
                                                     '([A-Za-z0-9_])\$', '\1  #', 'g') || ' ' AS s
                        FROM posts),
                    t AS (SELECT id, kind, created_utc, trim(unnest(regexp_extract_all(s, ' #?\$*[A-Z]{{1,5}} '))) AS tok FROM s),
                    c AS (SELECT id, kind, created_utc, ltrim(tok, '#$') AS ticker, CAST(count(*) AS INTEGER) AS n_occ
                          FROM t
                          WHERE contains(tok, '$')
                             OR (NOT starts_with(tok, '#') AND length(tok) >= 2 AND ltrim(tok, '#$') NOT IN (SELECT ticker FROM stop))
                          GROUP BY ALL)
                    SELECT c.id, c.kind, c.created_utc, c.ticker, a.permno, c.n_occ
                    FROM c JOIN alive a ON c.ticker = a.ticker
                     AND a.first_day <= c.created_utc // 86400 AND c.created_utc // 86400 <= a.last_day"""
            )
            with warnings.catch_warnings():  # "an extra copy": of the few mention rows only
                warnings.simplefilter("ignore")
                parts.append(result.to_arrow_table())
            con.unregister("raw")
    import pyarrow as pa
    import pyarrow.parquet as pq

    result = pa.concat_tables(parts) if parts else pa.table({})
    (out / "mentions").mkdir(parents=True, exist_ok=True)
    pq.write_table(result, out / "mentions" / "part.0.parquet")
    con.close()
    return n_posts, result.num_rows


def compare_mentions(ours: Path, peer: Path) -> dict[str, int]:
    """Row-set difference of two mentions datasets on ``(id, kind, ticker, permno, n_occ)``."""
    import pyarrow.dataset as ds

    cols = ["id", "kind", "ticker", "permno", "n_occ"]

    def keys(folder: Path) -> set:
        t = ds.dataset(str(folder), format="parquet", exclude_invalid_files=True).to_table(columns=cols)
        return set(zip(*(t.column(c).to_pylist() for c in cols)))

    a, b = keys(ours), keys(peer)
    return {"ours": len(a), "peer": len(b), "only_ours": len(a - b), "only_peer": len(b - a)}


# --- the benchmark --------------------------------------------------------------------------


def bench(
    backend: str, size: int, repeats: int = 3, *, peers: bool = True, block_size: str = "16MiB", client: Any = None
) -> list[dict]:
    """Time ingest and mentions (ours and the pandas peer) on ``size`` synthetic records."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.stages import run_stage
    from wsb_gpu.stages.mentions import load_stoplist

    be = resolve_backend(backend)
    paths = synthetic_inputs(size)
    work = Path(tempfile.mkdtemp(prefix="wsb-bench-ingest-"))
    rows: list[dict] = []
    try:
        last: dict[str, Any] = {}

        def run_ingest() -> None:
            last["ingest"] = run_stage(
                "ingest",
                work / "posts",
                submissions=paths["submissions"],
                comments=paths["comments"],
                backend=be,
                client=client,
                block_size=block_size,
            )

        times = time_call(run_ingest, repeats=repeats)
        m = last["ingest"]
        mb = m["bytes_json"] / 1e6
        records = m["rows_in"]
        med = sorted(times)[len(times) // 2]
        rows.append(
            make_row(
                "ingest",
                "wsb_gpu",
                backend,
                size,
                times,
                items=records,
                note=f"{mb / med:,.0f} MB/s of JSON ({mb:,.0f} MB); {m['rows_out']:,} rows out",
            )
        )

        posts = work / "posts"
        text_mb = pc.sum(pc.binary_length(ds.dataset(posts).to_table(columns=["text"]).column("text"))).as_py() / 1e6

        def run_mentions() -> None:
            last["mentions"] = run_stage(
                "mentions", work / "mentions", posts=posts, tickers=paths["stocknames"], backend=be, client=client
            )

        times = time_call(run_mentions, repeats=repeats)
        mm = last["mentions"]
        med = sorted(times)[len(times) // 2]
        rows.append(
            make_row(
                "mentions",
                "wsb_gpu",
                backend,
                size,
                times,
                items=mm["rows_in"],
                note=f"{text_mb / med:,.0f} MB/s of text ({text_mb:,.0f} MB); {mm['rows_out']:,} rows out",
            )
        )

        if peers and backend == "cpu":
            out: dict[str, int] = {}

            def peer_ingest() -> None:
                shutil.rmtree(work / "posts-pandas", ignore_errors=True)
                out["ingest"] = pandas_ingest(paths["submissions"], paths["comments"], work / "posts-pandas")

            times = time_call(peer_ingest, repeats=repeats, warmup=0)
            med = sorted(times)[len(times) // 2]
            rows.append(
                make_row(
                    "ingest",
                    "pandas",
                    backend,
                    size,
                    times,
                    items=records,
                    note=f"{mb / med:,.0f} MB/s of JSON; {out['ingest']:,} rows out",
                )
            )
            stop = load_stoplist()

            def peer_mentions() -> None:
                shutil.rmtree(work / "mentions-pandas", ignore_errors=True)
                out["mentions"] = pandas_mentions(posts, paths["stocknames"], stop, work / "mentions-pandas")

            times = time_call(peer_mentions, repeats=repeats, warmup=0)
            med = sorted(times)[len(times) // 2]
            same = "same rows" if out["mentions"] == mm["rows_out"] else f"ROWS DIFFER from ours ({mm['rows_out']:,})"
            rows.append(
                make_row(
                    "mentions",
                    "pandas",
                    backend,
                    size,
                    times,
                    items=mm["rows_in"],
                    note=f"{text_mb / med:,.0f} MB/s of text; {out['mentions']:,} rows out, {same}",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, size=1_000_000, size_help="records (submissions + comments)")
    parser.add_argument("--block-size", default="16MiB", help="ingest block size")
    parser.add_argument("--no-peers", action="store_true", help="skip the pandas peer")
    args = parser.parse_args(argv)
    rows = bench(args.backend, args.size, args.repeats, peers=not args.no_peers, block_size=args.block_size)
    return 0 if print_rows(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
