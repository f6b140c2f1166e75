"""What every request to an OpenAI-compatible endpoint shares: the provider's defaults, the HTTP
client, the sampling fields, how a refusal and a finish reason read. Probing
(:mod:`~llm_tts.backends.openai_probe`) and both dialects (:mod:`~llm_tts.backends.openai_dialects`)
build on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

from llm_tts.backends.base import SamplingParams
from llm_tts.backends.remote_http import RemoteHTTP
from llm_tts.backends.remote_tokenizer import ServerTokenizer
from llm_tts.backends.tokenizer import ChatTokenizer
from llm_tts.errors import CapabilityError, LLMTTSError, RemoteAPIError
from llm_tts.messages import ChatMessage
from llm_tts.types import FinishReason

PROBE_CHAT = (ChatMessage(role="user", content="Say OK."),)
TOKEN_ID_PREFIX = "token_id:"  # vLLM's return_tokens_as_token_ids spelling
RemoteTokenizer = ChatTokenizer | ServerTokenizer


@dataclass(frozen=True, slots=True)
class ProviderDefaults:
    base_url: str
    api_key_env: str | None
    default_model: str | None
    token_level: bool  # try the server's tokenizer and token-id completions
    top_k: bool  # accepts a top_k sampling field
    seed: bool  # honours per-request seeds (vLLM's CPU build crashes on them)
    max_tokens_field: str
    max_stop: int  # stop strings per request


PROVIDERS: dict[str, ProviderDefaults] = {
    "openai": ProviderDefaults(
        "https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini", False, False, True, "max_completion_tokens", 4
    ),
    "openrouter": ProviderDefaults(
        "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "openai/gpt-4o-mini", False, True, True, "max_tokens", 4
    ),
    "vllm": ProviderDefaults("http://127.0.0.1:8000/v1", "VLLM_API_KEY", None, True, True, False, "max_tokens", 64),
}


def infer_provider(base_url: str | None) -> str:
    """``openai`` for OpenAI's own API (or no URL), ``openrouter`` for OpenRouter, else ``vllm``
    (a self-hosted OpenAI-compatible server: its abilities are probed)."""
    if not base_url:
        return "openai"
    host = urlparse(base_url).hostname or ""
    if host.endswith("openrouter.ai"):
        return "openrouter"
    if host.endswith("api.openai.com"):
        return "openai"
    return "vllm"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint as the backend talks to it. ``extra_body`` goes into every request."""

    http: RemoteHTTP
    provider: str
    defaults: ProviderDefaults
    send_seed: bool
    extra_body: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.http.base_url

    @property
    def root_url(self) -> str:
        """The server root, where vLLM and SGLang put /tokenize (the API base ends in /v1)."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(path, {**self.extra_body, **body})

    def stream(self, path: str, body: dict[str, Any]) -> AbstractContextManager[Iterator[str]]:
        """A streamed request's lines (adaptive compute); leaving the block closes it."""
        return self.http.stream_lines(path, {**self.extra_body, **body})

    def check(self, params: SamplingParams, model: str, top_logprobs: bool) -> None:
        """What neither dialect can send to this provider, as a CapabilityError before any request."""
        where = f"{self.base_url} (model {model!r})"
        if params.top_logprobs and not top_logprobs:
            raise CapabilityError(f"top_logprobs={params.top_logprobs} was asked, but {where} returns no top logprobs")
        if params.top_k and not self.defaults.top_k:
            raise CapabilityError(
                f"top_k={params.top_k} was asked, but provider {self.provider!r} has no top_k sampling"
            )
        if len(params.stop) > self.defaults.max_stop:
            raise CapabilityError(
                f"{len(params.stop)} stop strings were asked, but provider {self.provider!r} takes at most "
                f"{self.defaults.max_stop}"
            )

    def sampling_fields(self, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {"n": params.n, "temperature": params.temperature, "top_p": params.top_p}
        if params.stop:
            body["stop"] = list(params.stop)
        if params.top_k:
            body["top_k"] = params.top_k
        if params.seed is not None and self.send_seed:
            body["seed"] = params.seed
        for name in ("presence_penalty", "frequency_penalty"):  # OpenAI's own fields: every dialect takes them
            if getattr(params, name):
                body[name] = getattr(params, name)
        return body

    def refused(self, resp: httpx.Response, what: str) -> LLMTTSError:
        """The error for an answer that is not what ``what`` needed, with what to do about it."""
        status, detail, url = resp.status_code, self.http.detail(resp), str(resp.request.url)
        if status in (401, 403):
            env = self.defaults.api_key_env
            hint = f"set {env} or pass api_key=" if env else "pass api_key="
            message = f"{url} rejected the credentials for {what} (HTTP {status}): {detail}; {hint}"
        elif status == 404:
            message = f"{url} answered 404 for {what}: {detail}; check base_url and model"
        else:
            message = f"{url} refused {what} (HTTP {status}): {detail}"
        return RemoteAPIError(message, status=status, url=url)


def prompt_text(tokenizer: RemoteTokenizer, prompt: Sequence[int]) -> str:
    """A token prompt as text, special tokens included (for servers that take no token-id prompts)."""
    if isinstance(tokenizer, ChatTokenizer):
        return str(tokenizer.hf.decode(list(prompt), skip_special_tokens=False))
    return tokenizer.detokenize(prompt)


def has_exact_ids(choice: dict[str, Any]) -> bool:
    """Whether a completion choice carries the sampled token ids (as a list or as id-named tokens)."""
    tokens = (choice.get("logprobs") or {}).get("tokens") or []
    named = bool(tokens) and all(str(t).startswith(TOKEN_ID_PREFIX) for t in tokens)
    return isinstance(choice.get("token_ids"), list) or named


def finish_of(choice: dict[str, Any], params: SamplingParams) -> tuple[FinishReason, str | None]:
    reason, stop_reason = choice.get("finish_reason"), choice.get("stop_reason")
    if reason == "length":
        return "length", None
    if reason in ("abort", "error"):
        raise RemoteAPIError(f"the server ended a sample with finish_reason={reason!r}")
    if isinstance(stop_reason, str):
        return "stop", stop_reason
    text = choice.get("text") if "text" in choice else None
    hit = next((s for s in params.stop if text is not None and text.endswith(s)), None)
    return ("stop", hit) if hit else ("eos", None)
