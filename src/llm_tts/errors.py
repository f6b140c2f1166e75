"""Typed errors raised by llm_tts.

Every error a user can cause derives from :class:`LLMTTSError`; messages name the offending
value and the limit, and say what to do. The service maps them onto OpenAI-shaped 4xx bodies
through :attr:`LLMTTSError.http_status` and :attr:`LLMTTSError.code`.
"""

from __future__ import annotations

from typing import Any


class LLMTTSError(Exception):
    """Base class of every error raised by llm_tts."""

    http_status: int = 400
    code: str = "llm_tts_error"
    error_type: str = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidParameterError(LLMTTSError, ValueError):
    """A parameter is out of range or of the wrong kind."""

    code = "invalid_parameter"

    def __init__(self, param: str, value: Any, limit: str) -> None:
        super().__init__(f"{param}={value!r} is invalid: {limit}", param=param)
        self.value = value
        self.limit = limit


class UnknownNameError(LLMTTSError, ValueError):
    """A strategy, scorer, backend or aggregation name that is not registered."""

    code = "unknown_name"

    def __init__(self, kind: str, name: str, valid: list[str], *, param: str | None = None) -> None:
        choices = ", ".join(sorted(valid))
        super().__init__(f"unknown {kind} {name!r}; valid: {choices}", param=param or kind)
        self.name = name
        self.valid = sorted(valid)


class EmptyMessagesError(LLMTTSError, ValueError):
    code = "empty_messages"

    def __init__(self) -> None:
        super().__init__("messages must contain at least one message", param="messages")


class ContextLengthError(LLMTTSError, ValueError):
    """The prompt (plus requested tokens) does not fit in the model's context."""

    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, limit: int, *, param: str = "messages") -> None:
        super().__init__(
            f"prompt is {prompt_tokens} tokens but the model's context is {limit} tokens; "
            "shorten the messages or use a model with a longer context",
            param=param,
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class ModelNotFoundError(LLMTTSError, FileNotFoundError):
    """A model path that does not exist, or a hub id that cannot be fetched offline."""

    code = "model_not_found"
    http_status = 404


class ModelLoadError(LLMTTSError, RuntimeError):
    """A model file exists but could not be loaded or converted."""

    code = "model_load_error"
    http_status = 500
    error_type = "server_error"


class BackendUnavailableError(LLMTTSError, RuntimeError):
    """A backend is not installed or could not start (e.g. not enough KV cache)."""

    code = "backend_unavailable"
    http_status = 503
    error_type = "server_error"


class CapabilityError(LLMTTSError, ValueError):
    """A request needs something the backend or scorer cannot provide (e.g. logprobs)."""

    code = "capability_unsupported"


class DeadlineExceededError(LLMTTSError, TimeoutError):
    code = "deadline_exceeded"
    http_status = 408
    error_type = "timeout_error"


class RunCancelledError(LLMTTSError):
    code = "cancelled"
    http_status = 499


class RemoteAPIError(LLMTTSError, RuntimeError):
    """A remote model API (OpenAI-compatible) failed or refused a request, after any retries.

    ``status`` is the upstream HTTP status (None for connection failures). The message never
    contains the API key.
    """

    code = "remote_api_error"
    http_status = 502
    error_type = "server_error"

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class RemoteTimeoutError(RemoteAPIError, TimeoutError):
    """A remote model API did not answer within the backend's timeout, after retries."""

    code = "remote_timeout"
    http_status = 504
    error_type = "timeout_error"


class DatasetError(LLMTTSError, ValueError):
    """An evaluation data file that is missing or has a bad row (the message names the row)."""

    code = "invalid_dataset"
