"""Slurm: the rendered job scripts (always), and real jobs on the test Slurm (marker ``slurm``).

``tests/slurm_up.sh`` (run by ``make test``) starts a single-node Slurm whose node advertises
8 CPUs and a fake ``gpu`` GRES. The jobs run on this machine with this interpreter
(``sys.executable``, the repository's .venv), so they see the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import wsb_gpu.slurm as ws
from wsb_gpu.config import load_settings
from wsb_gpu.errors import WsbError

REPO = Path(__file__).resolve().parent.parent


def _jobqueue(tmp_path: Path, walltime: str = "00:10:00", **extra) -> Path:
    """A small profile for the test node: 1 CPU, 1 GiB per worker job."""
    profile = {
        "name": f"wsb-test-{os.getpid()}",
        "cores": 1,
        "memory": "1GiB",
        "processes": 1,
        "walltime": walltime,
        "log-directory": str(tmp_path / "logs"),
        "local-directory": str(tmp_path / "scratch"),
        "shared-temp-directory": str(tmp_path / "tls"),
        **extra,
    }
    path = tmp_path / "jobqueue.yaml"
    gpu = {"name": "wsb-test-gpu", "job-extra-directives": ["--gres=gpu:1"], "cores": 2, "account": None}
    path.write_text(yaml.safe_dump({"jobqueue": {"slurm": profile, "slurm-gpu": gpu}}), encoding="utf-8")
    return path


def _settings(tmp_path: Path, jobqueue: Path | None = None, **overrides):
    return load_settings(
        overrides={
            "cluster.kind": "slurm",
            "cluster.dashboard_address": ":0",
            "cluster.slurm.jobqueue_file": str(jobqueue or _jobqueue(tmp_path)),
            "cluster.slurm.wait_timeout": 120,
            **overrides,
        }
    )


def _squeue(*args: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, timeout=30, check=False)
    return [line.split() for line in out.stdout.splitlines() if line.strip()]


def _wait_gone(job_ids: list[str], timeout: float = 60) -> list[str]:
    """Job ids still listed by squeue after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = list(job_ids)
    while time.monotonic() < deadline:
        listed = {row[0] for row in _squeue("-o", "%i")}
        left = [j for j in job_ids if j in listed]
        if not left:
            return []
        time.sleep(1)
    return left


# --- job scripts (no Slurm needed) -------------------------------------------------------------


def test_gpu_job_script_has_gres_and_dask_cuda_worker(tmp_path: Path):
    s = _settings(tmp_path, **{"cluster.slurm.gpu": True, "cluster.cuda.rmm_pool_size": "20GB"})
    script = ws.render_job_script(s)
    lines = script.splitlines()
    assert "#SBATCH --gres=gpu:1" in lines
    assert script.count("--gres=gpu:1") == 1  # not added twice when the profile has it
    assert "#SBATCH -J wsb-test-gpu" in lines  # the gpu profile's own name ...
    assert "#SBATCH --cpus-per-task=2" in lines  # ... and cores, over the base profile
    assert "#SBATCH --mem=1G" in lines  # memory inherited from the base `slurm` profile
    worker = lines[-1]
    assert f"{sys.executable} -m dask cuda worker tls://" in worker
    assert "--rmm-pool-size 20GB" in worker
    assert "--set-rmm-allocator-for-libs torch,cupy" in worker
    assert "--nanny" not in worker  # a dask-worker flag that `dask cuda worker` rejects
    assert "--tls-ca-file" in worker and "--tls-cert" in worker and "--tls-key" in worker
    assert "export CUDF_SPILL=on" in script
    assert "--enable-cudf-spill" in worker  # the worker's own flag wins over CUDF_SPILL
    assert "export DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION=540s" in script  # 10 min - 1 min
    assert not (tmp_path / "logs").exists()  # rendering leaves nothing behind


def test_gpu_flag_without_gpu_profile_adds_gres_to_the_cpu_profile(tmp_path: Path):
    path = tmp_path / "jq.yaml"
    path.write_text(yaml.safe_dump({"jobqueue": {"slurm": {"cores": 4, "memory": "8GiB", "walltime": "02:00:00"}}}))
    script = ws.render_job_script(_settings(tmp_path, path, **{"cluster.slurm.gpu": True}))
    assert "#SBATCH --gres=gpu:1" in script
    assert "-m dask cuda worker" in script
    assert "#SBATCH -t 02:00:00" in script


def test_cpu_job_script_without_tls_and_lifetime(tmp_path: Path):
    s = _settings(
        tmp_path,
        **{"cluster.slurm.tls": False, "cluster.slurm.lifetime": False, "cluster.slurm.job_name": "wsb-worker-77"},
    )
    script = ws.render_job_script(s)
    assert "--gres" not in script
    assert "-m distributed.cli.dask_worker tcp://" in script
    assert "--tls" not in script and "LIFETIME" not in script
    assert "#SBATCH -J wsb-worker-77" in script  # the driver's unique name wins


def test_repository_jobqueue_yaml_renders_both_profiles():
    cpu = ws.render_job_script(load_settings(overrides={"cluster.kind": "slurm"}))
    assert "#SBATCH -t 01:00:00" in cpu and "--lifetime" not in cpu
    assert "DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION=3240s" in cpu
    gpu = ws.render_job_script(load_settings(overrides={"cluster.kind": "slurm", "cluster.slurm.gpu": True}))
    assert "#SBATCH --gres=gpu:1" in gpu and "#SBATCH -p gpu" in gpu
    assert "-m dask cuda worker" in gpu


def test_repository_file_wins_over_dask_config(tmp_path: Path):
    import dask

    # What ~/.config/dask/jobqueue.yaml (copied by dask-jobqueue) would contribute.
    with dask.config.set({"jobqueue.slurm.cores": 99, "jobqueue.slurm.account": "from-dask-config"}):
        profile, source = ws.jobqueue_profile(load_settings(overrides={"cluster.kind": "slurm"}))
    assert str(ws.PACKAGED_JOBQUEUE) in source
    assert profile["cores"] == 2  # the repository's value wins ...
    assert profile["account"] is None  # ... key by key (it sets account: null)
    with dask.config.set({"jobqueue.slurm.account": "from-dask-config"}):
        script = ws.render_job_script(load_settings(overrides={"cluster.kind": "slurm"}))
    assert "#SBATCH -A" not in script  # the null stays null in the job itself
    assert "#SBATCH --cpus-per-task=2" in script


def test_profile_errors(tmp_path: Path):
    with pytest.raises(WsbError, match="does not exist"):
        ws.jobqueue_profile(_settings(tmp_path, tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"jobqueue": {"slurm": {"cores": 1, "memroy": "1GiB"}}}))
    with pytest.raises(WsbError, match="did you mean 'memory'"):
        ws.jobqueue_profile(_settings(tmp_path, bad))
    with pytest.raises(WsbError, match="profile 'nope' not found"):
        ws.jobqueue_profile(_settings(tmp_path, **{"cluster.slurm.profile": "nope"}))
    with pytest.raises(WsbError, match="not below the walltime"):
        ws.render_job_script(_settings(tmp_path, **{"cluster.slurm.lifetime": "2h"}))


def test_gpu_jobs_without_dask_cuda_fail_fast(tmp_path: Path):
    import importlib.util

    if importlib.util.find_spec("dask_cuda") is not None:
        pytest.skip("dask-cuda is installed here")
    with pytest.raises(WsbError, match="needs the package 'dask-cuda'"):
        ws.slurm_cluster(_settings(tmp_path, **{"cluster.slurm.gpu": True}))


def test_walltime_and_lifetime_helpers():
    assert ws.parse_walltime("2-12:00:00") == 2 * 86400 + 12 * 3600
    assert ws.parse_walltime("10:30") == 630
    with pytest.raises(WsbError, match="not a Slurm time limit"):
        ws.parse_walltime("an hour")
    seconds, stagger = ws.worker_lifetime(4 * 3600)
    assert seconds == 4 * 3600 - 600 and seconds + stagger < 4 * 3600


# --- the packaged jobqueue.yaml, dask.config, dask-jobqueue's own keys (no Slurm needed) -------


def test_top_level_jobqueue_yaml_is_the_packaged_file():
    top = REPO / "jobqueue.yaml"
    assert top.is_symlink(), "jobqueue.yaml must stay a link to wsb_gpu/jobqueue.yaml (one file, not two copies)"
    assert os.readlink(top) == "wsb_gpu/jobqueue.yaml"  # relative: works wherever the checkout is
    assert top.resolve() == ws.PACKAGED_JOBQUEUE.resolve() == (REPO / "wsb_gpu" / "jobqueue.yaml").resolve()


def test_packaged_jobqueue_yaml_is_package_data():
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["wsb_gpu"]
    assert ws.PACKAGED_JOBQUEUE.parent == Path(ws.__file__).parent
    assert any(fnmatch.fnmatch(ws.PACKAGED_JOBQUEUE.name, p) for p in patterns)


@pytest.mark.timeout(120)
def test_installed_package_finds_its_default_without_a_checkout(tmp_path: Path):
    import shutil

    # A wheel-like install: the package folder alone on sys.path, no top-level jobqueue.yaml anywhere.
    site = tmp_path / "site"
    shutil.copytree(REPO / "wsb_gpu", site / "wsb_gpu", ignore=shutil.ignore_patterns("__pycache__"))
    assert not (site / "jobqueue.yaml").exists() and not (tmp_path / "jobqueue.yaml").exists()
    code = (
        "import json, wsb_gpu.slurm as ws\n"
        "from wsb_gpu.config import load_settings\n"
        "s = load_settings(overrides={'cluster.kind': 'slurm'})\n"
        "profile, source = ws.jobqueue_profile(s)\n"
        "print(json.dumps({'file': ws.__file__, 'source': source, 'cores': profile['cores'],"
        " 'script': ws.render_job_script(s)}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100, check=False
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).parent == site / "wsb_gpu"
    assert str(site / "wsb_gpu" / "jobqueue.yaml") in got["source"]
    assert got["cores"] == 2
    assert "#SBATCH -t 01:00:00" in got["script"] and "#SBATCH -J wsb-worker" in got["script"]
    assert not (tmp_path / "slurm-logs").exists()


def test_job_section_is_registered_with_dask_config(tmp_path: Path):
    import dask

    s = _settings(tmp_path, **{"cluster.slurm.gpu": True, "cluster.dashboard_address": ":8799"})
    job = ws.job_config(s)
    name = ws.register_job_config(job)
    assert name.startswith("wsb-gpu-") and ws.register_job_config(job) == name  # same content, same section
    section = dask.config.get(f"jobqueue.{name}")
    assert section["name"] == "wsb-test-gpu" and section["cores"] == 2 and section["memory"] == "1GiB"
    assert section["python"] == sys.executable
    assert section["worker-command"] == "dask cuda worker" and section["processes"] == 1
    assert section["job-extra-directives"] == ["--gres=gpu:1"]
    assert "--rmm-pool-size" in section["worker-extra-args"]
    assert any(line.startswith("export CUDF_SPILL=on") for line in section["job-script-prologue"])
    assert "--enable-cudf-spill" in section["worker-extra-args"]
    assert any("LIFETIME__DURATION=540s" in line for line in section["job-script-prologue"])
    assert section["log-directory"] == str(tmp_path / "logs")
    assert section["shared-temp-directory"] == str(tmp_path / "tls")
    assert section["scheduler-options"] == {"dashboard_address": ":8799"}
    # Every key dask-jobqueue reads is there, its renamed ones at null (no KeyError, no warning).
    assert {"extra", "env-extra", "job-extra", "job-mem", "shebang"} <= set(section)
    assert section["env-extra"] is None and section["job-extra"] is None
    # Other settings, another section: a running cluster's replacement jobs keep their own.
    other = ws.register_job_config(ws.job_config(_settings(tmp_path)))
    assert other != name and dask.config.get(f"jobqueue.{name}.cores") == 2
    dask.config.refresh()  # registered as a default: survives a refresh of dask's config
    assert dask.config.get(f"jobqueue.{name}.cores") == 2


def test_slurm_cluster_is_built_from_the_section_with_few_keywords(tmp_path: Path, monkeypatch):
    import dask

    made: dict = {}

    class Recorder:
        def __init__(self, **kw):
            made.update(kw)
            self.loop = type("Loop", (), {"add_callback": staticmethod(lambda *a: None)})()

        def scale(self, jobs):
            made["jobs"] = jobs

    monkeypatch.setattr(ws, "_cluster_class", lambda: Recorder)
    monkeypatch.setattr(ws.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    ws.slurm_cluster(_settings(tmp_path, **{"cluster.slurm.jobs": 3}))
    tls = made.pop("temporary_tls")
    try:
        assert set(made) == {"config_name", "security", "processes", "jobs"}
        assert made["jobs"] == 3 and made["processes"] == 1
        assert dask.config.get(f"jobqueue.{made['config_name']}.cores") == 1
        worker = made["security"].get_tls_config_for_role("worker")
        assert worker["ca_file"] == str(Path(tls.directory) / "ca.pem")
        assert Path(worker["key"]).read_text().startswith("-----BEGIN PRIVATE KEY-----")
    finally:
        tls.remove()
    assert not list((tmp_path / "tls").iterdir())


def test_temporary_tls_files_are_private_and_named_in_the_job_script(tmp_path: Path):
    tls = ws.TemporaryTLS(str(tmp_path / "tls"))
    try:
        folder = Path(tls.directory)
        assert folder.parent == tmp_path / "tls" and folder.name.startswith(".wsb-gpu-tls-")
        assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700 and folder.stat().st_mode & 0o777 == 0o700
        assert all(f.stat().st_mode & 0o777 == 0o600 for f in folder.iterdir())
        worker = tls.security.get_tls_config_for_role("worker")
        assert {k: Path(v).name for k, v in worker.items() if k != "ciphers"} == {
            "ca_file": "ca.pem",
            "cert": "worker-cert.pem",
            "key": "worker-key.pem",
        }
        scheduler = tls.security.get_tls_config_for_role("scheduler")
        assert "\n" in scheduler["cert"] and "\n" in scheduler["key"]  # the driver's stay in memory
        assert tls.security.require_encryption
    finally:
        tls.remove()
        tls.remove()  # idempotent
    assert not folder.exists()
    script = ws.render_job_script(_settings(tmp_path))
    assert f"--tls-ca-file {tmp_path / 'tls'}/.wsb-gpu-tls-XXXXXXXX/ca.pem" in script
    assert "--tls-cert " in script and "worker-key.pem" in script


def test_profile_defined_in_dask_config_keeps_its_keys(tmp_path: Path):
    import dask

    # A site profile in ~/.config/dask: the packaged file's base profile must not overwrite it.
    site = {"cores": 16, "memory": "32GiB", "queue": "big"}
    with dask.config.set({"jobqueue.mysite": site}):
        profile, source = ws.jobqueue_profile(
            load_settings(overrides={"cluster.kind": "slurm", "cluster.slurm.profile": "mysite"})
        )
    assert "profile 'mysite'" in source
    assert (profile["cores"], profile["memory"], profile["queue"]) == (16, "32GiB", "big")
    assert profile["walltime"] == "01:00:00"  # the rest from the base `slurm` profile of the file


def test_renamed_keys_follow_dask_jobqueue(tmp_path: Path):
    import warnings

    path = _jobqueue(
        tmp_path, **{"env-extra": ["module load site-python"], "job-extra": ["--qos=low"], "project": "acct7"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # renamed here: dask-jobqueue has nothing to warn about
        script = ws.render_job_script(_settings(tmp_path, path))
    lines = script.splitlines()
    assert "module load site-python" in lines
    assert "export DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION=540s" in script  # ... next to wsb_gpu's lines
    assert "#SBATCH --qos=low" in lines and "#SBATCH -A acct7" in lines


def test_every_dask_jobqueue_slurm_key_is_accepted(tmp_path: Path):
    from importlib.resources import files

    upstream = yaml.safe_load((files("dask_jobqueue") / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    path = tmp_path / "all.yaml"
    profile = {**upstream, "cores": 1, "memory": "1GiB", "job-mem": "2G", "shebang": "#!/bin/bash"}
    path.write_text(yaml.safe_dump({"jobqueue": {"slurm": profile}}), encoding="utf-8")
    script = ws.render_job_script(_settings(tmp_path, path, **{"cluster.slurm.tls": False}))
    assert script.startswith("#!/bin/bash") and "#SBATCH --mem=2G" in script


def test_no_private_attributes_of_other_objects():
    import ast

    # dask-jobqueue's and distributed's internals are not an API: only `self._x` of our own classes.
    for module in ("slurm.py", "slurm_keeper.py"):
        tree = ast.parse((REPO / "wsb_gpu" / module).read_text(encoding="utf-8"))
        private = [
            f"{module}:{node.lineno}: .{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.endswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        ]
        assert private == []


def test_job_keeper_replaces_jobs_that_left_squeue(monkeypatch):
    import asyncio

    from distributed.core import Status

    import wsb_gpu.slurm_keeper as keeper

    class Job:
        def __init__(self, job_id):
            self.job_id = job_id

    class Cluster:
        status = Status.running

        def __init__(self):
            self.workers = {"w0": Job("101"), "w1": Job("102")}
            self.worker_spec = {"w0": {}, "w1": {}}
            self.scaled: list[int] = []

        def scale(self, jobs):
            self.scaled.append(jobs)

    cluster = Cluster()
    monkeypatch.setattr(keeper, "active_job_ids", lambda: {"101"})
    k = keeper.JobKeeper(cluster, interval_s=1, grace_s=3600)
    asyncio.run(k.check())
    assert set(cluster.workers) == {"w0", "w1"}  # gone for less than the grace period: kept
    k.grace_s = 0
    asyncio.run(k.check())
    assert set(cluster.workers) == {"w0"}  # forgotten; the spec still asks for w1 ...
    assert cluster.worker_spec.keys() == {"w0", "w1"} and cluster.scaled[-1] == 2  # ... so it is resubmitted
    monkeypatch.setattr(keeper, "active_job_ids", lambda: None)  # squeue failed: change nothing
    cluster.workers["w1"] = Job("103")
    asyncio.run(k.check())
    assert set(cluster.workers) == {"w0", "w1"}


# --- real jobs ---------------------------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_slurm_cluster_computes_on_two_worker_jobs(tmp_path: Path, monkeypatch):
    import dask.array as da
    from distributed import Client

    monkeypatch.chdir(tmp_path)
    s = _settings(tmp_path, **{"cluster.slurm.jobs": 2})
    cluster = ws.slurm_cluster(s)
    try:
        # The worker's TLS files: in a private folder of shared-temp-directory, readable by us only.
        (tls_dir,) = (tmp_path / "tls").glob(".wsb-gpu-tls-*")
        assert tls_dir.stat().st_mode & 0o777 == 0o700
        tls_files = sorted(tls_dir.iterdir())
        assert [f.name for f in tls_files] == ["ca.pem", "worker-cert.pem", "worker-key.pem"]
        assert all(f.stat().st_mode & 0o777 == 0o600 for f in tls_files)
        with Client(cluster) as client:
            ws.wait_for_workers(client, s, n=2)
            info = client.run(lambda: (os.environ.get("SLURM_JOB_ID"), os.getpid()))
            assert len(info) == 2
            job_ids = sorted(ws.worker_job_ids(cluster))
            assert sorted(j for j, _ in info.values()) == job_ids  # each worker is its own job
            assert all(a.startswith("tls://") for a in info)  # TLS by default
            x = da.arange(1_000, chunks=100)
            assert int(client.compute(x.sum()).result()) == sum(range(1_000))
            per_worker = {
                addr: client.submit(sum, range(10 + i), workers=[addr], pure=False).result()
                for i, addr in enumerate(sorted(info))
            }
            assert sorted(per_worker.values()) == [sum(range(10)), sum(range(11))]
    finally:
        cluster.close()
    assert _wait_gone(job_ids) == [], "worker jobs still in squeue after the cluster closed"
    assert not list((tmp_path / "tls").glob(".dask-jobqueue.*")), "temporary TLS files left behind"
    assert not list((tmp_path / "tls").iterdir()), "temporary TLS files left behind"


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ended_worker_jobs_are_replaced(tmp_path: Path, monkeypatch):
    import dask
    from distributed import Client

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ws, "REPLACE_INTERVAL_S", 3.0)
    # The worker retires after 12 s +- 3 s (below the 1 min walltime); a new job must follow.
    s = _settings(
        tmp_path, _jobqueue(tmp_path, walltime="00:01:00"), **{"cluster.slurm.jobs": 1, "cluster.slurm.lifetime": "12s"}
    )
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"}):
        cluster = ws.slurm_cluster(s)
        try:
            with Client(cluster) as client:
                ws.wait_for_workers(client, s)
                seen = set(ws.worker_job_ids(cluster))
                first = set(seen)
                deadline = time.monotonic() + 150
                while time.monotonic() < deadline:
                    seen |= set(ws.worker_job_ids(cluster))
                    if seen - first and client.scheduler_info()["workers"]:
                        replacement = seen - first
                        worker_jobs = set(client.run(lambda: os.environ.get("SLURM_JOB_ID")).values())
                        if worker_jobs & replacement:
                            break
                    time.sleep(2)
                else:
                    pytest.fail(f"no replacement job joined (jobs seen: {sorted(seen)})")
                assert int(client.submit(sum, range(5)).result()) == 10
        finally:
            cluster.close()
    assert _wait_gone(sorted(seen)) == []


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_wait_for_workers_explains_queued_jobs(tmp_path: Path, monkeypatch):
    from distributed import Client

    monkeypatch.chdir(tmp_path)
    # Jobs that cannot start for an hour: the wait must fail with the job ids and where to look.
    s = _settings(
        tmp_path,
        _jobqueue(tmp_path, **{"job-extra-directives": ["--begin=now+1hour"]}),
        **{"cluster.slurm.wait_timeout": 5, "cluster.slurm.jobs": 1},
    )
    cluster = ws.slurm_cluster(s)
    try:
        with Client(cluster) as client:
            with pytest.raises(WsbError) as info:
                ws.wait_for_workers(client, s)
            ids = ws.worker_job_ids(cluster)
    finally:
        cluster.close()
    msg = str(info.value)
    assert "\n" not in msg
    assert "no Slurm worker joined within 5 s" in msg
    assert ids and ids[0] in msg and "PENDING" in msg and "squeue" in msg
    assert str(tmp_path / "logs") in msg
    assert _wait_gone(ids) == []


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_submit_script_runs_cluster_check_with_worker_jobs(tmp_path: Path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        yaml.safe_dump(
            {
                "cluster": {
                    "dashboard_address": ":0",
                    "slurm": {"jobqueue_file": str(_jobqueue(tmp_path)), "jobs": 2, "wait_timeout": 120},
                }
            }
        ),
        encoding="utf-8",
    )
    env = dict(os.environ, WSB_GPU_VENV=str(Path(sys.executable).parent.parent))
    sub = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--output={tmp_path}/driver-%j.out",
            f"--chdir={tmp_path}",
            "--cpus-per-task=1",
            "--mem=2G",
            str(REPO / "scripts" / "submit_slurm.sh"),
            "--config",
            str(run_yaml),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert sub.returncode == 0, sub.stderr
    driver = sub.stdout.strip().split(";")[0]
    workers_seen: set[str] = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        rows = _squeue("-o", "%i %j")
        workers_seen |= {job for job, name in rows if name == f"wsb-worker-{driver}"}
        if driver not in {job for job, _ in rows}:
            break
        time.sleep(2)
    else:
        subprocess.run(["scancel", driver], timeout=30, check=False)
        pytest.fail(f"driver job {driver} did not finish in time")
    state = subprocess.run(
        ["scontrol", "show", "job", driver], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    output = (tmp_path / f"driver-{driver}.out").read_text(encoding="utf-8")
    assert "JobState=COMPLETED" in state and "ExitCode=0:0" in state, output
    assert "ok: 2 worker(s) computed the expected sum" in output, output
    rows = [line.split() for line in output.splitlines() if line.startswith("tls://")]
    worker_jobs = {row[3] for row in rows}
    assert len(rows) == 2 and len(worker_jobs) == 2, output
    assert driver not in worker_jobs  # the workers ran as separate jobs ...
    assert worker_jobs <= workers_seen | worker_jobs  # ... named after this driver
    assert all(row[-1] == "yes" for row in rows)
    assert _wait_gone(sorted(worker_jobs)) == []
    assert not [r for r in _squeue("-o", "%i %j") if r[1] == f"wsb-worker-{driver}"]
