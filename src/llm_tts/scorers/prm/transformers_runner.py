"""The PRM scorer on transformers, with its own KV prefix cache.

Inputs, windowing and truncation are :mod:`llm_tts.scorers.prm.inputs`'s; this module runs them.

Incremental scoring: the model is causal, so the reward at a separator depends only on the
tokens before it. After each forward pass the KV cache of the whole input (ending at its last
separator) is kept in a bounded LRU keyed by its token ids. A request with
``first_unscored = k`` looks up the prefix ending at step k-1's separator and runs only the
new steps' tokens on top of it, so a beam that grew by one step costs one step of compute.
Requests are batched: cached prefixes are left-padded and new tokens right-padded into one
forward pass (bounded by ``max_batch_tokens``).

The loaded weights are shared by every scorer on the same path, device and dtype (loading a PRM
per request would dominate its cost); KV caches belong to one scorer, that is one request.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_tts.backends.device import pick_device, torch_dtype
from llm_tts.backends.usage import record_usage
from llm_tts.errors import ModelLoadError
from llm_tts.models import resolve_model
from llm_tts.scorers.base import Scorer, ScoreRequest
from llm_tts.scorers.prm.inputs import PRMInputs, PRMJob, PRMStats, PRMTokenizer, check_prm_folder
from llm_tts.startup import startup_step


@dataclass
class LoadedPRM:
    """A PRM model and tokenizer, shared read-only by every scorer on that path."""

    model: Any
    tokens: PRMTokenizer
    max_context_tokens: int
    device: Any
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward pass at a time

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer."""
        return self.tokens.hf

    @property
    def sep_id(self) -> int:
        return self.tokens.sep_id


_LOADED: dict[tuple[str, str, str], LoadedPRM] = {}
_LOADED_LOCK = threading.Lock()


def load_prm(path: str | os.PathLike[str], *, device: str = "auto", dtype: str = "auto") -> LoadedPRM:
    """Load (once per process, device and dtype) the PRM at ``path``, on the device and in the
    dtype every local model gets (:mod:`llm_tts.backends.device`); raises ModelNotFoundError /
    ModelLoadError, and InvalidParameterError / BackendUnavailableError for a bad device or dtype."""
    folder = Path(resolve_model(path))
    check_prm_folder(folder)
    dev = pick_device(device)
    torch_type = torch_dtype(dtype, dev, folder)  # "auto" on a CPU: the backends' CPU rule
    key = (str(folder.resolve()), str(dev), str(torch_type))
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(folder, dev, torch_type)
        return _LOADED[key]


def release_prm_models() -> None:
    """Forget every loaded PRM (their memory is freed once no scorer holds them)."""
    with _LOADED_LOCK:
        _LOADED.clear()


def _load(folder: Path, device: Any, dtype: Any) -> LoadedPRM:
    from transformers import AutoTokenizer

    from llm_tts.scorers.prm.model import Qwen2ForProcessRewardModel

    try:
        with startup_step(f"loading the PRM {folder.name} with transformers ({device.type})"):
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            model = Qwen2ForProcessRewardModel.from_pretrained(str(folder), dtype=dtype).to(device).eval()
    except Exception as e:
        raise ModelLoadError(f"could not load PRM folder {str(folder)!r}: {e}") from e
    return LoadedPRM(
        model=model,
        tokens=PRMTokenizer.of(tokenizer, folder),
        max_context_tokens=int(model.config.max_position_embeddings),
        device=device,
    )


class PRMScorer(Scorer):
    """``prm`` on transformers: the PRM's step rewards, prefixes reused from a KV cache."""

    name = "prm"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_context_tokens: int | None = None,
        max_batch_tokens: int = 16384,
        cache_max_entries: int = 256,
        cache_max_bytes: int = 1 << 30,
    ) -> None:
        self.prm = load_prm(model_path, device=device, dtype=dtype)
        limit = self.prm.max_context_tokens
        self.max_context_tokens = min(max_context_tokens, limit) if max_context_tokens else limit
        self.inputs = PRMInputs(self.prm.tokens, self.max_context_tokens)
        self.max_batch_tokens = max_batch_tokens
        self.stats = PRMStats()
        self.parameter_count: int | None = int(self.prm.model.num_parameters())  # for the run's FLOPs estimate
        self._cache = _PrefixCache(cache_max_entries, cache_max_bytes)
        self._lock = threading.Lock()

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        with self._lock:
            return self.inputs.score(requests, self._run)

    def close(self) -> None:
        self._cache.clear()

    def input_ids(self, question: str, step_texts: Sequence[str]) -> list[int]:
        """The PRM's input for a whole trajectory, ending at its last separator (no truncation)."""
        return self.inputs.input_ids(question, step_texts)

    # -- running the model ------------------------------------------------------------------
    def _run(self, jobs: list[PRMJob]) -> list[list[float]]:
        rows = [(job, *self._cached_prefix(job)) for job in jobs]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0].ids))
        results: dict[int, list[float]] = {}
        batch: list[int] = []
        for i in order:  # similar lengths together; each batch under max_batch_tokens
            if batch and (len(batch) + 1) * len(rows[i][0].ids) > self.max_batch_tokens:
                results.update(zip(batch, self._forward([rows[j] for j in batch])))
                batch = []
            batch.append(i)
        if batch:
            results.update(zip(batch, self._forward([rows[j] for j in batch])))
        return [results[i] for i in range(len(rows))]

    def _cached_prefix(self, job: PRMJob) -> tuple[list[tuple[Any, Any]] | None, int]:
        """The longest cached prefix ending at a separator before the first step to score."""
        for k in range(job.first_scored - 1, -1, -1):
            end = job.seps[k] + 1
            if (kv := self._cache.get(tuple(job.ids[:end]))) is not None:
                return kv, end
        return None, 0

    def _forward(self, rows: list[tuple[PRMJob, list[tuple[Any, Any]] | None, int]]) -> list[list[float]]:
        import torch
        from transformers import DynamicCache

        model, dev = self.prm.model, self.prm.device
        past_max = max(p for _, _, p in rows)
        new_max = max(len(job.ids) - p for job, _, p in rows)
        b = len(rows)
        input_ids = torch.full((b, new_max), self.prm.tokens.pad_id, dtype=torch.long)
        attention = torch.zeros((b, past_max + new_max), dtype=torch.long)
        positions = torch.zeros((b, new_max), dtype=torch.long)
        for i, (job, _, p) in enumerate(rows):  # cached prefix left-padded, new tokens right-padded
            new = job.ids[p:]
            input_ids[i, : len(new)] = torch.tensor(new, dtype=torch.long)
            attention[i, past_max - p : past_max + len(new)] = 1
            positions[i] = torch.arange(p, p + new_max)
        cache = DynamicCache(ddp_cache_data=_pad_left(rows, past_max) if past_max else None, config=model.config)
        with self.prm.lock, torch.inference_mode():
            logits, cache = model(
                input_ids=input_ids.to(dev),
                attention_mask=attention.to(dev),
                position_ids=positions.to(dev),
                past_key_values=cache,
                use_cache=True,
            )
            probs = torch.softmax(logits.float(), dim=-1)[..., 1].cpu()
        self.stats.forward_calls += 1
        record_usage(sum(len(job.ids) for job, _, _ in rows), 0, sum(p for _, _, p in rows))
        out = []
        for i, (job, _, p) in enumerate(rows):
            self.stats.computed_tokens += len(job.ids) - p
            self.stats.reused_tokens += p
            out.append([float(probs[i, s - p]) for s in job.seps[job.first_scored :]])
            lo, hi = past_max - p, past_max + len(job.ids) - p
            kv = [(layer.keys[i, :, lo:hi].clone(), layer.values[i, :, lo:hi].clone()) for layer in cache.layers]
            self._cache.put(tuple(job.ids), kv)
        return out


def _pad_left(rows: list[tuple[PRMJob, list[tuple[Any, Any]] | None, int]], width: int) -> list[tuple[Any, Any]]:
    """Per layer, the rows' cached keys and values left-padded with zeros to ``width``."""
    template = next(kv for _, kv, _ in rows if kv is not None)
    layers = []
    for layer, (k0, v0) in enumerate(template):
        keys = k0.new_zeros((len(rows), k0.shape[0], width, k0.shape[2]))
        values = v0.new_zeros((len(rows), v0.shape[0], width, v0.shape[2]))
        for i, (_, kv, p) in enumerate(rows):
            if kv is not None:
                keys[i, :, width - p :] = kv[layer][0]
                values[i, :, width - p :] = kv[layer][1]
        layers.append((keys, values))
    return layers


class _PrefixCache:
    """A bounded LRU of per-row KV caches keyed by the token ids they encode.

    Bounded in bytes too: a 7B PRM's KV cache is about 57 KB per token in bf16.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[tuple[int, ...], tuple[list[tuple[Any, Any]], int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[int, ...]) -> list[tuple[Any, Any]] | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: tuple[int, ...], kv: list[tuple[Any, Any]]) -> None:
        size = sum(k.nbytes + v.nbytes for k, v in kv)
        if size > self.max_bytes or self.max_entries < 1:
            return
        if key in self._items:
            self._bytes -= self._items.pop(key)[1]
        self._items[key] = (kv, size)
        self._bytes += size
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            self._bytes -= self._items.popitem(last=False)[1][1]

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)
