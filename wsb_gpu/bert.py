"""BERT in plain PyTorch, loaded from a model folder without importing transformers.

Importing transformers' BERT costs 1.5-2.5 s in every process that embeds (it pulls in
``torch._dynamo``, ``torch.distributed.tensor`` and the generation utilities), several times
what reading the weights costs. For the models this pipeline is built around (FinBERT,
all-MiniLM-L6-v2 and every other plain BERT checkpoint) the same computation is written out
here: word + position + token-type embeddings and LayerNorm, then post-LayerNorm encoder
layers (scaled-dot-product attention over the padding mask, exact-erf GELU), and for a
classifier checkpoint the pooler (``tanh`` of a dense layer on the first token) and the
linear head. The modules carry transformers' parameter names, so a checkpoint's
``model.safetensors`` loads as it is, and the tokenizer is its own ``tokenizer.json`` read by
the Rust ``tokenizers`` library.

:func:`native_config` decides: a local folder with ``config.json`` (``model_type: bert``,
absolute positions, ``gelu``, an encoder only, a ``BertModel`` or
``BertForSequenceClassification`` architecture), ``model.safetensors`` and
``tokenizer.json``. Anything else (hub ids, other architectures, pickle checkpoints) is loaded
through transformers by :meth:`wsb_gpu.encoder.Encoder.load`. ``tests/test_encoder.py``
checks this module against transformers' BERT on random checkpoints, with and without a head.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ARCHITECTURES = ("BertModel", "BertForSequenceClassification")


def native_config(folder: str | Path) -> SimpleNamespace | None:
    """The checkpoint's config when this module can run it, else None (use transformers).

    >>> native_config("/nonexistent") is None
    True
    """
    folder = Path(folder)
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    archs = list(raw.get("architectures") or ["BertModel"])
    plain = (
        raw.get("model_type") == "bert"
        and raw.get("hidden_act", "gelu") == "gelu"
        and raw.get("position_embedding_type", "absolute") == "absolute"
        and not raw.get("is_decoder", False)
        and not raw.get("add_cross_attention", False)
        and not raw.get("chunk_size_feed_forward", 0)
        and len(archs) == 1
        and archs[0] in ARCHITECTURES
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer.json").is_file()
    )
    if not plain:
        return None
    id2label = raw.get("id2label") or {}
    head = archs[0] == "BertForSequenceClassification"
    num_labels = int(raw.get("num_labels", len(id2label) or 2)) if head else 0
    return SimpleNamespace(
        architectures=archs,
        head=head,
        vocab_size=int(raw["vocab_size"]),
        hidden_size=int(raw["hidden_size"]),
        num_hidden_layers=int(raw["num_hidden_layers"]),
        num_attention_heads=int(raw["num_attention_heads"]),
        intermediate_size=int(raw["intermediate_size"]),
        max_position_embeddings=int(raw.get("max_position_embeddings", 512)),
        type_vocab_size=int(raw.get("type_vocab_size", 2)),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        pad_token_id=int(raw.get("pad_token_id") or 0),
        num_labels=num_labels,
        id2label=id2label,
    )


@functools.cache
def bert_class() -> type:
    """:class:`BertNative`, built on first use (torch is imported here, not with the module)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class _Embeddings(nn.Module):
        def __init__(self, c: SimpleNamespace) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
            self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
            self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
            self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

        def forward(self, ids: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            pos = torch.arange(ids.shape[1], device=ids.device)
            x = self.word_embeddings(ids) + self.token_type_embeddings(types) + self.position_embeddings(pos)[None]
            return self.LayerNorm(x)

    class _Linear(nn.Module):
        """A container named as transformers names it (``<name>.dense``)."""

        def __init__(self, n_in: int, n_out: int, eps: float | None = None) -> None:
            super().__init__()
            self.dense = nn.Linear(n_in, n_out)
            if eps is not None:
                self.LayerNorm = nn.LayerNorm(n_out, eps=eps)

    class _SelfAttention(nn.Module):
        def __init__(self, c: SimpleNamespace) -> None:
            super().__init__()
            self.query = nn.Linear(c.hidden_size, c.hidden_size)
            self.key = nn.Linear(c.hidden_size, c.hidden_size)
            self.value = nn.Linear(c.hidden_size, c.hidden_size)

    class _Attention(nn.Module):
        def __init__(self, c: SimpleNamespace) -> None:
            super().__init__()
            self.self = _SelfAttention(c)
            self.output = _Linear(c.hidden_size, c.hidden_size, c.layer_norm_eps)

    class _Layer(nn.Module):
        def __init__(self, c: SimpleNamespace) -> None:
            super().__init__()
            self.heads = c.num_attention_heads
            self.attention = _Attention(c)
            self.intermediate = _Linear(c.hidden_size, c.intermediate_size)
            self.output = _Linear(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, n, h = x.shape
            att = self.attention.self

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, n, self.heads, h // self.heads).transpose(1, 2)

            ctx = F.scaled_dot_product_attention(
                split(att.query(x)), split(att.key(x)), split(att.value(x)), attn_mask=mask
            )
            ctx = ctx.transpose(1, 2).reshape(b, n, h)
            out = self.attention.output
            x = out.LayerNorm(out.dense(ctx) + x)
            inner = F.gelu(self.intermediate.dense(x))
            return self.output.LayerNorm(self.output.dense(inner) + x)

    class _Encoder(nn.Module):
        def __init__(self, c: SimpleNamespace) -> None:
            super().__init__()
            self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))

    class BertNative(nn.Module):
        """BERT (and, with ``config.head``, its sequence-classification head) for inference.

        ``forward`` takes transformers' keyword arguments and returns an object with
        ``last_hidden_state``, ``hidden_states`` (the last one only) and, with a head, ``logits``.
        """

        def __init__(self, config: SimpleNamespace) -> None:
            super().__init__()
            self.config = config
            self.embeddings = _Embeddings(config)
            self.encoder = _Encoder(config)
            if config.head:
                self.pooler = _Linear(config.hidden_size, config.hidden_size)
                self.classifier = nn.Linear(config.hidden_size, config.num_labels)

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None,
            token_type_ids: torch.Tensor | None = None,
            output_hidden_states: bool = False,
        ) -> SimpleNamespace:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            x = self.embeddings(input_ids, token_type_ids)
            mask = attention_mask.bool()[:, None, None, :]  # True = attend; broadcast over heads, queries
            for layer in self.encoder.layer:
                x = layer(x, mask)
            out = SimpleNamespace(last_hidden_state=x, hidden_states=(x,), logits=None)
            if self.config.head:
                pooled = torch.tanh(self.pooler.dense(x[:, 0]))
                out.logits = self.classifier(pooled)
            return out

    return BertNative


def load(folder: str | Path, config: SimpleNamespace) -> tuple[Any, Any]:
    """The model (fp32, eval mode, on the CPU) and the folder's Rust tokenizer.

    Raises ``ValueError`` when the checkpoint's tensors are not those of the config (the
    caller then loads it through transformers, which explains the problem in its words).
    """
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    folder = Path(folder)
    state = load_file(str(folder / "model.safetensors"), device="cpu")
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("bert.")
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        renamed[key] = value.float()
    model = bert_class()(config)
    result = model.load_state_dict(renamed, strict=False)
    spare = [k for k in result.unexpected_keys if not (k.endswith("position_ids") or k.startswith("pooler."))]
    if result.missing_keys or spare:
        msg = (
            f"checkpoint tensors do not match a plain BERT (missing {result.missing_keys[:3]}, unexpected {spare[:3]})"
        )
        raise ValueError(msg)
    shapes_ok = all(math.prod(p.shape) > 0 for p in model.parameters())
    if not shapes_ok:
        raise ValueError("empty tensors in the checkpoint")
    model.eval()
    return model, _Tokenizer(Tokenizer.from_file(str(folder / "tokenizer.json")), config.pad_token_id)


class _Tokenizer:
    """What :class:`wsb_gpu.encoder.Encoder` reads of a transformers fast tokenizer."""

    is_fast = True
    model_input_names = ("input_ids", "token_type_ids", "attention_mask")

    def __init__(self, rust: Any, pad_token_id: int) -> None:
        self.backend_tokenizer = rust
        padding = rust.padding or {}
        pad = padding.get("pad_id", rust.token_to_id("[PAD]"))
        self.pad_token_id = int(pad_token_id if pad is None else pad)
