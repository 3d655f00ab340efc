"""Datasets in the run directory ("lake"): atomic writes and manifests.

Every stage writes into a hidden temporary folder next to its destination and renames it
into place only when the data and ``_manifest.json`` are complete, so a crash never leaves
a half-written dataset that looks complete. Parquet readers skip files whose names start
with ``_`` or ``.``, so the manifest lives inside the dataset folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

MANIFEST = "_manifest.json"


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """Path, size and modification time of an input file or folder (for rerun checks)."""
    p = Path(path)
    if p.is_dir():
        manifest = read_manifest(p)
        if manifest is not None:
            return {"path": str(p.resolve()), "manifest_written": manifest.get("written_at")}
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return {
            "path": str(p.resolve()),
            "size": sum(f.stat().st_size for f in files),
            "mtime": max((f.stat().st_mtime for f in files), default=0.0),
        }
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": st.st_mtime}


@contextlib.contextmanager
def atomic_dataset(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out`` in one rename.

    On an exception the temporary folder is removed and ``out`` is left as it was.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with atomic_dataset(root / "ds") as tmp:
    ...     _ = (tmp / "part.0").write_text("x")
    >>> sorted(p.name for p in (root / "ds").iterdir())
    ['part.0']
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


def write_manifest(folder: str | Path, **fields: Any) -> dict[str, Any]:
    """Write ``_manifest.json`` into ``folder`` (atomically) and return what was written
    (as it reads back: tuples are lists)."""
    manifest = {
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        **fields,
    }
    return json.loads(write_json(Path(folder) / MANIFEST, manifest))


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a dataset folder, or None if it has none (incomplete or absent)."""
    manifest = read_json(Path(folder) / MANIFEST)
    return manifest if isinstance(manifest, dict) else None


def is_complete(folder: str | Path) -> bool:
    """True when the folder holds a readable manifest (written last, so the data is whole)."""
    return read_manifest(folder) is not None


class Timer:
    """Wall-clock timer used for manifests and summaries.

    >>> with Timer() as t:
    ...     pass
    >>> t.seconds >= 0
    True
    """

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


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
