"""ChatTTS: test-time scaling as a LangChain chat model, in-process or over HTTP.

Without ``base_url`` it runs the TTS engine in this process on ``backend``/``model`` (the embedded
SmolLM2 by default); with ``base_url`` it calls an llm-tts service. Both modes return the same
``AIMessage`` shape: the selected answer as content, ``usage_metadata`` counted from real token
ids, and ``response_metadata`` with ``tts_metadata``, ``model_name`` and ``finish_reason``.

Every field of :class:`~llm_tts.config.TTSConfig` is a field of ChatTTS (derived from it, so the two
never drift), and any of them can be overridden per call: ``llm.invoke(q, tts_beam_size=8)`` or
``llm.bind(tts_strategy="beam_search")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal, Self

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import ensure_config, get_callback_manager_for_config
from langchain_core.utils import secret_from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, create_model, model_validator

from llm_tts.config import TTSConfig
from llm_tts.engine import TTSEngine
from llm_tts.errors import InvalidParameterError, LLMTTSError, UnknownNameError
from llm_tts.events import PROGRESS_EVENT_NAME, ProgressEvent, progress_to_json
from llm_tts.integrations.inprocess import aiter_run, iter_run, shared_engine
from llm_tts.integrations.lc_messages import to_chat_messages
from llm_tts.integrations.lc_structured import (
    StructuredMethod,
    invalid_tool_calls_of,
    ls_format,
    openai_tools,
    output_spec,
    pop_output_fields,
    response_format_of,
    structured_runnable,
    tool_call_chunks_of,
    tool_calls_of,
    tool_choice_field,
)
from llm_tts.integrations.run_items import ReasoningDelta, Reply, RunItem, TextDelta
from llm_tts.integrations.transport import ServiceTransport
from llm_tts.messages import ChatMessage
from llm_tts.models import EMBEDDED_MODEL_NAME
from llm_tts.strategies import fields_for
from llm_tts.validation_errors import typed_validation

TTS_FIELDS: tuple[str, ...] = tuple(TTSConfig.model_fields)
ANYTIME_MARGIN_S = 2.0  # HTTP + tts_anytime: the server's deadline comes this much before the read timeout
API_KEY_ENV = "LLM_TTS_API_KEY"

# The TTS fields, copied from TTSConfig (types, defaults, limits, descriptions) into a mixin.
_TTSFields: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "_TTSFields",
    **{name: (info.annotation, info) for name, info in TTSConfig.model_fields.items()},
)


class ChatTTS(BaseChatModel, _TTSFields):  # type: ignore[misc, valid-type]
    """Test-time scaling chat model. See the module docstring and ``TTSConfig`` for every TTS field.

    Example:
        ```python
        llm = ChatTTS(tts_strategy="beam_search", tts_scorer="entropy", tts_beam_size=4)  # in-process
        llm = ChatTTS(base_url="http://127.0.0.1:8001/v1", tts_budget=5)  # HTTP
        msg = llm.invoke("What is 15 * 7?")
        msg.response_metadata["tts_metadata"]["consensus_score"]
        ```
    """

    # extra="forbid": a misspelt parameter is refused by name, never silently ignored.
    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, extra="forbid")

    model_name: str | None = Field(
        None,
        alias="model",
        description="model folder or hub id (in-process; default: embedded SmolLM2), "
        "or the model name sent to the service",
    )
    base_url: str | None = Field(
        None, description="llm-tts service URL, e.g. http://127.0.0.1:8001/v1; unset: in-process"
    )
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(API_KEY_ENV, default=None),
        description=f"service API key (HTTP mode), sent as a Bearer token; default from ${API_KEY_ENV}",
    )
    timeout: float | None = Field(
        None,
        gt=0,
        strict=True,
        description="seconds per call: the run's deadline in-process, the read timeout over HTTP "
        "(unset: no deadline in-process, 600 s over HTTP)",
    )
    max_retries: int = Field(
        2, ge=0, strict=True, description="HTTP mode: retries on connection errors and 408/429/5xx (llm_tts.http_retry)"
    )
    streaming: bool = Field(
        False, description="invoke() streams internally: progress chunks reach on_llm_new_token as the search runs"
    )
    backend: str = Field("auto", description="in-process backend: auto, vllm, transformers or openai")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="in-process backend keyword options")
    prm_model: str | None = Field(None, description="in-process: path of a process reward model for tts_scorer='prm'")
    engine: TTSEngine | None = Field(
        None,
        exclude=True,
        description="in-process: run on this engine instead of a shared one built from model/backend",
    )

    _transport: ServiceTransport | None = PrivateAttr(None)
    _transport_key: tuple[Any, ...] | None = PrivateAttr(None)
    _transport_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **kwargs: Any) -> None:
        # Every field is checked by its pydantic declaration (the TTS fields carry TTSConfig's limits);
        # a bad one raises the typed error TTSConfig raises for it.
        names = [*type(self).model_fields, *(f.alias for f in type(self).model_fields.values() if f.alias)]
        with typed_validation(names=names, kind="ChatTTS parameter"):
            super().__init__(**kwargs)

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        if self.base_url and self.engine is not None:
            raise InvalidParameterError(
                "engine", type(self.engine).__name__, "give base_url (HTTP mode) or engine (in-process), not both"
            )
        return self

    # -- LangChain identity ------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "llm-tts"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": API_KEY_ENV}

    @property
    def mode(self) -> Literal["http", "in-process"]:
        return "http" if self.base_url else "in-process"

    def _model_label(self, override: str | None = None) -> str:
        if override or self.model_name:
            return str(override or self.model_name)
        if self.engine is not None:
            return self.engine.backend.model_name
        return "default" if self.base_url else EMBEDDED_MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, Any]:
        where = {"base_url": self.base_url} if self.base_url else {"backend": self.backend}
        return {"model_name": self._model_label(), **where, **{name: getattr(self, name) for name in TTS_FIELDS}}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="llm_tts",
            ls_model_name=self._model_label(kwargs.get("model")),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        ls_stop = stop or kwargs.get("stop") or self.stop
        if ls_stop:
            params["ls_stop"] = list(ls_stop)
        return params

    # -- function calling and structured output (llm_tts.structured) -----------------------
    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        tts_tool_vote_ignore_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, functions, Pydantic models or OpenAI tool dicts).

        ``tool_choice``: "auto" (default), "none", "required" / "any" / True, or a tool name;
        a forced call is decoded under the calls' JSON schema. Every candidate is parsed and the
        returned call is the vote over (name, canonical arguments); ``tts_tool_vote_ignore_keys``
        leaves argument keys out of that vote (["*"]: vote on the tool name alone).
        """
        fields: dict[str, Any] = {"tools": openai_tools(tools)}
        if tool_choice is not None:
            fields["tool_choice"] = tool_choice_field(tool_choice)
        if parallel_tool_calls is not None:
            fields["parallel_tool_calls"] = parallel_tool_calls
        if tts_tool_vote_ignore_keys is not None:
            fields["tts_tool_vote_ignore_keys"] = list(tts_tool_vote_ignore_keys)
        output_spec(fields)  # bad tools or tool_choice fail here, at bind time
        return self.bind(**fields, **kwargs)

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Outputs parsed into ``schema`` (a Pydantic model, a TypedDict or a JSON schema dict).

        ``method``: "json_schema" (default: every candidate decoded under the schema),
        "json_mode" (any JSON object, parsed into ``schema`` when given) or "function_calling"
        (a forced call of a tool made from the schema). Candidates are voted on their parsed,
        canonical value (whole-object majority, see :mod:`llm_tts.structured.selection`).
        ``include_raw=True`` returns {"raw", "parsed", "parsing_error"} as in langchain-openai.
        """
        if kwargs:
            name = next(iter(kwargs))
            raise UnknownNameError("with_structured_output argument", name, ["method", "include_raw", "strict"])
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw)
        if method not in ("json_schema", "json_mode"):
            raise InvalidParameterError("method", method, "must be json_schema, json_mode or function_calling")
        if schema is None and method == "json_schema":
            raise InvalidParameterError("schema", None, "method='json_schema' needs a schema")
        fields: dict[str, Any] = {"response_format": response_format_of(schema, method, strict)}
        output_spec(fields)
        if schema is not None:
            fields["ls_structured_output_format"] = ls_format(schema, method, strict)
        return structured_runnable(self.bind(**fields), schema, include_raw)

    # -- the request ---------------------------------------------------------------------------
    def tts_config(self, **overrides: Any) -> TTSConfig:
        """The validated TTS config of a call: this instance's settings plus ``overrides``.

        The instance's settings are defaults: a call (or ``bind``) that picks another strategy
        keeps those of its strategy-owned fields that strategy takes. What one call sets, and what
        the constructor sets beside its own strategy, must fit the strategy (else the field is
        refused, naming the strategies that take it)."""
        mine = {name: getattr(self, name) for name in TTS_FIELDS if name in self.model_fields_set}
        strategy = overrides.get("tts_strategy")
        if strategy is not None and strategy != mine.get("tts_strategy"):
            mine = fields_for(strategy, mine)
        return TTSConfig.create(**{**mine, **overrides})

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[list[ChatMessage], TTSConfig, str | None, dict[str, Any]]:
        overrides = dict(kwargs)
        overrides.pop("stream", None)  # LangChain's own "stream this call" flag, not a TTS field
        output = pop_output_fields(overrides)  # tools / response_format: the run's shape, not TTS fields
        model = overrides.pop("model", None) or self.model_name
        if stop is not None:
            overrides["stop"] = stop  # a call's stop replaces the instance's, as in OpenAI's API
        config = self.tts_config(**overrides)
        output_spec(output)  # typed errors before any work, in both modes
        return to_chat_messages(messages), config, model, output

    def _payload(
        self,
        messages: list[ChatMessage],
        config: TTSConfig,
        model: str | None,
        stream: bool,
        output: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"messages": [m.to_template_dict() for m in messages], **(output or {})}
        if model:
            payload["model"] = model
        payload.update(config.model_dump(mode="json", exclude_unset=True))
        if config.logprobs or config.return_token_ids:  # the same token output as in-process
            payload.update(logprobs=True, return_token_ids=True)
        if self.timeout is not None:
            payload["tts_deadline"] = self.timeout  # the server stops the search too, not just this client
            if config.tts_anytime:  # leave time for the best-so-far answer to arrive within the read timeout
                payload["tts_deadline"] = self.timeout - min(ANYTIME_MARGIN_S, self.timeout * 0.2)
        payload["stream"] = stream
        return payload

    def _engine_for(self, model: str | None) -> TTSEngine:
        if self.engine is not None:
            if model and model != self.model_name and model != self.engine.backend.model_name:
                raise InvalidParameterError(
                    "model",
                    model,
                    f"this ChatTTS runs on a given engine serving {self.engine.backend.model_name!r}; "
                    "drop model= or create ChatTTS without engine=",
                )
            return self.engine
        return shared_engine(model, self.backend, prm_model=self.prm_model, options=self.backend_options)

    def _service(self) -> ServiceTransport:
        assert self.base_url is not None
        key = (self.base_url, self.api_key, self.timeout, self.max_retries)
        with self._transport_lock:
            if self._transport is None or self._transport_key != key:
                if self._transport is not None:
                    self._transport.close()
                self._transport = ServiceTransport(
                    self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries
                )
                self._transport_key = key
            return self._transport

    def _items(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any], stream: bool
    ) -> Iterator[RunItem]:
        chat, config, model, output = self._request(messages, stop, kwargs)  # bad input fails here, before any work
        if self.base_url:
            return self._service().iter(self._payload(chat, config, model, stream, output))
        return iter_run(self._engine_for(model), chat, config, timeout=self.timeout, output=output_spec(output))

    async def _aitems(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any], stream: bool
    ) -> AsyncIterator[RunItem]:
        chat, config, model, output = self._request(messages, stop, kwargs)
        if self.base_url:
            source = self._service().aiter(self._payload(chat, config, model, stream, output))
        else:
            # A first call may load a model (seconds): do that off the event loop too.
            engine = await asyncio.to_thread(self._engine_for, model)
            source = aiter_run(engine, chat, config, timeout=self.timeout, output=output_spec(output))
        async with contextlib.aclosing(source):
            async for item in source:
                yield item

    # -- LangChain entry points ------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = None
        for item in self._items(messages, stop, kwargs, stream=False):
            if isinstance(item, ProgressEvent):
                _emit_progress(run_manager, item)
            elif isinstance(item, Reply):
                reply = item
        return _chat_result(_require(reply))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = None
        async for item in self._aitems(messages, stop, kwargs, stream=False):
            if isinstance(item, ProgressEvent):
                await _aemit_progress(run_manager, item)
            elif isinstance(item, Reply):
                reply = item
        return _chat_result(_require(reply))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chunks = _ChunkAssembler()
        for item in self._items(messages, stop, kwargs, stream=True):
            if isinstance(item, ProgressEvent):
                _emit_progress(run_manager, item)
            yield from chunks.feed(item)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunks = _ChunkAssembler()
        async for item in self._aitems(messages, stop, kwargs, stream=True):
            if isinstance(item, ProgressEvent):
                await _aemit_progress(run_manager, item)
            for chunk in chunks.feed(item):
                yield chunk

    # -- resources ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close this instance's HTTP clients (shared in-process engines stay loaded for others)."""
        with self._transport_lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    async def aclose(self) -> None:
        with self._transport_lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()
            transport.close()


def _require(reply: Reply | None) -> Reply:
    if reply is None:
        raise LLMTTSError("the run ended without an answer")
    return reply


def _usage(reply: Reply) -> UsageMetadata:
    usage = UsageMetadata(
        input_tokens=reply.input_tokens, output_tokens=reply.output_tokens, total_tokens=reply.total_tokens
    )
    if reply.reasoning is not None:
        usage["output_token_details"] = {"reasoning": reply.reasoning_tokens}
    return usage


def _reasoning_kwargs(reply: Reply) -> dict[str, Any]:
    """A reasoning model's thinking where LangChain reads it (as ChatDeepSeek puts it): the message's
    ``content_blocks`` then start with the standard ``reasoning`` block."""
    return {} if reply.reasoning is None else {"reasoning_content": reply.reasoning}


def _response_metadata(reply: Reply) -> dict[str, Any]:
    finish = "tool_calls" if tool_calls_of(reply.tts_metadata) else reply.finish_reason  # OpenAI's, both modes
    meta: dict[str, Any] = {"tts_metadata": reply.tts_metadata, "model_name": reply.model_name, "finish_reason": finish}
    if reply.token_ids is not None:  # return_token_ids=True or logprobs=True
        meta.update(prompt_token_ids=reply.prompt_token_ids, token_ids=reply.token_ids, logprobs=reply.logprobs)
    return meta


def _chat_result(reply: Reply) -> ChatResult:
    message = AIMessage(
        content=reply.text,
        additional_kwargs=_reasoning_kwargs(reply),
        tool_calls=tool_calls_of(reply.tts_metadata),
        invalid_tool_calls=invalid_tool_calls_of(reply.tts_metadata),
        usage_metadata=_usage(reply),
        response_metadata=_response_metadata(reply),
    )
    llm_output = {"model_name": reply.model_name, "token_usage": dict(_usage(reply))}
    return ChatResult(generations=[ChatGeneration(message=message)], llm_output=llm_output)


class _ChunkAssembler:
    """RunItems to stream chunks: progress (empty content, ``response_metadata['tts_progress']``),
    the answer text, and a last chunk with usage and metadata."""

    def __init__(self) -> None:
        self.text_sent = False
        self.reasoning_sent = False

    def feed(self, item: RunItem) -> list[ChatGenerationChunk]:
        if isinstance(item, ProgressEvent):
            meta = {PROGRESS_EVENT_NAME: [progress_to_json(item)]}
            return [ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta))]
        if isinstance(item, ReasoningDelta):
            self.reasoning_sent = True
            kwargs = {"reasoning_content": item.text}
            return [ChatGenerationChunk(message=AIMessageChunk(content="", additional_kwargs=kwargs))]
        if isinstance(item, TextDelta):
            self.text_sent = True
            return [ChatGenerationChunk(message=AIMessageChunk(content=item.text))]
        out = []
        if (
            not self.text_sent and not self.reasoning_sent and item.reasoning is not None
        ):  # the thinking streams before the answer
            out.append(
                ChatGenerationChunk(message=AIMessageChunk(content="", additional_kwargs=_reasoning_kwargs(item)))
            )
        if not self.text_sent and item.text:
            out.append(ChatGenerationChunk(message=AIMessageChunk(content=item.text)))
        last = AIMessageChunk(
            content="",
            tool_call_chunks=tool_call_chunks_of(item.tts_metadata),
            usage_metadata=_usage(item),
            response_metadata=_response_metadata(item),
            chunk_position="last",
        )
        out.append(ChatGenerationChunk(message=last))
        return out


def _emit_progress(run_manager: CallbackManagerForLLMRun | None, event: ProgressEvent) -> None:
    """Search progress as a LangChain custom event, attributed to this chat-model run.

    ``stream()``/``astream()`` hand the model no run manager (langchain-core); there the event
    goes to the enclosing run when there is one (a chain), and the progress chunk itself reaches
    callbacks through ``on_llm_new_token``."""
    data = progress_to_json(event)
    if run_manager is not None:
        manager = CallbackManager(handlers=run_manager.handlers, tags=run_manager.tags, metadata=run_manager.metadata)
        manager.on_custom_event(PROGRESS_EVENT_NAME, data, run_id=run_manager.run_id)
    elif _enclosing_run_exists():
        dispatch_custom_event(PROGRESS_EVENT_NAME, data)


async def _aemit_progress(run_manager: AsyncCallbackManagerForLLMRun | None, event: ProgressEvent) -> None:
    data = progress_to_json(event)
    if run_manager is not None:
        manager = AsyncCallbackManager(
            handlers=run_manager.handlers, tags=run_manager.tags, metadata=run_manager.metadata
        )
        await manager.on_custom_event(PROGRESS_EVENT_NAME, data, run_id=run_manager.run_id)
    elif _enclosing_run_exists():
        await adispatch_custom_event(PROGRESS_EVENT_NAME, data)


def _enclosing_run_exists() -> bool:
    return get_callback_manager_for_config(ensure_config()).parent_run_id is not None
