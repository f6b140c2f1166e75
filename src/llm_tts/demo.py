"""The main job: answer one question with a few strategies on the embedded model via ChatTTS."""

from __future__ import annotations

import time
from typing import Any

DEMO_RUNS: list[tuple[str, dict[str, Any]]] = [
    ("self-consistency, 5 paths", {"tts_strategy": "self_consistency", "num_paths": 5}),
    ("offline best-of-4, entropy", {"tts_strategy": "offline_bon", "tts_num_trajectories": 4, "tts_scorer": "entropy"}),
    (
        "beam search 2x2, perplexity",
        {"tts_strategy": "beam_search", "tts_beam_size": 2, "tts_candidates_per_step": 2, "tts_max_steps": 6, "tts_scorer": "perplexity"},
    ),
]


def run_demo(question: str, backend: str = "auto", model: str | None = None) -> int:
    from langchain_core.messages import HumanMessage, SystemMessage

    from llm_tts.integrations import ChatTTS
    from llm_tts.messages import REASONING_SYSTEM_PROMPT

    messages = [SystemMessage(REASONING_SYSTEM_PROMPT), HumanMessage(question)]
    print(f"question: {question}\n")
    for title, fields in DEMO_RUNS:
        llm = ChatTTS(model=model, backend=backend, max_tokens=256, **fields)
        start = time.perf_counter()
        msg = llm.invoke(messages)
        elapsed = time.perf_counter() - start
        md = msg.response_metadata["tts_metadata"]
        print(f"== {title}  [{md['backend']}: {md['model']}]")
        print(f"answer text      : {msg.content.strip()[:300]!r}")
        print(f"selected answer  : {md['selected_answer']}")
        if md.get("answer_distribution") is not None:
            print(f"votes            : {md['answer_distribution']}  consensus={md['consensus_score']:.2f}")
        if md.get("aggregated_score") is not None:
            print(f"score            : {md['aggregated_score']:.4f} over {md['reasoning_steps']} steps ({md['scorer']})")
        usage = md["usage"]
        print(
            f"tokens           : prompt {usage['prompt_tokens']}, generated {usage['completion_tokens']} "
            f"over {len(md['candidates'])} candidates; {elapsed:.1f}s\n"
        )
    return 0
