"""The whole run: ingest → mentions → embed, volatility beside them, features → train → report.

:func:`run_pipeline` resolves the backend once, opens one Dask client
(:func:`wsb_gpu.cluster.session`) for the whole run, and calls the stage entry points
(the exact functions the stage commands call) with their section of the settings. Each
stage writes one dataset of the run directory (the "lake")::

    LAKE/posts/  mentions/  embeddings/  volatility/  features/  results/  report/  run.json

**Rerun rule.** After a stage succeeds the pipeline writes ``_pipeline.json`` beside the
stage's own ``_manifest.json``: a key hashed from the stage's parameters, the backend, the
fingerprints (path, size, mtime) of its raw input files and the run ids of its upstream
datasets, a fresh run id, and the SHA-256 of the manifest. On the next run a stage whose
output is complete, whose manifest is the one recorded and whose key is unchanged is
skipped. A stage that runs gets a new run id, so every stage downstream of it sees a
changed key and runs too. ``force`` reruns
everything selected, ``from_stage`` reruns one stage and everything downstream of it,
``until_stage`` stops after a stage (running only what it needs).

**Failure.** Stages write atomically, so a stage that fails leaves nothing half-written and
every earlier dataset intact; the run raises a :class:`~wsb_gpu.errors.WsbError` that names
the stage and the cause, and the same command resumes from there.

**Concurrency.** Stages are started as soon as their upstream stages are done, up to two at
a time on the driver (each one submits its work to the shared client), so the volatility
panel, which needs no text, is built while ingest, mentions and embed run.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import hashlib
import importlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsb_gpu.config import Settings
from wsb_gpu.errors import WsbError
from wsb_gpu.lake import MANIFEST, file_fingerprint, read_manifest

PIPELINE_FILE = "_pipeline.json"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Stage:
    """One node of the stage graph.

    Attributes
    ----------
    name
        Stage name (also the settings section holding its parameters, if any).
    dataset
        Folder of the lake the stage writes.
    upstream
        Stages whose datasets it reads.
    inputs
        Keys of ``settings.inputs`` (raw files) it reads.
    unit
        Throughput unit of the summary table: ``MB/s``, ``posts/s`` or ``rows/s``.
    """

    name: str
    dataset: str
    upstream: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    unit: str = "rows/s"


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "posts", (), ("submissions", "comments"), "MB/s"),
    Stage("mentions", "mentions", ("ingest",), ("tickers",), "posts/s"),
    Stage("embed", "embeddings", ("ingest", "mentions"), (), "posts/s"),
    Stage("volatility", "volatility", (), ("crsp",), "rows/s"),
    Stage("features", "features", ("mentions", "embed", "volatility"), (), "rows/s"),
    Stage("train", "results", ("features", "volatility"), (), "rows/s"),
    Stage("report", "report", ("train", "volatility", "mentions"), (), "rows/s"),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


# --- the graph ------------------------------------------------------------------------------


def ancestors(name: str) -> set[str]:
    """Every stage ``name`` depends on, directly or not.

    >>> sorted(ancestors("features"))
    ['embed', 'ingest', 'mentions', 'volatility']
    >>> ancestors("volatility")
    set()
    """
    seen: set[str] = set()
    todo = list(BY_NAME[name].upstream)
    while todo:
        up = todo.pop()
        if up not in seen:
            seen.add(up)
            todo.extend(BY_NAME[up].upstream)
    return seen


def descendants(name: str) -> set[str]:
    """Every stage that depends on ``name``, directly or not.

    >>> sorted(descendants("embed"))
    ['features', 'report', 'train']
    """
    return {s.name for s in STAGES if name in ancestors(s.name)}


def _check_stage_name(name: str | None, option: str) -> None:
    if name is not None and name not in BY_NAME:
        msg = f"unknown stage {name!r} for {option}; choose one of: {', '.join(STAGE_NAMES)}"
        raise WsbError(msg)


def plan(
    *, force: bool = False, from_stage: str | None = None, until_stage: str | None = None
) -> tuple[list[str], set[str]]:
    """Which stages the run considers, in order, and which of them it must rerun.

    ``until_stage`` keeps that stage and its ancestors; ``from_stage`` forces that stage
    and its descendants; ``force`` forces everything selected.

    >>> plan(until_stage="volatility")
    (['volatility'], set())
    >>> sel, forced = plan(from_stage="embed", until_stage="features")
    >>> sel, sorted(forced)
    (['ingest', 'mentions', 'embed', 'volatility', 'features'], ['embed', 'features'])
    """
    _check_stage_name(from_stage, "--from")
    _check_stage_name(until_stage, "--until")
    if until_stage is None:
        selected = list(STAGE_NAMES)
    else:
        keep = ancestors(until_stage) | {until_stage}
        selected = [n for n in STAGE_NAMES if n in keep]
    if force:
        forced = set(selected)
    elif from_stage is not None:
        if from_stage not in selected:
            msg = (
                f"--from {from_stage} is not needed for --until {until_stage} "
                f"(that stage needs only: {', '.join(selected)}); drop one of the two options"
            )
            raise WsbError(msg)
        forced = ({from_stage} | descendants(from_stage)) & set(selected)
    else:
        forced = set()
    return selected, forced


# --- rerun keys -------------------------------------------------------------------------------


def stage_params(settings: Settings, name: str) -> dict[str, Any]:
    """The stage's section of the settings (empty for stages without one)."""
    return settings.stage(name) if name in settings.data else {}


def stage_key(settings: Settings, backend_name: str, lake: Path, stage: Stage) -> tuple[str, dict]:
    """The hash that decides whether a completed stage can be skipped, and what went in it."""
    inputs = {}
    for key in stage.inputs:
        path = settings.inputs.get(key)
        inputs[key] = file_fingerprint(path) if path and Path(path).exists() else None
    # Upstream datasets are identified by the id the pipeline gave the run that wrote them
    # (a timestamp alone has one-second resolution: two runs in one second would collide).
    upstream = {up: _read_record(lake / BY_NAME[up].dataset).get("run_id") for up in stage.upstream}
    material = {
        "stage": stage.name,
        "params": stage_params(settings, stage.name),
        "backend": backend_name,
        "inputs": inputs,
        "upstream": upstream,
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest(), material


def _read_record(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / PIPELINE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _manifest_digest(folder: Path) -> str | None:
    try:
        return hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return None


def is_up_to_date(folder: Path, key: str) -> bool:
    """True when ``folder`` holds a complete dataset that this pipeline wrote under ``key``.

    A dataset rewritten by hand (a stage command run on its own) has a new manifest, so it
    no longer matches the record and the stage runs again.
    """
    if read_manifest(folder) is None:
        return False
    record = _read_record(folder)
    return bool(record) and record.get("key") == key and record.get("manifest_sha256") == _manifest_digest(folder)


def _write_pipeline_record(folder: Path, key: str, material: dict) -> None:
    import uuid

    record = {"key": key, "run_id": uuid.uuid4().hex, "manifest_sha256": _manifest_digest(folder), **material}
    tmp = folder / f".{PIPELINE_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, folder / PIPELINE_FILE)


# --- calling the stages -------------------------------------------------------------------------


@dataclass
class Context:
    """What every stage runner receives."""

    settings: Settings
    lake: Path
    backend: Any
    client: Any | None

    def path(self, stage: str) -> Path:
        return self.lake / BY_NAME[stage].dataset

    def input(self, key: str, stage: str) -> str:
        value = self.settings.inputs.get(key)
        if not value:
            msg = (
                f"stage '{stage}' needs the input file 'inputs.{key}', which is not set; "
                f"set it in the config (inputs: {{{key}: PATH}}) or pass --{key} PATH"
            )
            raise WsbError(msg)
        if not Path(value).exists():
            msg = f"input file inputs.{key} = '{value}' does not exist; fix the path in the config or pass --{key} PATH"
            raise WsbError(msg)
        return str(value)


def _entry(module: str, function: str) -> Callable[..., dict]:
    # Looked up at call time (not at import) so that tests can patch a stage, and so that
    # importing the pipeline never imports torch or a GPU library.
    return getattr(importlib.import_module(module), function)


def _run_ingest(ctx: Context, progress: bool) -> dict:
    return _entry("wsb_gpu.stages.ingest", "ingest")(
        ctx.input("submissions", "ingest"), ctx.input("comments", "ingest"), str(ctx.path("ingest")),
        backend=ctx.backend, client=ctx.client, progress=progress, **stage_params(ctx.settings, "ingest"),
    )


def _run_mentions(ctx: Context, progress: bool) -> dict:
    return _entry("wsb_gpu.stages.mentions", "extract_mentions")(
        str(ctx.path("ingest")), ctx.input("tickers", "mentions"), str(ctx.path("mentions")),
        backend=ctx.backend, client=ctx.client, progress=progress, **stage_params(ctx.settings, "mentions"),
    )


def _run_embed(ctx: Context, progress: bool) -> dict:
    return _entry("wsb_gpu.stages.embed", "embed")(
        str(ctx.path("ingest")), str(ctx.path("mentions")), str(ctx.path("embed")),
        backend=ctx.backend, client=ctx.client, progress=progress, **stage_params(ctx.settings, "embed"),
    )


def _run_volatility(ctx: Context, progress: bool) -> dict:
    return _entry("wsb_gpu.stages.volatility", "build_volatility")(
        ctx.input("crsp", "volatility"), str(ctx.path("volatility")),
        backend=ctx.backend, client=ctx.client, progress=progress, **stage_params(ctx.settings, "volatility"),
    )


def _run_features(ctx: Context, progress: bool) -> dict:
    return _entry("wsb_gpu.stages.features", "build_features")(
        str(ctx.path("mentions")), str(ctx.path("embed")), str(ctx.path("volatility")), str(ctx.path("features")),
        backend=ctx.backend, client=ctx.client, progress=progress, **stage_params(ctx.settings, "features"),
    )


def _run_train(ctx: Context, progress: bool) -> dict:
    return _entry("wsb_gpu.stages.train", "train")(
        str(ctx.path("train")), features=str(ctx.path("features")), volatility=str(ctx.path("volatility")),
        backend=ctx.backend, client=ctx.client, progress=progress, **stage_params(ctx.settings, "train"),
    )


def _run_report(ctx: Context, progress: bool) -> dict:
    from wsb_gpu.report import write_report

    write_report(ctx.path("train"), ctx.path("report"), lake=ctx.lake)
    return read_manifest(ctx.path("report")) or {}


RUNNERS: dict[str, Callable[[Context, bool], dict]] = {
    "ingest": _run_ingest,
    "mentions": _run_mentions,
    "embed": _run_embed,
    "volatility": _run_volatility,
    "features": _run_features,
    "train": _run_train,
    "report": _run_report,
}


# --- records, provenance, summary ------------------------------------------------------------


@dataclass
class StageRecord:
    """What happened to one stage in this run (a row of the summary table)."""

    stage: str
    status: str = "pending"          # ran | skipped | failed | pending (not reached)
    seconds: float = 0.0             # wall time in this run (0 when skipped)
    rows_in: Any = None
    rows_out: Any = None
    throughput: float | None = None  # from the manifest: the stage's own speed
    unit: str = ""
    error: str | None = None
    manifest_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _count(value: Any) -> Any:
    """Rows of a manifest field that may be an int or a per-file mapping.

    >>> _count(5), _count({"a": 2, "b": 3}), _count(None)
    (5, 5, None)
    """
    if isinstance(value, Mapping):
        parts = [_count(v) for v in value.values()]
        nums = [p for p in parts if isinstance(p, (int, float))]
        return sum(nums) if nums else None
    if isinstance(value, bool):
        return None
    return value if isinstance(value, (int, float)) else None


def _bytes_in(manifest: Mapping[str, Any]) -> float | None:
    # MB/s of decompressed JSON (what the parser chews through), else of the input files.
    for key in ("bytes_json", "json_bytes", "bytes_in", "input_bytes"):
        n = _count(manifest.get(key))
        if n:
            return float(n)
    sizes = [v.get("size") for v in (manifest.get("inputs") or {}).values() if isinstance(v, Mapping)]
    sizes = [s for s in sizes if isinstance(s, (int, float))]
    return float(sum(sizes)) if sizes else None


def fill_from_manifest(record: StageRecord, manifest: Mapping[str, Any] | None) -> None:
    """Rows and throughput of a stage from its manifest (units per the stage graph)."""
    if not manifest:
        return
    stage = BY_NAME[record.stage]
    record.rows_in = _count(manifest.get("rows_in"))
    record.rows_out = _count(manifest.get("rows_out"))
    seconds = manifest.get("seconds")
    record.manifest_seconds = float(seconds) if isinstance(seconds, (int, float)) else None
    record.unit = stage.unit
    if not record.manifest_seconds:
        return
    if stage.unit == "MB/s":
        nbytes = _bytes_in(manifest)
        record.throughput = nbytes / 1e6 / record.manifest_seconds if nbytes else None
    else:
        rows = record.rows_out if stage.unit == "posts/s" and stage.name == "embed" else record.rows_in
        record.throughput = rows / record.manifest_seconds if isinstance(rows, (int, float)) else None


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the numbers (absent ones skipped)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("wsb_gpu", "dask", "distributed", "dask-jobqueue", "pandas", "numpy", "pyarrow",
                 "scikit-learn", "xgboost", "xgboost-cpu", "torch", "transformers", "tokenizers",
                 "cudf-cu12", "cuml-cu12", "cupy-cuda12x", "dask-cuda", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def hardware() -> dict[str, Any]:
    """The driver machine: OS, CPU model, cores, memory, GPUs (names from torch if present)."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    if "torch" in sys.modules:  # never import torch just to describe the machine
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:
            pass
    return info


def _workers(client: Any | None) -> dict[str, Any] | None:
    if client is None:
        return None
    try:
        workers = client.scheduler_info().get("workers", {})
        return {
            "n_workers": len(workers),
            "threads": sum(w.get("nthreads", 0) for w in workers.values()),
            "hosts": sorted({w.get("host", "") for w in workers.values()}),
        }
    except Exception:
        return None


@dataclass
class RunResult:
    """What :func:`run_pipeline` returns."""

    lake: Path
    records: list[StageRecord]
    seconds: float
    report: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def ran(self) -> list[str]:
        return [r.stage for r in self.records if r.status == "ran"]

    @property
    def skipped(self) -> list[str]:
        return [r.stage for r in self.records if r.status == "skipped"]


def _write_run_json(lake: Path, provenance: dict[str, Any]) -> None:
    lake.mkdir(parents=True, exist_ok=True)
    tmp = lake / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    os.replace(tmp, lake / RUN_FILE)


def _fmt_rows(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) else "—"


def summary_table(records: list[StageRecord], total_seconds: float) -> Any:
    """A rich table: stage, status, rows in/out, throughput, seconds."""
    from rich.table import Table

    table = Table(title=f"wsb-gpu run: {total_seconds:.1f} s", title_justify="left")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("rows in", justify="right")
    table.add_column("rows out", justify="right")
    table.add_column("throughput", justify="right")
    table.add_column("seconds", justify="right")
    style = {"ran": "green", "skipped": "dim", "failed": "bold red", "pending": "yellow"}
    for r in records:
        speed = f"{r.throughput:,.1f} {r.unit}" if r.throughput else "—"
        status = {"pending": "not run"}.get(r.status, r.status)
        seconds = f"{r.seconds:.1f}" if r.status in ("ran", "failed") else "—"
        table.add_row(r.stage, f"[{style[r.status]}]{status}[/]", _fmt_rows(r.rows_in),
                      _fmt_rows(r.rows_out), speed, seconds)
    return table


# --- the run ----------------------------------------------------------------------------------


def run_pipeline(
    settings: Settings,
    *,
    lake: str | Path | None = None,
    force: bool = False,
    from_stage: str | None = None,
    until_stage: str | None = None,
    progress: bool = True,
    console: Any | None = None,
    concurrent: bool = True,
) -> RunResult:
    """Run every stage that is not up to date, in one Dask client, and write ``run.json``.

    Parameters
    ----------
    settings
        The run's settings (``inputs``, ``lake``, ``backend``, ``cluster``, stage sections).
    lake
        Run directory; default ``settings.lake``.
    force, from_stage, until_stage
        Rerun everything / rerun ``from_stage`` and its descendants / stop after
        ``until_stage`` (see :func:`plan`).
    progress
        Show progress bars (passed to the stages as ``progress=``).
    console
        A :class:`rich.console.Console` for messages and the summary table (default: stderr).
    concurrent
        Run independent stages (volatility beside the text stages) at the same time.

    Returns
    -------
    RunResult
        Per-stage records, total seconds, the path of ``report.md`` when the report ran.

    Raises
    ------
    WsbError
        When a stage fails: names the stage and the cause; earlier outputs stay intact.
    """
    from rich.console import Console

    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.cluster import dashboard_link, session

    console = console or Console(stderr=True)
    lake = Path(lake or settings.lake).resolve()
    selected, forced = plan(force=force, from_stage=from_stage, until_stage=until_stage)
    backend = resolve_backend(settings.backend)
    records = {name: StageRecord(name) for name in selected}
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    provenance: dict[str, Any] = {
        "status": "running",
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": None,
        "seconds": None,
        "lake": str(lake),
        "command": sys.argv,
        "plan": {"selected": selected, "forced": sorted(forced), "force": force,
                 "from_stage": from_stage, "until_stage": until_stage},
        "backend": {"name": backend.name, "reason": backend.reason},
        "config": settings.to_dict(),
        "config_sources": list(settings.sources),
        "versions": versions(),
        "hardware": hardware(),
        "cluster": {"kind": settings.cluster["kind"]},
        "stages": [],
    }
    lake.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]wsb-gpu run[/] → {lake}  (backend {backend.name}: {backend.reason}; "
                  f"cluster {settings.cluster['kind']})")

    lock = threading.Lock()

    def save(status: str) -> None:
        with lock:
            provenance["status"] = status
            provenance["stages"] = [records[n].as_dict() for n in selected]
            provenance["seconds"] = round(time.perf_counter() - t0, 3)
            if status != "running":
                provenance["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            _write_run_json(lake, provenance)

    failure: list[tuple[str, BaseException]] = []
    with session(settings) as client:
        link = dashboard_link(client) if client is not None else None
        provenance["cluster"].update({"dashboard": link, "workers": _workers(client)})
        # (the session has printed the dashboard link already)
        ctx = Context(settings, lake, backend, client)
        save("running")

        def execute(name: str, show_progress: bool) -> None:
            stage = BY_NAME[name]
            record = records[name]
            folder = lake / stage.dataset
            key, material = stage_key(settings, backend.name, lake, stage)
            if name not in forced and is_up_to_date(folder, key):
                record.status = "skipped"
                fill_from_manifest(record, read_manifest(folder))
                console.print(f"  [dim]↷ {name}: up to date, skipped[/]")
                return
            console.print(f"  [bold cyan]▶ {name}[/] → {folder}")
            t = time.perf_counter()
            try:
                manifest = RUNNERS[name](ctx, show_progress)
            except BaseException as e:
                record.status = "failed"
                record.seconds = time.perf_counter() - t
                record.error = f"{type(e).__name__}: {e}"
                raise
            record.seconds = time.perf_counter() - t
            record.status = "ran"
            if not (folder / MANIFEST).is_file():
                msg = (
                    f"stage '{name}' returned without writing {folder / MANIFEST}; "
                    "its output is incomplete (a bug in the stage: it must write its manifest last)"
                )
                raise WsbError(msg)
            fill_from_manifest(record, read_manifest(folder) or manifest)
            _write_pipeline_record(folder, key, material)
            console.print(f"  [green]✓ {name}[/] {record.seconds:.1f} s")

        done: set[str] = set()
        pending = list(selected)
        running: dict[cf.Future, str] = {}
        with cf.ThreadPoolExecutor(max_workers=2 if concurrent else 1, thread_name_prefix="stage") as pool:
            while (pending and not failure) or running:
                if not failure:
                    for name in list(pending):
                        ready = all(u in done for u in BY_NAME[name].upstream if u in records)
                        if ready and len(running) < (2 if concurrent else 1):
                            # Two progress bars at once garble the terminal: a stage that starts
                            # while another runs (volatility beside ingest) runs quietly.
                            quiet = bool(running)
                            running[pool.submit(execute, name, progress and not quiet)] = name
                            pending.remove(name)
                if not running:
                    break
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    name = running.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        done.add(name)
                    else:
                        failure.append((name, exc))
                save("running")
        provenance["cluster"]["workers"] = _workers(client) or provenance["cluster"]["workers"]

    total = time.perf_counter() - t0
    result = RunResult(lake, [records[n] for n in selected], total, provenance=provenance)
    console.print(summary_table(result.records, total))
    if failure:
        save("failed")
        name, exc = failure[0]
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        cause = f"{type(exc).__name__}: {cause}" if not isinstance(exc, WsbError) else cause
        intact = [n for n in selected if records[n].status in ("ran", "skipped")]
        msg = (
            f"stage '{name}' failed: {cause} "
            f"(the outputs of {', '.join(intact) or 'no earlier stage'} in {lake} are intact; "
            f"fix the cause and rerun the same command to resume from '{name}')"
        )
        raise WsbError(msg) from exc
    save("ok")
    report = lake / "report" / "report.md"
    result.report = report if "report" in selected and report.is_file() else None
    return result
