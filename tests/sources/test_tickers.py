"""CRSP name history reader: column names in any case, both date formats, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from wsb_gpu.errors import WsbError
from wsb_gpu.sources.tickers import read_stocknames


def test_case_insensitive_columns_and_both_date_formats(tmp_path):
    p = tmp_path / "names.csv"
    p.write_text("PermNo,ticker,NAMEDT,nameendt,extra\n1, GME ,1990-01-01,20991231,x\n2,ABC,20200101,,y\n")
    t = read_stocknames(p)
    assert t["ticker"].tolist() == ["GME", "ABC"] and t["permno"].tolist() == [1, 2]
    assert t["namedt"].dt.strftime("%Y-%m-%d").tolist() == ["1990-01-01", "2020-01-01"]
    assert t["nameendt"].dt.strftime("%Y-%m-%d").tolist() == ["2099-12-31", "9999-12-31"]  # open-ended


def test_parquet_with_integer_dates(tmp_path):
    p = tmp_path / "names.parquet"
    pd.DataFrame({"PERMNO": [7], "TICKER": ["F"], "NAMEDT": [19250101], "NAMEENDT": [20241231]}).to_parquet(p)
    t = read_stocknames(p)
    assert t.iloc[0]["ticker"] == "F" and str(t.iloc[0]["nameendt"].date()) == "2024-12-31"


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "permno,ticker,namedt\n1,GME,2020-01-01\n",
            r"NAMEENDT not found in names.csv \(columns: permno, ticker, namedt\)",
        ),
        (
            "permno,ticker,namedt,nameendt\n1,GME,01/02/2020,2020-01-03\n",
            r"NAMEDT value '01/02/2020' .* row 1.*YYYY-MM-DD or YYYYMMDD",
        ),
        ("permno,ticker,namedt,nameendt\n1,GME,2020-02-30,2020-03-01\n", r"NAMEDT value '2020-02-30'"),
        ("permno,ticker,namedt,nameendt\nx1,GME,2020-01-01,2020-03-01\n", r"PERMNO 'x1'"),
        ("permno,ticker,namedt,nameendt\n1,GME,,2020-03-01\n", r"NAMEDT is empty"),
    ],
)
def test_clear_errors(tmp_path, text, match):
    p = tmp_path / "names.csv"
    p.write_text(text)
    with pytest.raises(WsbError, match=match):
        read_stocknames(p)
    with pytest.raises(WsbError, match="does not exist"):
        read_stocknames(tmp_path / "missing.csv")
