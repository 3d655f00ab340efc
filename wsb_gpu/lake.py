"""Datasets in the run directory ("lake"): where a stage may write, atomic writes, and one
writer at a time.

Every stage writes into a hidden temporary folder next to its destination and renames it
into place only when the data and ``_manifest.json`` are complete, so a crash never leaves
a half-written dataset that looks complete. Parquet readers skip files whose names start
with ``_`` or ``.``, so the manifest lives inside the dataset folder (the manifest itself
and the lake's JSON files: :mod:`wsb_gpu.manifest`).

Nothing the user owns is replaced: :func:`check_target` lets a stage write only to a new
path, an empty folder or a dataset of its own. :func:`lock` keeps a second writer out of a
lake or an output folder while one runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import read_manifest

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


# --- where a stage may write ---------------------------------------------------------------------


def _describe(folder: Path) -> str:
    """``'3 files, e.g. thesis.txt, data.zst'`` for an error message."""
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} ({shown})"


def check_target(
    out: str | Path, stage: str, *, dataset: str = "", inputs: Iterable[Path] = (), claims: Iterable[str] = ()
) -> Path:
    """Refuse, before any work, an output path a stage must not replace.

    A stage may write to a missing path, an empty folder, or a dataset this project wrote
    for the same stage (its manifest says so, or it holds one of the stage's own ``claims``
    files, such as the state file of an interrupted resumable stage). Anything else — a
    file, a folder with other content, the current directory, a folder that holds the
    stage's own inputs — is refused with one line naming the path, what is in it and the fix.

    Returns the path, resolved.
    """
    path = Path(out).expanduser()
    resolved = path.resolve()
    fix = "choose an empty or new folder, or delete it yourself"
    for source in inputs:
        src = Path(source).resolve()
        if resolved == src or resolved in src.parents:
            msg = f"--out '{path}' holds the stage's own input '{source}'; {fix}"
            raise WsbError(msg)
    if resolved == Path.cwd().resolve() or resolved == resolved.parent:
        msg = f"--out '{path}' is the current folder (or the file-system root); {fix}"
        raise WsbError(msg)
    for parent in resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                msg = f"--out '{path}' goes through '{parent}', which is a file: a folder is needed there; fix the path"
                raise WsbError(msg)
            break
    if not path.exists() and not path.is_symlink():
        return resolved
    if not path.is_dir():
        msg = f"--out '{path}' is a file, not a folder; {fix}"
        raise WsbError(msg)
    if not any(path.iterdir()):
        return resolved
    manifest = read_manifest(path)
    if manifest is not None and manifest.get("stage") == stage:
        return resolved
    if any((path / name).exists() for name in claims):
        return resolved
    what = f"a {manifest['stage']} dataset" if manifest and manifest.get("stage") else _describe(path)
    msg = f"--out '{path}' already holds {what}, not {dataset or stage} written by `wsb-gpu {stage}`; {fix}"
    raise WsbError(msg)


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """Remove what an interrupted write of ``out`` left beside it: ``.NAME.tmp-*`` and
    ``.NAME.old-*`` folders. Only call it while holding ``out``'s lock (:func:`lock`),
    so that no other writer's temporary folder is taken for a leftover."""
    out = Path(out)
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for p in out.parent.iterdir():
        if p.name.startswith((f".{out.name}{TMP_MARK}", f".{out.name}{OLD_MARK}")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_dataset(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out`` in one rename.

    On an exception the temporary folder is removed and ``out`` is left as it was. Whether
    ``out`` may be replaced at all is :func:`check_target`'s decision, made before.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with atomic_dataset(root / "ds") as tmp:
    ...     _ = (tmp / "part.0").write_text("x")
    >>> sorted(p.name for p in (root / "ds").iterdir())
    ['part.0']
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}{OLD_MARK}{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- one writer at a time --------------------------------------------------------------------------

_HELD: dict[str, int] = {}
_HELD_LOCK = threading.Lock()


def lock_path(target: str | Path) -> Path:
    """The lock file of a lake or an output folder: ``.NAME.lock`` beside it.

    >>> lock_path("/data/run/embeddings").name
    '.embeddings.lock'
    """
    target = Path(target).expanduser().resolve()
    return target.parent / f".{target.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        found = json.loads(os.read(fd, 65536) or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _acquire(path: Path, target: Path, what: str) -> tuple[int, dict[str, Any]]:
    """Open and exclusively ``flock`` the lock file; return it and the previous holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            h = _read_holder(fd)
            os.close(fd)
            who = (
                (
                    f"pid {h.get('pid', '?')} on {h.get('host', '?')} since {h.get('started_at', '?')}"
                    f" ({h.get('command', '?')})"
                )
                if h
                else "another process"
            )
            msg = f"{what} '{target}' is being written by {who}; wait for it to finish or stop it (lock: {path})"
            raise WsbError(msg) from None
        # The holder before us may have removed the file between our open and our lock:
        # then we locked a file nobody else will ever see, so start over on the new one.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, _read_holder(fd)
        os.close(fd)


@contextlib.contextmanager
def lock(target: str | Path, what: str) -> Iterator[None]:
    """Hold the exclusive lock of ``target`` (a lake or an output folder) for the block.

    A second writer is refused at once with one line naming the holder (pid, host, start
    time, command). The lock is an OS file lock (``flock`` on ``.NAME.lock`` beside the
    target, holding the holder's description), which the kernel releases when its process
    dies: a killed run never blocks the next one, which takes the lock over with a message
    naming the dead holder. The file is removed when the lock is released. The same process
    may lock a target it already holds (``wsb-gpu run`` holds the lake while its stages run).
    """
    target = Path(target).expanduser()
    path = lock_path(target)
    key = str(path)
    with _HELD_LOCK:
        reentered = key in _HELD
        if reentered:
            _HELD[key] += 1
    if reentered:
        try:
            yield
        finally:
            with _HELD_LOCK:
                _HELD[key] -= 1
        return
    fd, previous = _acquire(path, target, what)
    try:
        pid = previous.get("pid")
        if previous and isinstance(pid, int) and pid != os.getpid():
            alive = previous.get("host") == socket.gethostname() and _alive(pid)
            if not alive:
                print(
                    f"note: taking over the lock of {target}, left by pid {pid} on {previous.get('host', '?')} "
                    f"(started {previous.get('started_at', '?')}), which is no longer running",
                    file=sys.stderr,
                )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:4])) or "python",
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(holder).encode())
        with _HELD_LOCK:
            _HELD[key] = 1
        yield
    finally:
        with _HELD_LOCK:
            _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: a waiter that opened it starts over
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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
