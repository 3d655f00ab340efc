"""The shape every stage shares: a declared :class:`Stage` and the one runner that calls it.

A stage is declared once, in the stage table (:mod:`wsb_gpu.stages`), as a :class:`Stage`:
its name, its inputs (datasets of the lake and raw files), the dataset it writes (a contract
of :mod:`wsb_gpu.datasets`), its section of the settings as a typed model, which of those
settings do not change its output, a one-line summary and its entry point, a function of
one signature (:class:`StageEntry`)::

    run(inputs: <the stage's TypedDict of inputs>, out: Path, *, backend: Backend,
        client: Client | None, params: <the stage's Section>, progress: bool) -> StageResult

where a required input is a ``Path`` and only an optional one ``Path | None`` (the runner
has checked them), so that mypy checks how a stage uses its inputs. A resumable stage also
takes ``key``, the rerun key (:class:`ResumableStageEntry`).

:func:`run_stage` is the only caller of these entry points (the CLI, ``wsb-gpu run``, the
benchmarks and the tests all go through it). It validates the parameters, checks every input
against its contract before the stage starts, computes the stage's rerun key
(:meth:`Stage.rerun_key`), lets the stage write into a temporary folder (or, for a resumable
stage, into its output folder), checks the output against its contract, writes the manifest
(with the key) and renames the folder into place. So a stage only does its work: no stage
checks columns, fingerprints inputs or writes a manifest itself.

**Is an output current?** One rule, in one place: the rerun key, a hash of the stage's
name and :attr:`Stage.version`, the backend, its settings less the ones it declares
:attr:`Stage.output_neutral`, and the content identities of its inputs. The manifest
records it; ``wsb-gpu run`` skips a stage whose manifest has the key it would write now
(:meth:`Stage.current_manifest`), and the resumable ``embed`` keeps finished shards only
under the same key.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast

from wsb_gpu.backend import Backend
from wsb_gpu.config import Section, validate_params
from wsb_gpu.datasets import DATASETS, Dataset, check, count_rows
from wsb_gpu.errors import WsbError
from wsb_gpu.fingerprint import fingerprint, folder_digest
from wsb_gpu.lake import atomic_dataset, check_target, lock, remove_stale_temporaries
from wsb_gpu.manifest import MANIFEST, Manifest, read_manifest, write_manifest

if TYPE_CHECKING:
    from distributed import Client

InputKind = Literal["dataset", "file", "folder", "lake"]


@dataclass(frozen=True)
class Input:
    """One input of a stage.

    Attributes
    ----------
    name
        Key in the stage's ``inputs`` mapping and its command-line option (``--posts``).
        For a ``dataset`` input it is also the dataset's name in :data:`DATASETS`.
    kind
        ``dataset`` (a folder of the lake, checked against its contract), ``file`` (a raw
        input: the key of ``settings.inputs``), ``folder`` (a folder the stage checks
        itself) or ``lake`` (the run directory itself; it may not exist yet).
    required
        Whether the stage can run without it.
    help
        Text of the command-line option.
    dir_ok
        For ``file`` inputs: whether a folder is accepted too (a Parquet folder).
    dataset
        The dataset a ``folder`` input holds (it orders the stages; the stage checks the
        folder itself). A ``dataset`` input's dataset is its name.
    """

    name: str
    kind: InputKind = "dataset"
    required: bool = True
    help: str = ""
    dir_ok: bool = False
    dataset: str | None = None

    @property
    def contract(self) -> Dataset | None:
        return DATASETS[self.name] if self.kind == "dataset" else None

    @property
    def reads(self) -> str | None:
        """The lake dataset this input is (None for raw files and the lake itself)."""
        return self.name if self.kind == "dataset" else self.dataset


@dataclass
class StageResult:
    """What a stage's entry point returns: its own counts for the manifest.

    ``rows_out`` defaults to the rows of the output dataset (counted by the runner).
    ``fields`` are the stage's own manifest fields, typed by the stage (a ``TypedDict`` of
    its module, such as :class:`wsb_gpu.stages.ingest.IngestFields`). ``unchanged`` says that
    a resumable stage found its output complete under the same rerun key and did nothing:
    its manifest stays as it is.
    """

    rows_in: int
    rows_out: int | None = None
    fields: Mapping[str, object] = field(default_factory=dict)
    unchanged: bool = False


I_contra = TypeVar("I_contra", contravariant=True)
P_contra = TypeVar("P_contra", bound=Section, contravariant=True)


class StageEntry(Protocol[I_contra, P_contra]):
    """The entry point of a stage, as :func:`run_stage` calls it.

    ``I_contra`` is the stage's inputs: a ``TypedDict`` with one key per declared input,
    ``Path`` for a required input and ``Path | None`` for an optional one (the runner passes
    every input, checked, and None for an optional one not given). ``P_contra`` is its
    settings section. For example the embed stage is a
    ``StageEntry[EmbedInputs, EmbedParams]``::

        class EmbedInputs(TypedDict):
            posts: Path
            mentions: Path

        def run(inputs: EmbedInputs, out: Path, *, backend: Backend, client: Client | None = None,
                params: EmbedParams, progress: bool = False) -> StageResult: ...
    """

    def __call__(
        self,
        inputs: I_contra,
        out: Path,
        *,
        backend: Backend,
        client: Client | None,
        params: P_contra,
        progress: bool,
    ) -> StageResult: ...


class ResumableStageEntry(Protocol[I_contra, P_contra]):
    """The entry point of a resumable stage (:attr:`Stage.resumable`): a :class:`StageEntry`
    that also takes ``key``, the rerun key of this run (:meth:`Stage.rerun_key`), with which
    it decides whether the pieces an earlier run left in ``out`` are still valid."""

    def __call__(
        self,
        inputs: I_contra,
        out: Path,
        *,
        backend: Backend,
        client: Client | None,
        params: P_contra,
        progress: bool,
        key: str,
    ) -> StageResult: ...


@dataclass(frozen=True)
class Stage:
    """The declaration of one stage (see the module docstring).

    Attributes
    ----------
    name
        Stage name, command name and, where it has one, its section of the settings.
    inputs
        What it reads.
    output
        Name of the dataset it writes (a key of :data:`DATASETS`, the folder in the lake).
    params
        Its section of the settings, a :class:`~wsb_gpu.config.Section` model.
    entry
        ``"module:function"`` of the entry point, imported when the stage runs (so that
        declaring the stages imports no heavy library).
    doc
        Help text of the command: what it does, then an ``Example:`` block.
    summary
        The line the command prints from the manifest (a function of the stage's manifest
        type: :class:`~wsb_gpu.manifest.Manifest` and the stage's own fields).
    unit
        Throughput unit of the run's summary table: ``MB/s``, ``posts/s`` or ``rows/s``.
    resumable
        Writes straight into its output folder (finished shards survive a crash) instead
        of a temporary folder renamed into place.
    lake_reads
        Datasets it reads from its ``lake`` input (the report's figures), which order the
        stages like inputs do.
    default_out
        Where the command writes when ``--out`` is not given (None: ``--out`` is required).
    claims
        Files that mark a folder as this stage's even without a manifest (the state file of
        an interrupted resumable stage), so that a rerun may continue in it.
    check
        ``"module:function"`` of a check of the stage's raw inputs that runs before any work
        (``check(inputs, params)``: a dump's magic bytes, a sample of a CRSP file parsed on the
        driver …); it raises a one-line :class:`~wsb_gpu.errors.WsbError`.
    holds_gil
        Its kernel runs in Python (VADER), so threads in one process do not use the cores: the
        command always starts its cluster, whatever ``cluster.in_process_below`` says.
    output_neutral
        Settings of its section that do not change what it writes, only how fast or from
        where (embed's ``token_budget``, ingest's ``window``): left out of the rerun key, so
        changing one neither reruns the stage nor discards an interrupted run's finished
        pieces. Every other setting is in the key: a new setting reruns the stage until it
        is declared here.
    version
        Part of the rerun key: raise it when a change of the stage's code changes its
        output, so that outputs written before rerun.
    """

    name: str
    inputs: tuple[Input, ...]
    output: str
    params: type[Section]
    entry: str
    doc: str
    summary: Callable[[Any], str]
    unit: str = "rows/s"
    resumable: bool = False
    lake_reads: tuple[str, ...] = ()
    default_out: Callable[[Mapping[str, Any]], Path] | None = None
    claims: tuple[str, ...] = ()
    check: str | None = None
    holds_gil: bool = False
    output_neutral: tuple[str, ...] = ()
    version: int = 1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.output_neutral) - set(self.params.model_fields))
        if unknown:
            msg = (
                f"stage '{self.name}' declares output_neutral {', '.join(unknown)}, which "
                f"{'is not a setting' if len(unknown) == 1 else 'are not settings'} of {self.params.__name__}"
            )
            raise ValueError(msg)

    @property
    def contract(self) -> Dataset:
        return DATASETS[self.output]

    @property
    def section(self) -> str | None:
        """The settings section holding its parameters (None when it has none)."""
        from wsb_gpu.config import Config

        return self.name if self.name in Config.model_fields else None

    def input(self, name: str) -> Input:
        return next(i for i in self.inputs if i.name == name)

    def entry_point(self) -> StageEntry[Any, Any]:
        return cast("StageEntry[Any, Any]", _resolve(self.entry))

    def check_inputs(self, inputs: Mapping[str, Path | None], params: Section) -> None:
        """Run the stage's door check (if it has one) on the raw inputs given."""
        if self.check is not None:
            raw = {i.name: inputs.get(i.name) for i in self.inputs if i.kind == "file" and inputs.get(i.name)}
            _resolve(self.check)(raw, params)

    def make_params(self, values: Section | Mapping[str, Any] | None = None) -> Section:
        """The stage's typed parameters: a model as is, or defaults updated by a mapping."""
        if isinstance(values, self.params):
            return values
        if isinstance(values, Section):
            msg = f"stage '{self.name}' takes {self.params.__name__}, got {type(values).__name__}"
            raise TypeError(msg)
        return validate_params(self.params, dict(values or {}), self.section or self.name)

    def rerun_key(self, inputs: Mapping[str, Path | None], params: Section, backend: str) -> str:
        """The key of what this stage's output depends on: the one record of "is it current".

        A SHA-256 of the stage's name and :attr:`version`, the backend, its settings less
        the :attr:`output_neutral` ones, and the identity of each input: the content digest
        of a dataset or folder (so a lake copied elsewhere stays current, and a stage that
        reran but wrote the same data leaves what reads it current), the fingerprint of a
        raw file (path, size, digest), the digests of the datasets a ``lake`` input is read
        for (:attr:`lake_reads`); None for an optional input not given.
        """
        settings = {k: v for k, v in params.to_dict().items() if k not in self.output_neutral}
        material = {
            "stage": self.name,
            "version": self.version,
            "backend": backend,
            "params": settings,
            "inputs": {i.name: self._identity(i, inputs.get(i.name)) for i in self.inputs},
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def _identity(self, spec: Input, path: Path | None) -> object:
        if path is None:
            return None
        if spec.kind == "lake":
            return {name: _digest(Path(path) / name) for name in self.lake_reads}
        if spec.kind == "file":
            return fingerprint(path) if Path(path).exists() else None
        return _digest(Path(path))

    def current_manifest(
        self, out: str | Path, inputs: Mapping[str, Path | None], params: Section, backend: str
    ) -> Manifest | None:
        """The manifest of ``out`` when it holds a complete dataset written under the key
        that these inputs, settings and backend give now; None when the stage must run."""
        manifest = read_manifest(out)
        if manifest is None or manifest.get("key") != self.rerun_key(inputs, params, backend):
            return None
        return manifest


def _digest(folder: Path) -> str | None:
    """A dataset's identity: its content digest (None when it is not there)."""
    return fingerprint(folder)["digest"] if folder.exists() else None


# --- the runner ---------------------------------------------------------------------------------


def resolve_inputs(stage: Stage, given: Mapping[str, str | Path | None]) -> dict[str, Path | None]:
    """Check the inputs of ``stage`` exist (and fit their contracts); return them as paths.

    Raises
    ------
    WsbError
        For an unknown, missing or non-existent input, or one that breaks its contract.
    """
    unknown = sorted(set(given) - {i.name for i in stage.inputs})
    if unknown:
        msg = (
            f"stage '{stage.name}' has no input {', '.join(unknown)}; "
            f"its inputs are {', '.join(i.name for i in stage.inputs)}"
        )
        raise WsbError(msg)
    out: dict[str, Path | None] = {}
    for spec in stage.inputs:
        value = given.get(spec.name)
        if value is None or value == "":
            if spec.required:
                what = (
                    f"the {spec.name} dataset folder (from `wsb-gpu {spec.contract.producer}`)"
                    if spec.contract
                    else spec.help or spec.name
                )
                msg = (
                    f"stage '{stage.name}' needs --{spec.name.replace('_', '-')}: {what}; "
                    f"pass it on the command line or set inputs.{spec.name} in the config"
                    if spec.kind == "file"
                    else f"stage '{stage.name}' needs --{spec.name.replace('_', '-')}: {what}"
                )
                raise WsbError(msg)
            out[spec.name] = None
            continue
        path = Path(value)
        if spec.contract is not None:
            check(spec.contract, path, role="input")
        elif spec.kind == "lake":
            pass
        elif not path.exists():
            msg = f"input '{path}' (--{spec.name.replace('_', '-')}) does not exist; fix the path"
            raise WsbError(msg)
        elif spec.kind == "file" and path.is_dir() and not spec.dir_ok:
            msg = f"input '{path}' (--{spec.name.replace('_', '-')}) is a folder; pass a file"
            raise WsbError(msg)
        elif not os.access(path, os.R_OK):
            msg = f"input '{path}' (--{spec.name.replace('_', '-')}) is not readable (permission denied); fix its permissions"
            raise WsbError(msg)
        elif spec.kind == "folder" and not path.is_dir():
            msg = f"input '{path}' (--{spec.name.replace('_', '-')}) is not a folder; pass a folder"
            raise WsbError(msg)
        out[spec.name] = path
    return out


def _resolve(entry: str) -> Callable[..., Any]:
    module, function = entry.split(":")
    return getattr(importlib.import_module(module), function)


def preflight(
    stage: Stage, out: str | Path, inputs: Mapping[str, str | Path | None], params: Section
) -> dict[str, Path | None]:
    """Everything checked before a stage starts: its inputs (:func:`resolve_inputs` and the
    stage's own :attr:`Stage.check`) and whether it may write to ``out``
    (:func:`~wsb_gpu.lake.check_target`). Returns the inputs."""
    paths = resolve_inputs(stage, inputs)
    stage.check_inputs(paths, params)
    sources = [p for i in stage.inputs if (p := paths[i.name]) is not None and i.kind != "lake"]
    check_target(out, stage.name, dataset=stage.output, inputs=sources, claims=stage.claims)
    return paths


def run_stage(
    stage: Stage,
    out: str | Path,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    params: Section | Mapping[str, Any] | None = None,
    backend: Backend | None = None,
    client: Client | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> Manifest:
    """Run one stage into ``out`` and return its manifest (also in ``out/_manifest.json``).

    :func:`wsb_gpu.stages.run_stage` is the same with the stage given by its name too.

    Parameters
    ----------
    stage
        A :class:`Stage`.
    out
        The output folder.
    inputs
        Input name -> path (see the stage's :attr:`Stage.inputs`).
    params
        The stage's parameters: its typed section, or a mapping of overrides of the
        packaged defaults.
    backend
        CPU or GPU (default: CPU).
    client
        A distributed client, or None for dask's threaded scheduler in this process.
    progress
        Show progress on stderr.
    **kwargs
        Inputs and parameters by name, for calls from Python:
        ``run_stage("features", out, mentions=…, embeddings=…, volatility=…)``.

    Raises
    ------
    WsbError
        Bad parameters or inputs (before any work), or the stage's own failures.
    """
    names = {i.name for i in stage.inputs}
    given = dict(inputs or {})
    given.update({k: v for k, v in kwargs.items() if k in names})
    overrides = {k: v for k, v in kwargs.items() if k not in names}
    if overrides and isinstance(params, Section):
        msg = f"pass the parameters of stage '{stage.name}' either as params= or as keywords, not both"
        raise TypeError(msg)
    typed = stage.make_params({**dict(params or {}), **overrides} if not isinstance(params, Section) else params)
    paths = preflight(stage, out, given, typed)
    backend = backend or Backend("cpu", "default")
    out = Path(out)
    entry = stage.entry_point()
    with lock(out, "output folder"):
        remove_stale_temporaries(out)
        return _run_locked(stage, entry, out, paths, typed, backend=backend, client=client, progress=progress)


def _run_locked(
    stage: Stage,
    entry: StageEntry[Any, Any],
    out: Path,
    paths: Mapping[str, Path | None],
    typed: Section,
    *,
    backend: Backend,
    client: Client | None,
    progress: bool,
) -> Manifest:
    """The stage itself, once its target is checked and locked (see :func:`run_stage`)."""
    t0 = time.perf_counter()
    key = stage.rerun_key(paths, typed, backend.name)
    # The lake as a whole is not fingerprinted: its datasets carry their own manifests.
    fingerprints = {
        i.name: fingerprint(p) for i in stage.inputs if (p := paths[i.name]) is not None and i.kind != "lake"
    }
    writer = _resumable(out) if stage.resumable else atomic_dataset(out)
    with writer as folder:
        if stage.resumable:
            resumable = cast("ResumableStageEntry[Any, Any]", entry)
            result = resumable(paths, folder, backend=backend, client=client, params=typed, progress=progress, key=key)
        else:
            result = entry(paths, folder, backend=backend, client=client, params=typed, progress=progress)
        if result.unchanged:
            manifest = read_manifest(folder)
            if manifest is not None and manifest.get("key") == key:
                return manifest
        schema = check(stage.contract, folder, role="output")
        rows_out = result.rows_out
        if rows_out is None:
            data = folder / stage.contract.parquet if stage.contract.parquet else folder
            rows_out = count_rows(data) if stage.contract.parquet is not None else 0
        return write_manifest(
            folder,
            stage=stage.name,
            key=key,
            inputs=fingerprints,
            params=typed.to_dict(),
            rows_in=int(result.rows_in),
            rows_out=int(rows_out),
            seconds=round(time.perf_counter() - t0, 3),
            backend=backend.name,
            schema=schema,
            digest=folder_digest(folder),
            **result.fields,
        )


def interrupted_message(stage: Stage, out: Path) -> str:
    """The one line printed when ``stage`` is interrupted: what is kept, how to go on.

    A stage that writes atomically keeps nothing of the interrupted run (its earlier output,
    if any, is untouched); a resumable one keeps its finished pieces (its module's
    ``kept(out)`` says how many).
    """
    if stage.resumable:
        kept = getattr(importlib.import_module(stage.entry.split(":")[0]), "kept", None)
        note = kept(out) if kept is not None else f"the finished parts of {out} are kept"
    else:
        note = f"{out} is as it was before (the stage writes it whole or not at all)"
    return f"interrupted during {stage.name}; {note}; rerun the same command to resume"


class _resumable:
    """Context manager of a resumable stage's folder: the folder itself, created if needed.

    The manifest, written last, is what marks the folder complete; the stage keeps or
    removes what an earlier run left there.
    """

    def __init__(self, out: Path) -> None:
        self.out = out

    def __enter__(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            (self.out / MANIFEST).unlink(missing_ok=True)
