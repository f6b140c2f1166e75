"""Planning a run: every check of a request that needs no generation, and what it prepares.

:func:`resolve_config` checks a config without a backend (strategy, scorer name, sizes and
budget); :func:`plan_run` adds what needs the backend (capabilities, the prompt rendered to
token ids, the context length, the scorer and the thinking reader) and returns a
:class:`RunPlan` that :class:`~llm_tts.engine.TTSEngine` executes without repeating any of it.
Every refusal of a request lives here, so a bad request fails before any token is generated.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_tts.backends.base import Backend, EncodingBackend, ToolTemplateBackend, check_prompts_fit, check_token_ids
from llm_tts.config import STRATEGY_FIELDS, TTSConfig
from llm_tts.errors import CapabilityError, ContextLengthError, InvalidParameterError, UnknownNameError
from llm_tts.messages import ChatMessage, coerce_messages
from llm_tts.reasoning import PROMPT_TAIL_TOKENS, ThinkingReader, create_thinking_parser
from llm_tts.scorers.base import Scorer, scorer_names
from llm_tts.selection import load_selector
from llm_tts.strategies import VOTING_SCORER, StrategySpec, get_strategy, strategies_taking
from llm_tts.structured.prompting import json_prompt, tools_prompt, with_system_text
from llm_tts.structured.selection import STRUCTURED_STRATEGIES
from llm_tts.structured.spec import OutputSpec
from llm_tts.tir import CodeRunner


@dataclass(frozen=True)
class RunPlan:
    """A checked request, ready to run: what :func:`plan_run` found and built."""

    messages: list[ChatMessage]
    spec: StrategySpec
    config: TTSConfig  # with tts_budget applied
    scorer_name: str
    scorer: Scorer | None  # None for the vote (VOTING_SCORER)
    prompt_ids: tuple[int, ...]  # the chat, rendered once
    started: float  # time.perf_counter() when planning began; total_s counts from here
    output: OutputSpec | None = None  # a structured run (JSON or tool call)
    reasoning: ThinkingReader | None = None  # how the run's completions split into thinking and answer


@dataclass(frozen=True)
class ResolvedConfig:
    """A config checked without a backend: its strategy, sizes and scorer name."""

    spec: StrategySpec
    config: TTSConfig  # with tts_budget applied
    scorer_name: str


def plan_run(
    backend: Backend,
    messages: Sequence[ChatMessage] | Any,
    config: TTSConfig | Mapping[str, Any],
    *,
    scorer: Callable[[str], Scorer],
    code_runner: Callable[[], CodeRunner],
    prompt_token_ids: Sequence[int] | None = None,
    output: OutputSpec | None = None,
) -> RunPlan:
    """Check a request against ``backend`` and prepare it to run (see ``TTSEngine.plan``).

    ``scorer`` gives the scorer of a name (the engine's cache) and ``code_runner`` the sandbox
    pool, started here so that a machine that cannot sandbox fails the plan.
    """
    started = time.perf_counter()
    msgs = coerce_messages(messages)
    resolved = resolve_config(config)
    spec, config, scorer_name = resolved.spec, resolved.config, resolved.scorer_name
    _check_requirements(spec, backend)
    if config.continue_final_message and msgs[-1].role != "assistant":
        raise InvalidParameterError(
            "continue_final_message", True, "needs messages that end with an assistant message to continue"
        )
    if config.code_execution:
        _check_code_execution(spec, config, backend)
        code_runner()  # SandboxUnavailableError when this machine cannot sandbox
    _check_token_output(config, backend)
    if output is not None:
        if spec.name not in STRUCTURED_STRATEGIES:
            raise InvalidParameterError(
                "tts_strategy",
                spec.name,
                f"structured output and tool calls run with {' or '.join(STRUCTURED_STRATEGIES)}: they sample "
                "whole candidates, where a step search would cut an object at its step delimiters",
            )
        if prompt_token_ids is not None:
            raise InvalidParameterError(
                "prompt_token_ids",
                f"{len(prompt_token_ids)} ids",
                "cannot be combined with tools or response_format, which render the prompt",
            )
        prompt_ids = _structured_prompt(backend, msgs, output)
    elif prompt_token_ids is not None:
        prompt_ids = _checked_token_prompt(backend, prompt_token_ids)
    elif config.chat_template_kwargs:
        prompt_ids = backend.render_chat(msgs, template_kwargs=config.chat_template_kwargs)
    else:
        prompt_ids = backend.render_chat(msgs)
    check_prompts_fit([prompt_ids], backend.max_context_tokens)
    run_scorer = None
    if scorer_name != VOTING_SCORER:
        run_scorer = scorer(scorer_name)
        _check_capabilities(run_scorer, backend)
    reader = _reader(backend, config, prompt_ids)
    return RunPlan(msgs, spec, config, scorer_name, run_scorer, tuple(prompt_ids), started, output, reader)


def plan_prompt(
    backend: Backend,
    prompt: str | Sequence[int],
    config: TTSConfig | Mapping[str, Any],
    *,
    scorer: Callable[[str], Scorer],
    code_runner: Callable[[], CodeRunner],
) -> RunPlan:
    """Plan a raw prompt (a text completion): no chat template. Text is tokenized alone (special
    tokens written in it are read as such, none is added: a rendered template holds its own);
    token ids are consumed exactly. The prompt's text is the question answer extraction and the
    PRM and judge scorers see. Otherwise as :func:`plan_run`."""
    if not isinstance(config, TTSConfig):
        config = TTSConfig.create(**dict(config))
    for field in ("continue_final_message", "chat_template_kwargs"):
        if getattr(config, field):
            raise InvalidParameterError(
                field, getattr(config, field), "a chat field: a raw prompt is continued as it is, with no template"
            )
    _check_token_prompts(backend, "prompt")
    if isinstance(prompt, str):
        if not isinstance(backend, EncodingBackend):
            raise CapabilityError(f"prompt: backend {backend.name!r} cannot tokenize text; send token ids")
        ids, text = backend.encode(prompt), prompt
    else:
        ids = _checked_token_ids(backend, prompt, "prompt")
        text = backend.decode(ids)
    if not ids:
        raise InvalidParameterError("prompt", prompt, "a prompt needs at least one token")
    if len(ids) >= backend.max_context_tokens:
        raise ContextLengthError(len(ids), backend.max_context_tokens, param="prompt")
    question = [ChatMessage(role="user", content=text)]
    return plan_run(backend, question, config, scorer=scorer, code_runner=code_runner, prompt_token_ids=ids)


def resolve_config(config: TTSConfig | Mapping[str, Any]) -> ResolvedConfig:
    """Every check of a config that needs no backend (strategy, budget and sizes, scorer name),
    so a caller can refuse bad settings before a model loads (``llm-tts eval`` does)."""
    if not isinstance(config, TTSConfig):
        config = TTSConfig.create(**dict(config))
    spec = get_strategy(config.tts_strategy)
    scorer_name = _resolve_scorer(spec, config.tts_scorer)  # unknown names first: their errors list the valid ones
    _check_fields(spec, config)
    _check_exclusive(spec, config)
    if config.tts_selector is not None:
        load_selector(config.tts_selector)  # a file that is not a selector is refused before anything runs
    return ResolvedConfig(spec, _apply_budget(spec, config), scorer_name)


def check_thinking_budget(config: TTSConfig, end_marker: str | None, backend: Backend) -> None:
    """Budget forcing injects the end-of-thinking marker as tokens and continues from them."""
    if end_marker is None:
        raise InvalidParameterError(
            "tts_thinking_budget",
            config.tts_thinking_budget,
            f"reasoning_parser={config.reasoning_parser!r} has no end-of-thinking marker to inject",
        )
    if not isinstance(backend, EncodingBackend) or not backend.capabilities.continuation:
        raise CapabilityError(
            f"tts_thinking_budget: backend {backend.name!r} cannot continue a trajectory from injected tokens; use a "
            "local backend or a server with a token-level API (vLLM, SGLang)"
        )


# -- checks of the config alone -----------------------------------------------------------------
def _check_fields(spec: StrategySpec, config: TTSConfig) -> None:
    """A strategy-owned field set explicitly for a strategy that does not take it is refused: no
    field is silently ignored."""
    for name in sorted((config.model_fields_set & STRATEGY_FIELDS) - spec.fields):
        takers = " and ".join(strategies_taking(name))
        raise InvalidParameterError(
            name, getattr(config, name), f"{spec.name} does not take it (it is a field of {takers})"
        )


def _check_exclusive(spec: StrategySpec, config: TTSConfig) -> None:
    """Settings that would each decide the same thing: one of them is refused, never ignored."""
    given = config.model_fields_set
    if "tts_genselect" in given and config.tts_selector is not None:
        raise InvalidParameterError(
            "tts_genselect", config.tts_genselect, "and tts_selector both choose the answer: set one of them"
        )
    if config.tts_route is None:
        if "tts_route_threshold" in given:
            raise InvalidParameterError("tts_route_threshold", config.tts_route_threshold, "needs tts_route")
        return
    route = config.tts_route
    if any(b <= a for a, b in itertools.pairwise(route)) or route[0] < 1 or route[-1] > spec.size_cap:
        raise InvalidParameterError(
            "tts_route", route, f"must be increasing sizes from 1 to {spec.size_cap} for {spec.name}"
        )
    for other in ("tts_stop_confidence", "tts_budget", spec.size_field):
        if other in given and getattr(config, other) is not None:
            raise InvalidParameterError(
                other, getattr(config, other), "does not combine with tts_route, which sets the sizes and when to stop"
            )


def _apply_budget(spec: StrategySpec, config: TTSConfig) -> TTSConfig:
    """``tts_budget`` overrides the strategy's main size (``tts_route`` sets it to its last size);
    that size must be within its cap."""
    if config.tts_route is not None:
        config = config.model_copy(update={spec.size_field: config.tts_route[-1]})
    if config.tts_budget is not None:
        size = spec.size_for_budget(config, config.tts_budget)
        if size > spec.size_cap:
            raise InvalidParameterError(
                "tts_budget",
                config.tts_budget,
                f"sets {spec.size_field}={size}, which must be <= {spec.size_cap} for {spec.name}",
            )
        config = config.model_copy(update={spec.size_field: size})
    size = spec.size(config)
    if size > spec.size_cap:
        raise InvalidParameterError(spec.size_field, size, f"must be <= {spec.size_cap} for {spec.name}")
    return config


def _resolve_scorer(spec: StrategySpec, requested: str | None) -> str:
    """The scorer name to run: the request's, else the strategy's default; voting needs a vote."""
    name = requested or spec.default_scorer
    valid = sorted({*scorer_names(), VOTING_SCORER})
    if name not in valid:
        raise UnknownNameError("scorer", name, valid, param="tts_scorer")
    if name == VOTING_SCORER and spec.needs_scorer:
        step_scorers = ", ".join(s for s in valid if s != VOTING_SCORER)
        raise InvalidParameterError(
            "tts_scorer",
            name,
            f"{VOTING_SCORER} only works with self_consistency; {spec.name} needs one of: {step_scorers}",
        )
    return name


# -- checks against the backend ---------------------------------------------------------------
def _check_requirements(spec: StrategySpec, backend: Backend) -> None:
    """What the strategy declared it cannot run without, checked before anything runs."""
    caps = backend.capabilities
    if "continuation" in spec.requires and not caps.continuation:
        raise CapabilityError(
            f"continuation: {spec.name} extends partial answers step by step and {backend.name} cannot "
            "continue an assistant message here; use self_consistency or offline_bon, or a server with a "
            "token-level API (vLLM, SGLang)",
            param="tts_strategy",
        )
    if "top_logprobs" in spec.requires and (not caps.logprobs or caps.max_top_logprobs < 1):
        raise CapabilityError(
            f"{spec.name} needs top-k token logprobs, which backend {backend.name!r} does not return; "
            "use self_consistency (with tts_stop_confidence to stop early)",
            param="tts_strategy",
        )


def _check_code_execution(spec: StrategySpec, config: TTSConfig, backend: Backend) -> None:
    """code_execution the strategy or the backend cannot do (the sandbox is checked by starting it)."""
    if not spec.code_execution or config.tts_stop_confidence is not None:
        # Both watch each path's tokens as one sampled segment; a path that runs code is several.
        raise InvalidParameterError(
            "code_execution",
            True,
            f"does not combine with {spec.name if not spec.code_execution else 'tts_stop_confidence'} (yet)",
        )
    if not isinstance(backend, EncodingBackend):
        raise CapabilityError(
            f"code_execution: backend {backend.name!r} cannot tokenize a code block's output to insert it"
        )


def _check_token_output(config: TTSConfig, backend: Backend) -> None:
    """logprobs / top_logprobs the backend cannot return are refused before anything runs."""
    if config.top_logprobs and not config.logprobs:
        raise InvalidParameterError("top_logprobs", config.top_logprobs, "needs logprobs=true (as in OpenAI's API)")
    if config.logprobs and not backend.capabilities.logprobs:
        raise CapabilityError(f"logprobs: backend {backend.name!r} returns no token logprobs")
    if (config.top_logprobs or 0) > backend.capabilities.max_top_logprobs:
        raise CapabilityError(
            f"top_logprobs={config.top_logprobs} exceeds backend {backend.name!r}'s limit "
            f"{backend.capabilities.max_top_logprobs}"
        )


def _check_capabilities(scorer: Scorer, backend: Backend) -> None:
    """A scorer the backend cannot feed is refused before anything is generated."""
    caps = backend.capabilities
    if scorer.needs_logprobs and not caps.logprobs:
        raise CapabilityError(
            f"scorer {scorer.name!r} needs token logprobs, which backend {backend.name!r} cannot return"
        )
    if scorer.top_logprobs_needed > caps.max_top_logprobs:
        raise CapabilityError(
            f"scorer {scorer.name!r} needs top_logprobs={scorer.top_logprobs_needed} but backend {backend.name!r} "
            f"returns at most {caps.max_top_logprobs}"
        )


# -- the prompt and the thinking reader ---------------------------------------------------------------
def _structured_prompt(backend: Backend, messages: list[ChatMessage], output: OutputSpec) -> list[int]:
    """Tools through the chat template where it has a tools slot, else in the system prompt."""
    tools = [t.to_openai() for t in output.offered_tools]
    ids = (
        backend.render_chat_with_tools(messages, tools) if tools and isinstance(backend, ToolTemplateBackend) else None
    )
    if ids is not None:
        return list(ids)
    return backend.render_chat(with_system_text(messages, tools_prompt(output) or json_prompt(output)))


def _checked_token_prompt(backend: Backend, ids: Sequence[int]) -> list[int]:
    _check_token_prompts(backend, "prompt_token_ids")
    return _checked_token_ids(backend, ids, "prompt_token_ids")


def _check_token_prompts(backend: Backend, param: str) -> None:
    if not backend.capabilities.token_prompts or backend.capabilities.chat_only:
        raise CapabilityError(
            f"{param}: backend {backend.name!r} takes chats only, not token ids or raw prompts; send messages"
        )


def _checked_token_ids(backend: Backend, ids: Sequence[int], param: str) -> list[int]:
    if not ids:
        raise InvalidParameterError(param, [], "a prompt needs at least one token")
    vocab_size = getattr(backend, "vocab_size", None)  # local backends know it; a remote API may not
    try:
        check_token_ids([ids], vocab_size if isinstance(vocab_size, int) else 2**63)
    except InvalidParameterError as e:
        raise InvalidParameterError(param, e.value, e.limit) from None
    return list(ids)


def _reader(backend: Backend, config: TTSConfig, prompt_ids: Sequence[int]) -> ThinkingReader:
    """The run's thinking reader; a bad parser name or budget setting fails here."""
    hf_tokenizer = getattr(getattr(backend, "tokenizer", None), "hf", None)
    parser = create_thinking_parser(
        config.reasoning_parser,
        begin=config.reasoning_begin,
        end=config.reasoning_end,
        tokenizer=hf_tokenizer,
        chat_template_kwargs=config.chat_template_kwargs,
    )
    if config.tts_thinking_budget is not None:
        check_thinking_budget(config, parser.end_marker, backend)
    tail = "" if backend.capabilities.chat_only else backend.decode(prompt_ids[-PROMPT_TAIL_TOKENS:])
    return ThinkingReader(parser).with_prompt(tail)
