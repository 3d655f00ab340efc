"""``wsb_gpu.report``: the report from a hand-made results folder and run directory."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from wsb_gpu.errors import WsbError
from wsb_gpu.report import FIGURES
from wsb_gpu.stages import run_stage


def write_report(results, out, lake=None):
    run_stage("report", out, results=results, lake=lake)
    return out / "report.md"


YEARS = (2016, 2017, 2018)
# (model, year) -> (mse, r2); pooled rows below. Values chosen so that the expected
# relative changes are easy to write by hand.
PER_YEAR = {
    ("har", 2016): (0.000400, 0.100),
    ("ridge", 2016): (0.000360, 0.190),
    ("xgboost", 2016): (0.000420, 0.055),
    ("har", 2017): (0.000500, 0.120),
    ("ridge", 2017): (0.000450, 0.208),
    ("xgboost", 2017): (0.000510, 0.102),
    ("har", 2018): (0.000800, 0.150),
    ("ridge", 2018): (0.000720, 0.235),
    ("xgboost", 2018): (0.000790, 0.161),
}
POOLED = {"har": (0.000600, 0.130), "ridge": (0.000540, 0.217), "xgboost": (0.000610, 0.115)}
LAMBDAS = {2016: 10.0, 2017: 100.0, 2018: 1000.0}


def make_results(root):
    """A results folder as the train stage writes it, plus volatility, mentions and run.json."""
    results = root / "results"
    (results / "predictions").mkdir(parents=True)
    rows = []
    for (model, year), (mse, r2) in PER_YEAR.items():
        rows.append(
            {
                "model": model,
                "test_year": str(year),
                "n_train": 4000,
                "n_test": 1000,
                "mse": mse,
                "r2": r2,
                "r2_oos": r2 - 0.01,
                "lambda": LAMBDAS[year] if model == "ridge" else np.nan,
                "dm_stat": np.nan if model == "har" else (-3.1 if model == "ridge" else 0.4),
                "dm_pvalue": np.nan if model == "har" else (0.002 if model == "ridge" else 0.69),
            }
        )
    for model, (mse, r2) in POOLED.items():
        rows.append(
            {
                "model": model,
                "test_year": "all",
                "n_train": np.nan,
                "n_test": 3000,
                "mse": mse,
                "r2": r2,
                "r2_oos": r2 - 0.01,
                "lambda": np.nan,
                "dm_stat": np.nan if model == "har" else (-4.2 if model == "ridge" else 0.3),
                "dm_pvalue": np.nan if model == "har" else (0.00001 if model == "ridge" else 0.76),
            }
        )
    pd.DataFrame(rows).to_csv(results / "metrics.csv", index=False)
    (results / "metrics.json").write_text(json.dumps({"rows": rows}, default=float))
    pd.DataFrame(
        [
            {"model": "ridge", "test_year": y, "term": t, "coef": c * (1 + 0.1 * i)}
            for i, y in enumerate(YEARS)
            for t, c in (("vol_1", 0.004), ("vol_5", 0.003), ("vol_22", 0.002), ("vol_63", 0.001), ("e000", 9.0))
        ]
    ).to_csv(results / "coefficients.csv", index=False)

    rng = np.random.default_rng(0)
    n = 3000
    y = rng.gamma(4.0, 0.005, n)
    dates = pd.to_datetime("2016-01-04") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")
    pd.DataFrame(
        {
            "permno": rng.integers(10000, 10010, n).astype("int64"),
            "date": dates.date,
            "y": y,
            "yhat_har": y * 0.6 + 0.008,
            "yhat_ridge": y * 0.7 + 0.006 + rng.normal(0, 0.002, n),
            "yhat_xgboost": y * 0.5 + 0.01,
        }
    ).to_parquet(results / "predictions" / "part.0.parquet")

    vol = root / "volatility"
    vol.mkdir()
    days = pd.bdate_range("2012-01-02", "2018-12-31")
    frames = []
    for permno in (10001, 10002):
        base = 0.02 if permno == 10001 else 0.04
        frames.append(
            pd.DataFrame(
                {
                    "permno": permno,
                    "date": days.date,
                    "ret": 0.0,
                    **{f"vol_{w}": base * np.sqrt(w) for w in (1, 5, 22, 63)},
                    **{f"y_{w}": base * np.sqrt(w) for w in (1, 5, 22, 63)},
                }
            )
        )
    pd.concat(frames).to_parquet(vol / "part.0.parquet", index=False)

    men = root / "mentions"
    men.mkdir()
    tickers = ["GME"] * 50 + ["TSLA"] * 30 + ["AMD"] * 10 + ["F"] * 5 + ["SPY"] * 3 + ["AAPL"] * 2
    mdates = pd.to_datetime("2018-01-01") + pd.to_timedelta(np.arange(len(tickers)) % 20, unit="D")
    pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(len(tickers))],
            "kind": "comment",
            "created_utc": 0,
            "date": mdates.date,
            "ticker": tickers,
            "permno": 1,
            "n_occ": 1,
        }
    ).to_parquet(men / "part.0.parquet", index=False)

    run = {
        "started_at": "2026-01-01T00:00:00+00:00",
        "lake": str(root),
        "backend": {"name": "cpu", "reason": "asked for cpu"},
        "cluster": {"kind": "local", "workers": {"n_workers": 2, "threads": 2}},
        "hardware": {"cpu_model": "Test CPU", "cpu_count": 2, "memory_gib": 8.0},
        "config": {"train": {"target": "y_1"}, "backend": "cpu"},
        "config_sources": ["defaults.yaml"],
        "versions": {"python": "3.11", "dask": "2026.1"},
        "stages": [
            {
                "stage": "ingest",
                "status": "ran",
                "rows_in": 100,
                "rows_out": 90,
                "throughput": 12.5,
                "unit": "MB/s",
                "manifest_seconds": 3.25,
            }
        ],
    }
    (root / "run.json").write_text(json.dumps(run))
    return results


def _cells(md: str, first: str) -> list[str]:
    """The cells of the first table row of ``md`` whose first cell is ``first``."""
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] == first:
                return cells
    raise AssertionError(f"no table row starting with {first!r}")


def test_report_tables_figures_and_provenance(tmp_path):
    results = make_results(tmp_path)
    path = write_report(results, tmp_path / "report")
    assert path == tmp_path / "report" / "report.md"
    md = path.read_text()

    # Pooled table: MSE vs HAR = 0.00054 / 0.0006 - 1 = -10 %, ΔR² = 0.087, DM p < 0.001.
    ridge = _cells(md, "**Ridge (HAR + text)**")
    assert ridge[1] == "3,000"
    assert float(ridge[2]) == pytest.approx(0.00054)
    assert ridge[5] == "-10.00 %"
    assert ridge[3] == "0.217" and ridge[6] == "+0.087"
    assert ridge[8] == "< 0.001"
    xgb = _cells(md, "**XGBoost (HAR + text)**")
    assert xgb[5] == f"{100 * (0.00061 / 0.0006 - 1):+.2f} %"
    assert xgb[8] == "0.760"

    # Seed-style per-year tables: one row per test year and an Overall row, per model.
    for year in YEARS:
        assert md.count(f"| {year} |") == 4  # three model tables + the against-HAR table
    assert md.count("| **Overall** |") == 4  # three model tables + the against-HAR table
    # Against HAR per year: 2017 ridge MSE 0.00045 / 0.0005 - 1 = -10 %.
    assert _cells(md.split("## Against HAR")[1], "2017")[1] == "-10.00 %"
    # λ column of the ridge table.
    assert re.search(r"\| 2018 \| 4,000 \| 1,000 \| 0\.00072 \| 0\.235 \| 1,000 \|", md)
    # Verdict sentences (results of one feature set: every column, shown as `all`).
    assert "**Ridge**: best on **all**, which beats HAR significantly" in md
    assert "**XGBoost**: best on **all**, which does not beat HAR" in md
    # The which-signal table opens the report: one row per set, each model's ΔR² and DM p.
    row = _cells(md.split("## Which signal helps?")[1], "**all**")
    assert row[1] == "+0.087 *" and row[3] == "< 0.001" and row[7] == "0.760"

    # Every figure exists, is a real PNG of a readable size, and is linked; the scatter
    # matrix and the rolling β are among them (drawn from volatility/).
    assert {"fig6_scatter_matrix.png", "fig7_rolling_beta.png"} <= set(FIGURES.values())
    assert "*Figure 6. Scatter / KDE matrix" in md and "*Figure 7. Rolling β" in md
    for key, name in FIGURES.items():
        if key == "roc_pr":  # the spike task's figure (tests/stages/test_spike.py)
            assert not (tmp_path / "report" / name).exists()
            continue
        png = tmp_path / "report" / name
        assert png.is_file(), name
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width >= 600 and im.height >= 300
        assert f"]({name})" in md

    # Provenance from run.json.
    assert "Test CPU, 2 cores, 8.0 GiB" in md
    assert (
        "| ingest | ran | 100 | 90 | 12.5 MB/s | 3.2 |" in md or "| ingest | ran | 100 | 90 | 12.5 MB/s | 3.3 |" in md
    )
    manifest = json.loads((tmp_path / "report" / "_manifest.json").read_text())
    assert manifest["stage"] == "report" and manifest["rows_out"] == len(FIGURES) - 1  # all but the spike figure


def test_report_data_helpers_against_plain_references(tmp_path):
    from wsb_gpu.report import daily_mean_volatility, mentions_per_day, read_metrics, read_ridge_details
    from wsb_gpu.report.load import rolling_beta

    results = make_results(tmp_path)
    daily = daily_mean_volatility(tmp_path / "volatility")
    assert daily["vol_22"].iloc[0] == pytest.approx((0.02 + 0.04) / 2 * np.sqrt(22), rel=1e-12)
    per_day = mentions_per_day(tmp_path / "mentions", top=3)
    assert list(per_day.columns) == ["GME", "TSLA", "AMD"]
    assert per_day["GME"].sum() == 50 and per_day["AMD"].sum() == 10
    lambdas, coefs = read_ridge_details(results, read_metrics(results))
    assert lambdas.to_dict() == LAMBDAS
    assert list(coefs.columns) == ["vol_1", "vol_5", "vol_22", "vol_63"]  # embedding terms dropped
    assert coefs.loc[2017, "vol_1"] == pytest.approx(0.0044)
    # y_1 = vol_1 for both stocks of the fixture: a slope of one once 22 dates are in.
    beta = rolling_beta(tmp_path / "volatility")
    assert beta["beta"].iloc[:21].isna().all() and beta["n"].iloc[21] == 44
    assert beta["beta"].iloc[21:].to_numpy() == pytest.approx(1.0, rel=1e-10)


def _random_panel(seed: int = 0) -> pd.DataFrame:
    """A small volatility panel: stocks on different subsets of the dates, values missing at
    random, the slope of y_1 on vol_1 drifting over time, vol_1 constant on the first dates."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-01", periods=90)
    frames = []
    for permno in range(10001, 10008):
        dates = days[rng.random(len(days)) < 0.75]
        x = rng.gamma(2.0, 0.01, len(dates))
        slope = np.sin(np.arange(len(dates)) / 9.0)
        frame = pd.DataFrame(
            {
                "permno": permno,
                "date": dates.date,
                "vol_1": x,
                "vol_5": x * 2 + rng.gamma(2.0, 0.01, len(dates)),
                "vol_22": rng.gamma(4.0, 0.02, len(dates)),
                "vol_63": rng.gamma(8.0, 0.02, len(dates)),
                "y_1": 0.01 + slope * x + rng.normal(0, 0.004, len(dates)),
            }
        )
        frame.loc[frame["date"] < days[24].date(), "vol_1"] = 0.03  # no variance to regress on
        for col in ("vol_1", "vol_22", "y_1"):
            frame.loc[rng.random(len(frame)) < 0.1, col] = np.nan
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _write_panel(panel: pd.DataFrame, folder, parts: int) -> None:
    """``panel`` as ``parts`` Parquet files split by stock, as the volatility stage writes it."""
    folder.mkdir()
    for i, chunk in enumerate(np.array_split(panel["permno"].unique(), parts)):
        panel[panel["permno"].isin(chunk)].to_parquet(folder / f"part.{i}.parquet", index=False)


def test_rolling_beta_is_the_pooled_ols_slope_of_each_window(tmp_path):
    from wsb_gpu.report.load import rolling_beta

    panel = _random_panel()
    # Several files, each with every date: the per-date sums are merged across batches.
    _write_panel(panel, tmp_path / "vol", parts=3)
    got = rolling_beta(tmp_path / "vol", window=22)

    rows = panel.dropna(subset=["vol_1", "y_1"]).assign(date=lambda d: pd.to_datetime(d["date"]))
    dates = np.sort(rows["date"].unique())
    assert got["date"].tolist() == list(pd.to_datetime(dates))
    constant_until = pd.Timestamp(pd.bdate_range("2020-01-01", periods=90)[24])
    for t in range(len(dates)):
        inside = rows[rows["date"].isin(dates[max(0, t - 21) : t + 1])]
        assert got["n"].iloc[t] == len(inside)
        if t < 21 or inside["vol_1"].nunique() == 1:
            assert np.isnan(got["beta"].iloc[t]), t
            continue
        design = np.column_stack([np.ones(len(inside)), inside["vol_1"].to_numpy()])
        slope = np.linalg.lstsq(design, inside["y_1"].to_numpy(), rcond=None)[0][1]
        assert got["beta"].iloc[t] == pytest.approx(slope, rel=1e-10, abs=0), t
    assert got["beta"].notna().sum() > 30
    assert got.loc[got["date"] < constant_until, "beta"].isna().all()  # zero variance: no slope


def test_volatility_sample_is_reproducible_complete_and_uniform_over_rows(tmp_path):
    from wsb_gpu.report.load import SAMPLE_COLUMNS, volatility_sample

    panel = _random_panel()
    _write_panel(panel, tmp_path / "one", parts=1)
    _write_panel(panel, tmp_path / "three", parts=3)
    sample = volatility_sample(tmp_path / "one", n=200, seed=0)
    assert len(sample) == 200
    assert list(sample.columns) == ["permno", "date", *SAMPLE_COLUMNS]
    assert sample[list(SAMPLE_COLUMNS)].notna().all().all()
    # Real rows of the panel, each once.
    complete = panel.dropna(subset=list(SAMPLE_COLUMNS)).assign(date=lambda d: pd.to_datetime(d["date"]))
    assert len(sample.merge(complete, on=list(sample.columns))) == 200
    assert not sample.duplicated(["permno", "date"]).any()
    # The same rows for the same seed, however the dataset is split; others for another seed.
    pd.testing.assert_frame_equal(sample, volatility_sample(tmp_path / "one", n=200, seed=0))
    pd.testing.assert_frame_equal(sample, volatility_sample(tmp_path / "three", n=200, seed=0))
    # Two independent uniform draws of 200 share about 200² / N rows (hypergeometric, sd ≈ 5).
    other = volatility_sample(tmp_path / "one", n=200, seed=1)
    assert abs(len(sample.merge(other, on=["permno", "date"])) - 200**2 / len(complete)) < 25
    # Every stock is drawn; asking for more rows than there are gives every complete row.
    assert sample["permno"].nunique() == panel["permno"].nunique()
    assert len(volatility_sample(tmp_path / "three", n=10**6)) == len(complete)


def test_report_without_lake_and_with_har_only(tmp_path):
    results = make_results(tmp_path)
    metrics = pd.read_csv(results / "metrics.csv", dtype={"test_year": str})
    metrics[metrics["model"] == "har"].to_csv(results / "metrics.csv", index=False)
    (tmp_path / "run.json").unlink()
    path = write_report(results, tmp_path / "elsewhere" / "rep", lake=tmp_path / "nothing-here")
    md = path.read_text()
    assert "## HAR" in md and "## Ridge" not in md and "## Against HAR" not in md
    assert "provenance is unknown" in md
    assert "Not drawn: no volatility dataset" in md
    assert not (path.parent / FIGURES["scatter_matrix"]).exists()
    assert "Figure 6. Scatter / KDE matrix" in md and "Figure 7. Rolling β" in md
    assert md.count("Not drawn: no volatility dataset") == 3
    assert (path.parent / FIGURES["r2"]).is_file()


def test_report_refuses_a_folder_without_metrics(tmp_path):
    with pytest.raises(WsbError, match="no metrics.csv"):
        write_report(tmp_path, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_demo_console_table_fits_80_columns(tmp_path):
    """The demo prints the which-signal table: one row per set, readable on 80 columns."""
    from rich.console import Console

    from wsb_gpu.demo import metrics_table
    from wsb_gpu.report.load import read_metrics

    console = Console(width=80, record=True, color_system=None)
    console.print(metrics_table(read_metrics(make_results(tmp_path))))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    row = next(line for line in text.splitlines() if line.startswith("│ all"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    # all: ridge ΔR² +0.087, DM p < 0.001; XGBoost ΔR² -0.015 (0.115 - 0.130).
    assert cells[:3] == ["all", "+0.087", "<0.001"] and cells[3] == "-0.015"
    assert "…" not in text
