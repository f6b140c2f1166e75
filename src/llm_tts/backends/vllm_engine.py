"""The life of an in-process ``vllm.LLMEngine``: start it, count its steps, shut it down.

Shared by the vLLM backend (a generation engine) and the vLLM PRM runner (a pooling engine).
Start-up failures come back as the package's typed errors, saying what the user must change.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Any, Protocol

from llm_tts.backends.device import cuda_available
from llm_tts.backends.vllm_compat import check_vllm_version, installed_vllm_version
from llm_tts.errors import BackendUnavailableError, InvalidParameterError, LLMTTSError, ModelLoadError

GiB = 1 << 30
VLLM_DEFAULT_GPU_SHARE = 0.9  # vLLM's own default gpu_memory_utilization
DEFAULT_CPU_KV_CACHE_GIB = 2.0  # when neither kv_cache_space nor VLLM_CPU_KVCACHE_SPACE is given
# The CPU attention kernel needs block sizes that are multiples of 32; vLLM's CPU default is 128,
# which caches nothing of a prefix shorter than 128 tokens. 32 keeps beams' prefixes cached.
CPU_BLOCK_SIZE = 32
_MAX_ENGINE_MESSAGE = 400
_ENGINE_START_LOCK = threading.Lock()  # engine start-up touches process-wide state (env, torch.distributed)


def require_vllm() -> None:
    """Import vLLM, or raise a typed error when it is missing, broken or of an unsupported release."""
    check_vllm_version(installed_vllm_version())
    try:
        import vllm  # noqa: F401
    except Exception as e:
        raise BackendUnavailableError(
            f"vLLM is not usable here ({type(e).__name__}: {e}); install it with `pip install llm-tts[vllm]` "
            "or use backend='transformers'"
        ) from e


def prepare_process(*, on_cpu: bool) -> None:
    """Process settings an engine needs, set (unless the user set them) before it starts."""
    if on_cpu:
        # In-process engine core: starts in seconds; our own scheduler thread gives concurrency.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    else:
        # A forked engine core cannot use CUDA once this process touched it ("Cannot
        # re-initialize CUDA in forked subprocess", seen on an H200 at first use): spawn it.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")


class EngineStats:
    """Running totals of the engine's own statistics (a vLLM stat logger feeds them each step)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.queries = self.hits = self.requests = 0
            self.steps = self.running = self.generated = 0
            self.kv_cache_usage = 0.0  # share of the KV cache in use at the last step

    def add_step(
        self, running: int, generated: int, requests: int, queries: int, hits: int, kv_cache_usage: float = 0.0
    ) -> None:
        """One engine step: sequences running, tokens generated, prefix-cache lookups and hits, KV cache in use."""
        with self._lock:
            self.kv_cache_usage = kv_cache_usage
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
                "kv_cache_usage": self.kv_cache_usage,
            }


def _stat_logger_factory(stats: EngineStats) -> Any:
    from vllm.v1.metrics.loggers import StatLoggerBase

    class EngineStatsLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(
            self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0
        ) -> None:
            pc = getattr(scheduler_stats, "prefix_cache_stats", None)
            # Preempted requests are looked up again; count them too (they are real work).
            lookups = (
                (pc.requests + pc.preempted_requests, pc.queries + pc.preempted_queries, pc.hits + pc.preempted_hits)
                if pc is not None
                else (0, 0, 0)
            )
            generated = getattr(iteration_stats, "num_generation_tokens", 0) if iteration_stats is not None else 0
            usage = float(getattr(scheduler_stats, "kv_cache_usage", 0.0) or 0.0)
            requests, queries, hits = lookups
            stats.add_step(getattr(scheduler_stats, "num_running_reqs", 0), generated, requests, queries, hits, usage)

        def log_engine_initialized(self) -> None:
            pass

    return EngineStatsLogger


def start_engine(args: dict[str, Any], kv_cache_space: float | None, stats: EngineStats, path: Any) -> Any:
    """A started ``LLMEngine`` on ``vllm.EngineArgs(**args)`` whose steps ``stats`` counts.

    ``kv_cache_space`` is GiB of KV cache (on a CPU without it: ``$VLLM_CPU_KVCACHE_SPACE`` or
    :data:`DEFAULT_CPU_KV_CACHE_GIB`). Raises InvalidParameterError for an unknown option,
    BackendUnavailableError when the engine cannot start, ModelLoadError when the model cannot load.
    """
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
        elif saved is None and not cuda_available():
            args["kv_cache_memory_bytes"] = int(DEFAULT_CPU_KV_CACHE_GIB * GiB)
        if args.get("gpu_memory_utilization") is None:
            args["gpu_memory_utilization"] = _gpu_share(kv_cache_space)
        try:
            engine_args = EngineArgs(**args)
            engine = LLMEngine.from_engine_args(
                engine_args, usage_context=UsageContext.LLM_CLASS, stat_loggers=[_stat_logger_factory(stats)]
            )
        except TypeError as e:
            raise InvalidParameterError("engine option", str(e), "not an option of vllm.EngineArgs") from e
        except Exception as e:
            raise _startup_error(e, path) from e
        finally:
            if saved is not None:
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = saved
    with _live_lock:
        _live_engines += 1
        global _exit_hook_registered
        if not _exit_hook_registered:
            # Registered after vLLM's own exit handlers (imported above), so it runs before them.
            atexit.register(_close_at_exit)
            _exit_hook_registered = True
    return engine


class Closable(Protocol):
    def close(self) -> None: ...


_open_owners: weakref.WeakSet[Any] = weakref.WeakSet()
_exit_hook_registered = False


def close_at_exit(owner: Closable) -> None:
    """Have ``owner.close()`` (which stops its engine loop and shuts its engine down) run when
    the interpreter exits, if its user has not called it. An engine left to the interpreter's
    teardown can hang the exit with its engine process still holding the GPU's memory."""
    _open_owners.add(owner)


def _close_at_exit() -> None:
    for owner in list(_open_owners):
        try:
            owner.close()
        except Exception:  # noqa: BLE001 - exiting anyway: close the others
            continue


def _gpu_share(kv_cache_space: float | None) -> float:
    """``gpu_memory_utilization`` when the caller gave none: vLLM's 0.9, unless the KV cache is
    sized in bytes on a GPU. vLLM still refuses to start unless that share of the whole GPU is
    free, which fails beside any other engine; the share then only has to cover what is free."""
    if kv_cache_space is None or not cuda_available():
        return VLLM_DEFAULT_GPU_SHARE
    import torch

    free, total = torch.cuda.mem_get_info()
    return max(0.01, round(0.95 * free / total, 3))


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


def _startup_error(e: Exception, path: Any) -> LLMTTSError:
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
