"""The protocol: request and response bodies of the OpenAI-compatible API.

The request *is* a :class:`~llm_tts.config.TTSConfig` (every TTS field, its limits and its
description come from there, so /docs documents them without a second copy) plus the standard
OpenAI chat fields. Unknown fields are rejected by name rather than silently ignored.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_tts.config import MAX_TOKENS, TTSConfig
from llm_tts.messages import ChatMessage, Role, coerce_messages
from llm_tts.metadata import TTSMetadata, UsageInfo
from llm_tts.structured import OutputSpec, output_spec_from_openai
from llm_tts.token_output import ChoiceLogprobs


class RequestMessage(BaseModel):
    """One chat turn as OpenAI sends it. Content is a string or a list of text blocks."""

    model_config = ConfigDict(extra="ignore")

    role: Role = Field(description="system, user, assistant or tool")
    content: str | list[dict[str, Any]] | None = Field(
        None, description="text, or a list of {'type': 'text', 'text': ...}"
    )
    name: str | None = None
    tool_call_id: str | None = None
    # -- structured output and function calling --
    tool_calls: list[dict[str, Any]] | None = Field(
        None, description="an assistant turn's tool calls, shown to the model as JSON in the next turn"
    )
    reasoning: str | None = Field(
        default=None, description="an assistant turn's thinking (vLLM's name), given to the chat template"
    )
    reasoning_content: str | None = Field(default=None, description="the same under DeepSeek's name")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = Field(
        None, description="accepted for compatibility: usage is always sent on the last chunk"
    )


NULL_MEANS_DEFAULT = frozenset({"logprobs", "return_token_ids", "presence_penalty", "frequency_penalty"})


class ServedRequest(TTSConfig):
    """What every completion request takes, chat and text alike: every TTS field (``extra_body``),
    the OpenAI fields both endpoints share and the service's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(None, description="a model this server serves (GET /v1/models); omitted = that model")
    stream: bool = Field(False, description="server-sent events: search progress, then the answer, then metadata")
    stream_options: StreamOptions | None = None
    # OpenAI also accepts one string; the config it becomes holds a list.
    stop: str | list[str] | None = Field(  # type: ignore[assignment]
        None, description="stop strings that end the whole answer (a string or a list)"
    )
    n: int | None = Field(
        None, ge=1, le=1, description="must be 1: one selected answer per request (use num_paths etc. for samples)"
    )
    user: str | None = Field(None, description="end-user id; accepted and not stored")
    provider: str | None = Field(
        None, description="auto, or the backend this server runs (GET /health); a different provider is an error"
    )
    tts_deadline: float | None = Field(
        None,
        gt=0,
        description="seconds this request may run (408 after, or the best answer so far with tts_anytime); "
        "capped by the server's deadline",
    )

    @model_validator(mode="before")
    @classmethod
    def _openai_nulls_mean_default(cls, data: Any) -> Any:
        # OpenAI's API takes null for its optional token-output and penalty fields: the default.
        if isinstance(data, dict) and any(data.get(k, 0) is None for k in NULL_MEANS_DEFAULT):
            return {k: v for k, v in data.items() if not (k in NULL_MEANS_DEFAULT and v is None)}
        return data

    def to_config(self, **overrides: Any) -> TTSConfig:
        """The TTSConfig this request asks for (unset fields keep TTSConfig's defaults)."""
        data = self.config_fields()
        if isinstance(data.get("stop"), str):
            data["stop"] = [data["stop"]]
        data.update(overrides)
        return TTSConfig.create(**data)

    def config_fields(self) -> dict[str, Any]:
        """The TTSConfig fields this request set, in TTSConfig's terms (a subclass maps its own)."""
        return self.model_dump(exclude_unset=True, include=set(TTSConfig.model_fields))


class ChatCompletionRequest(ServedRequest):
    """``POST /v1/chat/completions``: OpenAI's chat fields plus every TTS field (``extra_body``)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "SmolLM2-135M-Instruct",
                    "messages": [{"role": "user", "content": "What is 15 * 7? Put the answer in \\boxed{}."}],
                    "tts_strategy": "self_consistency",
                    "num_paths": 3,
                    "max_tokens": 64,
                }
            ]
        },
    )

    messages: list[RequestMessage] = Field(min_length=1, description="the chat so far; at least one message")
    max_completion_tokens: int | None = Field(
        None, ge=1, le=MAX_TOKENS, description="OpenAI's newer name for max_tokens; max_tokens wins if both are set"
    )
    # -- token in ---------------------------------------------------------------------
    prompt_token_ids: list[int] | None = Field(
        None,
        min_length=1,
        description="token in: the prompt as token ids, consumed exactly instead of rendering messages (which "
        "then only give the question to answer extraction and scorers); ids must be in the model's vocabulary",
    )
    logprob_start_len: int | None = Field(
        None,
        ge=-1,
        description="SGLang's field, sent by RL rollout clients: a value >= 0 returns prompt_token_ids and "
        "token_ids as return_token_ids does (prompt logprobs are not computed); -1: no effect",
    )
    # -- structured output and function calling (llm_tts.structured; checked in to_output) --
    tools: Any = Field(None, description="OpenAI function tools; the model may call one per answer")
    tool_choice: Any = Field(None, description="auto, none, required, or {'type': 'function', 'function': {'name'}}")
    response_format: Any = Field(
        None, description="{'type': 'text' | 'json_object' | 'json_schema', 'json_schema': {'name', 'schema'}}"
    )
    parallel_tool_calls: Any = Field(
        None, description="honoured: every answer makes at most one tool call, which true and false both allow"
    )
    tts_tool_vote_ignore_keys: Any = Field(
        None, description="argument keys left out of the vote over tool calls (['*']: vote on the tool name)"
    )

    def to_output(self) -> OutputSpec | None:
        """The structured run this request asks for (None: plain text); typed errors for bad fields."""
        return output_spec_from_openai(
            response_format=self.response_format,
            tools=self.tools,
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            ignore_argument_keys=self.tts_tool_vote_ignore_keys or (),
        )

    def to_messages(self) -> list[ChatMessage]:
        return coerce_messages([m.model_dump(exclude_none=True) for m in self.messages])

    def config_fields(self) -> dict[str, Any]:
        data = super().config_fields()
        if self.max_completion_tokens is not None and "max_tokens" not in data:
            data["max_tokens"] = self.max_completion_tokens
        if self.logprob_start_len is not None and self.logprob_start_len >= 0:
            data["return_token_ids"] = True
        return data


REQUEST_FIELDS: tuple[str, ...] = tuple(ChatCompletionRequest.model_fields)


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    # reasoning models: the thinking apart from the answer, as vLLM names it and as DeepSeek's API does
    reasoning: str | None = Field(default=None, description="the selected answer's thinking (reasoning models)")
    reasoning_content: str | None = Field(default=None, description="the same thinking under DeepSeek's name")
    tool_calls: list[dict[str, Any]] | None = None  # function calling: OpenAI's shape (openai_tool_calls)


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls"] = Field(
        description="'length' when max_tokens cut the selected answer; 'tool_calls' when it is a tool call"
    )
    logprobs: ChoiceLogprobs | None = Field(
        None, description="logprobs=true: one entry per sampled token of the answer, each with its token_id"
    )
    tts_metadata: TTSMetadata = Field(description="how the strategy chose this answer")
    token_ids: list[int] | None = Field(
        None, description="return_token_ids=true: the answer's token ids, exactly as generated"
    )


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = Field(description="the model that really generated")
    choices: list[Choice]
    usage: UsageInfo = Field(description="real token counts: every token of every candidate")
    system_fingerprint: str | None = None
    prompt_token_ids: list[int] | None = Field(
        None, description="return_token_ids=true: the prompt's token ids, exactly as consumed"
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llm-tts"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    backend: str
    active_requests: int
    max_concurrency: int
    queued_requests: int = Field(0, description="requests waiting for a run slot")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# -- structured output and function calling -----------------------------------------------------------------------------------
def openai_tool_calls(metadata: TTSMetadata) -> list[dict[str, Any]]:
    """The selected tool call in OpenAI's shape (arguments as a JSON string); [] for none."""
    calls = metadata.structured.tool_calls if metadata.structured is not None else []
    return [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
        }
        for c in calls
    ]
