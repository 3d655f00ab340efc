"""Configuration: packaged defaults -> user YAML / environment -> one frozen, typed ``Settings``.

The packaged ``defaults.yaml`` holds every default value (each key commented there) and is
registered with :mod:`dask.config` under the key ``wsb_gpu`` (the way dask-jobqueue registers
``jobqueue.yaml``), so dask's own override rules apply: ``~/.config/dask/*.yaml`` and
``DASK_WSB_GPU__...`` environment variables. On top of that come the user's
``--config run.yaml`` and the command-line options.

The *types* and *allowed values* of every setting are written once, here, as pydantic models
(one per section, ``extra="forbid"``). The merged configuration is validated once, at the
edge, before any stage or cluster starts; every problem becomes one line naming the key, the
value, where it came from and what is allowed. Stages receive their section as a typed,
frozen model (:meth:`Settings.params`), never the raw configuration.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import dask.config
import yaml
from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wsb_gpu.errors import WsbError
from wsb_gpu.models import MODELS  # the registry of names (imports no model module)

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")

with open(DEFAULTS_FILE, encoding="utf-8") as _f:
    DEFAULTS: dict = yaml.safe_load(_f)

dask.config.update_defaults(DEFAULTS)

# --- the allowed values, written once ----------------------------------------------------------

BackendName = Literal["auto", "cpu", "gpu"]
ClusterKind = Literal["none", "local", "cuda", "slurm"]
Pooling = Literal["cls", "mean"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
MentionsImpl = Literal["auto", "scan", "strings"]
VolatilityFormat = Literal["crsp", "ohlcv"]
Target = Literal["y_1", "y_5", "y_22", "y_63"]
SampleName = Literal["posts", "all"]
RidgeEngine = Literal["stats", "estimator"]
LexiconLabel = Literal["log_ratio", "har_residual"]
TopicAssign = Literal["centroid", "transform"]
TaskName = Literal["regression", "spike"]


def choices(literal: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` type.

    >>> choices(ClusterKind)
    ('none', 'local', 'cuda', 'slurm')
    """
    return tuple(typing.get_args(literal))


class Section(BaseModel):
    """A section of the settings: unknown keys refused, values frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


# --- sections ----------------------------------------------------------------------------------


class Inputs(Section):
    submissions: str | None = Field(description="wallstreetbets_submissions.zst")
    comments: str | None = Field(description="wallstreetbets_comments.zst")
    tickers: str | None = Field(description="CRSP name history, CSV or Parquet")
    crsp: str | None = Field(description="CRSP daily stock file, CSV or Parquet")


class CudaCluster(Section):
    rmm_pool_size: float | str | None
    enable_cudf_spill: bool
    share_rmm_with_torch: bool
    visible_devices: int | str | None


class SlurmCluster(Section):
    jobqueue_file: str | None
    profile: str | None
    gpu: bool
    jobs: int = Field(ge=1)
    job_name: str | None
    lifetime: bool | int | str | None
    wait_timeout: float = Field(gt=0)
    tls: bool


class Cluster(Section):
    kind: ClusterKind
    n_workers: int | None = Field(ge=1)
    threads_per_worker: int = Field(ge=1)
    memory_limit: int | str
    dashboard_address: str | None
    local_directory: str | None
    in_process_below: int | str
    cuda: CudaCluster
    slurm: SlurmCluster

    @field_validator("in_process_below")
    @classmethod
    def _size(cls, v: int | str) -> int | str:
        try:
            n = int(parse_bytes(v)) if isinstance(v, str) else int(v)
        except (ValueError, TypeError) as e:
            raise ValueError("it must be a size such as '256MiB' (0 = always start the cluster)") from e
        if n < 0:
            raise ValueError("it must be a size such as '256MiB' (0 = always start the cluster)")
        return v

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, v: int | str) -> int | str:
        if isinstance(v, str) and v != "auto":
            try:
                parse_bytes(v)
            except (ValueError, TypeError) as e:
                raise ValueError("it must be 'auto' or a size such as '4GiB'") from e
        return v


class SynthParams(Section):
    seed: int = Field(ge=0)
    tickers: int = Field(ge=10)
    start: str
    end: str
    posts_per_day: float = Field(gt=0)
    effect: float
    effect_attention: float
    effect_tone: float
    effect_topic: float
    effect_after_close: float
    malformed: float = Field(ge=0, le=0.5)
    processes: int | None = Field(ge=1)


class IngestParams(Section):
    block_size: int | str = Field(description="Newline-aligned block of decompressed JSON per task, e.g. 64MiB.")
    window: int | None = Field(ge=1, description="Blocks in flight at once [default: two per worker thread].")
    max_malformed: float = Field(
        gt=0, le=1, description="A dump whose share of malformed lines is at or above this fails ingest."
    )

    @field_validator("block_size")
    @classmethod
    def _size(cls, v: int | str) -> int | str:
        from wsb_gpu.sources.pushshift import parse_block_size

        try:
            parse_block_size(v)
        except WsbError as e:
            raise ValueError("it must be a size between 1KiB and 1GiB, such as '64MiB'") from e
        return v


class MentionsParams(Section):
    stoplist: str | None = Field(
        description="Symbols that never count bare, one per line, # comments [default: the packaged list].",
        json_schema_extra={"path": "file"},
    )
    impl: MentionsImpl = Field(
        description="Token extractor: scan = NumPy byte scanner (CPU), strings = cuDF/pandas string ops."
    )


class EmbedParams(Section):
    model: str = Field(description="Hugging Face model id, a local folder, or 'minilm' (packaged).")
    max_length: int = Field(ge=2, description="Tokens per text after truncation.")
    pooling: Pooling = Field(description="cls = first token's state; mean = attention-masked mean.")
    precision: Precision = Field(description="auto = bf16/fp16 on CUDA, bf16 on a CPU with native bf16, else fp32.")
    token_budget: int = Field(ge=1, description="Tokens per forward pass (rows x padded length).")
    allow_pickle: bool = Field(description="Also load pickle (.bin) checkpoints; only for models you trust.")
    local_files_only: bool = Field(description="Never contact the hub: a local folder or the local cache only.")
    partition_size: int = Field(ge=1, description="Mentioned posts per shard.")


class VolatilityParams(Section):
    format: VolatilityFormat = Field(description="crsp = PERMNO/date/RET/RETX/DLRET; ohlcv = Date/Ticker/Adj Close.")
    columns: dict[str, str] = Field(description="Map roles to the file's column names, e.g. ret=DlyRet,date=DlyCalDt.")
    partition_rows: int | None = Field(ge=1, description="Rows per output partition [default: 2M CPU, 20M GPU].")


class LinksParams(Section):
    cutoff: str = Field(
        description="When a post counts for the forecast at a session's close: close = posts up to the NYSE close "
        "(13:00 on early-close days); HH:MM = up to that New York time (or the close when earlier); "
        "utc_day = the post's UTC day (the seed's rule; look-ahead)."
    )

    @field_validator("cutoff", mode="before")
    @classmethod
    def _cutoff(cls, v: Any) -> str:
        from wsb_gpu.sources.sessions import parse_cutoff

        try:
            return parse_cutoff(v)
        except WsbError as e:
            raise ValueError("it must be close, utc_day or a New York time HH:MM such as '15:45' (quoted)") from e


class RidgeParams(Section):
    engine: RidgeEngine = Field(
        description="Ridge engine: stats = from sufficient statistics; estimator = scikit-learn / cuML fits.",
        json_schema_extra={"cli": "--engine"},
    )
    n_lambdas: int = Field(ge=1)
    lambda_min: float = Field(gt=0)
    lambda_max: float = Field(gt=0)
    cv_folds: int = Field(ge=2)
    penalize_har: bool = Field(
        description="Penalise the HAR terms too (false: only the text columns are shrunk, so ridge nests HAR)."
    )


class EnetParams(Section):
    l1_ratios: tuple[float, ...] = Field(min_length=1)
    n_lambdas: int = Field(ge=1)
    eps: float = Field(gt=0, lt=1)
    cv_folds: int = Field(ge=2)
    penalize_har: bool
    max_iter: int = Field(ge=1)
    tol: float = Field(gt=0)

    @field_validator("l1_ratios")
    @classmethod
    def _ratios(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        bad = [a for a in v if not 0 < a <= 1]
        if bad:
            raise ValueError(f"every l1_ratio must be in (0, 1] (0 is ridge: use the ridge model), got {bad}")
        return tuple(sorted({float(a) for a in v}))


class SequenceParams(Section):
    feature_set: str
    length: int = Field(ge=1)
    pca_components: int = Field(ge=0)
    hidden: int = Field(ge=1)
    filters: int = Field(ge=1)
    kernel: int = Field(ge=1)
    dense: int = Field(ge=1)
    epochs: int = Field(ge=1)
    patience: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    seed: int


class HarFeParams(Section):
    shrinkage: float = Field(ge=0)


class SpikeParams(Section):
    k: float = Field(gt=0)
    C: float = Field(gt=0)
    n_estimators: int = Field(ge=1)


class XGBoostParams(Section):
    n_estimators: int = Field(ge=1)
    max_depth: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    subsample: float = Field(gt=0, le=1)
    colsample_bytree: float = Field(gt=0, le=1)
    min_child_weight: float = Field(ge=0)
    max_bin: int = Field(ge=2)
    early_stopping_rounds: int = Field(ge=1)
    distributed_min_rows: int = Field(ge=0)
    seed: int


class LexiconParams(Section):
    label: LexiconLabel
    min_dates: int = Field(ge=1)


class TfidfParams(Section):
    terms: int = Field(ge=1)
    min_df: int = Field(ge=1)


class TopicsParams(Section):
    sample: int = Field(ge=50)
    max_topics: int = Field(ge=1, le=99)
    min_topic_size: int = Field(ge=2)
    n_neighbors: int = Field(ge=2)
    n_components: int = Field(ge=2)
    assign: TopicAssign
    seed: int


class McsParams(Section):
    reps: int = Field(ge=100)
    block_size: int | None = Field(ge=1)
    seed: int


class TrainParams(Section):
    models: tuple[str, ...] = Field(description=f"Comma-separated models: {','.join(MODELS)}.")
    target: Target = Field(description="Forecast target.")
    train_years: int = Field(ge=1, description="Years per training window.")
    sample: SampleName = Field(description="posts = stock-days with posts; all = every stock-day.")
    task: TaskName = Field(description="regression = forecast the target; spike = classify y_1 > k * vol_22.")
    forecast_floor: float = Field(
        gt=0, lt=1, description="QLIKE floor on forecasts, as a share of the training window's mean target."
    )
    feature_sets: dict[str, tuple[str, ...]]
    ridge: RidgeParams
    enet: EnetParams
    sequence: SequenceParams
    spike: SpikeParams
    har_fe: HarFeParams
    xgboost: XGBoostParams
    lexicon: LexiconParams
    tfidf: TfidfParams
    topics: TopicsParams
    mcs: McsParams

    @field_validator("feature_sets", mode="before")
    @classmethod
    def _sets(cls, v: Any) -> dict[str, tuple[str, ...]]:
        from wsb_gpu.signals.families import check_feature_sets

        if not isinstance(v, Mapping):
            raise ValueError("it must be a mapping of set name -> list of families, e.g. {har: [], vader: [vader]}")
        try:
            return check_feature_sets(v)
        except WsbError as e:
            raise ValueError(str(e)) from None

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v: Any) -> tuple[str, ...]:
        asked = [m.strip() for m in (v.split(",") if isinstance(v, str) else v) if str(m).strip()]
        allowed = list(MODELS)  # read when validating: a model registered at run time is accepted
        bad = [m for m in asked if m not in allowed]
        if bad:
            raise ValueError(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(allowed)} (comma-separated)")
        return tuple(asked)


class EmptyParams(Section):
    """The parameters of a stage that has no settings of its own (features, report)."""


class Config(Section):
    """The whole configuration (the layout of ``defaults.yaml``)."""

    backend: BackendName
    lake: str
    profile: str | None
    inputs: Inputs
    cluster: Cluster
    synth: SynthParams
    ingest: IngestParams
    mentions: MentionsParams
    embed: EmbedParams
    volatility: VolatilityParams
    links: LinksParams
    train: TrainParams


# Keys whose value is a free-form mapping (any sub-keys allowed).
OPEN_MAPPINGS = {"volatility.columns", "train.feature_sets"}


# --- the frozen settings -----------------------------------------------------------------------


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting of one command, validated once and read-only.

    ``data`` is the merged configuration as plain (frozen) mappings; ``config`` is the same,
    typed. ``params(name)`` gives a stage its section as a typed model; ``stage(name)`` the
    same as a plain ``dict``.
    """

    data: Mapping[str, Any]
    sources: tuple[str, ...] = field(default=())
    config: Config | None = field(default=None, compare=False, repr=False)
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """The dotted keys a layer above the packaged defaults set (a config file, the
    environment's dask config is not counted, the command line)."""

    @property
    def backend(self) -> str:
        return self.data["backend"]

    @property
    def lake(self) -> Path:
        return Path(self.data["lake"])

    @property
    def profile(self) -> str | None:
        return self.data["profile"]

    @property
    def inputs(self) -> Mapping[str, Any]:
        return self.data["inputs"]

    @property
    def cluster(self) -> Mapping[str, Any]:
        return self.data["cluster"]

    def params(self, name: str) -> Section:
        """The typed section of one stage (``ingest``, ``embed``, ``train`` ...)."""
        assert self.config is not None
        return getattr(self.config, name) if name in Config.model_fields else EmptyParams()

    def stage(self, name: str) -> dict[str, Any]:
        """Parameters of one stage (``ingest``, ``embed``, ``train`` ...) as a new dict."""
        return _thaw(self.data[name])

    def get(self, dotted: str) -> Any:
        """One value by dotted key, e.g. ``settings.get("cluster.slurm.jobs")``."""
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return _thaw(node)

    def replace(self, **overrides: Any) -> Settings:
        """A checked copy with dotted-key overrides (``replace(**{"cluster.kind": "none"})``)."""
        data = _thaw(self.data)
        origins: dict[str, str] = {}
        _apply_overrides(data, overrides, "replace()", origins)
        out = _validated(data, self.sources, origins)
        return dataclasses.replace(out, explicit=self.explicit | out.explicit)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable copy (for manifests and reports)."""
        return _thaw(self.data)


# --- merging layers ------------------------------------------------------------------------------


def _known_keys(tree: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        dotted = f"{prefix}{k}"
        keys.append(dotted)
        if isinstance(v, Mapping) and dotted not in OPEN_MAPPINGS:
            keys.extend(_known_keys(v, dotted + "."))
    return keys


def _merge_checked(base: dict, update: Mapping, origin: str, origins: dict[str, str], prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place, refusing keys the defaults do not know;
    ``origins`` records which layer set each leaf (for the error messages)."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = _known_keys(DEFAULTS["wsb_gpu"])
            close = difflib.get_close_matches(dotted, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            msg = f"unknown setting '{dotted}' in {origin}; {hint}the valid keys are listed in docs/configuration.md"
            raise WsbError(msg)
        if isinstance(base[key], dict) and dotted not in OPEN_MAPPINGS:
            if not isinstance(value, Mapping):
                msg = f"setting '{dotted}' in {origin} must be a mapping of sub-keys, got {value!r}; see docs/configuration.md"
                raise WsbError(msg)
            _merge_checked(base[key], value, origin, origins, dotted + ".")
        else:
            base[key] = copy.deepcopy(value)
            origins[dotted] = origin


def _apply_overrides(data: dict, overrides: Mapping[str, Any], origin: str, origins: dict[str, str]) -> None:
    for dotted, value in overrides.items():
        if value is None:
            continue
        nested: dict = {}
        node = nested
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        _merge_checked(data, nested, origin, origins)


# --- validation ----------------------------------------------------------------------------------


def _annotation(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The type annotation of the field at ``loc`` of ``root`` (None if not found)."""
    model: Any = root
    annotation = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return annotation
        annotation = fields[part].annotation
        model = annotation
    return annotation


def _allowed(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    """What the setting accepts, in words, for one pydantic error."""
    kind = error["type"]
    if kind == "literal_error":
        literal = _annotation(root, error["loc"])
        values = choices(literal) if literal is not None else ()
        return "choose one of: " + ", ".join(values) if values else error["msg"]
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    if kind == "missing":
        return "the setting is missing (a packaged default was removed?)"
    msg = str(error["msg"])
    return "it " + msg[len("Input ") :] if msg.startswith("Input ") else msg


_MEMBER = re.compile(r"^(int|str|float|bool|none|literal\[.*\]|function-\w+\[.*\]|union\[.*\])$")


def validation_messages(
    e: ValidationError,
    origins: Mapping[str, str] | None = None,
    *,
    root: type[BaseModel] | None = None,
    prefix: str = "",
) -> list[str]:
    """One line per problem of a pydantic error: key, value, origin and what is allowed.

    A problem with a union type (``int | str``) is reported once, not once per member.
    ``prefix`` is the section of ``root`` (``"train."``) for keys and origins.
    """
    root = root or Config
    lines: dict[str, str] = {}
    for error in e.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and _MEMBER.match(p)))
        error = {**error, "loc": loc}
        dotted = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "the configuration"
        if dotted in lines:
            continue
        origin = (origins or {}).get(dotted, "the configuration")
        value = error.get("input")
        lines[dotted] = f"setting '{dotted}' is {value!r} in {origin}; {_allowed(error, root)}"
    return list(lines.values())


def _validated(data: dict, sources: tuple[str, ...], origins: Mapping[str, str]) -> Settings:
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise WsbError("\n".join(validation_messages(e, origins))) from None
    return Settings(_freeze(config.to_dict()), tuple(sources), config, frozenset(origins))


def validate_params(model: type[Section], values: Mapping[str, Any], section: str) -> Section:
    """Validate one stage's parameters (defaults of ``section`` updated by ``values``).

    Used where a stage is called from Python rather than through :func:`load_settings`.

    >>> validate_params(EmbedParams, {"max_length": 32}, "embed").max_length
    32
    """
    data = copy.deepcopy(DEFAULTS["wsb_gpu"].get(section, {}))
    origins: dict[str, str] = {}
    _merge_checked(data, values, "the stage's arguments", origins, prefix=f"{section}." if data else "")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = validation_messages(e, origins, root=model, prefix=f"{section}.")
        raise WsbError("\n".join(lines)) from None


# --- reading files and building the settings -----------------------------------------------------


def read_config_file(path: str | Path) -> dict:
    """Read a user YAML file; its settings may sit under a top-level ``wsb_gpu:`` key."""
    path = Path(path)
    if not path.is_file():
        msg = f"config file '{path}' does not exist; pass --config with the path of a YAML file (examples/ has some)"
        raise WsbError(msg)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        msg = f"config file '{path}' is not valid YAML{where}: {getattr(e, 'problem', e)}; fix the syntax"
        raise WsbError(msg) from e
    except (OSError, UnicodeDecodeError) as e:
        msg = f"config file '{path}' cannot be read ({e}); pass a readable YAML file"
        raise WsbError(msg) from e
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        msg = (
            f"config file '{path}' must hold a mapping of settings, got {type(raw).__name__}; see docs/configuration.md"
        )
        raise WsbError(msg)
    return dict(raw["wsb_gpu"]) if isinstance(raw.get("wsb_gpu"), Mapping) else dict(raw)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the frozen, validated settings of one command.

    Parameters
    ----------
    config_file
        A user YAML file (same layout as ``defaults.yaml``), or None.
    overrides
        Dotted keys to values, from command-line options; ``None`` values are ignored.

    Raises
    ------
    WsbError
        Naming every unknown key or invalid value, one line each.

    Examples
    --------
    >>> s = load_settings(overrides={"backend": "cpu", "cluster.kind": "none"})
    >>> s.backend, s.cluster["kind"], s.params("embed").max_length
    ('cpu', 'none', 64)
    """
    data = copy.deepcopy(DEFAULTS["wsb_gpu"])
    origins: dict[str, str] = {}
    # dask.config holds the defaults plus ~/.config/dask files and DASK_WSB_GPU__* variables.
    _merge_checked(data, dask.config.get("wsb_gpu", default={}), "dask config / environment", origins)
    for dotted in list(origins):
        if origins[dotted] == "dask config / environment" and _get(DEFAULTS["wsb_gpu"], dotted) == _get(data, dotted):
            del origins[dotted]  # the packaged default itself, as dask.config holds it
    sources = ["defaults.yaml"]
    if config_file is not None:
        _merge_checked(data, read_config_file(config_file), f"config file '{config_file}'", origins)
        sources.append(str(config_file))
    if overrides:
        _apply_overrides(data, overrides, "command-line options", origins)
        sources.append("command line")
    return _validated(data, tuple(sources), origins)


def _get(tree: Mapping, dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
