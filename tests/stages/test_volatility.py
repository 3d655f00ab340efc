"""Stage volatility: the kernel and the whole stage against a plain-Python reference.

The reference (``reference_panel``) parses the CSV rows with ``float()``, groups them in a
dict, sorts each stock by date and sums the squares of each window in a Python loop; it
shares no code with the stage. Every output column is compared with equal NaN masks and
``atol=1e-12``.
"""

from __future__ import annotations

import gzip
import math
import random

import numpy as np
import pandas as pd
import pytest

from wsb_gpu.backend import to_pandas
from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import read_manifest
from wsb_gpu.stages import run_stage
from wsb_gpu.stages.volatility import OUTPUT_COLUMNS, volatility_kernel, window_sums


def build_volatility(crsp, out, **kw):
    return run_stage("volatility", out, crsp=crsp, **kw)


WINDOWS = (1, 5, 22, 63)
HEADER = ["PERMNO", "date", "TICKER", "RET", "RETX", "DLRET"]


# --- the independent reference ---------------------------------------------------------------


def parse_return(text: str) -> float | None:
    """A CRSP return as the docs define it: a finite number >= -1, else missing."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= -1 else None


def reference_panel(rows: list[dict]) -> pd.DataFrame:
    """The volatility dataset of CRSP rows (dicts of strings), with Python loops."""
    by_stock: dict[int, list] = {}
    for row in rows:
        ret = None
        for col in ("RET", "RETX", "DLRET"):
            ret = parse_return(row.get(col, ""))
            if ret is not None:
                break
        date = row["date"].replace("-", "")
        by_stock.setdefault(int(row["PERMNO"]), []).append((date, ret))
    out = []
    for permno in sorted(by_stock):
        series = sorted(by_stock[permno])
        rets = [r for _, r in series]
        vols = {w: [] for w in WINDOWS}
        for t in range(len(rets)):
            for w in WINDOWS:
                window = rets[t - w + 1 : t + 1] if t + 1 >= w else None
                if window is None or any(r is None for r in window):
                    vols[w].append(float("nan"))
                else:
                    total = 0.0
                    for r in window:
                        total += r * r
                    vols[w].append(math.sqrt(total))
        for t, (date, ret) in enumerate(series):
            rec = {"permno": permno, "date": pd.Timestamp(date).date(), "ret": float("nan") if ret is None else ret}
            for w in WINDOWS:
                rec[f"vol_{w}"] = vols[w][t]
            for w in WINDOWS:
                # The next w returns, summed directly: y_w(t)^2 = r_{t+1}^2 + ... + r_{t+w}^2.
                ahead = rets[t + 1 : t + w + 1]
                if len(ahead) < w or any(r is None for r in ahead):
                    rec[f"y_{w}"] = float("nan")
                else:
                    rec[f"y_{w}"] = math.sqrt(sum(r * r for r in ahead))
            out.append(rec)
    return pd.DataFrame(out, columns=OUTPUT_COLUMNS)


def assert_same_panel(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.reset_index(drop=True)
    assert list(got.columns) == OUTPUT_COLUMNS
    assert len(got) == len(want)
    assert got["permno"].tolist() == want["permno"].tolist()
    assert [pd.Timestamp(d).date() for d in got["date"]] == list(want["date"])
    for col in OUTPUT_COLUMNS[2:]:
        g, w = got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(g), np.isnan(w)), f"NaN masks differ in {col}"
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12, err_msg=col)


# --- a panel with every trap ---------------------------------------------------------------------


def make_rows(seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    days = [d.strftime("%Y%m%d") for d in pd.bdate_range("2019-01-02", periods=90)]
    rows = []
    lengths = {10001: 90, 10002: 70, 10003: 30, 10004: 3, 10005: 64}  # 10003/10004: shorter than 63 rows
    for permno, n in lengths.items():
        start = rng.randrange(0, 90 - n + 1)
        for _i, day in enumerate(days[start : start + n]):
            r = f"{rng.gauss(0, 0.03):.6f}"
            rows.append({"PERMNO": str(permno), "date": day, "TICKER": "X", "RET": r, "RETX": r, "DLRET": ""})
    stock = [r for r in rows if r["PERMNO"] == "10001"]
    stock[10]["RET"], stock[10]["RETX"] = "C", "C"  # letter codes: missing mid-series
    stock[40].update(RET="", RETX="", DLRET="")  # fully missing mid-series
    stock[41].update(RET="B", RETX="0.0125")  # RETX fallback
    stock[-1].update(RET="", RETX="", DLRET="-0.35")  # DLRET-only last row
    stock[60].update(RET="0.02", DLRET="-0.5")  # both: RET wins, never compounded
    stock[61].update(RET="-99", RETX="-99")  # CRSP numeric missing code
    other = [r for r in rows if r["PERMNO"] == "10002"]
    other[5].update(RET="A", RETX="A", DLRET="S")  # letter codes everywhere
    other[20].update(RET="1e-2", RETX="1e-2")  # exponent notation
    rng.shuffle(rows)  # WRDS exports are often date-major
    return rows


def write_csv(rows: list[dict], path, header=HEADER, dash_dates: bool = False) -> None:
    lines = [",".join(header)]
    for r in rows:
        date = f"{r['date'][:4]}-{r['date'][4:6]}-{r['date'][6:]}" if dash_dates else r["date"]
        lines.append(",".join(date if h == "date" else r.get(h, "") for h in header))
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    elif str(path).endswith(".zst"):
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    else:
        path.write_text(text)


def read_output(folder) -> pd.DataFrame:
    files = sorted(p for p in folder.iterdir() if p.suffix == ".parquet")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


# --- the kernel ---------------------------------------------------------------------------------


def test_kernel_matches_reference(backend):
    rows = make_rows()
    want = reference_panel(rows)
    frame = pd.DataFrame(
        {
            "permno": [int(r["PERMNO"]) for r in rows],
            "date": pd.to_datetime([r["date"] for r in rows], format="%Y%m%d"),
            "ret": [
                next((v for v in (parse_return(r[c]) for c in ("RET", "RETX", "DLRET")) if v is not None), np.nan)
                for r in rows
            ],
        }
    )
    got = to_pandas(volatility_kernel(backend.from_pandas(frame)))
    assert_same_panel(got, want)


def test_kernel_floating_point_error_on_long_series(backend):
    """20k rows of returns spanning 8 orders of magnitude: every window within 1e-12
    (relative) of a direct sum, where a running cumulative sum would lose everything."""
    rng = np.random.default_rng(0)
    n = 20_000
    scale = 10.0 ** rng.uniform(-6, 0, n)
    ret = rng.standard_normal(n) * scale
    ret[n // 2 : n // 2 + 100] = 1e-8  # a calm spell after a long history of large moves
    frame = pd.DataFrame({"permno": 7, "date": pd.date_range("1950-01-01", periods=n), "ret": ret})
    got = to_pandas(volatility_kernel(backend.from_pandas(frame)))
    sq = ret * ret
    for w in WINDOWS:
        direct = np.array([math.fsum(sq[t - w + 1 : t + 1]) for t in range(w - 1, n)])
        rel = np.abs(got[f"vol_{w}"].to_numpy()[w - 1 :] ** 2 - direct) / direct
        assert rel.max() <= 1e-12, (w, rel.max())
        assert np.isnan(got[f"vol_{w}"].to_numpy()[: w - 1]).all()
    # the cumulative-sum shortcut fails this bound by many orders of magnitude
    c = np.cumsum(sq)
    naive = c[62:] - np.concatenate([[0.0], c[:-63]])
    direct63 = np.array([math.fsum(sq[t - 62 : t + 1]) for t in range(62, n)])
    assert (np.abs(naive - direct63) / direct63).max() > 1e-6


def test_window_sums_propagate_missing_and_mask_the_head():
    x = np.array([1.0, 4.0, np.nan, 9.0, 16.0, 25.0, 36.0])
    s = window_sums(x, (1, 2, 3))
    np.testing.assert_array_equal(s[1], x)
    np.testing.assert_array_equal(s[2], [np.nan, 5, np.nan, np.nan, 25, 41, 61])
    np.testing.assert_array_equal(s[3], [np.nan, np.nan, np.nan, np.nan, np.nan, 50, 77])


def test_kernel_empty_and_single_row(backend):
    empty = pd.DataFrame(
        {
            "permno": pd.Series([], dtype="int64"),
            "date": pd.Series([], dtype="datetime64[s]"),
            "ret": pd.Series([], dtype="float64"),
        }
    )
    got = to_pandas(volatility_kernel(backend.from_pandas(empty)))
    assert list(got.columns) == OUTPUT_COLUMNS and len(got) == 0
    one = pd.DataFrame({"permno": [5], "date": pd.to_datetime(["2020-01-02"]), "ret": [-0.02]})
    got = to_pandas(volatility_kernel(backend.from_pandas(one)))
    assert got["vol_1"].tolist() == [pytest.approx(0.02)]
    assert got[["vol_5", "y_1"]].isna().all(axis=None)


# --- the stage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["crsp.csv", "crsp.csv.gz", "crsp.csv.zst", "crsp.parquet"])
def test_stage_matches_reference(backend, tmp_path, name):
    rows = make_rows()
    path = tmp_path / name
    if name.endswith(".parquet"):
        pd.DataFrame(rows).to_parquet(path)  # all columns as strings, as a WRDS->Parquet export might be
    else:
        write_csv(rows, path, dash_dates=name.endswith(".gz"))
    out = tmp_path / "vol"
    manifest = build_volatility(path, out, backend=backend, partition_rows=120)
    got = read_output(out)
    assert_same_panel(got, reference_panel(rows))
    assert manifest == read_manifest(out)
    assert manifest["rows_in"] == manifest["rows_out"] == len(rows)
    assert manifest["permnos"] == 5
    assert manifest["duplicates_dropped"] == 0
    assert manifest["ret_from"] == {"RET": len(rows) - 6, "RETX": 1, "DLRET": 1}
    assert manifest["ret_missing"] == 4
    assert manifest["schema"]["date"] == "date32[day]" and manifest["schema"]["permno"] == "int64"
    assert {"stage", "inputs", "params", "rows_in", "rows_out", "seconds", "backend", "schema"} <= set(manifest)
    # each stock lives in exactly one file, files cover disjoint permno ranges, sorted inside
    parts = manifest["partitions"]
    assert len(parts) >= 2
    seen = {}
    for p in parts:
        f = pd.read_parquet(out / p["file"])
        assert f["permno"].is_monotonic_increasing
        for permno, g in f.groupby("permno"):
            assert permno not in seen
            seen[permno] = p["file"]
            assert pd.Series(pd.to_datetime(g["date"])).is_monotonic_increasing
    assert all(a["permno_max"] < b["permno_min"] for a, b in zip(parts, parts[1:]))
    assert not any(p.name.startswith((".", "_staging")) for p in out.iterdir() if p.name != "_manifest.json")


@pytest.mark.parametrize("name", ["crsp.csv", "crsp.csv.zst", "crsp.parquet"])
def test_stage_from_many_small_pieces(tmp_path, cpu, monkeypatch, name):
    """Pieces of a few rows: every stock is spread over many sorted staging runs (and
    duplicates sit in other runs than their originals); the result must not change."""
    from wsb_gpu.sources import crsp

    monkeypatch.setattr(crsp, "BLOCK_BYTES", 300)
    monkeypatch.setattr(crsp, "CHUNK_ROWS", 7)
    rows = make_rows(seed=4)
    dups = [dict(r) for r in rows[::50]]
    path = tmp_path / name
    if name.endswith(".parquet"):
        pd.DataFrame(rows + dups).to_parquet(path, row_group_size=5)
    else:
        write_csv(rows + dups, path)
    manifest = build_volatility(path, tmp_path / "vol", backend=cpu, partition_rows=60)
    assert_same_panel(read_output(tmp_path / "vol"), reference_panel(rows))
    assert manifest["duplicates_dropped"] == len(dups) and manifest["rows_out"] == len(rows)
    parts = manifest["partitions"]
    assert len(parts) >= 3 and all(a["permno_max"] < b["permno_min"] for a, b in zip(parts, parts[1:]))


def test_identical_duplicates_are_dropped_and_reported(tmp_path, cpu):
    rows = make_rows()
    dups = [dict(r) for r in rows[:4]]
    path = tmp_path / "crsp.csv"
    write_csv(rows + dups, path)
    manifest = build_volatility(path, tmp_path / "vol", backend=cpu)
    assert manifest["duplicates_dropped"] == 4
    assert manifest["rows_in"] == len(rows) + 4 and manifest["rows_out"] == len(rows)
    assert_same_panel(read_output(tmp_path / "vol"), reference_panel(rows))


def test_conflicting_duplicates_fail_and_leave_no_output(tmp_path, cpu):
    rows = make_rows()
    bad = dict(next(r for r in rows if r["PERMNO"] == "10002" and parse_return(r["RET"]) is not None))
    bad["RET"] = "0.5"
    path = tmp_path / "crsp.csv"
    write_csv(rows + [bad], path)
    with pytest.raises(WsbError) as e:
        build_volatility(path, tmp_path / "vol", backend=cpu)
    msg = str(e.value)
    assert "\n" not in msg and "disagree" in msg and "PERMNO 10002" in msg and "crsp.csv" in msg
    assert not (tmp_path / "vol").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["crsp.csv"]


def test_ohlcv_matches_reference(backend, tmp_path):
    from wsb_gpu.sources.crsp import symbol_id

    rng = np.random.default_rng(5)
    days = pd.bdate_range("2021-01-04", periods=80)
    recs = []
    for sym, n in (("GME", 80), ("AMC", 70), ("BB", 10)):
        close = 10 * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
        for d, c in zip(days[:n], close):
            recs.append(
                {
                    "Date": d.strftime("%Y-%m-%d"),
                    "Ticker": sym,
                    "Open": c,
                    "Close": c * 1.1,
                    "Adj Close": f"{c:.6f}",
                    "Volume": 100,
                }
            )
    recs[30]["Adj Close"] = "null"  # missing price: two missing returns
    frame = pd.DataFrame(recs).sample(frac=1, random_state=2)
    path = tmp_path / "prices.csv"
    frame.to_csv(path, index=False)
    manifest = build_volatility(path, tmp_path / "vol", backend=backend, format="ohlcv")
    # reference: CRSP-like rows with returns from the adjusted closes, computed by hand
    rows = []
    for sym, g in pd.DataFrame(recs).groupby("Ticker"):
        prev = None
        for rec in sorted(g.to_dict("records"), key=lambda r: r["Date"]):
            c = None if rec["Adj Close"] == "null" else float(rec["Adj Close"])
            ret = "" if (c is None or prev is None) else repr(c / prev - 1)
            rows.append({"PERMNO": str(symbol_id(sym)), "date": rec["Date"], "RET": ret})
            prev = c
    assert_same_panel(read_output(tmp_path / "vol"), reference_panel(rows))
    assert manifest["permnos"] == 3 and manifest["rows_out"] == len(recs)


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expect"),
    [
        (["PERMNO", "DATE", "PRC"], ["no return column", "columns: PERMNO, DATE, PRC", "--columns ret="]),
        (["permno", "RET"], ["no date column", "columns: permno, RET", "--columns date="]),
        (["DATE", "RET", "TICKER"], ["no PERMNO column", "columns: DATE, RET, TICKER", "--columns permno="]),
    ],
)
def test_unrecognisable_columns_fail_in_one_line(tmp_path, cpu, header, expect):
    path = tmp_path / "crsp.csv"
    path.write_text(",".join(header) + "\n" + ",".join("1" for _ in header) + "\n")
    with pytest.raises(WsbError) as e:
        build_volatility(path, tmp_path / "vol", backend=cpu)
    msg = str(e.value)
    assert "\n" not in msg and "crsp.csv" in msg
    for part in expect:
        assert part in msg
    assert not (tmp_path / "vol").exists()


def test_columns_mapping(tmp_path, cpu):
    rows = make_rows()
    path = tmp_path / "ciz.csv"
    renamed = [
        {"PERMNO": r["PERMNO"], "DlyCalDt": r["date"], "MyRet": r["RET"], "MyRetx": r["RETX"], "DLRET": r["DLRET"]}
        for r in rows
    ]
    pd.DataFrame(renamed).to_csv(path, index=False)
    build_volatility(path, tmp_path / "vol", backend=cpu, columns={"ret": "myret", "retx": "MYRETX"})
    want = reference_panel(rows)
    assert_same_panel(read_output(tmp_path / "vol"), want)


def test_bad_dates_and_permnos_fail_with_the_value(tmp_path, cpu):
    path = tmp_path / "crsp.csv"
    path.write_text("PERMNO,date,RET\n10001,20200102,0.01\n10001,02/01/2020x,0.01\n")
    with pytest.raises(WsbError, match=r"'02/01/2020x'.*not a date.*YYYY-MM-DD"):
        build_volatility(path, tmp_path / "vol", backend=cpu)
    path.write_text("PERMNO,date,RET\n10001,20200102,0.01\nABC,20200103,0.01\n")
    with pytest.raises(WsbError, match=r"'ABC'.*not an integer PERMNO"):
        build_volatility(path, tmp_path / "vol", backend=cpu)


def test_cli_volatility(tmp_path):
    from wsb_gpu.cli import main

    rows = make_rows()
    path = tmp_path / "crsp.csv"
    write_csv(rows, path)
    argv = [
        "--backend",
        "cpu",
        "--cluster",
        "none",
        "volatility",
        "--crsp",
        str(path),
        "--out",
        str(tmp_path / "vol"),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert_same_panel(read_output(tmp_path / "vol"), reference_panel(rows))
    path.write_text("PERMNO,DATE,PRC\n1,20200102,3\n")
    assert main(argv) == 2
    assert main([*argv, "--columns", "ret=PRC,nonsense"]) == 2


def test_forward_targets_share_no_return_with_the_trailing_windows():
    """``y_h(t)² = r²_{t+1} + … + r²_{t+h}`` (an independent loop), and on i.i.d. returns the
    forward target is uncorrelated with the trailing ``vol_h`` (the seed's ``vol_h(t+1)`` shared
    h - 1 of its h squared returns with ``vol_h(t)``: correlation near 1 for h = 22)."""
    from wsb_gpu.stages.volatility import panel_volatility

    rng = np.random.default_rng(3)
    n_stocks, n = 40, 400
    permno = np.repeat(np.arange(n_stocks), n)
    ret = rng.standard_normal(n_stocks * n) * 0.02
    out = panel_volatility(permno, ret)
    for h in (5, 22):
        y = out[f"y_{h}"]
        for i in rng.integers(0, len(ret), 200):
            s, t = divmod(int(i), n)
            if t + h < n:
                want = sum(ret[s * n + t + k] ** 2 for k in range(1, h + 1))
                assert y[i] ** 2 == pytest.approx(want, rel=1e-12)
            else:
                assert np.isnan(y[i])
        ok = ~np.isnan(y) & ~np.isnan(out[f"vol_{h}"])
        assert abs(np.corrcoef(y[ok], out[f"vol_{h}"][ok])[0, 1]) < 0.15  # the seed's target: > 0.7
