"""The OpenAI-compatible backend against vLLM's own OpenAI server (CPU build) on loopback.

The server runs the embedded SmolLM2 (see the ``vllm_server_url`` fixture); every strategy the
probed capabilities allow runs end to end, with tiny sizes.
"""

from __future__ import annotations

import pytest

from llm_tts.backends.base import SamplingParams
from llm_tts.backends.openai_backend import OpenAIBackend
from llm_tts.backends.remote_tokenizer import ServerTokenizer
from llm_tts.backends.tokenizer import ChatTokenizer
from llm_tts.backends.usage import metered
from llm_tts.config import TTSConfig
from llm_tts.errors import CapabilityError, InvalidParameterError, RemoteAPIError
from llm_tts.messages import ChatMessage
from vllm_serve import SERVED_NAME, start_vllm_server, stop_vllm_server

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]

QUESTION = [ChatMessage(role="user", content="What is 12 + 7? Think step by step, then give the answer in \\boxed{}.")]


@pytest.fixture(scope="module")
def remote(vllm_server_url):
    backend = OpenAIBackend(base_url=vllm_server_url, provider="vllm", max_concurrency=8)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def remote_chat(vllm_server_url):
    """The same server used as a chat-only API (no tokenizer), as OpenAI or OpenRouter would be."""
    backend = OpenAIBackend(base_url=vllm_server_url, provider="vllm", tokenizer="none")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def local_tokenizer(embedded_model_dir):
    return ChatTokenizer.from_folder(embedded_model_dir)


def test_probe_finds_the_token_level_api(remote, local_tokenizer):
    caps = remote.capabilities
    assert remote.model_name == SERVED_NAME
    assert remote.max_context_tokens == 2048
    assert not caps.chat_only and caps.continuation and caps.exact_token_ids and remote.probe.n
    assert caps.logprobs and caps.max_top_logprobs == 20 and caps.token_prompts
    assert caps.seed is False  # per-request seeds crash vLLM's CPU engine: never sent
    assert remote.render_chat(QUESTION) == local_tokenizer.render_chat(QUESTION)


def test_generate_keeps_exact_tokens_logprobs_stops_and_api_usage(remote):
    prompt = remote.render_chat(QUESTION)
    params = SamplingParams(n=3, temperature=1.0, max_tokens=24, stop=("\n\n",), top_logprobs=3)
    with metered() as usage:
        rows = remote.generate([prompt, prompt], params)
    assert [len(r) for r in rows] == [3, 3]
    for seg in (s for r in rows for s in r):
        assert seg.text == remote.decode(seg.token_ids)
        assert seg.finish_reason in ("stop", "eos", "length")
        assert len(seg.logprobs) == len(seg.token_ids) and all(lp <= 0.0 for lp in seg.logprobs)
        assert all(1 <= len(top) <= 3 for top in seg.top_logprobs)
        assert all(list(top.values()) == sorted(top.values(), reverse=True) for top in seg.top_logprobs)
        if seg.finish_reason == "stop":
            assert seg.stop_text == "\n\n" and "\n\n" in seg.text  # the delimiter stays in the step
        if seg.finish_reason == "length":
            assert len(seg) == 24
    # Usage is the API's own: one request per prompt (n=3 each), tokens equal to the exact ids.
    assert usage.requests == 2
    assert usage.prompt_tokens == 2 * len(prompt)
    assert usage.completion_tokens == sum(len(s) for r in rows for s in r)


def test_continuation_from_token_ids_is_exact(remote):
    prompt = remote.render_chat(QUESTION)
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=16)
    ((whole,),) = remote.generate([prompt], greedy)
    head = whole.token_ids[:8]
    with metered() as usage:
        ((rest,),) = remote.generate([list(prompt) + list(head)], SamplingParams(n=1, temperature=0.0, max_tokens=8))
    assert usage.prompt_tokens == len(prompt) + 8  # the server took our ids, not re-tokenised text
    assert head + rest.token_ids == whole.token_ids
    assert rest.logprobs == pytest.approx(whole.logprobs[8:], abs=1e-3)


def test_greedy_n_fans_out_because_vllm_refuses_n_above_one_when_greedy(remote):
    prompt = remote.render_chat(QUESTION)
    with metered() as usage:
        (row,) = remote.generate([prompt], SamplingParams(n=2, temperature=0.0, max_tokens=6))
    assert usage.requests == 2
    assert row[0].token_ids == row[1].token_ids


def test_server_tokenizer_matches_the_local_one(vllm_server_url, remote, local_tokenizer):
    backend = OpenAIBackend(base_url=vllm_server_url, provider="vllm", tokenizer="server")
    try:
        assert isinstance(backend.tokenizer, ServerTokenizer)
        prompt = backend.render_chat(QUESTION)
        assert prompt == local_tokenizer.render_chat(QUESTION)
        ((seg,),) = backend.generate([prompt], SamplingParams(n=1, temperature=0.0, max_tokens=12))
        assert backend.token_texts(seg.token_ids) == local_tokenizer.token_texts(seg.token_ids)
        assert backend.decode(seg.token_ids) == local_tokenizer.decode(seg.token_ids) == seg.text
    finally:
        backend.close()


def test_a_tokenizer_that_does_not_match_the_served_model_is_refused(vllm_server_url, embedded_model_dir):
    wrong = ChatTokenizer.from_folder(embedded_model_dir)
    wrong.hf.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    backend = OpenAIBackend(base_url=vllm_server_url, provider="vllm", tokenizer=wrong)
    try:
        with pytest.raises(InvalidParameterError, match="tokenizer=.*renders chats differently from the model served"):
            backend.capabilities
    finally:
        backend.close()


SMALL_MAX_LOGPROBS = 8  # below SamplingParams' own limit (20)


def test_top_logprobs_above_the_servers_limit_is_a_typed_refusal(embedded_model_dir, tmp_path):
    """A server started with a lower --max-logprobs than the protocol allows: the request passes
    SamplingParams and the backend, and the server's refusal comes back typed."""
    proc, url = start_vllm_server(embedded_model_dir, tmp_path / "server.log", max_logprobs=SMALL_MAX_LOGPROBS)
    remote = OpenAIBackend(base_url=url, provider="vllm")
    asked = SMALL_MAX_LOGPROBS + 1
    try:
        with metered() as usage, pytest.raises(RemoteAPIError, match=rf"HTTP 400.*{asked}.*{SMALL_MAX_LOGPROBS}") as e:
            remote.generate([remote.render_chat(QUESTION)], SamplingParams(n=1, max_tokens=2, top_logprobs=asked))
    finally:
        remote.close()
        stop_vllm_server(proc)
    assert e.value.status == 400 and usage.requests == 0  # the server refused it: nothing billed


STRATEGIES = [
    dict(tts_strategy="self_consistency", num_paths=3, max_tokens=40),
    dict(tts_strategy="offline_bon", tts_scorer="entropy", tts_num_trajectories=3, max_tokens=40),
    dict(tts_strategy="offline_bon", tts_scorer="llm_judge", tts_num_trajectories=2, max_tokens=24),
    dict(
        tts_strategy="online_bon",
        tts_scorer="perplexity",
        tts_candidates_per_step=2,
        tts_max_steps=2,
        tts_step_max_tokens=16,
        max_tokens=40,
    ),
    dict(
        tts_strategy="beam_search",
        tts_scorer="sequence_prob",
        tts_beam_size=2,
        tts_candidates_per_step=2,
        tts_max_steps=2,
        tts_step_max_tokens=16,
        max_tokens=40,
    ),
]


@pytest.mark.parametrize(
    "fields", STRATEGIES, ids=[f"{f['tts_strategy']}-{f.get('tts_scorer', 'vote')}" for f in STRATEGIES]
)
def test_every_strategy_runs_end_to_end_over_the_api(remote, fields):
    from llm_tts.engine import TTSEngine

    engine = TTSEngine(remote)
    with metered() as usage:
        result = engine.run(QUESTION, TTSConfig.create(temperature=0.8, **fields))
    meta = result.metadata
    assert meta.strategy == fields["tts_strategy"] and meta.backend == "openai" and meta.model == SERVED_NAME
    assert sum(c.status == "selected" for c in meta.candidates) == 1
    assert result.text == next(c.text for c in meta.candidates if c.status == "selected")
    assert result.trajectory.prompt_token_ids == tuple(remote.render_chat(QUESTION))
    # The engine's token-level counts are the API's own usage (exact ids on both sides); a judge's
    # own one-token verdicts are requests too, but not the policy's completion tokens.
    verdicts = sum(len(c.step_scores) for c in meta.candidates) if fields.get("tts_scorer") == "llm_judge" else 0
    assert meta.usage.completion_tokens > 0
    assert usage.completion_tokens == meta.usage.completion_tokens + verdicts  # one token per verdict
    if fields.get("tts_scorer"):
        assert all(c.score is not None for c in meta.candidates if c.status == "selected")


def test_chat_only_api_runs_self_consistency_and_refuses_step_strategies(remote_chat):
    from llm_tts.engine import TTSEngine

    caps = remote_chat.capabilities
    assert caps.chat_only and not caps.continuation and caps.logprobs
    engine = TTSEngine(remote_chat)
    with metered() as usage:
        result = engine.run(QUESTION, TTSConfig.create(tts_strategy="self_consistency", num_paths=3, max_tokens=32))
    assert len(result.metadata.candidates) == 3
    # Stand-in ids, one per token the API returned: counts equal the API's usage.
    assert result.metadata.usage.completion_tokens == usage.completion_tokens
    assert all(c.text for c in result.metadata.candidates)
    # The API rendered the prompt: its own prompt count (per request) is what usage reports.
    assert usage.requests and result.metadata.usage.prompt_tokens == usage.prompt_tokens // usage.requests > 1
    with metered() as refused, pytest.raises(CapabilityError, match="continuation"):
        engine.run(
            QUESTION,
            TTSConfig.create(
                tts_strategy="online_bon",
                tts_scorer="perplexity",
                tts_candidates_per_step=2,
                tts_max_steps=2,
                tts_step_max_tokens=8,
                max_tokens=16,
            ),
        )
    assert refused.requests == 0  # refused before anything was generated
