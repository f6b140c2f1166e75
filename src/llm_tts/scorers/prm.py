"""Process reward models in the Qwen2.5-Math-PRM format, on transformers.

Input (as in the model card): the PRM's chat template renders

    system    "Please reason step by step, and put your final answer within \\boxed{}."
    user      the question
    assistant step_1 <extra_0> step_2 <extra_0> ... step_n <extra_0>

and the reward of step i is ``softmax(logits)[1]`` (P(correct)) at the i-th ``<extra_0>``. Step
texts are stripped of surrounding whitespace (the delimiter ``"\\n\\n"`` is what ``<extra_0>``
replaces) and of any literal ``<extra_0>``. Scores are in [0, 1], higher = better.

Incremental scoring: the model is causal, so the reward at a separator depends only on the
tokens before it. After each forward pass the KV cache of the whole input (ending at its last
separator) is kept in a bounded LRU keyed by its token ids. A request with
``first_unscored = k`` looks up the prefix ending at step k-1's separator and runs only the
new steps' tokens on top of it, so a beam that grew by one step costs one step of compute.
Requests are batched: cached prefixes are left-padded and new tokens right-padded into one
forward pass (bounded by ``max_batch_tokens``).

Truncation: when the question and the steps do not fit the PRM's context, the earliest steps
are dropped from the PRM's view (whole steps, from the left); every step is still scored, with
as many of the steps before it as fit. A single step that does not fit together with the
question raises :class:`~llm_tts.errors.ContextLengthError`.

The loaded weights are shared by every scorer on the same path (loading a PRM per request
would dominate its cost); KV caches belong to one scorer, that is one request.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from llm_tts.errors import CapabilityError, ContextLengthError, ModelLoadError
from llm_tts.models import resolve_model
from llm_tts.scorers.base import Scorer, ScoreRequest, ScorerContext, register_scorer
from llm_tts.startup import startup_step

PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_SEPARATOR = "<extra_0>"
PRM_ARCHITECTURE = "Qwen2ForProcessRewardModel"
PRM_PATH_ENV = "PRM_MODEL_PATH"
_MARK = "\ue000STEPS\ue000"  # private-use text that no template touches; split point of the render


def prm_messages(question: str, step_texts: Sequence[str]) -> list[dict[str, str]]:
    """The chat the PRM judges, in the model card's format (steps joined by ``<extra_0>``)."""
    steps = [_clean_step(t) for t in step_texts]
    return [
        {"role": "system", "content": PRM_SYSTEM},
        {"role": "user", "content": question.replace(STEP_SEPARATOR, "")},  # separators mark steps only
        {"role": "assistant", "content": STEP_SEPARATOR.join(steps) + STEP_SEPARATOR},
    ]


def _clean_step(text: str) -> str:
    """A step as the PRM was trained on it: no surrounding whitespace, no literal separator."""
    return text.replace(STEP_SEPARATOR, "").strip()


@dataclass
class LoadedPRM:
    """A PRM model and tokenizer, shared read-only by every scorer on that path."""

    model: Any
    tokenizer: Any
    sep_id: int
    pad_id: int
    max_context_tokens: int
    device: Any
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward pass at a time


_LOADED: dict[tuple[str, str, str], LoadedPRM] = {}
_LOADED_LOCK = threading.Lock()


def load_prm(path: str | os.PathLike[str], *, device: str = "auto", dtype: str = "auto") -> LoadedPRM:
    """Load (once per process) the PRM at ``path``; raises ModelNotFoundError / ModelLoadError."""
    folder = resolve_model(path)
    key = (str(Path(folder).resolve()), device, dtype)
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(Path(folder), device, dtype)
        return _LOADED[key]


def release_prm_models() -> None:
    """Forget every loaded PRM (their memory is freed once no scorer holds them)."""
    with _LOADED_LOCK:
        _LOADED.clear()


def _load(folder: Path, device: str, dtype: str) -> LoadedPRM:
    config = json.loads((folder / "config.json").read_text())
    archs = config.get("architectures") or []
    if PRM_ARCHITECTURE not in archs or config.get("model_type") != "qwen2":
        raise ModelLoadError(
            f"{str(folder)!r} is not a process reward model in the Qwen2.5-Math-PRM format: config has "
            f"architectures={archs} model_type={config.get('model_type')!r}, expected [{PRM_ARCHITECTURE!r}] and 'qwen2'"
        )
    import torch
    from transformers import AutoTokenizer

    from llm_tts.backends.transformers_backend import _pick_dtype
    from llm_tts.scorers.prm_model import Qwen2ForProcessRewardModel

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    try:
        with startup_step(f"loading the PRM {folder.name} with transformers ({dev.type})"):
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            model = Qwen2ForProcessRewardModel.from_pretrained(str(folder), dtype=_pick_dtype(dtype, dev)).to(dev).eval()
    except Exception as e:  # noqa: BLE001 - any loader failure means the same thing to the user
        raise ModelLoadError(f"could not load PRM folder {str(folder)!r}: {e}") from e
    sep_id = tokenizer.convert_tokens_to_ids(STEP_SEPARATOR)
    if STEP_SEPARATOR not in tokenizer.get_vocab() or sep_id is None:
        raise ModelLoadError(f"PRM tokenizer in {str(folder)!r} has no {STEP_SEPARATOR!r} token")
    if not tokenizer.chat_template:
        raise ModelLoadError(f"PRM tokenizer in {str(folder)!r} has no chat template")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return LoadedPRM(
        model=model,
        tokenizer=tokenizer,
        sep_id=int(sep_id),
        pad_id=int(pad if pad is not None else 0),
        max_context_tokens=int(model.config.max_position_embeddings),
        device=dev,
    )


@dataclass
class PRMStats:
    """Token counts of one scorer, to check that prefixes are reused (tests, benchmarks)."""

    forward_calls: int = 0
    computed_tokens: int = 0  # tokens run through the model
    reused_tokens: int = 0  # tokens whose KV came from the prefix cache


@dataclass
class _Job:
    """One PRM input: ``ids`` end at the last separator; score steps ``first_scored`` onwards."""

    request: int
    ids: list[int]
    seps: list[int]  # position of each window step's separator in ids
    first_scored: int


class PRMScorer(Scorer):
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
        self.max_batch_tokens = max_batch_tokens
        self.stats = PRMStats()
        self._cache = _PrefixCache(cache_max_entries, cache_max_bytes)
        self._heads: dict[str, str] = {}
        self._lock = threading.Lock()

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        with self._lock:
            jobs = [job for i, r in enumerate(requests) for job in self._plan(i, r)]
            out: list[list[float]] = [[] for _ in requests]
            for job, scores in zip(jobs, self._run(jobs)):
                out[job.request].extend(scores)  # a request's jobs are planned in step order
            return out

    def close(self) -> None:
        self._cache.clear()

    def input_ids(self, question: str, step_texts: Sequence[str]) -> list[int]:
        """The PRM's input for a whole trajectory, ending at its last separator (no truncation)."""
        return _Encoded(self.prm, self._head(question), step_texts).ids(0, len(step_texts))[0]

    # -- building inputs ------------------------------------------------------------------
    def _head(self, question: str) -> str:
        """The rendered chat up to where the assistant's steps begin."""
        if question not in self._heads:
            text = self.prm.tokenizer.apply_chat_template(
                prm_messages(question, [_MARK]), tokenize=False, add_generation_prompt=False
            )
            if _MARK not in text:
                raise ModelLoadError("the PRM's chat template does not render the assistant message")
            self._heads[question] = text.split(_MARK)[0]
        return self._heads[question]

    def _plan(self, index: int, r: ScoreRequest) -> list[_Job]:
        n = len(r.steps)
        if r.first_unscored == n:
            return []
        enc = _Encoded(self.prm, self._head(r.question), [s.text for s in r.steps])
        limit = self.max_context_tokens
        if enc.length(0, n) <= limit:
            return [_Job(index, *enc.ids(0, n), r.first_unscored)]
        jobs = []
        start = r.first_unscored
        while start < n:  # steps [start, end) scored in this window, with steps [a, start) as context
            if (size := enc.length(start, start + 1)) > limit:
                raise ContextLengthError(size, limit, param="prm")
            end = start + 1
            while end < n and enc.length(start, end + 1) <= limit:
                end += 1
            a = start
            while a > 0 and enc.length(a - 1, end) <= limit:
                a -= 1
            jobs.append(_Job(index, *enc.ids(a, end), start - a))
            start = end
        return jobs

    # -- running the model ------------------------------------------------------------------
    def _run(self, jobs: list[_Job]) -> list[list[float]]:
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

    def _cached_prefix(self, job: _Job) -> tuple[list[tuple[Any, Any]] | None, int]:
        """The longest cached prefix ending at a separator before the first step to score."""
        for k in range(job.first_scored - 1, -1, -1):
            end = job.seps[k] + 1
            if (kv := self._cache.get(tuple(job.ids[:end]))) is not None:
                return kv, end
        return None, 0

    def _forward(self, rows: list[tuple[_Job, list[tuple[Any, Any]] | None, int]]) -> list[list[float]]:
        import torch
        from transformers import DynamicCache

        model, dev = self.prm.model, self.prm.device
        past_max = max(p for _, _, p in rows)
        new_max = max(len(job.ids) - p for job, _, p in rows)
        b = len(rows)
        input_ids = torch.full((b, new_max), self.prm.pad_id, dtype=torch.long)
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
        out = []
        for i, (job, _, p) in enumerate(rows):
            self.stats.computed_tokens += len(job.ids) - p
            self.stats.reused_tokens += p
            out.append([float(probs[i, s - p]) for s in job.seps[job.first_scored :]])
            lo, hi = past_max - p, past_max + len(job.ids) - p
            kv = [(layer.keys[i, :, lo:hi].clone(), layer.values[i, :, lo:hi].clone()) for layer in cache.layers]
            self._cache.put(tuple(job.ids), kv)
        return out


def _pad_left(rows: list[tuple[_Job, list[tuple[Any, Any]] | None, int]], width: int) -> list[tuple[Any, Any]]:
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


class _Encoded:
    """Token ids of windows ``steps[a:e]`` of one request, each step encoded once.

    The separator is a special token, so the tokenizer encodes the text between separators
    independently: ids(a, e) equals encoding the rendered string of that window in one go.
    """

    def __init__(self, prm: LoadedPRM, head: str, texts: Sequence[str]) -> None:
        self.tok, self.sep, self.head = prm.tokenizer, prm.sep_id, head
        self.texts = [_clean_step(t) for t in texts]
        self.steps = [self.tok.encode(t, add_special_tokens=False) for t in self.texts]
        self.firsts: dict[int, list[int]] = {}  # the head is encoded together with the window's first step
        self.prefix = [0]
        for s in self.steps:
            self.prefix.append(self.prefix[-1] + len(s) + 1)

    def _first(self, a: int) -> list[int]:
        if a not in self.firsts:
            self.firsts[a] = self.tok.encode(self.head + self.texts[a], add_special_tokens=True)
        return self.firsts[a]

    def length(self, a: int, e: int) -> int:
        return len(self._first(a)) + 1 + self.prefix[e] - self.prefix[a + 1]

    def ids(self, a: int, e: int) -> tuple[list[int], list[int]]:
        ids = [*self._first(a), self.sep]
        seps = [len(ids) - 1]
        for s in self.steps[a + 1 : e]:
            ids.extend(s)
            ids.append(self.sep)
            seps.append(len(ids) - 1)
        return ids, seps


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


@register_scorer("prm")
def _create(ctx: ScorerContext) -> Scorer:
    path = ctx.prm_model or os.environ.get(PRM_PATH_ENV)
    if not path:
        raise CapabilityError(
            "scorer 'prm' needs a process reward model (Qwen2.5-Math-PRM format): pass its path as prm_model "
            f"(TTSEngine(prm_model=...), ChatTTS(prm_model=...)) or set {PRM_PATH_ENV}"
        )
    if getattr(ctx.backend, "name", None) == "vllm":  # policy on vLLM: the PRM runs on vLLM's pooling runner too
        from llm_tts.scorers.vllm_prm import VLLMPRMScorer

        return VLLMPRMScorer(path)
    return PRMScorer(path)
