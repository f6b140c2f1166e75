"""HTTP mode: talk to an llm-tts service (or anything that speaks its API) with httpx.

One pooled sync client and one async client per ChatTTS instance; retries follow
:mod:`llm_tts.http_retry` (the package's one policy), except that a read timeout is not retried:
here it is the run's deadline. A request is only retried before any answer bytes arrive, so a
retried stream never repeats output. Error bodies
(``{"error": {"message", "type", "param", "code"}}``) become the same typed ``llm_tts.errors``
classes the in-process mode raises.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import replace
from typing import Any

import httpx
from pydantic import SecretStr

from llm_tts.errors import BackendUnavailableError, DeadlineExceededError, LLMTTSError, ServiceError, error_class
from llm_tts.events import PROGRESS_EVENT_NAME, progress_from_json
from llm_tts.http_retry import RetryableResponse, RetryPolicy
from llm_tts.integrations.run_items import ReasoningDelta, Reply, RunItem, TextDelta
from llm_tts.metadata import TTSMetadata
from llm_tts.validation_errors import typed_validation

DEFAULT_TIMEOUT_S = 600.0  # a TTS search can legitimately take minutes
CONNECT_TIMEOUT_S = 10.0


def remote_error(status: int, body: bytes) -> LLMTTSError:
    """The typed error for an HTTP error response (same class as in-process where the code is known)."""
    err: dict[str, Any] = {}
    try:
        parsed = json.loads(body or b"{}")
        if isinstance(parsed, dict):
            inner = parsed.get("error")
            err = inner if isinstance(inner, dict) else parsed
    except ValueError:
        pass
    message = str(err.get("message") or err.get("detail") or body[:300].decode("utf-8", "replace") or f"HTTP {status}")
    cls = error_class(err.get("code"))
    # Subclass constructors take structured arguments we do not have here; the server's message
    # already names the value and the limit, so initialise through the common base.
    exc = cls.__new__(cls)
    LLMTTSError.__init__(exc, f"{message} (HTTP {status})", param=err.get("param"))
    if status >= 400:  # errors sent inside a 200 stream keep their class's status
        exc.http_status = status
    return exc


class ServiceTransport:
    """POSTs ``/chat/completions`` requests and yields :data:`RunItem` s, sync or async."""

    def __init__(self, base_url: str, *, api_key: SecretStr | None, timeout: float | None, max_retries: int) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Accept": "application/json"}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._timeout = httpx.Timeout(timeout if timeout is not None else DEFAULT_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        self._retry = RetryPolicy(max_retries=max_retries, retry_timeouts=False)
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        # httpx async connections belong to the event loop that opened them.
        self._aclients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def __repr__(self) -> str:  # never shows the Authorization header
        return f"ServiceTransport(url={self.url!r})"

    # -- clients ---------------------------------------------------------------------------
    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._client.is_closed:
                self._client = httpx.Client(headers=self._headers, timeout=self._timeout)
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            for other in [lp for lp in self._aclients if lp.is_closed()]:
                del self._aclients[other]  # its loop is gone; so are its connections
            client = self._aclients.get(loop)
            if client is None or client.is_closed:
                client = self._aclients[loop] = httpx.AsyncClient(headers=self._headers, timeout=self._timeout)
            return client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()

    # -- requests --------------------------------------------------------------------------
    def iter(self, payload: dict[str, Any]) -> Iterator[RunItem]:
        client = self._sync_client()
        request = client.build_request("POST", self.url, json=payload)
        try:
            response = None
            for attempt in self._retry.retrying():
                with attempt:
                    response = client.send(request, stream=True)
                    if response.status_code >= 400:
                        body = response.read()
                        response.close()
                        raise self._status_error(response, body)
            assert response is not None
            try:
                if payload.get("stream"):
                    yield from _parse_sse(response.iter_lines(), self.url)
                else:
                    yield _parse_completion(_json(response.read(), self.url), self.url)
            finally:
                response.close()  # also when the consumer stops early: the server sees the disconnect
        except RetryableResponse as e:  # retries ran out, or the server asked for too long a wait
            assert e.error is not None
            raise e.error from None
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e

    async def aiter(self, payload: dict[str, Any]) -> AsyncGenerator[RunItem, None]:
        client = self._async_client()
        request = client.build_request("POST", self.url, json=payload)
        try:
            response = None
            async for attempt in self._retry.async_retrying():
                with attempt:
                    response = await client.send(request, stream=True)
                    if response.status_code >= 400:
                        body = await response.aread()
                        await response.aclose()
                        raise self._status_error(response, body)
            assert response is not None
            try:
                if payload.get("stream"):
                    parser = _SSEParser(self.url)
                    async for line in response.aiter_lines():
                        for item in parser.feed(line):
                            yield item
                    yield parser.finish()
                else:
                    yield _parse_completion(_json(await response.aread(), self.url), self.url)
            finally:
                await response.aclose()
        except RetryableResponse as e:  # retries ran out, or the server asked for too long a wait
            assert e.error is not None
            raise e.error from None
        except httpx.HTTPError as e:
            raise self._transport_error(e) from e

    def _status_error(self, response: httpx.Response, body: bytes) -> Exception:
        """The typed error for an error answer, wrapped for another attempt where the policy retries it."""
        error = remote_error(response.status_code, body)
        return RetryableResponse(response, error) if self._retry.retries_response(response) else error

    def _transport_error(self, e: httpx.HTTPError) -> LLMTTSError:
        if isinstance(e, httpx.TimeoutException) and not isinstance(e, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            return DeadlineExceededError(
                f"no answer from {self.url} within timeout={self._timeout.read}s; raise ChatTTS(timeout=...) "
                "or lower the TTS budget"
            )
        return BackendUnavailableError(
            f"cannot reach the llm-tts service at {self.url} ({type(e).__name__}: {e}) after "
            f"{self._retry.max_retries + 1} attempt(s); start it with `llm-tts serve` or check base_url"
        )


def _json(body: bytes, url: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise ServiceError(f"{url} returned a body that is not JSON: {body[:200]!r}") from None
    if not isinstance(data, dict):
        raise ServiceError(f"{url} returned JSON that is not an object: {body[:200]!r}")
    return data


def _metadata(raw: Any, url: str) -> TTSMetadata:
    if raw is None:
        raise ServiceError(
            f"{url} returned no tts_metadata: it does not look like an llm-tts service, so the TTS "
            "parameters were not applied. Point base_url at `llm-tts serve` (e.g. http://127.0.0.1:8001/v1)"
        )
    try:
        with typed_validation(whole="tts_metadata"):
            return TTSMetadata.model_validate(raw)
    except LLMTTSError as e:
        raise ServiceError(f"{url} returned tts_metadata that does not match this client's schema: {e}") from None


def _parse_completion(data: dict[str, Any], url: str) -> Reply:
    if "error" in data:
        raise remote_error(200, json.dumps(data).encode())
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise ServiceError(f"{url} returned no choices: {str(data)[:200]}") from None
    metadata = _metadata(choice.get("tts_metadata", data.get("tts_metadata")), url)
    reply = Reply.from_metadata(
        (choice.get("message") or {}).get("content") or "",
        choice.get("finish_reason") or "stop",
        metadata,
        model_name=data.get("model"),
    )
    reply = _with_tokens(reply, data.get("prompt_token_ids"), choice.get("token_ids"), choice.get("logprobs"))
    return _with_usage(reply, data.get("usage"))


def _with_tokens(reply: Reply, prompt_ids: Any, token_ids: Any, logprobs: Any) -> Reply:
    """The token output a response carried (prompt_token_ids, token_ids, logprobs.content), if any."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return replace(
        reply,
        prompt_token_ids=prompt_ids if isinstance(prompt_ids, list) else None,
        token_ids=token_ids if isinstance(token_ids, list) else None,
        logprobs=content if isinstance(content, list) else None,
    )


def _with_usage(reply: Reply, usage: Any) -> Reply:
    # The response's own usage is what the server billed; it matches metadata.usage for llm-tts.
    if not isinstance(usage, dict):
        return reply
    return replace(
        reply,
        input_tokens=int(usage.get("prompt_tokens", reply.input_tokens)),
        output_tokens=int(usage.get("completion_tokens", reply.output_tokens)),
        total_tokens=int(usage.get("total_tokens", reply.total_tokens)),
    )


class _SSEParser:
    """OpenAI-format SSE (``data: {...}`` lines, ``data: [DONE]``) to RunItems."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.metadata: Any = None
        self.usage: Any = None
        self.model: str | None = None
        self.prompt_token_ids: Any = None
        self.token_ids: Any = None
        self.logprobs: Any = None

    def feed(self, line: str) -> Iterable[RunItem]:
        if not line.startswith("data:"):
            return ()  # blank separators, comments (": ping"), event/id fields
        data = line[5:].strip()
        if not data or data == "[DONE]":
            return ()
        chunk = _json(data.encode(), self.url)
        if "error" in chunk:
            raise remote_error(200, data.encode())
        items: list[RunItem] = []
        self.model = chunk.get("model") or self.model
        self.usage = chunk.get("usage") or self.usage
        self.metadata = chunk.get("tts_metadata", self.metadata)
        self.prompt_token_ids = chunk.get("prompt_token_ids") or self.prompt_token_ids
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(choice.get(PROGRESS_EVENT_NAME), dict):  # where the service sends it
                items.append(progress_from_json(choice[PROGRESS_EVENT_NAME]))
            thinking = delta.get("reasoning") or delta.get("reasoning_content")
            if thinking:
                items.append(ReasoningDelta(thinking))
            if delta.get("content"):
                self.text.append(delta["content"])
                items.append(TextDelta(delta["content"]))
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            if choice.get("tts_metadata") is not None:
                self.metadata = choice["tts_metadata"]
            self.token_ids = choice.get("token_ids") or self.token_ids
            self.logprobs = choice.get("logprobs") or self.logprobs
        return items

    def finish(self) -> Reply:
        reply = Reply.from_metadata(
            "".join(self.text), self.finish_reason or "stop", _metadata(self.metadata, self.url), model_name=self.model
        )
        reply = _with_tokens(reply, self.prompt_token_ids, self.token_ids, self.logprobs)
        return _with_usage(reply, self.usage)


def _parse_sse(lines: Iterable[str], url: str) -> Iterator[RunItem]:
    parser = _SSEParser(url)
    for line in lines:
        yield from parser.feed(line)
    yield parser.finish()
