"""``tts_metadata``: one typed, documented schema emitted by every strategy and every face."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from llm_tts.trace.model import Trace

# Why a run ended (adaptive compute); see TTSMetadata.stopped_by.
StoppedBy = Literal["complete", "consensus", "confidence", "budget", "deadline", "max_steps"]


class CandidateInfo(BaseModel):
    """One candidate the strategy considered (a path, a trajectory or a final beam)."""

    text: str = Field(description="the candidate's completion text")
    answer: str | None = Field(None, description="final answer extracted from the text, if any")
    score: float | None = Field(None, description="aggregated score (higher is better); None for pure voting")
    step_scores: list[float] = Field(default_factory=list, description="per-step scores, in order")
    status: Literal["selected", "kept", "pruned"] = Field(
        description="selected: returned; kept: finished but not chosen; pruned: dropped by the search"
    )
    num_tokens: int = Field(description="completion tokens of this candidate (real token ids)")
    finish_reason: Literal["stop", "length"] = Field(
        "stop", description="'length' when a limit (max_tokens, tts_max_steps) ended it before an answer"
    )
    truncated_steps: int = Field(
        default=0, description="steps cut by tts_step_max_tokens instead of ending at the delimiter"
    )
    resampled: int | None = Field(
        None,
        description="particle_filtering: draws this candidate's lineage received at resampling, summed over steps "
        "(0: dropped at its first resampling); None for other strategies",
    )
    # -- adaptive compute --
    stopped_early: bool = Field(
        default=False,
        description="generation was aborted mid-way (a stopping rule, deepconf's confidence bar, the token budget "
        "or the deadline); its tokens so far are counted in usage",
    )
    # -- code execution --
    code_executions: list[CodeExecutionInfo] = Field(
        default_factory=list, description="code_execution: this candidate's code blocks in order (empty when off)"
    )
    # -- reasoning models --
    reasoning: str | None = Field(
        None, description="reasoning models: the candidate's thinking, without its markers (None: it did not think)"
    )
    answer_text: str | None = Field(
        None, description="reasoning models: the candidate's answer part, the text after its thinking"
    )
    reasoning_tokens: int = Field(default=0, description="reasoning models: thinking tokens the model sampled")
    thinking_tokens: int = Field(
        default=0,
        description="reasoning models: the completion's first thinking_tokens tokens are its thinking, markers and "
        "injected ones (budget forcing's end marker) included; the rest is the answer",
    )
    thinking_finished: bool | None = Field(
        None,
        description="reasoning models: False when the candidate ended inside its thinking (it then has no answer); "
        "None when it did not think",
    )


class UsageInfo(BaseModel):
    """Tokens counted from real token ids. completion_tokens counts every generated token of
    every candidate (pruned ones too): the compute the request really cost."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    completion_tokens_details: CompletionTokensDetails = Field(
        default_factory=lambda: CompletionTokensDetails(), description="OpenAI's breakdown of completion_tokens"
    )


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = Field(
        default=0, description="thinking tokens the model sampled in the candidates (reasoning models)"
    )


class CostInfo(BaseModel):
    """What the run computed, to compare strategies at equal compute. Prompt tokens are counted per
    backend call, so a step search's prefixes count at every step unless the prefix cache served
    them. See the observability guide for the FLOPs formula."""

    prompt_tokens: int = Field(
        default=0,
        description="prompt tokens handed to the backend over all its calls, as it counts them (vLLM: each sample's "
        "request; transformers: each distinct prompt once, its KV cache shared by the samples)",
    )
    cached_prompt_tokens: int = Field(
        default=0,
        description="of prompt_tokens, those served from the prefix cache (vLLM's num_cached_tokens, a server's "
        "prompt_tokens_details.cached_tokens); 0 on transformers, which keeps no cache between calls",
    )
    generated_tokens: int = Field(default=0, description="tokens sampled, every candidate's (usage.completion_tokens)")
    injected_tokens: int = Field(
        default=0, description="tokens inserted, not sampled: code execution outputs, forced text (budget forcing)"
    )
    scorer_tokens: int = Field(
        default=0, description="tokens the scorer's model ran: PRM inputs, an LLM judge's prompts and answers"
    )
    scorer_cached_tokens: int = Field(default=0, description="of scorer_tokens, those served from a prefix cache")
    model_parameters: int | None = Field(
        default=None, description="parameters of the generating model; None when unknown (a remote API's model)"
    )
    scorer_parameters: int | None = Field(
        default=None, description="parameters of the scorer's model; None when it has none or they are unknown"
    )
    flops: float | None = Field(
        default=None,
        description="estimated floating-point operations: 2 x parameters x tokens computed (prompt tokens not "
        "cached + generated, and the scorer's not cached, each with its model's parameters); attention's "
        "context-length term is ignored. None when a model that ran has an unknown parameter count",
    )


class TimingInfo(BaseModel):
    generation_s: float = Field(default=0.0, description="seconds spent in backend generate calls")
    scoring_s: float = Field(default=0.0, description="seconds spent in scorers")
    total_s: float = Field(default=0.0, description="wall time of the whole run")


class TTSMetadata(BaseModel):
    """The strategy's account of how it chose the answer. Same keys for every strategy."""

    strategy: str = Field(description="strategy that ran")
    scorer: str = Field(description="scorer that ran (majority_vote for self_consistency)")
    selected_answer: str | None = Field(None, description="extracted final answer of the returned text")
    aggregated_score: float | None = Field(None, description="score of the returned candidate (higher is better)")
    reasoning_steps: int = Field(default=0, description="reasoning steps in the returned candidate")
    consensus_score: float | None = Field(
        None, description="voting strategies: share of candidates that agree with the selected answer (1.0 = all)"
    )
    uncertainty_score: float | None = Field(
        None, description="voting strategies: 1 - consensus_score (0.0 = fully certain)"
    )
    answer_distribution: dict[str, int] | None = Field(
        None, description="voting strategies: candidates per equivalent answer"
    )
    confidence: float | None = Field(
        None,
        description="tts_selector: the fitted selector's probability that the selected answer is right (calibrated "
        "on the runs it was fitted on, unlike consensus_score, a vote share); None without a selector",
    )
    candidates: list[CandidateInfo] = Field(default_factory=list, description="every candidate considered")
    usage: UsageInfo = Field(default_factory=UsageInfo)
    cost: CostInfo = Field(
        default_factory=lambda: CostInfo(), description="tokens computed per kind and estimated FLOPs"
    )
    timings: TimingInfo = Field(default_factory=TimingInfo)
    backend: str = Field(description="backend that generated (transformers, vllm, openai)")
    model: str = Field(description="model that generated")
    # -- adaptive compute --
    stopped_by: StoppedBy = Field(
        default="complete",
        description="why the run ended: complete (ran its full size), consensus (the vote could no longer change, or "
        "deepconf's vote share reached its bar), confidence (tts_stop_confidence was reached), budget "
        "(tts_token_budget), deadline (tts_anytime under a deadline), max_steps (tts_max_steps with answers unfinished)",
    )
    # -- code execution --
    code_execution: CodeExecutionTotals | None = Field(
        None,
        description="code_execution: blocks run, per status, and their seconds, over all candidates; None when off",
    )
    # -- structured output and function calling --
    structured: StructuredInfo | None = Field(
        None, description="structured output / tool calling runs: parsing and the vote over objects or calls"
    )
    # -- tracing --
    trace: Trace | None = Field(
        default=None,
        description="tts_trace: the run's trace (schema llm_tts.trace, version 1): its tree of nodes and its events; "
        "candidates above are its listed nodes (each node's 'candidate' is its index there). None without tts_trace",
    )
    # -- selection and routing --
    selection: SelectionInfo | None = Field(
        None, description="tts_genselect: how generative selection picked the answer; None when it did not run"
    )
    route: RouteInfo | None = Field(None, description="tts_route: the sizes run and why it stopped; None when off")


class SelectionInfo(BaseModel):
    """Generative selection: the model read the distinct answers and picked one."""

    method: Literal["genselect"] = "genselect"
    answers: int = Field(description="distinct answers shown")
    rounds: int = Field(default=0, description="tournament rounds (1: all answers fit in one prompt)")
    picks: int = Field(default=0, description="picks the model made, over all rounds")
    malformed: int = Field(default=0, description="picks that named no shown solution")
    fallback: bool = Field(
        default=False, description="in some group no pick parsed, and the vote (its largest answer group) decided it"
    )
    votes: dict[str, int] = Field(default_factory=dict, description="picks per answer in the last round")


class RouteStage(BaseModel):
    """One size a routed run reached."""

    size: int = Field(description="candidates sampled in all by the end of this stage")
    confidence: float | None = Field(description="the signal after this stage (None: no answer yet)")
    completion_tokens: int = Field(description="completion tokens of the run by the end of this stage")


class RouteInfo(BaseModel):
    """Compute routed per question: start small, escalate while the signal is below the threshold."""

    signal: Literal["selector", "vote_share"] = Field(
        description="selector: tts_selector's calibrated confidence; vote_share: the leading answer's share"
    )
    threshold: float = Field(description="tts_route_threshold: escalate while the signal is below it")
    sizes: list[int] = Field(description="tts_route: the sizes it could run")
    stages: list[RouteStage] = Field(default_factory=list, description="the sizes it ran, in order")
    stopped: Literal["confident", "largest", "budget"] = Field(
        "largest",
        description="confident: the signal reached the threshold; largest: the last size ran; budget: "
        "tts_token_budget ended it",
    )


# -- code execution: tool-integrated reasoning ----------------------------------------
CodeExecutionStatus = Literal["ok", "error", "timeout", "killed", "limit"]
CODE_EXECUTION_STATUSES: tuple[str, ...] = get_args(CodeExecutionStatus)


class CodeExecutionInfo(BaseModel):
    """One code block of a candidate and what became of it."""

    code: str = Field(description="the code between the code_begin and code_end tags")
    output: str = Field(
        description="stdout and stderr as the model saw them: cut past max_code_output_characters with a visible "
        "marker (the raw capture is never kept; output_bytes and output_sha256 describe it)"
    )
    output_bytes: int = Field(
        default=0,
        description="length in bytes of the whole stdout/stderr capture the sandbox read back (at most its output "
        "cap; 0 when not run)",
    )
    output_sha256: str | None = Field(
        default=None,
        description="sha256 (hex) of the whole raw capture, to compare outputs without keeping them; None when not run",
    )
    status: CodeExecutionStatus = Field(
        description="ok: ran to the end; error: raised (traceback in output); timeout: stopped at "
        "code_execution_timeout; killed: a sandbox limit (CPU, memory, output size) ended it; limit: not run, "
        "max_code_executions was reached"
    )
    seconds: float = Field(description="wall time of the block (0 when not run)")


class CodeExecutionTotals(BaseModel):
    """All code blocks of a request, over every candidate (pruned ones too)."""

    executions: int = Field(description="blocks run in the sandbox")
    statuses: dict[str, int] = Field(description="blocks per status, every status listed")
    seconds: float = Field(description="wall time summed over the blocks run (they run concurrently)")

    @classmethod
    def of(cls, executions: list[CodeExecutionInfo]) -> CodeExecutionTotals:
        """Totals over ``executions``, each counted once: candidates that share a prefix share its
        blocks (the same objects), which ran once."""
        executions = list({id(e): e for e in executions}.values())
        counts = {s: 0 for s in CODE_EXECUTION_STATUSES}
        for e in executions:
            counts[e.status] += 1
        ran = [e for e in executions if e.status != "limit"]
        return cls(executions=len(ran), statuses=counts, seconds=sum(e.seconds for e in ran))


# -- structured output and function calling ------------------------------------------------
class ToolCallInfo(BaseModel):
    """The selected tool call (OpenAI's and LangChain's shape: an id, a name, parsed arguments)."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class InvalidToolCallInfo(BaseModel):
    """A tool call that did not parse (LangChain's ``invalid_tool_calls`` shape)."""

    id: str
    name: str | None = None
    args: str = Field(description="the text the model wrote")
    error: str


class StructuredInfo(BaseModel):
    """How a structured run went. ``answer_distribution`` of the metadata holds the vote: candidates
    per distinct canonical object (JSON mode) or call (tools mode; text answers as 'text: ...')."""

    mode: Literal["json", "tools"]
    constrained: bool = Field(description="candidates were generated under constrained decoding")
    valid_candidates: int = Field(description="candidates that parsed (and matched their schema)")
    invalid_candidates: int = Field(description="candidates that did not parse: counted, never selected")
    errors: list[str] = Field(default_factory=list, description="why each invalid candidate failed, in order")
    selection: str = Field(description="how the output was chosen among valid candidates")
    value: Any = Field(default=None, description="JSON mode: the selected parsed object")
    tool_calls: list[ToolCallInfo] = Field(default_factory=list, description="tools mode: the selected call, if any")
    ignored_argument_keys: list[str] = Field(default_factory=list, description="argument keys the call vote ignored")
    invalid_tool_calls: list[InvalidToolCallInfo] = Field(
        default_factory=list,
        description="tool_choice='auto' when every candidate attempted a call and none parsed: the best-scored "
        "attempt, reported as invalid (never as a call)",
    )


# The fields above name these classes before they exist: resolve them now.
CandidateInfo.model_rebuild()
TTSMetadata.model_rebuild()
