"""The OpenAI-compatible HTTP backend: test-time scaling over a remote model API.

On first use the backend finds out what the endpoint can do, once (:mod:`.openai_probe`), and
picks the dialect it speaks from then on (:mod:`.openai_dialects`): token-level where the
server has a tokenizer (vLLM, SGLang), chat-only otherwise (OpenAI, OpenRouter, the llm-tts
service). Both share one endpoint core (:mod:`.openai_endpoint`).

All requests of one ``generate`` call run in parallel, up to ``max_concurrency`` at once; ``n``
samples go in one request where the server honours ``n`` (probed), else as ``n`` requests. Token
usage is the API's own ``usage`` (see :mod:`llm_tts.backends.usage`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from llm_tts.backends.base import BackendCapabilities, SamplingParams, Watcher
from llm_tts.backends.openai_dialects import ChatDialect, Dialect, TokenDialect
from llm_tts.backends.openai_endpoint import PROVIDERS, Endpoint, RemoteTokenizer, infer_provider
from llm_tts.backends.openai_probe import Discovery, Probe, discover
from llm_tts.backends.openai_stream import generate_watched as stream_watched
from llm_tts.backends.remote_http import RemoteHTTP
from llm_tts.backends.remote_tokenizer import TextVocab
from llm_tts.backends.tokenizer import ChatTokenizer
from llm_tts.backends.usage import record_usage, usage_of
from llm_tts.errors import InvalidParameterError, RemoteAPIError, UnknownNameError
from llm_tts.http_retry import RetryPolicy
from llm_tts.messages import ChatMessage
from llm_tts.types import Segment


@dataclass(frozen=True, slots=True)
class _Job:
    prompt_index: int
    body: dict[str, Any]
    n: int


class OpenAIBackend:
    """Implements :class:`llm_tts.backends.base.Backend` over an OpenAI-compatible HTTP API.

    ``provider`` ("openai", "openrouter", "vllm"; default: from ``base_url``) picks the base URL,
    the environment variable holding the key (``OPENAI_API_KEY``, ``OPENROUTER_API_KEY``,
    ``VLLM_API_KEY``) and request details. ``tokenizer`` is ``"auto"`` (local folder when the
    server's model folder exists here, else the server's ``/tokenize``, else chat mode),
    ``"server"``, ``"none"`` (chat mode), or a local folder / model name for
    :func:`llm_tts.models.resolve_model`.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        tokenizer: str | Path | ChatTokenizer = "auto",
        max_concurrency: int = 8,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        initial_backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_retry_after: float = 60.0,
        max_context_tokens: int | None = None,
        send_seed: bool | None = None,
        server_n: bool = True,
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if base_url is None and provider in (None, "openai"):
            base_url = os.environ.get("OPENAI_BASE_URL")  # the openai SDK's own variable
        provider = provider or infer_provider(base_url)
        if provider not in PROVIDERS:
            raise UnknownNameError("provider", provider, list(PROVIDERS), param="provider")
        if max_context_tokens is not None and (not isinstance(max_context_tokens, int) or max_context_tokens < 2):
            raise InvalidParameterError("max_context_tokens", max_context_tokens, "must be an integer >= 2")
        self.provider = provider
        self.defaults = PROVIDERS[provider]
        self.base_url = (base_url or self.defaults.base_url).rstrip("/")
        self.api_key_env = self.defaults.api_key_env
        key = api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None)
        self.http = RemoteHTTP(
            self.base_url,
            api_key=key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_concurrency=max_concurrency,
            headers=headers,
            transport=transport,
            retry=RetryPolicy(max_retries, initial_backoff, max_backoff, max_retry_after),
        )
        seed = self.defaults.seed if send_seed is None else send_seed
        self.endpoint = Endpoint(self.http, provider, self.defaults, seed, dict(extra_body or {}))
        self._requested_model = model
        self._tokenizer_option = tokenizer
        self._max_context_option = max_context_tokens
        self.server_n = server_n  # False: always one request per sample, even where n works
        self.concurrent_sequences = max_concurrency  # requests in flight at once: what a server lets in together
        self.vocab = TextVocab()
        self._pool_prefix = f"llm-tts-openai-{id(self):x}"
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix=self._pool_prefix)
        self._found: Discovery | None = None
        self._dialect: Dialect | None = None
        self._setup_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self._requested_model!r}, provider={self.provider!r}, base_url={self.base_url!r})"

    # -- lazily probed attributes of the protocol ---------------------------------------------
    @property
    def model_name(self) -> str:
        return self._setup()[0].model

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._setup()[1].capabilities

    @property
    def max_context_tokens(self) -> int:
        return self._setup()[0].max_context_tokens

    @property
    def probe(self) -> Probe:
        return self._setup()[0].probe

    @property
    def tokenizer(self) -> RemoteTokenizer | None:
        """The tokenizer prompts are rendered with; None for a chat-only API."""
        return self._setup()[0].tokenizer

    @property
    def send_seed(self) -> bool:
        return self.endpoint.send_seed

    # -- protocol -------------------------------------------------------------------------
    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]:
        return self._setup()[1].render_chat(messages, template_kwargs)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._setup()[1].decode(token_ids)

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return self._setup()[1].token_texts(token_ids)

    def encode(self, text: str) -> list[int]:
        return self._setup()[1].encode(text)

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Segment]]:
        params.validate()
        found, dialect = self._setup()
        self.endpoint.check(params, found.model, found.probe.top_logprobs)
        jobs: list[_Job] = []
        for i, prompt in enumerate(prompts):
            body = dialect.body(prompt, params)
            jobs.extend(self._split_samples(found.probe, dialect.counts_each_choice(body), i, body, params))
        results = self._pmap(lambda job: self._call(dialect, job, params), jobs)
        out: list[list[Segment]] = [[] for _ in prompts]
        for job, (segments, usage) in zip(jobs, results):
            out[job.prompt_index].extend(segments)
            record_usage(*usage)  # here, in the caller's context, not in a pool thread
        return out

    def generate_watched(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, watcher: Watcher
    ) -> list[list[Segment]]:
        """:class:`~llm_tts.backends.base.WatchingBackend`: every sample streams as its own request;
        an aborted one's connection is closed (:mod:`llm_tts.backends.openai_stream`)."""
        params.validate()
        found, dialect = self._setup()
        self.endpoint.check(params, found.model, found.probe.top_logprobs)
        return stream_watched(self.endpoint, dialect, prompts, params, watcher, self._pool)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    # -- setup: probe once, then speak one dialect ----------------------------------------------
    def _setup(self) -> tuple[Discovery, Dialect]:
        with self._setup_lock:
            if self._found is None or self._dialect is None:
                found = discover(
                    self.endpoint, self._requested_model, self._tokenizer_option, self._max_context_option, self._pmap
                )
                self._dialect = (
                    TokenDialect(self.endpoint, found, found.tokenizer)
                    if found.tokenizer is not None
                    else ChatDialect(self.endpoint, found, self.vocab)
                )  # chosen here, once: nothing after this asks which mode the endpoint is in
                self._found = found
            return self._found, self._dialect

    # -- requests -------------------------------------------------------------------------
    def _split_samples(
        self, probe: Probe, counts_each: bool, index: int, body: dict[str, Any], params: SamplingParams
    ) -> list[_Job]:
        """One request with ``n`` where the server honours it and each sample's tokens are known,
        else ``n`` requests (seeds offset so they differ). vLLM refuses n > 1 when greedy."""
        if params.n == 1 or (self.server_n and probe.n and not params.greedy and counts_each):
            return [_Job(index, body, params.n)]
        jobs = []
        for j in range(params.n):
            one = {**body, "n": 1}
            if "seed" in body:
                one["seed"] = body["seed"] + j
            jobs.append(_Job(index, one, 1))
        return jobs

    def _call(self, dialect: Dialect, job: _Job, params: SamplingParams) -> tuple[list[Segment], tuple[int, int, int]]:
        path = dialect.path
        resp = self.endpoint.post(path, job.body)
        if resp.status_code != 200:
            raise self.endpoint.refused(resp, f"a {path} request")
        data = resp.json()
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != job.n:
            url = f"{self.base_url}/{path}"
            raise RemoteAPIError(f"{url} returned {len(choices)} choices for n={job.n}", url=url)
        usage = usage_of(data.get("usage"))
        own_count = usage[1] if job.n == 1 else None  # its completion tokens
        return [dialect.segment(c, params, own_count) for c in choices], usage

    def _pmap(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        items = list(items)
        if len(items) <= 1 or threading.current_thread().name.startswith(self._pool_prefix):
            return [fn(x) for x in items]  # in a worker already: never wait on our own pool
        return list(self._pool.map(fn, items))
