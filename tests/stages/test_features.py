"""Links and stock-day features: next-trading-day assignment, distinct posts, means of every
per-post column (embedding, sentiment, VADER and its shares), volatility join."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wsb_gpu.errors import WsbError
from wsb_gpu.stages import run_stage


def build_features(mentions, embeddings, volatility, out, signals=None, **kw):
    """The links stage, then the features stage (as `wsb-gpu run` chains them)."""
    links = out.with_name(out.name + "-links")
    run_stage("links", links, mentions=mentions, volatility=volatility, **kw)
    signals = signals or mentions.parent / "sig"
    return run_stage("features", out, links=links, embeddings=embeddings, signals=signals, volatility=volatility, **kw)


VADER = ["vader_compound", "vader_pos", "vader_neg", "vader_neu"]


D = dt.date


def _write(df, folder, date_cols=("date",), nfiles=2):
    folder.mkdir(parents=True)
    t = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    for c in date_cols:
        t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(pa.date32()))
    step = -(-len(df) // nfiles)
    for i in range(nfiles):
        pq.write_table(t.slice(i * step, step), folder / f"part.{i}.parquet")


@pytest.fixture
def inputs(tmp_path):
    days = [d.date() for d in pd.bdate_range("2021-01-04", "2021-01-22")]
    cal = {10: days, 20: [d for d in days if d != D(2021, 1, 11)], 30: days[:5]}  # 20 halted on the 11th
    vol = pd.DataFrame([(p, d) for p, ds in cal.items() for d in ds], columns=["permno", "date"])
    vol["permno"] = vol["permno"].astype("int64")
    for j, c in enumerate(["ret", "vol_1", "vol_5", "vol_22", "vol_63", "y_1", "y_5", "y_22", "y_63"]):
        vol[c] = np.arange(len(vol)) * 0.001 + j
    vol = vol.sample(frac=1, random_state=1)  # rows in any order
    mentions = pd.DataFrame(
        [  # id, date, ticker, permno, n_occ
            ("a", D(2021, 1, 9), "X", 10, 1),  # Saturday -> Monday 11th
            ("a", D(2021, 1, 9), "XX", 10, 2),  # same post, second ticker of the same stock: counts once
            ("b", D(2021, 1, 10), "X", 10, 1),  # Sunday -> Monday 11th
            ("c", D(2021, 1, 11), "Y", 20, 3),  # stock 20 does not trade on the 11th -> 12th
            ("c", D(2021, 1, 11), "X", 10, 1),  # same post, other stock
            ("d", D(2021, 1, 11), "X", 10, 1),  # trading day itself
            ("e", D(2021, 1, 30), "X", 10, 1),  # after the last trading day: dropped
            ("f", D(2021, 1, 6), "Z", 30, 2),
            ("g", D(2021, 1, 6), "Z", 30, 1),  # no embedding: dropped
        ],
        columns=["id", "date", "ticker", "permno", "n_occ"],
    )
    mentions["kind"] = "submission"
    # Noon UTC of the date (07:00 New York): before the close, so the session is the date's own.
    mentions["created_utc"] = (pd.to_datetime(mentions["date"]) - pd.Timestamp(0)) // pd.Timedelta(seconds=1) + 43200
    mentions["permno"] = mentions["permno"].astype("int64")
    mentions["n_occ"] = mentions["n_occ"].astype("int32")
    emb = pd.DataFrame({"id": list("abcdef")})
    rng = np.random.default_rng(0)
    for c in ["e000", "e001", "e002"]:
        emb[c] = rng.normal(size=6).astype("float32")
    for c in ["p_negative", "p_neutral", "p_positive"]:
        emb[c] = rng.uniform(size=6).astype("float32")
    emb["n_tokens"] = np.int32(5)
    sig = pd.DataFrame({"id": list("abcdefg")})
    sig["vader_compound"] = np.array([0.6, -0.3, 0.0, 0.04, -0.06, 0.9, 0.1], dtype="float32")
    for c in VADER[1:]:
        sig[c] = rng.uniform(size=7).astype("float32")
    sig["tokens"] = "moon squeeze"
    sig["n_words"] = np.int32(2)
    _write(vol, tmp_path / "vol")
    _write(mentions, tmp_path / "men")
    _write(emb, tmp_path / "emb", date_cols=())
    _write(sig, tmp_path / "sig", date_cols=())
    return tmp_path, vol, mentions, emb.merge(sig[["id", *VADER]], on="id")


def _reference(vol, mentions, emb):
    """Plain-Python rules: dedupe (post, stock), next trading day, means over posts."""
    cal = {p: sorted(g["date"]) for p, g in vol.groupby("permno")}
    per = {}
    for r in mentions.itertuples():
        key = (r.permno, r.id)
        d, n = per.get(key, (r.date, 0))
        per[key] = (min(d, r.date), n + r.n_occ)
    out = {}
    e = emb.set_index("id")
    for (permno, pid), (d, n) in per.items():
        if pid not in e.index:
            continue
        nxt = [c for c in cal[permno] if c >= d]
        if not nxt:
            continue
        out.setdefault((permno, nxt[0]), []).append((pid, n))
    rows = []
    for (permno, day), posts in out.items():
        per_post = []
        for p, _ in posts:
            x = e.loc[p]
            c = float(x["vader_compound"])
            per_post.append(
                [*(float(x[k]) for k in MEANS[:6]), float(x["p_positive"]) - float(x["p_negative"])]
                + [float(x[k]) for k in VADER]
                + [1.0 if c > 0.05 else 0.0, 1.0 if c < -0.05 else 0.0]
            )
        rows.append((permno, day, len(posts), sum(n for _, n in posts), *np.mean(per_post, axis=0)))
    cols = ["permno", "date", "n_posts", "n_mentions", *MEANS]
    return pd.DataFrame(rows, columns=cols).sort_values(["permno", "date"]).reset_index(drop=True)


MEANS = [
    "e000",
    "e001",
    "e002",
    "p_negative",
    "p_neutral",
    "p_positive",
    "p_net",
    *VADER,
    "vader_pos_share",
    "vader_neg_share",
]


def _check(out_dir, vol, mentions, emb):
    got = pd.read_parquet(out_dir).sort_values(["permno", "date"]).reset_index(drop=True)
    ref = _reference(vol, mentions, emb)
    assert list(got[["permno", "date"]].itertuples(index=False, name=None)) == list(
        ref[["permno", "date"]].itertuples(index=False, name=None)
    )
    assert got["n_posts"].tolist() == ref["n_posts"].tolist()
    assert got["n_mentions"].tolist() == ref["n_mentions"].tolist()
    for c in MEANS:
        assert got[c].dtype == np.float32
        np.testing.assert_allclose(got[c].to_numpy(float), ref[c].to_numpy(), rtol=1e-6)
    v = vol.set_index(["permno", "date"])
    for c in ["vol_1", "vol_63", "y_1", "ret"]:
        np.testing.assert_array_equal(got[c].to_numpy(), v.loc[list(zip(got.permno, got.date)), c].to_numpy())
    return got


def test_features_follow_the_rules(inputs, backend):
    root, vol, mentions, emb = inputs
    manifest = build_features(root / "men", root / "emb", root / "vol", root / "features", backend=backend)
    got = _check(root / "features", vol, mentions, emb)
    monday = got[(got.permno == 10) & (got.date == D(2021, 1, 11))].iloc[0]
    assert monday.n_posts == 4 and monday.n_mentions == 6  # a (1+2), b, c, d
    assert got[got.permno == 20].date.tolist() == [D(2021, 1, 12)]
    # rows in: the links, one per (stock, post) with a trading day (e is after the last one).
    assert manifest["stage"] == "features" and manifest["rows_out"] == len(got) and manifest["rows_in"] == 7
    assert manifest["schema"]["date"].startswith("date32")


@pytest.mark.parametrize("partial_bytes", [None, 2000])
def test_features_on_a_distributed_cluster(inputs, monkeypatch, partial_bytes):
    # The two permno shuffles must land the same stocks in the same partitions under
    # the distributed (p2p) shuffle too; with a tiny PARTIAL_SUM_BYTES the sums are reduced
    # into several partitions through a p2p shuffle, whose frames must not make pandas warn
    # that they are fragmented (the warning's source was fixed, not silenced).
    import warnings

    from distributed import Client, LocalCluster

    from wsb_gpu.backend import Backend
    from wsb_gpu.stages import features

    root, vol, mentions, emb = inputs
    embeddings = root / "emb"
    if partial_bytes is not None:
        monkeypatch.setattr(features, "PARTIAL_SUM_BYTES", partial_bytes)  # a few reduced partitions
        # 150 more embedding columns: pandas warns about fragmentation only past 100 blocks
        wide = pd.read_parquet(embeddings)
        extra = pd.DataFrame(np.ones((len(wide), 150), np.float32), columns=[f"e{i:03d}" for i in range(3, 153)])
        embeddings = root / "emb-wide"
        if not embeddings.exists():
            embeddings.mkdir()
            pd.concat([wide, extra], axis=1).to_parquet(embeddings / "part.0.parquet", index=False)
    out = root / f"f2-{partial_bytes}"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        build_features(root / "men", embeddings, root / "vol", out, backend=Backend("cpu"), client=client)
    _check(out, vol, mentions, emb)
    assert not [w for w in caught if issubclass(w.category, pd.errors.PerformanceWarning)]


def test_links_follow_the_rules(inputs, backend):
    root, vol, mentions, _ = inputs
    run_stage("links", root / "links", mentions=root / "men", volatility=root / "vol", backend=backend)
    got = pd.read_parquet(root / "links").sort_values(["permno", "id"]).reset_index(drop=True)
    cal = {p: sorted(g["date"]) for p, g in vol.groupby("permno")}
    want = []
    for (permno, pid), g in mentions.groupby(["permno", "id"]):
        d = g["date"].min()
        nxt = [c for c in cal[permno] if c >= d]
        if nxt:
            want.append((permno, nxt[0], pid, d, int(g["n_occ"].sum())))
    want = sorted(want, key=lambda r: (r[0], r[2]))
    assert [tuple(r) for r in got[["permno", "date", "id", "post_date", "n_occ"]].itertuples(index=False)] == want
    assert got["n_occ"].dtype == np.int32


def test_missing_column_is_a_clear_error(inputs):
    from wsb_gpu.backend import Backend

    root, *_ = inputs
    with pytest.raises(WsbError, match="lacks column"):
        build_features(root / "emb", root / "emb", root / "vol", root / "bad", backend=Backend("cpu"))
