"""Typed errors raised by llm_tts.

Every error a user can cause derives from :class:`LLMTTSError`; messages name the offending
value and the limit, and say what to do. The service maps them onto OpenAI-shaped 4xx bodies
through :attr:`LLMTTSError.http_status` and :attr:`LLMTTSError.code`, and a client turns a
code back into its class through :data:`ERROR_CLASSES` (one table for both directions, so what a
client raises does not depend on which modules it happened to import). A class that declares its
own ``code`` registers itself there; only classes of this module may (a subclass elsewhere, such as
the vLLM backend's EngineDeadError, keeps its parent's code).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_BY_CODE: dict[str, type[LLMTTSError]] = {}
_MAX_SHOWN = 120  # characters of a rejected value echoed in a message (a long text or list is cut)


class LLMTTSError(Exception):
    """Base class of every error raised by llm_tts."""

    # A run cut short (deadline, cancellation): what it made before it stopped, set by the engine
    # (an ``llm_tts.engine.PartialRun``) so a session can record its tokens so far.
    partial_run: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            return  # decoded as the parent whose code it sends
        if cls.__module__ != __name__:
            raise TypeError(f"{cls.__name__}: an error code is declared in {__name__}, where every client has it")
        if cls.code in _BY_CODE:
            raise TypeError(f"{cls.__name__}: error code {cls.code!r} is {_BY_CODE[cls.code].__name__}'s")
        _BY_CODE[cls.code] = cls

    http_status: int = 400
    code: str = "llm_tts_error"
    error_type: str = "invalid_request_error"
    # False: the same request sent again fails the same way, even where its HTTP status is one
    # clients retry (the service then answers with ``x-should-retry: false``).
    retryable: bool = True

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidParameterError(LLMTTSError, ValueError):
    """A parameter is out of range or of the wrong kind."""

    code = "invalid_parameter"

    def __init__(self, param: str, value: Any, limit: str) -> None:
        shown = repr(value)
        if len(shown) > _MAX_SHOWN:
            shown = shown[: _MAX_SHOWN - 3] + "..."
        super().__init__(f"{param}={shown} is invalid: {limit}", param=param)
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
    retryable = False  # sent again, the run would run again into the same deadline


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


# -- errors the service answers with (raised by the service, decoded by HTTP clients) ----------
class AuthenticationError(LLMTTSError):
    http_status = 401
    code = "invalid_api_key"
    error_type = "authentication_error"


class RequestTooLargeError(LLMTTSError):
    http_status = 413
    code = "request_too_large"

    def __init__(self, size: int | None, limit: int) -> None:
        got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
        super().__init__(f"request body is {got}; this server accepts at most {limit} bytes")


class TooManyRequestsError(LLMTTSError):
    http_status = 429
    code = "rate_limit_exceeded"
    error_type = "rate_limit_error"

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"the server is already running its maximum of {limit} concurrent requests; retry after {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class MalformedJSONError(LLMTTSError):
    code = "invalid_json"

    def __init__(self, detail: str) -> None:
        super().__init__(f"the request body is not valid JSON ({detail}); send a JSON object")


class DatasetError(LLMTTSError, ValueError):
    """An evaluation data file that is missing or has a bad row (the message names the row)."""

    code = "invalid_dataset"


class InternalError(LLMTTSError):
    http_status = 500
    code = "internal_error"
    error_type = "server_error"


class ServiceError(LLMTTSError):
    """An error the service returned that matches no more specific llm_tts error class."""

    code = "service_error"


# -- sessions and the wait queue -----------------------------------------------------
class SessionNotFoundError(LLMTTSError):
    """A session id that is unknown, deleted or expired."""

    http_status = 404
    code = "session_not_found"
    retryable = False

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"no session {session_id!r}: it does not exist, was deleted or expired (POST /sessions creates one)",
            param="session_id",
        )


class SessionLimitError(LLMTTSError):
    """The server holds its maximum of open sessions."""

    http_status = 429
    code = "session_limit_exceeded"
    error_type = "rate_limit_error"

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"the server holds its maximum of {limit} open sessions; delete finished ones (DELETE /sessions/{{id}}) "
            f"or retry after {retry_after_s} s, when idle ones may have expired"
        )
        self.retry_after_s = retry_after_s


class SessionFullError(LLMTTSError):
    """A session holds its maximum of records."""

    http_status = 413
    code = "session_full"
    retryable = False

    def __init__(self, session_id: str, limit: int) -> None:
        super().__init__(
            f"session {session_id!r} holds its maximum of {limit} records; take its samples and start a new session",
            param="session_id",
        )


class SessionStoreUnavailableError(LLMTTSError):
    """The session store's database cannot be reached (down, restarting, or every connection busy)."""

    http_status = 503
    code = "session_store_unavailable"
    error_type = "server_error"


class QueueFullError(TooManyRequestsError):
    """Every run slot is busy and the wait queue is full (decoded as TooManyRequestsError)."""

    def __init__(self, running: int, queued: int, retry_after_s: int) -> None:
        LLMTTSError.__init__(
            self,
            f"the server is running {running} requests and {queued} more are waiting, its maximum; "
            f"retry after {retry_after_s} s",
        )
        self.retry_after_s = retry_after_s


class QueueTimeoutError(LLMTTSError):
    """A request waited its maximum time in the queue without a run slot."""

    http_status = 503
    code = "queue_timeout"
    error_type = "server_error"

    def __init__(self, waited_s: float, retry_after_s: int) -> None:
        super().__init__(
            f"the request waited {waited_s:g} s in the queue without a free run slot; retry later "
            "(the server's --queue-timeout sets the wait)"
        )
        self.retry_after_s = retry_after_s


class StructuredOutputError(LLMTTSError):
    """No candidate of a structured run parsed into the requested object or tool call."""

    http_status = 422
    code = "structured_output_failed"
    error_type = "invalid_response_error"

    def __init__(self, candidates: int, errors: list[str]) -> None:
        first = f"; first error: {errors[0]}" if errors else ""
        super().__init__(
            f"none of the {candidates} candidates parsed into the requested output{first}; raise max_tokens "
            "(a cut object does not parse) or the number of candidates",
            param="response_format",
        )
        self.candidates = candidates
        self.errors = errors


# -- code execution (tool-integrated reasoning) -------------------------------------------------
class SandboxUnavailableError(CapabilityError):
    """``code_execution=True`` on a machine where the sandbox cannot be created (no bubblewrap, no
    namespaces). Never answered by running the code unsandboxed."""

    code = "sandbox_unavailable"
    retryable = False


ERROR_CLASSES: Mapping[str, type[LLMTTSError]] = MappingProxyType(_BY_CODE)
"""Every error code the service sends, to the class a client raises for it."""


def error_class(code: object) -> type[LLMTTSError]:
    """The class for an error code from the wire; :class:`ServiceError` for a code not listed."""
    return ERROR_CLASSES.get(str(code), ServiceError)
