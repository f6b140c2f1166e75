"""TTSConfig: the request vocabulary shared by ChatTTS, the service and the engine.

Names and defaults follow the service API guide (``tts_strategy``, ``num_paths``, ...). One
typed model validates every face the same way; out-of-range values raise
:class:`~llm_tts.errors.InvalidParameterError` naming the field and the limit.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, create_model

from llm_tts.validation_errors import typed_validation

Aggregation = Literal["min", "mean", "max", "product", "last"]
AGGREGATIONS: tuple[str, ...] = ("min", "mean", "max", "product", "last")

# Caps keep one request from monopolising a server; raise them deliberately, not by accident.
MAX_PATHS = 64
MAX_BEAM_SIZE = 16
MAX_CANDIDATES_PER_STEP = 16
MAX_SUBTREES = 16
MAX_PARTICLES = 64
MAX_STEPS = 200
MAX_TOKENS = 32768
MAX_TOP_LOGPROBS = 20  # OpenAI's limit, and what the backends return at most
MAX_CODE_EXECUTIONS = 64
MAX_CODE_EXECUTION_TIMEOUT = 120.0
MAX_CODE_OUTPUT_CHARACTERS = 100_000


# The fields that only some strategies take (each strategy declares which, at its registration);
# every other field is taken by every strategy. A field of this kind, set explicitly for a strategy
# that does not take it, is refused when the request is planned.
StrategyField = Literal[
    "num_paths",
    "tts_num_trajectories",
    "tts_candidates_per_step",
    "tts_beam_size",
    "tts_num_subtrees",
    "tts_num_particles",
    "tts_resampling_temperature",
    "tts_max_steps",
    "tts_step_max_tokens",
    "tts_score_aggregation",
    "tts_window_size",
    "tts_selection",
    "tts_selector",
    "tts_genselect",
    "tts_route",
    "tts_route_threshold",
    "tts_stop_confidence",
    "tts_deepconf_mode",
    "tts_deepconf_warmup",
    "tts_deepconf_percentile",
    "tts_confidence_window",
]
STRATEGY_FIELDS: frozenset[str] = frozenset(get_args(StrategyField))
# Fields every strategy with steps takes, and every strategy that can score candidates.
STEP_FIELDS: tuple[StrategyField, ...] = ("tts_max_steps", "tts_step_max_tokens")
SCORED_FIELDS: tuple[StrategyField, ...] = ("tts_score_aggregation", "tts_window_size", "tts_selection")
# Fields of every strategy that chooses one answer among several finished candidates.
SELECTING_FIELDS: tuple[StrategyField, ...] = ("tts_selector", "tts_genselect")
# Fields of the strategies that sample whole candidates and can add more of them (per-question routing).
ROUTED_FIELDS: tuple[StrategyField, ...] = ("tts_route", "tts_route_threshold")
MAX_GENSELECT_PICKS = 16
MAX_ROUTE_STAGES = 8
DEFAULT_ROUTE_THRESHOLD = 0.75


class TTSConfig(BaseModel):
    """Everything that shapes one test-time-scaling run. Every field is documented in /docs."""

    # allow_inf_nan=False: a NaN is refused as not a number, not by whichever bound it fails.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tts_strategy: str = Field(
        "self_consistency",
        description="self_consistency, offline_bon, online_bon, beam_search, dvts, particle_filtering or deepconf",
    )
    tts_scorer: str | None = Field(
        None,
        description="entropy, perplexity, sequence_prob, self_certainty, tail_entropy, prm, llm_judge or majority_vote. Default: majority_vote "
        "for self_consistency, entropy for the others",
    )
    tts_budget: int | None = Field(
        None,
        ge=1,
        description="One knob for the strategy's main size: num_paths, tts_num_trajectories, "
        "tts_candidates_per_step (online_bon), tts_beam_size (beam_search), tts_num_particles (particle_filtering), "
        "or tts_num_subtrees = budget / tts_candidates_per_step (dvts). Overrides that field.",
    )
    num_paths: int = Field(5, ge=1, le=MAX_PATHS, description="self_consistency: independent reasoning paths")
    tts_num_trajectories: int = Field(8, ge=1, le=MAX_PATHS, description="offline_bon: full trajectories generated")
    tts_candidates_per_step: int = Field(
        4,
        ge=1,
        le=MAX_CANDIDATES_PER_STEP,
        description="online_bon, beam_search, dvts: candidates per step (per beam, per subtree)",
    )
    tts_beam_size: int = Field(4, ge=1, le=MAX_BEAM_SIZE, description="beam_search: beams kept after each step")
    tts_num_subtrees: int = Field(2, ge=1, le=MAX_SUBTREES, description="dvts: independent subtrees searched")
    tts_num_particles: int = Field(
        8, ge=1, le=MAX_PARTICLES, description="particle_filtering: particles resampled each step"
    )
    tts_resampling_temperature: float = Field(
        1.0,
        gt=0.0,
        le=100.0,
        description="particle_filtering: softmax temperature over step rewards (their logits for "
        "rewards in [0, 1]); higher resamples more uniformly",
    )
    tts_max_steps: int = Field(100, ge=1, le=MAX_STEPS, description="step strategies: maximum reasoning steps")
    tts_score_aggregation: Aggregation = Field("min", description="how step scores become a trajectory score")
    tts_window_size: int | None = Field(None, ge=1, description="aggregate only the last k step scores")
    tts_selection: Literal["best", "weighted"] = Field(
        "weighted",
        description="offline_bon, beam_search, dvts, particle_filtering: 'weighted' (default: the best "
        "candidate of the answer with the largest sum of scores, a vote weighted by score) or 'best' (the best scored "
        "candidate alone; scorers tell right from wrong too weakly for that on small models, see docs/benchmarks.md)",
    )
    tts_selector: str | None = Field(
        None,
        min_length=1,
        description="self_consistency, offline_bon, beam_search, dvts, particle_filtering: path to a selector file "
        "written by `llm-tts fit-selector` (JSON); it picks the answer most probably right from the answers' features "
        "(vote share, scores, length, finished) and its probability becomes tts_metadata.confidence. Overrides "
        "tts_selection and the majority vote",
    )
    tts_genselect: int | None = Field(
        None,
        ge=1,
        le=MAX_GENSELECT_PICKS,
        description="self_consistency, offline_bon, beam_search, dvts, particle_filtering: generative selection, "
        "the policy is shown the distinct answers (each with its reasoning) and picks the correct one this many "
        "times; the most picked wins, in a tournament when they do not fit the context at once. Picks that do not "
        "parse fall back to the vote (tts_metadata.selection says so). Overrides tts_selection and the vote",
    )
    tts_route: list[int] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ROUTE_STAGES,
        description="self_consistency, offline_bon: compute routed per question, increasing sizes such as [4, 16]: "
        "sample the first size, and add candidates up to the next size only while the confidence (tts_selector's "
        "calibrated one, else the leading answer's vote share) is below tts_route_threshold, within "
        "tts_token_budget. Sets the size (num_paths, tts_num_trajectories); tts_metadata.route says what ran",
    )
    tts_route_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="tts_route: escalate while the confidence is below this (default 0.75)"
    )
    tts_step_delimiter: str = Field("\n\n", min_length=1, description="text that ends a reasoning step")
    tts_step_max_tokens: int = Field(256, ge=1, le=MAX_TOKENS, description="maximum tokens in one step")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling")
    max_tokens: int = Field(4096, ge=1, le=MAX_TOKENS, description="maximum completion tokens per trajectory")
    seed: int | None = Field(None, description="makes sampling reproducible on backends that support seeds")
    stop: list[str] | None = Field(None, description="extra stop strings that end the whole answer")
    # -- token in, token out: OpenAI's and vLLM's names -----------------------------------
    logprobs: bool = Field(
        False,
        description="return the selected answer's per-token logprobs (the model's raw distribution, before "
        "temperature, top_p and penalties, as vLLM returns them) with each token's id",
    )
    top_logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS, description="with logprobs: the k most likely tokens at each position"
    )
    return_token_ids: bool = Field(
        False,
        description="return the prompt's token ids and the answer's token ids: exactly what the engine consumed "
        "and produced (vLLM's name)",
    )
    presence_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="lowers (or raises) the logits of tokens already generated, once each"
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="lowers (or raises) the logits of tokens by how often they were generated"
    )

    # -- code execution: tool-integrated reasoning (names and defaults of NeMo-Skills) ----
    code_execution: bool = Field(
        False,
        description="run the code blocks the model writes in a sandbox and insert their output into the trajectory",
    )
    max_code_executions: int = Field(
        8, ge=0, le=MAX_CODE_EXECUTIONS, description="blocks run per trajectory; later blocks are not run"
    )
    code_execution_timeout: float = Field(
        10.0, gt=0.0, le=MAX_CODE_EXECUTION_TIMEOUT, description="wall-clock seconds one block may run"
    )
    max_code_output_characters: int = Field(
        1000, ge=1, le=MAX_CODE_OUTPUT_CHARACTERS, description="output shown to the model; the rest is cut, marked"
    )
    add_remaining_code_executions: bool = Field(
        False, description="tell the model after each output how many executions are left"
    )
    code_begin: str = Field("<tool_call>", min_length=1, description="tag that opens a code block")
    code_end: str = Field("</tool_call>", min_length=1, description="tag that closes a code block (a stop string)")
    code_output_begin: str = Field("<tool_output>", min_length=1, description="tag before a block's output")
    code_output_end: str = Field("</tool_output>", min_length=1, description="tag after a block's output")
    continue_final_message: bool = Field(
        False,
        description="continue the trailing assistant message (vLLM's name); with code_execution, a complete code "
        "block it ends with runs first",
    )

    @classmethod
    def create(cls, **fields: Any) -> TTSConfig:
        """Validate ``fields`` into a config, raising llm_tts's typed errors (not pydantic's)."""
        with typed_validation(names=cls.model_fields, whole="config"):
            return cls.model_validate({k: v for k, v in fields.items() if v is not None})

    def merged(self, **overrides: Any) -> TTSConfig:
        """A copy with per-call overrides applied and validated."""
        return TTSConfig.create(**{**self.model_dump(exclude_unset=True), **overrides})

    # -- adaptive compute: early stopping, budgets, anytime answers ---------------------
    tts_stop_confidence: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="self_consistency, offline_bon (weighted): sample paths as a stream and stop once the posterior "
        "probability that the leading answer is still the majority when all paths would have voted reaches this "
        "(e.g. 0.95; off by default). Model: a uniform Dirichlet prior over answers, so the leader's share against "
        "the runner-up is Beta(leader votes + 1, runner-up votes + 1) and the paths left split beta-binomially; "
        "paths still running are aborted",
    )
    tts_token_budget: int | None = Field(
        None,
        ge=1,
        description="hard cap on all completion tokens one run may generate (every strategy): running samples are "
        "aborted when it is reached and the search ends with the best answer so far (never over by more than one "
        "step's tokens)",
    )
    tts_anytime: bool = Field(
        False,
        description="a deadline (ChatTTS timeout, the service's tts_deadline) returns the best answer found so far "
        "instead of an error",
    )
    tts_deepconf_mode: Literal["online", "offline"] = Field(
        "online",
        description="deepconf: 'online' (warm-up traces set a confidence bar; later traces stop when their group "
        "confidence falls below it) or 'offline' (all num_paths traces, the least confident filtered out)",
    )
    tts_deepconf_warmup: int = Field(
        4, ge=1, le=MAX_PATHS, description="deepconf online: warm-up traces that set the bar (paper: 16 of 512)"
    )
    tts_deepconf_percentile: float = Field(
        10.0,
        ge=0.0,
        le=100.0,
        description="deepconf: the bar is this percentile of the traces' lowest group confidences; 10 keeps about "
        "90% (the paper's DeepConf-high), 90 keeps about 10% (DeepConf-low)",
    )
    tts_confidence_window: int = Field(
        16, ge=1, le=MAX_TOKENS, description="deepconf: tokens per sliding group (paper: 2048 for 10k-token traces)"
    )

    # -- tracing: what the run did, node by node (llm_tts.trace) ------------------------------------
    tts_trace: bool = Field(
        False,
        description="return the run's trace in tts_metadata.trace: every node the search made (prompt, steps, "
        "candidates, with parent, text, token range, scores, status and why, code outputs as the model saw them) "
        "and its events in order (sampling and scorer calls, steps, early stops), schema llm_tts.trace version 1",
    )

    # -- reasoning models: thinking kept apart from the answer (llm_tts.reasoning) ------------------
    reasoning_parser: str = Field(
        "tags",
        min_length=1,
        description="how a completion's thinking is told from its answer: 'tags' (text between reasoning_begin and "
        "reasoning_end; a completion without them is all answer), 'none' (no thinking), or one of vLLM's parsers by "
        "the name `vllm serve --reasoning-parser` takes (deepseek_r1, qwen3, gpt_oss, ...; needs vLLM installed)",
    )
    reasoning_begin: str = Field("<think>", min_length=1, description="tags parser: text that opens the thinking")
    reasoning_end: str = Field("</think>", min_length=1, description="tags parser: text that ends the thinking")
    chat_template_kwargs: dict[str, Any] | None = Field(
        None,
        description="extra variables for the chat template on every backend (vLLM's name), e.g. "
        '{"enable_thinking": false}; sent on as chat_template_kwargs to an OpenAI-compatible server',
    )
    tts_thinking_budget: int | None = Field(
        None,
        ge=0,
        le=MAX_TOKENS,
        description="budget forcing (s1): the most thinking tokens of each trajectory; when reached, the end-of-"
        "thinking marker (and tts_thinking_answer_cue) is appended as injected tokens and the model answers from "
        "there. 0 closes the thinking at once",
    )
    tts_thinking_answer_cue: str = Field(
        "", description="budget forcing: text injected after the end-of-thinking marker, e.g. '\\n\\nFinal answer:'"
    )
    tts_thinking_step_delimiter: str | None = Field(
        None,
        min_length=1,
        description="step searches: text that ends a step inside the thinking (default: tts_step_delimiter); the "
        "end of the thinking always ends a step, and the steps after it are the answer's",
    )


# The sampling fields a backend takes in its SamplingParams: their limits are TTSConfig's fields'
# (declared once, above), checked by this model for a backend called without a config.
_Sampling: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "_Sampling",
    __config__=TTSConfig.model_config,
    **{
        name: (TTSConfig.model_fields[name].annotation, TTSConfig.model_fields[name])
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty")
    },
)


def check_sampling(**values: float) -> None:
    """Sampling values within TTSConfig's limits, else the InvalidParameterError TTSConfig raises.

    Strict: a bool or a numeric string is refused, as a backend would not convert it."""
    with typed_validation():
        _Sampling.model_validate(values, strict=True)
