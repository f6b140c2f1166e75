"""Sessions end to end: an agent loop through the official async openai client on a
session's base URL, its records turned into training samples and checked against a separate
float32 forward pass; a beam search exporting every candidate; a restart of the server between
the turns and the samples (SQLite store); the bounded wait queue under 256 concurrent requests;
and bad input answered with OpenAI-shaped 4xx while the server stays up."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from llm_tts.cli import main
from llm_tts.engine import TTSEngine
from llm_tts.messages import coerce_messages
from llm_tts.service import ServiceSettings, create_app
from llm_tts.trace import load

MODEL = "SmolLM2-135M-Instruct"
TURN = {"max_tokens": 12, "temperature": 1.0, "num_paths": 1, "seed": 7}
SYSTEM = {"role": "system", "content": "You are a careful calculator agent."}
QUESTION = {"role": "user", "content": "What is 6 * 7? Use the calculator tool."}
TOOL = {"role": "tool", "tool_call_id": "call_1", "content": "calculator: 42"}
BEAM = {
    "tts_strategy": "beam_search",
    "tts_scorer": "entropy",
    "tts_beam_size": 2,
    "tts_candidates_per_step": 2,
    "tts_max_steps": 2,
    "tts_step_max_tokens": 6,
    "max_tokens": 12,
    "temperature": 1.0,
}


@pytest.fixture(scope="module")
def fp32_engine(hf_backend_fp32):
    return TTSEngine(hf_backend_fp32)


@pytest.fixture(scope="module")
def server(serve_app, fp32_engine, tmp_path_factory):
    """A server on the float32 engine with an SQLite store in a temporary folder."""
    db = tmp_path_factory.mktemp("sessions") / "sessions.sqlite3"
    return serve_app(create_app(fp32_engine, ServiceSettings(session_db=str(db)))), db


def new_session(url: str, **options) -> str:
    r = httpx.post(f"{url}/sessions", json=options, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["base_path"] == f"/sessions/{body['id']}"
    return body["id"]


async def run_agent(base_url: str, turn_kwargs: dict) -> list[dict]:
    """The reference's run_agent shape: the official async client on the session base URL, two
    turns with a tool's output between them; returns each turn's raw completion."""
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    messages: list[dict] = [SYSTEM, QUESTION]
    outs = []
    for turn in range(2):
        out = await client.chat.completions.create(
            model=MODEL, messages=messages, logprobs=True, extra_body={**turn_kwargs, "return_token_ids": True}
        )
        outs.append(out.model_dump())
        if turn == 0:
            messages = [*messages, {"role": "assistant", "content": out.choices[0].message.content}, TOOL]
    await client.close()
    return outs


def samples_of(url: str, session_id: str, **options) -> list[dict]:
    r = httpx.post(f"{url}/sessions/{session_id}/samples", json=options, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_agent_loop_gives_one_sample_true_to_the_tokens(server, hf_backend_fp32):
    url, _ = server
    sid = new_session(url)
    turns = asyncio.run(run_agent(f"{url}/sessions/{sid}", TURN))
    (sample,) = samples_of(url, sid)
    prompt1, prompt2 = turns[0]["prompt_token_ids"], turns[1]["prompt_token_ids"]
    out1, out2 = turns[0]["choices"][0]["token_ids"], turns[1]["choices"][0]["token_ids"]

    # tokens = the first prompt, then turn 1's answer, what came between (tool), turn 2's answer
    tokens, n = sample["tokens"], sample["response_length"]
    assert tokens[: len(prompt1)] == prompt1 and n == len(tokens) - len(prompt1)
    rerendered = sample["metadata"]["rerendered_turns"]
    if prompt2[: len(prompt1) + len(out1)] == prompt1 + out1:
        assert rerendered == []
        between = prompt2[len(prompt1) + len(out1) :]
        # decoding the tokens gives the rendered conversation (turn 2's chat plus its answer)
        answer1 = turns[0]["choices"][0]["message"]["content"]
        final = coerce_messages([SYSTEM, QUESTION, {"role": "assistant", "content": answer1}, TOOL])
        assert hf_backend_fp32.decode(tokens) == hf_backend_fp32.decode(hf_backend_fp32.render_chat(final) + out2)
    else:
        # Sampled text the template re-tokenises (it happens at temperature 1): the sampled tokens are
        # kept, the turn is named with what the template rendered in their place.
        (turn,) = rerendered
        rendered = turn["rendered_answer_token_ids"]
        assert turn["turn"] == 0 and turn["record_id"] == sample["metadata"]["record_ids"][0]
        assert rendered != out1 and prompt2[len(prompt1) : len(prompt1) + len(rendered)] == rendered
        between = prompt2[len(prompt1) + len(rendered) :]
    assert tokens == prompt1 + out1 + between + out2
    assert "calculator: 42" in hf_backend_fp32.decode(between)

    # the mask is 0 exactly on what the model did not sample
    assert sample["loss_mask"] == [1] * len(out1) + [0] * len(between) + [1] * len(out2)
    # every mask-1 logprob is the one the engine returned; 0.0 elsewhere
    returned = [e["logprob"] for t in turns for e in t["choices"][0]["logprobs"]["content"]]
    rollout = sample["rollout_log_probs"]
    assert [lp for lp, m in zip(rollout, sample["loss_mask"]) if m] == returned
    assert all(lp == 0.0 for lp, m in zip(rollout, sample["loss_mask"]) if not m)

    # a separate forward pass of the transformers backend over the tokens gives the same logprobs
    import torch

    model = hf_backend_fp32.model
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([tokens])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    start = len(prompt1)
    for i, (m, lp) in enumerate(zip(sample["loss_mask"], rollout)):
        if m:
            pos = start + i
            assert logp[pos - 1, tokens[pos]].item() == pytest.approx(lp, abs=2e-3)

    meta = sample["metadata"]
    assert meta["turns"] == 2 and meta["selected"] is True and meta["session_id"] == sid
    assert sample["status"] in ("completed", "truncated")


def test_token_continuation_inherits_the_previous_turns_tokens(server):
    url, _ = server
    sid = new_session(url, token_continuation=True)
    turns = asyncio.run(run_agent(f"{url}/sessions/{sid}", TURN))
    prompt1, out1 = turns[0]["prompt_token_ids"], turns[0]["choices"][0]["token_ids"]
    assert turns[1]["prompt_token_ids"][: len(prompt1) + len(out1)] == prompt1 + out1
    records = httpx.get(f"{url}/sessions/{sid}", timeout=30).json()["records"]
    assert records[1]["continued_from"] == records[0]["id"]
    (sample,) = samples_of(url, sid)
    assert sample["metadata"]["turns"] == 2 and sample["metadata"]["rerendered_turns"] == []


def test_streamed_and_chattts_requests_are_recorded_too(server):
    from llm_tts.integrations import ChatTTS

    url, _ = server
    sid = new_session(url)
    llm = ChatTTS(base_url=f"{url}/sessions/{sid}/v1", return_token_ids=True, **TURN)
    msg = llm.invoke(QUESTION["content"])
    body = {"messages": [QUESTION], "stream": True, **TURN}
    with httpx.stream("POST", f"{url}/sessions/{sid}/v1/chat/completions", json=body, timeout=300) as r:
        assert r.status_code == 200 and list(r.iter_lines())[-2] == "data: [DONE]"
    first, streamed = httpx.get(f"{url}/sessions/{sid}", timeout=30).json()["records"]
    chosen = first["candidates"][first["selected"]]
    assert [t for seg in chosen["segments"] for t in seg["token_ids"]] == msg.response_metadata["token_ids"]
    assert first["prompt_token_ids"] == msg.response_metadata["prompt_token_ids"]
    assert streamed["request"]["stream"] is True and streamed["status"] in ("completed", "truncated")
    assert len(samples_of(url, sid)) == 2  # two single-turn conversations


def test_beam_search_session_exports_every_candidate_with_one_selected(server, tmp_path):
    url, db = server
    sid = new_session(url)
    client = openai.OpenAI(base_url=f"{url}/sessions/{sid}/v1", api_key="unused", max_retries=0, timeout=300)
    out = client.chat.completions.create(model=MODEL, messages=[QUESTION], extra_body={**BEAM, "tts_trace": True})
    session = httpx.get(f"{url}/sessions/{sid}", timeout=30).json()
    (record,) = session["records"]
    candidates = record["candidates"]
    # the trace: returned to the client, kept once in the record, read back from the session and its export
    assert out.model_dump()["choices"][0]["tts_metadata"]["trace"] == record["trace"]
    assert record["response"]["choices"][0]["tts_metadata"]["trace"] is None
    (tmp_path / "session.json").write_text(json.dumps(session))
    assert (
        main(["sessions", "export", sid, "--out", str(tmp_path / "t.jsonl"), "--session-db", str(db), "--traces"]) == 0
    )
    for trace in (*load(tmp_path / "session.json"), *load(tmp_path / "t.jsonl")):
        assert trace.labels["record_id"] == record["id"]
        listed = {n.candidate: n for n in trace.nodes if n.candidate is not None}
        assert [listed[c["index"]].answer for c in candidates] == [c["answer"] for c in candidates]
        assert listed[record["selected"]].status == "selected"
    assert len(candidates) > 1 and sum(c["status"] == "selected" for c in candidates) == 1
    samples = samples_of(url, sid)
    assert len(samples) == len(candidates)
    assert {s["metadata"]["group"] for s in samples} == {record["id"]}
    assert sum(s["metadata"]["selected"] for s in samples) == 1
    by_index = {s["metadata"]["candidate_index"]: s for s in samples}
    for c in candidates:
        s = by_index[c["index"]]
        assert s["reward"] == c["score"] and s["metadata"]["step_scores"] == c["step_scores"]
        assert s["tokens"] == record["prompt_token_ids"] + [t for seg in c["segments"] for t in seg["token_ids"]]
        assert c["step_scores"] and s["metadata"]["candidate_status"] == c["status"]
    (only,) = samples_of(url, sid, candidates="selected", reward=1.0)
    assert only["metadata"]["selected"] and only["reward"] == 1.0


def test_restart_between_turns_and_samples_loses_nothing(serve_app, fp32_engine, tmp_path):
    settings = ServiceSettings(session_db=str(tmp_path / "s.sqlite3"))
    first = serve_app(create_app(fp32_engine, settings))
    sid = new_session(first)
    client = openai.OpenAI(base_url=f"{first}/sessions/{sid}/v1", api_key="unused", max_retries=0, timeout=300)
    out1 = client.chat.completions.create(model=MODEL, messages=[QUESTION], extra_body=TURN)
    serve_app.stop(first)

    second = serve_app(create_app(fp32_engine, settings))  # a new process would see the same file
    client = openai.OpenAI(base_url=f"{second}/sessions/{sid}/v1", api_key="unused", max_retries=0, timeout=300)
    history = [QUESTION, {"role": "assistant", "content": out1.choices[0].message.content}, TOOL]
    client.chat.completions.create(model=MODEL, messages=history, extra_body=TURN)
    serve_app.stop(second)

    third = serve_app(create_app(fp32_engine, settings))
    records = httpx.get(f"{third}/sessions/{sid}", timeout=30).json()["records"]
    assert [r["index"] for r in records] == [0, 1]
    (sample,) = samples_of(third, sid)
    assert sample["metadata"]["turns"] == 2 and sample["metadata"]["record_ids"] == [r["id"] for r in records]


def test_256_concurrent_session_requests_all_complete(serve_app, tts_engine):
    url = serve_app(create_app(tts_engine, ServiceSettings(session_store="memory")))
    sid = new_session(url)
    assert httpx.get(f"{url}/health").json()["max_concurrency"] >= 1

    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{url}/sessions/{sid}/v1", api_key="unused", max_retries=0, timeout=600)
        body = {"max_tokens": 1, "num_paths": 1, "temperature": 0.0}
        outs = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": f"Say {i}."}], extra_body=body
                )
                for i in range(256)
            )
        )
        await client.close()
        return [o.id for o in outs]

    ids = asyncio.run(main())
    assert len(set(ids)) == 256
    assert httpx.get(f"{url}/sessions/{sid}", timeout=60).json()["num_records"] == 256


def test_a_full_queue_answers_429_with_retry_after(serve_app, tts_engine):
    app = create_app(tts_engine, ServiceSettings(session_store="memory", max_concurrency=1, queue_size=1))
    url = serve_app(app)
    slots = app.state.tts.serving.slots
    held = slots.acquire()  # the one run slot is busy

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            body = {"messages": [QUESTION], "max_tokens": 1, "num_paths": 1}
            waiting = asyncio.create_task(client.post("/v1/chat/completions", json=body))
            for _ in range(200):
                if slots.queued == 1:
                    break
                await asyncio.sleep(0.02)
            assert slots.queued == 1
            full = await client.post("/v1/chat/completions", json=body)
            assert full.status_code == 429 and full.headers["Retry-After"] == "1"
            held.release()  # the waiter gets the slot and completes
            assert (await waiting).status_code == 200

    asyncio.run(main())


def test_bad_input_is_openai_shaped_4xx_and_the_server_lives(serve_app, tts_engine, hf_backend):
    url = serve_app(create_app(tts_engine, ServiceSettings(session_store="memory", max_session_records=1)))

    def error(r: httpx.Response, status: int) -> dict:
        assert r.status_code == status, r.text
        return r.json()["error"]

    chat = {"messages": [QUESTION], "max_tokens": 2, "num_paths": 1}
    assert error(httpx.post(f"{url}/sessions/nope/v1/chat/completions", json=chat), 404)["code"] == "session_not_found"
    assert error(httpx.get(f"{url}/sessions/nope"), 404)["code"] == "session_not_found"
    assert error(httpx.post(f"{url}/sessions/nope/samples"), 404)["code"] == "session_not_found"
    assert error(httpx.get(f"{url}/sessions/nope/v1/models"), 404)["code"] == "session_not_found"
    sid = new_session(url)
    assert error(httpx.post(f"{url}/sessions/{sid}/samples"), 400)["param"] == "session_id"  # no records yet
    for ids in ([1, 10**9], ["x"], "not a list"):
        err = error(
            httpx.post(f"{url}/sessions/{sid}/v1/chat/completions", json={**chat, "prompt_token_ids": ids}), 400
        )
        assert err["param"].startswith("prompt_token_ids")
    assert error(httpx.post(f"{url}/sessions", json={"ttl_s": -1}), 400)["param"] == "ttl_s"
    assert error(httpx.post(f"{url}/sessions/{sid}/samples", json={"candidates": "some"}), 400)["param"] == "candidates"
    # the session's record cap
    assert httpx.post(f"{url}/sessions/{sid}/v1/chat/completions", json=chat, timeout=120).status_code == 200
    assert error(httpx.post(f"{url}/sessions/{sid}/v1/chat/completions", json=chat), 413)["code"] == "session_full"
    # deleted, then expired sessions are gone
    assert httpx.delete(f"{url}/sessions/{sid}").json() == {"id": sid, "object": "session.deleted", "deleted": True}
    assert error(httpx.get(f"{url}/sessions/{sid}"), 404)["code"] == "session_not_found"
    short = new_session(url, ttl_s=0.2)
    time.sleep(0.3)
    assert (
        error(httpx.post(f"{url}/sessions/{short}/v1/chat/completions", json=chat), 404)["code"] == "session_not_found"
    )
    assert httpx.get(f"{url}/health").status_code == 200


def test_sessions_need_the_api_key_like_v1(serve_app, tts_engine):
    url = serve_app(create_app(tts_engine, ServiceSettings(session_store="memory", api_key="k-secret")))
    assert httpx.post(f"{url}/sessions").status_code == 401
    r = httpx.post(f"{url}/sessions", headers={"Authorization": "Bearer k-secret"})
    assert r.status_code == 200
    assert httpx.get(f"{url}/sessions/{r.json()['id']}").status_code == 401


LONG_SEARCH = {**BEAM, "tts_max_steps": 200, "tts_step_max_tokens": 2, "max_tokens": 400}


def wait_for_records(url: str, session_id: str, count: int) -> list[dict]:
    """The session's records once there are ``count`` (an unanswered run is recorded when it has
    really ended, which may be just after its response)."""
    for _ in range(600):
        records = httpx.get(f"{url}/sessions/{session_id}", timeout=30).json()["records"]
        if len(records) >= count:
            return records
        time.sleep(0.1)
    raise AssertionError(f"session {session_id} never got {count} records")


def test_runs_cut_by_the_deadline_a_disconnect_or_the_budget_are_recorded(server):
    url, _ = server
    sid = new_session(url)
    chat = f"{url}/sessions/{sid}/v1/chat/completions"
    cut = httpx.post(chat, json={"messages": [QUESTION], **LONG_SEARCH, "tts_deadline": 1.5}, timeout=120)
    assert cut.status_code == 408, cut.text
    (deadline,) = wait_for_records(url, sid, 1)
    assert deadline["status"] == "aborted" and deadline["stop_reason"] == "deadline" and deadline["response"] is None
    assert deadline["prompt_token_ids"] and deadline["error"]
    assert any(c["segments"] for c in deadline["candidates"])  # the steps it had made, with their logprobs
    chosen = deadline["candidates"][deadline["selected"]]
    assert all(len(s["logprobs"]) == len(s["token_ids"]) for s in chosen["segments"])

    body = {"messages": [QUESTION], "stream": True, **LONG_SEARCH}
    with httpx.stream("POST", chat, json=body, timeout=120) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the first chunk, then the client leaves
    gone = wait_for_records(url, sid, 2)[1]
    assert gone["status"] == "aborted" and gone["stop_reason"] == "disconnect"
    assert gone["request"]["stream"] is True and gone["prompt_token_ids"] == deadline["prompt_token_ids"]
    samples = samples_of(url, sid)
    assert {s["status"] for s in samples if s["metadata"]["selected"]} == {"aborted"}

    budget = httpx.post(chat, json={"messages": [QUESTION], **LONG_SEARCH, "tts_token_budget": 8}, timeout=120)
    assert budget.status_code == 200, budget.text  # answered with the best so far, and marked cut
    spent = wait_for_records(url, sid, 3)[2]
    assert spent["status"] == "truncated" and spent["stop_reason"] == "budget" and spent["response"]


def test_rewards_by_completion_id_and_by_turn_reach_the_samples(server):
    url, _ = server
    sid = new_session(url)
    first, second = asyncio.run(run_agent(f"{url}/sessions/{sid}", TURN))  # the official client's completions
    rewards = f"{url}/sessions/{sid}/rewards"
    r = httpx.post(
        rewards, json={"rewards": [{"completion_id": first["id"], "reward": 0.25}, {"index": 1, "reward": 1}]}
    )
    assert r.status_code == 200, r.text
    assert [(d["completion_id"], d["reward"]) for d in r.json()["data"]] == [(first["id"], 0.25), (second["id"], 1.0)]
    (sample,) = samples_of(url, sid)
    meta = sample["metadata"]
    assert meta["turn_rewards"] == [0.25, 1.0] and sample["reward"] == 1.0  # the last rewarded turn's
    ends = [len(first["choices"][0]["token_ids"]) - 1, sample["response_length"] - 1]
    assert meta["reward_positions"] == ends
    assert samples_of(url, sid, reward=0.0)[0]["reward"] == 0.0  # the request's reward wins

    def error(body: dict) -> dict:
        r = httpx.post(rewards, json=body)
        assert r.status_code == 400, r.text
        return r.json()["error"]

    assert (
        error({"rewards": [{"completion_id": "chatcmpl-nope", "reward": 1.0}]})["param"] == "rewards[0].completion_id"
    )
    assert error({"rewards": [{"index": 5, "reward": 1.0}]})["param"] == "rewards[0].index"
    for bad in ("high", "1.0", None, True):
        assert "reward" in error({"rewards": [{"index": 0, "reward": bad}]})["param"]
    bad_number = httpx.post(rewards, content=b'{"rewards": [{"index": 0, "reward": NaN}]}')
    assert bad_number.status_code == 400 and bad_number.json()["error"]["type"] == "invalid_request_error"
    assert error({"rewards": [{"index": 0, "completion_id": first["id"], "reward": 1.0}]})
    assert httpx.post(f"{url}/sessions/nope/rewards", json={"rewards": [{"index": 0, "reward": 1}]}).status_code == 404
    assert samples_of(url, sid)[0]["metadata"]["turn_rewards"] == [0.25, 1.0]  # nothing half-done


def test_a_retry_from_the_first_turn_branches_the_session(server):
    url, _ = server
    sid = new_session(url)
    client = openai.OpenAI(base_url=f"{url}/sessions/{sid}/v1", api_key="unused", max_retries=0, timeout=300)
    extra = {**TURN, "return_token_ids": True}
    first = client.chat.completions.create(model=MODEL, messages=[QUESTION], logprobs=True, extra_body=extra)
    history = [QUESTION, {"role": "assistant", "content": first.choices[0].message.content}]
    for output in ("calculator: 42", "calculator: error, try again"):  # the agent retries turn 2
        tool = {"role": "tool", "tool_call_id": "call_1", "content": output}
        client.chat.completions.create(model=MODEL, messages=[*history, tool], logprobs=True, extra_body=extra)
    detail = httpx.get(f"{url}/sessions/{sid}", timeout=30).json()
    root, left, right = (r["id"] for r in detail["records"])
    assert [(n["record_id"], n["parent_id"]) for n in detail["tree"]] == [(root, None), (left, root), (right, root)]
    assert detail["tree"][0]["children"] == [left, right]
    samples = [s for s in samples_of(url, sid) if s["metadata"]["selected"]]
    assert [s["metadata"]["record_ids"] for s in samples] == [[root, left], [root, right]]
    shared = first.model_extra["prompt_token_ids"] + first.choices[0].model_extra["token_ids"]
    for s in samples:  # the shared first turn is exact in both, sampled (mask 1) in both
        assert s["tokens"][: len(shared)] == shared and s["metadata"]["group"] == root
        n = len(first.choices[0].model_extra["token_ids"])
        assert s["loss_mask"][:n] == [1] * n and s["metadata"]["branched"]
