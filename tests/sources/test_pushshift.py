"""Pushshift reader: block cutting, frames, the per-line rules and the fast/slow agreement."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import zstandard

from wsb_gpu.errors import WsbError
from wsb_gpu.sources.pushshift import iter_blocks, line_bounds, parse_block, parse_block_size


def zst(path: Path, data: bytes, **kw) -> Path:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=kw.get("window_log", 31))
    with open(path, "wb") as fh, zstandard.ZstdCompressor(compression_params=params).stream_writer(fh) as w:
        w.write(data)
    return path


def test_blocks_are_newline_aligned_and_lossless(tmp_path):
    rng = random.Random(0)
    for _trial in range(25):
        lines = [b"x" * rng.choice([0, 1, 7, 200, 5000]) for _ in range(rng.randint(0, 300))]
        data = b"\n".join(lines) + rng.choice([b"", b"\n", b"\r\n"])
        size = rng.choice([1024, 3000, 1 << 16])
        blocks = list(iter_blocks(zst(tmp_path / "d.zst", data), size))
        assert b"".join(blocks) == data
        for b in blocks[:-1]:
            assert b.endswith(b"\n") and (len(b) <= size or b.count(b"\n") == 1)


def test_window_2gib_concatenated_frames_and_plain_ndjson(tmp_path):
    p = zst(tmp_path / "a.zst", b"a\nb\n")
    with pytest.raises(zstandard.ZstdError):  # why max_window_size matters
        zstandard.ZstdDecompressor().stream_reader(p.read_bytes()).read()
    two = tmp_path / "two.zst"
    two.write_bytes(p.read_bytes() + zstandard.ZstdCompressor().compress(b"c\n"))
    assert b"".join(iter_blocks(two, 1024)) == b"a\nb\nc\n"
    plain = tmp_path / "plain.ndjson"
    plain.write_bytes(b"x\ny")
    assert list(iter_blocks(plain, 1024)) == [b"x\ny"]


def test_truncated_or_missing_file_is_a_clear_error(tmp_path):
    data = zstandard.ZstdCompressor().compress(b'{"id":"a"}\n' * 5000)
    cut = tmp_path / "cut.zst"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WsbError, match="cannot decompress '.*cut.zst'"):
        list(iter_blocks(cut, 1024))
    with pytest.raises(WsbError, match="does not exist"):
        list(iter_blocks(tmp_path / "none.zst", 1024))
    with pytest.raises(WsbError, match="block_size"):
        parse_block_size("2KB-ish")


def test_line_bounds_final_line_without_newline():
    s, e = line_bounds(b'{"a":1}\r\n\n{"b":2}')
    assert list(zip(s.tolist(), e.tolist())) == [(0, 8), (9, 9), (10, 17)]
    assert line_bounds(b"")[0].size == 0


@pytest.mark.parametrize("engine", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_fast_path_agrees_with_line_by_line_on_random_lines(engine):
    """Random mixes of valid and invalid lines: the fast parser plus bisection must equal
    parsing every line on its own with json."""
    rng = random.Random(1)
    pool = [
        lambda i: json.dumps({"id": f"i{i}", "created_utc": 1600000000 + i, "body": "b", "edited": False}).encode(),
        lambda i: json.dumps({"id": f"i{i}", "created_utc": str(1600000000 + i), "body": "b"}).encode(),
        lambda i: json.dumps({"id": f"i{i}", "created_utc": 1.5}).encode(),
        lambda i: json.dumps({"id": i, "created_utc": 1}).encode(),
        lambda i: json.dumps({"id": f"i{i}", "created_utc": 1, "body": 3}).encode(),
        lambda i: json.dumps({"id": f"i{i}", "created_utc": 1, "edited": 1.25}).encode(),
        lambda i: b'{"id": "t%d", "created_utc": 1, "body": "cut' % i,
        lambda i: b'{"id": "u%d", "created_utc": 1, "body": "\\udc00"}' % i,
        lambda i: b"",
        lambda i: b"\xc3\x28",
        # digit strings at the edge of the regex engines: libcudf's `$` matches before a final
        # newline, RE2's does not; neither may let "17\n" or non-ASCII digits through.
        lambda i: json.dumps({"id": f"n{i}", "created_utc": "17\n"}).encode(),
        lambda i: json.dumps({"id": f"a{i}", "created_utc": "\u0661\u0667"}).encode(),
        lambda i: json.dumps({"id": f"s{i}", "created_utc": " 17"}).encode(),
        lambda i: json.dumps({"id": f"m{i}", "created_utc": -5}).encode(),
        # what libcudf accepts unless told to be strict: a leading zero, a raw control character
        lambda i: b'{"id": "z%d", "created_utc": 017}' % i,
        lambda i: b'{"id": "c%d", "created_utc": 1, "body": "a\tb"}' % i,
        # a nested string "created_utc" misleads the per-line type hint of the CPU path
        lambda i: json.dumps({"id": f"h{i}", "media": {"created_utc": "7"}, "created_utc": 1600000000 + i}).encode(),
    ]
    for trial in range(6):
        weights = [50, 10, 1, 1, 1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] if trial % 2 else [1] * len(pool)
        lines = [rng.choices(pool, weights)[0](i) for i in range(rng.randint(1, 2000))]
        block = b"\n".join(lines)
        if block.endswith(b"\n"):  # a final "\n" ends the last line; it starts no new one
            lines = lines[:-1]
        got_t, got_c = parse_block(block, "comment", engine=engine)
        exp = []
        bad = 0
        for line in lines:
            try:
                obj = json.loads(line.decode("utf-8"))
                cu = obj.get("created_utc")
                ok = (
                    isinstance(obj, dict)
                    and isinstance(obj.get("id"), str)
                    and ((type(cu) is int) or (isinstance(cu, str) and cu.isdigit() and cu.isascii()))
                )
            except (ValueError, UnicodeDecodeError):
                ok = False
            if ok:
                body = obj.get("body")
                body = body.replace("\udc00", "\ufffd") if isinstance(body, str) else None
                exp.append((obj["id"], int(cu), body))
            else:
                bad += 1
        got = list(zip(*[got_t.column(c).to_pylist() for c in ("id", "created_utc", "body")]))
        assert sorted(got, key=repr) == sorted(exp, key=repr)  # the order within a block is free
        assert got_c.lines == len(lines) and got_c.valid == len(exp) and sum(got_c.malformed.values()) == bad
