"""Content fingerprints of inputs and datasets: what rerun decisions are made from.

A file's fingerprint is the xxHash3 (128-bit) of its bytes, streamed in 8 MiB pieces. Since
hashing a 7.8 GB dump takes seconds, the digest is cached (``~/.cache/wsb_gpu/fingerprints.json``,
or ``$WSB_GPU_CACHE``) under the file's path, size, modification time, *status-change* time
and inode: an unchanged file is never read twice, while any write to it (even one whose
modification time is restored afterwards with ``touch -r``, which still moves the
status-change time) or a replacement by another file misses the cache and is hashed again.
Touching a file without changing it re-hashes it once and finds the same digest, so nothing
downstream reruns.

A dataset folder's fingerprint is the digest its manifest records (the stage runner hashes
every data file once, when it writes the dataset); a folder without a manifest (written by
hand) is hashed file by file.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypedDict

import xxhash

from wsb_gpu.manifest import read_manifest

CHUNK = 8 << 20
_CACHE_LOCK = threading.Lock()


def cache_path() -> Path:
    """Where digests of unchanged files are remembered."""
    root = os.environ.get("WSB_GPU_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "wsb_gpu")
    return Path(os.path.expanduser(root)) / "fingerprints.json"


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _load_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store_cache(entries: dict[str, Any]) -> None:
    """Merge ``entries`` into the cache file (best effort: a cache that cannot be written
    only costs a re-hash next time)."""
    path = cache_path()
    with _CACHE_LOCK:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = _load_cache()
            data.update(entries)
            if len(data) > 10_000:  # bounded: forget the oldest half
                data = dict(list(data.items())[-5_000:])
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        except OSError:
            pass


def hash_file(path: str | Path) -> str:
    """``xxh3_128`` hex digest of a file's bytes (streamed, read once).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "f"; _ = p.write_bytes(b"abc")
    >>> hash_file(p)
    '06b05ab6733a618578af5f94892f3950'
    """
    h = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def file_digests(paths: Iterable[Path]) -> dict[str, str]:
    """Digests of several files, from the cache where the file is unchanged."""
    cache = _load_cache()
    out: dict[str, str] = {}
    fresh: dict[str, Any] = {}
    for path in paths:
        real = os.path.realpath(path)
        st = os.stat(real)
        hit = cache.get(real)
        if isinstance(hit, dict) and hit.get("stat") == _stat_key(st):
            out[str(path)] = hit["xxh3_128"]
            continue
        digest = hash_file(real)
        out[str(path)] = digest
        fresh[real] = {"stat": _stat_key(os.stat(real)), "xxh3_128": digest}
    if fresh:
        _store_cache(fresh)
    return out


def data_files(folder: Path) -> list[Path]:
    """The files of a dataset folder that hold its data, in a stable order (hidden files,
    ``_manifest.json`` and the pipeline's ``_*.json`` records excluded)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
    )


def folder_digest(folder: Path) -> str:
    """One digest of a folder's data files: their relative names and contents."""
    files = data_files(folder)
    digests = file_digests(files)
    h = xxhash.xxh3_128()
    for f in files:
        h.update(f"{f.relative_to(folder).as_posix()}\0{digests[str(f)]}\n".encode())
    return h.hexdigest()


class _Identity(TypedDict):
    path: str
    digest: str


# (total=False rather than NotRequired: typing has NotRequired from Python 3.11 only.)
class Fingerprint(_Identity, total=False):
    """An input's fingerprint: its resolved path, its content digest, and a file's size."""

    size: int


def fingerprint(path: str | Path) -> Fingerprint:
    """What an input's rerun decisions depend on: its resolved path and content digest.

    A dataset folder with a manifest gives the digest recorded there; any other folder or
    file is hashed (from the cache when unchanged).
    """
    p = Path(path)
    resolved = str(p.resolve())
    if p.is_dir():
        manifest = read_manifest(p)
        if manifest is not None and manifest.get("digest"):
            return {"path": resolved, "digest": manifest["digest"]}
        return {"path": resolved, "digest": folder_digest(p)}
    st = p.stat()
    return {"path": resolved, "size": st.st_size, "digest": file_digests([p])[str(p)]}
