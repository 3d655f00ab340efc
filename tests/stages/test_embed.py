"""Stage ``embed``: which posts are embedded, the dataset contract, equality with a naive
reference, resumability, and a worker killed in the middle of a run on a real LocalCluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from fixtures import tiny_models  # noqa: E402
from fixtures.tiny_models import WORDS, build_tiny_bert  # noqa: E402

from wsb_gpu.backend import Backend  # noqa: E402
from wsb_gpu.encoder import Encoder, release_encoder  # noqa: E402
from wsb_gpu.errors import WsbError  # noqa: E402
from wsb_gpu.manifest import is_complete  # noqa: E402
from wsb_gpu.stages import run_stage  # noqa: E402
from wsb_gpu.text import clean_text  # noqa: E402

N_POSTS = 90
MAX_LENGTH = 20


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Posts and mentions datasets in the DESIGN.md schemas, written by hand, plus a model."""
    root = tmp_path_factory.mktemp("embed")
    rng = np.random.default_rng(7)
    ids = [f"t3_{i:05x}" if i % 4 == 0 else f"t1_{i:05x}" for i in range(N_POSTS)]
    texts = []
    for i in range(N_POSTS):
        n_words = int(rng.choice([2, 5, 9, 40]))  # mostly short, a few long
        words = " ".join(rng.choice(WORDS, size=n_words))
        texts.append(f"**{words}** see https://example.com/{i} &amp; $GME" if i % 5 == 0 else words)
    created = 1_609_459_200 + np.arange(N_POSTS, dtype="int64") * 3600
    posts = pd.DataFrame(
        {
            "id": ids,
            "kind": ["submission" if i.startswith("t3") else "comment" for i in ids],
            "created_utc": created,
            "date": pd.to_datetime(created, unit="s").date,
            "author": [None if i % 7 == 0 else f"user{i % 11}" for i in range(N_POSTS)],
            "text": texts,
            "source": "wallstreetbets_comments.zst",
        }
    )
    (root / "posts").mkdir()
    for k in range(3):
        part = posts.iloc[k * N_POSTS // 3 : (k + 1) * N_POSTS // 3]
        part.to_parquet(root / "posts" / f"part.{k}.parquet", index=False)
    # Posts i % 3 == 0 have no mention; some posts mention two tickers (duplicate ids).
    mentioned = posts[np.arange(N_POSTS) % 3 != 0]
    mentions = mentioned[["id", "kind", "created_utc", "date"]].assign(
        ticker="GME", permno=np.int64(10001), n_occ=np.int32(1)
    )
    twice = mentions.iloc[::4].assign(ticker="AMC", permno=np.int64(10002), n_occ=np.int32(2))
    mentions = pd.concat([mentions, twice]).sample(frac=1.0, random_state=1)
    (root / "mentions").mkdir()
    mentions.to_parquet(root / "mentions" / "part.0.parquet", index=False)
    model = build_tiny_bert(root / "model", head=True, seed=5)
    expected_ids = sorted(mentioned["id"])
    return {
        "root": root,
        "posts": root / "posts",
        "mentions": root / "mentions",
        "model": model,
        "texts": dict(zip(posts["id"], posts["text"])),
        "expected_ids": expected_ids,
    }


def params(model, **kw):
    return {
        "model": str(model),
        "max_length": MAX_LENGTH,
        "pooling": "cls",
        "precision": "fp32",
        "token_budget": 128,
        "allow_pickle": False,
        "local_files_only": True,
        "partition_size": 20,
        **kw,
    }


def run(inputs, out, client=None, **kw):
    return run_stage(
        "embed",
        out,
        posts=inputs["posts"],
        mentions=inputs["mentions"],
        backend=Backend("cpu", "tests"),
        client=client,
        **params(inputs["model"], **kw),
    )


def read(out):
    return pd.read_parquet(out).sort_values("id").reset_index(drop=True)


def shard_mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in Path(out).glob("part-*.parquet")}


@pytest.fixture(scope="module")
def first_run(inputs):
    out = inputs["root"] / "emb"
    manifest = run(inputs, out)
    return out, manifest, read(out)


def naive(model, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(model).eval()
    embs, probs, lengths = [], [], []
    with torch.no_grad():
        for text in texts:
            enc = tok(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            out = net(**enc, output_hidden_states=True)
            embs.append(out.hidden_states[-1][0, 0].numpy())
            probs.append(torch.softmax(out.logits[0], -1).numpy())
            lengths.append(enc["input_ids"].shape[1])
    return np.array(embs), np.array(probs), np.array(lengths)


def test_dataset_contract_and_values(inputs, first_run):
    out, manifest, df = first_run
    assert df["id"].tolist() == inputs["expected_ids"]  # every mentioned post, once
    dim = 32
    emb_cols = [f"e{i:03d}" for i in range(dim)]
    assert list(pd.read_parquet(out).columns) == ["id", *emb_cols, "p_positive", "p_negative", "p_neutral", "n_tokens"]
    assert all(df[c].dtype == np.float32 for c in emb_cols + ["p_positive", "p_negative", "p_neutral"])
    assert df["n_tokens"].dtype == np.int32
    texts = [clean_text(inputs["texts"][i]) for i in df["id"]]
    ref_emb, ref_probs, ref_len = naive(inputs["model"], texts)
    got = df[emb_cols].to_numpy()
    cos = (got * ref_emb).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref_emb, axis=1)
    assert cos.min() >= 0.999
    probs = df[["p_positive", "p_negative", "p_neutral"]].to_numpy()
    np.testing.assert_allclose(probs, ref_probs, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(df["n_tokens"].to_numpy(), ref_len)
    assert is_complete(out)
    for key in ("stage", "inputs", "params", "rows_in", "rows_out", "seconds", "backend", "schema"):
        assert key in manifest
    assert manifest["rows_in"] == N_POSTS and manifest["rows_out"] == len(df)
    assert manifest["n_shards"] == 3 and manifest["shards_written"] == 3
    assert manifest["labels"] == ["positive", "negative", "neutral"] and manifest["dim"] == dim
    assert manifest["posts_per_s"] > 0 and manifest["tokens_per_s"] > 0


def test_rerun_does_no_model_work(inputs, first_run, monkeypatch):
    out, manifest, df = first_run
    before = shard_mtimes(out)

    def boom(*a, **k):
        raise AssertionError("the model ran on a rerun")

    monkeypatch.setattr(Encoder, "_forward", boom)
    monkeypatch.setattr(Encoder, "load", boom)
    again = run(inputs, out)
    assert again == manifest and shard_mtimes(out) == before


def test_resume_redoes_only_lost_shards(inputs, first_run, tmp_path, monkeypatch):
    _, _, df = first_run
    out = tmp_path / "emb"
    run(inputs, out)
    shards = sorted(Path(out).glob("part-*.parquet"))
    before = shard_mtimes(out)
    shards[1].unlink()  # a shard lost with its worker
    (out / f".{shards[1].name}.tmp-deadbeef").write_bytes(b"half a parquet file")
    (out / "_manifest.json").unlink()
    calls = []
    real = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, texts: calls.append(len(texts)) or real(self, texts))
    manifest = run(inputs, out)
    assert len(calls) == 1 and manifest["shards_written"] == 1
    after = shard_mtimes(out)
    assert {k: v for k, v in after.items() if k != shards[1].name} == {
        k: v for k, v in before.items() if k != shards[1].name
    }
    assert not list(out.glob(".part-*"))  # the torn temp file is gone
    pd.testing.assert_frame_equal(read(out), df)


def test_a_speed_only_setting_keeps_finished_shards_an_output_setting_starts_over(
    inputs, first_run, tmp_path, monkeypatch
):
    """Embed's resume uses the runner's rerun key: token_budget (declared output-neutral)
    neither discards an interrupted run's shards nor reruns a complete one; max_length does."""
    _, _, df = first_run
    out = tmp_path / "emb"
    first = run(inputs, out)
    shards = sorted(Path(out).glob("part-*.parquet"))
    before = shard_mtimes(out)
    shards[0].unlink()  # interrupted: one shard lost, no manifest yet
    (out / "_manifest.json").unlink()
    calls = []
    real = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, texts: calls.append(len(texts)) or real(self, texts))
    resumed = run(inputs, out, token_budget=64)
    assert len(calls) == 1 and resumed["shards_written"] == 1 and resumed["key"] == first["key"]
    assert {k: v for k, v in shard_mtimes(out).items() if k != shards[0].name} == {
        k: v for k, v in before.items() if k != shards[0].name
    }
    # (another batching pads differently: the same vectors up to float32 rounding)
    pd.testing.assert_frame_equal(read(out), df, check_exact=False, rtol=0, atol=1e-5)
    assert run(inputs, out, token_budget=256) == resumed and len(calls) == 1  # complete: nothing to do

    calls.clear()
    other = run(inputs, out, max_length=MAX_LENGTH - 4)
    assert other["key"] != first["key"] and other["shards_written"] == other["n_shards"] == len(calls) == len(shards)


def test_other_settings_start_over_and_foreign_folder_refused(inputs, first_run, tmp_path):
    _, _, df = first_run
    out = tmp_path / "emb"
    run(inputs, out, partition_size=50)
    assert len(list(out.glob("part-*"))) == 2
    manifest = run(inputs, out, partition_size=50, pooling="mean")
    assert manifest["shards_written"] == 2 and manifest["params"]["pooling"] == "mean"
    mean = read(out)
    assert mean["id"].tolist() == df["id"].tolist()
    assert not np.allclose(mean["e000"], df["e000"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(WsbError, match="not embeddings"):
        run(inputs, foreign)
    with pytest.raises(WsbError, match="column"):
        run_stage(
            "embed",
            tmp_path / "x",
            posts=inputs["mentions"],
            mentions=inputs["mentions"],
            backend=Backend("cpu"),
            **params(inputs["model"]),
        )


def test_cli_embed(inputs, tmp_path):
    from wsb_gpu.cli import main

    out = tmp_path / "cli"
    argv = [
        "--cluster",
        "none",
        "embed",
        "--posts",
        str(inputs["posts"]),
        "--mentions",
        str(inputs["mentions"]),
        "--model",
        str(inputs["model"]),
        "--out",
        str(out),
        "--max-length",
        "16",
        "--precision",
        "fp32",
        "--partition-size",
        "40",
        "--local-files-only",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert is_complete(out) and len(read(out)) == len(inputs["expected_ids"])
    bad = argv[:8] + [str(inputs["root"] / "missing-model")] + argv[9:]
    assert main(bad) == 2


@pytest.mark.slow
def test_worker_killed_mid_run_gives_the_same_dataset(inputs, first_run, tmp_path):
    """Two worker processes; one is SIGKILLed as it starts a shard. The nanny restarts it,
    the plugin reloads the model there, Dask reruns the lost tasks: same dataset."""
    import cloudpickle
    from distributed import Client, LocalCluster

    _, _, expected = first_run
    out = tmp_path / "emb"
    marker = tmp_path / "killed"
    cloudpickle.register_pickle_by_value(tiny_models)
    try:
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                memory_limit="2GiB",
                local_directory=str(tmp_path / "dask"),
            ) as cluster,
            Client(cluster) as client,
        ):
            client.register_plugin(tiny_models.KillOnceDuringEmbed(str(marker), str(out)))
            manifest = run(inputs, out, client=client, partition_size=10)
    finally:
        cloudpickle.unregister_pickle_by_value(tiny_models)
        release_encoder()
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert manifest["n_shards"] >= 6 and is_complete(out)
    got = read(out)
    assert got["id"].tolist() == expected["id"].tolist()
    num = [c for c in got.columns if c != "id"]
    np.testing.assert_allclose(got[num].to_numpy(np.float64), expected[num].to_numpy(np.float64), atol=1e-5)
    assert not list(out.glob(".part-*"))


@pytest.mark.gpu
def test_gpu_backend_matches_cpu(inputs, first_run, tmp_path):
    from wsb_gpu.backend import resolve_backend

    _, _, expected = first_run
    out = tmp_path / "gpu"
    manifest = run_stage(
        "embed",
        out,
        posts=inputs["posts"],
        mentions=inputs["mentions"],
        backend=resolve_backend("gpu"),
        **params(inputs["model"], precision="auto"),
    )
    assert manifest["device"].startswith("cuda")
    got = read(out)
    assert got["id"].tolist() == expected["id"].tolist()
    cols = [c for c in got.columns if c.startswith("e")]
    a, b = got[cols].to_numpy(), expected[cols].to_numpy()
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.99
