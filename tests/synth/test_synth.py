"""The synthetic data generator: determinism, real-format quirks, CRSP files, the planted effect.

Every check reads the written files with plain Python / NumPy (json, csv, zstandard) and
compares with what ``truth.json`` and the summary claim, never with generator internals.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zstandard

from wsb_gpu.synth import generate

# A small run crossing the era boundaries: 2015 (\\u escapes, float `edited`, old schema),
# 2016 (raw UTF-8, string created_utc), 2017 (new schema, string created_utc).
SMALL = dict(seed=7, tickers=12, start="2015-10-01", end="2017-03-31", posts_per_day=60, effect=0.5, malformed=0.005)
STRING_YEARS = {2016, 2017}


def _lines(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        data = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(fh).read()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def _classify(lines: list[bytes]) -> tuple[list[dict], dict]:
    """Independent reader: valid records and malformed counts by kind."""
    records, bad = [], {"blank": 0, "truncated": 0, "bad_utf8": 0}
    for line in lines:
        if not line.strip():
            bad["blank"] += 1
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            bad["bad_utf8"] += 1
            continue
        try:
            records.append(json.loads(text))
        except json.JSONDecodeError:
            bad["truncated"] += 1
    return records, bad


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "a"
    summary = generate(out, processes=1, **SMALL)
    truth = json.loads((out / "truth.json").read_text())
    subs = _lines(out / "wallstreetbets_submissions.zst")
    coms = _lines(out / "wallstreetbets_comments.zst")
    return {
        "out": out,
        "summary": summary,
        "truth": truth,
        "sub_lines": subs,
        "com_lines": coms,
        "subs": _classify(subs),
        "coms": _classify(coms),
    }


def _sha(lines: list[bytes]) -> str:
    return hashlib.sha256(b"\n".join(lines) + b"\n").hexdigest()


def test_same_seed_same_bytes_with_any_number_of_processes(run, tmp_path):
    out = tmp_path / "b"
    generate(out, processes=2, **SMALL)
    for name in ("wallstreetbets_submissions.zst", "wallstreetbets_comments.zst"):
        assert _sha(_lines(out / name)) == _sha(_lines(run["out"] / name))
    for name in ("crsp_daily.csv", "stocknames.csv", "truth.json"):
        assert (out / name).read_bytes() == (run["out"] / name).read_bytes()
    assert run["truth"]["files"]["comments"]["sha256_uncompressed"] == _sha(run["com_lines"])


def test_other_seed_other_bytes(run, tmp_path):
    generate(tmp_path / "c", **{**SMALL, "seed": 8, "end": "2015-12-31"})
    assert _sha(_lines(tmp_path / "c" / "wallstreetbets_comments.zst")) != _sha(run["com_lines"])


def test_window_needs_max_window_size_and_no_content_size(run):
    path = run["out"] / "wallstreetbets_comments.zst"
    raw = path.read_bytes()
    params = zstandard.get_frame_parameters(raw[:18])
    assert params.window_size == 2**31
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    out = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(io.BytesIO(raw)).read()
    assert out.count(b"\n") == len(run["com_lines"])


def test_malformed_lines_counted_exactly(run):
    for key in ("subs", "coms"):
        name = "submissions" if key == "subs" else "comments"
        records, bad = run[key]
        assert bad == run["summary"]["malformed"][name] == run["truth"]["counts"]["malformed"][name]
        assert all(v > 0 for v in bad.values()) or name == "submissions"
        assert len(records) == run["summary"]["records"][name]


def test_record_fields_and_types_by_era(run):
    subs, _ = run["subs"]
    coms, _ = run["coms"]
    for r in subs[:50]:
        assert {
            "id",
            "created_utc",
            "author",
            "title",
            "selftext",
            "subreddit",
            "subreddit_id",
            "score",
            "num_comments",
            "url",
            "is_self",
            "edited",
        } <= set(r)
        assert len(set(r) - {"id", "created_utc", "author", "title", "selftext"}) >= 15
    for r in coms:
        assert {"id", "created_utc", "author", "body", "link_id", "parent_id", "score", "edited"} <= set(r)
        assert r["link_id"].startswith("t3_") and r["parent_id"][:3] in ("t1_", "t3_")
        year = dt.datetime.fromtimestamp(int(r["created_utc"]), dt.timezone.utc).year
        assert isinstance(r["created_utc"], str) == (year in STRING_YEARS)
        if r["edited"] is not False:
            assert isinstance(r["edited"], float if year < 2016 else int)
    edited = [r["edited"] for r in coms if r["edited"] is not False]
    assert any(isinstance(e, float) for e in edited) and any(isinstance(e, int) for e in edited)
    assert len({r["id"] for r in coms}) == len(coms)
    assert len({r["id"] for r in subs}) == len(subs)


def test_quirk_shares_match_truth(run):
    coms, _ = run["coms"]
    subs, _ = run["subs"]
    allr = subs + coms
    texts = [r.get("body", r.get("selftext", "")) for r in allr]
    n = len(allr)
    deleted = sum(t == "[deleted]" for t in texts)
    removed = sum(t == "[removed]" for t in texts)
    authors_deleted = sum(r["author"] == "[deleted]" for r in allr)
    truth, q = run["truth"], run["truth"]["quirks_configured"]
    assert deleted == truth["counts"]["text_deleted"]
    assert removed == truth["counts"]["text_removed"]
    assert authors_deleted == truth["counts"]["text_deleted"] + truth["counts"]["author_deleted"]
    assert abs(deleted / n - q["deleted"]) < 0.4 * q["deleted"]
    assert abs(removed / n - q["removed"]) < 0.4 * q["removed"]
    assert sum("&amp;" in t for t in texts) > 0
    assert max(len(t) for t in texts) >= 300_000
    assert sum(len(t) >= 5000 for t in texts) >= 2
    # non-ASCII: \u escapes (pure ASCII lines) up to 2015, raw UTF-8 from 2016
    raw_2015 = raw_2016 = esc_2015 = 0
    for line in run["com_lines"]:
        if not line.strip().startswith(b"{") or not line.endswith(b"}"):
            continue
        try:
            r = json.loads(line.decode("utf-8"))  # strict: json.loads(bytes) passes surrogates
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        year = dt.datetime.fromtimestamp(int(r["created_utc"]), dt.timezone.utc).year
        if year == 2015:
            raw_2015 += not line.isascii()
            esc_2015 += b"\\ud83d" in line
        elif not line.isascii():
            raw_2016 += 1
    assert raw_2015 == 0 and esc_2015 > 0 and raw_2016 > 0
    # roughly time-ordered with a few swapped neighbours
    t = [int(r["created_utc"]) for r in coms]
    inversions = sum(b < a for a, b in zip(t, t[1:]))
    assert 0 < inversions <= truth["counts"]["swapped_neighbours"]["comments"]
    assert inversions < 0.01 * len(t)


def test_texts_mention_tickers_the_wsb_way(run):
    coms, _ = run["coms"]
    body = "\n".join(r["body"] for r in coms)
    assert "$GME" in body and " TSLA" in body
    assert "gme" in body or "tsla" in body  # lower case: not a mention
    assert any(s + e in body for s in ("GME", "TSLA", "AMC") for e in ("🚀", "💎"))
    assert "ALL IN" in body and "IT'S HAPPENING" in body and "DD" in body and "YOLO" in body
    # most records mention no stock
    assert run["truth"]["counts"]["posts_about_stocks"] < 0.5 * len(coms)
    forms = run["truth"]["mention_forms"]
    assert set(forms) == {"dollar", "bare", "emoji", "punct", "lower"}


def test_boundary_posts_in_the_dumps(run):
    coms, _ = run["coms"]
    by_id = {r["id"]: r for r in coms}
    posts = run["truth"]["boundary_posts"]
    assert len(posts) == 5
    for p in posts:
        r = by_id[p["id"]]
        assert int(r["created_utc"]) == p["created_utc"]
        assert r["body"].startswith("$")
    reuse = run["truth"]["special_cases"]["reused_symbol"]
    first, second = posts[0], posts[1]
    assert first["expect_permno"] == reuse["first_permno"] and second["expect_permno"] == reuse["second_permno"]
    day = dt.datetime.fromtimestamp(first["created_utc"], dt.timezone.utc)
    assert (day.hour, day.minute, day.second) == (23, 59, 30)
    assert day.date().isoformat() == reuse["first_nameendt"]


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_stocknames_changes_reuses_common_words(run):
    rows = _read_csv(run["out"] / "stocknames.csv")
    assert list(rows[0])[:3] == ["PERMNO", "NAMEDT", "NAMEENDT"] and "TICKER" in rows[0] and "COMNAM" in rows[0]
    by_permno: dict = {}
    by_ticker: dict = {}
    for r in rows:
        by_permno.setdefault(r["PERMNO"], []).append(r)
        by_ticker.setdefault(r["TICKER"], set()).add(r["PERMNO"])
    changed = [p for p, rs in by_permno.items() if len({r["TICKER"] for r in rs}) > 1]
    assert len(changed) == 1
    reused = [t for t, ps in by_ticker.items() if len(ps) > 1]
    assert len(reused) == 1
    spells = sorted((r["NAMEDT"], r["NAMEENDT"]) for r in rows if r["TICKER"] == reused[0])
    (_, end1), (start2, _) = spells
    assert dt.date.fromisoformat(end1) + dt.timedelta(days=1) == dt.date.fromisoformat(start2)
    assert {"ALL", "IT", "CEO", "DD"} <= set(by_ticker)
    assert len(by_permno) == SMALL["tickers"]


def test_crsp_daily_calendar_codes_and_delisting(run):
    rows = _read_csv(run["out"] / "crsp_daily.csv")
    assert list(rows[0]) == ["PERMNO", "date", "TICKER", "PRC", "VOL", "RET", "RETX", "DLRET"]
    dates = sorted({r["date"] for r in rows})
    days = [dt.datetime.strptime(d, "%Y%m%d").date() for d in dates]
    assert all(d.weekday() < 5 for d in days)
    for holiday in ("20151126", "20151225", "20160101", "20160325", "20160704", "20161124", "20170116"):
        assert holiday not in dates
    assert "20151002" in dates and "20170331" in dates
    # date-major order
    keys = [(r["date"], int(r["PERMNO"])) for r in rows]
    assert keys == sorted(keys)

    def num(x):
        try:
            return float(x)
        except ValueError:
            return None

    letters = [r for r in rows if r["RET"] in ("B", "C")]
    assert any(num(r["RETX"]) is not None for r in letters)
    assert {r["RET"] for r in letters} == {"B", "C"}
    dl = [r for r in rows if r["DLRET"]]
    assert len(dl) == 1
    (d,) = dl
    assert d["PRC"] == d["VOL"] == d["RET"] == d["RETX"] == "" and num(d["DLRET"]) < 0
    # the delisting row is that PERMNO's last; its symbol is reused the next calendar day
    last = max(r["date"] for r in rows if r["PERMNO"] == d["PERMNO"])
    assert last == d["date"]
    reuse = run["truth"]["special_cases"]["reused_symbol"]
    assert int(d["PERMNO"]) == reuse["first_permno"]
    assert dt.datetime.strptime(d["date"], "%Y%m%d").date().isoformat() == reuse["first_nameendt"]
    # every live PERMNO trades on every trading day between its first and last row
    per = {}
    for r in rows:
        per.setdefault(r["PERMNO"], []).append(r["date"])
    for _p, ds in per.items():
        i, j = dates.index(ds[0]), dates.index(ds[-1])
        assert ds == dates[i : j + 1]
    assert any(
        num(r["RET"]) is not None and num(r["RETX"]) is not None and num(r["RET"]) != num(r["RETX"]) for r in rows
    )  # dividend days
    assert any((num(r["PRC"]) or 0) < 0 for r in rows)  # bid/ask average


def test_latent_effect_timing(run):
    import pandas as pd

    lat = pd.read_parquet(run["out"] / "latent.parquet").sort_values(["permno", "date"])
    b = SMALL["effect"]
    for _, g in lat.groupby("permno"):
        h_prev = g["hype"].to_numpy()[:-1]
        diff = (g["log_sigma"] - g["log_sigma_base"]).to_numpy()[1:]
        np.testing.assert_allclose(diff, b * h_prev, rtol=0, atol=1e-12)
    assert lat["n_posts"].sum() == run["truth"]["counts"]["posts_about_stocks"]
    # more hype, more posts about the stock
    assert np.corrcoef(lat["hype"], np.log1p(lat["n_posts"]))[0, 1] > 0.1
    # and hype-ier texts
    share = lat["n_hype_phrases"] / lat["n_tone_phrases"].where(lat["n_tone_phrases"] > 0)
    ok = share.notna()
    assert np.corrcoef(lat["hype"][ok], share[ok])[0, 1] > 0.3


def test_placebo_hype_never_enters_volatility():
    from wsb_gpu.synth.calendar import trading_days
    from wsb_gpu.synth.process import build_universe, simulate_latent

    days = trading_days(dt.date(2014, 1, 1), dt.date(2016, 12, 31))
    stocks = build_universe(days, 15, seed=3)
    placebo = simulate_latent(stocks, len(days), seed=3, effect=0.0)
    planted = simulate_latent(stocks, len(days), seed=3, effect=0.5)
    assert np.array_equal(placebo["log_sigma"], placebo["log_sigma_base"])
    assert np.array_equal(placebo["log_sigma_base"], planted["log_sigma_base"])
    assert np.array_equal(placebo["hype"], planted["hype"])
    # next-day log-volatility vs today's hype: nothing under the placebo, b under the effect
    h = placebo["hype"][:-1].ravel()
    for lat, want in ((placebo, 0.0), (planted, 0.5)):
        resid = lat["log_sigma"][1:].ravel() - placebo["log_sigma_base"][1:].ravel()
        slope = np.polyfit(h, resid, 1)[0]
        assert abs(slope - want) < 1e-9
    # and the returns only scale with sigma: same standardised shocks in both worlds
    # (returns are clipped to [-0.95, 5]: compare where neither world hit the clip)
    free = (np.abs(placebo["ret"]) < 0.95) & (np.abs(planted["ret"]) < 0.95)
    assert free.mean() > 0.999
    np.testing.assert_allclose(
        (placebo["ret"] / np.exp(placebo["log_sigma"]))[free],
        (planted["ret"] / np.exp(planted["log_sigma"]))[free],
        rtol=1e-9,
        atol=1e-12,
    )


def test_placebo_files_are_the_planted_files_minus_the_effect(tmp_path):
    kw = dict(seed=5, tickers=10, start="2016-01-01", end="2016-03-31", posts_per_day=20)
    generate(tmp_path / "p", effect=0.0, **kw)
    generate(tmp_path / "e", effect=0.5, **kw)
    # the texts are the same (hype drives them in both worlds) ...
    assert _sha(_lines(tmp_path / "p" / "wallstreetbets_comments.zst")) == _sha(
        _lines(tmp_path / "e" / "wallstreetbets_comments.zst")
    )
    # ... but only the planted world's volatility moves with it
    assert (tmp_path / "p" / "crsp_daily.csv").read_bytes() != (tmp_path / "e" / "crsp_daily.csv").read_bytes()
    truth = json.loads((tmp_path / "p" / "truth.json").read_text())
    assert truth["effect"]["b"] == 0.0 and truth["effect"]["placebo"] is True


def test_bad_arguments_raise_one_line_errors(tmp_path):
    from wsb_gpu.errors import WsbError

    with pytest.raises(WsbError, match="--tickers must be at least 10"):
        generate(tmp_path / "x", tickers=3, start="2016-01-01", end="2016-03-31")
    with pytest.raises(WsbError, match="must be after --start"):
        generate(tmp_path / "x", start="2016-03-01", end="2016-01-01")
    with pytest.raises(WsbError, match="YYYY-MM-DD"):
        generate(tmp_path / "x", start="March 2016")
    with pytest.raises(WsbError, match="--effect-after-close must be a finite number"):
        generate(tmp_path / "x", start="2016-01-01", end="2016-03-31", effect_after_close=float("nan"))


def test_cli_help_and_summary(tmp_path, capsys):
    from wsb_gpu.cli import main

    assert main(["synth", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "Example:" in help_text and "wsb-gpu synth --out" in help_text
    rc = main(
        [
            "synth",
            "--out",
            str(tmp_path / "d"),
            "--tickers",
            "10",
            "--start",
            "2016-01-01",
            "--end",
            "2016-02-29",
            "--posts-per-day",
            "20",
            "--malformed",
            "0.01",
            "--seed",
            "2",
            "--effect-after-close",
            "0.5",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "after_close 0.5" in out and "between a close and the next open" in out
    assert "wallstreetbets_comments.zst" in out and "records" in out and "malformed" in out
    assert "records/s" in out and "crsp_daily.csv" in out
    assert (tmp_path / "d" / "truth.json").is_file()
    rc = main(["synth", "--out", str(tmp_path / "e"), "--start", "2016-03-01", "--end", "2016-01-01"])
    assert rc == 2
    assert capsys.readouterr().err.startswith("error: --end")


# --- time of day and the after-close channel ---------------------------------------------
# A world crossing the end of daylight saving time (4 November 2018) with three early closes.
AFTER_CLOSE = dict(seed=3, tickers=10, start="2018-06-01", end="2018-12-31", posts_per_day=150, effect=0.0)
EARLY_CLOSES_2018 = {"2018-07-03", "2018-11-23", "2018-12-24"}  # NYSE's 13:00 closes (exchange notices)
NY = "America/New_York"


def _records(out: Path) -> pd.DataFrame:
    """Every valid record of both dumps: created_utc (int) and its text."""
    rows = []
    for name, keys in (("submissions", ("title", "selftext")), ("comments", ("body",))):
        records, _ = _classify(_lines(out / f"wallstreetbets_{name}.zst"))
        for r in records:
            text = " ".join(r.get(k) or "" for k in keys).encode("utf-8", "replace").decode()  # lone surrogates
            rows.append((int(r["created_utc"]), text))
    return pd.DataFrame(rows, columns=["created", "text"])


def _crsp(out: Path) -> pd.DataFrame:
    rows = _read_csv(out / "crsp_daily.csv")

    def ret(r):
        for k in ("RET", "RETX", "DLRET"):
            try:
                return float(r[k])
            except ValueError:
                pass
        return np.nan

    return pd.DataFrame(
        {"permno": [int(r["PERMNO"]) for r in rows], "date": [r["date"] for r in rows], "ret": [ret(r) for r in rows]}
    )


def _sessions(dates: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Open and close (UTC epoch seconds) of each trading date, via pandas' tz database."""
    day = pd.to_datetime(pd.Series(dates), format="%Y%m%d")
    opens = (day + pd.Timedelta(hours=9, minutes=30)).dt.tz_localize(NY)
    early = day.dt.strftime("%Y-%m-%d").isin(EARLY_CLOSES_2018)
    closes = (day + pd.to_timedelta(np.where(early, 13, 16), unit="h")).dt.tz_localize(NY)
    return (
        (opens.dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy().astype(np.int64),
        (closes.dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy().astype(np.int64),
    )


def _place(created: np.ndarray, opens: np.ndarray, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(session day index or -1, index of the trading day whose open an after-close post precedes or -1)."""
    k = np.searchsorted(opens, created, side="right")  # opens at or before the post
    in_session = (k > 0) & (created <= closes[np.maximum(k - 1, 0)])
    session = np.where(in_session, k - 1, -1)
    nxt = np.where(~in_session & (k < len(opens)), k, -1)
    return session, nxt


def _mentions(records: pd.DataFrame, out: Path) -> pd.DataFrame:
    """(record, permno) for each stock a record names: `$SYM` or bare `SYM` (only `$SYM` for
    common-word and one-letter tickers), valid on the record's UTC date."""
    import re

    names = _read_csv(out / "stocknames.csv")
    protected = {"ALL", "IT", "CEO", "DD", "F"}
    spells: dict = {}
    for r in names:
        spells.setdefault(r["TICKER"], []).append((r["NAMEDT"], r["NAMEENDT"], int(r["PERMNO"])))
    utc_date = pd.to_datetime(records["created"], unit="s", utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    pat = re.compile(r"(\$?)\b([A-Z]{1,5})\b")
    rows = []
    for i, text in enumerate(records["text"].to_numpy()):
        found = set()
        for dollar, sym in pat.findall(text):
            if sym in spells and (dollar or sym not in protected):
                for a, b, permno in spells[sym]:
                    if a <= utc_date[i] <= b:
                        found.add(permno)
        rows += [(i, p) for p in found]
    return pd.DataFrame(rows, columns=["record", "permno"])


def _world(out: Path, summary: dict) -> dict:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    records = _records(out)
    crsp = _crsp(out)
    dates = sorted(crsp["date"].unique())
    opens, closes = _sessions(dates)
    session, nxt = _place(records["created"].to_numpy(), opens, closes)
    records["session"], records["next"] = session, nxt
    about = _mentions(records, out).merge(records, left_on="record", right_index=True)
    vader = SentimentIntensityAnalyzer()
    tone = {i: vader.polarity_scores(records["text"].iat[i])["compound"] for i in about["record"].unique()}
    about["tone"] = about["record"].map(tone)
    # one row per (stock, trading day) of the CRSP file, with the day's and the next day's return
    panel = crsp.assign(day=crsp["date"].map({d: i for i, d in enumerate(dates)})).sort_values(["permno", "day"])
    panel["ret_next"] = panel.groupby("permno")["ret"].shift(-1)

    def per_day(day: pd.Series, prefix: str) -> pd.DataFrame:
        sel = about.assign(day=day)
        g = sel[sel["day"] >= 0].groupby(["permno", "day"])
        return pd.DataFrame({f"{prefix}_n": g.size(), f"{prefix}_tone": g["tone"].mean()})

    # the session's posts on its day t, the after-close posts on the day t whose close they follow
    panel = panel.join(per_day(about["session"], "ses"), on=["permno", "day"])
    panel = panel.join(per_day(about["next"].where(about["next"] >= 0) - 1, "ac"), on=["permno", "day"])
    panel[["ac_n", "ses_n"]] = panel[["ac_n", "ses_n"]].fillna(0)
    return {"records": records, "panel": panel, "summary": summary, "out": out}


@pytest.fixture(scope="module")
def after_close_worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("after_close")
    worlds = {}
    for b in (1.0, 0.0):
        out = root / f"b{b:g}"
        worlds[b] = _world(out, generate(out, effect_after_close=b, processes=1, **AFTER_CLOSE))
    return worlds


def _within_rank_corr(panel: pd.DataFrame, x: str, y: str) -> tuple[float, int]:
    """Pooled correlation of within-stock ranks (a stock's level never counts)."""
    d = panel[[x, y, "permno"]].dropna()
    rx = d.groupby("permno")[x].rank(pct=True)
    ry = d.groupby("permno")[y].rank(pct=True)
    return float(np.corrcoef(rx, ry)[0, 1]), len(d)


def _corr(panel: pd.DataFrame, x: str, y: str) -> tuple[float, int]:
    d = panel[[x, y]].dropna()
    return float(np.corrcoef(d[x], d[y])[0, 1]), len(d)


def test_time_of_day_counts_in_summary_match_an_independent_placement(after_close_worlds):
    for w in after_close_worlds.values():
        rec, truth = w["records"], json.loads((w["out"] / "truth.json").read_text())
        n = len(rec)
        after = int((rec["session"] < 0).sum())
        assert truth["counts"]["records_after_close"] == after
        assert truth["counts"]["records_session"] == n - after
        assert w["summary"]["after_close_share"] == pytest.approx(after / n)
        # after the close and still on the close's UTC date: the posts a UTC-day rule dates t
        dates = sorted(_crsp(w["out"])["date"].unique())
        _, closes = _sessions(dates)
        created = rec["created"].to_numpy()
        k = np.searchsorted(closes, created, side="left") - 1  # last close strictly before the post
        ok = k >= 0
        same_day = ok & (created // 86400 == closes[np.maximum(k, 0)] // 86400) & (rec["session"].to_numpy() < 0)
        assert truth["counts"]["records_after_close_same_utc_day"] == int(same_day.sum())
        assert 0.05 < same_day.mean() < 0.25 and 0.35 < after / n < 0.75


def test_time_of_day_shares_match_the_documented_profile(after_close_worlds):
    from wsb_gpu.synth.clock import PROFILE_BUMPS, PROFILE_FLOOR

    w = after_close_worlds[0.0]
    rec = w["records"]
    dates = sorted(_crsp(w["out"])["date"].unique())
    opens, closes = _sessions(dates)
    # the profile's expected shares, day by day: the rate at each UTC minute's New York time
    days = np.arange(rec["created"].min() // 86400, rec["created"].max() // 86400 + 1)
    mid = (days[:, None] * 86400 + np.arange(1440)[None, :] * 60 + 30).ravel()
    local = pd.to_datetime(mid, unit="s", utc=True).tz_convert(NY)
    h = (local.hour + local.minute / 60 + local.second / 3600).to_numpy()
    rate = np.full(h.shape, PROFILE_FLOOR)
    for _, c, sd, a in PROFILE_BUMPS:
        dist = np.minimum(np.abs(h - c), 24 - np.abs(h - c))
        rate += a * np.exp(-0.5 * (dist / sd) ** 2)
    rate = (rate.reshape(len(days), 1440) / rate.reshape(len(days), 1440).sum(1, keepdims=True)).ravel()
    session, _ = _place(mid, opens, closes)
    bands = {
        "session": session >= 0,
        "overnight": (h < 7.0),
        "evening": (h >= 16.0) & (session < 0),
    }
    weight = np.bincount(rec["created"] // 86400 - days[0], minlength=len(days)).astype(float)
    rs, _ = _place(rec["created"].to_numpy(), opens, closes)
    lh = pd.to_datetime(rec["created"], unit="s", utc=True).dt.tz_convert(NY)
    lh = (lh.dt.hour + lh.dt.minute / 60 + lh.dt.second / 3600).to_numpy()
    got = {"session": rs >= 0, "overnight": lh < 7.0, "evening": (lh >= 16.0) & (rs < 0)}
    n = len(rec)
    for name, band in bands.items():
        expected = float((rate * band).reshape(len(days), 1440).sum(1) @ weight / weight.sum())
        share = float(got[name].mean())
        se = np.sqrt(expected * (1 - expected) / n)
        assert abs(share - expected) < 4 * se + 0.002, (name, share, expected)
    assert w["summary"]["time_of_day"]["session_share"] == pytest.approx(float(got["session"].mean()))
    # the documented shares of one weekday's posts: 54.5 % in the session; after the close
    # but before midnight UTC 14.7 % in summer (16:00-20:00 EDT), 10.3 % in winter (16:00-19:00 EST)
    day_rate = rate.reshape(len(days), 1440)
    day_session = bands["session"].reshape(len(days), 1440)
    after_close = (h >= 16.0).reshape(len(days), 1440) & ~day_session & (np.arange(1440) >= 16 * 60)[None, :]
    for date, same_utc in (("2018-07-10", 0.147), ("2018-12-11", 0.103)):
        i = int(np.datetime64(date).astype(np.int64) - days[0])
        assert float(day_rate[i] @ day_session[i]) == pytest.approx(0.545, abs=0.001)
        assert float(day_rate[i] @ after_close[i]) == pytest.approx(same_utc, abs=0.001)


def test_after_close_posts_carry_the_next_days_return(after_close_worlds):
    panel = after_close_worlds[1.0]["panel"]
    panel = panel.assign(abs_next=panel["ret_next"].abs(), sign_next=np.sign(panel["ret_next"]))
    r, n = _within_rank_corr(panel, "ac_n", "abs_next")
    assert n > 1000 and r > 0.2, r
    r, n = _corr(panel, "ac_tone", "sign_next")
    assert n > 500 and r > 0.3, r
    # the posts of the session of t know nothing about the return of t+1 (nor of t)
    bound = 4 / np.sqrt(n)
    panel = panel.assign(abs_ret=panel["ret"].abs(), sign_ret=np.sign(panel["ret"]))
    for x, y, f in (
        ("ses_n", "abs_next", _within_rank_corr),
        ("ses_tone", "sign_next", _corr),
        ("ses_n", "abs_ret", _within_rank_corr),
        ("ses_tone", "sign_ret", _corr),
    ):
        r, n = f(panel, x, y)
        assert abs(r) < 4 / np.sqrt(n), (x, y, r)
    assert bound < 0.15


def test_without_the_channel_after_close_posts_know_nothing(after_close_worlds):
    panel = after_close_worlds[0.0]["panel"]
    panel = panel.assign(abs_next=panel["ret_next"].abs(), sign_next=np.sign(panel["ret_next"]))
    for x, y, f in (("ac_n", "abs_next", _within_rank_corr), ("ac_tone", "sign_next", _corr)):
        r, n = f(panel, x, y)
        assert abs(r) < 4 / np.sqrt(n), (x, y, r)
    truth = json.loads((after_close_worlds[0.0]["out"] / "truth.json").read_text())
    assert truth["counts"]["news_phrases"] == 0 and truth["effect"]["placebo"] is True
    truth = json.loads((after_close_worlds[1.0]["out"] / "truth.json").read_text())
    assert truth["counts"]["news_phrases"] > 0 and truth["effect"]["after_close_only"] is True
    # the returns never depend on the channel
    for name in ("crsp_daily.csv", "stocknames.csv"):
        assert (after_close_worlds[1.0]["out"] / name).read_bytes() == (
            after_close_worlds[0.0]["out"] / name
        ).read_bytes()
    lat = pd.read_parquet(after_close_worlds[1.0]["out"] / "latent.parquet")
    assert lat["n_news_phrases"].sum() == truth["counts"]["news_phrases"]
    assert lat["n_after_close_posts"].sum() == truth["counts"]["after_close_posts_about_stocks"]


def test_after_close_world_same_bytes_with_two_processes(after_close_worlds, tmp_path):
    generate(tmp_path / "p2", effect_after_close=1.0, processes=2, **AFTER_CLOSE)
    one = after_close_worlds[1.0]["out"]
    for name in ("wallstreetbets_submissions.zst", "wallstreetbets_comments.zst"):
        assert _sha(_lines(tmp_path / "p2" / name)) == _sha(_lines(one / name))
    for name in ("crsp_daily.csv", "truth.json", "latent.parquet"):
        assert (tmp_path / "p2" / name).read_bytes() == (one / name).read_bytes()


def test_calendar_matches_the_exchange_calendar():
    xc = pytest.importorskip("exchange_calendars")
    from wsb_gpu.synth.calendar import early_closes, sessions_utc, trading_days

    cal = xc.get_calendar("XNYS", start="2006-01-01", end="2030-12-31")
    one_offs = {"2007-01-02", "2012-10-29", "2012-10-30", "2018-12-05", "2025-01-09"}  # closures left out
    ours = trading_days(dt.date(2006, 1, 1), dt.date(2030, 12, 31))
    theirs = {str(d.date()) for d in cal.sessions}
    assert {str(d) for d in ours} == theirs | one_offs
    assert {d.isoformat() for y in range(2006, 2031) for d in early_closes(y)} == {
        str(d.date()) for d in cal.early_closes
    }
    sel = ours[(ours >= np.datetime64("2018-01-01")) & (ours <= np.datetime64("2019-12-31"))]
    sel = sel[~np.isin(sel.astype(str), list(one_offs))]
    opens, closes = sessions_utc(sel)
    idx = pd.DatetimeIndex(sel.astype(str))
    want_open = (cal.opens.loc[idx] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    want_close = (cal.closes.loc[idx] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    np.testing.assert_array_equal(opens, want_open.astype(np.int64))
    np.testing.assert_array_equal(closes, want_close.astype(np.int64))
