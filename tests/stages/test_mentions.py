"""Stage mentions: every rule of docs/mentions.md against a plain ``re`` reference.

The reference applies the rules literally with Python regex lookarounds, post by post;
it shares no code with the stage. Both token extractors (the NumPy byte scanner and the
cuDF/pandas string-ops one) must give the same row set, on every backend present.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import zstandard

from wsb_gpu.cli import main
from wsb_gpu.errors import WsbError
from wsb_gpu.sources.tickers import read_stocknames
from wsb_gpu.stages import run_stage
from wsb_gpu.stages.mentions import alive_table, load_stoplist, mention_kernel

DOLLAR = re.compile(r"(?<![A-Za-z0-9_])\$([A-Z]{1,5})(?![A-Za-z0-9_])")
BARE = re.compile(r"(?<![A-Za-z0-9_$])([A-Z]{2,5})(?![A-Za-z0-9_])")

DAY = 1611014400  # 2021-01-19T00:00:00Z
STOCKNAMES = """\
permno,Ticker,NameDt,NAMEENDT,comnam
1,GME,1990-01-01,2099-12-31,GAMESTOP
10,ABC,1990-01-01,2021-01-18,OLD ABC
11,ABC,20210119,20991231,NEW ABC
20,FB,2012-05-18,2022-06-08,META PLATFORMS
20,META,2022-06-09,2099-12-31,META PLATFORMS
30,ALL,1993-06-03,2099-12-31,ALLSTATE
40,F,1925-01-01,2099-12-31,FORD
50,AMC,2013-12-18,2099-12-31,AMC ENT
60,TSLA,2010-06-29,2099-12-31,TESLA
70,NOK,1994-01-01,2099-12-31,NOKIA
80,BB,1999-02-04,2099-12-31,BLACKBERRY
90,BRK.B,1990-01-01,2099-12-31,BERKSHIRE
100,DUP,2020-01-01,2099-12-31,DUP ONE
101,DUP,2020-01-01,2099-12-31,DUP TWO
110,LATE,2030-01-01,2099-12-31,NOT YET
120,GM,2010-11-18,2099-12-31,GENERAL MOTORS
130,T,1984-01-01,2099-12-31,AT&T
140,AT,2000-01-01,2099-12-31,AT CORP
150,YOLO,2019-01-01,2099-12-31,YOLO ETF
"""

TEXTS = [
    # token edges
    "GME🚀 GME. GME's (GME) GME/ gme Gme TSLA2 TSLA_gang TSLAs ＧＭＥ",
    "$F and F alone, $ALL in, ALL in, $YOLO YOLO $GME$TSLA x$NOK $$AMC $TSLA2 $ TSLAXY $TOOLONG",
    "start GME\nGME\tGME end AMC",
    "https://finance.yahoo.com/quote/TSLA/ and [TSLA](http://x.com/TSLA)",
    # HTML entities are unescaped once
    "AT&amp;T &amp;GME &lt;GME&gt; &#36;AMC &amp;#36;NOK &amp;lt;BB &copyGME",
    "DUP and $DUP",
    "LATE $LATE",
    "BRK.B BRK",
    "_GME GME_ 1GME GME1 a$GM x$$GM",
    "",
    "no tickers here",
    "nbsp\u00a0GME\u00a0 zero-width\u200bTSLA\u200b",
    "GME" * 3 + " " + "GME " * 50,
]


def reference(posts: pd.DataFrame, names: pd.DataFrame, stop: frozenset[str]) -> set:
    rows = set()
    periods = [(r.ticker, r.permno, r.namedt.date(), r.nameendt.date()) for r in names.itertuples()]
    for p in posts.itertuples():
        d = dt.datetime.fromtimestamp(p.created_utc, tz=dt.timezone.utc).date()
        text = html.unescape(p.text)

        def alive(sym, d=d):
            return sorted({perm for t, perm, a, b in periods if t == sym and a <= d <= b})

        counts = Counter()
        for m in DOLLAR.finditer(text):
            if alive(m.group(1)):
                counts[m.group(1)] += 1
        for m in BARE.finditer(text):
            if m.group(1) not in stop and alive(m.group(1)):
                counts[m.group(1)] += 1
        for sym, n in counts.items():
            for perm in alive(sym):
                rows.add((p.id, p.kind, p.created_utc, d, sym, perm, n))
    return rows


def as_rows(frame: pd.DataFrame) -> set:
    cols = ["id", "kind", "created_utc", "date", "ticker", "permno", "n_occ"]
    f = frame[cols]
    return {
        (str(a), str(b), int(c), d if isinstance(d, dt.date) else pd.Timestamp(d).date(), str(e), int(g), int(h))
        for a, b, c, d, e, g, h in f.itertuples(index=False)
    }


@pytest.fixture
def names(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "stocknames.csv"
    path.write_text(STOCKNAMES)
    return read_stocknames(path)


@pytest.fixture
def posts() -> pd.DataFrame:
    rows = []
    times = [DAY - 30, DAY + 30, DAY + 86400 * 600]  # 23:59:30Z, 00:00:30Z, 2022-09-11
    for i, text in enumerate(TEXTS):
        for k, t in enumerate(times):
            rows.append(
                {"id": f"p{i}_{k}", "kind": "comment" if k % 2 else "submission", "created_utc": t, "text": text}
            )
    # reused symbol on both sides of midnight UTC, and the ticker change FB -> META
    rows += [
        {"id": "abc_before", "kind": "comment", "created_utc": DAY - 30, "text": "ABC $ABC"},
        {"id": "abc_after", "kind": "comment", "created_utc": DAY + 30, "text": "ABC"},
        {
            "id": "fb_old",
            "kind": "comment",
            "created_utc": 1654646400 + 3600,
            "text": "FB META $FB $META",
        },  # 2022-06-08
        {
            "id": "fb_new",
            "kind": "comment",
            "created_utc": 1654732800 + 3600,
            "text": "FB META $FB $META",
        },  # 2022-06-09
        {"id": "long", "kind": "comment", "created_utc": DAY, "text": ("x " * 150_000) + "GME"},
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("impl", ["scan", "strings"])
def test_kernel_matches_reference(posts, names, backend, impl):
    stop = load_stoplist()
    frame = backend.from_pandas(posts)
    got = mention_kernel(frame, alive_table(names), stop, impl=impl)
    expected = reference(posts, names, stop)
    assert as_rows(got) == expected
    assert len(got) == len(expected)  # one row per (post, ticker, permno)
    assert list(got.columns) == ["id", "kind", "created_utc", "date", "ticker", "permno", "n_occ"]
    assert str(got["n_occ"].dtype) == "int32" and str(got["permno"].dtype) == "int64"


def test_each_rule_explicitly(posts, names, cpu):
    stop = load_stoplist()
    got = as_rows(mention_kernel(posts, alive_table(names), stop))
    by_post: dict[str, dict] = {}
    for pid, _, _, _, sym, perm, n in got:
        by_post.setdefault(pid, {})[(sym, perm)] = n
    edges = by_post["p0_0"]
    assert edges == {("GME", 1): 5}  # 🚀 . 's ( / count; lower/mixed/2/_/s/full-width do not
    second = by_post["p1_0"]
    assert second[("F", 40)] == 1  # $F counts, bare F never
    assert second[("ALL", 30)] == 1  # stoplisted: only $ALL counts
    assert second[("YOLO", 150)] == 1
    assert second[("GME", 1)] == 1 and ("TSLA", 60) not in second  # $GME$TSLA: second $ follows a word char
    assert ("NOK", 70) not in second and second[("AMC", 50)] == 1  # x$NOK no; $$AMC yes
    assert by_post["p3_0"] == {("TSLA", 60): 3}  # URLs are not stripped
    html_post = by_post["p4_0"]
    assert html_post[("GME", 1)] == 3 and html_post[("AMC", 50)] == 1 and html_post[("BB", 80)] == 1
    # AT&T: bare T is a single letter, AT is stoplisted; &amp;#36;NOK unescapes once to
    # "&#36;NOK", where NOK is a bare token after ';'
    assert ("T", 130) not in html_post and ("AT", 140) not in html_post and html_post[("NOK", 70)] == 1
    assert by_post["p5_0"] == {("DUP", 100): 2, ("DUP", 101): 2}  # two PERMNOs alive: two rows
    assert "p6_0" not in by_post and "p7_0" not in by_post  # not yet alive; BRK.B never a token
    assert by_post["abc_before"] == {("ABC", 10): 2} and by_post["abc_after"] == {("ABC", 11): 1}
    assert by_post["fb_old"] == {("FB", 20): 2} and by_post["fb_new"] == {("META", 20): 2}
    assert by_post["long"] == {("GME", 1): 1}
    assert by_post["p8_0"] == {("GM", 120): 1}  # x$$GM: the second $ is preceded by $


def test_custom_stoplist(posts, names, tmp_path):
    path = tmp_path / "stop.txt"
    path.write_text("# mine\nGME  # comment\n\n")
    stop = load_stoplist(path)
    assert stop == frozenset({"GME"})
    got = mention_kernel(posts, alive_table(names), stop)
    assert as_rows(got) == reference(posts, names, stop)
    bad = tmp_path / "bad.txt"
    bad.write_text("gme\n")
    with pytest.raises(WsbError, match="1-5 capitals"):
        load_stoplist(bad)


def test_random_texts_both_impls_agree_with_reference(names, cpu):
    rng = np.random.default_rng(0)
    alphabet = list("GMEABCDFTSL$ _x1.'\n&;amp🚀Ｇ") + ["&amp;", "$$", "GME", "AMC", "TSLA"]
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(3000)]
    posts = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(texts))],
            "kind": "comment",
            "created_utc": rng.integers(DAY - 86400 * 5, DAY + 86400 * 5, size=len(texts)),
            "text": texts,
        }
    )
    stop = frozenset({"AMC"})
    expected = reference(posts, names, stop)
    for impl in ("scan", "strings"):
        assert as_rows(mention_kernel(posts, alive_table(names), stop, impl=impl)) == expected


def write_zst(path: Path, lines: list[bytes]) -> Path:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31)
    with open(path, "wb") as fh, zstandard.ZstdCompressor(compression_params=params).stream_writer(fh) as w:
        w.write(b"\n".join(lines))
    return path


def test_end_to_end_from_dumps(posts, names, tmp_path, backend):
    """ingest -> mentions on files, through the dataset contract, against the reference."""
    stock = tmp_path / "stocknames.csv"
    stock.write_text(STOCKNAMES)
    lines = [
        json.dumps(
            {"id": r.id, "created_utc": str(r.created_utc) if i % 3 == 0 else int(r.created_utc), "body": r.text}
        ).encode()
        for i, r in enumerate(posts.itertuples())
    ]
    lines.insert(5, b"{broken")
    dump = write_zst(tmp_path / "wallstreetbets_comments.zst", lines)
    run_stage("ingest", tmp_path / "posts", comments=dump, backend=backend, block_size="4KiB")
    m = run_stage("mentions", tmp_path / "mentions", posts=tmp_path / "posts", tickers=stock, backend=backend)
    table = pq.read_table(tmp_path / "mentions")
    assert str(table.schema.field("date").type) == "date32[day]"
    got = as_rows(table.to_pandas())
    expected = reference(posts.assign(kind="comment"), names, load_stoplist())
    assert got == expected
    assert m["rows_out"] == len(expected) and m["rows_in"] == len(posts)
    assert m["stage"] == "mentions" and "schema" in m


def test_cli_commands(tmp_path, posts):
    stock = tmp_path / "stocknames.csv"
    stock.write_text(STOCKNAMES)
    dump = write_zst(
        tmp_path / "wallstreetbets_comments.zst",
        [
            json.dumps({"id": r.id, "created_utc": int(r.created_utc), "body": r.text}).encode()
            for r in posts.itertuples()
        ]
        + [b""],
    )
    assert (
        main(
            [
                "--backend",
                "cpu",
                "--cluster",
                "none",
                "ingest",
                "--comments",
                str(dump),
                "--out",
                str(tmp_path / "posts"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--backend",
                "cpu",
                "--cluster",
                "none",
                "mentions",
                "--posts",
                str(tmp_path / "posts"),
                "--tickers",
                str(stock),
                "--out",
                str(tmp_path / "mentions"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "mentions").num_rows > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("permno,ticker,start\n1,GME,2020-01-01\n")
    assert (
        main(
            [
                "--backend",
                "cpu",
                "--cluster",
                "none",
                "mentions",
                "--posts",
                str(tmp_path / "posts"),
                "--tickers",
                str(bad),
                "--out",
                str(tmp_path / "m2"),
                "--no-progress",
            ]
        )
        == 2
    )
