"""The OpenAI-compatible HTTP backend: test-time scaling over a remote model API.

On first use the backend finds out what the endpoint can do, once, and remembers it:

- **tokens mode** (vLLM, SGLang, anything with a tokenizer): prompts are token ids rendered by
  the model's own chat template (a local tokenizer folder, found through ``/v1/models``'s
  ``root`` or the ``tokenizer=`` option, else the server's ``/tokenize``) and continued through
  ``/v1/completions`` with token-id prompts, ``return_token_ids`` and per-token logprobs. Steps
  continue from exact tokens, stop at the delimiter and keep exact token ids, so every strategy
  and logprob scorer works.
- **chat mode** (OpenAI, OpenRouter, the llm-tts service): whole answers from
  ``/v1/chat/completions``. Ids are stand-ins (:class:`TextVocab`): exact per-token logprobs and
  counts where the API returns logprobs, but no prefix can be continued, so step strategies fail
  with a CapabilityError naming "continuation" while ``self_consistency`` works.

All requests of one ``generate`` call run in parallel, up to ``max_concurrency`` at once; ``n``
samples go in one request where the server honours ``n`` (probed), else as ``n`` requests. Token
usage is the API's own ``usage`` (see :mod:`llm_tts.backends.usage`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence
from urllib.parse import urlparse

import httpx

from llm_tts.backends.base import MAX_TOP_LOGPROBS, BackendCapabilities, SamplingParams, check_prompts_fit
from llm_tts.backends.remote_http import RemoteHTTP
from llm_tts.backends.remote_tokenizer import ServerTokenizer, TextVocab
from llm_tts.backends.tokenizer import ChatTokenizer
from llm_tts.backends.usage import record_usage
from llm_tts.errors import CapabilityError, InvalidParameterError, LLMTTSError, ModelNotFoundError, RemoteAPIError, UnknownNameError
from llm_tts.http_retry import RetryPolicy
from llm_tts.messages import ChatMessage
from llm_tts.types import FinishReason, Segment

Mode = Literal["tokens", "chat"]
_PROBE_CHAT = (ChatMessage(role="user", content="Say OK."),)
_TOKEN_ID_PREFIX = "token_id:"  # vLLM's return_tokens_as_token_ids spelling


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
    "openai": ProviderDefaults("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini", False, False, True,
                               "max_completion_tokens", 4),
    "openrouter": ProviderDefaults("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "openai/gpt-4o-mini", False, True,
                                   True, "max_tokens", 4),
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


@dataclass(frozen=True, slots=True)
class Probe:
    """What the endpoint showed it supports, found once on first use."""

    mode: Mode
    n: bool
    logprobs: bool
    top_logprobs: bool
    token_prompts: bool = False  # tokens mode: accepts token-id prompts (else a rendered text prompt)
    exact_ids: bool = False  # tokens mode: returns the sampled token ids


@dataclass
class _State:
    model: str
    max_context_tokens: int
    probe: Probe
    tokenizer: ChatTokenizer | ServerTokenizer | None  # None in chat mode
    capabilities: BackendCapabilities = field(init=False)


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
            self.base_url, api_key=key, timeout=timeout, connect_timeout=connect_timeout, max_concurrency=max_concurrency,
            retry=RetryPolicy(max_retries, initial_backoff, max_backoff, max_retry_after), headers=headers, transport=transport,
        )
        self._requested_model = model
        self._tokenizer_option = tokenizer
        self._max_context_option = max_context_tokens
        self.send_seed = self.defaults.seed if send_seed is None else send_seed
        self.server_n = server_n  # False: always one request per sample, even where n works
        self.extra_body = dict(extra_body or {})
        self.vocab = TextVocab()
        self._pool_prefix = f"llm-tts-openai-{id(self):x}"
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix=self._pool_prefix)
        self._state: _State | None = None
        self._setup_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self._requested_model!r}, provider={self.provider!r}, base_url={self.base_url!r})"

    # -- lazily probed attributes of the protocol ---------------------------------------------
    @property
    def model_name(self) -> str:
        return self._ready().model

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._ready().capabilities

    @property
    def max_context_tokens(self) -> int:
        return self._ready().max_context_tokens

    @property
    def probe(self) -> Probe:
        return self._ready().probe

    # -- protocol -------------------------------------------------------------------------
    def render_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        st = self._ready()
        if st.tokenizer is None:
            if messages and messages[-1].role == "assistant":
                raise CapabilityError(
                    f"continuation: a chat-only API ({self.base_url}) answers a trailing assistant message with a new "
                    "turn instead of continuing it; end the messages with a user turn, or use a server with /tokenize"
                )
            return [self.vocab.prompt_id(messages)]
        return st.tokenizer.render_chat(messages)

    def decode(self, token_ids: Sequence[int]) -> str:
        tok = self._ready().tokenizer
        return self.vocab.decode(token_ids) if tok is None else tok.decode(token_ids)

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        tok = self._ready().tokenizer
        return self.vocab.token_texts(token_ids) if tok is None else tok.token_texts(token_ids)

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Segment]]:
        params.validate()
        st = self._ready()
        self._check_request(st, params)
        if st.probe.mode == "tokens":
            check_prompts_fit(prompts, st.max_context_tokens)
        jobs: list[_Job] = []
        for i, prompt in enumerate(prompts):
            body = self._tokens_body(st, prompt, params) if st.probe.mode == "tokens" else self._chat_body(st, prompt, params)
            jobs.extend(self._split_samples(st, i, body, params))
        results = self._pmap(lambda job: self._call(st, job, params), jobs)
        out: list[list[Segment]] = [[] for _ in prompts]
        for job, (segments, usage) in zip(jobs, results):
            out[job.prompt_index].extend(segments)
            record_usage(*usage)  # here, in the caller's context, not in a pool thread
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    # -- setup and probing ----------------------------------------------------------------
    def _ready(self) -> _State:
        with self._setup_lock:
            if self._state is None:
                self._state = self._setup()
            return self._state

    def _setup(self) -> _State:
        served = self._list_models()
        # No model named: a self-hosted server's (first) model; on a provider's own API its default.
        first = served[0].get("id") if served and self.base_url != self.defaults.base_url else None
        model = self._requested_model or first or self.defaults.default_model
        if model is None:
            raise ModelNotFoundError(f"{self.base_url}/models lists no model; pass model= (the name the server serves)")
        ids = [m.get("id") for m in served]
        if served and model not in ids:
            shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
            raise ModelNotFoundError(f"model {model!r} is not served at {self.base_url}; it serves: {shown}")
        info = next((m for m in served if m.get("id") == model), {})
        tokenizer = self._pick_tokenizer(model, info)
        probe = self._probe_tokens(model, tokenizer) if tokenizer is not None else None
        if probe is None:
            tokenizer, probe = None, self._probe_chat(model)
        limit = self._max_context_option or info.get("max_model_len") or info.get("context_length")
        st = _State(model, int(limit or (8192 if tokenizer is not None else 1 << 20)), probe, tokenizer)
        st.capabilities = BackendCapabilities(
            logprobs=probe.logprobs,
            max_top_logprobs=MAX_TOP_LOGPROBS if probe.top_logprobs else 0,
            seed=self.send_seed,
            token_prompts=probe.mode == "tokens" and probe.token_prompts,
            extras={"mode": probe.mode, "n": probe.n, "continuation": probe.mode == "tokens", "stop": True,
                    "exact_token_ids": probe.mode == "tokens" and probe.exact_ids, "usage": "api",
                    "tokenizer": type(tokenizer).__name__ if tokenizer is not None else None},
        )
        return st

    def _list_models(self) -> list[dict[str, Any]]:
        resp = self.http.get("models")
        if resp.status_code in (401, 403):
            raise self._refused(resp, "listing models")
        if resp.status_code != 200:
            return []  # some servers have no /models; the first real request will tell
        data = resp.json().get("data") if isinstance(resp.json(), dict) else None
        return [m for m in data or [] if isinstance(m, dict)]

    def _pick_tokenizer(self, model: str, info: dict[str, Any]) -> ChatTokenizer | ServerTokenizer | None:
        option = self._tokenizer_option
        if option == "none":
            return None
        if option == "auto" and not self.defaults.token_level:
            return None
        server = ServerTokenizer(self.http, _root_url(self.base_url), model, self._pmap)
        try:
            server_ids = server.render_chat(_PROBE_CHAT)
        except RemoteAPIError as e:
            if option == "server":
                raise CapabilityError(f"tokenizer='server' needs {server.root_url}/tokenize, which failed: {e}") from None
            server_ids = None
        local = self._local_tokenizer(option, info)
        if local is not None and server_ids is not None and local.render_chat(_PROBE_CHAT) != server_ids:
            if option == "auto":
                return server  # the folder named by the server is not what it runs: trust the server
            raise InvalidParameterError(
                "tokenizer", str(option), f"renders chats differently from the model served at {self.base_url} "
                "(compared with its /tokenize); name the served model's own tokenizer folder, or use tokenizer='server'"
            )
        return local if local is not None else (server if server_ids is not None else None)

    @staticmethod
    def _local_tokenizer(option: str | Path | ChatTokenizer, info: dict[str, Any]) -> ChatTokenizer | None:
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

    def _probe_tokens(self, model: str, tokenizer: ChatTokenizer | ServerTokenizer) -> Probe | None:
        """One tiny completion (falling back feature by feature); None: no token-level API."""
        prompt = tokenizer.render_chat(_PROBE_CHAT)
        for token_prompts in (True, False):
            for n, k in ((2, 2), (1, 2), (2, 0), (1, 0)):
                body = {"model": model, "prompt": prompt if token_prompts else self._prompt_text(tokenizer, prompt),
                        "max_tokens": 2, "temperature": 1.0, "n": n, "stop": ["\n\n"], "include_stop_str_in_output": True,
                        "return_token_ids": True, "return_tokens_as_token_ids": True, **({"logprobs": k} if k else {})}
                resp = self.http.post("completions", {**self.extra_body, **body})
                if resp.status_code in (401, 403):
                    raise self._refused(resp, "the capability probe")
                if resp.status_code == 404:
                    return None
                if resp.status_code != 200:
                    continue
                choices = resp.json().get("choices") or []
                lp = (choices[0].get("logprobs") or {}) if choices else {}
                tokens = lp.get("tokens") or []
                exact = bool(choices) and (isinstance(choices[0].get("token_ids"), list)
                                           or (bool(tokens) and all(str(t).startswith(_TOKEN_ID_PREFIX) for t in tokens)))
                tops = lp.get("top_logprobs") or []
                return Probe("tokens", n=n == 2 and len(choices) == 2, logprobs=bool(k and lp.get("token_logprobs")),
                             top_logprobs=bool(k and tops and all(isinstance(t, dict) and len(t) >= 2 for t in tops)),
                             token_prompts=token_prompts, exact_ids=exact)
        return None

    def _probe_chat(self, model: str) -> Probe:
        last: httpx.Response | None = None
        for n, logprobs in ((2, True), (1, True), (2, False), (1, False)):
            body = {"model": model, "messages": [m.to_template_dict() for m in _PROBE_CHAT], "n": n, "temperature": 1.0,
                    self.defaults.max_tokens_field: 4, **({"logprobs": True, "top_logprobs": 2} if logprobs else {})}
            resp = self.http.post("chat/completions", {**self.extra_body, **body})
            if resp.status_code in (401, 403):
                raise self._refused(resp, "the capability probe")
            if resp.status_code == 200:
                choices = resp.json().get("choices") or []
                content = ((choices[0].get("logprobs") or {}).get("content") or []) if choices else []
                return Probe("chat", n=n == 2 and len(choices) == 2, logprobs=bool(logprobs and content),
                             top_logprobs=bool(logprobs and content and content[0].get("top_logprobs")))
            last = resp
        assert last is not None
        raise self._refused(last, "every chat completion probe")

    # -- requests -------------------------------------------------------------------------
    def _check_request(self, st: _State, params: SamplingParams) -> None:
        url = f"{self.base_url} (model {st.model!r})"
        if params.top_logprobs and not st.probe.top_logprobs:
            raise CapabilityError(f"top_logprobs={params.top_logprobs} was asked, but {url} returns no top logprobs")
        if params.top_k and not self.defaults.top_k:
            raise CapabilityError(f"top_k={params.top_k} was asked, but provider {self.provider!r} has no top_k sampling")
        if len(params.stop) > self.defaults.max_stop:
            raise CapabilityError(
                f"{len(params.stop)} stop strings were asked, but provider {self.provider!r} takes at most {self.defaults.max_stop}"
            )

    def _sampling_fields(self, params: SamplingParams, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {"n": n, "temperature": params.temperature, "top_p": params.top_p}
        if params.stop:
            body["stop"] = list(params.stop)
        if params.top_k:
            body["top_k"] = params.top_k
        if params.seed is not None and self.send_seed:
            body["seed"] = params.seed
        return body

    def _tokens_body(self, st: _State, prompt: Sequence[int], params: SamplingParams) -> dict[str, Any]:
        assert st.tokenizer is not None
        room = st.max_context_tokens - len(prompt)
        body = {
            **self.extra_body,
            "model": st.model,
            "prompt": list(prompt) if st.probe.token_prompts else self._prompt_text(st.tokenizer, prompt),
            "max_tokens": min(params.max_tokens, room),
            "include_stop_str_in_output": True,  # the delimiter stays in the step it closes
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,  # top-k keyed by id, not by ambiguous text
            "skip_special_tokens": True,
            **self._sampling_fields(params, params.n),
        }
        if not st.probe.token_prompts:
            body["add_special_tokens"] = False  # the rendered text already has them
        if params.logprobs and st.probe.logprobs:
            body["logprobs"] = params.top_logprobs  # legacy field: top-k count; the token's own always comes
        return body

    def _chat_body(self, st: _State, prompt: Sequence[int], params: SamplingParams) -> dict[str, Any]:
        if not prompt or not self.vocab.is_prompt(prompt[0]):
            raise InvalidParameterError("prompt", list(prompt[:4]), "a chat-only API takes prompts from render_chat() only")
        if len(prompt) > 1:
            raise CapabilityError(
                f"continuation: {self.base_url} is a chat-only API (no tokenizer endpoint), so a partial answer cannot be "
                "continued from token ids; step strategies (online_bon, beam_search) need a server with /tokenize and "
                "/v1/completions (vLLM, SGLang) or a local tokenizer= folder; self_consistency and offline_bon work here"
            )
        body = {
            **self.extra_body,
            "model": st.model,
            "messages": [m.to_template_dict() for m in self.vocab.messages_of(prompt[0])],
            self.defaults.max_tokens_field: params.max_tokens,
            **self._sampling_fields(params, params.n),
        }
        if params.stop and self.defaults.token_level:
            body["include_stop_str_in_output"] = True  # self-hosted servers keep the delimiter, as the tokens do
        if params.logprobs and st.probe.logprobs:
            body["logprobs"] = True
            if params.top_logprobs:
                body["top_logprobs"] = params.top_logprobs
        return body

    def _split_samples(self, st: _State, index: int, body: dict[str, Any], params: SamplingParams) -> list[_Job]:
        """One request with ``n`` where the server honours it and each sample's tokens are known,
        else ``n`` requests (seeds offset so they differ). vLLM refuses n > 1 when greedy."""
        per_choice_counts = st.probe.mode == "tokens" or "logprobs" in body
        if params.n == 1 or (self.server_n and st.probe.n and not params.greedy and per_choice_counts):
            return [_Job(index, body, params.n)]
        jobs = []
        for j in range(params.n):
            one = {**body, "n": 1}
            if "seed" in body:
                one["seed"] = body["seed"] + j
            jobs.append(_Job(index, one, 1))
        return jobs

    def _call(self, st: _State, job: _Job, params: SamplingParams) -> tuple[list[Segment], tuple[int, int]]:
        path = "completions" if st.probe.mode == "tokens" else "chat/completions"
        resp = self.http.post(path, job.body)
        if resp.status_code != 200:
            raise self._refused(resp, f"a {path} request")
        data = resp.json()
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != job.n:
            raise RemoteAPIError(f"{self.base_url}/{path} returned {len(choices)} choices for n={job.n}", url=f"{self.base_url}/{path}")
        usage = data.get("usage") or {}
        prompt_tokens, completion_tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if st.probe.mode == "tokens":
            segments = [self._token_segment(st, c, params) for c in choices]
        else:
            segments = [self._chat_segment(c, params, completion_tokens if job.n == 1 else None) for c in choices]
        return segments, (prompt_tokens, completion_tokens)

    # -- parsing --------------------------------------------------------------------------
    def _token_segment(self, st: _State, choice: dict[str, Any], params: SamplingParams) -> Segment:
        tok = st.tokenizer
        assert tok is not None
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        ids = choice.get("token_ids")
        if ids is None and tokens and all(str(t).startswith(_TOKEN_ID_PREFIX) for t in tokens):
            ids = [int(str(t)[len(_TOKEN_ID_PREFIX):]) for t in tokens]
        if ids is None:  # the server returns no ids: re-tokenising its text is the best left
            ids = tok.encode(choice.get("text") or "")
        ids = [int(t) for t in ids]
        finish, stop_text = _finish(choice, params)
        if finish == "eos" and ids and isinstance(tok, ServerTokenizer):
            tok.note_special(ids[-1])
        logprobs = tops = None
        if params.logprobs and st.probe.logprobs:
            raw = lp.get("token_logprobs") or []
            if len(raw) != len(ids):
                raise RemoteAPIError(f"{self.base_url}/completions returned {len(raw)} logprobs for {len(ids)} tokens")
            logprobs = tuple(float(x) if x is not None else float("-inf") for x in raw)
            if params.top_logprobs:
                tops = tuple(_top_k(d, params.top_logprobs, tok) for d in (lp.get("top_logprobs") or [{}] * len(ids)))
        text = choice.get("text") or "" if isinstance(tok, ServerTokenizer) else tok.decode(ids)
        return Segment(tuple(ids), text, logprobs, tops, finish_reason=finish, stop_text=stop_text)

    def _chat_segment(self, choice: dict[str, Any], params: SamplingParams, completion_tokens: int | None) -> Segment:
        text = (choice.get("message") or {}).get("content") or ""
        content = (choice.get("logprobs") or {}).get("content")
        finish, stop_text = _finish(choice, params)
        if content:
            ids = tuple(self.vocab.piece_id(_piece(e)) for e in content)
            logprobs = tuple(float(e["logprob"]) for e in content) if params.logprobs else None
            tops = None
            if params.top_logprobs:  # best first: vLLM also lists the sampled token when outside the top k
                tops = tuple(dict(sorted(((self.vocab.piece_id(_piece(t)), float(t["logprob"])) for t in e.get("top_logprobs") or []),
                                         key=lambda kv: -kv[1])[: params.top_logprobs])
                             for e in content)
            return Segment(ids, text, logprobs, tops, finish_reason=finish, stop_text=stop_text)
        # No per-token detail: the text as one stand-in id padded to the API's own token count,
        # so counts stay exact (only reachable with one choice per request, see _split_samples).
        count = completion_tokens if completion_tokens is not None else (1 if text else 0)
        ids = (self.vocab.piece_id(text.encode()),) + (self.vocab.piece_id(b""),) * max(0, count - 1) if count else ()
        return Segment(ids, text, finish_reason=finish, stop_text=stop_text)

    # -- helpers --------------------------------------------------------------------------
    def _pmap(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        items = list(items)
        if len(items) <= 1 or threading.current_thread().name.startswith(self._pool_prefix):
            return [fn(x) for x in items]  # in a worker already: never wait on our own pool
        return list(self._pool.map(fn, items))

    def _prompt_text(self, tokenizer: ChatTokenizer | ServerTokenizer, prompt: Sequence[int]) -> str:
        if isinstance(tokenizer, ChatTokenizer):
            return tokenizer.hf.decode(list(prompt), skip_special_tokens=False)
        return tokenizer._detokenize(prompt)

    def _refused(self, resp: httpx.Response, what: str) -> LLMTTSError:
        status, detail, url = resp.status_code, self.http.detail(resp), str(resp.request.url)
        if status in (401, 403):
            hint = f"set {self.api_key_env} or pass api_key=" if self.api_key_env else "pass api_key="
            return RemoteAPIError(f"{url} rejected the credentials for {what} (HTTP {status}): {detail}; {hint}", status=status, url=url)
        if status == 404:
            return RemoteAPIError(f"{url} answered 404 for {what}: {detail}; check base_url and model", status=status, url=url)
        return RemoteAPIError(f"{url} refused {what} (HTTP {status}): {detail}", status=status, url=url)


def _root_url(base_url: str) -> str:
    """The server root, where vLLM and SGLang put /tokenize (the API base ends in /v1)."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _finish(choice: dict[str, Any], params: SamplingParams) -> tuple[FinishReason, str | None]:
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


def _top_k(entries: dict[str, float] | None, k: int, tok: ChatTokenizer | ServerTokenizer) -> dict[int, float]:
    """The k most likely ids (vLLM also lists the sampled token when it is outside the top k)."""
    out: dict[int, float] = {}
    for key, value in (entries or {}).items():
        key = str(key)
        if key.startswith(_TOKEN_ID_PREFIX):
            out[int(key[len(_TOKEN_ID_PREFIX):])] = float(value)
        else:
            ids = tok.encode(key)
            if len(ids) == 1:
                out[ids[0]] = float(value)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:k])


def _piece(entry: dict[str, Any]) -> bytes:
    raw = entry.get("bytes")
    return bytes(raw) if raw is not None else str(entry.get("token", "")).encode()
