"""The vLLM backend: an in-process engine with prefix caching, fed token ids.

Every ``generate`` call becomes one request per prefix (``n`` samples each, so a shared prefix
is prefilled once) handed to a scheduler thread (:mod:`llm_tts.backends.vllm_loop`) that merges
the requests of all concurrent callers into the engine's batches. Prompts go in as token ids,
never as text, so a beam's prefix is exactly what was generated and the prefix cache hits.

Outputs follow the protocol's contract: token ids are the engine's; text is ``decode(token_ids)``
(vLLM's own text may cut a token in half at a stop string); logprobs are the engine's raw
(temperature-free) logprobs, like the transformers backend's; finish reasons are "stop" (a
stop string, kept), "eos" (an end-of-turn token, kept in token_ids) and "length".
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future
from typing import Any, Sequence

from llm_tts.backends.base import BackendCapabilities, SamplingParams, check_request, check_token_ids
from llm_tts.backends.cpu_dtype import auto_cpu_dtype
from llm_tts.backends.tokenizer import ChatTokenizer, LocalTokenizerMixin
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

GiB = 1 << 30
DEFAULT_CPU_KV_CACHE_GIB = 2.0  # when neither kv_cache_space nor VLLM_CPU_KVCACHE_SPACE is given
# The CPU attention kernel needs block sizes that are multiples of 32; vLLM's CPU default is 128,
# which caches nothing of a prefix shorter than 128 tokens. 32 keeps beams' prefixes cached.
CPU_BLOCK_SIZE = 32
_MAX_ENGINE_MESSAGE = 400
_ENGINE_START_LOCK = threading.Lock()  # engine start-up touches process-wide state (env, torch.distributed)


class VLLMBackend(LocalTokenizerMixin):
    """Implements :class:`llm_tts.backends.base.Backend` on an in-process ``vllm.LLMEngine``.

    Engine options: ``dtype`` ("auto": the model's own, but float32 on a CPU without bfloat16
    instructions, see :mod:`llm_tts.backends.cpu_dtype`; "bfloat16", "float16", "float32"), ``max_model_len``
    (context length; default the model's), ``gpu_memory_utilization`` (fraction of GPU memory
    for weights + KV cache), ``tensor_parallel_size`` (GPUs to shard over),
    ``kv_cache_space`` (GiB of KV cache; on CPU the default is ``$VLLM_CPU_KVCACHE_SPACE`` or 2,
    on GPU it overrides ``gpu_memory_utilization``'s share), ``enable_prefix_caching``,
    ``block_size`` and ``enforce_eager`` (False on GPU captures CUDA graphs: faster decoding,
    slower start). Other keyword arguments go to ``vllm.EngineArgs`` unchanged.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        kv_cache_space: float | None = None,
        enable_prefix_caching: bool = True,
        block_size: int | None = None,
        enforce_eager: bool = True,
        **engine_kwargs: Any,
    ) -> None:
        _check_options(max_model_len, gpu_memory_utilization, tensor_parallel_size, kv_cache_space)
        path = resolve_model(model)
        self.model_name = display_name(model)
        self.model_path = path
        quiet_engine_logs()  # before torch and vLLM are imported: they log from their import on
        self.on_cpu = _cpu_only()
        if self.on_cpu:
            # In-process engine core: starts in seconds; our own scheduler thread gives concurrency.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        else:
            # A forked engine core cannot use CUDA once this process touched it ("Cannot
            # re-initialize CUDA in forked subprocess", seen on an H200 at first use): spawn it.
            os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        if dtype == "auto" and self.on_cpu:
            dtype = auto_cpu_dtype(path)  # float32 where the CPU has no bfloat16 instructions
        self.dtype = dtype
        where = "CPU" if self.on_cpu else "GPU"
        with startup_step(f"starting the vLLM engine for {self.model_name} ({where}, {dtype})"):
            _import_vllm()  # a typed error here when vLLM is missing or broken
            try:
                self.tokenizer = ChatTokenizer.from_folder(path)
            except Exception as e:  # noqa: BLE001
                raise ModelLoadError(f"could not load the tokenizer of model folder {str(path)!r}: {e}") from e
            args: dict[str, Any] = dict(
                model=str(path),
                dtype=dtype,
                max_model_len=max_model_len,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                enable_prefix_caching=enable_prefix_caching,
                enforce_eager=enforce_eager,  # no graph capture: starts in seconds; the CPU build needs it
                logprobs_mode="raw_logprobs",  # temperature-free, like the transformers backend
                max_logprobs=20,
                disable_log_stats=False,  # we read the prefix-cache statistics
                **engine_kwargs,
            )
            for key, value in vllm_engine_args().items():  # the user's engine_kwargs win
                args.setdefault(key, value)
            if block_size is not None or self.on_cpu:
                args["block_size"] = block_size or CPU_BLOCK_SIZE
            self.stats = _EngineStats()
            self.engine = _start_engine(args, kv_cache_space, self.stats, path)
        self.max_context_tokens = int(self.engine.model_config.max_model_len)
        self.vocab_size = int(self.engine.model_config.get_vocab_size())
        gen_eos = self.engine.model_config.hf_config.eos_token_id
        extra = {gen_eos} if isinstance(gen_eos, int) else set(gen_eos or ())
        self.eos_token_ids = frozenset(self.tokenizer.eos_token_ids | extra)
        self.capabilities = BackendCapabilities(
            logprobs=True, seed=not self.on_cpu, token_prompts=True, extras={"prefix_caching": enable_prefix_caching}
        )
        from llm_tts.backends.vllm_loop import EngineLoop

        limit, vocab = self.max_context_tokens, self.vocab_size
        self._loop: EngineLoop | None = EngineLoop(self.engine, request_error=lambda e: _request_error(e, limit, vocab))
        self._warned_seed = False
        self._seed_lock = threading.Lock()

    # -- protocol (render_chat, decode, token_texts come from LocalTokenizerMixin) ----------
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Segment]]:
        return [f.result() for f in self.submit(prompts, params)]

    def submit(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Future[list[Segment]]]:
        """One engine request per prompt (``n`` samples each); see :class:`SubmittingBackend`."""
        check_request(prompts, params, self.capabilities, self.max_context_tokens)
        check_token_ids(prompts, self.vocab_size)
        if self._loop is None:
            raise BackendUnavailableError("this vLLM backend was closed; create a new one")
        from vllm.inputs import TokensPrompt

        seed = self._seed(params.seed)
        vparams = [self._vllm_params(params, seed, self.max_context_tokens - len(p)) for p in prompts]
        vprompts = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        return self._loop.submit(vprompts, vparams, convert=lambda out: self._segments(out, params))

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
            log.warning("vLLM on CPU does not support per-request seeds; seed=%s is ignored (results are not reproducible)", seed)
        return None

    def _vllm_params(self, params: SamplingParams, seed: int | None, room: int) -> Any:
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
            skip_special_tokens=True,
            seed=seed,
            logprobs=params.top_logprobs if want_logprobs else None,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def _segments(self, out: Any, params: SamplingParams) -> list[Segment]:
        completions = sorted(out.outputs, key=lambda c: c.index)
        texts = self.tokenizer.hf.batch_decode([list(c.token_ids) for c in completions], skip_special_tokens=True)
        row = [_segment(c, text, params) for c, text in zip(completions, texts)]
        return row * params.n if params.greedy and params.n > 1 else row  # vLLM refuses n > 1 when greedy


def _segment(c: Any, text: str, params: SamplingParams) -> Segment:
    token_ids = tuple(c.token_ids)
    logprobs = tops = None
    if c.logprobs is not None and (params.logprobs or params.top_logprobs):
        # Each position maps token id -> Logprob(rank): the sampled token plus the top-k by rank.
        logprobs = tuple(pos[t].logprob for t, pos in zip(token_ids, c.logprobs)) if params.logprobs else None
        if params.top_logprobs:
            k = params.top_logprobs
            tops = tuple(
                {tid: lp.logprob for tid, lp in pos.items() if lp.rank is not None and lp.rank <= k} for pos in c.logprobs
            )
    if c.finish_reason == "length":
        reason, stop_text = "length", None
    elif c.finish_reason == "stop" and isinstance(c.stop_reason, str):
        reason, stop_text = "stop", c.stop_reason
    elif c.finish_reason == "stop":
        reason, stop_text = "eos", None  # an eos / stop token id, kept in token_ids
    else:
        raise BackendUnavailableError(f"the vLLM engine ended a request with finish_reason={c.finish_reason!r}")
    return Segment(
        token_ids=token_ids,
        text=text,
        logprobs=logprobs,
        top_logprobs=tops,
        finish_reason=reason,  # type: ignore[arg-type]
        stop_text=stop_text,
    )


class _EngineStats:
    """Running totals of the engine's own statistics (a vLLM stat logger feeds them each step)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.queries = self.hits = self.requests = 0
            self.steps = self.running = self.generated = 0

    def add_step(self, running: int, generated: int, requests: int, queries: int, hits: int) -> None:
        """One engine step: sequences running, tokens generated, prefix-cache lookups and hits."""
        with self._lock:
            self.steps += 1
            self.running += running
            self.generated += generated
            self.requests += requests
            self.queries += queries
            self.hits += hits

    def snapshot(self) -> dict[str, int | float]:
        with self._lock:
            return {
                "requests": self.requests,
                "prompt_tokens": self.queries,
                "cached_tokens": self.hits,
                "hit_rate": self.hits / self.queries if self.queries else 0.0,
                "engine_steps": self.steps,
                "mean_running": self.running / self.steps if self.steps else 0.0,
                "generated_tokens": self.generated,
            }


def _stat_logger_factory(stats: _EngineStats) -> Any:
    from vllm.v1.metrics.loggers import StatLoggerBase

    class EngineStatsLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0) -> None:
            pc = getattr(scheduler_stats, "prefix_cache_stats", None)
            # Preempted requests are looked up again; count them too (they are real work).
            lookups = (
                (pc.requests + pc.preempted_requests, pc.queries + pc.preempted_queries, pc.hits + pc.preempted_hits)
                if pc is not None else (0, 0, 0)
            )
            generated = getattr(iteration_stats, "num_generation_tokens", 0) if iteration_stats is not None else 0
            stats.add_step(getattr(scheduler_stats, "num_running_reqs", 0), generated, *lookups)

        def log_engine_initialized(self) -> None:
            pass

    return EngineStatsLogger


def _start_engine(args: dict[str, Any], kv_cache_space: float | None, stats: _EngineStats, path: Any) -> Any:
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.llm_engine import LLMEngine

    global _live_engines
    with _ENGINE_START_LOCK:
        saved = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        if kv_cache_space is not None:
            # The env var (whole GiB) overrides kv_cache_memory_bytes on CPU; set bytes exactly instead.
            os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
            args["kv_cache_memory_bytes"] = int(kv_cache_space * GiB)
        elif saved is None and _cpu_only():
            args["kv_cache_memory_bytes"] = int(DEFAULT_CPU_KV_CACHE_GIB * GiB)
        try:
            engine_args = EngineArgs(**args)
            engine = LLMEngine.from_engine_args(
                engine_args, usage_context=UsageContext.LLM_CLASS, stat_loggers=[_stat_logger_factory(stats)]
            )
        except TypeError as e:
            raise InvalidParameterError("engine option", str(e), "not an option of vllm.EngineArgs") from e
        except Exception as e:  # noqa: BLE001 - classify what vLLM says into what the user must change
            raise _startup_error(e, path, args) from e
        finally:
            if saved is not None:
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = saved
    with _live_lock:
        _live_engines += 1
    return engine


_live_engines = 0
_live_lock = threading.Lock()


def shutdown_engine(engine: Any) -> None:
    """Free an engine's KV cache and workers now, not whenever the garbage collector runs.

    vLLM's own shutdown of an in-process engine also tears down the process-wide
    torch.distributed groups, which every in-process engine shares: it would break the engines
    still running (a policy next to a PRM, or several backends in tests). So the full shutdown
    runs only for the last live engine; the others release their own resources only.
    """
    global _live_engines
    with _live_lock:
        _live_engines -= 1
        last = _live_engines <= 0
    client = engine.engine_core
    core = getattr(client, "engine_core", None)  # set for the in-process client only
    if last or core is None or not hasattr(client, "_finalizer"):
        client.shutdown()
        return
    if client._finalizer.detach() is not None:  # the finalizer would run the full shutdown on GC
        core.structured_output_manager.clear_backend()
        if core.model_executor:
            core.model_executor.shutdown()
        if core.scheduler:
            core.scheduler.shutdown()
    engine.dp_group = None  # LLMEngine.__del__ would destroy the shared data-parallel group


def _startup_error(e: Exception, path: Any, args: dict[str, Any]) -> LLMTTSError:
    msg = f"{type(e).__name__}: {e}"
    low = msg.lower()
    if len(msg) > _MAX_ENGINE_MESSAGE:  # vLLM lists every architecture it knows; keep the gist
        msg = msg[:_MAX_ENGINE_MESSAGE] + " ..."

    if "engine core initialization failed" in low:  # the engine ran in its own process (GPU): its log has the cause
        return BackendUnavailableError(
            f"the vLLM engine process could not start for model {str(path)!r} ({msg}). The log above has the cause; "
            "usually too little KV cache for max_model_len (give it more: kv_cache_space=GiB on CPU, "
            "gpu_memory_utilization on GPU, or lower max_model_len), too little GPU memory, or weights that cannot be loaded"
        )
    if "kv cache" in low or "memory" in low or "max_model_len" in low or "out of memory" in low:
        return BackendUnavailableError(
            f"the vLLM engine could not start for model {str(path)!r}: {msg}. Give it more KV cache "
            "(kv_cache_space=GiB on CPU, gpu_memory_utilization on GPU) or lower max_model_len"
        )
    return ModelLoadError(
        f"vLLM could not load model folder {str(path)!r}: {msg}. Check that it is a complete Hugging Face "
        "model folder of an architecture vLLM supports (config.json, safetensors weights, tokenizer), "
        "or use backend='transformers'"
    )


def _request_error(e: Exception, limit: int, vocab_size: int) -> LLMTTSError:
    if isinstance(e, LLMTTSError):
        return e
    msg = str(e)
    if "maximum context length" in msg or "max_model_len" in msg:
        return ContextLengthError(-1 if "prompt contains" not in msg else _num_after(msg, "contains"), limit)
    if "out of vocabulary" in msg:
        return InvalidParameterError("prompt token id", _num_after(msg, "Token id"), f"token ids must be integers in [0, {vocab_size})")
    return InvalidParameterError("sampling parameters", msg, "rejected by the vLLM engine")


def _num_after(text: str, word: str) -> int:
    tail = text.split(word, 1)[1].split()
    return int(tail[0]) if tail and tail[0].lstrip("-").isdigit() else -1


def _check_options(max_model_len: int | None, gpu_mem: float, tp: int, kv: float | None) -> None:
    if max_model_len is not None and (not isinstance(max_model_len, int) or max_model_len < 16):
        raise InvalidParameterError("max_model_len", max_model_len, "must be an integer >= 16 (or None for the model's)")
    if not isinstance(gpu_mem, (int, float)) or not 0.0 < gpu_mem <= 1.0:
        raise InvalidParameterError("gpu_memory_utilization", gpu_mem, "must be a fraction in (0, 1]")
    if not isinstance(tp, int) or tp < 1:
        raise InvalidParameterError("tensor_parallel_size", tp, "must be an integer >= 1 (number of GPUs)")
    if kv is not None and (not isinstance(kv, (int, float)) or kv <= 0):
        raise InvalidParameterError("kv_cache_space", kv, "must be a positive number of GiB")


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def _import_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - missing, or a broken install (e.g. a CUDA torchvision)
        raise BackendUnavailableError(
            f"vLLM is not usable here ({type(e).__name__}: {e}); install it with `pip install llm-tts[vllm]` "
            "or use backend='transformers'"
        ) from e
