"""The one protocol every generation backend implements.

A backend continues a batch of token prefixes, ``n`` samples each, and returns segments with
token ids, text, per-token logprobs (and top-k) and a finish reason. Strategies never know
which backend they run on; they hand every candidate of a step to one ``generate`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Literal, Protocol, runtime_checkable

from llm_tts.backends.constraints import DecodingConstraint
from llm_tts.config import MAX_TOP_LOGPROBS, check_sampling  # one set of limits for requests and backends
from llm_tts.errors import CapabilityError, ContextLengthError, InvalidParameterError
from llm_tts.messages import ChatMessage
from llm_tts.types import Segment

MAX_SAMPLES_PER_PREFIX = 256


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to continue each prefix. ``temperature=0`` means greedy."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filtering
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = True
    top_logprobs: int = 0
    # OpenAI's penalties on tokens generated so far in this sequence (0: off)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # -- structured output: constrained decoding (every sample matches it; see backends/constraints.py) --
    constraint: DecodingConstraint | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, (str, list)):
            object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        self.validate()

    def validate(self) -> None:
        if not _is_int(self.n) or not 1 <= self.n <= MAX_SAMPLES_PER_PREFIX:
            raise InvalidParameterError("n", self.n, f"must be an integer in [1, {MAX_SAMPLES_PER_PREFIX}]")
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise InvalidParameterError("max_tokens", self.max_tokens, "must be an integer >= 1")
        check_sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )
        if not _is_int(self.top_k) or self.top_k < 0:
            raise InvalidParameterError("top_k", self.top_k, "must be an integer >= 0 (0 disables it)")
        if not _is_int(self.top_logprobs) or not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidParameterError("top_logprobs", self.top_logprobs, f"must be in [0, {MAX_TOP_LOGPROBS}]")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidParameterError("stop", self.stop, "stop strings must be non-empty strings")
        if self.constraint is not None and not isinstance(self.constraint, DecodingConstraint):
            raise InvalidParameterError("constraint", type(self.constraint).__name__, "must be a DecodingConstraint")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalized(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)  # True is an int to Python, not to us


@dataclass(frozen=True, slots=True)
class BackendCapabilities:
    """What a backend can return; scorers check this when a request is made."""

    logprobs: bool = True
    max_top_logprobs: int = MAX_TOP_LOGPROBS
    seed: bool = True
    token_prompts: bool = True  # can continue from raw token ids
    continuation: bool = True  # can continue a partial answer (what step strategies need)
    chat_only: bool = False  # prompts are whole chats the API renders itself (so its prompt count is the real one)
    exact_token_ids: bool = True  # returned ids are the sampled tokens, not a re-tokenised text
    prefix_caching: bool = False  # a repeated prefix is computed once
    # -- structured output and function calling --
    constrained_decoding: bool = False  # honours SamplingParams.constraint (JSON schema, regex, grammar)


@runtime_checkable
class Backend(Protocol):
    """A generation backend. Implementations: transformers, vllm, openai-compatible HTTP."""

    # Read-only here: a backend may hold them as attributes or compute them (the OpenAI backend
    # knows its capabilities only after probing).
    @property
    def name(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    @property
    def capabilities(self) -> BackendCapabilities: ...

    @property
    def max_context_tokens(self) -> int: ...

    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]:
        """Token ids of the chat prompt, ready for the assistant's turn; ``template_kwargs`` are extra
        variables for the chat template (vLLM's chat_template_kwargs, e.g. enable_thinking)."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        """Text of each token on its own (one linear pass), for splitting into steps."""
        ...

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Segment]]:
        """Continue each prompt ``params.n`` times: ``result[i][j]`` is sample j of prompt i."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SubmittingBackend(Backend, Protocol):
    """A backend that can also start a generation and return at once (vLLM's engine loop).

    Strategies use it so that a cancelled or overdue run stops a call while it runs (its requests
    are aborted, not left to finish); a caller can also act on each prefix's samples as soon as
    they finish instead of waiting for the slowest.
    """

    def submit(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Sequence[Future[list[Segment]]]:
        """Start what ``generate`` does and return one future per prompt (its ``params.n``
        samples), resolved when that prompt's samples finish; ``cancel()`` stops it. Bad
        input raises here, before anything starts."""
        ...


# -- injected text (tool-integrated reasoning) ------------------------------------------
@runtime_checkable
class EncodingBackend(Backend, Protocol):
    """A backend that can also tokenize text on its own, so a tool's output can be appended to a
    trajectory as token ids (an injected segment) and generation continues from exact ids."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` alone, without special tokens."""
        ...


@runtime_checkable
class ToolTemplateBackend(Protocol):
    """A backend whose chat template may render tools itself (local tokenizers)."""

    def render_chat_with_tools(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]]
    ) -> list[int] | None:
        """The prompt with OpenAI-shaped ``tools`` in the template's tools slot; None when the
        template has none (the caller then lists the tools in the system prompt)."""
        ...


def check_request(
    prompts: Sequence[Sequence[int]], params: SamplingParams, capabilities: BackendCapabilities, max_context_tokens: int
) -> None:
    """The checks every local backend makes before generating: params, top-k limit, context."""
    params.validate()
    if params.top_logprobs > capabilities.max_top_logprobs:
        raise CapabilityError(
            f"top_logprobs={params.top_logprobs} exceeds this backend's limit {capabilities.max_top_logprobs}"
        )
    check_constraint(params, capabilities)
    check_prompts_fit(prompts, max_context_tokens)


def check_constraint(params: SamplingParams, capabilities: BackendCapabilities) -> None:
    """Raise CapabilityError for a constraint this backend cannot honour (never ignored silently)."""
    if params.constraint is not None and not capabilities.constrained_decoding:
        raise CapabilityError(
            f"constrained decoding ({params.constraint.kind}): this backend cannot constrain what it samples; "
            "use the transformers or vllm backend, or a server that takes response_format / structured outputs"
        )


def check_prompts_fit(prompts: Sequence[Sequence[int]], max_context_tokens: int) -> None:
    """Raise ContextLengthError when a prompt leaves no room for even one new token."""
    for p in prompts:
        if not p:
            raise InvalidParameterError("prompt", [], "a prompt needs at least one token")
        if len(p) >= max_context_tokens:
            # param stays "messages": that is what a user of the engine or service can shorten
            raise ContextLengthError(len(p), max_context_tokens)


def check_token_ids(prompts: Sequence[Sequence[int]], vocab_size: int) -> None:
    """Raise InvalidParameterError for a token id outside the vocabulary.

    Checked up front because an out-of-range id is an opaque IndexError on CPU and a
    device-side assert that poisons the whole CUDA context on GPU.
    """
    for i, p in enumerate(prompts):
        try:
            ok = min(p) >= 0 and max(p) < vocab_size and all(isinstance(t, Integral) for t in p)
        except TypeError:  # not comparable with ints
            ok = False
        if not ok:
            bad = next(t for t in p if not isinstance(t, Integral) or isinstance(t, bool) or not 0 <= t < vocab_size)
            raise InvalidParameterError(f"prompts[{i}]", bad, f"token ids must be integers in [0, {vocab_size})")


# -- watching a running generation (adaptive compute) ----------------------------------
WatchVerdict = Literal["continue", "abort", "abort_all"]


@dataclass(frozen=True, slots=True)
class SampleUpdate:
    """What a watcher sees of one running sample: every token so far, after each new batch of them.

    ``token_ids``, ``logprobs`` and ``top_logprobs`` may be the backend's live buffers: read them
    during the call, copy what you keep. ``segment`` is set on the sample's last update, when it
    finished on its own (then no verdict can stop it any more).
    """

    prompt_index: int
    sample_index: int
    token_ids: Sequence[int]
    logprobs: Sequence[float] | None
    top_logprobs: Sequence[dict[int, float]] | None
    new_tokens: int  # tokens added since this sample's previous update
    segment: Segment | None = None

    @property
    def finished(self) -> bool:
        return self.segment is not None


Watcher = Callable[[SampleUpdate], WatchVerdict]


@runtime_checkable
class WatchingBackend(Backend, Protocol):
    """A backend that lets its caller watch every running sample's tokens and logprobs and stop
    it mid-generation: vLLM through its engine loop's per-request outputs, transformers inside
    its decoding loop, the OpenAI backend by streaming and closing the connection.
    """

    def generate_watched(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, watcher: Watcher
    ) -> list[list[Segment]]:
        """What ``generate`` returns, calling ``watcher`` (in the caller's thread) as tokens arrive.

        Verdict "abort" stops that sample, "abort_all" every sample of the call still running; an
        aborted sample leaves the batch (its compute is freed) and its segment keeps the tokens
        generated so far, with ``finish_reason="abort"``. An exception from ``watcher`` aborts
        every sample and propagates.
        """
        ...
