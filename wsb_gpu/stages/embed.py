"""Stage ``embed``: posts that mention a stock -> the **embeddings** dataset.

Every post with at least one row in the mentions dataset is cleaned
(:func:`wsb_gpu.text.clean_text`), run through the encoder (FinBERT by default) and written
as one row ``id, e000 … e{d-1}, [p_positive, p_negative, p_neutral], n_tokens``.

How the work is cut, and why:

* **Deterministic shards.** Post ids are hashed (``pandas.util.hash_pandas_object``, a fixed
  SipHash key, identical in every process) into ``n_shards = ceil(mentioned posts /
  partition_size)`` buckets, and at least one per worker while each keeps
  :data:`MIN_SHARD_POSTS` posts (:func:`n_shards_for`). Posts (``id, text``) and mention ids are both moved to their
  bucket with one shuffle (``set_index`` on the bucket with explicit divisions, so
  partition *i* is bucket *i*), and the semi-join (posts whose id is mentioned) is then a
  local ``isin`` inside each partition: the post texts cross the network once. Rows in a
  shard are sorted by id, so a shard's content never depends on scheduling.
* **One shard file per partition, written atomically** (a hidden temporary name, then
  ``os.replace``) straight into ``out/``. A partition whose shard already exists returns
  at once, so a rerun (or Dask's retry after a worker died) only redoes unfinished shards;
  a worker killed mid-shard loses only that shard. ``_embed_state.json`` records the shard
  count and the rerun key the shards belong to (the runner's,
  :meth:`~wsb_gpu.stages.base.Stage.rerun_key`: the inputs and the settings that change the
  vectors): a rerun under another key starts over, while a change of a setting declared
  output-neutral (``token_budget`` …) keeps the finished shards.
* **The model is loaded once per worker** by :class:`wsb_gpu.encoder.EncoderPlugin`
  (without a distributed client: once per process) and released at the end.
* ``_manifest.json`` is written last, so ``is_complete(out)`` means every shard is there.

The frames of this stage are pandas on both backends on purpose: the text goes to the
Rust tokenizer on the host either way; the backend decides the torch device.
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wsb_gpu.backend import Backend
from wsb_gpu.config import EmbedParams
from wsb_gpu.datasets import count_rows, schema_of
from wsb_gpu.encoder import (
    PLUGIN_NAME,
    EncodeResult,
    EncoderPlugin,
    EncoderSpec,
    check_local_weights,
    get_encoder,
    resolve_model_source,
)
from wsb_gpu.errors import WsbError
from wsb_gpu.lake import Timer
from wsb_gpu.manifest import MANIFEST, Manifest, read_json, read_manifest, write_json
from wsb_gpu.progress import compute, log
from wsb_gpu.stages.base import StageResult
from wsb_gpu.text import clean_text

if TYPE_CHECKING:
    from distributed import Client


STATE = "_embed_state.json"
STATE_VERSION = 2
_SHARD = re.compile(r"^part-(\d{5})-of-(\d{5})\.parquet$")
_TMP = re.compile(r"^\.part-\d{5}-of-\d{5}\.parquet\.tmp-[0-9a-f]+$")

STATS_META = {
    "shard": "int64",
    "n_posts": "int64",
    "n_tokens": "int64",
    "padded_tokens": "int64",
    "seconds": "float64",
    "skipped": "bool",
    "device": "object",
    "precision": "object",
}


# --- small pure helpers --------------------------------------------------------------------


def shard_name(i: int, n: int) -> str:
    """File name of shard ``i`` of ``n``.

    >>> shard_name(3, 12)
    'part-00003-of-00012.parquet'
    """
    return f"part-{i:05d}-of-{n:05d}.parquet"


MIN_SHARD_POSTS = 500
"""The fewest posts a shard is cut to so that every worker gets one: below this, loading the
model on another worker costs more than it saves."""


def n_shards_for(n_posts: int, partition_size: int, workers: int = 1) -> int:
    """Shards for ``n_posts`` posts at ``partition_size`` posts each (at least one), and at
    least one per worker while each keeps :data:`MIN_SHARD_POSTS` posts: 2,000 posts on two
    workers make two shards, not one that a single worker encodes alone.

    >>> n_shards_for(0, 100), n_shards_for(100, 100), n_shards_for(101, 100)
    (1, 1, 2)
    >>> n_shards_for(2_000, 20_000, workers=2), n_shards_for(700, 20_000, workers=4), n_shards_for(90_000, 20_000, 2)
    (2, 1, 5)
    """
    if int(partition_size) < 1:
        msg = f"partition_size must be a positive number of posts, got {partition_size}; the default is 20000"
        raise WsbError(msg)
    by_size = math.ceil(int(n_posts) / int(partition_size))
    per_worker = min(int(workers), int(n_posts) // MIN_SHARD_POSTS)
    return max(1, by_size, per_worker)


def _n_workers(client: Client | None) -> int:
    """Workers of the cluster (1 without one: the threaded scheduler in this process)."""
    if client is None:
        return 1
    try:
        return max(1, len(client.scheduler_info().get("workers", {})))
    except Exception:
        return 1


def bucket_of(ids: Any, n: int) -> np.ndarray:
    """Shard number of each post id: a stable hash of the id modulo ``n``.

    >>> import pandas as pd
    >>> bucket_of(pd.Series(["abc", "def", "abc"]), 7).tolist() == bucket_of(pd.Series(["abc", "def", "abc"]), 7).tolist()
    True
    """
    values = pd.Series(np.asarray(ids, dtype=object)).astype(str)
    hashed = pd.util.hash_pandas_object(values, index=False).to_numpy()
    return (hashed % np.uint64(n)).astype(np.int64)


def embedding_columns(dim: int) -> list[str]:
    """``e000 … e{dim-1}`` (wider numbers for dim > 1000).

    >>> embedding_columns(3)
    ['e000', 'e001', 'e002']
    """
    width = max(3, len(str(dim - 1)))
    return [f"e{i:0{width}d}" for i in range(dim)]


def prob_columns(labels: tuple[str, ...] | list[str]) -> list[str]:
    """``p_<label>`` per label of the classification head.

    >>> prob_columns(("positive", "negative", "neutral"))
    ['p_positive', 'p_negative', 'p_neutral']
    """
    return ["p_" + re.sub(r"[^0-9a-z]+", "_", str(label).lower()).strip("_") for label in labels]


def embeddings_table(ids: list[str], result: EncodeResult) -> pa.Table:
    """The Arrow table of one shard: ``id, e…, p_…, n_tokens``."""
    columns: dict[str, Any] = {"id": pa.array(ids, type=pa.string())}
    emb = np.asarray(result.embeddings, dtype=np.float32)
    for j, name in enumerate(embedding_columns(emb.shape[1])):
        columns[name] = pa.array(emb[:, j])
    if result.probs is not None:
        for j, name in enumerate(prob_columns(result.labels)):
            columns[name] = pa.array(np.asarray(result.probs[:, j], dtype=np.float32))
    columns["n_tokens"] = pa.array(np.asarray(result.n_tokens, dtype=np.int32))
    return pa.table(columns)


def shard_rows(path: Path) -> int | None:
    """Rows of a finished shard, or None when the file is missing or not readable Parquet."""
    try:
        return int(pq.read_metadata(path).num_rows)
    except Exception:
        return None


# --- the partition function ------------------------------------------------------------------


def embed_partition(
    posts: pd.DataFrame,
    ids: pd.DataFrame,
    *,
    spec: EncoderSpec,
    out: str,
    n_shards: int,
    partition_info: dict | None = None,
) -> pd.DataFrame:
    """Embed one shard: keep posts whose id is in ``ids``, clean, encode, write atomically.

    Parameters
    ----------
    posts
        pandas frame with ``id, text`` (all posts of this bucket).
    ids
        pandas frame with ``id`` (mention ids of this bucket, duplicates allowed).
    spec
        :class:`wsb_gpu.encoder.EncoderSpec` of the model (loaded once per worker).
    out, n_shards
        Output folder and shard count; the shard number comes from ``partition_info``.

    Returns
    -------
    A one-row pandas frame of statistics (columns :data:`STATS_META`).
    """
    i = int(partition_info["number"]) if partition_info else 0
    path = Path(out) / shard_name(i, n_shards)
    rows = shard_rows(path) if path.exists() else None
    if rows is not None:  # done by an earlier run or an earlier attempt of this task
        return pd.DataFrame(
            [
                {
                    "shard": i,
                    "n_posts": rows,
                    "n_tokens": 0,
                    "padded_tokens": 0,
                    "seconds": 0.0,
                    "skipped": True,
                    "device": "",
                    "precision": "",
                }
            ]
        ).astype(STATS_META)
    wanted = set(ids["id"].astype(str).tolist())
    keep = posts[posts["id"].astype(str).isin(wanted)]
    keep = keep.assign(id=keep["id"].astype(str)).drop_duplicates("id").sort_values("id", kind="stable")
    texts = [clean_text(t) for t in keep["text"].tolist()]
    encoder = get_encoder(spec)
    t0 = time.perf_counter()
    result = encoder.encode(texts)
    table = embeddings_table(keep["id"].tolist(), result)
    _write_atomic(table, path)
    seconds = time.perf_counter() - t0
    return pd.DataFrame(
        [
            {
                "shard": i,
                "n_posts": len(texts),
                "n_tokens": int(result.n_tokens.sum()),
                "padded_tokens": int(result.stats.get("padded_tokens", 0)),
                "seconds": seconds,
                "skipped": False,
                "device": encoder.device,
                "precision": encoder.precision,
            }
        ]
    ).astype(STATS_META)


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a hidden temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- the stage --------------------------------------------------------------------------------


class EmbedInputs(TypedDict):
    """The inputs of embed: the posts and mentions datasets."""

    posts: Path
    mentions: Path


class _EmbedCounts(TypedDict):
    shards_written: int
    shards_skipped: int
    posts_embedded: int
    tokens: int
    posts_per_s: float | None
    tokens_per_s: float | None
    device: str | None
    precision: str | None


# (total=False rather than NotRequired: typing has NotRequired from Python 3.11 only.)
class EmbedRun(_EmbedCounts, total=False):
    """The throughput of one run of embed (shards skipped as already done do not count); the
    timings and the padding only when a shard was encoded."""

    padding_overhead: float | None
    embed_seconds: float
    encode_seconds: float
    encode_posts_per_s: float | None


class EmbedFields(EmbedRun):
    """The manifest fields of embed (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    model_source: str
    n_shards: int
    dim: int
    labels: list[str]


class EmbedManifest(Manifest, EmbedFields):
    """The manifest of the embeddings dataset."""


def run(
    inputs: EmbedInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: EmbedParams,
    progress: bool = False,
    key: str,
) -> StageResult:
    """Embed (and score the sentiment of) every post that has at least one mention.

    Parameters
    ----------
    inputs
        ``posts`` and ``mentions``: folders of the posts and mentions datasets.
    out
        Folder of the embeddings dataset: one ``part-XXXXX-of-NNNNN.parquet`` per shard;
        written in place (finished shards survive a crash), the manifest last.
    backend
        Picks the torch device (``cpu`` or ``cuda``).
    client
        A distributed client: the model is loaded once per worker with
        :class:`~wsb_gpu.encoder.EncoderPlugin`. None: dask's threaded scheduler with one
        model per process.
    params
        The encoder (see :class:`wsb_gpu.encoder.EncoderSpec` and docs/embeddings.md) and
        ``partition_size``, the mentioned posts per shard.
    key
        The runner's rerun key of this run: the shards an earlier run left in ``out`` are
        kept only when they were written under the same key.

    Returns
    -------
    The counts of the manifest, with ``posts_per_s`` and ``tokens_per_s`` of this run.
    """
    posts, mentions = inputs["posts"], inputs["mentions"]
    source = resolve_model_source(params.model)
    if Path(source).is_dir():  # refuse pickle-only folders here, before any worker starts
        check_local_weights(source, params.allow_pickle)
    spec = EncoderSpec(
        model=source,
        device=backend.torch_device,
        max_length=params.max_length,
        pooling=params.pooling,
        precision=params.precision,
        token_budget=params.token_budget,
        allow_pickle=params.allow_pickle,
        local_files_only=params.local_files_only,
    )
    state = _prepare_out(out, key)
    if state is not None:
        n = int(state["n_shards"])
        existing = read_manifest(out)
        if existing is not None:
            if existing.get("key") == key and all(shard_rows(out / shard_name(i, n)) is not None for i in range(n)):
                log(f"embed: {out} is complete for these inputs and settings; nothing to do")
                return StageResult(rows_in=existing["rows_in"], unchanged=True)
            (out / MANIFEST).unlink(missing_ok=True)  # a shard went missing: incomplete again
    # pandas on both backends: the texts go to the host-side tokenizer, and only the ids
    # and texts of mentioned posts are moved.
    post_ids = dd.read_parquet(str(posts), columns=["id", "text"])
    mention_ids = dd.read_parquet(str(mentions), columns=["id"])
    if state is None:
        # nunique_approx (HyperLogLog) is a deterministic function of the set of ids;
        # it only sizes the shards, and the count is kept in the state file for reruns.
        (n_mentioned,) = compute(
            mention_ids["id"].nunique_approx(), label="embed: count mentioned posts", show=progress
        )
        state = {
            "version": STATE_VERSION,
            "key": key,
            "n_shards": n_shards_for(int(n_mentioned), params.partition_size, workers=_n_workers(client)),
        }
        write_json(out / STATE, state)
    n = int(state["n_shards"])
    todo = [i for i in range(n) if shard_rows(out / shard_name(i, n)) is None]
    stats = None
    seconds = 0.0
    if todo:
        divisions = tuple(range(n + 1))

        def by_bucket(frame: dd.DataFrame) -> dd.DataFrame:
            frame = frame.assign(bucket=frame["id"].map_partitions(bucket_of, n, meta=("id", "int64")))
            # Drop rows of finished shards before the shuffle: a resumed run moves only
            # the text it still needs.
            if len(todo) < n:
                frame = frame[frame["bucket"].isin(todo)]
            return frame.set_index("bucket", divisions=divisions, shuffle_method="tasks")

        parts = dd.map_partitions(
            embed_partition,
            by_bucket(post_ids),
            by_bucket(mention_ids),
            spec=spec,
            out=str(out),
            n_shards=n,
            meta=STATS_META,
            align_dataframes=False,
        )
        with _encoder_on_workers(client, spec), Timer() as work:
            (stats,) = compute(parts, label=f"embed: {len(todo)} of {n} shards", show=progress)
        seconds = work.seconds
    missing = [i for i in range(n) if shard_rows(out / shard_name(i, n)) is None]
    if missing:
        msg = f"embed: shards {missing[:5]} of {n} were not written to {out}; rerun the same command to finish them"
        raise WsbError(msg)
    schema = schema_of(out)
    return StageResult(
        rows_in=count_rows(posts),
        rows_out=sum(shard_rows(out / shard_name(i, n)) or 0 for i in range(n)),
        fields=EmbedFields(
            model_source=source,
            n_shards=n,
            dim=sum(1 for c in schema if re.fullmatch(r"e\d+", c)),
            labels=[c[2:] for c in schema if c.startswith("p_")],
            **_summary(stats, seconds),
        ),
    )


@contextmanager
def _encoder_on_workers(client: Client | None, spec: EncoderSpec) -> Iterator[None]:
    """Load the encoder once per worker (:class:`EncoderPlugin`) for the duration of the block."""
    if client is None:
        yield
        return
    client.register_plugin(EncoderPlugin(spec), name=PLUGIN_NAME)
    try:
        yield
    finally:
        if client.status == "running":  # (after an interrupt the client is closed: nothing to do)
            try:
                client.unregister_worker_plugin(PLUGIN_NAME)
            except Exception as e:  # the model is freed when the workers go anyway
                log(f"embed: could not unregister the encoder plugin ({e})")


def _summary(stats: pd.DataFrame | None, seconds: float) -> EmbedRun:
    """Throughput of this run (shards skipped as already done do not count)."""
    if stats is None or len(stats) == 0:
        return {
            "shards_written": 0,
            "shards_skipped": 0,
            "posts_embedded": 0,
            "tokens": 0,
            "posts_per_s": None,
            "tokens_per_s": None,
            "device": None,
            "precision": None,
        }
    done = stats[~stats["skipped"]]
    posts, tokens = int(done["n_posts"].sum()), int(done["n_tokens"].sum())
    padded = int(done["padded_tokens"].sum())
    encode_seconds = float(done["seconds"].sum())
    devices = sorted(set(done["device"]) - {""})
    precisions = sorted(set(done["precision"]) - {""})
    return {
        "shards_written": int(len(done)),
        "shards_skipped": int(stats["skipped"].sum()),
        "posts_embedded": posts,
        "tokens": tokens,
        "padding_overhead": round(padded / tokens - 1.0, 4) if tokens else None,
        # Wall clock of the whole sharded phase (shuffle, model loads, encoding, writing)...
        "embed_seconds": round(seconds, 3),
        "posts_per_s": round(posts / seconds, 1) if posts and seconds > 0 else None,
        "tokens_per_s": round(tokens / seconds, 1) if tokens and seconds > 0 else None,
        # ...and the model alone, per worker (tokenize + forward + write, summed over shards).
        "encode_seconds": round(encode_seconds, 3),
        "encode_posts_per_s": round(posts / encode_seconds, 1) if posts and encode_seconds > 0 else None,
        "device": ",".join(devices) or None,
        "precision": ",".join(precisions) or None,
    }


def kept(out: Path) -> str:
    """What an interrupted embed keeps: ``'2 of 8 shards are kept'``."""
    state = read_json(out / STATE) or {}
    n = int(state.get("n_shards", 0))
    if not n:
        return "no shard was finished"
    done = sum(shard_rows(out / shard_name(i, n)) is not None for i in range(n))
    return f"{done} of {n} shards are kept"


def _prepare_out(out: Path, key: str) -> dict[str, Any] | None:
    """Make ``out`` ready; return its state when it holds shards of this very ``key``.

    Shards of other settings or inputs (and a manifest describing them) are removed; a
    folder that is not an embeddings folder is refused rather than touched. Temporary files
    left by killed workers are removed.
    """
    out.mkdir(parents=True, exist_ok=True)
    state = read_json(out / STATE)
    names = [p.name for p in out.iterdir()]
    ours = [
        n
        for n in names
        if _SHARD.match(n) or _TMP.match(n) or n in (STATE, MANIFEST, f".{MANIFEST}.tmp", f".{STATE}.tmp")
    ]
    foreign = sorted(set(names) - set(ours))
    if foreign and state is None:
        msg = f"--out '{out}' already holds files that are not embeddings ({', '.join(foreign[:3])}); choose an empty or new folder"
        raise WsbError(msg)
    for n in names:
        if _TMP.match(n):
            (out / n).unlink(missing_ok=True)
    if isinstance(state, dict) and state.get("version") == STATE_VERSION and state.get("key") == key:
        n_shards = int(state["n_shards"])
        for n in names:  # shards of another shard count cannot be ours
            m = _SHARD.match(n)
            if m and int(m.group(2)) != n_shards:
                (out / n).unlink(missing_ok=True)
        return state
    if state is not None or any(_SHARD.match(n) for n in names):
        log(f"embed: {out} holds shards of other inputs or settings; starting over")
    for n in names:
        if _SHARD.match(n) or n in (MANIFEST, STATE):
            (out / n).unlink(missing_ok=True)
    return None
