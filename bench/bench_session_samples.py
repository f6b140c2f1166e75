"""Building a session's samples at scale: 1,000 and 10,000 records, indexed by conversation
prefix, against the earlier algorithm (each record compared with every conversation so far).

The records are synthetic, written through the store API (no model): agents of ``--turns`` turns
each, every turn's prompt the previous prompt + its sampled answer + a tool's output, half of the
agents' turns re-rendered (their answer's text tokenised differently in the next prompt, so only
the messages join them), interleaved as concurrent agents would be. Printed: CPU seconds for each
size, the 10k / 1k ratio (linear: about 10), and the earlier algorithm's seconds at 1k and 2k
(the 2k / 1k ratio: 2 linear, 4 quadratic) with its 10k time projected from that growth. Both algorithms
must give the same conversations.

    PYTHONPATH=src .venv/bin/python bench/bench_session_samples.py
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import time
from collections.abc import Collection, Sequence

from llm_tts.sessions import (
    CandidateRecord,
    MemorySessionStore,
    SessionInfo,
    SessionOptions,
    SessionRecord,
    build_samples,
)
from llm_tts.sessions.records import SegmentRecord
from llm_tts.sessions.samples import conversations
from llm_tts.sessions.turns import align_turn, extends_messages

EOT = 2
SYSTEM = {"role": "system", "content": "You are an agent."}


def synthetic_records(count: int, turns: int, seed: int = 0) -> list[SessionRecord]:
    """``count`` records of ``count // turns`` agents, interleaved, stored through the store API."""
    rng = random.Random(seed)
    store = MemorySessionStore()
    info = SessionInfo(
        id="sess-bench", created_at=0.0, last_used_at=0.0, ttl_s=1e9, options=SessionOptions(), end_of_turn_ids=[EOT]
    )
    store.create(info, max_sessions=1, retry_after_s=1)
    agents = [
        {
            "prompt": [1, *rng.choices(range(10, 30000), k=40)],
            "messages": [SYSTEM, {"role": "user", "content": f"q{a}"}],
        }
        for a in range(count // turns)
    ]
    for _turn in range(turns):
        for a, agent in enumerate(agents):
            answer = [*rng.choices(range(10, 30000), k=rng.randint(8, 24)), EOT]
            text = f"answer {a} {len(agent['messages'])}"
            lps = [-rng.random() for _ in answer]
            record = SessionRecord(
                session_id=info.id,
                created_at=0.0,
                finished_at=0.0,
                status="completed",
                request={},
                response={"choices": [{"message": {"role": "assistant", "content": text}}]},
                messages=list(agent["messages"]),
                prompt_token_ids=list(agent["prompt"]),
                strategy="self_consistency",
                scorer="none",
                candidates=[
                    CandidateRecord(
                        index=0, segments=[SegmentRecord(token_ids=answer, logprobs=lps)], status="selected"
                    )
                ],
                selected=0,
            )
            store.add_record(record, max_records=count + 1)
            rendered = answer if a % 2 else [*answer[:-1][::-1], EOT]  # odd agents: the same tokens
            tool = [3, *rng.choices(range(10, 30000), k=6), EOT, 4]
            agent["prompt"] = [*agent["prompt"], *rendered, *tool]
            agent["messages"] = [
                *agent["messages"],
                {"role": "assistant", "content": text},
                {"role": "tool", "tool_call_id": "c", "content": f"out {a}"},
            ]
    return store.records(info.id)


def earlier_conversations(records: Sequence[SessionRecord], eot: Collection[int]) -> list[list[SessionRecord]]:
    """The earlier algorithm: each record checked against every conversation so far, latest first."""

    def continues(prev: SessionRecord, record: SessionRecord) -> bool:
        if record.continued_from == prev.id:
            return True
        by_messages = extends_messages(prev.messages, prev.answer_text, record.messages)
        aligned = align_turn(prev.prompt_token_ids, prev.chosen.token_ids, record.prompt_token_ids, eot)
        return aligned is not None and (by_messages or not aligned.rerendered)

    chains: list[list[SessionRecord]] = []
    for record in records:
        home = next((c for c in reversed(chains) if continues(c[-1], record)), None)
        if home is None:
            chains.append([record])
        else:
            home.append(record)
    return chains


def timed(fn, *args):
    """The call's result and its CPU seconds (this process's; steadier than wall time on a shared machine)."""
    gc.collect()
    gc.freeze()  # the records already built stay out of the collector's scans: the algorithm is timed, not them
    try:
        start = time.process_time()
        out = fn(*args)
        return out, time.process_time() - start
    finally:
        gc.unfreeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5, help="turns per agent")
    args = parser.parse_args()
    records = {n: synthetic_records(n, args.turns) for n in (1_000, 2_000, 10_000)}

    seconds = {}
    for n in (1_000, 10_000):
        samples, seconds[n] = timed(build_samples, records[n], [EOT])
        assert len(samples) == n // args.turns and all(s.metadata["turns"] == args.turns for s in samples)
        print(f"build_samples, {n:>6} records: {seconds[n]:.2f} s ({len(samples)} samples)")
    print(f"10k / 1k time ratio: {seconds[10_000] / seconds[1_000]:.1f} (linear: 10)")

    earlier = {}
    for n in (1_000, 2_000):
        chains, earlier[n] = timed(earlier_conversations, records[n], [EOT])
        same = [[r.id for r in c] for c in chains] == [[r.id for r in c] for c in conversations(records[n], [EOT])]
        assert same, "the index must give the earlier algorithm's conversations"
        print(f"earlier algorithm (conversations only), {n:>6} records: {earlier[n]:.2f} s (same conversations)")
    growth = earlier[2_000] / earlier[1_000]
    print(f"earlier 2k / 1k time ratio: {growth:.1f} (linear: 2, quadratic: 4)")
    projected = earlier[1_000] * 10 ** math.log2(growth)  # the growth measured from 1k to 2k, carried to 10k
    print(f"earlier at 10k, projected from that growth: {projected:.0f} s; indexed: {seconds[10_000]:.2f} s")
    print(f"speedup at 10k: {projected / seconds[10_000]:.0f}x")


if __name__ == "__main__":
    main()
