"""A run's cost and its OpenTelemetry spans, on real beam searches over the embedded model.

Spans are read back with the SDK's in-memory exporter; the tokens a backend was handed are read
from a passthrough of the real backend, and vLLM's prefix-cache hits from its engine's own
scheduler statistics.
"""

from __future__ import annotations

from llm_tts.backends.cost import checkpoint_parameters
from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine

QUESTION = [{"role": "user", "content": "What is 3 + 4? Put the final answer in \\boxed{}."}]
BEAM = dict(
    tts_strategy="beam_search",
    tts_beam_size=2,
    tts_candidates_per_step=2,
    tts_max_steps=2,
    tts_step_max_tokens=2,
    max_tokens=6,
)


class PromptRecorder:
    """The real backend, passed through; keeps the prompts of every generate call, the judge's
    (one answer token each) apart from the policy's."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.prompts: list[list[int]] = []
        self.judge_prompts: list[list[int]] = []

    def __getattr__(self, name):
        if name in ("submit", "generate_watched"):  # every call goes through generate, to be recorded
            raise AttributeError(name)
        return getattr(self._backend, name)

    def generate(self, prompts, params):
        (self.judge_prompts if params.max_tokens == 1 else self.prompts).extend(list(p) for p in prompts)
        return self._backend.generate(prompts, params)


def test_beam_search_has_a_span_per_step_with_its_calls_under_it_and_an_honest_cost(
    hf_backend, embedded_model_dir, exported_spans
):
    recorder = PromptRecorder(hf_backend)
    engine = TTSEngine(recorder)
    reported = []
    result = engine.run(QUESTION, TTSConfig(**BEAM, tts_scorer="llm_judge"), progress=reported.append)
    finished = exported_spans.get_finished_spans()
    (run,) = [s for s in finished if s.name == "llm_tts.run"]
    steps = [s for s in finished if s.name == "llm_tts.step"]
    by_id = {s.context.span_id: s for s in finished}
    # one span per reported step, each the run's child, numbered as the progress events
    assert [s.attributes["llm_tts.step"] for s in steps] == [e.step for e in reported if e.step] == [1, 2]
    assert all(s.parent.span_id == run.context.span_id for s in steps)
    calls = [s for s in finished if s.name in ("llm_tts.generate", "llm_tts.score")]
    assert {s.name for s in calls} == {"llm_tts.generate", "llm_tts.score"}
    assert all(by_id[s.parent.span_id].name == "llm_tts.step" for s in calls)
    assert all(s.context.trace_id == run.context.trace_id for s in [*steps, *calls])
    (plan,) = [s for s in finished if s.name == "llm_tts.plan"]
    assert plan.attributes["llm_tts.prompt_tokens"] == result.metadata.usage.prompt_tokens

    cost = result.metadata.cost
    # transformers keeps no cache between calls: every prompt of every call is computed
    assert cost.prompt_tokens == sum(len(p) for p in recorder.prompts) > result.metadata.usage.prompt_tokens
    assert cost.cached_prompt_tokens == 0
    assert cost.generated_tokens == result.metadata.usage.completion_tokens > 0
    # the judge is the policy model: its prompts (one per scored step) and one answer token each
    judged = recorder.judge_prompts
    assert cost.scorer_tokens == sum(len(p) + 1 for p in judged) and len(judged) >= 4
    assert cost.scorer_cached_tokens == 0
    assert cost.model_parameters == cost.scorer_parameters == checkpoint_parameters(embedded_model_dir)
    params = cost.model_parameters
    assert cost.flops == 2 * params * (cost.prompt_tokens + cost.generated_tokens + cost.scorer_tokens)
    assert run.attributes["llm_tts.flops"] == cost.flops
    assert run.attributes["llm_tts.scorer_tokens"] == cost.scorer_tokens
    assert sum(s.attributes["llm_tts.scorer_tokens"] for s in calls if s.name == "llm_tts.score") == cost.scorer_tokens


def test_vllm_cost_counts_the_prefix_cache_hits_its_engine_counts(vllm_backend, embedded_model_dir):
    engine = TTSEngine(vllm_backend)
    vllm_backend.reset_engine_stats()
    # a token budget makes every call watched: one engine request per sample, each reporting its own hits
    result = engine.run(QUESTION, TTSConfig(**BEAM, tts_scorer="entropy", tts_token_budget=1000))
    stats = vllm_backend.engine_stats()
    cost = result.metadata.cost
    assert (cost.prompt_tokens, cost.cached_prompt_tokens) == (stats["prompt_tokens"], stats["cached_tokens"])
    assert 0 < cost.cached_prompt_tokens < cost.prompt_tokens  # step 2's prefixes were served from the cache
    assert cost.model_parameters == checkpoint_parameters(embedded_model_dir)
    assert cost.scorer_tokens == 0 and cost.scorer_parameters is None  # entropy reads logprobs: no model runs
    computed = cost.prompt_tokens - cost.cached_prompt_tokens + cost.generated_tokens
    assert cost.flops == 2 * cost.model_parameters * computed
