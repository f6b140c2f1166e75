"""The protocol of text completions (``POST /v1/completions``), in vLLM's shape.

The request takes one prompt, as text or as token ids, used as it is (no chat template: a trainer
that renders its own template sends the result), plus every TTS field, declared once for both
endpoints in :class:`~llm_tts.service.protocol.ServedRequest`. The response is OpenAI's
``text_completion`` with vLLM's token output on each choice (``prompt_token_ids``, ``token_ids``)
and the run's ``tts_metadata``.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llm_tts.config import MAX_TOP_LOGPROBS
from llm_tts.errors import InvalidParameterError
from llm_tts.metadata import TTSMetadata, UsageInfo
from llm_tts.service.protocol import ServedRequest
from llm_tts.token_output import ChoiceLogprobs

# A batch of prompts runs one search each; one request is one search here.
ONE_PROMPT = "one prompt per request: send each prompt in a request of its own (each runs a search of its own)"


class CompletionRequest(ServedRequest):
    """``POST /v1/completions``: one prompt (text or token ids) plus every TTS field (``extra_body``)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "SmolLM2-135M-Instruct",
                    "prompt": "Question: What is 15 * 7?\nAnswer:",
                    "tts_strategy": "self_consistency",
                    "num_paths": 3,
                    "max_tokens": 32,
                    "return_token_ids": True,
                }
            ]
        },
    )

    prompt: str | list[int] = Field(
        description="one prompt, used as it is (no chat template): text, tokenized alone (special tokens written "
        "in it are read as such, none is added), or token ids, consumed exactly; vLLM's batch of one ([text] or "
        "[[ids]]) is taken too"
    )
    logprobs: int | None = Field(  # type: ignore[assignment]
        None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="k: the sampled tokens' logprobs with the k most likely tokens at each position (0: the sampled "
        "token's alone), in the completions shape",
    )
    echo: bool | None = Field(None, description="must be false: the prompt is not repeated in the text")

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: Any) -> str | list[int]:
        return one_prompt(value)

    @model_validator(mode="after")
    def _completion_fields_only(self) -> Self:
        if self.echo:
            raise InvalidParameterError(
                "echo",
                True,
                "not supported: the prompt's logprobs are not computed; return_token_ids=true returns the prompt's "
                "token ids on the choice",
            )
        if "top_logprobs" in self.model_fields_set:
            raise InvalidParameterError(
                "top_logprobs", self.top_logprobs, "a chat field: completions take the count as logprobs=k"
            )
        return self

    def config_fields(self) -> dict[str, Any]:
        data = super().config_fields()
        if self.logprobs is not None:
            data.update(logprobs=True, top_logprobs=self.logprobs)
        else:
            data.pop("logprobs", None)
        return data


COMPLETION_REQUEST_FIELDS: tuple[str, ...] = tuple(CompletionRequest.model_fields)


def one_prompt(value: Any) -> str | list[int]:
    """The request's one prompt: text or token ids (a batch of one unwrapped); a 400 naming
    ``prompt`` for anything else, so no id is ever coerced (no bool, float or numeric string)."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]  # vLLM's batch of one: [text] or [[ids]]
    if isinstance(value, str):
        if not value:
            raise InvalidParameterError("prompt", value, "an empty prompt: send text or token ids")
        return value
    if not isinstance(value, list):
        raise InvalidParameterError("prompt", value, "must be text or a list of token ids")
    if not value:
        raise InvalidParameterError("prompt", value, "an empty prompt: send text or token ids")
    if all(isinstance(p, (str, list)) for p in value):
        raise InvalidParameterError("prompt", f"{len(value)} prompts", ONE_PROMPT)
    for i, token in enumerate(value):
        if not isinstance(token, int) or isinstance(token, bool):
            raise InvalidParameterError(f"prompt[{i}]", token, "token ids must be integers")
    return list(value)


class CompletionLogprobs(BaseModel):
    """``choices[i].logprobs`` of a text completion (OpenAI's legacy shape): per sampled token."""

    text_offset: list[int] = Field(default_factory=list, description="where each token starts in the text")
    token_logprobs: list[float | None] = Field(default_factory=list, description="each sampled token's logprob")
    tokens: list[str] = Field(default_factory=list, description="each sampled token's text")
    top_logprobs: list[dict[str, float] | None] = Field(
        default_factory=list, description="per position: the k most likely tokens' texts and logprobs"
    )

    @classmethod
    def of(cls, logprobs: ChoiceLogprobs) -> CompletionLogprobs:
        """The same entries as a chat choice's logprobs (:mod:`llm_tts.token_output`)."""
        out = cls()
        offset = 0
        for entry in logprobs.content or []:
            out.text_offset.append(offset)
            out.token_logprobs.append(entry.logprob)
            out.tokens.append(entry.token)
            out.top_logprobs.append({top.token: top.logprob for top in entry.top_logprobs})
            offset += len(entry.token)
        return out


class CompletionChoice(BaseModel):
    index: int = 0
    text: str = Field(description="the selected completion, exactly its tokens' text (thinking included)")
    logprobs: CompletionLogprobs | None = Field(None, description="logprobs=k: one entry per sampled token")
    finish_reason: Literal["stop", "length"] = Field(description="'length' when max_tokens cut the completion")
    tts_metadata: TTSMetadata = Field(description="how the strategy chose this completion")
    prompt_token_ids: list[int] | None = Field(
        None, description="return_token_ids=true: the prompt's token ids, exactly as consumed"
    )
    token_ids: list[int] | None = Field(
        None, description="return_token_ids=true: the completion's token ids, exactly as generated"
    )


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str = Field(description="the model that really generated")
    choices: list[CompletionChoice]
    usage: UsageInfo = Field(description="real token counts: every token of every candidate")
    system_fingerprint: str | None = None
