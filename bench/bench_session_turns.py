"""Per-turn cost of sessions at an RL trainer's shape: many agents, each a multi-turn conversation.

Every agent (``--sessions``, all at once) runs ``--turns`` turns through the official async
openai client: each turn's answer and a tool message are appended to its messages before the
next turn, so prompts grow as an agent's do.

(1) One replica: the agents on plain ``/v1/chat/completions`` (the baseline), then the same
    conversations as session turns (``/sessions/{id}/v1``, SQLite store, every record committed
    before its answer). Per-turn latency p50 and p95, turns/s, and the ratio of session turns/s to
    plain [target >= 0.9: within 10%].
(2) Two replicas sharing one PostgreSQL store, each agent's turns alternating between them (no
    sticky routing), against (1)'s one replica on SQLite: the same numbers and their ratio.

The backend is the cheapest real one: the transformers backend on the embedded SmolLM2-135M,
greedy, ``--max-tokens`` (1) per turn, so the service's and the store's own work is as large a
share of a turn as it gets. Both replicas are apps in this process on one engine, so they have
the generation capacity of one replica: what differs between the arms is the store and the
routing. PostgreSQL is a throwaway server (tests/postgres_server.py) unless ``--postgres URL``.

    .venv/bin/python bench/bench_session_turns.py                 # 32 sessions x 20 turns
    .venv/bin/python bench/bench_session_turns.py --sessions 8 --turns 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench_service import serving

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/postgres_server.py

MODEL = "SmolLM2-135M-Instruct"
TASK = {"role": "user", "content": "You are agent {i}. Count the primes below {n}, one tool call per step."}


@dataclass
class Arm:
    name: str
    latencies: list[float]
    wall_s: float

    @classmethod
    def pooled(cls, runs: list[Arm]) -> Arm:
        return cls(runs[0].name, [x for r in runs for x in r.latencies], sum(r.wall_s for r in runs))

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def turns_per_s(self) -> float:
        return len(self.latencies) / self.wall_s

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        ms = 1000.0
        p50, p95 = statistics.median(self.latencies) * ms, self.percentile(0.95) * ms
        return f"    {self.name:<38} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   {self.turns_per_s:7.2f} turns/s"


def run_agents(name: str, urls: list[str], sessions: int, turns: int, max_tokens: int, recorded: bool) -> Arm:
    """Every agent's conversation at once; agent i's turn t goes to ``urls[(i + t) % len(urls)]``."""
    import httpx
    import openai

    async def main() -> Arm:
        latencies: list[float] = []
        sids: list[str | None] = [None] * sessions
        async with httpx.AsyncClient(timeout=60) as http:  # made before the clock starts
            if recorded:
                sids = [
                    (await http.post(f"{urls[i % len(urls)]}/sessions", json={})).json()["id"] for i in range(sessions)
                ]

        async def agent(i: int) -> None:
            bases = [f"{u}/sessions/{sids[i]}/v1" if sids[i] else f"{u}/v1" for u in urls]
            clients = [openai.AsyncOpenAI(base_url=b, api_key="x", max_retries=0, timeout=3600) for b in bases]
            messages: list[dict] = [{**TASK, "content": TASK["content"].format(i=i, n=50 + i)}]
            for t in range(turns):
                start = time.perf_counter()
                out = await clients[(i + t) % len(urls)].chat.completions.create(
                    model=MODEL,
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=max_tokens,
                    temperature=0.0,
                    extra_body={"num_paths": 1},
                )
                latencies.append(time.perf_counter() - start)
                answer = out.choices[0].message.content or ""
                tool = {"role": "tool", "tool_call_id": f"call_{t}", "content": f"step {t}: ok"}
                messages += [{"role": "assistant", "content": answer}, tool]
            for c in clients:
                await c.close()

        start = time.perf_counter()
        await asyncio.gather(*(agent(i) for i in range(sessions)))
        arm = Arm(name, latencies, time.perf_counter() - start)
        async with httpx.AsyncClient(timeout=60) as http:  # every turn is in the store, whichever replica served it
            for sid in filter(None, sids):
                assert (await http.get(f"{urls[0]}/sessions/{sid}")).json()["num_records"] == turns, sid
        return arm

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the three arms, interleaved")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (default: a throwaway server)")
    args = parser.parse_args()

    from llm_tts.integrations.inprocess import shared_engine
    from llm_tts.service import ServiceSettings, create_app

    engine = shared_engine(None, "transformers")
    shape = (args.sessions, args.turns, args.max_tokens)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        pg_url = args.postgres
        if pg_url is None:
            from postgres_server import start_postgres

            server = start_postgres()
            stack.callback(server.stop)
            pg_url = server.new_database()
        one = stack.enter_context(serving(create_app(engine, ServiceSettings(session_db=str(tmp / "s.sqlite3")))))
        two = [stack.enter_context(serving(create_app(engine, ServiceSettings(session_store=pg_url)))) for _ in "ab"]
        run_agents("warm-up", [one], 4, 2, args.max_tokens, recorded=True)
        arms = {
            "plain": ("/v1 (1 replica)", [one], False),
            "sqlite": ("/sessions, SQLite (1 replica)", [one], True),
            "shared": ("/sessions, PostgreSQL (2 replicas)", two, True),
        }
        done: dict[str, list[Arm]] = {key: [] for key in arms}
        for r in range(args.rounds):  # interleaved, each round in another order: load drifts hit every arm
            for key in list(arms)[r % 3 :] + list(arms)[: r % 3]:
                name, urls, recorded = arms[key]
                done[key].append(run_agents(name, urls, *shape, recorded=recorded))
                print(f"  round {r + 1}:{done[key][-1].line()[1:]}", flush=True)
        plain, sqlite, shared = (Arm.pooled(done[key]) for key in arms)

    print(
        f"{args.sessions} sessions x {args.turns} turns, {args.max_tokens} token(s) a turn, greedy, "
        f"{args.rounds} round(s) (transformers backend, embedded SmolLM2-135M; all agents at once)"
    )
    print("(1) one replica, session turns against plain /v1:")
    print(plain.line())
    print(sqlite.line())
    print(f"    ratio session / v1 (turns/s): {sqlite.turns_per_s / plain.turns_per_s:.3f}  [target >= 0.9]")
    print(f"    per-turn overhead at p50: {sqlite.p50 / plain.p50 - 1:+.1%}")
    print("(2) two replicas on one PostgreSQL store against one replica on SQLite:")
    print(shared.line())
    ratio = shared.turns_per_s / sqlite.turns_per_s
    print(f"    ratio PostgreSQL x2 / SQLite x1 (turns/s): {ratio:.3f}  [target >= 0.9]")
    print(f"    per-turn difference at p50: {shared.p50 / sqlite.p50 - 1:+.1%}")


if __name__ == "__main__":
    main()
