"""ChatTTS in LCEL, end to end on the embedded model: a prompt | llm | parser pipeline,
RunnableParallel over strategies, and a router that escalates on the vote's uncertainty."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableBranch, RunnableLambda, RunnableParallel, RunnablePassthrough

from llm_tts.integrations import ChatTTS

PROMPT = ChatPromptTemplate.from_messages(
    [("system", "Answer with the number in \\boxed{{}}."), ("human", "{question}")]
)
QUESTION = {"question": "What is 3 + 4?"}


@pytest.fixture(scope="module")
def llm(embedded_model_dir) -> ChatTTS:
    return ChatTTS(backend="transformers", num_paths=2, max_tokens=8)


def test_prompt_llm_parser_pipeline(llm):
    chain = PROMPT | llm | StrOutputParser()
    answer = chain.invoke(QUESTION)
    assert isinstance(answer, str) and answer.strip()
    streamed = list(chain.stream(QUESTION))
    assert "".join(streamed).strip()  # progress chunks carry no text, so the parser sees only the answer


def test_runnable_parallel_over_strategies(llm):
    strategies: dict[str, dict[str, Any]] = {
        "self_consistency": {},
        "offline_bon": {"tts_num_trajectories": 2, "tts_scorer": "entropy"},
        "beam_search": {"tts_beam_size": 2, "tts_candidates_per_step": 2, "tts_max_steps": 2, "tts_step_max_tokens": 4},
    }
    fan_out = RunnableParallel(
        {name: PROMPT | llm.bind(tts_strategy=name, **extra) for name, extra in strategies.items()}
    )
    results = fan_out.invoke(QUESTION)
    assert set(results) == set(strategies)
    for name, msg in results.items():
        assert isinstance(msg, AIMessage)
        assert msg.response_metadata["tts_metadata"]["strategy"] == name


def uncertainty(msg: AIMessage) -> float:
    return msg.response_metadata["tts_metadata"]["uncertainty_score"]


def make_router(llm: ChatTTS, threshold: float) -> Runnable:
    """Answer cheaply; if the paths disagree more than ``threshold``, ask again with a bigger budget."""
    first = PROMPT | llm
    escalate = RunnableLambda(lambda state: {"question": state["question"]}) | PROMPT | llm.bind(tts_budget=3)
    route = RunnableBranch(
        (lambda state: uncertainty(state["first"]) > threshold, escalate),
        RunnableLambda(lambda state: state["first"]),
    )
    return RunnablePassthrough.assign(first=first).assign(final=route)


@pytest.mark.parametrize("threshold", [-1.0, 1.0])  # always escalate / never: both branches run
def test_router_on_uncertainty_score(llm, threshold):
    out = make_router(llm, threshold).invoke(QUESTION)
    first, final = out["first"], out["final"]
    assert 0.0 <= uncertainty(first) <= 1.0  # 1.0 when no path reached an answer
    escalated = len(final.response_metadata["tts_metadata"]["candidates"]) == 3
    assert escalated == (uncertainty(first) > threshold)
    assert (final is first) == (not escalated)
