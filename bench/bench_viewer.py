"""The trace viewer's load time: how long headless Chromium takes from navigation to a drawn trace
of a 64-candidate search, against a 4-candidate search in the same run.

A synthetic beam search trace (``--beams`` beams x ``--per-beam`` candidates per step, ``--steps``
steps, each step's text ``--chars`` characters, one code execution in every fourth node) is served
by ``llm-tts view``'s loopback server and opened ``--repeats`` times in one browser; the time is
the page's own ``llm-tts:trace-drawn`` performance mark (navigation start to the tree, vote, summary
and the selected node drawn). Printed: the median load time of each size, the ratio, and the trace's
size. Needs chromium and chromium-driver (scripts/setup.sh) and selenium (the dev extra).

    PYTHONPATH=src .venv/bin/python bench/bench_viewer.py
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import Browser, missing_browser
from llm_tts.viewer.local_server import TraceViewerServer


def beam_trace(beams: int, per_beam: int, steps: int, chars: int, seed: int = 0) -> dict[str, Any]:
    """A beam search's trace: each step, every kept node grows ``per_beam`` children; the best
    ``beams`` are kept, the rest pruned; the last step's best is selected."""
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = [{"id": "n0", "parent": None, "kind": "prompt", "text": "What is 15 * 7?"}]
    kept = ["n0"]
    for step in range(1, steps + 1):
        grown = []
        for parent in kept:
            for _ in range(per_beam if parent != "n0" else beams * per_beam):
                node_id = f"n{len(nodes)}"
                text = " ".join(
                    rng.choice(["we", "compute", "15", "*", "7", "=", "105", "so"]) for _ in range(chars // 4)
                )
                node = {
                    "id": node_id,
                    "parent": parent,
                    "kind": "step",
                    "step": step,
                    "text": text[:chars],
                    "tokens": [step * 40, step * 40 + 40],
                    "step_score": rng.random(),
                    "score": rng.random(),
                    "status": "pruned",
                    "reason": None,
                    "answer": None,
                    "elapsed_s": rng.random() / 10,
                    "code_executions": [],
                }
                if len(nodes) % 4 == 0:
                    node["code_executions"] = [
                        {
                            "code": "print(15 * 7)",
                            "output": "105\n",
                            "output_bytes": 4,
                            "output_sha256": "0" * 64,
                            "status": "ok",
                            "elapsed_s": 0.02,
                        }
                    ]
                nodes.append(node)
                grown.append(node)
        grown.sort(key=lambda n: -n["score"])
        for rank, node in enumerate(grown):
            if rank < beams:
                node["status"] = "kept"
            else:
                node["reason"] = f"ranked {rank + 1} of {len(grown)}, beam width {beams}"
        kept = [n["id"] for n in grown[:beams]]
    winner = next(n for n in nodes if n["id"] == kept[0])
    winner["status"], winner["answer"] = "selected", "105"
    for node_id in kept[1:]:
        next(n for n in nodes if n["id"] == node_id)["status"] = "finished"
    run = {
        "strategy": "beam_search",
        "started_at": "2026-12-04T07:00:00Z",
        "elapsed_s": 12.0,
        "selected": winner["id"],
        "answer": "105",
        "vote": [{"answer": "105", "count": beams, "weight": 1.0, "nodes": kept}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 40 * len(nodes)},
    }
    events = [{"t": 0.1 * s, "type": "step", "step": s, "nodes": [], "detail": {}} for s in range(1, steps + 1)]
    return {"schema": "llm_tts.trace", "version": 1, "run": run, "nodes": nodes, "events": events, "labels": {}}


def load_times(browser: Browser, trace: dict[str, Any], repeats: int) -> list[float]:
    server = TraceViewerServer([trace], source="bench")
    server.start_in_thread()
    times = []
    try:
        for _ in range(repeats):
            browser.open(server.url)
            mark = browser.wait(
                lambda d: d.execute_script(
                    "const m = performance.getEntriesByName('llm-tts:trace-drawn'); return m.length ? m[0].startTime : null"
                ),
                timeout=120,
            )
            drawn = browser.driver.execute_script("return document.querySelectorAll('#tree [role=treeitem]').length")
            assert drawn == len(trace["nodes"]), (drawn, len(trace["nodes"]))
            times.append(mark / 1000)
        errors = browser.console_errors()
        assert not errors, errors
    finally:
        server.shutdown()
        server.server_close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beams", type=int, default=16, help="beams (candidates kept per step)")
    parser.add_argument("--per-beam", type=int, default=4, help="candidates grown from each beam per step")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--chars", type=int, default=200, help="characters of text per step")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    reason = missing_browser()
    if reason:
        print(f"bench_viewer: {reason}", file=sys.stderr)
        return 2
    sizes = {
        "baseline (4 candidates)": beam_trace(2, 2, args.steps, args.chars),
        f"{args.beams * args.per_beam} candidates": beam_trace(args.beams, args.per_beam, args.steps, args.chars),
    }
    browser = Browser()
    try:
        load_times(browser, sizes["baseline (4 candidates)"], 1)  # warm the browser's caches once
        medians = {}
        for name, trace in sizes.items():
            times = load_times(browser, trace, args.repeats)
            medians[name] = statistics.median(times)
            size = len(json.dumps(trace))
            print(
                f"{name:>24}: {len(trace['nodes']):5d} nodes, {size / 1e6:6.2f} MB of JSON, "
                f"load median {medians[name] * 1000:7.1f} ms (runs: {', '.join(f'{t * 1000:.0f}' for t in times)})"
            )
    finally:
        browser.quit()
    base, big = medians.values()
    print(f"ratio {args.beams * args.per_beam} candidates / baseline: {big / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
