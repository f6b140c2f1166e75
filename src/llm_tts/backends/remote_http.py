"""HTTP for remote model APIs: one pooled httpx client, a concurrency limit, retries.

Retries follow :mod:`llm_tts.http_retry` (the package's one policy; here with timeouts retried,
since each request is one bounded model call). Answers the policy does not retry (2xx, most
4xx) are returned to the caller, which knows what they mean. The API key is sent as a bearer
header and scrubbed from every error message.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from llm_tts.errors import InvalidParameterError, RemoteAPIError, RemoteTimeoutError
from llm_tts.http_retry import RetryableResponse, RetryPolicy

DEFAULT_RETRY = RetryPolicy()  # frozen: one instance serves every client

_DETAIL_CHARS = 300  # how much of an error body a message quotes


class RemoteHTTP:
    """A thread-safe JSON client for one base URL. At most ``max_concurrency`` requests are in
    flight at once, across every thread using it (a slot is held per attempt, not while
    backing off)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_concurrency: int = 8,
        retry: RetryPolicy = DEFAULT_RETRY,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise InvalidParameterError("max_concurrency", max_concurrency, "must be an integer >= 1")
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise InvalidParameterError(name, value, "must be a number of seconds > 0")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retry = retry
        self._secret = api_key or None
        all_headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=all_headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            transport=transport,
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def __repr__(self) -> str:  # never show the key
        return f"RemoteHTTP({self.base_url!r}, api_key={'***' if self._secret else None})"

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.request("POST", path, body)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """The response to a request, after retries. Raises RemoteAPIError / RemoteTimeoutError
        when retrying did not help; returns any non-retryable answer (2xx and 4xx)."""
        url = self._url(path)
        attempts = 0
        try:
            for attempt in self.retry.retrying():
                with attempt:
                    attempts += 1
                    resp = self._once(method, path, body)
                    if self.retry.retries_response(resp):
                        raise RetryableResponse(resp)
                    return resp
        except RetryableResponse as e:
            raise self._status_error(e.response, url, attempts, self.retry.why_stopped(e)) from None
        except httpx.TimeoutException as e:
            raise RemoteTimeoutError(
                f"{method} {url} timed out ({type(e).__name__}, timeout={self.timeout:g}s) after {attempts} attempt(s); "
                "raise the backend's timeout= or lower max_tokens",
                url=url,
            ) from None
        except httpx.TransportError as e:
            raise RemoteAPIError(
                f"{method} {url} failed after {attempts} attempt(s): {type(e).__name__}: {self.scrub(str(e))}; "
                "is the server running and the base_url right?",
                url=url,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._client.close()

    @contextlib.contextmanager
    def stream_lines(self, path: str, body: dict[str, Any]) -> Iterator[Iterator[str]]:
        """POST and read the answer line by line as it arrives (one attempt: a stream is not
        retried once it began); a non-200 answer raises like :meth:`request`'s caller would.
        Leaving the block closes the connection."""
        url = self._url(path)
        try:
            with self._slots, self._client.stream("POST", url, json=body) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise self._status_error(resp, url, 1, "a streamed request is not retried")
                yield resp.iter_lines()
        except httpx.TimeoutException as e:
            raise RemoteTimeoutError(
                f"POST {url} (streamed) timed out ({type(e).__name__}, timeout={self.timeout:g}s)", url=url
            ) from None
        except httpx.TransportError as e:
            raise RemoteAPIError(
                f"POST {url} (streamed) failed: {type(e).__name__}: {self.scrub(str(e))}", url=url
            ) from None

    def scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def detail(self, resp: httpx.Response) -> str:
        """The server's error message (OpenAI shape or plain text), shortened and scrubbed."""
        try:
            data = resp.json()
            err = data.get("error", data) if isinstance(data, dict) else data
            text = err.get("message") or err.get("detail") or str(err) if isinstance(err, dict) else str(err)
        except ValueError:
            text = resp.text
        return self.scrub(str(text))[:_DETAIL_CHARS]

    # -- internals ------------------------------------------------------------------------
    def _once(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        with self._slots:
            resp = self._client.request(method, self._url(path), json=body)
            resp.read()
            return resp

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def _status_error(self, resp: httpx.Response, url: str, attempts: int, why: str) -> RemoteAPIError:
        cls = RemoteTimeoutError if resp.status_code in (408, 504) else RemoteAPIError
        return cls(
            f"{resp.request.method} {url} answered HTTP {resp.status_code} after {attempts} attempt(s) ({why}): "
            f"{self.detail(resp)}",
            status=resp.status_code,
            url=url,
        )
