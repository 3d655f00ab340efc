"""The whole run: ingest → mentions → embed, volatility beside them, features → train → report.

:func:`run_pipeline` resolves the backend once, opens one Dask client
(:func:`wsb_gpu.cluster.session`) for the whole run, and runs each stage of the stage table
(:mod:`wsb_gpu.stages`) through :func:`~wsb_gpu.stages.base.run_stage`, with its section
of the settings. Each stage writes one dataset of the run directory (the "lake")::

    LAKE/posts/  mentions/  embeddings/  volatility/  features/  results/  report/  run.json

**Order.** The stages are scheduled by :class:`graphlib.TopologicalSorter` over their
inputs, up to two at a time on the driver (each submits its work to the shared client), so
the volatility panel, which needs no text, is built while ingest, mentions and embed run.

**Reruns**: a stage whose output is complete and whose manifest carries the rerun key the
stage would write now (:meth:`~wsb_gpu.stages.base.Stage.current_manifest`: its settings
that change the output, the backend and the content of its inputs) is skipped. ``force``
reruns everything selected, ``from_stage`` reruns one stage and everything downstream of
it, ``until_stage`` stops after a stage (running only what it needs).

**Failure.** Stages write atomically, so a stage that fails leaves nothing half-written and
every earlier dataset intact; the run raises a :class:`~wsb_gpu.errors.WsbError` that names
the stage and the cause, and the same command resumes from there. ``run.json``
(:mod:`~wsb_gpu.pipeline.provenance`) records how far it got.
"""

from __future__ import annotations

import concurrent.futures as cf
import graphlib
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from wsb_gpu.backend import Backend, resolve_backend
from wsb_gpu.cluster import dashboard_link, session
from wsb_gpu.config import Settings
from wsb_gpu.errors import WsbError, os_error_line
from wsb_gpu.interrupt import Interrupted
from wsb_gpu.lake import check_target, lock, remove_stale_temporaries
from wsb_gpu.manifest import MANIFEST, read_manifest
from wsb_gpu.pipeline.provenance import RUN_FILE, Provenance
from wsb_gpu.pipeline.summary import StageRecord, summary_table
from wsb_gpu.stages import BY_NAME, STAGE_NAMES, STAGES, Stage, interrupted_message, run_stage, upstream

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "BY_NAME",
    "RUN_FILE",
    "STAGES",
    "STAGE_NAMES",
    "RunResult",
    "ancestors",
    "descendants",
    "plan",
    "run_pipeline",
    "stage_inputs",
]


# --- the graph ------------------------------------------------------------------------------


def ancestors(name: str) -> set[str]:
    """Every stage ``name`` depends on, directly or not.

    >>> sorted(ancestors("features"))
    ['embed', 'ingest', 'links', 'mentions', 'signals', 'volatility']
    >>> ancestors("volatility")
    set()
    """
    seen: set[str] = set()
    todo = list(upstream(BY_NAME[name]))
    while todo:
        up = todo.pop()
        if up not in seen:
            seen.add(up)
            todo.extend(upstream(BY_NAME[up]))
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
    (['ingest', 'mentions', 'embed', 'signals', 'volatility', 'links', 'features'], ['embed', 'features'])
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


# --- a stage's inputs in the lake -------------------------------------------------------------


def stage_inputs(settings: Settings, lake: Path, stage: Stage) -> dict[str, Path | None]:
    """Where each input of ``stage`` is in a run: datasets in the lake, raw files from
    ``settings.inputs``.

    Raises
    ------
    WsbError
        When a required raw input is not set or does not exist (before anything runs).
    """
    out: dict[str, Path | None] = {}
    for spec in stage.inputs:
        if spec.kind == "lake":
            out[spec.name] = lake
        elif spec.kind == "file":
            value = settings.inputs.get(spec.name)
            if not value:
                if not spec.required:
                    out[spec.name] = None
                    continue
                msg = (
                    f"stage '{stage.name}' needs the input file 'inputs.{spec.name}', which is not set; "
                    f"set it in the config (inputs: {{{spec.name}: PATH}}) or pass --{spec.name} PATH"
                )
                raise WsbError(msg)
            if not Path(value).exists():
                msg = (
                    f"input file inputs.{spec.name} = '{value}' does not exist; "
                    f"fix the path in the config or pass --{spec.name} PATH"
                )
                raise WsbError(msg)
            out[spec.name] = Path(value)
        else:
            out[spec.name] = lake / (spec.reads or spec.name)
    return out


# --- the run ----------------------------------------------------------------------------------


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


@dataclass
class _Run:
    """The state one run shares between its stages (the scheduler's threads)."""

    settings: Settings
    lake: Path
    backend: Backend
    client: Client | None
    forced: set[str]
    console: Console
    records: dict[str, StageRecord]
    inputs: Mapping[str, dict[str, Path | None]]

    def execute(self, name: str, progress: bool) -> None:
        """Run one stage unless it is up to date; record what happened."""
        stage = BY_NAME[name]
        record = self.records[name]
        folder = self.lake / stage.output
        params = self.settings.params(stage.section or stage.name)
        current = (
            None
            if name in self.forced
            else stage.current_manifest(folder, self.inputs[name], params, self.backend.name)
        )
        if current is not None:
            record.status = "skipped"
            record.fill(current)
            self.console.print(f"  [dim]↷ {name}: up to date, skipped[/]")
            return
        self.console.print(f"  [bold cyan]▶ {name}[/] → {folder}")
        record.status = "running"
        t = time.perf_counter()
        try:
            manifest = run_stage(
                stage,
                folder,
                inputs=self.inputs[name],
                params=params,
                backend=self.backend,
                client=self.client,
                progress=progress,
            )
        except BaseException as e:
            if record.status == "running":  # (an interrupt has already recorded itself)
                record.status = "failed"
                record.error = f"{type(e).__name__}: {e}"
            record.seconds = time.perf_counter() - t
            raise
        record.seconds = time.perf_counter() - t
        record.status = "ran"
        if not (folder / MANIFEST).is_file():
            msg = (
                f"stage '{name}' returned without writing {folder / MANIFEST}; "
                "its output is incomplete (a bug in the stage: it must write its manifest last)"
            )
            raise WsbError(msg)
        record.fill(read_manifest(folder) or manifest)
        rows = f", {record.rows_out:,.0f} rows" if isinstance(record.rows_out, int | float) else ""
        self.console.print(f"  [green]✓ {name}[/] {record.seconds:.1f} s{rows}")


def run_pipeline(
    settings: Settings,
    *,
    lake: str | Path | None = None,
    force: bool = False,
    from_stage: str | None = None,
    until_stage: str | None = None,
    progress: bool = True,
    console: Console | None = None,
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
        Show progress (live bars on a terminal; see :mod:`wsb_gpu.progress`).
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
        When an input is missing (before anything runs) or a stage fails: names the stage
        and the cause; earlier outputs stay intact.
    """
    console = console or Console(stderr=True)
    lake = Path(lake or settings.lake).resolve()
    selected, forced = plan(force=force, from_stage=from_stage, until_stage=until_stage)
    inputs = {name: stage_inputs(settings, lake, BY_NAME[name]) for name in selected}
    for name in selected:  # the raw inputs' door checks (a dump's magic bytes, a CRSP sample ...)
        stage = BY_NAME[name]
        stage.check_inputs(inputs[name], settings.params(stage.section or stage.name))
    backend = resolve_backend(settings.backend)
    records = {name: StageRecord(name) for name in selected}
    provenance = Provenance(
        lake,
        settings,
        backend,
        {
            "selected": selected,
            "forced": sorted(forced),
            "force": force,
            "from_stage": from_stage,
            "until_stage": until_stage,
        },
    )
    lake.mkdir(parents=True, exist_ok=True)
    with lock(lake, "lake"):
        for name in selected:  # a dataset folder that is not ours is refused before any work
            stage = BY_NAME[name]
            check_target(lake / stage.output, name, dataset=stage.output, claims=stage.claims)
            remove_stale_temporaries(lake / stage.output)
        return _run_locked(
            settings,
            lake,
            selected,
            forced,
            inputs,
            backend,
            records,
            provenance,
            console,
            progress=progress,
            concurrent=concurrent,
        )


def _run_locked(
    settings: Settings,
    lake: Path,
    selected: list[str],
    forced: set[str],
    inputs: Mapping[str, dict[str, Path | None]],
    backend: Backend,
    records: dict[str, StageRecord],
    provenance: Provenance,
    console: Console,
    *,
    progress: bool,
    concurrent: bool,
) -> RunResult:
    """The run itself, with the lake locked (see :func:`run_pipeline`)."""
    console.print(
        f"[bold]wsb-gpu run[/] → {lake}  (backend {backend.name}: {backend.reason}; cluster {settings.cluster['kind']})"
    )
    failure: list[tuple[str, BaseException]] = []
    try:
        with session(settings) as client:
            provenance.cluster(client, dashboard_link(client) if client is not None else None)
            run = _Run(settings, lake, backend, client, forced, console, records, inputs)
            provenance.save("running", records.values())
            failure = _schedule(
                run,
                selected,
                concurrent=concurrent,
                progress=progress,
                on_change=lambda: provenance.save("running", records.values()),
            )
            provenance.cluster(client)
    except Interrupted as e:
        running = [n for n in selected if records[n].status == "interrupted"]
        provenance.save("interrupted", records.values())
        if running:
            message = interrupted_message(BY_NAME[running[0]], lake / BY_NAME[running[0]].output)
        else:
            message = "interrupted between stages; every finished stage is kept; rerun the same command to resume"
        raise Interrupted(e.signum, message) from None

    total = provenance.seconds
    result = RunResult(lake, [records[n] for n in selected], total, provenance=provenance.data)
    console.print(summary_table(result.records, total))
    if failure:
        provenance.save("failed", records.values())
        name, exc = failure[0]
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, OSError):
            cause = os_error_line(exc)
        elif not isinstance(exc, WsbError):
            cause = f"{type(exc).__name__}: {cause}"
        intact = [n for n in selected if records[n].status in ("ran", "skipped")]
        msg = (
            f"stage '{name}' failed: {cause} "
            f"(the outputs of {', '.join(intact) or 'no earlier stage'} in {lake} are intact; "
            f"fix the cause and rerun the same command to resume from '{name}')"
        )
        raise WsbError(msg) from exc
    provenance.save("ok", records.values())
    report = lake / "report" / "report.md"
    result.report = report if "report" in selected and report.is_file() else None
    return result


def _schedule(
    run: _Run, selected: list[str], *, concurrent: bool, progress: bool, on_change: Any
) -> list[tuple[str, BaseException]]:
    """Run the selected stages in dependency order, at most two at a time; return failures.

    After a failure no new stage starts; the stages already running finish.
    """
    graph = graphlib.TopologicalSorter({n: [u for u in upstream(BY_NAME[n]) if u in selected] for n in selected})
    graph.prepare()
    limit = 2 if concurrent else 1
    ready: deque[str] = deque()
    running: dict[cf.Future, str] = {}
    failure: list[tuple[str, BaseException]] = []
    pool = cf.ThreadPoolExecutor(max_workers=limit, thread_name_prefix="stage")
    try:
        while True:
            if not failure:
                ready.extend(graph.get_ready())
                while ready and len(running) < limit:
                    name = ready.popleft()
                    # Two live displays at once garble the terminal: a stage that starts while
                    # another runs (volatility beside ingest) runs quietly.
                    running[pool.submit(run.execute, name, progress and not running)] = name
            if not running:
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                exc = future.exception()
                if exc is None:
                    graph.done(name)
                else:
                    failure.append((name, exc))
            on_change()
    except BaseException as e:
        # An interrupt: do not wait for the running stages (closing the client stops them).
        if isinstance(e, Interrupted):
            for name in running.values():
                run.records[name].status = "interrupted"
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failure
