"""Reading CRSP daily and OHLCV files: column matching, parsing, errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from wsb_gpu.backend import to_pandas
from wsb_gpu.errors import WsbError
from wsb_gpu.sources.crsp import file_kind, input_columns, normalize, resolve_columns, symbol_id


def test_resolve_columns_case_insensitive_and_aliases():
    assert resolve_columns(["permno", "DATE", "ret", "Retx", "DLRET", "TICKER", "PRC"]) == {
        "permno": "permno", "date": "DATE", "ret": "ret", "retx": "Retx", "dlret": "DLRET"}
    # CRSP 2.0 (CIZ) names
    assert resolve_columns(["PERMNO", "DlyCalDt", "DlyRet"]) == {"permno": "PERMNO", "date": "DlyCalDt", "ret": "DlyRet"}
    # DLRET alone is enough to have a return
    assert resolve_columns(["PERMNO", "date", "DLRET"])["dlret"] == "DLRET"
    assert resolve_columns(["Date", "Symbol", "Adj Close", "Close"], format="ohlcv") == {
        "symbol": "Symbol", "date": "Date", "close": "Adj Close"}


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
        (["PERMNO", "DATE", "PRC"], "crsp", "no return column (RET, RETX or DLRET) in f.csv (columns: PERMNO, DATE, PRC); pass --columns ret=<name>"),
        (["DATE", "RET"], "crsp", "no PERMNO column in f.csv (columns: DATE, RET); pass --columns permno=<name>"),
        (["PERMNO", "RET"], "crsp", "no date column in f.csv (columns: PERMNO, RET); pass --columns date=<name>"),
        (["Date", "Ticker", "Close"], "ohlcv", "if 'Close' is already split/dividend-adjusted, pass --columns close=Close"),
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


def test_normalize_return_selection(backend):
    raw = pd.DataFrame({
        "PERMNO": ["10001", "10001", "10001", "10001", "10001", "10001", "10001"],
        "date": ["20200102", "2020-01-03", "20200106", "20200107", "20200108", "20200109", "20200110"],
        "RET": ["0.01", "C", "", "0.02", "-99", "inf", " -0.5 "],
        "RETX": ["0.009", "0.03", "", "", "B", "", ""],
        "DLRET": ["", "", "-0.4", "-0.9", "", "", ""],
    })
    resolved = {"permno": "PERMNO", "date": "date", "ret": "RET", "retx": "RETX", "dlret": "DLRET"}
    out = to_pandas(normalize(backend.from_pandas(raw), resolved))
    assert out["permno"].dtype == np.int64 and out["permno"].tolist() == [10001] * 7
    assert [str(d.date()) for d in out["date"]] == ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07",
                                                   "2020-01-08", "2020-01-09", "2020-01-10"]
    got = out["ret"].tolist()
    want = [0.01, 0.03, -0.4, 0.02, math.nan, math.nan, -0.5]   # RET wins over DLRET (row 4)
    assert all((math.isnan(g) and math.isnan(w)) or g == w for g, w in zip(got, want))
    assert out["ret_source"].tolist() == [0, 1, 2, 0, -1, -1, 0]


def test_normalize_typed_parquet_columns(backend):
    raw = pd.DataFrame({"PERMNO": [7, 7], "date": [20200102, 20200103], "RET": [0.1, np.nan]})
    out = to_pandas(normalize(backend.from_pandas(raw), {"permno": "PERMNO", "date": "date", "ret": "RET"}))
    assert out["ret"].iloc[0] == 0.1 and math.isnan(out["ret"].iloc[1])
    assert str(out["date"].iloc[1].date()) == "2020-01-03"


def test_normalize_ohlcv_ids(backend):
    raw = pd.DataFrame({"Date": ["2021-01-04", "2021-01-05", "2021-01-04"], "Ticker": ["GME", "GME", "amc"],
                        "Adj Close": ["17.25", "0", "4.5"]})
    out = to_pandas(normalize(backend.from_pandas(raw), {"symbol": "Ticker", "date": "Date", "close": "Adj Close"},
                              format="ohlcv"))
    assert out["permno"].tolist() == [symbol_id("GME"), symbol_id("GME"), symbol_id("AMC")]
    assert out["close"].iloc[0] == 17.25 and math.isnan(out["close"].iloc[1])   # a zero price is missing


def test_symbol_id_is_stable():
    # pinned: changing the hash would renumber every OHLCV stock between runs
    assert symbol_id("GME") == 5880126692409098232
    assert symbol_id("AAPL") == symbol_id(" aapl")
    ids = {symbol_id(f"S{i}") for i in range(5000)}
    assert len(ids) == 5000 and all(0 <= i < 2**63 for i in ids)
