"""GPU probe: what a machine with PyTorch-CUDA and CuPy can measure, RAPIDS or not.

Two measurements, written as one dated section of ``benchmarks/RESULTS.md``:

* **Embedding**: the project's :class:`~wsb_gpu.encoder.Encoder` on a BERT-base-sized model
  (``BertConfig()``: 12 layers, hidden 768 — FinBERT's shape, with random weights, since no
  weights can be downloaded) at ``max_length`` 64 on synthetic WSB-length posts, in fp32,
  bf16 and fp16: posts/s and tokens/s after a warm-up, and the cosine of each half-precision
  embedding to the fp32 one. The goal is >= 25,000 posts/s on one H100/H200 at L = 64 (the
  seed's FinBERT ran ~3,300 posts/s on an A100).
* **Ridge statistics**: the ``stats`` engine's per-month moments (:func:`wsb_gpu.models.moments.array_moments`)
  of a (rows x 773) float64 matrix on CuPy against NumPy: seconds and the largest relative
  difference.

Usage::

    python -m benchmarks.gpu_probe                       # on a GPU node
    python -m benchmarks.gpu_probe --device cpu --posts 300 --rows 20000 --no-append   # a dry run
"""

from __future__ import annotations

import argparse
import datetime as dt
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS_MD, machine_block, machine_info

_VOCABULARY = (
    "gme amc tsla nvda spy calls puts moon rocket tendies apes hold hodl diamond hands squeeze short "
    "earnings guidance beat miss yolo options expire printing bought sold shares price today tomorrow "
    "week bullish bearish red green dd loss gain money market stock stocks the a to is on of and i it"
)
WORDS = _VOCABULARY.split()


def build_bert_base(folder: Path, seed: int = 0) -> Path:
    """Save a BERT-base-sized model with random weights and a WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS + chars)]
    vocab += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=512)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522)  # BERT-base / FinBERT: 12 layers, 768 hidden, 12 heads
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def posts(n: int, seed: int = 0) -> list[str]:
    """WSB-length texts: 24 tokens on average, a long tail up to the truncation length."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(16), 0.6, n).astype(int), 2, 120)
    return [" ".join(rng.choice(WORDS, size=k)) for k in lengths]


def embed_probe(device: str, n_posts: int, max_length: int = 64, token_budget: int = 262_144) -> list[dict[str, Any]]:
    from wsb_gpu.encoder import Encoder, EncoderSpec, release_encoder

    texts = posts(n_posts)
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        model = build_bert_base(Path(tmp) / "bert-base")
        for precision in ("fp32", "bf16", "fp16"):
            spec = EncoderSpec(
                model=str(model),
                device=device,
                max_length=max_length,
                pooling="cls",
                precision=precision,
                token_budget=token_budget,
                local_files_only=True,
            )
            try:
                encoder = Encoder.load(spec)
                encoder.encode(texts[: min(2000, len(texts))])  # warm-up: kernels, allocator
                if device.startswith("cuda"):
                    import torch

                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                result = encoder.encode(texts)
                seconds = time.perf_counter() - t0
            except Exception as e:  # recorded, not hidden
                rows.append({"precision": precision, "error": f"{type(e).__name__}: {e}"})
                continue
            finally:
                release_encoder()
            emb = result.embeddings.astype(np.float64)
            if reference is None:
                reference = emb
            cos = (emb * reference).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(reference, axis=1))
            rows.append(
                {
                    "precision": precision,
                    "posts": len(texts),
                    "seconds": seconds,
                    "posts_per_s": len(texts) / seconds,
                    "tokens_per_s": float(result.n_tokens.sum()) / seconds,
                    "mean_tokens": float(result.n_tokens.mean()),
                    "cosine_min": float(cos.min()),
                    "cosine_mean": float(cos.mean()),
                }
            )
    return rows


def ridge_probe(rows: int, features: int = 772, months: int = 48) -> dict[str, Any]:
    from wsb_gpu.models.moments import array_moments

    rng = np.random.default_rng(0)
    values = rng.normal(size=(rows, features + 1)) + 5.0
    keys = rng.integers(0, months, rows).astype(np.int64)
    t0 = time.perf_counter()
    want = array_moments(values.copy(), keys)
    cpu_s = time.perf_counter() - t0
    out: dict[str, Any] = {"rows": rows, "features": features, "months": months, "numpy_s": cpu_s}
    try:
        import cupy
    except ImportError as e:
        out["error"] = f"CuPy not installed ({e})"
        return out
    dv, dk = cupy.asarray(values), cupy.asarray(keys)
    array_moments(dv[:1000].copy(), dk[:1000])  # warm-up
    cupy.cuda.Device().synchronize()
    t0 = time.perf_counter()
    got = array_moments(dv, dk)
    cupy.cuda.Device().synchronize()
    out["cupy_s"] = time.perf_counter() - t0
    out["max_rel_diff"] = max(float(np.max(np.abs(got[k].m2 - want[k].m2)) / np.max(np.abs(want[k].m2))) for k in want)
    return out


def section(info: dict[str, Any], embed: list[dict[str, Any]], ridge: dict[str, Any], command: str) -> str:
    lines = [
        f"\n## GPU probe, {dt.date.today().isoformat()}: {', '.join(info['gpus']) or 'no GPU'}\n",
        machine_block(info),
        f"\nCommand: `{command}`\n",
        "### Embedding: BERT-base shape (random weights), max_length 64, CLS pooling\n",
        "| precision | posts | seconds | posts/s | tokens/s | mean tokens | cosine to fp32 (min / mean) |",
        "| :-- | --: | --: | --: | --: | --: | --: |",
    ]
    for r in embed:
        if "error" in r:
            lines.append(f"| {r['precision']} | — | — | — | — | — | error: {r['error'][:120]} |")
        else:
            lines.append(
                f"| {r['precision']} | {r['posts']:,} | {r['seconds']:.2f} | {r['posts_per_s']:,.0f} | "
                f"{r['tokens_per_s']:,.0f} | {r['mean_tokens']:.1f} | {r['cosine_min']:.5f} / "
                f"{r['cosine_mean']:.5f} |"
            )
    best = max((r["posts_per_s"] for r in embed if "posts_per_s" in r), default=None)
    if best is not None:
        verdict = "met" if best >= 25_000 else "not met"
        lines.append(f"\nGoal >= 25,000 posts/s at L = 64: {verdict} (best {best:,.0f} posts/s).\n")
    lines.append(
        f"### Ridge statistics: {ridge['rows']:,} rows x {ridge['features'] + 1} columns, {ridge['months']} months\n"
    )
    if "error" in ridge:
        lines.append(f"NumPy {ridge['numpy_s']:.2f} s; CuPy: {ridge['error']}\n")
    else:
        lines.append(
            f"NumPy {ridge['numpy_s']:.2f} s, CuPy {ridge['cupy_s']:.3f} s "
            f"({ridge['numpy_s'] / ridge['cupy_s']:.1f}x); largest relative difference of the "
            f"cross-products {ridge['max_rel_diff']:.2e}.\n"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device [default: cuda]")
    parser.add_argument("--posts", type=int, default=200_000, help="posts to embed per precision")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the ridge-statistics matrix")
    parser.add_argument("--results", default=str(RESULTS_MD), help="RESULTS.md to append to")
    parser.add_argument("--no-append", action="store_true", help="print the section, do not append it")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(
                "error: gpu_probe: torch sees no CUDA device; run it on a GPU node, or pass --device cpu for a dry run",
                file=sys.stderr,
            )
            return 1
    info = machine_info()
    embed = embed_probe(args.device, args.posts)
    ridge = ridge_probe(args.rows)
    text = section(info, embed, ridge, "python -m benchmarks.gpu_probe " + " ".join(argv or sys.argv[1:]))
    print(text)
    if not args.no_append:
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(text)
        print(f"appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
