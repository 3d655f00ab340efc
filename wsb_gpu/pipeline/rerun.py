"""Rerun keys: when can ``wsb-gpu run`` skip a stage?

After a stage succeeds the pipeline writes ``_pipeline.json`` beside the stage's own
``_manifest.json``: a key hashed from what the stage's output depends on — its parameters,
the backend, the content fingerprints of the raw files it reads and the content digests of
the datasets it reads (:mod:`wsb_gpu.fingerprint`) — a run id, and the SHA-256 of the
manifest. On the next run a stage whose output is complete, whose manifest is the one
recorded and whose key is unchanged is skipped.

Everything in the key is content: touching an input without changing it reruns nothing,
and a stage that reruns but writes the same data as before (a ticker file edited in a way
that changes no mention) leaves what follows it up to date.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wsb_gpu.lake import MANIFEST, file_fingerprint, read_json, read_manifest, write_json

PIPELINE_FILE = "_pipeline.json"


def key_material(
    stage: str, params: Mapping[str, Any], backend: str, inputs: Mapping[str, str | None], upstream: Mapping[str, Path]
) -> dict[str, Any]:
    """What a stage's output depends on: parameters, backend, raw inputs, upstream data.

    Upstream datasets are identified by the content digest their manifest records (for a
    dataset written before digests existed, by the run id the pipeline gave it).
    """
    return {
        "stage": stage,
        "params": dict(params),
        "backend": backend,
        "inputs": {k: file_fingerprint(p) if p and Path(p).exists() else None for k, p in inputs.items()},
        "upstream": {name: _identity(folder) for name, folder in upstream.items()},
    }


def _identity(folder: Path) -> str | None:
    manifest = read_manifest(folder) or {}
    return manifest.get("digest") or record(folder).get("run_id")


def digest(material: Mapping[str, Any]) -> str:
    """The key: SHA-256 of the material as canonical JSON."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def record(folder: Path) -> dict[str, Any]:
    """The pipeline's record of a dataset folder (empty when it has none)."""
    found = read_json(folder / PIPELINE_FILE)
    return found if isinstance(found, dict) else {}


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
    found = record(folder)
    return bool(found) and found.get("key") == key and found.get("manifest_sha256") == _manifest_digest(folder)


def write_record(folder: Path, key: str, material: Mapping[str, Any]) -> None:
    """Record that the pipeline wrote ``folder`` under ``key``, with a new run id."""
    write_json(
        folder / PIPELINE_FILE,
        {"key": key, "run_id": uuid.uuid4().hex, "manifest_sha256": _manifest_digest(folder), **material},
    )
