"""The PRM scorer on vLLM's pooling runner, with vLLM's prefix cache doing the reuse.

Same inputs and scores as :class:`llm_tts.scorers.prm.PRMScorer` (both hold a
:class:`~llm_tts.scorers.prm.inputs.PRMInputs`); only the model call differs. A
Qwen2.5-Math-PRM-style model runs on an in-process ``vllm.LLMEngine`` (dtype as for every local
model, :mod:`llm_tts.backends.device`) with ``runner="pooling"``, token-wise ``ALL`` pooling
(vLLM's default ``STEP`` pooling cannot use the prefix cache) and prefix caching on: the engine
returns the two-class head's logits only for the tokens it computed, that is after the longest
cached prefix, and the reward of a step is ``softmax(logits)[1]`` at its ``<extra_0>``.

A beam that grew by one step shares its whole prefix with the request that scored its parent,
so the engine computes only the new step (in whole KV blocks). A separator that falls inside a
cached prefix was computed by an earlier request: its reward is remembered in a bounded memo
keyed by the tokens up to it (the reward depends on nothing else, the model being causal); on
the rare miss the request is re-run without reading the cache.

Engines are shared by every scorer on the same path and options (starting one takes seconds).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_tts.backends import vllm_engine
from llm_tts.backends.cost import checkpoint_parameters
from llm_tts.backends.device import cuda_available, engine_dtype
from llm_tts.backends.usage import record_usage
from llm_tts.backends.vllm_loop import EngineLoop
from llm_tts.engine_logs import quiet_engine_logs, vllm_engine_args
from llm_tts.errors import ModelLoadError
from llm_tts.models import resolve_model
from llm_tts.scorers.base import Scorer, ScoreRequest
from llm_tts.scorers.prm.inputs import PRMInputs, PRMJob, PRMStats, PRMTokenizer, check_prm_folder
from llm_tts.startup import startup_step

DEFAULT_CPU_KV_CACHE_GIB = 0.5
DEFAULT_GPU_MEMORY_UTILIZATION = 0.2  # the policy engine holds the rest; lower its share to match


class VLLMPRMEngine:
    """A PRM folder loaded in a vLLM pooling engine, plus the PRM's tokenizer."""

    def __init__(
        self,
        folder: Path,
        *,
        dtype: str,
        max_model_len: int | None,
        kv_cache_space: float | None,
        gpu_memory_utilization: float,
    ) -> None:
        from transformers import AutoTokenizer

        check_prm_folder(folder)
        quiet_engine_logs()
        vllm_engine.require_vllm()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as e:
            raise ModelLoadError(f"could not load the PRM tokenizer in {str(folder)!r}: {e}") from e
        self.tokenizer = PRMTokenizer.of(tokenizer, folder)
        from vllm.config.pooler import PoolerConfig

        on_cpu = not cuda_available()
        vllm_engine.prepare_process(on_cpu=on_cpu)
        self.dtype = engine_dtype(dtype, folder, on_cpu=on_cpu)  # float32 on a CPU without bfloat16 instructions
        args: dict[str, Any] = dict(
            model=str(folder),
            runner="pooling",
            pooler_config=PoolerConfig(tok_pooling_type="ALL"),
            dtype=self.dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            # A pooling engine only runs prefills, which CUDA graphs do not speed up (vLLM captures
            # them for decode batches); compiling would only lengthen its start, on any device.
            enforce_eager=True,
            disable_log_stats=False,
            **vllm_engine_args(),
        )
        if on_cpu:
            args["block_size"] = vllm_engine.CPU_BLOCK_SIZE
        self.stats = vllm_engine.EngineStats()
        space = (kv_cache_space or DEFAULT_CPU_KV_CACHE_GIB) if on_cpu else None
        with startup_step(f"starting the vLLM engine for the PRM {folder.name}"):
            self.engine = vllm_engine.start_engine(args, space, self.stats, folder)
        self.loop = EngineLoop(self.engine, name="vllm-prm-loop")
        self.max_context_tokens = int(self.engine.model_config.max_model_len)
        self.parameter_count = checkpoint_parameters(folder)
        self._closed = False
        vllm_engine.close_at_exit(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.close()
        vllm_engine.shutdown_engine(self.engine)


_ENGINES: dict[tuple[Any, ...], VLLMPRMEngine] = {}
_ENGINES_LOCK = threading.Lock()


def load_vllm_prm(
    path: str | os.PathLike[str],
    *,
    dtype: str = "auto",
    max_model_len: int | None = None,
    kv_cache_space: float | None = None,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
) -> VLLMPRMEngine:
    """Start (once per process and options) a vLLM pooling engine on the PRM at ``path``."""
    folder = Path(resolve_model(path))
    dtype = engine_dtype(dtype, folder, on_cpu=not cuda_available())  # "auto" on a CPU: the backends' CPU rule
    key = (str(folder.resolve()), dtype, max_model_len, kv_cache_space, gpu_memory_utilization)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = VLLMPRMEngine(
                folder,
                dtype=dtype,
                max_model_len=max_model_len,
                kv_cache_space=kv_cache_space,
                gpu_memory_utilization=gpu_memory_utilization,
            )
        return _ENGINES[key]


def release_vllm_prm_engines() -> None:
    """Shut down every vLLM PRM engine of this process."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for e in engines:
        e.close()


class VLLMPRMScorer(Scorer):
    """``prm`` on vLLM: same inputs and scores as the transformers PRM scorer, vLLM's engine.

    ``stats`` counts engine requests as forward calls, and computed vs prefix-cache-reused tokens.
    """

    name = "prm"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        kv_cache_space: float | None = None,
        gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
        max_context_tokens: int | None = None,
        memo_max_entries: int = 65536,
    ) -> None:
        self.engine = load_vllm_prm(
            model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            kv_cache_space=kv_cache_space,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        limit = self.engine.max_context_tokens
        self.max_context_tokens = min(max_context_tokens, limit) if max_context_tokens else limit
        self.inputs = PRMInputs(self.engine.tokenizer, self.max_context_tokens)
        self.stats = PRMStats()
        self._memo = _Memo(memo_max_entries)
        self._stats_lock = threading.Lock()

    @property
    def parameter_count(self) -> int | None:
        """The PRM's parameters, from its checkpoint (for the run's FLOPs estimate)."""
        return self.engine.parameter_count

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        # No scorer-wide lock: concurrent callers' requests merge in the engine's batches.
        return self.inputs.score(requests, self._run)

    def close(self) -> None:
        self._memo.clear()  # the engine is shared; release_vllm_prm_engines() shuts it down

    def input_ids(self, question: str, step_texts: Sequence[str]) -> list[int]:
        """The PRM's input for a whole trajectory, ending at its last separator (no truncation)."""
        return self.inputs.input_ids(question, step_texts)

    def _run(self, jobs: list[PRMJob]) -> list[list[float]]:
        results = self._pool(jobs, read_cache=True)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # a separator hid in a cached prefix and the memo forgot it: compute it all
            for i, r in zip(missing, self._pool([jobs[i] for i in missing], read_cache=False)):
                results[i] = r
        return results  # type: ignore[return-value]

    def _pool(self, jobs: list[PRMJob], *, read_cache: bool) -> list[list[float] | None]:
        import torch
        from vllm import PoolingParams
        from vllm.inputs import TokensPrompt

        params = PoolingParams(task="token_classify", use_activation=False, skip_reading_prefix_cache=not read_cache)
        outputs = self.engine.loop.run([TokensPrompt(prompt_token_ids=j.ids) for j in jobs], [params] * len(jobs))
        results: list[list[float] | None] = []
        for job, out in zip(jobs, outputs):
            logits = out.outputs.data
            offset = len(job.ids) - logits.shape[0]  # tokens that came from the prefix cache
            probs = torch.softmax(logits.float(), dim=-1)[:, 1].tolist()
            for s in job.seps:  # remember every separator this request computed
                if s >= offset:
                    self._memo.put(job.ids[: s + 1], probs[s - offset])
            scores = [
                probs[s - offset] if s >= offset else self._memo.get(job.ids[: s + 1])
                for s in job.seps[job.first_scored :]
            ]
            record_usage(len(job.ids), 0, offset)  # in the caller's thread: its run's meters
            with self._stats_lock:
                self.stats.forward_calls += 1
                self.stats.computed_tokens += len(job.ids) - offset
                self.stats.reused_tokens += offset
            known = [s for s in scores if s is not None]
            results.append(known if len(known) == len(scores) else None)  # None: a separator the memo forgot
        return results


class _Memo:
    """Bounded LRU: reward at a separator, keyed by the token ids up to and including it."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[int, ...], float] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ids: Sequence[int]) -> float | None:
        key = tuple(ids)
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, ids: Sequence[int], value: float) -> None:
        with self._lock:
            self._items[tuple(ids)] = value
            self._items.move_to_end(tuple(ids))
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
