"""When an HTTP request is sent again, and after how long: the one retry policy of every HTTP
client in llm_tts (ChatTTS's service transport and the remote model backends).

- **Answers retried:** 408, 429, 500, 502, 503 and 504, unless the server answers with
  ``x-should-retry: false`` (the llm-tts service does for a run that reached its deadline: sent
  again, it would run again). ``x-should-retry: true`` makes any answer retryable. OpenAI's own
  SDK reads the same header. Other answers go back to the caller, which knows what they mean.
- **Failures retried:** connections refused, reset or dropped before an answer, and connect or
  pool timeouts. A read or write timeout only when ``retry_timeouts`` is set: right for one
  bounded model call, wrong where the timeout is the caller's deadline for the whole run.
- **Waits:** the server's ``Retry-After`` (seconds or an HTTP date) when it sends one, else
  exponential backoff with jitter from ``initial_backoff`` up to ``max_backoff``. A
  ``Retry-After`` longer than ``max_retry_after`` fails at once rather than hanging the caller
  (a shorter sleep would only earn another refusal).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from llm_tts.errors import InvalidParameterError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
SHOULD_RETRY_HEADER = "x-should-retry"
# A retry can fix these: nothing was answered (the server may not even have seen the request).
CONNECTION_FAILURES: tuple[type[httpx.TransportError], ...] = (
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
TIMEOUTS: tuple[type[httpx.TransportError], ...] = (httpx.ReadTimeout, httpx.WriteTimeout)


class RetryableResponse(Exception):
    """Raised inside a retry loop for an answer the policy retries. ``error`` is what the caller
    raises when the retries run out (or the answer asked for too long a wait)."""

    def __init__(self, response: httpx.Response, error: Exception | None = None) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.error = error
        self.retry_after = retry_after(response.headers)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 4  # retries after the first attempt
    initial_backoff: float = 0.5  # seconds; doubles each retry, with jitter
    max_backoff: float = 20.0
    max_retry_after: float = 60.0  # a longer Retry-After fails at once
    retry_timeouts: bool = True  # retry read/write timeouts too

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise InvalidParameterError("max_retries", self.max_retries, "must be an integer >= 0")
        for name in ("initial_backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InvalidParameterError(name, value, "must be a number of seconds >= 0")

    def retries_response(self, response: httpx.Response) -> bool:
        """Whether this answer is worth sending the request again for (before any wait limit)."""
        said = response.headers.get(SHOULD_RETRY_HEADER, "").strip().lower()
        if said in ("true", "false"):
            return said == "true"
        return response.status_code in RETRY_STATUSES

    def retries_error(self, exc: BaseException) -> bool:
        """Whether a failed attempt is sent again (a :class:`RetryableResponse` or a transport failure)."""
        if isinstance(exc, RetryableResponse):
            return not self.waits_too_long(exc)
        if isinstance(exc, TIMEOUTS):
            return self.retry_timeouts
        return isinstance(exc, CONNECTION_FAILURES)

    def waits_too_long(self, exc: RetryableResponse) -> bool:
        return exc.retry_after is not None and exc.retry_after > self.max_retry_after

    def why_stopped(self, exc: RetryableResponse) -> str:
        """Why a retryable answer was given up on, for the caller's error message."""
        if self.waits_too_long(exc):
            return (
                f"the server asked to retry after {exc.retry_after:.0f}s, "
                f"more than max_retry_after={self.max_retry_after:g}s"
            )
        return "retries exhausted"

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the server's Retry-After, else backoff."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableResponse) and exc.retry_after is not None:
            return exc.retry_after
        return float(wait_exponential_jitter(self.initial_backoff, self.max_backoff)(state))

    def retrying(self) -> Retrying:
        """A tenacity loop for a sync client; the last failure is re-raised as it was."""
        return Retrying(**self._loop_options())

    def async_retrying(self) -> AsyncRetrying:
        return AsyncRetrying(**self._loop_options())

    def _loop_options(self) -> dict[str, Any]:
        return dict(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self.wait,
            retry=retry_if_exception(self.retries_error),
            reraise=True,
        )


def retry_after(headers: Mapping[str, str] | httpx.Headers | None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` as seconds or an HTTP date), or None."""
    value = headers.get("retry-after") if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
