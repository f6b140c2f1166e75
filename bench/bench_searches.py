"""Do the searches earn their compute? Accuracy vs generated tokens, and each scorer's AUROC.

On a generated, seeded arithmetic set (single-digit operations and one-step word problems, the
level SmolLM2-135M can reach), all questions run concurrently through ONE engine (the vLLM
backend batches across concurrent requests):

(a) **Accuracy and tokens**: greedy (temperature 0, one path), self-consistency, and
    beam_search / dvts / particle_filtering with the same scorer, at each budget N (N candidates
    per step for every search: beam_search ``N/4`` beams x 4, dvts ``N/4`` subtrees x 4,
    particle_filtering ``N`` particles). Tokens are ``usage.completion_tokens`` per question (every
    generated token, pruned candidates too). Printed as one table, plotted as accuracy vs tokens
    (``searches.png``) when matplotlib is importable.
(b) **Scorer power**: a pool of ``--pool-size`` whole trajectories per question (offline_bon, one
    run per scorer with the same seed, so the same samples wherever the backend honours seeds),
    each step scored; over every finished candidate (one with an answer), the AUROC of "correct
    answer vs wrong answer" for each scorer x aggregation of its step scores, next to the
    candidate's vote share in its pool and its length (AUROC < 0.5: the score points the wrong
    way). From the same pools, selection at each budget (first N candidates) is simulated
    exactly as the strategies select: best score, weighted vote, majority vote.

Every run's candidates go to ``--out``/records.jsonl; ``--from-records`` re-prints the tables
and the plot from such a file without an engine.

    python bench/bench_searches.py --backend vllm --questions 300 --out /tmp/searches   # GPU
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_searches.py --backend vllm --questions 4 \\
        --budgets 4 --pool-size 4 --pool-scorers entropy --out /tmp/searches           # CPU smoke
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import math
import os
import random
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

SYSTEM = "Reason step by step, separating steps with a blank line, and put the final answer in \\boxed{}."
SEARCHES = ("beam_search", "dvts", "particle_filtering")
SCORERS = ("entropy", "perplexity", "sequence_prob", "llm_judge")
AGGREGATIONS = ("min", "mean", "max", "last", "product")
NAMES = ("Tom", "Mia", "Sam", "Ana", "Leo", "Eva")
ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies")


# -- the question set ---------------------------------------------------------------------------
def make_questions(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` seeded (question, answer) pairs: bare operations and one-step word problems."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b = rng.randint(2, 9), rng.randint(1, 9)
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        kind = rng.randrange(6)
        if kind == 0:
            out.append((f"What is {a} + {b}?", a + b))
        elif kind == 1:
            a, b = max(a, b), min(a, b)
            out.append((f"What is {a} - {b}?", a - b))
        elif kind == 2:
            out.append((f"What is {a} * {b}?", a * b))
        elif kind == 3:
            out.append((f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b))
        elif kind == 4:
            a, b = max(a, b) + 1, min(a, b)
            out.append((f"{name} has {a} {item} and gives {b} away. How many {item} does {name} have left?", a - b))
        else:
            out.append(
                (f"{name} has {a} bags with {b} {item} in each bag. How many {item} does {name} have in all?", a * b)
            )
    return [(q, str(v)) for q, v in out]


# -- the runs -------------------------------------------------------------------------------------
def search_fields(strategy: str, budget: int) -> dict[str, Any]:
    """N candidates per step for every search, so equal budgets cost about equal tokens."""
    per_step = 4
    if strategy == "beam_search":
        return dict(tts_beam_size=max(1, budget // per_step), tts_candidates_per_step=per_step)
    if strategy == "dvts":
        return dict(tts_budget=budget, tts_candidates_per_step=per_step)
    return dict(tts_num_particles=budget)


def plan_runs(args: argparse.Namespace) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(method, family, budget, config fields) for every run of one question."""
    runs: list[tuple[str, str, int, dict[str, Any]]] = [
        ("greedy", "greedy", 1, dict(tts_strategy="self_consistency", num_paths=1, temperature=0.0))
    ]
    for n in args.budgets:
        runs.append(
            (f"self_consistency n={n}", "self_consistency", n, dict(tts_strategy="self_consistency", num_paths=n))
        )
    for variant in args.search_variants:
        overrides = json.loads(variant)
        tag = ",".join(f"{k.removeprefix('tts_')}={v}" for k, v in overrides.items())
        scorer = overrides.get("tts_scorer", args.scorer)
        for strategy in SEARCHES:
            family = f"{strategy} {scorer}" + (f" [{tag}]" if tag else "")
            for n in args.budgets:
                fields = {
                    "tts_strategy": strategy,
                    "tts_scorer": args.scorer,
                    **search_fields(strategy, n),
                    **overrides,
                }
                runs.append((f"{family} N={n}", family, n, fields))
    for scorer in args.pool_scorers:
        runs.append(
            (
                f"pool {scorer}",
                f"pool {scorer}",
                args.pool_size,
                dict(tts_strategy="offline_bon", tts_scorer=scorer, tts_num_trajectories=args.pool_size),
            )
        )
    return runs


def run_all(args: argparse.Namespace, questions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    from llm_tts.answers import answers_equivalent
    from llm_tts.config import TTSConfig
    from llm_tts.engine import TTSEngine

    options: dict[str, Any] = {}
    if args.backend == "vllm":
        options = dict(max_model_len=2048, gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.eager)
    engine = TTSEngine.create(args.model, backend=args.backend, **options)
    common = dict(max_tokens=args.max_tokens, temperature=args.temperature)
    runs = plan_runs(args)
    print(
        f"{len(questions)} questions x {len(runs)} runs, backend {engine.backend.name}: {engine.backend.model_name}, "
        f"{common}, {args.concurrency} at once",
        flush=True,
    )

    def one(task: tuple[int, tuple[str, str, int, dict[str, Any]]]) -> dict[str, Any]:
        qi, (method, family, budget, fields) = task
        question, gold = questions[qi]
        config = TTSConfig.create(**{**common, "seed": args.seed + qi, **fields})
        result = engine.run([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], config)
        m = result.metadata
        right = lambda a: bool(a is not None and answers_equivalent(a, gold))  # noqa: E731
        pool = family.startswith("pool")
        return dict(
            method=method,
            family=family,
            budget=budget,
            question=qi,
            gold=gold,
            answer=m.selected_answer,
            correct=right(m.selected_answer),
            tokens=m.usage.completion_tokens,
            seconds=m.timings.total_s,
            scorer=m.scorer,
            pruned=sum(c.status == "pruned" for c in m.candidates),
            candidates=[
                dict(
                    answer=c.answer,
                    correct=right(c.answer),
                    score=c.score,
                    step_scores=[round(x, 5) for x in c.step_scores],
                    status=c.status,
                    num_tokens=c.num_tokens,
                    finish_reason=c.finish_reason,
                    **({"text": c.text} if pool else {}),
                )
                for c in m.candidates
                if pool or c.status != "pruned"  # the searches' pruned candidates: only counted (size)
            ],
        )

    # Interleave methods so that every method sees the same engine load, and a run stopped by
    # --time-limit leaves every method with about the same share of the questions.
    tasks = [(qi, run) for run in runs for qi in range(len(questions))]
    random.Random(0).shuffle(tasks)
    start = time.perf_counter()
    records: list[dict[str, Any]] = []
    log = open(os.path.join(args.out, "records.jsonl"), "w") if args.out else None  # noqa: SIM115 (written as runs end)

    def timed(task: tuple[int, tuple[str, str, int, dict[str, Any]]]) -> dict[str, Any] | None:
        return None if time.perf_counter() - start > args.time_limit else one(task)

    with ThreadPoolExecutor(args.concurrency) as pool:
        for future in as_completed([pool.submit(timed, t) for t in tasks]):
            rec = future.result()
            if rec is None:
                continue
            records.append(rec)
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if len(records) % max(1, len(tasks) // 10) == 0:
                print(f"  {len(records)}/{len(tasks)} runs, {time.perf_counter() - start:.0f} s", flush=True)
    if log:
        log.close()
    if len(records) < len(tasks):
        print(
            f"  --time-limit {args.time_limit:.0f} s: {len(tasks) - len(records)} of {len(tasks)} runs skipped",
            flush=True,
        )
    engine.close()
    return records


# -- analysis -------------------------------------------------------------------------------------
def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """P(score of a correct candidate > score of a wrong one), ties counted half (Mann-Whitney)."""
    if not positives or not negatives:
        return None
    ranked = sorted([(s, 1) for s in positives] + [(s, 0) for s in negatives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(label for _, label in ranked[i:j]) * (i + j + 1) / 2
        i = j
    p, n = len(positives), len(negatives)
    return (rank_sum - p * (p + 1) / 2) / (p * n)


def aggregated(step_scores: Sequence[float], how: str) -> float:
    from llm_tts.scorers.aggregation import aggregate

    return aggregate(step_scores, how, empty=-math.inf)


def finished(candidates: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Candidates that gave an answer (the ones a vote or a verifier can judge)."""
    return [c for c in candidates if c["answer"] is not None]


def add_feature(features: dict[str, tuple[list[float], list[float]]], name: str, value: float, correct: bool) -> None:
    """Record ``value`` of feature ``name`` for a right (first list) or wrong (second) candidate."""
    features.setdefault(name, ([], []))[0 if correct else 1].append(value)


def scorer_power(records: list[dict[str, Any]]) -> list[tuple[str, str, float | None, int, int]]:
    """(scorer, feature, AUROC, correct, wrong) over every finished pool candidate."""
    from llm_tts.answers import group_answers

    rows = []
    pools = [r for r in records if r["family"].startswith("pool")]
    for family in sorted({r["family"] for r in pools}):
        mine = [r for r in pools if r["family"] == family]
        scorer = family.removeprefix("pool ")
        features: dict[str, tuple[list[float], list[float]]] = {}
        add = functools.partial(add_feature, features)

        for r in mine:
            cands = r["candidates"]
            share = {}
            for g in group_answers([c["answer"] for c in cands]):
                for i in g.members:
                    share[i] = len(g.members) / len(cands)
            for i, c in enumerate(cands):
                if c["answer"] is None or not c["step_scores"]:
                    continue
                for how in AGGREGATIONS:
                    add(how, aggregated(c["step_scores"], how), c["correct"])
                add("vote share", share[i], c["correct"])
                add("vote share x mean", share[i] * aggregated(c["step_scores"], "mean"), c["correct"])
                add("-tokens (shorter)", -c["num_tokens"], c["correct"])
                add("-steps (fewer)", -len(c["step_scores"]), c["correct"])
        for name, (pos, neg) in features.items():
            rows.append((scorer, name, auroc(pos, neg), len(pos), len(neg)))
    return rows


def simulated_selection(records: list[dict[str, Any]], budgets: Sequence[int]) -> list[tuple[str, int, float, int]]:
    """(rule, N, accuracy, question-subsets) choosing among disjoint N-subsets of each pool."""
    from llm_tts.answers import vote

    tally: dict[tuple[str, int], list[int]] = {}
    first = min(r["family"] for r in records if r["family"].startswith("pool")).removeprefix("pool ")
    for r in records:
        if not r["family"].startswith("pool"):
            continue
        scorer = r["family"].removeprefix("pool ")
        cands = r["candidates"]
        for n in budgets:
            for start in range(0, len(cands) - n + 1, n):
                sub = cands[start : start + n]
                answers = [c["answer"] for c in sub]
                picks = {}
                if scorer == first:  # one pool is enough for the rules that use no score
                    picks["majority vote"] = vote(answers, [None] * n).selected
                    picks["first sample (no selection)"] = 0
                for how in ("min", "mean", "last"):
                    scores = [aggregated(c["step_scores"], how) if c["step_scores"] else -math.inf for c in sub]
                    picks[f"best {scorer} {how}"] = max(range(n), key=lambda i: (scores[i], -i))
                    picks[f"weighted {scorer} {how}"] = vote(answers, scores, weighted=True).selected
                for rule, i in picks.items():
                    tally.setdefault((rule, n), []).append(int(sub[i]["correct"]))
    return [(rule, n, sum(v) / len(v), len(v)) for (rule, n), v in sorted(tally.items())]


def search_power(records: list[dict[str, Any]]) -> list[tuple[str, float | None, int, int]]:
    """AUROC of the search's own aggregated score over its finished, unpruned candidates."""
    out = []
    for family in sorted({r["family"] for r in records if r["family"].split()[0] in SEARCHES}):
        pos, neg = [], []
        for r in records:
            if r["family"] != family:
                continue
            for c in finished(r["candidates"]):
                if c["status"] != "pruned" and c["score"] is not None:
                    (pos if c["correct"] else neg).append(c["score"])
        out.append((family, auroc(pos, neg), len(pos), len(neg)))
    return out


def accuracy_table(records: list[dict[str, Any]]) -> list[tuple[str, str, int, float, float, float, int]]:
    """(method, family, budget, accuracy, tokens/question, seconds/question, questions)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if not r["family"].startswith("pool"):
            by.setdefault(r["method"], []).append(r)
    rows = []
    for method, rs in by.items():
        n = len(rs)
        rows.append(
            (
                method,
                rs[0]["family"],
                rs[0]["budget"],
                sum(r["correct"] for r in rs) / n,
                sum(r["tokens"] for r in rs) / n,
                sum(r["seconds"] for r in rs) / n,
                n,
            )
        )
    return sorted(rows, key=lambda row: (row[1] != "greedy", row[1], row[2]))


def report(records: list[dict[str, Any]], budgets: Sequence[int], out: str | None, plotted: Sequence[str] = ()) -> None:
    rows = accuracy_table(records)
    print(
        f"\n(a) accuracy and generated tokens per question\n{'method':58} {'acc':>6} {'tokens/q':>9} {'s/q':>6} {'n':>5}"
    )
    for method, _, _, acc, tok, sec, n in rows:
        print(f"{method:58} {acc:6.3f} {tok:9.1f} {sec:6.2f} {n:5d}")
    power = scorer_power(records)
    if power:
        print(
            f"\n(b) AUROC, correct vs wrong finished pool candidates\n{'scorer':14} {'feature':20} {'AUROC':>6} {'right':>6} {'wrong':>6}"
        )
        for scorer, name, value, p, n in power:
            print(f"{scorer:14} {name:20} {'-' if value is None else f'{value:.3f}':>6} {p:6d} {n:6d}")
        print(f"\n(b2) selection among disjoint N-subsets of the pools\n{'rule':34} {'N':>3} {'acc':>6} {'subsets':>8}")
        for rule, n, acc, count in simulated_selection(records, budgets):
            print(f"{rule:34} {n:3d} {acc:6.3f} {count:8d}")
    searched = search_power(records)
    if searched:
        print(
            f"\n(b3) AUROC of each search's own score over its finished, unpruned candidates\n{'search':58} {'AUROC':>6} {'right':>6} {'wrong':>6}"
        )
        for family, value, p, n in searched:
            print(f"{family:58} {'-' if value is None else f'{value:.3f}':>6} {p:6d} {n:6d}")
    if out:
        plot([row for row in rows if not plotted or row[1] in plotted], os.path.join(out, "searches.png"))


def plot(rows: list[tuple[str, str, int, float, float, float, int]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: no plot (the table above has the same numbers)")
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab20").colors
    for k, family in enumerate(dict.fromkeys(row[1] for row in rows)):
        pts = sorted((tok, acc, budget) for _, fam, budget, acc, tok, _, _ in rows if fam == family)
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o" if family != "greedy" else "*",
            markersize=6 if family != "greedy" else 14,
            label=family,
            color=colors[k % len(colors)],
            linestyle="--" if "[" in family else "-",
        )
        for tok, acc, budget in pts:
            if family != "greedy":
                ax.annotate(str(budget), (tok, acc), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per question (log)")
    ax.set_ylabel("accuracy")
    ax.set_title("SmolLM2-135M, generated arithmetic set: accuracy vs compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nplot: {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--scorer", default="entropy", help="the scorer every search uses")
    ap.add_argument(
        "--search-variants",
        nargs="+",
        default=["{}"],
        help='JSON config overrides, one search family per variant, e.g. \'{"tts_selection": "weighted"}\'',
    )
    ap.add_argument("--pool-scorers", nargs="*", default=list(SCORERS), help="scorers for the AUROC pools (none: skip)")
    ap.add_argument("--pool-size", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--backend", default="vllm")
    ap.add_argument("--model", default=None)
    ap.add_argument("--concurrency", type=int, default=256, help="runs in flight at once (threads)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.6)
    ap.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True, help="vLLM enforce_eager")
    ap.add_argument("--time-limit", type=float, default=math.inf, help="seconds after which no new run starts")
    ap.add_argument(
        "--out", default=None, help="folder for records.jsonl (one line per run, written as runs end) and searches.png"
    )
    ap.add_argument("--from-records", default=None, help="re-analyse a records.jsonl[.gz] instead of running")
    ap.add_argument("--plot-families", nargs="*", default=[], help="plot only these families (default: all)")
    args = ap.parse_args()

    if args.from_records:
        with (gzip.open if args.from_records.endswith(".gz") else open)(args.from_records, "rt") as f:
            records = [json.loads(line) for line in f]
    else:
        if args.out:
            os.makedirs(args.out, exist_ok=True)
        records = run_all(args, make_questions(args.questions, args.seed))
    report(records, args.budgets, args.out, args.plot_families)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
