"""Stage ``ingest``: Pushshift zstd dumps -> the **posts** dataset.

Design (why it is shaped like this): a dump is one zstd stream that cannot be split, and
decompression runs at ~500 MB/s on one core while JSON parsing is several times slower.
So the driver streams each file (one thread per file, so the two dumps decompress in
parallel) and cuts newline-aligned blocks (:func:`wsb_gpu.sources.pushshift.iter_blocks`);
each block is handed to a worker, which validates and parses it and writes its own
Parquet part into the temporary dataset folder, returning only counts. At most ``window``
blocks are in flight (about two per worker thread), so memory stays bounded whatever the
size of the dump: a 50 GB dump is never held, only ``window + 2`` blocks are.

Output columns (``docs/inputs.md``): ``id, kind, created_utc (int64), date (date32, UTC),
author, text, source``. The manifest holds per-file counts
``{lines, valid, malformed: {blank, bad_utf8, bad_json, bad_record}, surrogates_replaced}``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from wsb_gpu.backend import Backend
from wsb_gpu.errors import WsbError
from wsb_gpu.lake import atomic_dataset, file_fingerprint, parquet_schema, write_manifest
from wsb_gpu.prefetch import prefetch
from wsb_gpu.sources.pushshift import (
    REASONS,
    BlockCounts,
    iter_blocks,
    parse_block,
    parse_block_size,
    posts_schema,
    to_posts,
)

STAGE = "ingest"
COLUMNS_OUT = ("id", "kind", "created_utc", "date", "author", "text", "source")


def ingest(
    submissions: str | Path | None,
    comments: str | Path | None,
    out: str | Path,
    *,
    backend: Backend,
    client: Any = None,
    block_size: int | str = "64MiB",
    progress: bool = False,
    window: int | None = None,
) -> dict:
    """Read the submissions and comments dumps into the posts dataset at ``out``.

    Parameters
    ----------
    submissions, comments
        Pushshift dumps (zstd NDJSON; plain NDJSON is accepted too). Either may be None.
    out
        Destination folder; written atomically with ``_manifest.json`` inside.
    backend
        ``cpu`` parses blocks with pyarrow.json, ``gpu`` with cudf.read_json.
    client
        A distributed client; None parses in a thread pool in this process.
    block_size
        Size of the newline-aligned blocks handed to workers (``ingest.block_size``).
    progress
        Print the bytes read per file to stderr as the stage runs.
    window
        Blocks in flight at once; default two per worker thread.

    Returns
    -------
    dict
        The manifest written into ``out/_manifest.json``.
    """
    inputs = [(Path(p), kind) for p, kind in ((submissions, "submission"), (comments, "comment")) if p is not None]
    if not inputs:
        msg = "ingest needs at least one dump; pass --submissions and/or --comments"
        raise WsbError(msg)
    for path, kind in inputs:
        if not path.is_file():
            msg = f"{kind}s dump '{path}' does not exist; pass the path of a Pushshift .zst file"
            raise WsbError(msg)
    names = [p.name for p, _ in inputs]
    if len(set(names)) != len(names):
        msg = f"both dumps have the file name '{names[0]}'; the posts 'source' column needs distinct names"
        raise WsbError(msg)
    size = parse_block_size(block_size)
    engine = "gpu" if backend.is_gpu else "cpu"
    window = int(window or 2 * _n_threads(client))

    t0 = time.perf_counter()
    per_file = {p.name: BlockCounts() for p, _ in inputs}
    bytes_json = dict.fromkeys(per_file, 0)
    blocks = dict.fromkeys(per_file, 0)
    bytes_out = 0
    with atomic_dataset(out) as tmp:
        streams = [
            _tasks(i, path, kind, size, tmp, engine) for i, (path, kind) in enumerate(inputs)
        ]
        reporter = _Reporter(progress, {p.name: p.stat().st_size for p, _ in inputs})
        runner = BoundedRunner(client, window)
        for res in runner.map(_ingest_block, _round_robin([prefetch(s, name="wsb-ingest-reader") for s in streams])):
            name = res["source"]
            per_file[name].add(res["counts"])
            bytes_json[name] += res["bytes_json"]
            blocks[name] += 1
            bytes_out += res["bytes_out"]
            reporter.update(name, res["bytes_json"], res["counts"].lines)
        reporter.close()
        if sum(c.valid for c in per_file.values()) == 0:
            _write_empty(tmp / "part.empty.parquet")
        seconds = time.perf_counter() - t0
        files = {}
        for (path, kind) in inputs:
            c = per_file[path.name]
            files[path.name] = {
                "kind": kind,
                **c.to_dict(),
                "blocks": blocks[path.name],
                "bytes_compressed": path.stat().st_size,
                "bytes_json": bytes_json[path.name],
            }
        total_json = sum(bytes_json.values())
        manifest = write_manifest(
            tmp,
            stage=STAGE,
            inputs={kind: file_fingerprint(path) for path, kind in inputs},
            params={"block_size": size, "window": window},
            rows_in=sum(c.lines for c in per_file.values()),
            rows_out=sum(c.valid for c in per_file.values()),
            malformed={r: sum(c.malformed[r] for c in per_file.values()) for r in REASONS},
            surrogates_replaced=sum(c.surrogates_replaced for c in per_file.values()),
            files=files,
            bytes_in=sum(p.stat().st_size for p, _ in inputs),
            bytes_json=total_json,
            bytes_out=bytes_out,
            seconds=round(seconds, 3),
            mb_per_s=round(total_json / 1e6 / seconds, 1) if seconds > 0 else None,
            max_in_flight=runner.max_in_flight,
            backend=backend.name,
            schema=parquet_schema(tmp),
        )
    return manifest


def format_summary(manifest: dict) -> str:
    """The human summary the ``ingest`` command prints.

    >>> m = {"files": {"c.zst": {"lines": 3, "valid": 2, "surrogates_replaced": 0,
    ...      "malformed": {"blank": 1, "bad_utf8": 0, "bad_json": 0, "bad_record": 0},
    ...      "bytes_json": 10}}, "rows_in": 3, "rows_out": 2, "bytes_json": 10,
    ...      "bytes_out": 5, "seconds": 1.0, "mb_per_s": 0.0}
    >>> print(format_summary(m))  # doctest: +NORMALIZE_WHITESPACE
    c.zst: 3 lines, 2 valid, malformed: blank 1, bad_utf8 0, bad_json 0, bad_record 0; surrogates replaced 0
    posts: 2 rows of 3 lines; 0.0 MB JSON -> 0.0 MB Parquet in 1.0 s (0.0 MB/s)
    """
    lines = []
    for name, f in manifest["files"].items():
        mal = ", ".join(f"{k} {v}" for k, v in f["malformed"].items())
        lines.append(
            f"{name}: {f['lines']} lines, {f['valid']} valid, malformed: {mal}; "
            f"surrogates replaced {f['surrogates_replaced']}"
        )
    lines.append(
        f"posts: {manifest['rows_out']} rows of {manifest['rows_in']} lines; "
        f"{manifest['bytes_json'] / 1e6:.1f} MB JSON -> {manifest['bytes_out'] / 1e6:.1f} MB Parquet "
        f"in {manifest['seconds']:.1f} s ({manifest['mb_per_s'] or 0:.1f} MB/s)"
    )
    return "\n".join(lines)


# --- the work of one block (runs on a worker) ---------------------------------------------


def _ingest_block(block: bytes, kind: str, source: str, part: str, engine: str) -> dict:
    """Parse one block and write its Parquet part; return only counts."""
    import pyarrow.parquet as pq

    table, counts = parse_block(block, kind, engine=engine)
    bytes_out = 0
    if table.num_rows:
        posts = to_posts(table, kind, source)
        pq.write_table(posts, part, compression="snappy")
        bytes_out = os.path.getsize(part)
    return {"source": source, "counts": counts, "bytes_json": len(block), "bytes_out": bytes_out}


def _write_empty(path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(posts_schema().empty_table(), str(path))


def _tasks(file_index: int, path: Path, kind: str, size: int, tmp: Path, engine: str) -> Iterator[tuple]:
    for block_index, block in enumerate(iter_blocks(path, size)):
        part = tmp / f"part.{file_index}.{block_index:06d}.parquet"
        yield (block, kind, path.name, str(part), engine)


# --- bounded scheduling -------------------------------------------------------------------


def _n_threads(client: Any) -> int:
    if client is None:
        return os.cpu_count() or 1
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:
        return os.cpu_count() or 1


class BoundedRunner:
    """Run ``fn(*task)`` for a stream of tasks with at most ``window`` in flight.

    On a distributed client the first argument (the block) is scattered to a worker and
    the task submitted next to it; without a client a thread pool is used (pyarrow and
    cuDF release the GIL while parsing). Results come back in completion order. The task
    iterator is only advanced when a slot is free, so it is never read ahead.
    """

    def __init__(self, client: Any, window: int) -> None:
        self.client = client
        self.window = max(1, int(window))
        self.max_in_flight = 0

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator[Any]:
        if self.client is None:
            yield from self._map_threads(fn, tasks)
        else:
            yield from self._map_client(fn, tasks)

    def _map_threads(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator[Any]:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        with ThreadPoolExecutor(max_workers=self.window) as pool:
            pending: set = set()
            try:
                for task in tasks:
                    while len(pending) >= self.window:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            yield f.result()
                    pending.add(pool.submit(fn, *task))
                    self.max_in_flight = max(self.max_in_flight, len(pending))
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            finally:
                for f in pending:
                    f.cancel()

    def _map_client(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator[Any]:
        from distributed import wait

        client = self.client
        pending: set = set()
        try:
            for task in tasks:
                while len(pending) >= self.window:
                    res = wait(list(pending), return_when="FIRST_COMPLETED")
                    for f in res.done:
                        pending.discard(f)
                        yield f.result()
                data = client.scatter(task[0], hash=False)
                pending.add(client.submit(fn, data, *task[1:], pure=False))
                del data, task
                self.max_in_flight = max(self.max_in_flight, len(pending))
            while pending:
                res = wait(list(pending), return_when="FIRST_COMPLETED")
                for f in res.done:
                    pending.discard(f)
                    yield f.result()
        finally:
            for f in pending:
                f.cancel()


def _round_robin(iterators: list[Iterator]) -> Iterator:
    """Interleave iterators until all are exhausted.

    >>> list(_round_robin([iter("ab"), iter("xyz")]))
    ['a', 'x', 'b', 'y', 'z']
    """
    live = list(iterators)
    while live:
        for it in list(live):
            try:
                yield next(it)
            except StopIteration:
                live.remove(it)


class _Reporter:
    """A progress line on stderr (bytes of JSON and lines per file), at most once a second."""

    def __init__(self, show: bool, sizes: dict[str, int]) -> None:
        self.show = show
        self.sizes = sizes
        self.json = dict.fromkeys(sizes, 0)
        self.lines = dict.fromkeys(sizes, 0)
        self.t0 = self.last = time.perf_counter()

    def update(self, name: str, n_bytes: int, n_lines: int) -> None:
        self.json[name] += n_bytes
        self.lines[name] += n_lines
        now = time.perf_counter()
        if self.show and now - self.last >= 1.0:
            self.last = now
            self._print(end="\r")

    def _print(self, end: str) -> None:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        parts = [f"{n}: {self.json[n] / 1e6:,.0f} MB, {self.lines[n]:,} lines" for n in self.sizes]
        rate = sum(self.json.values()) / 1e6 / dt
        print(f"[ingest] {'; '.join(parts)} ({rate:,.0f} MB/s)", end=end, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.show:
            self._print(end="\n")
