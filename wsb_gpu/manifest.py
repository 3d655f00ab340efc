"""The records of the lake: ``_manifest.json`` in every dataset folder, and atomic JSON files.

The stage runner (:func:`wsb_gpu.stages.base.run_stage`) writes a dataset's manifest last,
so a folder with a readable manifest holds a whole dataset (:func:`is_complete`). The
manifest is also the one record of whether the dataset is current: its ``key`` is the
rerun key the runner computed from the stage, its output-relevant settings and the
identities of its inputs (:meth:`wsb_gpu.stages.base.Stage.rerun_key`); ``wsb-gpu run``
skips a stage whose manifest carries the key it would write now, and the resumable
``embed`` keeps finished shards only under the same key. Its ``digest`` (of the data files,
:func:`wsb_gpu.fingerprint.folder_digest`) is the dataset's identity in the keys of the
stages that read it.

:class:`Manifest` types the fields the runner writes for every stage; a stage adds its own
counts (typed by the stage: ``IngestFields`` … in its module).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

if TYPE_CHECKING:
    from wsb_gpu.fingerprint import Fingerprint

MANIFEST = "_manifest.json"


class Manifest(TypedDict):
    """The fields of ``_manifest.json`` that every stage's has (written by the runner).

    ``inputs`` are the content fingerprints of the inputs (path and digest), ``params`` the
    stage's whole settings section (output-neutral settings included, as they were used),
    ``key`` the rerun key (settings that change the output only), ``digest`` the content
    digest of the data files.
    """

    written_at: str
    host: str
    stage: str
    key: str
    inputs: dict[str, Fingerprint]
    params: dict[str, Any]
    rows_in: int
    rows_out: int
    seconds: float
    backend: str
    schema: dict[str, str]
    digest: str


def write_json(path: str | Path, data: Any) -> str:
    """Write ``data`` as JSON to ``path`` atomically (a hidden temporary file, then a rename).

    Returns the text written. Paths, dates, tuples and NumPy scalars are converted.
    """
    path = Path(path)
    text = json.dumps(data, indent=2, default=_json_default) + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return text


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_manifest(folder: str | Path, **fields: Any) -> Manifest:
    """Write ``_manifest.json`` into ``folder`` (atomically) and return what was written
    (as it reads back: tuples are lists)."""
    manifest = {
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        **fields,
    }
    return cast(Manifest, json.loads(write_json(Path(folder) / MANIFEST, manifest)))


def read_manifest(folder: str | Path) -> Manifest | None:
    """The manifest of a dataset folder, or None if it has none (incomplete or absent)."""
    manifest = read_json(Path(folder) / MANIFEST)
    return cast(Manifest, manifest) if isinstance(manifest, dict) else None


def is_complete(folder: str | Path) -> bool:
    """True when the folder holds a readable manifest (written last, so the data is whole)."""
    return read_manifest(folder) is not None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (Path,)):
        return str(obj)
    if isinstance(obj, (dt.date, dt.datetime)):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "item"):  # NumPy scalars
        return obj.item()
    return str(obj)
