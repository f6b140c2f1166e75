"""The production path: vLLM on an NVIDIA GPU. Run there with ``pytest -m gpu``.

CI has no GPU: every test here is skipped with that reason. On the GPU host these run the vLLM
backend on CUDA, the first-use flow of a new user (conversion, then engine start, in one
process), every strategy x scorer once, and the service on vLLM with concurrent requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (run `pytest -m gpu` on a GPU host)"),
]

MESSAGES = [
    {
        "role": "system",
        "content": "Reason step by step, separating steps with a blank line, and put the final answer in \\boxed{}.",
    },
    {"role": "user", "content": "What is 2 + 3?"},
]
SMALL = dict(
    num_paths=4,
    tts_num_trajectories=4,
    tts_beam_size=2,
    tts_candidates_per_step=2,
    tts_max_steps=3,
    tts_step_max_tokens=32,
    max_tokens=96,
    seed=0,
)


def test_first_use_flow_converts_then_starts_vllm_in_one_process(tmp_path):
    """A new user's first call: empty cache -> GGUF conversion -> vLLM engine start (CUDA graphs,
    the GPU default) -> answer, in one process. First in the file: vLLM's default memory share
    needs a GPU no other test holds yet. The process runs in its own process group, killed
    whole if it overruns (a vLLM engine process left behind would hold the GPU for every later
    test); a hang dumps every thread's stack first, so the failure says where it hung."""
    code = textwrap.dedent(
        """
        import faulthandler, sys
        faulthandler.dump_traceback_later(400, exit=True)
        from llm_tts.integrations import ChatTTS
        msg = ChatTTS(backend="vllm", tts_strategy="self_consistency", num_paths=4, max_tokens=64).invoke("What is 2 + 3?")
        md = msg.response_metadata["tts_metadata"]
        print("FIRST-USE-OK", md["backend"], md["model"], repr(msg.content[:60]))
        """
    )
    env = {**os.environ, "LLM_TTS_CACHE": str(tmp_path / "cache"), "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=440)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the first use did not finish in 440 s; its stderr ends:\n{stderr[-6000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the engine process too, whatever happened
    assert proc.returncode == 0, stderr[-6000:]
    assert "FIRST-USE-OK vllm SmolLM2-135M-Instruct" in stdout
    assert (tmp_path / "cache").is_dir()


@pytest.fixture(scope="module")
def cuda_vllm(embedded_model_dir):
    pytest.importorskip("vllm")
    from llm_tts.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(dtype="float32", max_model_len=2048, gpu_memory_utilization=0.3)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def cuda_hf(embedded_model_dir):
    from llm_tts.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(device="cuda", dtype="float32")
    yield backend
    backend.close()


def test_vllm_on_cuda_matches_transformers_on_cuda(cuda_vllm, cuda_hf):
    from llm_tts.backends.base import SamplingParams
    from llm_tts.messages import coerce_messages

    prompt = cuda_vllm.render_chat(coerce_messages(MESSAGES))
    assert prompt == cuda_hf.render_chat(coerce_messages(MESSAGES))
    params = SamplingParams(temperature=0.0, max_tokens=24, top_logprobs=5)
    (v,), (h,) = cuda_vllm.generate([prompt], params)[0], cuda_hf.generate([prompt], params)[0]
    assert v.token_ids == h.token_ids
    assert max(abs(a - b) for a, b in zip(v.logprobs, h.logprobs)) < 1e-2
    assert cuda_vllm.capabilities.seed  # per-request seeds work on CUDA (not on the CPU build)


COMBOS = [("self_consistency", "majority_vote")] + [
    (s, sc)
    for s in ("offline_bon", "online_bon", "beam_search")
    for sc in ("entropy", "perplexity", "sequence_prob", "llm_judge", "prm")
]


@pytest.mark.parametrize("strategy, scorer", COMBOS)
def test_every_strategy_with_every_scorer_on_cuda(cuda_vllm, tiny_prm_dir, strategy, scorer):
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine
    from llm_tts.strategies import fields_for

    engine = TTSEngine(cuda_vllm, prm_model=str(tiny_prm_dir))
    result = engine.run(
        MESSAGES, TTSConfig.create(tts_strategy=strategy, tts_scorer=scorer, **fields_for(strategy, SMALL))
    )
    md = result.metadata
    assert (md.strategy, md.scorer, md.backend) == (strategy, scorer, "vllm")
    assert result.text and md.usage.completion_tokens > 0
    assert next(c for c in md.candidates if c.status == "selected").text == result.text


def test_service_on_vllm_serves_concurrent_requests(cuda_vllm, serve_app):
    from openai import AsyncOpenAI

    from llm_tts.engine import TTSEngine
    from llm_tts.service import ServiceSettings, create_app

    url = serve_app(create_app(TTSEngine(cuda_vllm), ServiceSettings(max_concurrency=32)))
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    questions = [f"What is {a} + {a + 1}?" for a in range(16)]

    async def ask(q: str):
        return await client.chat.completions.create(
            model=cuda_vllm.model_name,
            messages=[{"role": "user", "content": q}],
            max_tokens=64,
            extra_body={"tts_strategy": "self_consistency", "num_paths": 4},
        )

    async def main():
        return await asyncio.gather(*(ask(q) for q in questions))

    replies = asyncio.run(main())
    assert len(replies) == len(questions)
    for r in replies:
        md = r.model_dump()["choices"][0]["tts_metadata"]
        assert md["backend"] == "vllm" and r.choices[0].message.content
        assert r.usage.completion_tokens == md["usage"]["completion_tokens"]
    assert cuda_vllm._loop.peak_callers >= 2  # concurrent requests shared engine steps
