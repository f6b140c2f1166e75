"""Selection by a fitted selector against the votes, on held-out questions.

On the shipped arithmetic set (100 questions, embedded SmolLM2 on the vLLM CPU backend), ONE
engine: ``offline_bon`` at budget 8 with ``tts_scorer=self_certainty`` is recorded with
``llm-tts eval``'s runner on ``--fit`` questions drawn by a seeded shuffle (every seed in ``--seeds``) and a
selector is fitted on those rows (``llm-tts fit-selector``'s code, its own 30% validation split
inside them). The remaining questions are held out: recorded the same way, plus once with
``entropy`` and ``tail_entropy`` as the scorer for their AUROC. On the held-out runs, every rule
chooses among the SAME recorded candidates:

- majority vote (the largest group of equivalent answers; ties to the best score, then first seen);
- weighted vote (scores summed per answer: ``tts_selection="weighted"``, offline_bon's default);
- the selector (the answer with the highest P(right)).

Printed: AUROC of each signal over held-out candidates (score against whether its answer is right;
vote share = the share of candidates giving its answer) and over held-out answers (the selector's
P(right) against vote share and the scorer's mean), ECE of the selector's P(right) over answers and
of the selected answer's confidence per run, and accuracy of each rule with 95% bootstrap intervals
(questions resampled) and the paired difference selector - vote. Targets: selector AUROC above vote
share; ECE <= 0.05; selector accuracy above both votes.

    .venv/bin/python bench/bench_selector.py --out /tmp/selector-bench
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

SCORER = "self_certainty"
EXTRA_SIGNALS = ("entropy", "tail_entropy")


def shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def bootstrap(per_question: dict[str, list[float]], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean over questions (a question's runs move together)."""
    rng = random.Random(seed)
    values = [sum(v) / len(v) for v in per_question.values()]
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the eval runs, the selector and its plot")
    ap.add_argument("--fit", type=int, default=60, help="questions to fit on (the rest are held out)")
    ap.add_argument("--questions", type=int, default=100, help="questions of the shipped set used")
    ap.add_argument("--seeds", default="0,1", help="sampling seeds per question")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--no-extra-signals", action="store_true", help="skip the entropy and tail_entropy runs")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the shuffle that holds questions out")
    ap.add_argument("--analyze-only", action="store_true", help="use the runs already recorded in --out")
    args = ap.parse_args()

    from llm_tts.answers import vote
    from llm_tts.engine import TTSEngine
    from llm_tts.evaluation import InProcessSolver, ResultsStore, build_configurations, load_questions, run_evaluation
    from llm_tts.evaluation.records import ResultRow
    from llm_tts.evaluation.selector_fit import fit_selector_directory, run_examples
    from llm_tts.evaluation.summary import candidate_signals
    from llm_tts.selection import auroc, expected_calibration_error

    seeds = [int(s) for s in args.seeds.split(",")]
    questions = load_questions("arithmetic", limit=args.questions)
    # The shipped set is ordered (its later questions are easier for this model): a seeded shuffle
    # decides which questions are held out, so fitting and held-out questions are alike.
    order = list(questions)
    random.Random(args.split_seed).shuffle(order)
    fit_q, held_q = order[: args.fit], order[args.fit :]
    out = Path(args.out)
    engine = None if args.analyze_only else TTSEngine.create(None, backend="vllm", max_model_len=2048)
    solver = None if engine is None else InProcessSolver(engine)
    common = {"max_tokens": args.max_tokens}

    def record(name: str, qs: Sequence, scorer: str, run_seeds: list[int]) -> list[ResultRow]:
        configs = build_configurations(
            [f"offline_bon:tts_scorer={scorer}"], [args.budget], common=common, seeds=run_seeds, greedy=False
        )
        store = ResultsStore(out / name)
        start = time.perf_counter()
        if solver is not None:
            run_evaluation(qs, configs, solver, store, seeds=run_seeds, concurrency=args.concurrency)
        print(
            f"  {name}: {len(qs)} questions x {len(run_seeds)} seeds in {time.perf_counter() - start:.0f} s", flush=True
        )
        return [r for r in store.latest().values() if r.error is None]

    print(
        f"{len(fit_q)} questions to fit, {len(held_q)} held out, seeds {seeds}, budget {args.budget}, "
        f"max_tokens {args.max_tokens}, vLLM CPU, embedded SmolLM2-135M",
        flush=True,
    )
    recorded = record("runs", questions, SCORER, seeds)
    extra = {} if args.no_extra_signals else {s: record(f"held-{s}", held_q, s, seeds[:1]) for s in EXTRA_SIGNALS}
    if engine is not None:
        engine.close()
    held_ids = {q.id for q in held_q}
    held = [r for r in recorded if r.question_id in held_ids]
    extra = {s: [r for r in rows if r.question_id in held_ids] for s, rows in extra.items()}
    ResultsStore(out / "fit").rewrite([r for r in recorded if r.question_id not in held_ids])

    selector, report = fit_selector_directory(out / "fit", out / "selector.json")
    print(
        f"\nselector fitted on {selector.info['fitted_on']['runs']} runs; its own validation split: "
        f"AUROC {shown(report['auroc'])} (vote share {shown(report['vote_share_auroc'])}), ECE {shown(report['ece'])}"
    )

    # -- signals over held-out candidates (as llm-tts eval's summary computes them) --
    print("\nAUROC over held-out candidates (score vs its answer right):")
    scored, shares = candidate_signals(held)
    rows_for = {SCORER: scored, **{s: candidate_signals(r)[0] for s, r in extra.items()}}
    for name, pairs in rows_for.items():
        print(f"  {name:16} {shown(auroc([s for s, _ in pairs], [ok for _, ok in pairs]))}  ({len(pairs)} candidates)")
    vote_auc = auroc([s for s, _ in shares], [ok for _, ok in shares])
    print(f"  {'vote share':16} {shown(vote_auc)}")

    # -- answers: the selector against vote share --
    runs = run_examples(held)
    probs = [selector.probabilities(r.answers) for r in runs]
    flat_y = [ok for r in runs for ok in r.right]
    answer_signals: dict[str, list[float]] = {
        "selector P(right)": [p for ps in probs for p in ps],
        "vote share": [a.as_dict()["vote_share"] for r in runs for a in r.answers],
        f"{SCORER} (mean)": [a.as_dict()["score_mean"] for r in runs for a in r.answers],
    }
    print(f"\nAUROC over held-out answers ({len(flat_y)} distinct answers of {len(runs)} runs, {sum(flat_y)} right):")
    aucs = {k: auroc(v, flat_y) for k, v in answer_signals.items()}
    for k, v in aucs.items():
        print(f"  {k:22} {shown(v)}")
    ece_answers = expected_calibration_error(zip(answer_signals["selector P(right)"], flat_y))

    # -- accuracy of the three rules on the same candidates --
    rules: dict[str, Callable[[ResultRow], bool]] = {}

    def pool(row: ResultRow):
        return [c for c in row.metadata.candidates if c.status != "pruned"]

    def right(row: ResultRow, answer: str | None) -> bool:
        from llm_tts.evaluation.records import is_correct

        return is_correct(answer, row.gold)

    def by_vote(weighted: bool) -> Callable[[ResultRow], bool]:
        def rule(row: ResultRow) -> bool:
            cands = pool(row)
            return right(row, vote([c.answer for c in cands], [c.score for c in cands], weighted=weighted).answer)

        return rule

    from llm_tts.selection import signals_of_info

    selected_pairs = []

    def by_selector(row: ResultRow) -> bool:
        picked = selector.select([signals_of_info(c) for c in pool(row)])
        ok = right(row, None if picked is None else picked.answer)
        if picked is not None:
            selected_pairs.append((picked.confidence, ok))
        return ok

    rules = {"majority vote": by_vote(False), "weighted vote": by_vote(True), "selector": by_selector}
    results = {name: {r.key: rule(r) for r in held} for name, rule in rules.items()}
    ece_selected = expected_calibration_error(selected_pairs)
    print(
        f"\nECE of the selector: {shown(ece_answers)} over answers, {shown(ece_selected)} over the selected answer per run"
    )
    print(f"\naccuracy at budget {args.budget} on {len(held)} held-out runs ({len(held_q)} questions):")
    for name, res in results.items():
        per_q: dict[str, list[float]] = {}
        for (qid, _, _), ok in res.items():
            per_q.setdefault(qid, []).append(float(ok))
        lo, hi = bootstrap(per_q)
        print(f"  {name:14} {sum(res.values()) / len(res):.3f} ({lo:.3f}-{hi:.3f})")
    for base in ("majority vote", "weighted vote"):
        per_q = {}
        for key, ok in results["selector"].items():
            per_q.setdefault(key[0], []).append(float(ok) - float(results[base][key]))
        diff = sum(sum(v) for v in per_q.values()) / len(results["selector"])
        lo, hi = bootstrap(per_q)
        print(f"  selector - {base}: {diff:+.3f} ({lo:+.3f} to {hi:+.3f})")
    acc = {n: sum(r.values()) / len(r) for n, r in results.items()}
    targets = {
        "selector AUROC above vote share": (aucs["selector P(right)"] or 0) > (aucs["vote share"] or 1),
        "ECE <= 0.05 (selected answers)": ece_selected is not None and ece_selected <= 0.05,
        "selector accuracy above both votes": acc["selector"] > max(acc["majority vote"], acc["weighted vote"]),
    }
    print()
    for name, met in targets.items():
        print(f"target {name}: {'MET' if met else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
