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

    from wsb_gpu.sources.tickers import read_stocknames, to_days

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
