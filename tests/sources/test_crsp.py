"""Reading CRSP daily and OHLCV files: column matching, splitting, parsing, errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from wsb_gpu.errors import WsbError
from wsb_gpu.sources.crsp import (
    csv_ranges,
    file_kind,
    input_columns,
    parse_table,
    read_csv_range,
    resolve_columns,
    symbol_id,
)


def test_resolve_columns_case_insensitive_and_aliases():
    assert resolve_columns(["permno", "DATE", "ret", "Retx", "DLRET", "TICKER", "PRC"]) == {
        "permno": "permno",
        "date": "DATE",
        "ret": "ret",
        "retx": "Retx",
        "dlret": "DLRET",
    }
    # CRSP 2.0 (CIZ) names
    assert resolve_columns(["PERMNO", "DlyCalDt", "DlyRet"]) == {
        "permno": "PERMNO",
        "date": "DlyCalDt",
        "ret": "DlyRet",
    }
    # DLRET alone is enough to have a return
    assert resolve_columns(["PERMNO", "date", "DLRET"])["dlret"] == "DLRET"
    assert resolve_columns(["Date", "Symbol", "Adj Close", "Close"], format="ohlcv") == {
        "symbol": "Symbol",
        "date": "Date",
        "close": "Adj Close",
    }


def test_resolve_columns_mapping_wins_and_is_checked():
    got = resolve_columns(["id", "day", "r", "RET"], columns={"permno": "ID", "date": "day", "ret": "r"})
    assert got == {"permno": "id", "date": "day", "ret": "r"}
    with pytest.raises(WsbError, match=r"--columns ret=nope: column 'nope' not found in f.csv \(columns: id, day\)"):
        resolve_columns(["id", "day"], columns={"ret": "nope"}, source="f.csv")
    with pytest.raises(WsbError, match="the roles are: permno, date, ret, retx, dlret"):
        resolve_columns(["PERMNO", "date", "RET"], columns={"price": "PRC"})


@pytest.mark.parametrize(
    ("found", "fmt", "expect"),
    [
        (
            ["PERMNO", "DATE", "PRC"],
            "crsp",
            "no return column (RET, RETX or DLRET) in f.csv (columns: PERMNO, DATE, PRC); pass --columns ret=<name>",
        ),
        (["DATE", "RET"], "crsp", "no PERMNO column in f.csv (columns: DATE, RET); pass --columns permno=<name>"),
        (["PERMNO", "RET"], "crsp", "no date column in f.csv (columns: PERMNO, RET); pass --columns date=<name>"),
        (
            ["Date", "Ticker", "Close"],
            "ohlcv",
            "if 'Close' is already split/dividend-adjusted, pass --columns close=Close",
        ),
        (["Date", "Ticker", "Adj Close"], "crsp", "this looks like an OHLCV file: pass --format ohlcv"),
    ],
)
def test_missing_roles_fail_in_one_line(found, fmt, expect):
    with pytest.raises(WsbError) as e:
        resolve_columns(found, format=fmt, source="f.csv")
    assert expect in str(e.value)
    assert "\n" not in str(e.value)


def test_input_columns_csv_tsv_compressed_parquet(tmp_path):
    import gzip

    (tmp_path / "a.csv").write_text("\ufeffPERMNO,date,RET\n1,20200102,0.1\n")
    assert input_columns(tmp_path / "a.csv") == (["PERMNO", "date", "RET"], ",")
    (tmp_path / "b.txt").write_text("PERMNO\tdate\tRET\n1\t20200102\t0.1\n")
    assert input_columns(tmp_path / "b.txt") == (["PERMNO", "date", "RET"], "\t")
    with gzip.open(tmp_path / "c.csv.gz", "wt") as f:
        f.write('"PERMNO","date","RET"\n1,2,3\n')
    assert input_columns(tmp_path / "c.csv.gz")[0] == ["PERMNO", "date", "RET"]
    pd.DataFrame({"PERMNO": [1], "DATE": ["20200102"], "RET": [0.1]}).to_parquet(tmp_path / "d.parquet")
    assert input_columns(tmp_path / "d.parquet")[0] == ["PERMNO", "DATE", "RET"]
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(WsbError, match="is empty"):
        input_columns(tmp_path / "e.csv")
    assert file_kind(tmp_path) == ("parquet", None)
    assert file_kind("x.CSV.GZ") == ("csv", "gzip")


def days(iso: list[str]) -> list[int]:
    return [(pd.Timestamp(d) - pd.Timestamp("1970-01-01")).days for d in iso]


def test_parse_return_selection():
    raw = pa.table(
        {
            "PERMNO": ["10001", "10001", "10001", "10001", "10001", "10001", "10001"],
            "date": ["20200102", "2020-01-03", "20200106", "20200107", "20200108", "20200109", "20200110"],
            "RET": ["0.01", "C", "", "0.02", "-99", "inf", " -0.5 "],
            "RETX": ["0.009", "0.03", "", "", "B", "", ""],
            "DLRET": ["", "", "-0.4", "-0.9", "", "", ""],
        }
    )
    resolved = {"permno": "PERMNO", "date": "date", "ret": "RET", "retx": "RETX", "dlret": "DLRET"}
    out = parse_table(raw, resolved)
    assert out["permno"].dtype == np.int64 and out["permno"].tolist() == [10001] * 7
    assert out["date"].tolist() == days(
        ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08", "2020-01-09", "2020-01-10"]
    )
    got = out["ret"].tolist()
    want = [0.01, 0.03, -0.4, 0.02, math.nan, math.nan, -0.5]  # RET wins over DLRET (row 4)
    assert all((math.isnan(g) and math.isnan(w)) or g == w for g, w in zip(got, want))
    assert out["ret_source"].tolist() == [0, 1, 2, 0, -1, -1, 0]


def test_parse_typed_parquet_columns():
    raw = pa.table({"PERMNO": [7, 7], "date": [20200102, 20200103], "RET": [0.1, None]})
    out = parse_table(raw, {"permno": "PERMNO", "date": "date", "ret": "RET"})
    assert out["ret"][0] == 0.1 and math.isnan(out["ret"][1])
    assert out["date"].tolist() == days(["2020-01-02", "2020-01-03"])
    raw = pa.table({"PERMNO": [7.0, 7.0], "date": pa.array([18263, 18264], pa.date32()), "RET": ["0.1", "C"]})
    out = parse_table(raw, {"permno": "PERMNO", "date": "date", "ret": "RET"})
    assert out["permno"].tolist() == [7, 7] and out["date"].tolist() == [18263, 18264]


def test_parse_bad_values_name_the_value():
    resolved = {"permno": "PERMNO", "date": "date", "ret": "RET"}
    with pytest.raises(WsbError, match=r"'10001\.5'.*not an integer PERMNO"):
        parse_table(pa.table({"PERMNO": ["10001", "10001.5"], "date": ["20200102"] * 2, "RET": ["0"] * 2}), resolved)
    assert parse_table(
        pa.table({"PERMNO": [" 10001", "10002.0"], "date": ["20200102"] * 2, "RET": ["0"] * 2}), resolved
    )["permno"].tolist() == [10001, 10002]
    with pytest.raises(WsbError, match=r"'2020-13-01'.*not a date"):
        parse_table(pa.table({"PERMNO": ["1", "1"], "date": ["20200102", "2020-13-01"], "RET": ["0"] * 2}), resolved)


def test_parse_ohlcv_ids():
    raw = pa.table(
        {
            "Date": ["2021-01-04", "2021-01-05", "2021-01-04"],
            "Ticker": ["GME", "GME", "amc"],
            "Adj Close": ["17.25", "0", "4.5"],
        }
    )
    out = parse_table(raw, {"symbol": "Ticker", "date": "Date", "close": "Adj Close"}, format="ohlcv")
    assert out["permno"].tolist() == [symbol_id("GME"), symbol_id("GME"), symbol_id("AMC")]
    assert out["close"][0] == 17.25 and math.isnan(out["close"][1])  # a zero price is missing


def test_csv_ranges_cover_every_line_once(tmp_path):
    lines = [f"{10000 + i % 7},2020{1 + i % 12:02d}{1 + i % 28:02d},0.{i:04d}" for i in range(500)]
    path = tmp_path / "c.csv"
    path.write_text("PERMNO,date,RET\r\n" + "\r\n".join(lines))  # CRLF and no final newline
    resolved = {"permno": "PERMNO", "date": "date", "ret": "RET"}
    for block in (1, 37, 1000, 10**6):
        ranges = csv_ranges(path, block)
        assert ranges[0][0] == len("PERMNO,date,RET\r\n") and ranges[-1][1] == path.stat().st_size
        got = [read_csv_range(path, a, b, found=["PERMNO", "date", "RET"], resolved=resolved) for a, b in ranges]
        assert sum(t.num_rows for t in got) == 500
        assert [v for t in got for v in t.column("RET").to_pylist()] == [line.split(",")[2] for line in lines]


def test_symbol_id_is_stable():
    # pinned: changing the hash would renumber every OHLCV stock between runs
    assert symbol_id("GME") == 5880126692409098232
    assert symbol_id("AAPL") == symbol_id(" aapl")
    ids = {symbol_id(f"S{i}") for i in range(5000)}
    assert len(ids) == 5000 and all(0 <= i < 2**63 for i in ids)
