"""The vLLM backend for real (CPU build, embedded SmolLM2): what the shared contract tests do not cover.

Concurrency, seeds on CPU, prefix-cache statistics, engine options and start-up errors, the
``auto`` backend, a beam search through the engine, and the PRM on vLLM's pooling runner checked
against the transformers PRM on the same tiny checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time

import pytest
import torch

from llm_tts.backends.base import SamplingParams
from llm_tts.backends.usage import metered
from llm_tts.errors import BackendUnavailableError, InvalidParameterError, ModelLoadError
from llm_tts.messages import ChatMessage

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

_ON_GPU = torch.cuda.is_available()
# GPU kernels reduce in a different order than CPU ones: same maths, looser float agreement.
PRM_TOL = 1e-3 if _ON_GPU else 1e-4

QUESTIONS = ["What is 2+3?", "Name a color.", "What is the capital of France?", "Write the word hello."]


def chat(backend, text: str) -> list[int]:
    return backend.render_chat([ChatMessage(role="user", content=text)])


def test_concurrent_callers_are_merged_into_shared_engine_batches(vllm_backend):
    prompts = [chat(vllm_backend, q) for q in QUESTIONS]
    params = SamplingParams(temperature=0.0, max_tokens=24)
    alone = [vllm_backend.generate([p], params)[0][0] for p in prompts]
    loop = vllm_backend._loop
    loop.peak_callers = 0
    barrier = threading.Barrier(len(prompts))
    results: dict[int, object] = {}

    def caller(i: int) -> None:
        barrier.wait()
        results[i] = vllm_backend.generate([prompts[i]], params)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each caller gets its own answer, identical to running alone...
    assert [results[i][0][0].token_ids for i in range(len(prompts))] == [s.token_ids for s in alone]
    # ...and the engine ran several callers' requests in the same steps (not one call after another).
    assert loop.peak_callers >= 2


@pytest.mark.skipif(_ON_GPU, reason="CPU-build behaviour: on CUDA per-request seeds work")
def test_seed_on_cpu_is_dropped_with_one_warning_not_a_crash(vllm_backend, caplog):
    assert vllm_backend.on_cpu and vllm_backend.capabilities.seed is False
    vllm_backend._warned_seed = False
    p = chat(vllm_backend, QUESTIONS[1])
    with caplog.at_level(logging.WARNING, logger="llm_tts.backends.vllm_backend"):
        for seed in (1, 2):
            (row,) = vllm_backend.generate(
                [p], SamplingParams(n=2, temperature=1.0, top_p=0.9, top_k=20, max_tokens=4, seed=seed)
            )
            assert len(row) == 2 and all(1 <= len(s) <= 4 for s in row)
    warnings = [r for r in caplog.records if "seed" in r.getMessage()]
    assert len(warnings) == 1
    assert "seed=1" in warnings[0].getMessage()


def test_prefix_cache_stats_count_hits_when_a_prefix_is_continued(vllm_backend):
    # A prompt no other test uses from its first token (its own system prompt: the default one is
    # shared, and a whole KV block on GPU), longer than two KV blocks (32 tokens each on CPU).
    p = vllm_backend.render_chat(
        [
            ChatMessage(role="system", content="Zoology quiz, round seven."),
            ChatMessage(
                role="user", content="Consider the zebra, the quokka and the axolotl. " * 4 + "Which is the smallest?"
            ),
        ]
    )
    assert len(p) > 64
    vllm_backend.reset_engine_stats()
    (first,) = vllm_backend.generate([p], SamplingParams(temperature=0.0, max_tokens=8))[0]
    cold = vllm_backend.engine_stats()
    assert cold["prompt_tokens"] == len(p) and cold["cached_tokens"] == 0
    longer = p + list(first.token_ids)
    vllm_backend.generate([longer], SamplingParams(temperature=0.0, max_tokens=2))
    warm = vllm_backend.engine_stats()
    assert warm["prompt_tokens"] == len(p) + len(longer)
    assert warm["cached_tokens"] >= (len(p) // 32) * 32  # every full block of the first prompt
    assert 0.0 < warm["hit_rate"] < 1.0
    assert 0.0 <= warm["kv_cache_usage"] <= 1.0  # the scheduler's last reading, shown on /metrics


def test_engine_options_are_validated_before_starting(embedded_model_dir):
    from llm_tts.backends.vllm_backend import VLLMBackend

    with pytest.raises(InvalidParameterError, match="tensor_parallel_size=0"):
        VLLMBackend(tensor_parallel_size=0)
    with pytest.raises(InvalidParameterError, match="kv_cache_space=-1"):
        VLLMBackend(kv_cache_space=-1)
    with pytest.raises(InvalidParameterError, match="gpu_memory_utilization=1.5"):
        VLLMBackend(gpu_memory_utilization=1.5)


def test_model_folder_vllm_cannot_load_is_a_model_load_error(embedded_model_dir, tmp_path):
    from llm_tts.backends.vllm_backend import VLLMBackend

    for f in embedded_model_dir.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy(f, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as err:
        VLLMBackend(str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path) in msg and "NoSuchModelForCausalLM" in msg and "backend='transformers'" in msg


def test_engine_without_enough_kv_cache_fails_typed_and_the_process_stays_usable(request):
    from llm_tts.backends.vllm_backend import VLLMBackend

    with pytest.raises(BackendUnavailableError) as err:
        VLLMBackend(kv_cache_space=0.01)  # the model's 8192-token context needs ~0.18 GiB
    assert "kv_cache_space" in str(err.value) and "max_model_len" in str(err.value)
    backend = request.getfixturevalue("vllm_backend")  # an engine still starts / still runs
    (seg,) = backend.generate([chat(backend, QUESTIONS[2])], SamplingParams(temperature=0.0, max_tokens=3))[0]
    assert len(seg) == 3


def test_auto_backend_picks_vllm_and_metadata_says_so(embedded_model_dir):
    from llm_tts.backends import create_backend
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine

    engine = TTSEngine(create_backend("auto", kv_cache_space=0.25, max_model_len=512))
    try:
        assert engine.backend.name == "vllm"
        result = engine.run(
            [ChatMessage(role="user", content=QUESTIONS[0])],
            TTSConfig.create(tts_strategy="self_consistency", num_paths=2, max_tokens=8),
        )
        assert result.metadata.backend == "vllm"
        assert result.metadata.usage.completion_tokens > 0
    finally:
        engine.close()


def test_beam_search_on_vllm_continues_from_cached_prefixes(vllm_backend):
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine

    config = TTSConfig.create(
        tts_strategy="beam_search",
        tts_scorer="entropy",
        tts_beam_size=2,
        tts_candidates_per_step=2,
        tts_max_steps=3,
        tts_step_max_tokens=12,
        max_tokens=64,
        temperature=0.8,
    )
    vllm_backend.reset_engine_stats()
    result = TTSEngine(vllm_backend).run(
        [ChatMessage(role="user", content="Explain " + "why the sky is blue. " * 4)], config
    )
    stats = vllm_backend.engine_stats()
    assert result.metadata.backend == "vllm" and result.metadata.strategy == "beam_search"
    assert sum(c.status == "selected" for c in result.metadata.candidates) == 1
    # Later steps resubmit their parents' prefixes: the engine finds them in its cache.
    assert stats["requests"] > 1 and stats["cached_tokens"] > 0


# -- requests that finish on their own, selection, cancellation mid-step ------------------------
def _assert_engine_idle(backend) -> None:
    """Every request has left the engine: none waits in our loop, none runs in vLLM."""
    deadline = time.monotonic() + 10
    while backend._loop._owner and time.monotonic() < deadline:
        time.sleep(0.02)  # a cancellation reaches the loop thread at its next engine step
    assert not backend._loop._owner
    assert backend.engine.get_num_unfinished_requests() == 0


def test_each_request_resolves_when_it_finishes_and_cancel_aborts_it_in_the_engine(vllm_backend):
    p = chat(vllm_backend, "Write a long story about a dragon who learns to read, with many chapters.")
    greedy = SamplingParams(temperature=0.0, max_tokens=1000)
    (long,) = vllm_backend.submit([p], greedy)
    (short,) = vllm_backend.submit([p], SamplingParams(temperature=0.0, max_tokens=2))
    row = short.result(timeout=60)
    assert len(row[0]) == 2 and row[0].finish_reason == "length"
    assert not long.done()  # the short request did not wait for the long one
    assert long.cancel()
    _assert_engine_idle(vllm_backend)
    # The engine goes on serving, and greedy output is what it was.
    (again,) = vllm_backend.generate([p], SamplingParams(temperature=0.0, max_tokens=2))
    assert again[0].token_ids == row[0].token_ids


def test_bad_input_to_submit_raises_before_anything_starts(vllm_backend):
    with pytest.raises(InvalidParameterError):
        vllm_backend.submit([[vllm_backend.vocab_size + 5]], SamplingParams(max_tokens=2))
    _assert_engine_idle(vllm_backend)


BEAM = dict(
    tts_strategy="beam_search",
    tts_scorer="entropy",
    tts_beam_size=3,
    tts_candidates_per_step=3,
    tts_max_steps=4,
    tts_step_max_tokens=24,
    max_tokens=96,
    temperature=1.0,
)
HARD_QUESTION = "A farmer has 17 sheep, buys 5 more, then sells a third of them. How many are left? Think step by step."


def test_beam_search_on_vllm_keeps_the_best_beams_at_every_step(vllm_backend):
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine
    from llm_tts.scorers.aggregation import aggregate

    config = TTSConfig.create(**BEAM)
    md = TTSEngine(vllm_backend).run([ChatMessage(role="user", content=HARD_QUESTION)], config).metadata
    # Every candidate pruned after k steps scored no better than each beam kept at step k (now
    # a prefix of a longer candidate).
    for pruned in (c for c in md.candidates if c.status == "pruned"):
        k = len(pruned.step_scores)
        for longer in (c for c in md.candidates if len(c.step_scores) > k):
            kept_score = aggregate(longer.step_scores[:k], config.tts_score_aggregation, config.tts_window_size)
            assert kept_score >= pruned.score
    assert any(c.status == "pruned" for c in md.candidates)
    assert sum(c.status == "selected" for c in md.candidates) == 1


def test_cancelling_a_search_mid_step_stops_it_and_aborts_its_requests(vllm_backend):
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine
    from llm_tts.errors import RunCancelledError
    from llm_tts.progress import RunControl

    control = RunControl()
    config = TTSConfig.create(**{**BEAM, "tts_max_steps": 8, "tts_step_max_tokens": 64, "max_tokens": 512})

    def cancel_once_generating() -> None:
        deadline = time.monotonic() + 30
        while not vllm_backend._loop._owner and time.monotonic() < deadline:
            time.sleep(0.001)
        control.cancel()  # the first step's requests are in the engine

    canceller = threading.Thread(target=cancel_once_generating)
    canceller.start()
    with pytest.raises(RunCancelledError):
        TTSEngine(vllm_backend).run([ChatMessage(role="user", content=HARD_QUESTION)], config, control=control)
    canceller.join()
    _assert_engine_idle(vllm_backend)


# -- PRM on vLLM's pooling runner -----------------------------------------------------------------
@pytest.fixture(scope="module")
def prm_pair(tiny_prm_dir):
    """The same tiny PRM checkpoint on transformers and on vLLM, both float32."""
    from llm_tts.scorers.prm import PRMScorer, VLLMPRMScorer, release_vllm_prm_engines

    ref = PRMScorer(tiny_prm_dir, dtype="float32")
    ours = VLLMPRMScorer(tiny_prm_dir, dtype="float32", kv_cache_space=0.25)
    yield ref, ours
    release_vllm_prm_engines()


def _requests(question: str, texts: list[str], first: int):
    from llm_tts.scorers.base import ScoreRequest
    from llm_tts.types import Segment, Step

    steps = [Step(Segment(token_ids=(1,), text=t), 0, 1, t) for t in texts]
    return ScoreRequest(question, steps, first)


STEPS = [f"Step {i}: add the numbers carefully and write down the partial sum {i * 7}.\n\n" for i in range(6)]


def test_vllm_prm_scores_match_the_transformers_prm_step_by_step(prm_pair):
    ref, ours = prm_pair
    q = "A question that is long enough to fill a whole KV block of the prefix cache on its own. " * 2
    assert ours.parameter_count == ref.parameter_count  # from the checkpoint, from the loaded model
    reused, computed = ours.stats.reused_tokens, ours.stats.computed_tokens
    for k in range(1, len(STEPS) + 1):  # as beam search asks: one new step per round
        r = [
            _requests(q, STEPS[:k], k - 1),
            _requests(q, STEPS[: max(1, k - 1)] + ["An alternative step.\n\n"], k - 1 if k > 1 else 0),
        ]
        with metered() as usage:  # what a run's cost counts of the vLLM PRM's work
            got = ours.score(r)
        want = ref.score(r)
        assert [len(x) for x in got] == [len(x) for x in want]
        assert usage.cached_tokens == ours.stats.reused_tokens - reused
        assert usage.prompt_tokens - usage.cached_tokens == ours.stats.computed_tokens - computed
        reused, computed = ours.stats.reused_tokens, ours.stats.computed_tokens
        for g, w in zip(got, want):
            assert g == pytest.approx(w, abs=PRM_TOL)
    # Growing beams reused their cached prefixes instead of recomputing them.
    assert ours.stats.reused_tokens > ours.stats.computed_tokens


def test_vllm_prm_rescoring_a_cached_trajectory_uses_memo_or_recomputes(prm_pair):
    ref, ours = prm_pair
    q = "Another question, long enough to fill a KV block of its own, for the memo test. " * 2
    whole = [_requests(q, STEPS, 0)]
    want = ref.score(whole)
    for k in range(1, len(STEPS) + 1):
        ours.score([_requests(q, STEPS[:k], k - 1)])
    assert ours.score(whole) == [pytest.approx(want[0], abs=PRM_TOL)]  # separators inside cached blocks: memo
    ours._memo.clear()
    assert ours.score(whole) == [pytest.approx(want[0], abs=PRM_TOL)]  # memo gone: recomputed without the cache


@pytest.mark.skipif(_ON_GPU, reason="the CPU dtype rule; on CUDA vLLM keeps the model's dtype")
def test_vllm_prm_on_a_cpu_without_bfloat16_follows_the_backends_float32_rule(prm_pair, tiny_prm_dir, monkeypatch):
    # Was a bug: dtype="auto" went to vLLM unchanged, which ran the checkpoint's bfloat16 on CPUs
    # where the backends run in float32. (Same options as prm_pair: its float32 engine is reused.)
    from llm_tts.backends import cpu_dtype
    from llm_tts.scorers.prm import VLLMPRMScorer

    monkeypatch.setattr(cpu_dtype, "cpu_has_native_bf16", lambda: False)
    assert cpu_dtype.auto_cpu_dtype(tiny_prm_dir) == "float32"
    scorer = VLLMPRMScorer(tiny_prm_dir, kv_cache_space=0.25)  # dtype="auto"
    assert scorer.engine.engine.model_config.dtype == torch.float32


def test_prm_scorer_runs_on_vllm_when_the_policy_backend_is_vllm(vllm_backend, tiny_prm_dir):
    from llm_tts.scorers.base import ScorerContext, create_scorer
    from llm_tts.scorers.prm import VLLMPRMScorer, release_vllm_prm_engines

    try:
        scorer = create_scorer("prm", ScorerContext(vllm_backend, prm_model=str(tiny_prm_dir)))
        assert isinstance(scorer, VLLMPRMScorer)
        (scores,) = scorer.score([_requests("What is 2+3?", STEPS[:2], 0)])
        assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    finally:
        release_vllm_prm_engines()


def test_vllm_prm_refuses_a_model_that_is_not_a_prm(embedded_model_dir):
    from llm_tts.scorers.prm import VLLMPRMScorer

    with pytest.raises(ModelLoadError, match="Qwen2ForProcessRewardModel"):
        VLLMPRMScorer(embedded_model_dir)


def test_token_id_outside_the_vocabulary_is_a_typed_error(vllm_backend):
    with pytest.raises(InvalidParameterError, match=f"1000000.*\\[0, {vllm_backend.vocab_size}\\)"):
        vllm_backend.generate([[1, 2, 10**6]], SamplingParams(max_tokens=2))
    (seg,) = vllm_backend.generate([[1, 2, 3]], SamplingParams(temperature=0.0, max_tokens=2))[0]
    assert len(seg) == 2  # the engine is still fine


def test_a_raw_prompt_of_token_ids_reaches_vllm_as_those_ids(vllm_backend):
    """A text completion's path (``TTSEngine.plan_prompt``): token ids no tokenizer would produce
    from their text run as they are, greedily the same tokens as the backend called directly."""
    from llm_tts.engine import TTSEngine

    ids = [t for ch in "The capital of France is" for t in vllm_backend.encode(ch)]
    assert ids != vllm_backend.encode(vllm_backend.decode(ids))  # a round trip through text would change them
    engine = TTSEngine(vllm_backend)
    result = engine.execute(engine.plan_prompt(ids, {"num_paths": 1, "temperature": 0.0, "max_tokens": 4}))
    (direct,) = vllm_backend.generate([ids], SamplingParams(temperature=0.0, max_tokens=4))[0]
    assert result.trajectory.prompt_token_ids == tuple(ids)
    assert result.trajectory.completion_token_ids == direct.token_ids
