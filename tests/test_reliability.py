"""Nothing lost, nothing silent: the drills of a hostile user, as tests.

* a stage never replaces what it did not write (``--out`` of the inputs' folder, of a user's
  folder, of a file, of ``.``), and the next run cleans up after a killed one;
* inputs are checked at the door (a dump that is not zstd, a dump that is mostly garbage, CRSP
  dates in an unknown format, reversed name periods) with one line each;
* a bad configuration fails before anything runs, one line per problem;
* operating-system errors are one line;
* one writer per lake and per output folder; a dead writer's lock is taken over;
* SIGINT and SIGTERM stop a command within seconds and leave no process behind;
* fingerprints follow content: a same-size edit with the modification time put back is seen,
  a touch that changes nothing is not.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from wsb_gpu.cli import main
from wsb_gpu.errors import WsbError
from wsb_gpu.fingerprint import fingerprint
from wsb_gpu.lake import check_target, lock_path
from wsb_gpu.manifest import read_manifest
from wsb_gpu.stages import run_stage

T0 = 1_611_000_000


def line(i: int, text: str = "GME to the moon") -> bytes:
    return json.dumps({"id": f"c{i}", "created_utc": T0 + i, "body": text, "author": "a"}).encode()


def dump(path: Path, n: int = 20, extra: bytes = b"") -> Path:
    data = b"\n".join(line(i) for i in range(n)) + b"\n" + extra
    path.write_bytes(zstandard.ZstdCompressor().compress(data))
    return path


def crsp_csv(path: Path, date_format: str = "%Y%m%d", days: int = 80) -> Path:
    import pandas as pd

    rows = ["PERMNO,date,RET,RETX,DLRET"]
    for permno in (10001, 10002):
        for k, d in enumerate(pd.bdate_range("2019-01-02", periods=days)):
            rows.append(f"{permno},{d.strftime(date_format)},{0.01 * ((k % 7) - 3):.4f},,")
    path.write_text("\n".join(rows) + "\n")
    return path


def run_cli(capsys, argv: list[str]) -> tuple[int, list[str], str]:
    """Exit code, the non-empty stderr lines (without the ``[stage] → out`` start line), stdout."""
    rc = main(["--backend", "cpu", "--cluster", "none", *argv])
    out = capsys.readouterr()
    return rc, [ln for ln in out.err.splitlines() if ln.strip() and not ln.startswith("[")], out.out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1. a stage never deletes what it did not write ------------------------------------------------


def test_out_holding_the_inputs_is_refused_and_nothing_is_touched(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    subs, coms = dump(data / "wallstreetbets_submissions.zst"), dump(data / "wallstreetbets_comments.zst")
    (data / "notes.txt").write_text("mine")
    before = snapshot(data)
    rc, err, _ = run_cli(capsys, ["ingest", "--submissions", str(subs), "--comments", str(coms), "--out", str(data)])
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "holds the stage's own input" in err[0] and "choose an empty or new folder" in err[0]
    assert snapshot(data) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize("what", ["user folder", "file", "dot", "other stage"])
def test_out_that_is_not_ours_is_refused(tmp_path, capsys, monkeypatch, what):
    crsp = crsp_csv(tmp_path / "crsp.csv")
    if what == "user folder":
        out = tmp_path / "mydocs"
        out.mkdir()
        (out / "thesis.txt").write_text("three years of work")
    elif what == "file":
        out = tmp_path / "afile"
        out.write_text("precious")
    elif what == "dot":
        monkeypatch.chdir(tmp_path / ".")
        out = Path(".")
    else:
        out = tmp_path / "posts"
        run_stage("ingest", out, comments=dump(tmp_path / "c.zst"))
    before = snapshot(tmp_path)
    rc, err, _ = run_cli(capsys, ["volatility", "--crsp", str(crsp), "--out", str(out)])
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --out ")
    assert "choose an empty or new folder, or delete it yourself" in err[0]
    assert snapshot(tmp_path) == before  # not one byte changed, no hidden .tmp- or .old- folder left


def test_replacing_its_own_dataset_and_cleaning_up_after_a_killed_run(tmp_path):
    crsp = crsp_csv(tmp_path / "crsp.csv")
    out = tmp_path / "vol"
    first = run_stage("volatility", out, crsp=crsp)
    # What a run killed mid-write leaves: a hidden temporary folder beside the dataset.
    stale = tmp_path / ".vol.tmp-deadbeef"
    stale.mkdir()
    (stale / "part.00000.parquet").write_bytes(b"half a file")
    again = run_stage("volatility", out, crsp=crsp)  # its own dataset: may be replaced
    assert not stale.exists()
    assert again["digest"] == first["digest"] and again["stage"] == "volatility"
    assert check_target(tmp_path / "new", "volatility") == (tmp_path / "new").resolve()


# --- 2. inputs are checked at the door ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (gzip.compress(b'{"id": "a", "created_utc": 1}\n'), "it starts like gzip"),
        (b'{"id": "a", "created_utc": 1}\n', "plain NDJSON named .zst"),
        (b"", "is empty"),
        (b"hello, this is not json\n", "neither a zstd file nor NDJSON"),
    ],
)
def test_a_dump_that_is_not_zstd_fails_at_the_door(tmp_path, capsys, content, needle):
    bad = tmp_path / "wallstreetbets_comments.zst"
    bad.write_bytes(content)
    rc, err, _ = run_cli(capsys, ["ingest", "--comments", str(bad), "--out", str(tmp_path / "posts")])
    assert rc == 2 and len(err) == 1, err
    assert needle in err[0] and "wallstreetbets_comments.zst" in err[0]
    assert not (tmp_path / "posts").exists()


def test_a_mostly_malformed_dump_fails_with_the_counts_and_the_limit_is_a_setting(tmp_path, capsys):
    garbage = b"\n".join(b'{"broken": ' for _ in range(30)) + b"\n"
    bad = dump(tmp_path / "wallstreetbets_comments.zst", n=20, extra=garbage)
    rc, err, _ = run_cli(capsys, ["ingest", "--comments", str(bad), "--out", str(tmp_path / "posts")])
    assert rc == 2 and len(err) == 1
    assert "30 of the 50 lines" in err[0] and "bad_json 30" in err[0] and "ingest.max_malformed" in err[0]
    assert not (tmp_path / "posts").exists()
    config = tmp_path / "lenient.yaml"
    config.write_text("ingest: {max_malformed: 0.9}\n")
    rc, _, _ = run_cli(
        capsys, ["--config", str(config), "ingest", "--comments", str(bad), "--out", str(tmp_path / "posts")]
    )
    assert rc == 0 and read_manifest(tmp_path / "posts")["files"][bad.name]["malformed"]["bad_json"] == 30


def test_bad_crsp_dates_fail_in_one_line_before_any_task(tmp_path):
    """On a real LocalCluster: the sample parsed on the driver fails first, so no worker
    logs a multi-line 'Compute Failed'."""
    crsp = crsp_csv(tmp_path / "crsp.csv", date_format="%m/%d/%Y")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsb_gpu.cli",
            "--backend",
            "cpu",
            "--cluster",
            "local",
            "--workers",
            "1",
            "volatility",
            "--crsp",
            str(crsp),
            "--out",
            str(tmp_path / "vol"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "01/02/2019" in lines[0] and "Traceback" not in proc.stderr
    assert "Compute Failed" not in proc.stderr


def test_reversed_name_periods_are_counted_and_reported(tmp_path, capsys):
    posts = tmp_path / "posts"
    run_stage("ingest", posts, comments=dump(tmp_path / "c.zst"))
    names = tmp_path / "stocknames.csv"
    names.write_text("PERMNO,TICKER,NAMEDT,NAMEENDT\n1,GME,2019-01-01,2025-12-31\n2,AMC,2024-01-01,2020-01-01\n")
    rc, err, _ = run_cli(
        capsys,
        ["mentions", "--posts", str(posts), "--tickers", str(names), "--out", str(tmp_path / "m"), "--no-progress"],
    )
    assert rc == 0
    assert any("1 name-history row(s)" in ln and "NAMEDT after NAMEENDT" in ln and "dropped" in ln for ln in err)
    dropped = read_manifest(tmp_path / "m")["names_dropped"]["namedt_after_nameendt"]
    assert dropped["rows"] == 1 and dropped["examples"] == ["PERMNO 2 AMC 2024-01-01 > 2020-01-01"]


# --- 3. the configuration is validated before anything runs ---------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        ("cluster: {n_workers: two}\n", ["cluster.n_workers", "'two'", "integer"]),
        ("embed: {max_length: sixty}\n", ["embed.max_length", "'sixty'"]),
        ("train: {train_years: -3}\n", ["train.train_years", "-3", "greater than or equal to 1"]),
        ("volatility: {format: yahoo}\n", ["volatility.format", "choose one of: crsp, ohlcv"]),
    ],
)
def test_a_mistyped_setting_fails_before_any_stage(tmp_path, capsys, yaml_text, needles):
    config = tmp_path / "run.yaml"
    config.write_text(f"lake: {tmp_path / 'lake'}\n" + yaml_text)
    rc, err, _ = run_cli(capsys, ["--config", str(config), "run", "--no-progress"])
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: setting '")
    assert all(n in err[0] for n in needles), err[0]
    assert str(config) in err[0]  # where the value came from
    assert not (tmp_path / "lake").exists()


def test_several_problems_are_one_line_each_and_a_missing_input_fails_first(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("cluster: {n_workers: two}\nembed: {max_length: sixty}\n")
    rc, err, _ = run_cli(capsys, ["--config", str(config), "info"])
    assert rc == 2 and len(err) == 2 and all(e.startswith("error: setting '") for e in err)
    config.write_text(f"lake: {tmp_path / 'lake'}\ninputs: {{crsp: {tmp_path / 'nope.csv'}}}\n")
    rc, err, _ = run_cli(capsys, ["--config", str(config), "run", "--until", "volatility", "--no-progress"])
    assert rc == 2 and len(err) == 1 and "does not exist" in err[0] and "inputs.crsp" in err[0]
    assert not (tmp_path / "lake").exists()


# --- 4. operating-system errors are messages, not tracebacks ----------------------------------------


def test_a_path_through_a_file_is_one_line(tmp_path, capsys):
    crsp = crsp_csv(tmp_path / "crsp.csv")
    rc, err, _ = run_cli(capsys, ["volatility", "--crsp", str(crsp), "--out", str(crsp / "vol")])
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert f"goes through '{crsp}', which is a file" in err[0] and "a folder is needed" in err[0]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_full_and_read_only_are_one_line_and_leave_nothing(tmp_path, capsys, monkeypatch, code):
    import pyarrow.parquet as pq

    crsp = crsp_csv(tmp_path / "crsp.csv")

    def failing_write(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "vol"))

    monkeypatch.setattr(pq, "write_table", failing_write)  # what a full or read-only disk does
    rc, err, _ = run_cli(capsys, ["volatility", "--crsp", str(crsp), "--out", str(tmp_path / "vol")])
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ")
    assert errno.errorcode[code] in err[0] and str(tmp_path / "vol") in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crsp.csv"]  # nothing half-written


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_line(tmp_path, capsys):
    crsp = crsp_csv(tmp_path / "crsp.csv")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err, _ = run_cli(capsys, ["volatility", "--crsp", str(crsp), "--out", str(ro / "vol")])
    finally:
        ro.chmod(0o755)
    assert rc == 1 and len(err) == 1 and "EACCES" in err[0]


# --- 5. one writer per lake ---------------------------------------------------------------------------


class Writer:
    """Another process holding the lock of ``target`` (a writer still at work) until closed."""

    def __init__(self, target: Path, what: str) -> None:
        code = (
            f"import sys; from wsb_gpu.lake import lock\n"
            f"with lock({str(target)!r}, {what!r}):\n    print('locked', flush=True); sys.stdin.read()"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "locked"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_a_second_writer_is_refused_and_the_first_output_stays_whole(tmp_path, capsys):
    crsp = crsp_csv(tmp_path / "crsp.csv")
    out = tmp_path / "vol"
    lone = run_stage("volatility", out, crsp=crsp)
    before = snapshot(out)
    first = Writer(out, "output folder")  # the first writer is still running
    try:
        rc, err, _ = run_cli(capsys, ["volatility", "--crsp", str(crsp), "--out", str(out)])
        assert rc == 2 and len(err) == 1
        assert f"pid {first.proc.pid}" in err[0] and "is being written by" in err[0] and "since" in err[0]
        assert snapshot(out) == before
    finally:
        first.close()
    assert read_manifest(out)["digest"] == lone["digest"]


def test_two_runs_on_one_lake(tmp_path, capsys):
    lake = tmp_path / "lake"
    config = tmp_path / "run.yaml"
    config.write_text(f"lake: {lake}\ninputs: {{crsp: {crsp_csv(tmp_path / 'crsp.csv')}}}\n")
    first = Writer(lake, "lake")
    try:
        rc, err, _ = run_cli(capsys, ["--config", str(config), "run", "--until", "volatility", "--no-progress"])
    finally:
        first.close()
    assert rc == 2 and len(err) == 1 and f"lake '{lake}' is being written by pid {first.proc.pid}" in err[0]
    assert not (lake / "volatility").exists()
    rc, _, _ = run_cli(capsys, ["--config", str(config), "run", "--until", "volatility", "--no-progress"])
    assert rc == 0 and read_manifest(lake / "volatility") is not None


def test_the_lock_of_a_dead_writer_is_taken_over_with_a_message(tmp_path, capsys):
    out = tmp_path / "vol"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    holder = {"pid": pid, "host": os.uname().nodename, "started_at": "2026-01-01T00:00:00+00:00", "command": "x"}
    lock_path(out).write_text(json.dumps(holder))  # what a SIGKILLed writer leaves: the file, not the lock
    rc, err, _ = run_cli(capsys, ["volatility", "--crsp", str(crsp_csv(tmp_path / "crsp.csv")), "--out", str(out)])
    assert rc == 0
    assert any(f"taking over the lock of {out}, left by pid {pid}" in ln for ln in err)
    assert not lock_path(out).exists()  # released and removed at the end


# --- 6. Ctrl-C and SIGTERM stop within seconds ---------------------------------------------------------


def _embed_inputs(tmp_path: Path, n: int) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    words = [
        "GME",
        "AMC",
        "moon",
        "rocket",
        "calls",
        "puts",
        "hold",
        "buy",
        "sell",
        "squeeze",
        "earnings",
        "tendies",
        "diamond",
        "hands",
    ]
    ids = [f"p{i}" for i in range(n)]
    posts = pd.DataFrame(
        {
            "id": ids,
            "kind": "comment",
            "created_utc": np.int64(T0),
            "text": [" ".join(rng.choice(words, size=int(rng.integers(10, 40)))) for _ in range(n)],
        }
    )
    posts["date"] = pd.to_datetime(posts["created_utc"], unit="s").dt.date
    posts["author"], posts["source"] = "a", "c.zst"
    (tmp_path / "posts").mkdir()
    posts[["id", "kind", "created_utc", "date", "author", "text", "source"]].to_parquet(
        tmp_path / "posts" / "part.0.parquet", index=False
    )
    mentions = posts[["id", "kind", "created_utc", "date"]].assign(ticker="GME", permno=np.int64(1), n_occ=np.int32(1))
    (tmp_path / "mentions").mkdir()
    mentions.to_parquet(tmp_path / "mentions" / "part.0.parquet", index=False)
    return tmp_path / "posts", tmp_path / "mentions"


def _group_processes(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pgid=,stat=,args="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln.split() and ln.split()[0] == str(pgid)]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("sig", "target", "code"), [(signal.SIGINT, "group", 130), (signal.SIGTERM, "driver", 143)])
def test_interrupt_during_embed_stops_within_seconds(tmp_path, sig, target, code):
    posts, mentions = _embed_inputs(tmp_path, 6000)
    out = tmp_path / "emb"
    argv = [
        sys.executable,
        "-m",
        "wsb_gpu.cli",
        "--backend",
        "cpu",
        "--cluster",
        "local",
        "--workers",
        "2",
        "embed",
        "--posts",
        str(posts),
        "--mentions",
        str(mentions),
        "--model",
        "minilm",
        "--local-files-only",
        "--precision",
        "fp32",
        "--partition-size",
        "500",
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # until the first shard is written: the embedding is under way
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    pgid = os.getpgid(proc.pid)
    t0 = time.monotonic()
    if target == "group":
        os.killpg(pgid, sig)  # what a terminal's Ctrl-C does
    else:
        os.kill(proc.pid, sig)  # what scancel or a Slurm time limit does
    _, err = proc.communicate(timeout=60)
    seconds = time.monotonic() - t0
    assert proc.returncode == code, err[-3000:]
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    time.sleep(0.5)
    assert _group_processes(pgid) == [], "processes of the run are left"
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert last.startswith("interrupted during embed; ") and "shards are kept" in last and "rerun" in last
    assert "Traceback" not in err
    assert read_manifest(out) is None and (out / "_embed_state.json").is_file()
    # ... and the same command resumes.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_manifest(out)["rows_out"] == 6000


# --- 7. fingerprints follow content ---------------------------------------------------------------------


def test_same_size_edit_with_mtime_restored_is_seen_and_touch_is_not(tmp_path):
    f = tmp_path / "stocknames.csv"
    f.write_text("PERMNO,TICKER,NAMEDT,NAMEENDT\n1,GME,2019-01-01,2025-12-31\n")
    a = fingerprint(f)
    os.utime(f, (time.time() + 100, time.time() + 100))  # touched, not changed
    assert fingerprint(f)["digest"] == a["digest"]
    st = os.stat(f)
    with open(f, "r+") as fh:
        fh.seek(len("PERMNO,TICKER,NAMEDT,NAMEENDT\n1,"))
        fh.write("AMC")  # same size ...
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the modification time put back
    assert os.stat(f).st_size == st.st_size and os.stat(f).st_mtime_ns == st.st_mtime_ns
    assert fingerprint(f)["digest"] != a["digest"]


def test_a_folder_without_manifest_is_hashed_by_content(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    (d / "part.0.parquet").write_bytes(b"abc")
    a = fingerprint(d)["digest"]
    (d / "part.0.parquet").write_bytes(b"abd")
    assert fingerprint(d)["digest"] != a


def test_stage_errors_do_not_leak_as_tracebacks():
    with pytest.raises(WsbError, match="unknown setting 'volatility.nope'"):
        run_stage("volatility", "/tmp/never", nope="x")
    with pytest.raises(WsbError, match="needs --crsp"):
        run_stage("volatility", "/tmp/never")
