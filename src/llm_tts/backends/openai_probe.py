"""Finding out, once, what an OpenAI-compatible endpoint can do.

:func:`discover` names the model (``/v1/models``), picks a tokenizer (a local folder, the
server's ``/tokenize``, or none) and sends a few tiny requests: a token-level completion where a
tokenizer was found, else a chat completion, falling back feature by feature (``n``, logprobs,
top logprobs, token-id prompts). What it learns decides the dialect the backend speaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from llm_tts.backends.openai_endpoint import PROBE_CHAT, Endpoint, RemoteTokenizer, has_exact_ids, prompt_text
from llm_tts.backends.remote_tokenizer import ParallelMap, ServerTokenizer
from llm_tts.backends.tokenizer import ChatTokenizer
from llm_tts.errors import CapabilityError, InvalidParameterError, ModelNotFoundError, RemoteAPIError

Mode = Literal["tokens", "chat"]
TokenizerOption = str | Path | ChatTokenizer
DEFAULT_TOKEN_CONTEXT = 8192  # when a token-level server does not say its context length
DEFAULT_CHAT_CONTEXT = 1 << 20  # a chat-only API checks lengths itself


@dataclass(frozen=True, slots=True)
class Probe:
    """What the endpoint showed it supports, found once on first use."""

    mode: Mode
    n: bool
    logprobs: bool
    top_logprobs: bool
    token_prompts: bool = False  # tokens mode: accepts token-id prompts (else a rendered text prompt)
    exact_ids: bool = False  # tokens mode: returns the sampled token ids


@dataclass(frozen=True, slots=True)
class Discovery:
    """The served model and what probing found. ``tokenizer`` is None in chat mode."""

    model: str
    max_context_tokens: int
    probe: Probe
    tokenizer: RemoteTokenizer | None


def discover(
    endpoint: Endpoint, model: str | None, tokenizer: TokenizerOption, max_context_tokens: int | None, pmap: ParallelMap
) -> Discovery:
    served = _list_models(endpoint)
    # No model named: a self-hosted server's (first) model; on a provider's own API its default.
    first = served[0].get("id") if served and endpoint.base_url != endpoint.defaults.base_url else None
    name = model or first or endpoint.defaults.default_model
    if name is None:
        raise ModelNotFoundError(f"{endpoint.base_url}/models lists no model; pass model= (the name the server serves)")
    ids = [m.get("id") for m in served]
    if served and name not in ids:
        shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
        raise ModelNotFoundError(f"model {name!r} is not served at {endpoint.base_url}; it serves: {shown}")
    info = next((m for m in served if m.get("id") == name), {})
    chosen = _pick_tokenizer(endpoint, name, info, tokenizer, pmap)
    probe = _probe_tokens(endpoint, name, chosen) if chosen is not None else None
    if probe is None:
        chosen, probe = None, _probe_chat(endpoint, name)
    limit = max_context_tokens or info.get("max_model_len") or info.get("context_length")
    default = DEFAULT_TOKEN_CONTEXT if chosen is not None else DEFAULT_CHAT_CONTEXT
    return Discovery(name, int(limit or default), probe, chosen)


def _list_models(endpoint: Endpoint) -> list[dict[str, Any]]:
    resp = endpoint.http.get("models")
    if resp.status_code in (401, 403):
        raise endpoint.refused(resp, "listing models")
    if resp.status_code != 200:
        return []  # some servers have no /models; the first real request will tell
    data = resp.json().get("data") if isinstance(resp.json(), dict) else None
    return [m for m in data or [] if isinstance(m, dict)]


def _pick_tokenizer(
    endpoint: Endpoint, model: str, info: dict[str, Any], option: TokenizerOption, pmap: ParallelMap
) -> RemoteTokenizer | None:
    if option == "none":
        return None
    if option == "auto" and not endpoint.defaults.token_level:
        return None
    server = ServerTokenizer(endpoint.http, endpoint.root_url, model, pmap)
    try:
        server_ids = server.render_chat(PROBE_CHAT)
    except RemoteAPIError as e:
        if option == "server":
            raise CapabilityError(f"tokenizer='server' needs {server.root_url}/tokenize, which failed: {e}") from None
        server_ids = None
    local = _local_tokenizer(option, info)
    if local is not None and server_ids is not None and local.render_chat(PROBE_CHAT) != server_ids:
        if option == "auto":
            return server  # the folder named by the server is not what it runs: trust the server
        raise InvalidParameterError(
            "tokenizer",
            str(option),
            f"renders chats differently from the model served at {endpoint.base_url} "
            "(compared with its /tokenize); name the served model's own tokenizer folder, or use tokenizer='server'",
        )
    return local if local is not None else (server if server_ids is not None else None)


def _local_tokenizer(option: TokenizerOption, info: dict[str, Any]) -> ChatTokenizer | None:
    """A tokenizer (or folder) given as the option, or (auto) the server's own model folder
    when it is readable here (vLLM's /v1/models names it as ``root``)."""
    if isinstance(option, ChatTokenizer):
        return option
    if option not in ("auto", "server"):
        from llm_tts.models import resolve_model

        return ChatTokenizer.from_folder(resolve_model(str(option)))
    root = info.get("root")
    if option == "auto" and isinstance(root, str) and (Path(root) / "tokenizer_config.json").is_file():
        return ChatTokenizer.from_folder(root)
    return None


def _probe_tokens(endpoint: Endpoint, model: str, tokenizer: RemoteTokenizer) -> Probe | None:
    """One tiny completion (falling back feature by feature); None: no token-level API."""
    prompt = tokenizer.render_chat(PROBE_CHAT)
    for token_prompts in (True, False):
        for n, k in ((2, 2), (1, 2), (2, 0), (1, 0)):
            body = {
                "model": model,
                "prompt": prompt if token_prompts else prompt_text(tokenizer, prompt),
                "max_tokens": 2,
                "temperature": 1.0,
                "n": n,
                "stop": ["\n\n"],
                "include_stop_str_in_output": True,
                "return_token_ids": True,
                "return_tokens_as_token_ids": True,
                **({"logprobs": k} if k else {}),
            }
            resp = endpoint.post("completions", body)
            if resp.status_code in (401, 403):
                raise endpoint.refused(resp, "the capability probe")
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                continue
            choices = resp.json().get("choices") or []
            lp = (choices[0].get("logprobs") or {}) if choices else {}
            tops = lp.get("top_logprobs") or []
            return Probe(
                "tokens",
                n=n == 2 and len(choices) == 2,
                logprobs=bool(k and lp.get("token_logprobs")),
                top_logprobs=bool(k and tops and all(isinstance(t, dict) and len(t) >= 2 for t in tops)),
                token_prompts=token_prompts,
                exact_ids=bool(choices) and has_exact_ids(choices[0]),
            )
    return None


def _probe_chat(endpoint: Endpoint, model: str) -> Probe:
    last: httpx.Response | None = None
    for n, logprobs in ((2, True), (1, True), (2, False), (1, False)):
        body = {
            "model": model,
            "messages": [m.to_template_dict() for m in PROBE_CHAT],
            "n": n,
            "temperature": 1.0,
            endpoint.defaults.max_tokens_field: 4,
            **({"logprobs": True, "top_logprobs": 2} if logprobs else {}),
        }
        resp = endpoint.post("chat/completions", body)
        if resp.status_code in (401, 403):
            raise endpoint.refused(resp, "the capability probe")
        if resp.status_code == 200:
            choices = resp.json().get("choices") or []
            content = ((choices[0].get("logprobs") or {}).get("content") or []) if choices else []
            return Probe(
                "chat",
                n=n == 2 and len(choices) == 2,
                logprobs=bool(logprobs and content),
                top_logprobs=bool(logprobs and content and content[0].get("top_logprobs")),
            )
        last = resp
    assert last is not None
    raise endpoint.refused(last, "every chat completion probe")
