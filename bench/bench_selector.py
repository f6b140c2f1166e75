"""Selection that knows when it is right: a fitted selector, generative selection and routing,
against the votes, on held-out questions.

On the shipped arithmetic set (embedded SmolLM2-135M, vLLM CPU backend, one engine), questions are
split by a seeded shuffle into ``--fit`` fitting questions and the rest, held out. Recorded with
``llm-tts eval``'s runner:

1. ``runs``: ``offline_bon`` at budget 8, ``tts_scorer=self_certainty``, every question. A selector
   is fitted on the fitting questions' runs (``llm-tts fit-selector``'s ``fit_selector``: every
   fitting run, calibration cross-fitted inside them) for each model and calibration, and judged
   on the held-out runs: AUROC over answers (against vote share), ECE of P(right) over answers and
   of the selected answer's confidence per run (with the ECE a perfectly calibrated predictor of
   the same confidences gets on as many runs: the noise floor), and accuracy against majority and
   weighted vote, all choosing among the SAME recorded candidates. ``in-sample Platt`` is the
   method before the fix (calibrated on the model's own fitting picks), for the diagnosis.
2. ``genselect`` (unless ``--no-genselect``): the held-out questions again at budget 8 with
   ``tts_genselect=3``: the model's pick against majority and weighted vote and the selector on
   the same candidates of each run, and the picks' extra tokens.
3. ``sc16`` (unless ``--no-route``): ``self_consistency`` with 16 paths (``tts_scorer=
   self_certainty`` to break ties and feed the selector) on the held-out questions. Routing
   ``tts_route=[4, 16]`` is replayed on each run's candidates in sampling order (its first 4 paths,
   then all 16 when the signal is below the threshold; the candidates are independent samples, so
   this is what the router would have drawn): accuracy and completion tokens against fixed
   self-consistency at 16 and at 4, for the vote-share signal and the selector's confidence.

Intervals: 95% bootstrap over questions (a question's runs move together); paired differences
for rules compared on the same candidates.

    PYTHONPATH=src .venv/bin/python bench/bench_selector.py --out /tmp/selector-bench
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

SCORER = "self_certainty"
THRESHOLDS = (0.5, 0.625, 0.75, 0.875)
FITS = (("logistic", "platt"), ("logistic", "isotonic"), ("gbm", "platt"), ("gbm", "isotonic"))


def shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def bootstrap(per_question: dict[str, list[float]], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean over questions (a question's runs move together)."""
    rng = random.Random(seed)
    values = [sum(v) / len(v) for v in per_question.values()]
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def mean_ci(values: dict[str, float]) -> str:
    per_q = {k: [v] for k, v in values.items()}
    lo, hi = bootstrap(per_q)
    return f"{sum(values.values()) / len(values):.3f} ({lo:.3f} to {hi:.3f})"


def ece_floor(confidences: Sequence[float], draws: int = 2000, seed: int = 0) -> float:
    """Mean ECE of a perfectly calibrated predictor with these confidences (labels drawn from them)."""
    from llm_tts.selection import expected_calibration_error

    rng = random.Random(seed)
    total = 0.0
    for _ in range(draws):
        total += expected_calibration_error([(c, rng.random() < c) for c in confidences]) or 0.0
    return total / draws


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the eval runs and the selector")
    ap.add_argument("--fit", type=int, default=60, help="questions to fit on (the rest are held out)")
    ap.add_argument("--questions", type=int, default=100, help="questions of the shipped set used")
    ap.add_argument("--seeds", default="0", help="sampling seeds per question (runs, not the held-out extras)")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the shuffle that holds questions out")
    ap.add_argument("--splits", type=int, default=20, help="random fit/held-out splits for the calibration study")
    ap.add_argument(
        "--save-builtin", default=None, help="write the selector fitted here, with its header, to this file"
    )
    ap.add_argument("--no-genselect", action="store_true")
    ap.add_argument("--no-route", action="store_true")
    ap.add_argument("--analyze-only", action="store_true", help="use the runs already recorded in --out")
    args = ap.parse_args()

    from llm_tts.engine import TTSEngine
    from llm_tts.evaluation import InProcessSolver, ResultsStore, build_configurations, load_questions, run_evaluation
    from llm_tts.evaluation.records import ResultRow

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

    def record(name: str, qs: Sequence, strategy: str, budget: int, run_seeds: list[int]) -> list[ResultRow]:
        configs = build_configurations([strategy], [budget], common=common, seeds=run_seeds, greedy=False)
        store = ResultsStore(out / name)
        start = time.perf_counter()
        if solver is not None:
            run_evaluation(qs, configs, solver, store, seeds=run_seeds, concurrency=args.concurrency)
        print(f"  {name}: {len(qs)} questions x {len(run_seeds)} seeds in {time.perf_counter() - start:.0f} s")
        ids = {q.id for q in qs}
        return [r for r in store.latest().values() if r.error is None and r.question_id in ids]

    print(
        f"{len(fit_q)} questions to fit, {len(held_q)} held out, seeds {seeds}, budget {args.budget}, "
        f"max_tokens {args.max_tokens}, vLLM CPU, embedded SmolLM2-135M",
        flush=True,
    )
    recorded = record("runs", questions, f"offline_bon:tts_scorer={SCORER}", args.budget, seeds)
    gen_rows = (
        []
        if args.no_genselect
        else record(
            "genselect-prefilled", held_q, f"offline_bon:tts_scorer={SCORER},tts_genselect=3", args.budget, seeds[:1]
        )
    )
    sc_rows = [] if args.no_route else record("sc16", held_q, f"self_consistency:tts_scorer={SCORER}", 16, seeds[:1])
    if engine is not None:
        engine.close()
    held_ids = {q.id for q in held_q}
    fitting = [r for r in recorded if r.question_id not in held_ids]
    held = [r for r in recorded if r.question_id in held_ids]
    selector = report_selectors(fitting, held)
    if args.save_builtin:
        save_builtin(selector, fitting, held, args)
    report_split_study(recorded, args.fit, args.splits)
    if gen_rows:
        report_genselect(gen_rows, selector)
    if sc_rows:
        report_routing(sc_rows, selector)
    return 0


# -- 1. the selector: calibration methods and models -----------------------------------------
def report_selectors(fitting: Sequence, held: Sequence):
    """Fit each model and calibration on ``fitting``, judge on ``held``; returns the default one."""
    from dataclasses import replace

    from llm_tts.evaluation.selector_fit import evaluate, fit_selector, picked, run_examples
    from llm_tts.selection import auroc, fit_calibration, most_probable

    fit_runs, held_runs = run_examples(fitting), run_examples(held)
    print(
        f"\nselector fitted on {len(fit_runs)} runs ({sum(len(r.answers) for r in fit_runs)} answers), "
        f"judged on {len(held_runs)} held-out runs ({sum(len(r.answers) for r in held_runs)} answers, "
        f"{sum(sum(r.right) for r in held_runs)} right)"
    )
    print(
        f"{'model, calibration':26} {'AUROC':>6} {'vote':>6} {'ECE ans':>8} {'ECE sel':>8} {'acc':>6} {'vote acc':>8}"
    )
    fitted = {}
    for kind, method in FITS:
        selector = fit_selector(fit_runs, kind, method)
        fitted[(kind, method)] = selector
        rep = evaluate(selector, held_runs)
        print(
            f"{kind + ', ' + method:26} {shown(rep['auroc']):>6} {shown(rep['vote_share_auroc']):>6} "
            f"{shown(rep['ece']):>8} {shown(rep['selected_ece']):>8} {shown(rep['selector_accuracy']):>6} "
            f"{shown(rep['vote_accuracy']):>8}"
        )
    base = (
        fitted[("logistic", "none")] if ("logistic", "none") in fitted else fit_selector(fit_runs, "logistic", "none")
    )
    pairs = picked(base, fit_runs)  # the method before the fix: Platt on the model's own fitting picks
    old = replace(base, calibration=fit_calibration([p for p, _ in pairs], [ok for _, ok in pairs], "platt"))
    for name, sel in (("logistic, in-sample Platt", old), ("logistic, uncalibrated", base)):
        rep = evaluate(sel, held_runs)
        print(f"{name:26} {'':>6} {'':>6} {shown(rep['ece']):>8} {shown(rep['selected_ece']):>8}")
    chosen = fitted[("logistic", "isotonic")]  # fit-selector's defaults
    confs = []
    per_run_right = []
    for r in held_runs:
        ps = chosen.probabilities(r.answers)
        j = most_probable(r.answers, ps)
        confs.append(chosen.confidence(ps[j]))
        per_run_right.append(r.right[j])
    print(
        f"ECE noise floor on {len(confs)} runs (a calibrated predictor of the same confidences): "
        f"{ece_floor(confs):.3f}; mean confidence {sum(confs) / len(confs):.3f} vs accuracy "
        f"{sum(per_run_right) / len(per_run_right):.3f}"
    )
    share = auroc(
        [a.as_dict()["vote_share"] for r in held_runs for a in r.answers], [ok for r in held_runs for ok in r.right]
    )
    sel_auc = auroc(
        [p for r in held_runs for p in chosen.probabilities(r.answers)], [ok for r in held_runs for ok in r.right]
    )
    print(f"held-out answers AUROC: selector {shown(sel_auc)}, vote share {shown(share)}")
    return chosen


def save_builtin(selector, fitting: Sequence, held: Sequence, args: argparse.Namespace) -> None:
    """The selector with a header saying what it was fitted to and how it did on held-out questions."""
    import datetime
    from dataclasses import replace

    from llm_tts.evaluation.selector_fit import evaluate, run_examples

    fit_runs = run_examples(fitting)
    report = evaluate(selector, run_examples(held))
    md = next(r.metadata for r in fitting if r.metadata is not None)
    info = {
        "fitted_on": {
            "model": md.model,
            "backend": md.backend,
            "set": "arithmetic (shipped with llm-tts: src/llm_tts/evaluation/data/arithmetic.jsonl)",
            "strategy": "offline_bon",
            "scorer": md.scorer,
            "budget": args.budget,
            "max_tokens": args.max_tokens,
            "questions": len({r.question_id for r in fit_runs}),
            "runs": len(fit_runs),
            "answers": sum(len(r.answers) for r in fit_runs),
            "calibration": "isotonic, on out-of-fold picks (5 folds by question)",
            "date": datetime.date.today().isoformat(),
            "command": "bench/bench_selector.py --save-builtin",
        },
        "validation": {"questions": len({r.question_id for r in held}), "split_seed": args.split_seed, **report},
        "note": "fitted on one small model and one easy set: a starting point, not a general selector; it "
        "expects scored candidates (a tts_scorer such as self_certainty). Fit your own with llm-tts fit-selector.",
    }
    replace(selector, info=info).save(args.save_builtin)
    print(f"\nwrote {args.save_builtin}")


def report_split_study(recorded: Sequence, fit: int, splits: int) -> None:
    """The same fit-and-judge over ``splits`` random question splits: one split's 40 runs give an
    ECE too noisy to compare calibrations by."""
    from llm_tts.evaluation.selector_fit import evaluate, fit_selector, run_examples

    runs = run_examples(recorded)
    ids = sorted({r.question_id for r in runs})
    table: dict[str, list[dict]] = {}
    for k in range(splits):
        order = list(ids)
        random.Random(1000 + k).shuffle(order)
        fit_ids = set(order[:fit])
        fitting = [r for r in runs if r.question_id in fit_ids]
        held = [r for r in runs if r.question_id not in fit_ids]
        for kind, method in (("logistic", "platt"), ("logistic", "isotonic"), ("logistic", "none"), ("gbm", "platt")):
            table.setdefault(f"{kind}, {method}", []).append(evaluate(fit_selector(fitting, kind, method), held))
    print(f"\nover {splits} random splits ({fit} questions fitted, the rest held out), mean (min-max):")
    print(f"  {'model, calibration':22} {'AUROC - vote share':24} {'ECE selected':22} {'acc - vote acc':22}")

    def spread(values: list[float]) -> str:
        return f"{sum(values) / len(values):+.3f} ({min(values):+.3f}, {max(values):+.3f})"

    for name, reps in table.items():
        gain = [r["auroc"] - r["vote_share_auroc"] for r in reps]
        ece = [r["selected_ece"] for r in reps]
        acc = [r["selector_accuracy"] - r["vote_accuracy"] for r in reps]
        print(f"  {name:22} {spread(gain):24} {spread(ece):22} {spread(acc):22}")


# -- accuracy of rules on the same candidates --------------------------------------------------
def rule_table(rows: Sequence, rules: dict[str, Callable], baseline: str) -> None:
    results = {name: {r.question_id: float(rule(r)) for r in rows} for name, rule in rules.items()}
    for name, res in results.items():
        print(f"  {name:22} {mean_ci(res)}")
    for name, res in results.items():
        if name != baseline:
            diff = {q: res[q] - results[baseline][q] for q in res}
            print(f"  {name} - {baseline}: {mean_ci(diff)}")


def vote_rules(selector) -> dict[str, Callable]:
    from llm_tts.answers import vote
    from llm_tts.evaluation.records import is_correct
    from llm_tts.selection import signals_of_info

    def pool(row):
        return [c for c in row.metadata.candidates if c.status != "pruned"]

    def by_vote(weighted: bool) -> Callable:
        def rule(row) -> bool:
            cands = pool(row)
            return is_correct(
                vote([c.answer for c in cands], [c.score for c in cands], weighted=weighted).answer, row.gold
            )

        return rule

    def by_selector(row) -> bool:
        picked = selector.select([signals_of_info(c) for c in pool(row)])
        return is_correct(None if picked is None else picked.answer, row.gold)

    return {"majority vote": by_vote(False), "weighted vote": by_vote(True), "selector": by_selector}


# -- 2. generative selection -----------------------------------------------------------------------
def report_genselect(rows: Sequence, selector) -> None:
    from llm_tts.evaluation.records import is_correct

    print(f"\ngenselect (tts_genselect=3) on {len(rows)} held-out runs, every rule on the same candidates:")
    rules = {**vote_rules(selector), "genselect": lambda row: is_correct(row.selected_answer, row.gold)}
    rule_table(rows, rules, "majority vote")
    infos = [r.metadata.selection for r in rows if r.metadata.selection is not None]
    picks = sum(i.picks for i in infos)
    cand_tokens = sum(c.num_tokens for r in rows for c in r.metadata.candidates)
    total = sum(r.metadata.usage.completion_tokens for r in rows)
    print(
        f"  ran on {len(infos)} runs (the others had one answer); picks {picks}, malformed "
        f"{sum(i.malformed for i in infos)}, runs fallen back to the vote {sum(i.fallback for i in infos)}, "
        f"tournament rounds max {max((i.rounds for i in infos), default=0)}; pick tokens "
        f"{total - cand_tokens} over {cand_tokens} candidate tokens (+{(total - cand_tokens) / cand_tokens:.1%})"
    )


# -- 3. routing, replayed on self-consistency at 16 ----------------------------------------------
def report_routing(rows: Sequence, selector) -> None:
    from llm_tts.answers import vote
    from llm_tts.evaluation.records import is_correct
    from llm_tts.selection import signals_of_info

    def answer_of(cands) -> str | None:
        return vote([c.answer for c in cands], [c.score for c in cands]).answer

    def share(cands) -> float:
        return vote([c.answer for c in cands], [None] * len(cands)).consensus

    def selector_conf(cands) -> float:
        picked = selector.select([signals_of_info(c) for c in cands])
        return 0.0 if picked is None else picked.confidence

    print(f"\nrouting tts_route=[4, 16] replayed on {len(rows)} self-consistency@16 runs (held-out questions):")
    print(f"  {'rule':34} {'accuracy (95% CI)':26} {'tokens/question':>15}  escalated")
    first = {r.question_id: r.metadata.candidates[:4] for r in rows}
    full = {r.question_id: r.metadata.candidates for r in rows}
    gold = {r.question_id: r.gold for r in rows}

    def line(name: str, pick: Callable[[str], list]) -> None:
        used = {q: pick(q) for q in full}
        acc = {q: float(is_correct(answer_of(c), gold[q])) for q, c in used.items()}
        tokens = sum(sum(c.num_tokens for c in cs) for cs in used.values()) / len(used)
        escalated = sum(len(cs) > 4 for cs in used.values())
        print(f"  {name:34} {mean_ci(acc):26} {tokens:15.0f}  {escalated}/{len(used)}")

    def routed(q: str, stages: Sequence[int], t: float, signal: Callable) -> list:
        for size in stages[:-1]:
            if signal(full[q][:size]) >= t:
                return full[q][:size]
        return full[q]

    line("self-consistency@16", lambda q: full[q])
    line("self-consistency@4", lambda q: first[q])
    for t in THRESHOLDS:
        line(f"route, vote share < {t}", lambda q, t=t: first[q] if share(first[q]) >= t else full[q])
    for t in THRESHOLDS:
        line(f"route [4, 8, 16], share < {t}", lambda q, t=t: routed(q, (4, 8, 16), t, share))
    for t in THRESHOLDS:
        line(f"route, selector conf < {t}", lambda q, t=t: first[q] if selector_conf(first[q]) >= t else full[q])


if __name__ == "__main__":
    sys.exit(main())
