"""The pipeline's machinery (skip rule, --force/--from/--until, failures, concurrency, run.json)
with stand-in stages, so that it is tested in a second; tests/test_pipeline.py runs the real
stages end to end."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import pandas as pd
import pytest

from wsb_gpu import pipeline
from wsb_gpu.config import load_settings
from wsb_gpu.errors import WsbError
from wsb_gpu.lake import atomic_dataset
from wsb_gpu.manifest import read_manifest, write_manifest


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Stand-in runners: each writes a one-row Parquet dataset with a manifest (the report a
    report.md); records every call. tests/test_pipeline.py runs the real stages."""
    calls: list[str] = []
    both_running = threading.Event()
    vol_started = threading.Event()
    state = {"fail": None, "wait_for_volatility": False}

    def runner(stage, out, *, inputs, params, backend, client, progress):
        name = stage.name
        calls.append(name)
        if name == "volatility":
            vol_started.set()
        # Proves volatility runs beside ingest: wait (bounded) until it has started.
        if name == "ingest" and state["wait_for_volatility"] and vol_started.wait(timeout=10):
            both_running.set()
        if state["fail"] == name:
            raise RuntimeError(f"boom in {name}")
        with atomic_dataset(out) as tmp:
            if name == "report":
                (tmp / "report.md").write_text("# report\n")
            if name == "train":
                pd.DataFrame(
                    {
                        "model": ["har", "ridge", "har", "ridge"],
                        "test_year": ["2019", "2019", "all", "all"],
                        "n_train": 10,
                        "n_test": 5,
                        "mse": [2.0, 1.0, 2.0, 1.0],
                        "r2": [0.1, 0.2, 0.1, 0.2],
                        "dm_pvalue": [None, 0.01, None, 0.01],
                    }
                ).to_csv(tmp / "metrics.csv", index=False)
            pd.DataFrame({"x": [1]}).to_parquet(tmp / "part.0.parquet")
            return write_manifest(
                tmp,
                stage=name,
                # What the runner records: the rerun key, and a digest of new data each time.
                key=stage.rerun_key(inputs, params, backend.name),
                digest=uuid.uuid4().hex,
                inputs={},
                params={},
                rows_in=10,
                rows_out=5,
                seconds=0.5,
                backend=backend.name,
                schema={"x": "int64"},
                bytes_in=2_000_000,
            )

    monkeypatch.setattr(pipeline, "run_stage", runner)
    # Stand-in stages have no door checks of their raw inputs either.
    monkeypatch.setattr(pipeline.Stage, "check_inputs", lambda self, inputs, params: None)
    inputs = {}
    for key in ("submissions", "comments", "tickers", "crsp"):
        p = tmp_path / f"{key}.bin"
        p.write_text(key)
        inputs[f"inputs.{key}"] = str(p)
    settings = load_settings(
        overrides={"backend": "cpu", "cluster.kind": "none", "lake": str(tmp_path / "lake"), **inputs}
    )
    return {
        "calls": calls,
        "settings": settings,
        "lake": tmp_path / "lake",
        "state": state,
        "both_running": both_running,
        "inputs": inputs,
    }


def test_full_run_then_nothing_to_do(fake):
    fake["state"]["wait_for_volatility"] = True
    res = pipeline.run_pipeline(fake["settings"], progress=False)
    assert res.ran == list(pipeline.STAGE_NAMES)
    assert fake["both_running"].is_set(), "volatility did not run beside ingest"
    lake = fake["lake"]
    for stage in pipeline.STAGES:
        assert read_manifest(lake / stage.output) is not None
        assert read_manifest(lake / stage.output)["key"]
    assert res.report == lake / "report" / "report.md" and res.report.is_file()
    run = json.loads((lake / "run.json").read_text())
    assert run["status"] == "ok" and [s["stage"] for s in run["stages"]] == list(pipeline.STAGE_NAMES)
    ingest = run["stages"][0]
    assert ingest["throughput"] == pytest.approx(4.0) and ingest["unit"] == "MB/s"  # 2 MB in 0.5 s
    assert run["config"]["backend"] == "cpu" and "dask" in run["versions"] and run["hardware"]["cpu_count"]

    fake["calls"].clear()
    res2 = pipeline.run_pipeline(fake["settings"], progress=False)
    assert fake["calls"] == [] and res2.ran == [] and res2.skipped == list(pipeline.STAGE_NAMES)


def test_from_until_force_and_changed_input(fake):
    s = fake["settings"]
    res = pipeline.run_pipeline(s, until_stage="embed", progress=False)
    assert res.ran == ["ingest", "mentions", "embed"]
    assert not (fake["lake"] / "volatility").exists()

    fake["calls"].clear()
    res = pipeline.run_pipeline(s, progress=False)
    assert sorted(fake["calls"]) == ["features", "links", "report", "signals", "train", "volatility"]
    assert res.skipped == ["ingest", "mentions", "embed"]

    fake["calls"].clear()
    res = pipeline.run_pipeline(s, from_stage="embed", progress=False)
    assert res.ran == ["embed", "features", "train", "report"]

    # Touching an input without changing it reruns nothing (fingerprints follow content) ...
    crsp = fake["inputs"]["inputs.crsp"]
    os.utime(crsp, (time.time() + 5, time.time() + 5))
    assert pipeline.run_pipeline(s, progress=False).ran == []
    # ... a changed input file reruns its stage and everything downstream, nothing else,
    # also when the edit keeps the size and the modification time (touch -r).
    st = os.stat(crsp)
    with open(crsp, "r+") as f:
        f.write("CRSP")
    os.utime(crsp, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = pipeline.run_pipeline(s, progress=False)
    assert res.ran == ["volatility", "links", "features", "train", "report"]

    # Changed parameters of a stage rerun it and its descendants.
    res = pipeline.run_pipeline(s.replace(**{"train.target": "y_5"}), progress=False)
    assert res.ran == ["train", "report"]

    res = pipeline.run_pipeline(s, force=True, until_stage="mentions", progress=False)
    assert res.ran == ["ingest", "mentions"]


def test_failed_stage_names_itself_keeps_earlier_outputs_and_resumes(fake):
    fake["state"]["fail"] = "train"
    with pytest.raises(WsbError, match=r"stage 'train' failed: RuntimeError: boom in train .*intact.*resume"):
        pipeline.run_pipeline(fake["settings"], progress=False)
    lake = fake["lake"]
    written = {
        st: read_manifest(lake / pipeline.BY_NAME[st].output)["written_at"]
        for st in ("ingest", "mentions", "embed", "volatility", "features")
    }
    assert not (lake / "results").exists() and not (lake / "report").exists()
    run = json.loads((lake / "run.json").read_text())
    assert run["status"] == "failed"
    assert {s["stage"]: s["status"] for s in run["stages"]}["train"] == "failed"

    fake["state"]["fail"] = None
    fake["calls"].clear()
    res = pipeline.run_pipeline(fake["settings"], progress=False)
    assert fake["calls"] == ["train", "report"] and res.ran == ["train", "report"]
    for st, stamp in written.items():
        assert read_manifest(lake / pipeline.BY_NAME[st].output)["written_at"] == stamp


def test_a_failure_beside_a_running_stage_lets_it_finish(fake):
    fake["state"]["fail"] = "volatility"
    with pytest.raises(WsbError, match="stage 'volatility' failed"):
        pipeline.run_pipeline(fake["settings"], progress=False)
    # ingest ran beside it and finished; nothing downstream of the failure started.
    assert read_manifest(fake["lake"] / "posts") is not None
    assert "features" not in fake["calls"]


def test_plan_errors_and_missing_inputs(fake):
    with pytest.raises(WsbError, match="unknown stage 'trian'"):
        pipeline.plan(until_stage="trian")
    with pytest.raises(WsbError, match="--from embed is not needed for --until volatility"):
        pipeline.plan(from_stage="embed", until_stage="volatility")
    settings = fake["settings"].replace(**{"inputs.crsp": ""})
    with pytest.raises(WsbError, match=r"needs the input file 'inputs.crsp'.*--crsp PATH"):
        pipeline.stage_inputs(settings, fake["lake"], pipeline.BY_NAME["volatility"])


def test_a_speed_only_setting_reruns_nothing_an_output_setting_reruns_downstream(fake):
    """One rerun key: the settings a stage declares output-neutral are not in it."""
    s = fake["settings"]
    assert pipeline.run_pipeline(s, progress=False).ran == list(pipeline.STAGE_NAMES)
    for speed_only in ({"embed.token_budget": 999}, {"embed.local_files_only": True}, {"ingest.window": 3}):
        assert pipeline.run_pipeline(s.replace(**speed_only), progress=False).ran == [], speed_only
    res = pipeline.run_pipeline(s.replace(**{"embed.token_budget": 999, "embed.max_length": 33}), progress=False)
    assert res.ran == ["embed", "features", "train", "report"]
