"""When a post counts: the session each post feeds, under the three cutoff rules, and the
links stage that applies them.

Every expected date below is written out by hand from the NYSE's published hours (16:00
New York time; 13:00 on the day before Independence Day and the day after Thanksgiving;
closed on weekends, holidays, 29-30 October 2012 for Hurricane Sandy and 5 December 2018
for the national day of mourning), not computed with the calendar library under test.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wsb_gpu.config import LinksParams, validate_params
from wsb_gpu.errors import WsbError
from wsb_gpu.sources.sessions import cutoff_day, cutoff_table, parse_cutoff
from wsb_gpu.stages import get_stage, run_stage

D = dt.date

# (post instant in UTC, what it is in New York) -> the session it counts for under
# cutoff close, cutoff "15:45", cutoff utc_day.
TABLE = [
    # Summer (EDT, UTC-4): the close is 20:00 UTC, 15:45 is 19:45 UTC.
    ("2019-07-01 19:44:59", "Mon 15:44:59 EDT", D(2019, 7, 1), D(2019, 7, 1), D(2019, 7, 1)),
    ("2019-07-01 19:45:00", "Mon 15:45:00 EDT", D(2019, 7, 1), D(2019, 7, 1), D(2019, 7, 1)),
    ("2019-07-01 19:45:01", "Mon 15:45:01 EDT", D(2019, 7, 1), D(2019, 7, 2), D(2019, 7, 1)),
    ("2019-07-01 19:59:59", "Mon 15:59:59 EDT", D(2019, 7, 1), D(2019, 7, 2), D(2019, 7, 1)),
    ("2019-07-01 20:00:00", "Mon 16:00:00 EDT, the close", D(2019, 7, 1), D(2019, 7, 2), D(2019, 7, 1)),
    ("2019-07-01 20:00:01", "Mon 16:00:01 EDT", D(2019, 7, 2), D(2019, 7, 2), D(2019, 7, 1)),
    ("2019-07-01 23:59:59", "Mon 19:59:59 EDT", D(2019, 7, 2), D(2019, 7, 2), D(2019, 7, 1)),
    ("2019-07-02 00:00:00", "Mon 20:00:00 EDT", D(2019, 7, 2), D(2019, 7, 2), D(2019, 7, 2)),
    # Winter (EST, UTC-5): the close is 21:00 UTC, 15:45 is 20:45 UTC.
    ("2019-12-02 20:00:01", "Mon 15:00:01 EST", D(2019, 12, 2), D(2019, 12, 2), D(2019, 12, 2)),
    ("2019-12-02 20:44:59", "Mon 15:44:59 EST", D(2019, 12, 2), D(2019, 12, 2), D(2019, 12, 2)),
    ("2019-12-02 20:45:01", "Mon 15:45:01 EST", D(2019, 12, 2), D(2019, 12, 3), D(2019, 12, 2)),
    ("2019-12-02 20:59:59", "Mon 15:59:59 EST", D(2019, 12, 2), D(2019, 12, 3), D(2019, 12, 2)),
    ("2019-12-02 21:00:00", "Mon 16:00:00 EST, the close", D(2019, 12, 2), D(2019, 12, 3), D(2019, 12, 2)),
    ("2019-12-02 21:00:01", "Mon 16:00:01 EST", D(2019, 12, 3), D(2019, 12, 3), D(2019, 12, 2)),
    # The first sessions after the clocks change.
    ("2019-03-11 20:30:00", "Mon 16:30 EDT (would be 15:30 in EST)", D(2019, 3, 12), D(2019, 3, 12), D(2019, 3, 11)),
    ("2019-11-04 20:30:00", "Mon 15:30 EST (would be 16:30 in EDT)", D(2019, 11, 4), D(2019, 11, 4), D(2019, 11, 4)),
    # Early close 13:00 EDT (17:00 UTC) on 3 July 2019; 4 July a holiday.
    ("2019-07-03 16:59:59", "Wed 12:59:59 EDT", D(2019, 7, 3), D(2019, 7, 3), D(2019, 7, 3)),
    ("2019-07-03 17:00:00", "Wed 13:00:00 EDT, the early close", D(2019, 7, 3), D(2019, 7, 3), D(2019, 7, 3)),
    ("2019-07-03 17:30:00", "Wed 13:30 EDT", D(2019, 7, 5), D(2019, 7, 5), D(2019, 7, 3)),
    ("2019-07-03 19:50:00", "Wed 15:50 EDT", D(2019, 7, 5), D(2019, 7, 5), D(2019, 7, 3)),
    ("2019-07-04 15:00:00", "Thu 11:00 EDT, Independence Day", D(2019, 7, 5), D(2019, 7, 5), D(2019, 7, 4)),
    # Early close 13:00 EST (18:00 UTC) on 29 November 2019.
    ("2019-11-29 17:59:59", "Fri 12:59:59 EST", D(2019, 11, 29), D(2019, 11, 29), D(2019, 11, 29)),
    ("2019-11-29 18:30:00", "Fri 13:30 EST", D(2019, 12, 2), D(2019, 12, 2), D(2019, 11, 29)),
    # A Friday evening and the weekend go to Monday.
    ("2019-06-28 22:00:00", "Fri 18:00 EDT", D(2019, 7, 1), D(2019, 7, 1), D(2019, 6, 28)),
    ("2019-06-29 12:00:00", "Sat 08:00 EDT", D(2019, 7, 1), D(2019, 7, 1), D(2019, 6, 29)),
    ("2019-06-30 23:30:00", "Sun 19:30 EDT", D(2019, 7, 1), D(2019, 7, 1), D(2019, 6, 30)),
    ("2019-07-01 03:00:00", "Sun 23:00 EDT", D(2019, 7, 1), D(2019, 7, 1), D(2019, 7, 1)),
    # New Year's Eve after the close -> 2 January.
    ("2019-12-31 21:00:01", "Tue 16:00:01 EST", D(2020, 1, 2), D(2020, 1, 2), D(2019, 12, 31)),
    # Closed for the national day of mourning (G. H. W. Bush), Wednesday 5 December 2018.
    ("2018-12-04 21:00:01", "Tue 16:00:01 EST", D(2018, 12, 6), D(2018, 12, 6), D(2018, 12, 4)),
    ("2018-12-05 15:00:00", "Wed 10:00 EST, closed", D(2018, 12, 6), D(2018, 12, 6), D(2018, 12, 5)),
    ("2018-12-06 20:59:59", "Thu 15:59:59 EST", D(2018, 12, 6), D(2018, 12, 7), D(2018, 12, 6)),
    # Closed for Hurricane Sandy, Monday 29 and Tuesday 30 October 2012.
    ("2012-10-26 20:30:00", "Fri 16:30 EDT", D(2012, 10, 31), D(2012, 10, 31), D(2012, 10, 26)),
    ("2012-10-29 14:00:00", "Mon 10:00 EDT, closed", D(2012, 10, 31), D(2012, 10, 31), D(2012, 10, 29)),
    ("2012-10-30 19:00:00", "Tue 15:00 EDT, closed", D(2012, 10, 31), D(2012, 10, 31), D(2012, 10, 30)),
]
RULES = {"close": 2, "15:45": 3, "utc_day": 4}


def _seconds(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp())


INSTANTS = np.array([_seconds(r[0]) for r in TABLE], dtype=np.int64)


def _date(day) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(day))


@pytest.mark.parametrize("cutoff", list(RULES))
def test_each_instant_counts_for_the_expected_session(cutoff):
    table = cutoff_table(cutoff, int(INSTANTS.min()), int(INSTANTS.max()))
    days, dated = cutoff_day(INSTANTS, table.instants, table.days)
    assert dated.all()
    got = [_date(d) for d in days]
    want = [r[RULES[cutoff]] for r in TABLE]
    wrong = [(r[0], r[1], g, w) for r, g, w in zip(TABLE, got, want, strict=True) if g != w]
    assert not wrong, f"cutoff {cutoff}: (UTC, New York, got, expected) {wrong}"


def test_the_table_covers_posts_after_the_last_session_of_its_range():
    # One post, on a Friday evening: its table must still reach the Monday.
    friday_evening = _seconds("2019-06-28 22:00:00")
    table = cutoff_table("close", friday_evening, friday_evening)
    days, dated = cutoff_day(np.array([friday_evening]), table.instants, table.days)
    assert dated.tolist() == [True] and _date(days[0]) == D(2019, 7, 1)


def test_dating_is_array_api_code():
    xps = pytest.importorskip("array_api_strict")
    table = cutoff_table("close", int(INSTANTS.min()), int(INSTANTS.max()))
    want_days, want_hit = cutoff_day(INSTANTS, table.instants, table.days)
    days, hit = cutoff_day(xps.asarray(INSTANTS), xps.asarray(table.instants), xps.asarray(table.days))
    assert np.asarray(days).tolist() == want_days.tolist() and np.asarray(hit).tolist() == want_hit.tolist()
    # A post after the table's last cutoff has no session.
    days, hit = cutoff_day(np.array([10**10]), table.instants, table.days)
    assert hit.tolist() == [False]


@pytest.mark.parametrize(
    ("value", "canonical"),
    [("close", "close"), ("utc_day", "utc_day"), ("15:45", "15:45"), ("9:30", "09:30"), (945, "15:45")],
)
def test_the_cutoff_setting(value, canonical):
    assert validate_params(LinksParams, {"cutoff": value}, "links").cutoff == canonical
    assert parse_cutoff(value) == canonical


@pytest.mark.parametrize("value", ["24:00", "15:60", "noon", "", "1545"])
def test_a_bad_cutoff_is_one_line(value):
    with pytest.raises(WsbError, match="links.cutoff"):
        validate_params(LinksParams, {"cutoff": value}, "links")


def test_the_default_cutoff_is_the_close():
    assert validate_params(LinksParams, {}, "links").cutoff == "close"


# --- the whole stage -------------------------------------------------------------------------

VOL = ["ret", *(f"{p}_{w}" for p in ("vol", "y") for w in (1, 5, 22, 63))]
HALTED = D(2019, 7, 5)  # stock 2 does not trade on 5 July 2019


def _weekdays(start: str, end: str) -> list[dt.date]:
    """A CRSP-like calendar that trades every weekday, holidays and closures included (as the
    synthetic generator's omits one-off closures): the link date is then the first weekday on
    or after the session."""
    return [d.date() for d in pd.bdate_range(start, end)]


def _write(table: pa.Table, folder, *, files: int = 2, statistics: bool = True) -> None:
    folder.mkdir(parents=True)
    step = -(-table.num_rows // files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), folder / f"part.{i}.parquet", write_statistics=statistics)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("links")
    cal = {1: _weekdays("2012-10-01", "2020-01-31")}
    cal[2] = [d for d in cal[1] if d != HALTED]
    vol = pd.DataFrame([(p, d) for p, ds in cal.items() for d in ds], columns=["permno", "date"]).sample(
        frac=1, random_state=0
    )
    vol_table = pa.table(
        {
            "permno": pa.array(vol["permno"], pa.int64()),
            "date": pa.array(vol["date"], pa.date32()),
            **{c: pa.array(np.full(len(vol), 0.01)) for c in VOL},
        }
    )
    _write(vol_table, root / "volatility")
    rows = []
    for i, r in enumerate(TABLE):
        for permno in (1, 2):
            rows.append((f"p{i}", _seconds(r[0]), "T", permno, 1))
    rows.append(("p0", _seconds(TABLE[0][0]), "TT", 1, 2))  # a second ticker of stock 1: one link, n_occ 3
    m = pd.DataFrame(rows, columns=["id", "created_utc", "ticker", "permno", "n_occ"]).sample(frac=1, random_state=1)
    mentions = pa.table(
        {
            "id": pa.array(m["id"], pa.string()),
            "kind": pa.array(["comment"] * len(m), pa.string()),
            "created_utc": pa.array(m["created_utc"], pa.int64()),
            "date": pa.array((m["created_utc"] // 86400).astype("int32"), pa.int32()).cast(pa.date32()),
            "ticker": pa.array(m["ticker"], pa.string()),
            "permno": pa.array(m["permno"], pa.int64()),
            "n_occ": pa.array(m["n_occ"], pa.int32()),
        }
    )
    _write(mentions, root / "mentions")
    _write(mentions, root / "mentions-nostats", statistics=False)
    return {"root": root, "cal": cal}


def _expected(cal: dict[int, list[dt.date]], cutoff: str) -> list[tuple]:
    """(permno, date, id, post_date, created_utc, n_occ): the stock's first trading date on or
    after the session written in TABLE."""
    out = []
    for i, r in enumerate(TABLE):
        session = r[RULES[cutoff]]
        created = _seconds(r[0])
        for permno in (1, 2):
            date = min(d for d in cal[permno] if d >= session)
            n_occ = 3 if (i, permno) == (0, 1) else 1
            out.append((permno, date, f"p{i}", _date(created // 86400), created, n_occ))
    return sorted(out, key=lambda t: (t[0], t[1], t[2]))


@pytest.mark.parametrize("cutoff", list(RULES))
def test_the_links_stage_dates_every_post(lake, backend, cutoff, capfd):
    out = lake["root"] / f"links-{cutoff.replace(':', '')}-{backend.name}"
    manifest = run_stage(
        "links",
        out,
        mentions=lake["root"] / "mentions",
        volatility=lake["root"] / "volatility",
        cutoff=cutoff,
        backend=backend,
    )
    got = pd.read_parquet(out)
    assert str(pa.Schema.from_pandas(got).field("created_utc").type) == "int64"
    cols = ["permno", "date", "id", "post_date", "created_utc", "n_occ"]
    rows = sorted((tuple(r) for r in got[cols].itertuples(index=False)), key=lambda t: (t[0], t[1], t[2]))
    assert rows == _expected(lake["cal"], cutoff)
    # The halted stock's post of the 4th goes to its next trading day.
    assert D(2019, 7, 5) not in set(got[got.permno == 2]["date"])
    assert manifest["cutoff"] == cutoff and manifest["params"] == {"cutoff": cutoff}
    assert manifest["rows_out"] == len(TABLE) * 2 and manifest["schema"]["created_utc"] == "int64"
    summary = get_stage("links").summary(manifest)
    err = capfd.readouterr().err
    if cutoff == "utc_day":
        assert "look-ahead" in manifest["assignment"] and "UTC day, look-ahead" in summary
        assert sum("warning" in line and "look-ahead" in line for line in err.splitlines()) == 1
    else:
        assert "NYSE session" in manifest["assignment"] and "warning" not in err
        assert ("NYSE close" if cutoff == "close" else "15:45 New York") in summary


def test_the_links_stage_without_footer_statistics(lake):
    # A mentions dataset whose Parquet files carry no min/max: the range is computed instead.
    out = lake["root"] / "links-nostats"
    run_stage("links", out, mentions=lake["root"] / "mentions-nostats", volatility=lake["root"] / "volatility")
    got = pd.read_parquet(out)
    cols = ["permno", "date", "id", "post_date", "created_utc", "n_occ"]
    rows = sorted((tuple(r) for r in got[cols].itertuples(index=False)), key=lambda t: (t[0], t[1], t[2]))
    assert rows == _expected(lake["cal"], "close")


def test_a_changed_cutoff_reruns_the_stage(lake):
    out = lake["root"] / "links-rerun"
    kw = {"mentions": lake["root"] / "mentions", "volatility": lake["root"] / "volatility"}
    first = run_stage("links", out, **kw)
    second = run_stage("links", out, cutoff="utc_day", **kw)
    assert first["key"] != second["key"] and second["cutoff"] == "utc_day"
