"""Configuration: packaged defaults -> user YAML / environment -> one frozen ``Settings``.

The packaged ``defaults.yaml`` is registered with :mod:`dask.config` under the key
``wsb_gpu`` (the way dask-jobqueue registers ``jobqueue.yaml``), so dask's own override
rules apply: ``~/.config/dask/*.yaml`` and ``DASK_WSB_GPU__...`` environment variables.
On top of that come the user's ``--config run.yaml`` and the command-line options. Only
the edge (the CLI, the pipeline) reads configuration; stages receive plain arguments.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import dask.config
import yaml

from wsb_gpu.errors import WsbError

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")

with open(DEFAULTS_FILE, encoding="utf-8") as _f:
    DEFAULTS: dict = yaml.safe_load(_f)

dask.config.update_defaults(DEFAULTS)

CHOICES = {
    "backend": ("auto", "cpu", "gpu"),
    "cluster.kind": ("none", "local", "cuda", "slurm"),
    "embed.pooling": ("cls", "mean"),
    "embed.precision": ("auto", "fp32", "bf16", "fp16"),
    "volatility.format": ("crsp", "ohlcv"),
    "train.target": ("y_1", "y_5", "y_22", "y_63"),
    "train.sample": ("posts", "all"),
    "train.ridge.engine": ("stats", "estimator"),
}

# Keys whose value is a free-form mapping (any sub-keys allowed).
OPEN_MAPPINGS = {"volatility.columns"}


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting of one command, resolved once and read-only.

    Attributes mirror the top-level sections of ``defaults.yaml``; ``stage(name)`` gives a
    stage's parameters as a plain ``dict`` to pass on as keyword arguments.
    """

    data: Mapping[str, Any]
    sources: tuple[str, ...] = field(default=())

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
        """A copy with dotted-key overrides (``replace(**{"cluster.kind": "none"})``)."""
        data = _thaw(self.data)
        _apply_overrides(data, overrides, origin="replace()")
        _validate_choices(data, origin="replace()")
        return Settings(_freeze(data), self.sources)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable copy (for manifests and reports)."""
        return _thaw(self.data)


def _known_keys(tree: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        dotted = f"{prefix}{k}"
        keys.append(dotted)
        if isinstance(v, Mapping) and dotted not in OPEN_MAPPINGS:
            keys.extend(_known_keys(v, dotted + "."))
    return keys


def _merge_checked(base: dict, update: Mapping, origin: str, prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place, refusing keys the defaults do not know."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = _known_keys(DEFAULTS["wsb_gpu"])
            close = difflib.get_close_matches(dotted, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            msg = (
                f"unknown setting '{dotted}' in {origin}; {hint}"
                "the valid keys are listed in docs/configuration.md"
            )
            raise WsbError(msg)
        if isinstance(base[key], dict) and dotted not in OPEN_MAPPINGS:
            if not isinstance(value, Mapping):
                msg = (
                    f"setting '{dotted}' in {origin} must be a mapping of sub-keys, "
                    f"got {value!r}; see docs/configuration.md"
                )
                raise WsbError(msg)
            _merge_checked(base[key], value, origin, dotted + ".")
        else:
            base[key] = copy.deepcopy(value)


def _apply_overrides(data: dict, overrides: Mapping[str, Any], origin: str) -> None:
    for dotted, value in overrides.items():
        if value is None:
            continue
        nested: dict = {}
        node = nested
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        _merge_checked(data, nested, origin)


def _validate_choices(data: Mapping, origin: str) -> None:
    for dotted, allowed in CHOICES.items():
        node: Any = data
        for part in dotted.split("."):
            node = node[part]
        if node not in allowed:
            msg = (
                f"setting '{dotted}' is {node!r} in {origin}; "
                f"choose one of: {', '.join(allowed)}"
            )
            raise WsbError(msg)


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
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        msg = f"config file '{path}' must hold a mapping of settings, got {type(raw).__name__}; see docs/configuration.md"
        raise WsbError(msg)
    return dict(raw.get("wsb_gpu", raw)) if "wsb_gpu" in raw else dict(raw)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the frozen settings of one command.

    Parameters
    ----------
    config_file
        A user YAML file (same layout as ``defaults.yaml``), or None.
    overrides
        Dotted keys to values, from command-line options; ``None`` values are ignored.

    Examples
    --------
    >>> s = load_settings(overrides={"backend": "cpu", "cluster.kind": "none"})
    >>> s.backend, s.cluster["kind"]
    ('cpu', 'none')
    """
    data = copy.deepcopy(DEFAULTS["wsb_gpu"])
    # dask.config holds the defaults plus ~/.config/dask files and DASK_WSB_GPU__* variables.
    _merge_checked(data, dask.config.get("wsb_gpu", default={}), "dask config / environment")
    sources = ["defaults.yaml"]
    if config_file is not None:
        _merge_checked(data, read_config_file(config_file), f"config file '{config_file}'")
        sources.append(str(config_file))
    if overrides:
        _apply_overrides(data, overrides, "command-line options")
        sources.append("command line")
    _validate_choices(data, "the configuration")
    return Settings(_freeze(data), tuple(sources))
