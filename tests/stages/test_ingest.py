"""Stage ingest: small zstd dumps holding every trap, compared with a plain-Python reference.

The reference below reads the whole decompressed file and applies the rules of
docs/inputs.md line by line with ``json`` and ``re``; it shares no code with the stage.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import read_manifest
from wsb_gpu.stages import format_summary, run_stage
from wsb_gpu.stages.ingest import BoundedRunner


def ingest(submissions, comments, out, **kw):
    return run_stage("ingest", out, submissions=submissions, comments=comments, **kw)


REASONS = ("blank", "bad_utf8", "bad_json", "bad_record")
T0 = 1611014400  # 2021-01-19T00:00:00Z


# --- building dumps -------------------------------------------------------------------------


def write_zst(path: Path, data: bytes) -> Path:
    """Stream-compress with a 2 GiB window and no content size, like the Pushshift dumps."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31)
    with open(path, "wb") as fh, zstandard.ZstdCompressor(compression_params=params).stream_writer(fh) as w:
        for i in range(0, len(data), 1 << 16):  # several writes: no single-shot frame
            w.write(data[i : i + (1 << 16)])
    return path


def j(**obj) -> bytes:
    return json.dumps(obj).encode()


def comment_lines() -> list[bytes]:
    filler = [
        j(id=f"f{i}", created_utc=T0 + i, body=f"filler {i} GME", author="a", edited=[False, 1.5][i % 2], score=i)
        for i in range(300)
    ]
    traps = [
        j(id="c1", created_utc=T0 - 30, body="ends 23:59:30Z ABC", author="u1"),
        b"",
        b"   \t",
        j(id="c2", created_utc=str(T0 + 30), body="string created_utc ABC"),
        j(id="c3", created_utc=T0, body="crlf line") + b"\r",
        b'{"id": "c4", "created_utc": 1611014400, "body": "bad \xff\xfe utf8"}',
        b'{"id": "c5", "created_utc": 1611014400, "body": "trunc',
        b'{"id": "c6", "created_utc": 1611014400, "body": "lone \\ud83d surrogate", "author": "x\\udc00y"}',
        b'{"id": "c7", "created_utc": 1611014400, "body": "pair \\ud83d\\ude80 ok"}',
        j(id="c8", created_utc=T0, body="GME " * 75000),  # a 300k-character body
        j(id=9, created_utc=T0, body="numeric id"),
        j(id="c10", created_utc=1.5, body="float created"),
        j(id="c11", created_utc="-5", body="signed string created"),
        j(id="c12", body="no created_utc"),
        j(id="c13", created_utc=True, body="bool created"),
        b"[1, 2, 3]",
        j(id="c14", created_utc=T0) + b" " + j(id="c15", created_utc=T0),
        j(id="c16", created_utc=T0, body="deleted author", author="[deleted]"),
        b'{"id": "c17", "created_utc": 1611014400, "body": "nan elsewhere", "score": NaN}',
        "raw utf8 🚀 GME and ＧＭＥ".join(['{"id": "c18", "created_utc": 1611014400, "body": "', '"}']).encode(),
        b'\xef\xbb\xbf{"id": "c19", "created_utc": 1611014400}',
        j(id="c20", created_utc=99999999999999999999999, body="too big"),
        j(id="c21", created_utc=T0, body=None, author=None),
        b'{"id": "c22", "created_utc": 012}',
        j(id="c23", created_utc=-86401, body="before 1970"),
    ]
    return filler[:150] + traps + filler[150:] + [j(id="last", created_utc=T0, body="no final newline")]


def submission_lines() -> list[bytes]:
    return [
        j(id="s1", created_utc=T0, title="Title GME", selftext="self text"),
        j(id="s2", created_utc=str(T0 + 1), title="only title"),
        j(id="s3", created_utc=T0 + 2, selftext="only selftext", author="[deleted]"),
        j(id="s4", created_utc=T0 + 3, title="t", selftext=None),
        b"",
        j(id="s5", created_utc="x", title="bad"),
    ] + [j(id=f"s{i}", created_utc=T0 + i, title=f"t{i}", selftext="s" * (i % 7)) for i in range(6, 200)]


@pytest.fixture
def dumps(tmp_path: Path) -> tuple[Path, Path]:
    subs = write_zst(tmp_path / "wallstreetbets_submissions.zst", b"\n".join(submission_lines()) + b"\n")
    coms = write_zst(
        tmp_path / "wallstreetbets_comments.zst",
        b"\r\n".join(comment_lines()[:3]) + b"\n" + b"\n".join(comment_lines()[3:]),
    )
    return subs, coms


# --- the independent reference --------------------------------------------------------------


def reference(path: Path, kind: str) -> tuple[set, dict]:
    raw = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(io.BytesIO(path.read_bytes())).read()
    lines = raw.split(b"\n")
    if raw.endswith(b"\n"):
        lines = lines[:-1]
    counts = Counter()
    surrogates = 0
    rows = set()
    for line in lines:
        if line.strip() == b"":
            counts["blank"] += 1
            continue
        try:
            s = line.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            counts["bad_utf8"] += 1
            continue
        try:
            obj = json.loads(s)
        except ValueError:
            counts["bad_json"] += 1
            continue
        if not isinstance(obj, dict):
            counts["bad_json"] += 1
            continue
        rid, cu = obj.get("id"), obj.get("created_utc")
        ok_cu = (isinstance(cu, int) and not isinstance(cu, bool)) or (
            isinstance(cu, str) and re.fullmatch(r"[0-9]+", cu)
        )
        if not isinstance(rid, str) or not ok_cu or not -(2**63) <= int(cu) < 2**63:
            counts["bad_record"] += 1
            continue

        def fix(v):
            nonlocal surrogates
            if not isinstance(v, str):
                return None
            surrogates += len(re.findall("[\ud800-\udfff]", v))
            return re.sub("[\ud800-\udfff]", "\ufffd", v)

        rid = fix(rid)
        author = fix(obj.get("author"))
        if kind == "submission":
            text = (fix(obj.get("title")) or "") + "\n" + (fix(obj.get("selftext")) or "")
        else:
            text = fix(obj.get("body")) or ""
        created = int(cu)
        date = (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=created)).date()
        rows.add((rid, kind, created, date, author, text, path.name))
    valid = len(rows)
    return rows, {
        "lines": len(lines),
        "valid": valid,
        "malformed": {r: counts[r] for r in REASONS},
        "surrogates_replaced": surrogates,
    }


def read_rows(out: Path) -> set:
    t = pq.read_table(out)
    cols = ["id", "kind", "created_utc", "date", "author", "text", "source"]
    return set(zip(*[t.column(c).to_pylist() for c in cols]))


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", ["1KiB", "64MiB"])
def test_row_set_and_counts_match_reference(dumps, tmp_path, backend, block_size):
    subs, coms = dumps
    m = ingest(subs, coms, tmp_path / "posts", backend=backend, block_size=block_size)
    exp_s, cnt_s = reference(subs, "submission")
    exp_c, cnt_c = reference(coms, "comment")
    got = read_rows(tmp_path / "posts")
    assert got == exp_s | exp_c
    for name, cnt in ((subs.name, cnt_s), (coms.name, cnt_c)):
        f = m["files"][name]
        assert {k: f[k] for k in cnt} == cnt
    assert m["rows_out"] == len(exp_s) + len(exp_c) == len(got)
    assert m["rows_in"] == cnt_s["lines"] + cnt_c["lines"]
    assert read_manifest(tmp_path / "posts") == m


def test_traps_are_counted_as_documented(dumps, tmp_path, backend):
    # On the GPU too: libcudf's JSON reader and regex engine must count every trap the same.
    subs, coms = dumps
    m = ingest(subs, coms, tmp_path / "posts", backend=backend, block_size="1KiB")
    f = m["files"][coms.name]
    # blank: "", "   \t"; bad_utf8: \xff; bad_json: truncated, array, two objects, BOM,
    # leading zero; bad_record: numeric id, float/signed-string/missing/bool/too-big created_utc
    assert f["malformed"] == {"blank": 2, "bad_utf8": 1, "bad_json": 5, "bad_record": 6}
    assert f["surrogates_replaced"] == 2
    rows = {r[0]: r for r in read_rows(tmp_path / "posts")}
    assert rows["c2"][2] == T0 + 30  # string created_utc
    assert rows["c1"][3] == dt.date(2021, 1, 18)  # 23:59:30Z stays on its UTC day
    assert rows["c2"][3] == dt.date(2021, 1, 19)
    assert rows["c6"][5] == "lone \ufffd surrogate" and rows["c6"][4] == "x\ufffdy"
    assert rows["c7"][5] == "pair 🚀 ok"
    assert len(rows["c8"][5]) == 300_000
    assert rows["c16"][4] == "[deleted]" and rows["c21"][4] is None and rows["c21"][5] == ""
    assert rows["last"][5] == "no final newline" and "c3" in rows and "c17" in rows
    assert rows["c23"][3] == dt.date(1969, 12, 30)
    assert rows["s2"][5] == "only title\n" and rows["s3"][5] == "\nonly selftext"


def test_output_schema_and_manifest(dumps, tmp_path, cpu):
    subs, coms = dumps
    m = ingest(subs, coms, tmp_path / "posts", backend=cpu)
    schema = pq.read_schema(next((tmp_path / "posts").glob("part.*.parquet")))
    assert [(f.name, str(f.type)) for f in schema] == [
        ("id", "string"),
        ("kind", "string"),
        ("created_utc", "int64"),
        ("date", "date32[day]"),
        ("author", "string"),
        ("text", "string"),
        ("source", "string"),
    ]
    for key in (
        "stage",
        "inputs",
        "params",
        "rows_in",
        "rows_out",
        "seconds",
        "backend",
        "schema",
        "bytes_in",
        "bytes_out",
    ):
        assert key in m
    assert m["stage"] == "ingest" and m["bytes_json"] > m["bytes_in"] > 0
    assert "wallstreetbets_comments.zst:" in format_summary(m)


def test_only_one_dump_and_empty_dump(tmp_path, cpu):
    one = write_zst(tmp_path / "wallstreetbets_comments.zst", j(id="c1", created_utc=T0, body="GME") + b"\n")
    m = ingest(None, one, tmp_path / "posts", backend=cpu)
    assert m["rows_out"] == 1 and list(m["files"]) == [one.name]
    # A dump with no valid record is not a dump: ingest fails (and writes nothing).
    empty = write_zst(tmp_path / "wallstreetbets_submissions.zst", b"")
    with pytest.raises(WsbError, match="holds no valid record"):
        ingest(empty, None, tmp_path / "empty", backend=cpu)
    assert not (tmp_path / "empty").exists()


def test_clear_errors(tmp_path, cpu):
    with pytest.raises(WsbError, match="does not exist"):
        ingest(tmp_path / "nope.zst", None, tmp_path / "posts", backend=cpu)
    with pytest.raises(WsbError, match="at least one dump"):
        ingest(None, None, tmp_path / "posts", backend=cpu)
    bad = tmp_path / "bad.zst"
    bad.write_bytes(zstandard.ZstdCompressor().compress(b'{"id":"a","created_utc":1}\n' * 1000)[:-20])
    with pytest.raises(WsbError, match="cannot decompress"):
        ingest(None, bad, tmp_path / "posts", backend=cpu)
    assert not (tmp_path / "posts").exists()  # atomic: nothing half-written
    with pytest.raises(WsbError, match="block_size"):
        ingest(None, bad, tmp_path / "posts", backend=cpu, block_size="lots")


def test_bounded_runner_never_reads_ahead():
    """The block stream is only advanced when a slot is free (memory stays bounded)."""
    state = {"produced": 0, "done": 0, "max_ahead": 0}

    def tasks():
        for i in range(50):
            state["produced"] += 1
            state["max_ahead"] = max(state["max_ahead"], state["produced"] - state["done"])
            yield (i,)

    runner = BoundedRunner(None, window=3)
    out = []
    for r in runner.map(lambda i: i * 2, tasks()):
        state["done"] += 1
        out.append(r)
    assert sorted(out) == [2 * i for i in range(50)]
    assert runner.max_in_flight <= 3 and state["max_ahead"] <= 4


@pytest.mark.slow
def test_out_of_core_on_a_cluster_with_small_workers(tmp_path, cpu):
    """Many blocks through 2 worker processes with a small memory limit; the dump is
    several times larger than what is in flight at once."""
    from distributed import Client, LocalCluster

    line = j(id="x", created_utc=T0, body="GME to the moon " * 40, author="a")
    data = b"\n".join(line.replace(b'"x"', f'"x{i}"'.encode()) for i in range(40_000)) + b"\n"
    dump = write_zst(tmp_path / "wallstreetbets_comments.zst", data)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit="600MiB", processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        m = ingest(None, dump, tmp_path / "posts", backend=cpu, client=client, block_size="256KiB", window=4)
    assert m["rows_out"] == 40_000 and m["files"][dump.name]["blocks"] > 50
    assert m["max_in_flight"] <= 4
    assert m["bytes_json"] > 10 * 4 * 256 * 1024 * 0.9  # far more than the blocks in flight
    assert pq.read_table(tmp_path / "posts", columns=["id"]).num_rows == 40_000
