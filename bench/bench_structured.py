"""Constrained decoding on the embedded SmolLM2: how many candidates parse, and what it costs.

    .venv/bin/python bench/bench_structured.py [--backends transformers,vllm] [--n 8] [--max-tokens 64]

For each backend and task (a JSON-schema object, a forced tool call), the same prompts (with the
structured run's own system prompt, llm_tts.structured.prompting) are sampled ``n`` times without
and with the constraint. Reported: the share of candidates that parse (and match the schema /
name an offered tool with valid arguments, llm_tts.structured.parsing), and seconds per generated
token, constrained vs unconstrained in the same run (the ratio is the cost). Each configuration
runs once untimed first, so grammar compilation (cached per constraint) is not in the timing.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from llm_tts.backends import create_backend
from llm_tts.backends.base import SamplingParams
from llm_tts.messages import ChatMessage
from llm_tts.structured import OutputSpec, output_spec_from_openai
from llm_tts.structured.parsing import parse_candidate
from llm_tts.structured.prompting import json_prompt, tools_prompt, with_system_text

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"}},
    "required": ["name", "age", "city"],
}
CONVERT = {
    "type": "function",
    "function": {
        "name": "convert_temperature",
        "description": "Convert a temperature to the other unit",
        "parameters": {
            "type": "object",
            "properties": {"value": {"type": "number"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["value", "unit"],
        },
    },
}
TASKS: dict[str, tuple[OutputSpec, list[str]]] = {
    "json_schema": (
        output_spec_from_openai(
            response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
        ),  # type: ignore[dict-item]
        ["Invent a person.", "Describe a famous scientist.", "Who is your favourite author?"],
    ),
    "tool_call": (
        output_spec_from_openai(tools=[CONVERT], tool_choice="required"),  # type: ignore[dict-item]
        ["What is 30 degrees celsius in fahrenheit?", "Convert 100 F to C.", "Is 20 C warm? Convert it."],
    ),
}


def run(backend, spec: OutputSpec, questions: list[str], constrained: bool, n: int, max_tokens: int):
    system = tools_prompt(spec) or json_prompt(spec)
    prompts = [backend.render_chat(with_system_text([ChatMessage(role="user", content=q)], system)) for q in questions]
    params = SamplingParams(
        n=n, temperature=0.7, max_tokens=max_tokens, constraint=spec.constraint() if constrained else None
    )
    start = time.perf_counter()
    rows = backend.generate(prompts, params)
    seconds = time.perf_counter() - start
    segments = [s for row in rows for s in row]
    parsed = sum(parse_candidate(s.text, spec).key is not None for s in segments)
    tokens = sum(len(s.token_ids) for s in segments)
    return parsed / len(segments), tokens, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default="transformers,vllm")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    print(f"n={args.n} samples x 3 prompts per cell, max_tokens={args.max_tokens}, temperature 0.7")
    print(
        f"{'backend':<13}{'task':<13}{'parse free':>11}{'parse constr':>13}{'ms/tok free':>12}{'ms/tok constr':>14}{'ratio':>7}"
    )
    for name in args.backends.split(","):
        options = {"max_model_len": 2048, "kv_cache_space": 1} if name == "vllm" else {}
        backend = create_backend(name, None, **options)
        try:
            for task, (spec, questions) in TASKS.items():
                cells = {}
                for constrained in (False, True):
                    run(backend, spec, questions[:1], constrained, 2, 8)  # warm-up: grammar compiled, caches hot
                    cells[constrained] = run(backend, spec, questions, constrained, args.n, args.max_tokens)
                (pf, tf, sf), (pc, tc, sc) = cells[False], cells[True]
                free_ms, constr_ms = 1000 * sf / max(tf, 1), 1000 * sc / max(tc, 1)
                print(
                    f"{name:<13}{task:<13}{pf:>11.0%}{pc:>13.0%}{free_ms:>12.1f}{constr_ms:>14.1f}"
                    f"{constr_ms / free_ms:>7.2f}"
                )
        finally:
            backend.close()


if __name__ == "__main__":
    main()
