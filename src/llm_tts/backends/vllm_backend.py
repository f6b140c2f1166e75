"""The vLLM backend: an in-process engine with prefix caching, fed token ids.

Every ``generate`` call becomes one request per prefix (``n`` samples each, so a shared prefix
is prefilled once) handed to a scheduler thread (:mod:`llm_tts.backends.vllm_loop`) that merges
the requests of all concurrent callers into the engine's batches. Prompts go in as token ids,
never as text, so a beam's prefix is exactly what was generated and the prefix cache hits.

Outputs follow the protocol's contract: token ids are the engine's; text is ``decode(token_ids)``
(vLLM's own text may cut a token in half at a stop string); logprobs are the engine's raw
(temperature-free) logprobs, like the transformers backend's; finish reasons are "stop" (a
stop string, kept), "eos" (an end-of-turn token, kept in token_ids) and "length".

Logits: vLLM computes the LM head in the model's dtype and its sampler upcasts the logits to
float32 (``vllm.v1.sample.sampler.Sampler``), so in bfloat16 the top logits can tie. The
transformers backend computes its head in float32 instead (vLLM's ``head_dtype="float32"``);
here that option costs too much on a CPU, where vLLM converts the whole head weight to float32
at every step (decoding at batch 8 fell from about 140 to 50-65 tok/s), so it is left to the
caller: ``VLLMBackend(hf_overrides={"head_dtype": "float32"})``. top_k=1 is run as greedy, so it
picks the argmax even among tied logits.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from llm_tts.backends.base import (
    BackendCapabilities,
    SampleUpdate,
    SamplingParams,
    Watcher,
    check_request,
    check_token_ids,
)
from llm_tts.backends.constraints import DecodingConstraint, schema_of
from llm_tts.backends.cost import checkpoint_parameters
from llm_tts.backends.device import cuda_available, engine_dtype
from llm_tts.backends.tokenizer import ChatTokenizer, TokenizerMixin
from llm_tts.backends.usage import Meters, active_meters, record_usage
from llm_tts.backends.vllm_compat import default_enforce_eager
from llm_tts.backends.vllm_engine import (
    CPU_BLOCK_SIZE,
    EngineStats,
    close_at_exit,
    prepare_process,
    require_vllm,
    shutdown_engine,
    start_engine,
)
from llm_tts.engine_logs import quiet_engine_logs, vllm_engine_args
from llm_tts.errors import (
    BackendUnavailableError,
    ContextLengthError,
    InvalidParameterError,
    LLMTTSError,
    ModelLoadError,
)
from llm_tts.models import display_name, resolve_model
from llm_tts.startup import startup_step
from llm_tts.types import Segment

log = logging.getLogger(__name__)
_WATCH_POLL_S = 0.05  # how often a watched call looks for a failed request while no tokens arrive


class VLLMBackend(TokenizerMixin):
    """Implements :class:`llm_tts.backends.base.Backend` on an in-process ``vllm.LLMEngine``.

    Engine options: ``dtype`` ("auto": the model's own, but float32 on a CPU without bfloat16
    instructions, see :mod:`llm_tts.backends.device`; "bfloat16", "float16", "float32"), ``max_model_len``
    (context length; default the model's), ``gpu_memory_utilization`` (fraction of GPU memory
    for weights + KV cache; default 0.9, or what is free when ``kv_cache_space`` sizes the KV cache), ``tensor_parallel_size`` (GPUs to shard over),
    ``kv_cache_space`` (GiB of KV cache; on CPU the default is ``$VLLM_CPU_KVCACHE_SPACE`` or 2,
    on GPU it overrides ``gpu_memory_utilization``'s share), ``enable_prefix_caching``,
    ``block_size`` and ``enforce_eager`` (default: False on CUDA, which captures CUDA graphs and
    compiles the model: faster decoding, slower first start; True on the CPU build, which needs
    it). Other keyword arguments go to ``vllm.EngineArgs`` unchanged.
    """

    tokenizer: ChatTokenizer

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        tensor_parallel_size: int = 1,
        kv_cache_space: float | None = None,
        enable_prefix_caching: bool = True,
        block_size: int | None = None,
        enforce_eager: bool | None = None,
        **engine_kwargs: Any,
    ) -> None:
        _check_options(max_model_len, gpu_memory_utilization, tensor_parallel_size, kv_cache_space)
        path = resolve_model(model)
        self.model_name = display_name(model)
        self.model_path = path
        quiet_engine_logs()  # before torch and vLLM are imported: they log from their import on
        self.on_cpu = not cuda_available()
        prepare_process(on_cpu=self.on_cpu)
        if enforce_eager is None:
            enforce_eager = default_enforce_eager(on_cpu=self.on_cpu)
        self.enforce_eager = enforce_eager
        dtype = engine_dtype(dtype, path, on_cpu=self.on_cpu)  # float32 on a CPU without bfloat16 instructions
        self.dtype = dtype
        where = "CPU" if self.on_cpu else ("GPU, eager" if enforce_eager else "GPU, CUDA graphs")
        with startup_step(f"starting the vLLM engine for {self.model_name} ({where}, {dtype})"):
            require_vllm()  # a typed error here when vLLM is missing or broken
            try:
                self.tokenizer = ChatTokenizer.from_folder(path)
            except Exception as e:
                raise ModelLoadError(f"could not load the tokenizer of model folder {str(path)!r}: {e}") from e
            args: dict[str, Any] = dict(
                model=str(path),
                dtype=dtype,
                max_model_len=max_model_len,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                enable_prefix_caching=enable_prefix_caching,
                enforce_eager=enforce_eager,
                logprobs_mode="raw_logprobs",  # temperature-free, like the transformers backend
                max_logprobs=20,
                disable_log_stats=False,  # we read the prefix-cache statistics
                **engine_kwargs,
            )
            for key, value in vllm_engine_args().items():  # the user's engine_kwargs win
                args.setdefault(key, value)
            if block_size is not None or self.on_cpu:
                args["block_size"] = block_size or CPU_BLOCK_SIZE
            self.stats = EngineStats()
            self.engine = start_engine(args, kv_cache_space, self.stats, path)
        self.max_context_tokens = int(self.engine.model_config.max_model_len)
        self.vocab_size = int(self.engine.model_config.get_vocab_size())
        self.parameter_count: int | None = checkpoint_parameters(path)  # for the cost's FLOPs estimate
        # Sequences the scheduler batches at once: how many runs a server lets in together.
        self.concurrent_sequences = int(self.engine.vllm_config.scheduler_config.max_num_seqs)
        gen_eos = self.engine.model_config.hf_config.eos_token_id
        extra = {gen_eos} if isinstance(gen_eos, int) else set(gen_eos or ())
        self.eos_token_ids = frozenset(self.tokenizer.eos_token_ids | extra)
        self.capabilities = BackendCapabilities(
            logprobs=True,
            seed=not self.on_cpu,
            token_prompts=True,
            prefix_caching=enable_prefix_caching,
            constrained_decoding=True,  # vLLM's structured outputs (xgrammar / guidance)
        )
        from llm_tts.backends.vllm_loop import EngineLoop

        limit, vocab = self.max_context_tokens, self.vocab_size
        self._loop: EngineLoop | None = EngineLoop(self.engine, request_error=lambda e: _request_error(e, limit, vocab))
        self._warned_seed = False
        self._seed_lock = threading.Lock()
        close_at_exit(self)

    # -- protocol (render_chat, decode, token_texts come from TokenizerMixin) ----------
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Segment]]:
        return [f.result() for f in self.submit(prompts, params)]

    def submit(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Sequence[Future[list[Segment]]]:
        """One engine request per prompt (``n`` samples each); see :class:`SubmittingBackend`."""
        check_request(prompts, params, self.capabilities, self.max_context_tokens)
        check_token_ids(prompts, self.vocab_size)
        if self._loop is None:
            raise BackendUnavailableError("this vLLM backend was closed; create a new one")
        from vllm.inputs import TokensPrompt

        if params.top_k == 1 and not params.greedy:
            # top_k=1 leaves only the argmax, so it is greedy; vLLM's own top-k keeps every token
            # tied with the k-th (`logits < kth`), and bfloat16 logits tie at the top.
            params = replace(params, temperature=0.0)
        seed = self._seed(params.seed)
        vparams = [self._vllm_params(params, seed, self.max_context_tokens - len(p)) for p in prompts]
        vprompts = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        meters = active_meters()  # the outputs are converted in the engine loop's thread
        return self._loop.submit(vprompts, vparams, convert=lambda out: self._segments(out, params, meters))

    def generate_watched(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, watcher: Watcher
    ) -> list[list[Segment]]:
        """:class:`~llm_tts.backends.base.WatchingBackend`: one engine request per sample, each
        streaming its new tokens every engine step; an aborted one is aborted in the engine, so
        its batch slot is free at the next step (prefix caching keeps one prefill per prompt)."""
        check_request(prompts, params, self.capabilities, self.max_context_tokens)
        check_token_ids(prompts, self.vocab_size)
        if self._loop is None:
            raise BackendUnavailableError("this vLLM backend was closed; create a new one")
        from vllm.inputs import TokensPrompt

        if params.top_k == 1 and not params.greedy:
            params = replace(params, temperature=0.0)  # as in submit
        seed = self._seed(params.seed)
        n = 1 if params.greedy else params.n  # greedy samples are one request, copied
        one = replace(params, n=1)
        vprompts, vparams = [], []
        for p in prompts:
            room = self.max_context_tokens - len(p)
            for j in range(n):
                sample_seed = None if seed is None else seed + j  # n requests, not n clones
                vprompts.append(TokensPrompt(prompt_token_ids=list(p)))
                vparams.append(self._vllm_params(one, sample_seed, room, stream=True))
        updates: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        futures = self._loop.submit(vprompts, vparams, updates=updates)
        samples = [_StreamedSample(params) for _ in futures]
        cached = [0] * len(futures)  # each request's prefix-cache hits, known from its first output
        running = set(range(len(futures)))
        try:
            while running:
                try:
                    index, out = updates.get(timeout=_WATCH_POLL_S)
                except queue.Empty:
                    for i in running:
                        if futures[i].done():
                            futures[i].result()  # the engine refused or failed this request: raise it
                    continue
                if index not in running:
                    continue  # an output that was on its way when the sample was aborted
                sample = samples[index]
                cached[index] = out.num_cached_tokens or cached[index]
                completion = out.outputs[0]
                added = sample.add(completion)
                if out.finished:
                    running.discard(index)
                    sample.segment = _segment_of(sample, completion, self.tokenizer.decode(sample.token_ids))
                verdict = watcher(
                    SampleUpdate(
                        index // n,
                        index % n,
                        sample.token_ids,
                        sample.logprobs if params.logprobs else None,
                        sample.tops if params.top_logprobs else None,
                        added,
                        sample.segment,
                    )
                )
                stop = list(running) if verdict == "abort_all" else [index] if verdict == "abort" else []
                for i in stop:
                    if i in running:
                        running.discard(i)
                        futures[i].cancel()  # aborts the request in the engine
                        samples[i].segment = samples[i].aborted(self.tokenizer.decode(samples[i].token_ids))
        except BaseException:
            for i in running:
                futures[i].cancel()
            raise
        for i, sample in enumerate(samples):
            record_usage(len(prompts[i // n]), len(sample.token_ids), cached[i])
        segments = [s.segment for s in samples if s.segment is not None]  # every sample ended or was aborted
        return [segments[i * n : (i + 1) * n] * (params.n // n) for i in range(len(prompts))]

    def running_requests(self) -> int:
        """Requests this backend has in its engine now (0 when closed)."""
        return 0 if self._loop is None else self._loop.running_requests

    def close(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.close()
            self._loop = None
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            shutdown_engine(engine)

    # -- extras ---------------------------------------------------------------------------
    def engine_stats(self) -> dict[str, int | float]:
        """What the engine's scheduler counted since start-up (or the last ``reset_engine_stats``).

        Prefix cache: ``prompt_tokens`` looked up and ``cached_tokens`` found, for every request
        (each of the ``n`` samples of a prefix included). Generation: ``engine_steps``, the mean
        number of sequences running per step (``mean_running``) and ``generated_tokens``,
        including work that was later cancelled.
        """
        return self.stats.snapshot()

    def reset_engine_stats(self) -> None:
        self.stats.reset()

    # -- helpers --------------------------------------------------------------------------
    def _seed(self, seed: int | None) -> int | None:
        if seed is None or self.capabilities.seed:
            return seed
        with self._seed_lock:
            warned, self._warned_seed = self._warned_seed, True
        if not warned:
            # vLLM's CPU sampler crashes on per-request seeds ("CPU Generator does not use offset").
            log.warning(
                "vLLM on CPU does not support per-request seeds; seed=%s is ignored (results are not reproducible)",
                seed,
            )
        return None

    def _vllm_params(self, params: SamplingParams, seed: int | None, room: int, stream: bool = False) -> Any:
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        want_logprobs = params.logprobs or params.top_logprobs > 0
        return VSamplingParams(
            n=1 if params.greedy else params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_tokens=min(params.max_tokens, room),
            stop=list(params.stop) or None,
            stop_token_ids=sorted(self.eos_token_ids),
            include_stop_str_in_output=True,
            # The text is decoded here once a sample ends (one batch_decode): vLLM's per-step
            # incremental detokenizer is only needed to find stop strings. Without any, it would
            # cost the engine's output processing Python work per sequence per step.
            detokenize=bool(params.stop),
            skip_special_tokens=True,
            seed=seed,
            logprobs=params.top_logprobs if want_logprobs else None,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
            structured_outputs=None if params.constraint is None else structured_outputs(params.constraint),
        )

    def _segments(self, out: Any, params: SamplingParams, meters: Meters) -> list[Segment]:
        completions = sorted(out.outputs, key=lambda c: c.index)
        # The n samples are n engine requests; vLLM reports the prefix-cache hits of one of them
        # (the last to finish), counted here for each.
        requests = len(completions)
        record_usage(
            len(out.prompt_token_ids) * requests,
            sum(len(c.token_ids) for c in completions),
            (out.num_cached_tokens or 0) * requests,
            meters=meters,
        )
        texts = self.tokenizer.hf.batch_decode([list(c.token_ids) for c in completions], skip_special_tokens=True)
        row = [_segment(c, text, params) for c, text in zip(completions, texts)]
        return row * params.n if params.greedy and params.n > 1 else row  # vLLM refuses n > 1 when greedy


def structured_outputs(c: DecodingConstraint) -> Any:
    """vLLM's StructuredOutputsParams for a constraint (compact JSON, as the transformers backend writes it)."""
    from vllm.sampling_params import StructuredOutputsParams

    if c.kind == "json_schema":
        return StructuredOutputsParams(json=schema_of(c), disable_any_whitespace=True)
    if c.kind == "json_object":
        return StructuredOutputsParams(json={"type": "object"}, disable_any_whitespace=True)
    if c.kind == "regex":
        return StructuredOutputsParams(regex=c.spec)
    return StructuredOutputsParams(grammar=c.spec)


def _segment(c: Any, text: str, params: SamplingParams) -> Segment:
    token_ids = tuple(c.token_ids)
    logprobs = tops = None
    if c.logprobs is not None and (params.logprobs or params.top_logprobs):
        logprobs, tops = _position_logprobs(token_ids, c.logprobs, params)
    reason, stop_text = _finish_of(c)
    return Segment(
        token_ids=token_ids,
        text=text,
        logprobs=tuple(logprobs) if logprobs is not None else None,
        top_logprobs=tuple(tops) if tops is not None else None,
        finish_reason=reason,  # type: ignore[arg-type]
        stop_text=stop_text,
    )


def _position_logprobs(
    token_ids: Sequence[int], positions: Sequence[Any], params: SamplingParams
) -> tuple[list[float] | None, list[dict[int, float]] | None]:
    """Each position maps token id -> Logprob(rank): the sampled token plus the top-k by rank."""
    logprobs = [pos[t].logprob for t, pos in zip(token_ids, positions)] if params.logprobs else None
    tops = None
    if params.top_logprobs:
        k = params.top_logprobs
        tops = [
            {tid: lp.logprob for tid, lp in pos.items() if lp.rank is not None and lp.rank <= k} for pos in positions
        ]
    return logprobs, tops


class _StreamedSample:
    """One watched sample's tokens so far, grown from the engine's per-step deltas."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.token_ids: list[int] = []
        self.logprobs: list[float] = []
        self.tops: list[dict[int, float]] = []
        self.segment: Segment | None = None

    def add(self, delta: Any) -> int:
        ids = list(delta.token_ids)
        self.token_ids += ids
        if delta.logprobs is not None:
            lps, tops = _position_logprobs(ids, delta.logprobs, self.params)
            self.logprobs += lps or []
            self.tops += tops or []
        return len(ids)

    def segment_with(self, text: str, reason: str, stop_text: str | None) -> Segment:
        has_lp = self.params.logprobs and len(self.logprobs) == len(self.token_ids)
        has_top = self.params.top_logprobs and len(self.tops) == len(self.token_ids)
        return Segment(
            token_ids=tuple(self.token_ids),
            text=text,
            logprobs=tuple(self.logprobs) if has_lp else None,
            top_logprobs=tuple(self.tops) if has_top else None,
            finish_reason=reason,  # type: ignore[arg-type]
            stop_text=stop_text,
        )

    def aborted(self, text: str) -> Segment:
        return self.segment_with(text, "abort", None)


def _segment_of(sample: _StreamedSample, last: Any, text: str) -> Segment:
    return sample.segment_with(text, *_finish_of(last))


def _finish_of(c: Any) -> tuple[str, str | None]:
    if c.finish_reason == "length":
        reason, stop_text = "length", None
    elif c.finish_reason == "stop" and isinstance(c.stop_reason, str):
        reason, stop_text = "stop", c.stop_reason
    elif c.finish_reason == "stop":
        reason, stop_text = "eos", None  # an eos / stop token id, kept in token_ids
    else:
        raise BackendUnavailableError(f"the vLLM engine ended a request with finish_reason={c.finish_reason!r}")
    return reason, stop_text


def _request_error(e: Exception, limit: int, vocab_size: int) -> LLMTTSError:
    if isinstance(e, LLMTTSError):
        return e
    msg = str(e)
    if "maximum context length" in msg or "max_model_len" in msg:
        return ContextLengthError(-1 if "prompt contains" not in msg else _num_after(msg, "contains"), limit)
    if "out of vocabulary" in msg:
        return InvalidParameterError(
            "prompt token id", _num_after(msg, "Token id"), f"token ids must be integers in [0, {vocab_size})"
        )
    return InvalidParameterError("sampling parameters", msg, "rejected by the vLLM engine")


def _num_after(text: str, word: str) -> int:
    tail = text.split(word, 1)[1].split()
    return int(tail[0]) if tail and tail[0].lstrip("-").isdigit() else -1


def _check_options(max_model_len: int | None, gpu_mem: float | None, tp: int, kv: float | None) -> None:
    if max_model_len is not None and (not isinstance(max_model_len, int) or max_model_len < 16):
        raise InvalidParameterError(
            "max_model_len", max_model_len, "must be an integer >= 16 (or None for the model's)"
        )
    if gpu_mem is not None and (not isinstance(gpu_mem, (int, float)) or not 0.0 < gpu_mem <= 1.0):
        raise InvalidParameterError("gpu_memory_utilization", gpu_mem, "must be a fraction in (0, 1]")
    if not isinstance(tp, int) or tp < 1:
        raise InvalidParameterError("tensor_parallel_size", tp, "must be an integer >= 1 (number of GPUs)")
    if kv is not None and (not isinstance(kv, (int, float)) or kv <= 0):
        raise InvalidParameterError("kv_cache_space", kv, "must be a positive number of GiB")
