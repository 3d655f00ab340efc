"""``wsb-gpu run`` end to end on a small synthetic dataset (CPU backend, LocalCluster).

* every stage's output contract (columns and types), every manifest, run.json, the report;
* a second run does no work;
* a run stopped between stages (``until_stage``, then a stage that raises) resumes and
  gives the same results as the uninterrupted run;
* (marker ``slurm``) the same run with workers as Slurm jobs gives the same metrics.

The data are tiny (10 stocks, a few posts a day, four years, two test years) so that each
run takes well under a minute on two busy cores; the model is the packaged MiniLM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
import yaml

from wsb_gpu import pipeline
from wsb_gpu.config import load_settings
from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import read_manifest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SIZE = {"tickers": 10, "posts_per_day": 4, "start": "2014-01-01", "end": "2017-12-31", "seed": 3}
MANIFEST_KEYS = {"stage", "inputs", "params", "rows_in", "rows_out", "seconds", "backend", "schema", "written_at"}

# Dataset contracts (docs/outputs.md): column -> Arrow type (None = any type).
CONTRACTS = {
    "posts": {
        "id": "string",
        "kind": "string",
        "created_utc": "int64",
        "date": "date32[day]",
        "author": "string",
        "text": "string",
        "source": "string",
    },
    "mentions": {
        "id": "string",
        "kind": "string",
        "created_utc": "int64",
        "date": "date32[day]",
        "ticker": "string",
        "permno": "int64",
        "n_occ": "int32",
    },
    "embeddings": {"id": "string", "e000": "float", "e383": "float", "n_tokens": "int32"},
    "volatility": {
        "permno": "int64",
        "date": "date32[day]",
        "ret": "double",
        **{f"{p}_{w}": "double" for p in ("vol", "y") for w in (1, 5, 22, 63)},
    },
    "features": {
        "permno": "int64",
        "date": "date32[day]",
        "n_posts": None,
        "n_mentions": None,
        "e000": None,
        **{f"{p}_{w}": "double" for p in ("vol", "y") for w in (1, 5, 22, 63)},
    },
    "results/predictions": {
        "permno": "int64",
        "date": None,
        "y": "double",
        "yhat_har": "double",
        "yhat_ridge__all": "double",
        "yhat_xgboost__all": "double",
        "yhat_ridge__lexicon": "double",
    },
    "signals": {"id": "string", "vader_compound": "float", "tokens": "string", "n_words": "int32"},
    "links": {"permno": "int64", "date": "date32[day]", "id": "string", "post_date": "date32[day]", "n_occ": "int32"},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    from wsb_gpu.demo import input_paths
    from wsb_gpu.synth import generate

    folder = tmp_path_factory.mktemp("synth")
    generate(folder, **SIZE)
    return input_paths(folder)


def write_config(path: Path, lake: Path, data: dict[str, str], **cluster) -> Path:
    config = {
        "backend": "cpu",
        "lake": str(lake),
        "inputs": data,
        "cluster": {"kind": "local", "n_workers": 2, "threads_per_worker": 1, "dashboard_address": ":0", **cluster},
        "embed": {"model": "minilm", "local_files_only": True, "partition_size": 2000},
        "train": {
            "train_years": 2,
            "xgboost": {"n_estimators": 30, "early_stopping_rounds": 10},
            "topics": {"sample": 1500, "min_topic_size": 25},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _schema(folder: Path) -> dict[str, str]:
    schema = ds.dataset(str(folder), format="parquet", exclude_invalid_files=True).schema
    return {f.name: str(f.type) for f in schema}


def _stamps(lake: Path) -> dict[str, str]:
    return {s.output: (lake / s.output / "_manifest.json").read_text() for s in pipeline.STAGES}


def _metrics(lake: Path) -> pd.DataFrame:
    metrics = pd.read_csv(lake / "results" / "metrics.csv", dtype={"test_year": str})
    return metrics.set_index(["model", "feature_set", "test_year"])


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    """One uninterrupted run, shared by the tests below."""
    root = tmp_path_factory.mktemp("full")
    config = write_config(root / "run.yaml", root / "lake", data)
    result = pipeline.run_pipeline(load_settings(config), progress=False)
    return {"root": root, "lake": root / "lake", "config": config, "result": result}


def test_every_stage_output_manifest_and_report(full_run):
    lake, result = full_run["lake"], full_run["result"]
    assert result.ran == list(pipeline.STAGE_NAMES)
    for dataset, contract in CONTRACTS.items():
        schema = _schema(lake / dataset)
        for col, typ in contract.items():
            assert col in schema, f"{dataset} lacks column {col} (has {sorted(schema)[:12]} ...)"
            if typ is not None:
                assert schema[col] == typ, f"{dataset}.{col}: {schema[col]} != {typ}"
    for stage in pipeline.STAGES:
        manifest = read_manifest(lake / stage.output)
        assert manifest is not None, stage.name
        assert set(manifest) >= MANIFEST_KEYS, f"{stage.name} manifest lacks {MANIFEST_KEYS - set(manifest)}"
        assert manifest["backend"] == "cpu"
        assert manifest["key"]  # the rerun key, in the manifest

    # Row counts agree across stages where the contracts say they must.
    posts = pd.read_parquet(lake / "posts", columns=["id"])
    mentions = pd.read_parquet(lake / "mentions", columns=["id", "permno", "date"])
    emb = pd.read_parquet(lake / "embeddings", columns=["id"])
    assert read_manifest(lake / "posts")["rows_out"] == len(posts)
    assert set(emb["id"]) == set(mentions["id"])  # one embedding per mentioned post
    assert emb["id"].is_unique and set(mentions["id"]) <= set(posts["id"])

    metrics = _metrics(lake)
    assert {"har", "log_har", "ridge", "enet", "xgboost"} == set(metrics.index.get_level_values("model"))
    assert {"2016", "2017", "all"} == set(metrics.index.get_level_values("test_year"))
    assert np.isfinite(metrics["mse"]).all()

    report = lake / "report" / "report.md"
    assert result.report == report
    md = report.read_text()
    assert "## Pooled out-of-sample results" in md and "| **Overall** |" in md
    assert "## Losses of the volatility literature" in md and "DM p (QLIKE)" in md
    for name in (
        "fig1_volatility.png",
        "fig2_r2_by_year.png",
        "fig3_predicted_vs_realized.png",
        "fig4_ridge_lambda_coefficients.png",
        "fig5_mentions_top_tickers.png",
        "fig6_scatter_matrix.png",
        "fig7_rolling_beta.png",
    ):
        assert (lake / "report" / name).stat().st_size > 10_000, name

    run = json.loads((lake / "run.json").read_text())
    assert run["status"] == "ok" and run["backend"]["name"] == "cpu"
    assert run["cluster"]["kind"] == "local" and run["cluster"]["workers"]["n_workers"] == 2
    assert [s["status"] for s in run["stages"]] == ["ran"] * len(pipeline.STAGES)
    assert run["config"]["embed"]["model"] == "minilm" and "torch" in run["versions"]


def test_second_run_does_no_work(full_run):
    lake = full_run["lake"]
    before = _stamps(lake)
    calls = []
    original = pipeline.run_stage
    try:
        pipeline.run_stage = lambda stage, *a, **kw: (calls.append(stage.name), original(stage, *a, **kw))[1]
        again = pipeline.run_pipeline(load_settings(full_run["config"]), progress=False)
    finally:
        pipeline.run_stage = original
    assert calls == [] and again.ran == [] and again.skipped == list(pipeline.STAGE_NAMES)
    assert _stamps(lake) == before


def test_interrupted_run_resumes_with_identical_results(full_run, tmp_path, monkeypatch):
    """A run killed between features and train (its lake copied without the later stages,
    so the expensive embedding is not redone), then killed inside train, resumes and gives
    the uninterrupted run's results."""
    import shutil

    lake = tmp_path / "lake"
    for stage in ("ingest", "mentions", "embed", "signals", "volatility", "links", "features"):
        folder = pipeline.BY_NAME[stage].output
        shutil.copytree(full_run["lake"] / folder, lake / folder)
    config = yaml.safe_load(full_run["config"].read_text())
    config["lake"] = str(lake)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    settings = load_settings(tmp_path / "run.yaml")
    kept = {d: (lake / d / "_manifest.json").read_text() for d in ("posts", "mentions", "embeddings", "features")}

    # Killed inside the train stage.
    import wsb_gpu.stages.train as train_module

    def crash(*args, **kwargs):
        raise MemoryError("worker killed (simulated)")

    monkeypatch.setattr(train_module, "run", crash)
    with pytest.raises(WsbError, match=r"stage 'train' failed: MemoryError: worker killed"):
        pipeline.run_pipeline(settings, progress=False)
    assert not (lake / "results").exists() and not (lake / "report").exists()
    assert {d: (lake / d / "_manifest.json").read_text() for d in kept} == kept
    run = json.loads((lake / "run.json").read_text())
    assert run["status"] == "failed"
    assert {s["stage"]: s["status"] for s in run["stages"]} == {
        "ingest": "skipped",
        "mentions": "skipped",
        "embed": "skipped",
        "signals": "skipped",
        "volatility": "skipped",
        "links": "skipped",
        "features": "skipped",
        "train": "failed",
        "report": "pending",
    }

    # Rerun: only what is missing runs, and the results equal the uninterrupted run's.
    monkeypatch.undo()
    last = pipeline.run_pipeline(settings, progress=False)
    assert last.ran == ["train", "report"]
    assert {d: (lake / d / "_manifest.json").read_text() for d in kept} == kept
    got, want = _metrics(lake), _metrics(full_run["lake"])
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)
    key = ["permno", "date"]
    pred = pd.read_parquet(lake / "results" / "predictions").sort_values(key).reset_index(drop=True)
    ref = pd.read_parquet(full_run["lake"] / "results" / "predictions").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(pred, ref, check_exact=False, rtol=1e-9)


def test_cli_run_with_from_and_until(full_run, data, tmp_path):
    """The command line drives the same pipeline: stopped after one stage with --until, then
    that stage forced again with --from (here on dask's threaded scheduler)."""
    from wsb_gpu.cli import main

    config = write_config(tmp_path / "run.yaml", tmp_path / "lake", data)
    assert main(["run", "--config", str(config), "--until", "volatility", "--no-progress"]) == 0
    assert read_manifest(tmp_path / "lake" / "volatility") is not None
    assert not (tmp_path / "lake" / "posts").exists()
    rc = main(
        [
            "run",
            "--config",
            str(config),
            "--until",
            "volatility",
            "--from",
            "volatility",
            "--no-progress",
            "--cluster",
            "none",
        ]
    )
    assert rc == 0
    run = json.loads((tmp_path / "lake" / "run.json").read_text())
    assert run["plan"]["forced"] == ["volatility"] and run["stages"][0]["status"] == "ran"


# --- Slurm ------------------------------------------------------------------------------------


def _jobqueue(tmp_path: Path) -> Path:
    profile = {
        "name": f"wsb-pipe-{os.getpid()}",
        "cores": 1,
        "memory": "2GiB",
        "processes": 1,
        "walltime": "00:20:00",
        "log-directory": str(tmp_path / "logs"),
        "local-directory": str(tmp_path / "scratch"),
        "shared-temp-directory": str(tmp_path / "tls"),
    }
    path = tmp_path / "jobqueue.yaml"
    path.write_text(yaml.safe_dump({"jobqueue": {"slurm": profile}}))
    return path


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_slurm_run_gives_the_local_metrics(full_run, data, tmp_path):
    """``wsb-gpu run --cluster slurm``: two worker jobs, the same metrics as the local run."""
    config = write_config(
        tmp_path / "run.yaml",
        tmp_path / "lake",
        data,
        slurm={"jobqueue_file": str(_jobqueue(tmp_path)), "jobs": 2, "wait_timeout": 300},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "wsb_gpu.cli", "run", "--config", str(config), "--cluster", "slurm", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=850,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = json.loads((tmp_path / "lake" / "run.json").read_text())
    assert run["cluster"]["kind"] == "slurm" and run["cluster"]["workers"]["n_workers"] >= 1
    got, want = _metrics(tmp_path / "lake"), _metrics(full_run["lake"])
    # HAR and ridge are exact linear algebra on the same rows: equal up to summation order.
    for model in ("har", "ridge"):
        pd.testing.assert_frame_equal(got.loc[model], want.loc[model], check_exact=False, rtol=1e-8)
    # XGBoost on several workers builds its histograms from differently partitioned data.
    np.testing.assert_allclose(got.loc["xgboost", "mse"], want.loc["xgboost", "mse"], rtol=0.05)
