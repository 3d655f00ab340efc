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
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pyarrow.parquet as pq
from distributed import as_completed

from wsb_gpu.backend import Backend
from wsb_gpu.config import IngestParams
from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import Manifest
from wsb_gpu.prefetch import prefetch
from wsb_gpu.progress import tracker
from wsb_gpu.sources.pushshift import (
    REASONS,
    BlockCounts,
    check_dump,
    iter_blocks,
    parse_block,
    parse_block_size,
    to_posts,
)
from wsb_gpu.stages.base import StageResult

if TYPE_CHECKING:
    from distributed import Client


class IngestInputs(TypedDict):
    """The inputs of ingest: the two dumps, either of which may be missing (not both)."""

    submissions: Path | None
    comments: Path | None


class IngestFile(TypedDict):
    """The counts of one dump in the manifest."""

    kind: str
    lines: int
    valid: int
    malformed: dict[str, int]
    surrogates_replaced: int
    blocks: int
    bytes_compressed: int
    bytes_json: int


class IngestFields(TypedDict):
    """The manifest fields of ingest (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    malformed: dict[str, int]
    surrogates_replaced: int
    files: dict[str, IngestFile]
    bytes_in: int
    bytes_json: int
    bytes_out: int
    window: int
    max_in_flight: int


class IngestManifest(Manifest, IngestFields):
    """The manifest of the posts dataset."""


def check(inputs: Mapping[str, Path], params: IngestParams) -> None:
    """At the door: each dump is a zstd stream (or plain NDJSON not named .zst)."""
    for path in inputs.values():
        check_dump(path)


def check_malformed(name: str, counts: BlockCounts, limit: float) -> None:
    """Fail on a dump with no valid record, or with a share of malformed lines at or above
    ``limit`` (``ingest.max_malformed``): that is not a Pushshift dump with a few bad lines.

    >>> c = BlockCounts(lines=4, valid=1, malformed={"blank": 0, "bad_utf8": 0, "bad_json": 3, "bad_record": 0})
    >>> check_malformed("x.zst", c, 0.5)
    Traceback (most recent call last):
    ...
    wsb_gpu.errors.WsbError: 3 of the 4 lines of 'x.zst' are malformed (75.0 %: blank 0, bad_utf8 0, bad_json 3, bad_record 0), at or above ingest.max_malformed = 50 %; check that it is a Pushshift dump, or raise ingest.max_malformed to accept it
    """
    bad = counts.lines - counts.valid
    reasons = ", ".join(f"{k} {v}" for k, v in counts.malformed.items())
    if counts.valid == 0:
        msg = (
            f"'{name}' holds no valid record ({counts.lines} lines: {reasons}); pass a Pushshift dump "
            "(one JSON object per line with a string id and a created_utc)"
        )
        raise WsbError(msg)
    share = bad / counts.lines
    if share >= limit:
        msg = (
            f"{bad} of the {counts.lines} lines of '{name}' are malformed ({100 * share:.1f} %: {reasons}), at or "
            f"above ingest.max_malformed = {100 * limit:g} %; check that it is a Pushshift dump, or raise "
            "ingest.max_malformed to accept it"
        )
        raise WsbError(msg)


def run(
    inputs: IngestInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: IngestParams,
    progress: bool = False,
) -> StageResult:
    """Read the submissions and comments dumps into the posts dataset in ``out``.

    Parameters
    ----------
    inputs
        ``submissions`` and ``comments``: Pushshift dumps (zstd NDJSON; plain NDJSON is
        accepted too). Either may be None, not both.
    out
        The folder to write the Parquet parts into.
    backend
        ``cpu`` parses blocks with pyarrow.json, ``gpu`` with cudf.read_json.
    client
        A distributed client; None parses in a thread pool in this process.
    params
        ``block_size`` (of the newline-aligned blocks handed to workers) and ``window``
        (blocks in flight at once; None = two per worker thread).
    progress
        Show the bytes read per file.
    """
    given = ((inputs["submissions"], "submission"), (inputs["comments"], "comment"))
    dumps = [(Path(p), kind) for p, kind in given if p is not None]
    if not dumps:
        msg = "ingest needs at least one dump; pass --submissions and/or --comments"
        raise WsbError(msg)
    names = [p.name for p, _ in dumps]
    if len(set(names)) != len(names):
        msg = f"both dumps have the file name '{names[0]}'; the posts 'source' column needs distinct names"
        raise WsbError(msg)
    size = parse_block_size(params.block_size)
    engine = backend.name  # the block parser: pyarrow.json (cpu) or cudf.read_json (gpu)
    window = int(params.window or 2 * _n_threads(client))

    per_file = {p.name: BlockCounts() for p, _ in dumps}
    bytes_json = dict.fromkeys(per_file, 0)
    blocks = dict.fromkeys(per_file, 0)
    bytes_out = 0
    streams = [_tasks(i, path, kind, size, out, engine) for i, (path, kind) in enumerate(dumps)]
    runner = BoundedRunner(client, window)
    with tracker("ingest: MB of JSON", show=progress) as task:
        for res in runner.map(_ingest_block, _round_robin([prefetch(s, name="wsb-ingest-reader") for s in streams])):
            name = res["source"]
            per_file[name].add(res["counts"])
            bytes_json[name] += res["bytes_json"]
            blocks[name] += 1
            bytes_out += res["bytes_out"]
            task.advance(res["bytes_json"] / 1e6)
    for path, _ in dumps:
        check_malformed(path.name, per_file[path.name], params.max_malformed)
    files = {
        path.name: IngestFile(
            kind=kind,
            lines=per_file[path.name].lines,
            valid=per_file[path.name].valid,
            malformed=dict(per_file[path.name].malformed),
            surrogates_replaced=per_file[path.name].surrogates_replaced,
            blocks=blocks[path.name],
            bytes_compressed=path.stat().st_size,
            bytes_json=bytes_json[path.name],
        )
        for path, kind in dumps
    }
    return StageResult(
        rows_in=sum(c.lines for c in per_file.values()),
        rows_out=sum(c.valid for c in per_file.values()),
        fields=IngestFields(
            malformed={r: sum(c.malformed[r] for c in per_file.values()) for r in REASONS},
            surrogates_replaced=sum(c.surrogates_replaced for c in per_file.values()),
            files=files,
            bytes_in=sum(p.stat().st_size for p, _ in dumps),
            bytes_json=sum(bytes_json.values()),
            bytes_out=bytes_out,
            window=window,
            max_in_flight=runner.max_in_flight,
        ),
    )


# --- the work of one block (runs on a worker) ---------------------------------------------


def _ingest_block(block: bytes, kind: str, source: str, part: str, engine: str) -> dict:
    """Parse one block and write its Parquet part; return only counts."""
    table, counts = parse_block(block, kind, engine=engine)
    bytes_out = 0
    if table.num_rows:
        posts = to_posts(table, kind, source)
        pq.write_table(posts, part, compression="snappy")
        bytes_out = os.path.getsize(part)
    return {"source": source, "counts": counts, "bytes_json": len(block), "bytes_out": bytes_out}


def _tasks(file_index: int, path: Path, kind: str, size: int, tmp: Path, engine: str) -> Iterator[tuple]:
    for block_index, block in enumerate(iter_blocks(path, size)):
        part = tmp / f"part.{file_index}.{block_index:06d}.parquet"
        yield (block, kind, path.name, str(part), engine)


# --- bounded scheduling -------------------------------------------------------------------


def _n_threads(client: Client | None) -> int:
    if client is None:
        return os.cpu_count() or 1
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:
        return os.cpu_count() or 1


class BoundedRunner:
    """Run ``fn(*task)`` for a stream of tasks with at most ``window`` in flight.

    On a distributed client the first argument (the block) is scattered to a worker and
    the task submitted next to it, through ``distributed.as_completed``, which is refilled
    (``add``) as results come back; without a client a thread pool is used (pyarrow and
    cuDF release the GIL while parsing). Results come back in completion order. The task
    iterator is only advanced when a slot is free, so it is never read ahead.
    """

    def __init__(self, client: Client | None, window: int) -> None:
        self.client = client
        self.window = max(1, int(window))
        self.max_in_flight = 0

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator[Any]:
        if self.client is None:
            yield from self._map_threads(fn, tasks)
        else:
            yield from self._map_client(self.client, fn, tasks)

    def _map_threads(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator[Any]:
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

    def _map_client(self, client: Client, fn: Callable, tasks: Iterable[tuple]) -> Iterator[Any]:
        todo = iter(tasks)
        running = as_completed()
        in_flight = 0

        def submit() -> bool:
            task = next(todo, None)
            if task is None:
                return False
            data = client.scatter(task[0], hash=False)
            running.add(client.submit(fn, data, *task[1:], pure=False))
            return True

        try:
            while in_flight < self.window and submit():
                in_flight += 1
            self.max_in_flight = in_flight
            for future in running:
                in_flight -= 1
                result = future.result()
                future.release()
                if submit():
                    in_flight += 1
                self.max_in_flight = max(self.max_in_flight, in_flight)
                yield result
        finally:
            for future in list(running.futures):
                future.cancel()


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
