"""The cluster factory and ``cluster-check`` on real local Dask clusters."""

from __future__ import annotations

import re
from pathlib import Path

import dask
import dask.array as da
import pytest

from wsb_gpu.cluster import make_cluster, session
from wsb_gpu.config import load_settings
from wsb_gpu.diagnose import check_cluster, table
from wsb_gpu.errors import WsbError


def _local(**extra):
    return load_settings(
        overrides={
            "cluster.kind": "local",
            "cluster.n_workers": 2,
            "cluster.threads_per_worker": 1,
            "cluster.memory_limit": "1GiB",
            "cluster.dashboard_address": ":0",
            **extra,
        }
    )


def test_none_is_the_threaded_scheduler():
    s = load_settings(overrides={"cluster.kind": "none"})
    assert make_cluster(s) is None
    with session(s) as client:
        assert client is None
        assert int(da.arange(10, chunks=3).sum().compute()) == 45


@pytest.mark.timeout(180)
def test_local_cluster_check_computes_on_two_workers(tmp_path: Path):
    report = tmp_path / "profile.html"
    text = check_cluster(_local(profile=str(report)), timeout=120)
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("tcp://")]
    assert len(rows) == 2, text
    expected = sum(range(1_000_000))  # the reference, computed here in plain Python
    pids = set()
    for row in rows:
        cols = row.split()
        assert str(expected) in cols and cols[-1] == "yes", row
        assert cols[4] == "1"  # threads
        assert "1.00 GiB" in row  # memory limit
        pids.add(cols[2])
    assert len(pids) == 2  # two worker processes, not one
    assert lines[-1].startswith("ok: 2 worker(s)")
    assert report.is_file() and report.stat().st_size > 1000  # --profile wrote the report


@pytest.mark.timeout(180)
def test_session_computes_and_closes():
    with session(_local(), quiet=True) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        assert int(da.arange(100, chunks=10).sum().compute()) == 4950  # on the client by default
        cluster = client.cluster
    assert cluster.status.name == "closed"
    assert client.status == "closed"


def test_cuda_cluster_without_dask_cuda_names_the_install():
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        with pytest.raises(WsbError, match="dask-cuda.*install it with"):
            make_cluster(load_settings(overrides={"cluster.kind": "cuda"}))
    else:
        pytest.skip("dask-cuda is installed")


def test_table_alignment():
    text = table([["x", 1, "yes"], ["longer", 22, "NO"]], ["a", "b", "ok"])
    widths = {len(re.match(r"\S+\s+", line).group(0)) for line in text.splitlines()}
    assert widths == {len("longer  ")}


def test_dask_config_untouched_by_session():
    before = dask.config.get("scheduler", None)
    with session(load_settings(overrides={"cluster.kind": "none"})):
        pass
    assert dask.config.get("scheduler", None) == before


def test_small_inputs_run_in_process_unless_a_cluster_is_asked_for(tmp_path: Path):
    """cluster.in_process_below: a single-stage command on small inputs skips the default
    LocalCluster; --cluster, --workers, a config file naming the kind, --profile keep it."""
    from wsb_gpu.cluster import in_process, input_bytes

    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "part.0.parquet").write_bytes(b"x" * 1000)
    (tmp_path / "f.csv").write_bytes(b"y" * 500)
    inputs = {"a": tmp_path / "ds", "b": tmp_path / "f.csv", "c": None, "d": tmp_path / "missing"}
    assert input_bytes(inputs) == 1500
    assert in_process(load_settings(), inputs) == 1500
    assert in_process(load_settings(overrides={"cluster.in_process_below": "1KiB"}), inputs) is None  # too big
    assert in_process(load_settings(overrides={"cluster.in_process_below": 0}), inputs) is None
    assert in_process(load_settings(overrides={"cluster.kind": "local"}), inputs) is None  # --cluster local
    assert in_process(load_settings(overrides={"cluster.n_workers": 2}), inputs) is None  # --workers 2
    assert in_process(load_settings(overrides={"profile": str(tmp_path / "p.html")}), inputs) is None
    config = tmp_path / "run.yaml"
    config.write_text("cluster:\n  kind: local\n")
    assert in_process(load_settings(config), inputs) is None
    config.write_text("cluster:\n  threads_per_worker: 1\n")
    assert in_process(load_settings(config), inputs) == 1500
    assert in_process(load_settings(overrides={"cluster.kind": "none"}), inputs) is None  # already in process
    with pytest.raises(WsbError, match="256MiB"):
        load_settings(overrides={"cluster.in_process_below": "lots"})


def test_stage_command_on_small_inputs_says_it_runs_in_process(tmp_path: Path, capsys):
    from wsb_gpu.cli import main

    csv = tmp_path / "crsp.csv"
    csv.write_text("PERMNO,date,RET\n" + "".join(f"10001,2020-01-{d:02d},0.01\n" for d in range(1, 29)))
    rc = main(["--backend", "cpu", "volatility", "--crsp", str(csv), "--out", str(tmp_path / "vol"), "--progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "of input: in this process" in err and "Dask dashboard" not in err


def test_only_stages_that_release_the_gil_run_in_process():
    """VADER scores posts in Python: `wsb-gpu signals` keeps one process per core."""
    from wsb_gpu.stages import STAGES

    assert [s.name for s in STAGES if s.holds_gil] == ["signals"]
