"""The transformers backend: batched sampling with a KV cache, on CPU or CUDA.

A small explicit decoding loop instead of ``model.generate`` because the protocol needs, per
sequence, stop strings that cut exactly at the token completing the delimiter, raw per-token
logprobs and top-k, and a per-call seeded generator (no global RNG shared between requests).
Unique prompts are prefilled once and their KV cache repeated for the ``n`` samples.

Logits are float32 whatever the weights' dtype: a lower-precision model gets a float32 output
head (:mod:`llm_tts.backends.float32_head`), so greedy, sampling and logprobs read real float32
values, not upcast bfloat16 ones that tie at the top. Tokens are chosen by
:mod:`llm_tts.backends.sampling` (exact top-k, ties broken as greedy breaks them).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from llm_tts.backends.base import (
    BackendCapabilities,
    SampleUpdate,
    SamplingParams,
    Watcher,
    check_request,
    check_token_ids,
)
from llm_tts.backends.constraints import DecodingConstraint
from llm_tts.backends.device import parse_dtype, pick_device, torch_dtype
from llm_tts.backends.grammar_mask import GrammarCompiler, RowMasks
from llm_tts.backends.sampling import sample_next_tokens
from llm_tts.backends.tokenizer import ChatTokenizer, TokenizerMixin
from llm_tts.backends.usage import record_usage
from llm_tts.engine_logs import quiet_engine_logs
from llm_tts.errors import BackendUnavailableError, ModelLoadError
from llm_tts.models import display_name, resolve_model
from llm_tts.startup import startup_step
from llm_tts.types import Segment

_STOP_WINDOW_EXTRA = 4  # tokens decoded beyond the longest stop string when checking for it


class TransformersBackend(TokenizerMixin):
    """Implements :class:`llm_tts.backends.base.Backend` with a transformers causal LM."""

    tokenizer: ChatTokenizer

    name = "transformers"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_rows: int = 64,
    ) -> None:
        quiet_engine_logs()  # before torch and transformers are imported: they warn from import on
        from transformers import AutoModelForCausalLM

        from llm_tts.backends.float32_head import use_float32_head

        self.device = pick_device(device)
        parse_dtype(dtype)  # checked before anything loads
        path = resolve_model(model)
        self.dtype = torch_dtype(dtype, self.device, path)  # "auto" on a CPU: see llm_tts.backends.device
        self.model_name = display_name(model)
        self.model_path = path
        dtype_name = str(self.dtype).removeprefix("torch.")
        try:
            with startup_step(f"loading {self.model_name} with transformers ({self.device}, {dtype_name})"):
                self.tokenizer = ChatTokenizer.from_folder(path)
                self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=self.dtype).to(self.device).eval()
                # the model's own weights (for the cost's FLOPs estimate), not the float32 head's copy
                self.parameter_count: int | None = int(self.model.num_parameters())
                use_float32_head(self.model)  # float32 logits from bfloat16/float16 weights
        except Exception as e:
            raise ModelLoadError(f"could not load model folder {str(path)!r}: {e}") from e
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        extra = {gen_eos} if isinstance(gen_eos, int) else set(gen_eos or ())
        self.eos_token_ids = frozenset(self.tokenizer.eos_token_ids | extra)
        self.max_context_tokens = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.vocab_size = int(self.model.get_input_embeddings().num_embeddings)
        self.max_batch_rows = max_batch_rows
        self.capabilities = BackendCapabilities(logprobs=True, seed=True, token_prompts=True, constrained_decoding=True)
        self._lock = threading.Lock()  # one forward loop at a time on this model
        self._grammars: GrammarCompiler | None = None  # built on the first constrained request

    # -- protocol (render_chat, decode, token_texts come from TokenizerMixin) ----------
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Segment]]:
        return self.generate_watched(prompts, params, None)

    def generate_watched(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, watcher: Watcher | None
    ) -> list[list[Segment]]:
        """:class:`~llm_tts.backends.base.WatchingBackend`: the watcher runs after every decoding
        step; an aborted row leaves the batch like a finished one."""
        if self.model is None:
            raise BackendUnavailableError("this TransformersBackend is closed; create a new one")
        check_request(prompts, params, self.capabilities, self.max_context_tokens)
        check_token_ids(prompts, self.vocab_size)
        if params.constraint is not None:
            self._row_masks(params.constraint, 1)  # a constraint that cannot compile fails before any work
        import torch

        generator = torch.Generator(device=self.device)
        if params.seed is not None:
            generator.manual_seed(params.seed)
        else:
            generator.seed()
        chunk = max(1, self.max_batch_rows // params.n)
        out: list[list[Segment]] = []
        with self._lock:
            for i in range(0, len(prompts), chunk):
                out.extend(
                    self._generate_chunk(prompts[i : i + chunk], params, generator, _RowWatch(watcher, i, params.n))
                )
        return out

    def close(self) -> None:
        self.model = None

    def _row_masks(self, constraint: DecodingConstraint, rows: int) -> RowMasks:
        if self._grammars is None:
            self._grammars = GrammarCompiler(self.tokenizer.hf, self.vocab_size, self.eos_token_ids)
        return self._grammars.masks(constraint, rows)

    # -- decoding loop --------------------------------------------------------------------
    def _generate_chunk(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, generator: Any, watch: _RowWatch
    ) -> list[list[Segment]]:
        import torch
        from transformers import DynamicCache

        n, dev = params.n, self.device
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding
            input_ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            attention[i, width - len(p) :] = 1
        input_ids, attention = input_ids.to(dev), attention.to(dev)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)  # sliding-window layers where the model has them
        with torch.inference_mode():
            logits = (
                self.model(
                    input_ids=input_ids,
                    attention_mask=attention,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                .logits[:, -1, :]
                .float()
            )
            if n > 1:  # prefill each prompt once, then copy its KV cache for the n samples
                logits = logits.repeat_interleave(n, dim=0)
                attention = attention.repeat_interleave(n, dim=0)
                positions = positions.repeat_interleave(n, dim=0)
                cache.batch_repeat_interleave(n)
            budgets = [min(params.max_tokens, self.max_context_tokens - len(p)) for p in prompts for _ in range(n)]
            loop = _RowState(len(budgets), budgets, self.tokenizer, self.eos_token_ids, params.stop)
            active = list(range(len(budgets)))  # rows still in the batch, in batch order
            masks = self._row_masks(params.constraint, len(budgets)) if params.constraint else None
            next_pos = positions[:, -1:] + 1
            eos = torch.tensor(sorted(self.eos_token_ids), device=dev)
            k = params.top_logprobs
            # Penalties count this sequence's generated tokens (as vLLM's do); logprobs stay raw.
            counts = torch.zeros_like(logits) if params.penalized else None
            for _ in range(max(budgets)):
                logprobs = torch.log_softmax(logits, dim=-1) if params.logprobs or k else None
                scores = _penalized(logits, counts, params)
                if masks is not None:  # after the raw logprobs: see llm_tts.backends.grammar_mask
                    masks.apply(scores, active)
                token = sample_next_tokens(scores, params, generator)
                if masks is not None:
                    masks.accept(active, token.tolist())
                if counts is not None:
                    counts.scatter_add_(1, token[:, None], counts.new_ones((len(active), 1)))
                chosen = (
                    logprobs.gather(1, token[:, None]).squeeze(1).tolist()
                    if logprobs is not None and params.logprobs
                    else None
                )
                top = torch.topk(logprobs, k, dim=-1) if logprobs is not None and k else None
                loop.record(
                    active,
                    token.tolist(),
                    chosen,
                    (top.indices.tolist(), top.values.tolist()) if top is not None else None,
                    torch.isin(token, eos).tolist(),
                )
                watch.after_step(loop, active, params)
                keep = [j for j, r in enumerate(active) if not loop.done[r]]
                if not keep:
                    break
                if len(keep) < len(active):  # finished rows leave the batch: no compute on them
                    idx = torch.tensor(keep, device=dev)
                    cache.batch_select_indices(idx)
                    token, attention, next_pos = token[idx], attention[idx], next_pos[idx]
                    counts = None if counts is None else counts[idx]
                    active = [active[j] for j in keep]
                attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=1)
                logits = (
                    self.model(
                        input_ids=token[:, None],
                        attention_mask=attention,
                        position_ids=next_pos,
                        past_key_values=cache,
                        use_cache=True,
                    )
                    .logits[:, -1, :]
                    .float()
                )
                next_pos = next_pos + 1
        segments = loop.segments(self.tokenizer, params)
        # each prompt prefilled once (no cache between calls), then every row's tokens generated
        record_usage(sum(len(p) for p in prompts), sum(len(s) for s in segments))
        return [segments[i * n : (i + 1) * n] for i in range(len(prompts))]


def _penalized(logits: Any, counts: Any, params: SamplingParams) -> Any:
    """Logits less OpenAI's presence and frequency penalties (``counts``: tokens generated per row)."""
    if counts is None:
        return logits
    return logits - params.presence_penalty * (counts > 0).float() - params.frequency_penalty * counts


class _RowState:
    """Per-row token lists and finish state; stop strings are checked on a short tail only."""

    def __init__(
        self, rows: int, budgets: list[int], tokenizer: ChatTokenizer, eos: frozenset[int], stop: tuple[str, ...]
    ) -> None:
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.logprobs: list[list[float]] = [[] for _ in range(rows)]
        self.tops: list[list[dict[int, float]]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self.finish: list[str | None] = [None] * rows
        self.stop_text: list[str | None] = [None] * rows
        self.budgets = budgets
        self.tokenizer = tokenizer
        self.stop = stop
        self.window = max((len(s) for s in stop), default=0) + _STOP_WINDOW_EXTRA

    def record(
        self,
        rows: list[int],
        tokens: list[int],
        chosen: list[float] | None,
        top: tuple[list, list] | None,
        is_eos: list[bool],
    ) -> None:
        """Append one token to each of ``rows`` (the batch's rows, in batch order)."""
        for j, (r, tok) in enumerate(zip(rows, tokens)):
            self.tokens[r].append(tok)
            if chosen is not None:
                self.logprobs[r].append(chosen[j])
            if top is not None:
                self.tops[r].append(dict(zip(top[0][j], top[1][j])))
            if is_eos[j]:
                self._finish(r, "eos")
            elif self.stop and (hit := self._stop_hit(r)):
                self._finish(r, "stop", hit)
            elif len(self.tokens[r]) >= self.budgets[r]:
                self._finish(r, "length")

    def _stop_hit(self, r: int) -> str | None:
        tail = self.tokenizer.decode(self.tokens[r][-self.window :])
        return next((s for s in self.stop if s in tail), None)

    def _finish(self, r: int, reason: str, stop_text: str | None = None) -> None:
        self.done[r] = True
        self.finish[r] = reason
        self.stop_text[r] = stop_text

    def abort(self, r: int) -> None:
        """A watcher stopped row ``r``: it leaves the batch with the tokens it has."""
        if not self.done[r]:
            self._finish(r, "abort")

    def segments(self, tokenizer: ChatTokenizer, params: SamplingParams) -> list[Segment]:
        texts = tokenizer.hf.batch_decode(self.tokens, skip_special_tokens=True)
        return [self.segment(r, texts[r], params) for r in range(len(self.tokens))]

    def segment(self, r: int, text: str, params: SamplingParams) -> Segment:
        return Segment(
            token_ids=tuple(self.tokens[r]),
            text=text,
            logprobs=tuple(self.logprobs[r]) if params.logprobs else None,
            top_logprobs=tuple(self.tops[r]) if params.top_logprobs else None,
            finish_reason=self.finish[r] or "length",  # type: ignore[arg-type]
            stop_text=self.stop_text[r],
        )


class _RowWatch:
    """Hands each row's new token to the caller's watcher and applies its verdicts (no watcher:
    nothing to do). Rows are numbered prompt-major within a chunk that starts at ``first_prompt``."""

    def __init__(self, watcher: Watcher | None, first_prompt: int, n: int) -> None:
        self.watcher = watcher
        self.first_prompt = first_prompt
        self.n = n

    def after_step(self, rows: _RowState, active: list[int], params: SamplingParams) -> None:
        if self.watcher is None:
            return
        try:
            for r in active:
                finished = rows.done[r]
                segment = rows.segment(r, rows.tokenizer.decode(rows.tokens[r]), params) if finished else None
                verdict = self.watcher(
                    SampleUpdate(
                        self.first_prompt + r // self.n,
                        r % self.n,
                        rows.tokens[r],
                        rows.logprobs[r] if params.logprobs else None,
                        rows.tops[r] if params.top_logprobs else None,
                        1,
                        segment,
                    )
                )
                if verdict == "abort_all":
                    for other in active:
                        rows.abort(other)
                    return
                if verdict == "abort":
                    rows.abort(r)
        except BaseException:
            for other in active:
                rows.abort(other)
            raise
