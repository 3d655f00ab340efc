"""Plumbing of the benchmark harness on tiny sizes: rows, CSV, RESULTS.md, ratios, scaling.

No timing is asserted anywhere (house style 13: benchmarks are programs, not timed tests).
The PySpark peer is checked once, on tiny data, against plain-Python/NumPy references
(that it does the same work as our stages); it is skipped quickly without Java/pyspark.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

# benchmarks/ is a folder of programs at the repository root, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, scaling, spark_peer  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402
from benchmarks.harness import parse_sizes  # noqa: E402


def _row(stage, impl, size, median, **kw):
    return {
        "stage": stage,
        "impl": impl,
        "backend": "cpu",
        "size": size,
        "unit": "records/s",
        "median_s": median,
        "min_s": median,
        "max_s": median,
        "throughput": size / median,
        "repeats": 1,
        "workers": None,
        "note": kw.pop("note", ""),
        "error": "",
        "series": "",
        **kw,
    }


# --- helpers ---------------------------------------------------------------------------------


def test_make_row_median_min_max_and_throughput():
    r = common.make_row("embed", "wsb_gpu", "cpu", 300, [3.0, 1.0, 2.0, 10.0], unit="posts/s")
    assert (r["median_s"], r["min_s"], r["max_s"]) == (2.5, 1.0, 10.0)
    assert r["throughput"] == pytest.approx(300 / 2.5)
    assert r["repeats"] == 4


def test_time_call_runs_warmup_setup_and_repeats():
    calls = []
    times = common.time_call(lambda: calls.append("run"), repeats=3, warmup=2, setup=lambda: calls.append("setup"))
    assert len(times) == 3
    assert calls == ["setup", "run"] * 5


def test_ratios_are_peer_seconds_over_ours_at_the_same_size():
    rows = [
        _row("volatility", "wsb_gpu", 100, 2.0, note="whole stage: Parquet in"),
        _row("volatility", "wsb_gpu", 100, 0.5, note="kernel only, 3 partitions"),
        _row("volatility", "pyspark", 100, 7.0),
        _row("volatility", "pandas", 200, 9.0),  # no ours at 200: no ratio
        {**_row("volatility", "polars", 100, 1.0), "error": "skipped: x", "median_s": math.nan},
    ]
    ratios = common.compute_ratios(rows)
    assert {(q["ours"], q["peer"]) for q in ratios} == {
        ("wsb_gpu (whole stage: Parquet in)", "pyspark"),
        ("wsb_gpu (kernel only)", "pyspark"),
    }
    whole = next(q for q in ratios if q["ours"].startswith("wsb_gpu (whole"))
    kernel = next(q for q in ratios if q["ours"].startswith("wsb_gpu (kernel"))
    assert whole["speedup"] == pytest.approx(3.5) and whole["goal"] == 3.0 and whole["met"] is True
    # A compute-only timing of ours is not judged against a whole-stage peer.
    assert kernel["speedup"] == pytest.approx(14.0) and kernel["goal"] is None and kernel["met"] is None


def test_ratio_goal_not_met_is_reported():
    rows = [_row("ingest+mentions", "wsb_gpu", 10, 1.0), _row("ingest+mentions", "pyspark", 10, 2.0)]
    (q,) = common.compute_ratios(rows)
    assert q["speedup"] == pytest.approx(2.0) and q["met"] is False
    assert "**no**" in common.ratios_table([q])


def test_ingest_and_mentions_combine_per_implementation():
    rows = [
        _row("ingest", "wsb_gpu", 50, 1.0),
        _row("mentions", "wsb_gpu", 50, 0.25),
        _row("ingest", "pyspark", 50, 4.0),
        _row("mentions", "pyspark", 50, 3.0),
        _row("ingest", "pandas", 50, 2.0),
    ]  # no mentions row: not combined
    combined = {r["impl"]: r for r in common.combine_ingest_mentions(rows)}
    assert set(combined) == {"wsb_gpu", "pyspark"}
    assert combined["wsb_gpu"]["median_s"] == pytest.approx(1.25)
    assert combined["pyspark"]["throughput"] == pytest.approx(50 / 7.0)


def test_parse_sizes():
    assert parse_sizes(None, ["train"]) == {"train": 1_000_000}
    assert parse_sizes("ingest=2e3,train=500", ["ingest", "mentions", "train"]) == {
        "ingest": 2000,
        "mentions": 2000,
        "train": 500,
    }
    with pytest.raises(SystemExit):
        parse_sizes("nosuch=3", ["train"])


def test_csv_appends_and_reads_back(tmp_path):
    path = tmp_path / "r" / "x.csv"
    common.write_csv([_row("train", "wsb_gpu/stats", 10, 0.5)], path)
    common.write_csv([common.error_row("train", "pyspark", "cpu", 10, "skipped: no Java\nmore")], path)
    with path.open() as f:
        lines = list(csv.reader(f))
    assert lines[0] == list(common.ROW_FIELDS) and len(lines) == 3
    rows = common.read_csv(path)
    assert rows[0]["median_s"] == 0.5 and rows[0]["size"] == 10
    assert rows[1]["error"] == "skipped: no Java" and math.isnan(rows[1]["median_s"])


def test_machine_info_describes_the_machine():
    info = common.machine_info()
    assert info["cpu_model"] and info["cpu_count"] >= 1 and info["usable_cores"] >= 1
    assert "pandas" in info["versions"] and info["python"]
    assert isinstance(info["gpus"], list) and info["gpu_status"]


def test_results_md_is_appended_never_rewritten(tmp_path):
    md = tmp_path / "RESULTS.md"
    info = common.machine_info()
    rows = [_row("volatility", "wsb_gpu", 10, 1.0), _row("volatility", "pyspark", 10, 5.0)]
    common.append_section(
        md, title="first", info=info, command="python -m benchmarks", rows=rows, ratios=common.compute_ratios(rows)
    )
    first = md.read_text()
    common.append_section(md, title="second", info=info, command="python -m benchmarks", rows=rows, ratios=[])
    text = md.read_text()
    assert text.startswith(first)
    assert text.count("\n## ") == 2 and text.count("# Benchmark results") == 1
    assert "| volatility | 10 | wsb_gpu | pyspark |" in text and "5.00×" in text
    if not info["gpu_status"].startswith("GPU backend usable"):
        assert "no GPU on this machine" in text


def test_gpu_backend_without_gpu_is_a_one_line_error(tmp_path, capsys):
    from wsb_gpu.backend import gpu_status

    if gpu_status()[0]:
        pytest.skip("a GPU is usable here")
    assert main(["--backend", "gpu", "--stage", "volatility", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --backend gpu") and "\n" not in err
    assert not (tmp_path / "RESULTS.md").exists()


# --- the harness end to end on tiny sizes -----------------------------------------------------


def test_harness_runs_every_stage_and_writes_csv_and_section(tmp_path, monkeypatch):
    """Each stage module at a tiny size through the harness (no Spark: tested below).

    The training stage takes minutes even on 3,000 stock-days (it always solves 9 windows
    x 3 folds x 5 lambdas at 772 features), so its module is run with a stand-in ``bench``
    here: what is tested is the harness's plumbing, not the stage.
    """
    import benchmarks.train as train_module

    def quick_train_bench(backend, size, repeats=3):
        times = common.time_call(lambda: sum(range(1000)), repeats=repeats, warmup=0)
        return [
            common.make_row("train", "wsb_gpu/stats", backend, size, times, unit="stock-days/s"),
            common.make_row("train", "wsb_gpu/estimator", backend, size, [t * 2 for t in times], unit="stock-days/s"),
        ]

    monkeypatch.setattr(train_module, "bench", quick_train_bench)
    csv_path = tmp_path / "rows.csv"
    rc = main(
        [
            "--backend",
            "cpu",
            "--stage",
            "all",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--peers",
            "none",
            "--size",
            "ingest=3000,embed=16,signals=1500,volatility=20000,train=3000,enet=3000,sequence=600",
            "--out-dir",
            str(tmp_path),
            "--csv",
            str(csv_path),
        ]
    )
    assert rc == 0
    rows = common.read_csv(csv_path)
    # (benchmarks/enet.py names its rows per width: enet-p64, enet-p772.)
    by_stage = {s: [r for r in rows if r["stage"].split("-p")[0] == s] for s in common.STAGES}
    for stage, got in by_stage.items():
        assert got, f"no row for {stage}"
        module = common.HERE / f"{'ingest' if stage == 'mentions' else stage}.py"
        if module.exists():  # a missing stage module gives an error row
            ours = [r for r in got if common.is_ours(r["impl"])]
            assert ours and all(common.ok(r) for r in ours), ours
    md = (tmp_path / "RESULTS.md").read_text()
    assert "## " in md and "### Measurements" in md and "Command: `python -m benchmarks" in md
    if any(common.ok(r) and not common.is_ours(r["impl"]) for r in rows):
        assert "### Speed-ups of wsb_gpu over the peers" in md


def test_scaling_sizes_plot_and_cores(tmp_path):
    """Three sizes of one stage in process, then 1 core in a pinned subprocess; the PNG is drawn."""
    csv_path = tmp_path / "rows.csv"
    rc = main(
        [
            "--backend",
            "cpu",
            "--stage",
            "volatility",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--peers",
            "none",
            "--size",
            "4000",
            "--scaling",
            "--scaling-sizes",
            "volatility=1000:2000:4000",
            "--workers",
            "1",
            "--out-dir",
            str(tmp_path),
            "--csv",
            str(csv_path),
        ]
    )
    assert rc == 0
    rows = common.read_csv(csv_path)
    sizes = {r["size"] for r in rows if r["series"] == "size" and r["impl"] == "pandas"}
    assert sizes == {1000, 2000, 4000}
    assert {r["workers"] for r in rows if r["series"] == "workers"} == {"1"}
    png = tmp_path / "scaling.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "RESULTS.md").read_text()
    assert "### Scaling with input size" in md and "log-log slope" in md and "![scaling](scaling.png)" in md
    assert "### Scaling with cores" in md


def test_loglog_slope_and_scaling_sizes():
    assert scaling.loglog_slope([10, 100, 1000], [1, 100, 10000]) == pytest.approx(2.0)
    assert scaling.loglog_slope([10], [1]) is None
    got = scaling.parse_scaling_sizes("mentions=10:20:30", ["ingest", "mentions"])
    assert got == {"ingest": (10, 20, 30), "mentions": (10, 20, 30)}


# --- the PySpark peer (one session, tiny data, independent references) --------------------------

SPARK_OK, SPARK_WHY = spark_peer.spark_status()


def _lines(dump):
    import zstandard

    with open(dump, "rb") as fh:
        return zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(fh).read().decode().splitlines()


def _reference_mentions(inputs, stoplist):
    """Plain Python: json + re, line by line, the same token rule, the name history by date."""
    names = []
    with open(inputs["stocknames"]) as f:
        for rec in csv.DictReader(f):
            names.append(
                (
                    rec["TICKER"],
                    int(rec["PERMNO"]),
                    dt.date.fromisoformat(rec["NAMEDT"]),
                    dt.date.fromisoformat(rec["NAMEENDT"]),
                )
            )
    pattern = re.compile(spark_peer.TOKEN_PATTERN)
    out = Counter()
    for key in ("submissions", "comments"):
        for line in _lines(inputs[key]):
            rec = json.loads(line)
            text = (
                (rec.get("title") or "") + "\n" + (rec.get("selftext") or "") if key == "submissions" else rec["body"]
            )
            day = dt.datetime.fromtimestamp(int(rec["created_utc"]), dt.timezone.utc).date()
            for tok in pattern.findall(text):
                sym = tok.lstrip("$")
                if not tok.startswith("$") and (len(sym) < 2 or sym in stoplist):
                    continue
                for ticker, permno, a, b in names:
                    if ticker == sym and a <= day <= b:
                        out[(rec["id"], ticker, permno)] += 1
    return out


def _reference_vol(path):
    import pandas as pd

    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = {}
    for permno, g in raw.groupby("PERMNO"):
        g = g.sort_values("date")
        rets = []
        for a, b, c in zip(g["RET"], g["RETX"], g["DLRET"]):
            val = math.nan
            for v in (a, b, c):
                try:
                    x = float(v)
                except ValueError:
                    continue
                if math.isfinite(x):
                    val = x
                    break
            rets.append(val)
        for i, d in enumerate(g["date"]):
            vols = {}
            for w in (1, 5, 22, 63):
                win = rets[i - w + 1 : i + 1] if i + 1 >= w else []
                vols[w] = math.sqrt(sum(x * x for x in win)) if win and all(math.isfinite(x) for x in win) else math.nan
            out[(int(permno), d)] = vols
    return out


@pytest.mark.skipif(not SPARK_OK, reason=f"PySpark peer: {SPARK_WHY}")
def test_spark_peer_does_the_same_work_on_tiny_data(tmp_path):
    inputs = common.synthetic_inputs(600, folder=tmp_path / "in", tickers=12)
    n_records = sum(len(_lines(inputs[key])) for key in ("submissions", "comments"))
    crsp = common.crsp_panel(tmp_path / "crsp.csv", n_stocks=2, rows=2 * 90)
    features = common.features_frame(400, n_embed=6, first_year=2012, last_year=2016)
    feat_path = spark_peer.write_features(features, tmp_path / "features")
    stoplist = spark_peer.default_stoplist()
    with spark_peer.SparkPeer(cores=2, memory="1g") as peer:
        rows = peer.ingest_mentions(inputs, 600, repeats=1, warmup=0)
        assert [(r["stage"], r["impl"]) for r in rows] == [("ingest", "pyspark"), ("mentions", "pyspark")]
        assert all(common.ok(r) for r in rows)
        assert "Python zstandard" in rows[0]["note"]  # the 2 GiB window defeats the JVM codec
        spark = peer.session()

        # mentions: the same rows as the plain-Python reference
        posts = str(tmp_path / "posts")
        spark_peer.spark_ingest(spark, str(inputs["submissions"]), str(inputs["comments"]), posts)
        assert spark.read.parquet(posts).count() == n_records
        men = spark_peer.spark_mentions(spark, posts, str(inputs["stocknames"]), str(tmp_path / "men"), stoplist)
        got = {(r["id"], r["ticker"], r["permno"]): r["n_occ"] for r in spark.read.parquet(men).collect()}
        ref = _reference_mentions(inputs, set(stoplist))
        assert ref and got == dict(ref)

        # volatility: every window equals the direct sum over the stock's own rows
        vol = tmp_path / "vol"
        spark_peer.spark_volatility(spark, str(crsp), str(vol))
        ref_vol = _reference_vol(crsp)
        out = spark.read.parquet(str(vol)).toPandas()
        assert len(out) == len(ref_vol)
        for rec in out.itertuples():
            want = ref_vol[(rec.permno, rec.date.isoformat())]
            for w in (1, 5, 22, 63):
                a, b = getattr(rec, f"vol_{w}"), want[w]
                assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)

        # ridge grid: one result per test year (2016 only with 4 training years)
        res = spark_peer.spark_ridge_cv(spark, str(feat_path), lambdas=(0.1,), folds=2, parallelism=2)
        assert [r["test_year"] for r in res] == [2016]
        assert np.isfinite(res[0]["mse"]) and res[0]["lambda"] == 0.1


def test_spark_unavailable_rows_say_why():
    rows = spark_peer.unavailable_rows(["volatility"], 10, "cpu", "no Java runtime found")
    assert rows[0]["impl"] == "pyspark" and rows[0]["error"] == "skipped: no Java runtime found"
    assert not common.ok(rows[0])
    assert importlib.util.find_spec("benchmarks.spark_peer") is not None


@pytest.mark.parametrize("peer", ["polars", "duckdb"])
def test_volatility_peers_compute_what_the_stage_computes(tmp_path, peer):
    """The polars and DuckDB peers of benchmarks/volatility.py give the stage's vol_w and
    y_w on a CRSP-style CSV with missing returns (letter code C) and unsorted rows."""
    pytest.importorskip(peer)
    import pandas as pd

    from benchmarks import volatility as vb
    from wsb_gpu.backend import Backend
    from wsb_gpu.stages import run_stage

    panel = vb.make_panel(3000, seed=3).sample(frac=1.0, random_state=1)
    csv = tmp_path / "crsp.csv"
    text = panel.assign(
        PERMNO=panel["permno"],
        date=pd.to_datetime(panel["date"]).dt.strftime("%Y-%m-%d"),
        RET=panel["ret"].round(6).map(lambda v: "C" if pd.isna(v) else f"{v:.6f}"),
    )[["PERMNO", "date", "RET"]]
    text.to_csv(csv, index=False)
    assert (text["RET"] == "C").any()
    getattr(vb, f"{peer}_file")(csv, tmp_path / "peer.parquet")
    got = pd.read_parquet(tmp_path / "peer.parquet").rename(columns={"PERMNO": "permno"})
    run_stage("volatility", tmp_path / "vol", crsp=csv, backend=Backend("cpu"))
    ours = pd.read_parquet(tmp_path / "vol")
    key = ["permno", "date"]
    got["date"] = pd.to_datetime(got["date"]).dt.date
    ours["date"] = pd.to_datetime(ours["date"]).dt.date
    m = ours.merge(got, on=key, suffixes=("", "_peer"))
    assert len(m) == len(ours) == len(panel)
    for c in [f"{p}_{w}" for p in ("vol", "y") for w in vb.WINDOWS]:
        np.testing.assert_allclose(m[f"{c}_peer"].to_numpy(float), m[c].to_numpy(float), rtol=1e-9, equal_nan=True)


def test_ingest_peers_give_our_posts_and_mention_rows(tmp_path):
    """The polars peer of ingest+mentions gives exactly our posts and mention rows on
    synthetic dumps (malformed lines, lone surrogates, entities, both created_utc types);
    DuckDB only loses the lines its JSON reader rejects (ignore_errors drops them)."""
    pytest.importorskip("polars")
    pytest.importorskip("duckdb")
    import pyarrow.dataset as ds

    from benchmarks import ingest as ib
    from wsb_gpu.backend import Backend
    from wsb_gpu.stages import run_stage
    from wsb_gpu.stages.mentions import load_stoplist
    from wsb_gpu.synth import FILES, generate

    data = tmp_path / "data"
    generate(data, seed=5, tickers=20, start="2019-01-01", end="2019-03-31", posts_per_day=150, malformed=0.01)
    sub, com, names = (data / FILES[k] for k in ("submissions", "comments", "stocknames"))
    res = run_stage("ingest", tmp_path / "posts", submissions=sub, comments=com, backend=Backend("cpu"))
    assert sum(res["malformed"].values()) > 0 and res["surrogates_replaced"] > 0  # the hard cases are there
    run_stage("mentions", tmp_path / "m", posts=tmp_path / "posts", tickers=names, backend=Backend("cpu"))
    ours = ds.dataset(str(tmp_path / "posts"), format="parquet").to_table(columns=["id"]).column("id").to_pylist()

    n_posts, n_rows = ib.polars_ingest_mentions(sub, com, names, load_stoplist(), tmp_path / "pl")
    diff = ib.compare_mentions(tmp_path / "m", tmp_path / "pl" / "mentions")
    assert n_posts == len(ours) == res["rows_out"]
    assert diff["only_ours"] == diff["only_peer"] == 0 and diff["peer"] == n_rows > 0

    n_posts, n_rows = ib.duckdb_ingest_mentions(sub, com, names, load_stoplist(), tmp_path / "dk")
    diff = ib.compare_mentions(tmp_path / "m", tmp_path / "dk" / "mentions")
    kept = set(
        ds.dataset(str(tmp_path / "dk" / "posts"), format="parquet").to_table(columns=["id"]).column("id").to_pylist()
    )
    assert kept <= set(ours) and len(ours) - n_posts <= res["surrogates_replaced"]
    assert diff["only_peer"] == 0 and diff["peer"] == n_rows


def test_embed_peers_compute_our_vectors(tmp_path):
    """sentence-transformers and ONNX Runtime (the model exported by the benchmark) give our
    mean-pooled vectors on a tiny BERT, in fp32."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks import commands
    from tests.fixtures.tiny_models import build_tiny_bert
    from wsb_gpu.encoder import Encoder, EncoderSpec

    model = build_tiny_bert(tmp_path / "bert", seed=4)
    texts = ["GME to the moon", "sell everything now", "yolo calls " * 30, "", "diamond hands"]
    posts, mentions = tmp_path / "posts", tmp_path / "mentions"
    for folder, table in (
        (posts, {"id": [f"p{i}" for i in range(5)], "text": texts}),
        (mentions, {"id": ["p0", "p1", "p2", "p3", "p4"]}),
    ):
        folder.mkdir()
        pq.write_table(pa.table(table), folder / "part.0.parquet")
    ours = Encoder.load(EncoderSpec(str(model), max_length=commands.EMBED_MAX_LENGTH, pooling="mean", precision="fp32"))
    want = ours.encode(texts).embeddings

    commands.st_embed(posts, mentions, str(model), tmp_path / "st", dtype="fp32")
    onnx_dir = commands.onnx_model(str(model), folder=tmp_path / "onnx")
    commands.onnx_embed(posts, mentions, onnx_dir, tmp_path / "ort")
    for out in ("st", "ort"):
        t = pq.read_table(tmp_path / out / "part.0.parquet")
        got = np.asarray(t.column("embedding").to_pylist(), dtype=np.float32)
        order = [int(i[1:]) for i in t.column("id").to_pylist()]
        np.testing.assert_allclose(got, want[order], atol=2e-4, rtol=1e-3, err_msg=out)


def test_whole_command_table_names_the_fastest_peer(tmp_path):
    from benchmarks import commands

    def row(impl, size, s, gb=1.0):
        return dict(stage="ingest+mentions", impl=impl, backend="cpu", size=size, median_s=s, error="", peak_gb=gb)

    rows = [
        row("wsb_gpu", 10, 2.0),
        row("wsb_gpu/cluster-none", 10, 1.5),
        row("polars", 10, 3.0),
        row("duckdb", 10, 1.0),
    ]
    table = commands.best_peer_table(rows)
    assert "| ingest+mentions | 10 | 2.00 | 1.50 | duckdb | 1.00 | 0.50× (2.00× slower) |" in table
    assert commands.scaling_plot(rows, tmp_path / "p.png") is None  # one size: no plot
    rows += [row("wsb_gpu", 100, 10.0), row("polars", 100, 20.0)]
    assert "**2.00× (faster)**" in commands.best_peer_table(rows)
    assert commands.scaling_plot(rows, tmp_path / "p.png").stat().st_size > 0
