"""The two ways the OpenAI backend talks to an endpoint, chosen once after probing.

- :class:`TokenDialect` (vLLM, SGLang, anything with a tokenizer): prompts are token ids rendered
  by the model's own chat template and continued through ``/v1/completions`` with token-id
  prompts, ``return_token_ids`` and per-token logprobs. Steps continue from exact tokens, stop at
  the delimiter and keep exact token ids, so every strategy and logprob scorer works.
- :class:`ChatDialect` (OpenAI, OpenRouter, the llm-tts service): whole answers from
  ``/v1/chat/completions``. Ids are stand-ins (:class:`TextVocab`): exact per-token logprobs and
  counts where the API returns logprobs, but no prefix can be continued, so step strategies fail
  with a CapabilityError naming "continuation" while ``self_consistency`` works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from llm_tts.backends.base import MAX_TOP_LOGPROBS, BackendCapabilities, SamplingParams, check_prompts_fit
from llm_tts.backends.openai_constraints import chat_constraint_fields, completion_constraint_fields
from llm_tts.backends.openai_endpoint import TOKEN_ID_PREFIX, Endpoint, RemoteTokenizer, finish_of, prompt_text
from llm_tts.backends.openai_probe import Discovery
from llm_tts.backends.remote_tokenizer import ServerTokenizer, TextVocab
from llm_tts.backends.tokenizer import TokenizerMixin
from llm_tts.errors import CapabilityError, InvalidParameterError, RemoteAPIError
from llm_tts.messages import ChatMessage
from llm_tts.reasoning import THINK_BEGIN, THINK_END
from llm_tts.types import Segment


class Dialect(Protocol):
    """How prompts are rendered, requests written and answers read for one kind of endpoint."""

    path: str  # the API path requests go to
    capabilities: BackendCapabilities

    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def token_texts(self, token_ids: Sequence[int]) -> list[str]: ...

    def encode(self, text: str) -> list[int]: ...

    def body(self, prompt: Sequence[int], params: SamplingParams) -> dict[str, Any]:
        """The request for ``params.n`` samples of one prompt (checked first)."""
        ...

    def counts_each_choice(self, body: dict[str, Any]) -> bool:
        """Whether an answer with several choices says how many tokens each one has."""
        ...

    def segment(self, choice: dict[str, Any], params: SamplingParams, completion_tokens: int | None) -> Segment:
        """One sample from one choice; ``completion_tokens`` is the API's count when it is this choice's alone."""
        ...


def _capabilities(endpoint: Endpoint, found: Discovery, **typed: bool) -> BackendCapabilities:
    return BackendCapabilities(
        logprobs=found.probe.logprobs,
        max_top_logprobs=MAX_TOP_LOGPROBS if found.probe.top_logprobs else 0,
        seed=endpoint.send_seed,
        constrained_decoding=True,  # sent as request fields (openai_constraints); a server may refuse them
        **typed,
    )


class TokenDialect(TokenizerMixin):
    path = "completions"
    tokenizer: RemoteTokenizer

    def __init__(self, endpoint: Endpoint, found: Discovery, tokenizer: RemoteTokenizer) -> None:
        self.endpoint = endpoint
        self.model = found.model
        self.max_context_tokens = found.max_context_tokens
        self.probe = found.probe
        self.tokenizer = tokenizer
        self.capabilities = _capabilities(
            endpoint,
            found,
            token_prompts=found.probe.token_prompts,
            continuation=True,
            chat_only=False,
            exact_token_ids=found.probe.exact_ids,
        )

    def body(self, prompt: Sequence[int], params: SamplingParams) -> dict[str, Any]:
        check_prompts_fit([prompt], self.max_context_tokens)
        token_prompts = self.probe.token_prompts
        body = {
            "model": self.model,
            "prompt": list(prompt) if token_prompts else prompt_text(self.tokenizer, prompt),
            "max_tokens": min(params.max_tokens, self.max_context_tokens - len(prompt)),
            "include_stop_str_in_output": True,  # the delimiter stays in the step it closes
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,  # top-k keyed by id, not by ambiguous text
            "skip_special_tokens": True,
            **self.endpoint.sampling_fields(params),
        }
        body.update(completion_constraint_fields(params.constraint))
        if not token_prompts:
            body["add_special_tokens"] = False  # the rendered text already has them
        if params.logprobs and self.probe.logprobs:
            body["logprobs"] = params.top_logprobs  # legacy field: top-k count; the token's own always comes
        return body

    def counts_each_choice(self, body: dict[str, Any]) -> bool:
        return True  # every choice carries its own tokens

    def segment(self, choice: dict[str, Any], params: SamplingParams, completion_tokens: int | None) -> Segment:
        tok = self.tokenizer
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        ids = choice.get("token_ids")
        if ids is None and tokens and all(str(t).startswith(TOKEN_ID_PREFIX) for t in tokens):
            ids = [int(str(t)[len(TOKEN_ID_PREFIX) :]) for t in tokens]
        if ids is None:  # the server returns no ids: re-tokenising its text is the best left
            ids = tok.encode(choice.get("text") or "")
        ids = [int(t) for t in ids]
        finish, stop_text = finish_of(choice, params)
        if finish == "eos" and ids and isinstance(tok, ServerTokenizer):
            tok.note_special(ids[-1])
        logprobs = tops = None
        if params.logprobs and self.probe.logprobs:
            raw = lp.get("token_logprobs") or []
            if len(raw) != len(ids):
                raise RemoteAPIError(
                    f"{self.endpoint.base_url}/completions returned {len(raw)} logprobs for {len(ids)} tokens"
                )
            logprobs = tuple(float(x) if x is not None else float("-inf") for x in raw)
            if params.top_logprobs:
                tops = tuple(self._top_k(d, params.top_logprobs) for d in (lp.get("top_logprobs") or [{}] * len(ids)))
        text = choice.get("text") or "" if isinstance(tok, ServerTokenizer) else tok.decode(ids)
        return Segment(tuple(ids), text, logprobs, tops, finish_reason=finish, stop_text=stop_text)

    def _top_k(self, entries: dict[str, float] | None, k: int) -> dict[int, float]:
        """The k most likely ids (vLLM also lists the sampled token when it is outside the top k)."""
        out: dict[int, float] = {}
        for key, value in (entries or {}).items():
            key = str(key)
            if key.startswith(TOKEN_ID_PREFIX):
                out[int(key[len(TOKEN_ID_PREFIX) :])] = float(value)
            else:
                ids = self.tokenizer.encode(key)
                if len(ids) == 1:
                    out[ids[0]] = float(value)
        return dict(sorted(out.items(), key=lambda kv: -kv[1])[:k])


class ChatDialect:
    path = "chat/completions"

    def __init__(self, endpoint: Endpoint, found: Discovery, vocab: TextVocab) -> None:
        self.endpoint = endpoint
        self.model = found.model
        self.probe = found.probe
        self.vocab = vocab
        self.capabilities = _capabilities(
            endpoint, found, token_prompts=False, continuation=False, chat_only=True, exact_token_ids=False
        )

    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]:
        if messages and messages[-1].role == "assistant":
            raise CapabilityError(
                f"continuation: a chat-only API ({self.endpoint.base_url}) answers a trailing assistant message with a "
                "new turn instead of continuing it; end the messages with a user turn, or use a server with /tokenize"
            )
        return [self.vocab.prompt_id(messages, template_kwargs)]

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.vocab.decode(token_ids)

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return self.vocab.token_texts(token_ids)

    def encode(self, text: str) -> list[int]:
        """Injected text as one stand-in id (a chat API counts no tokens for what it is sent)."""
        return [self.vocab.piece_id(text.encode())]

    def body(self, prompt: Sequence[int], params: SamplingParams) -> dict[str, Any]:
        if not prompt or not self.vocab.is_prompt(prompt[0]):
            raise InvalidParameterError(
                "prompt", list(prompt[:4]), "a chat-only API takes prompts from render_chat() only"
            )
        if len(prompt) > 1:
            raise CapabilityError(
                f"continuation: {self.endpoint.base_url} is a chat-only API (no tokenizer endpoint), so a partial "
                "answer cannot be continued from token ids; step strategies (online_bon, beam_search) need a server "
                "with /tokenize and /v1/completions (vLLM, SGLang) or a local tokenizer= folder; self_consistency and "
                "offline_bon work here"
            )
        defaults = self.endpoint.defaults
        body = {
            "model": self.model,
            "messages": [_chat_dict(m) for m in self.vocab.messages_of(prompt[0])],
            **self.vocab.template_fields_of(prompt[0]),
            defaults.max_tokens_field: params.max_tokens,
            **self.endpoint.sampling_fields(params),
        }
        body.update(chat_constraint_fields(params.constraint, self.endpoint.provider))
        if params.stop and defaults.token_level:
            body["include_stop_str_in_output"] = True  # self-hosted servers keep the delimiter, as the tokens do
        if params.logprobs and self.probe.logprobs:
            body["logprobs"] = True
            if params.top_logprobs:
                body["top_logprobs"] = params.top_logprobs
        return body

    def counts_each_choice(self, body: dict[str, Any]) -> bool:
        return "logprobs" in body  # per-token logprobs are the only per-choice count a chat API gives

    def segment(self, choice: dict[str, Any], params: SamplingParams, completion_tokens: int | None) -> Segment:
        message = choice.get("message") or {}
        text = message.get("content") or ""
        # A server with a reasoning parser returns the thinking apart (vLLM and SGLang: reasoning or
        # reasoning_content, DeepSeek: reasoning_content, OpenRouter: reasoning): it is put back in
        # front of the answer between the default think tags, where the run's tag parser finds it.
        thinking = message.get("reasoning") or message.get("reasoning_content")
        if isinstance(thinking, str) and thinking:
            text = f"{THINK_BEGIN}{thinking}{THINK_END}{text}"
        content = (choice.get("logprobs") or {}).get("content")
        finish, stop_text = finish_of(choice, params)
        if content:
            ids = tuple(self.vocab.piece_id(_piece(e)) for e in content)
            logprobs = tuple(float(e["logprob"]) for e in content) if params.logprobs else None
            tops = None
            if params.top_logprobs:  # best first: vLLM also lists the sampled token when outside the top k
                tops = tuple(self._top_k(e, params.top_logprobs) for e in content)
            return Segment(ids, text, logprobs, tops, finish_reason=finish, stop_text=stop_text)
        # No per-token detail: the text as one stand-in id padded to the API's own token count,
        # so counts stay exact (only reachable with one choice per request: counts_each_choice).
        count = completion_tokens if completion_tokens is not None else (1 if text else 0)
        ids = (self.vocab.piece_id(text.encode()),) + (self.vocab.piece_id(b""),) * max(0, count - 1) if count else ()
        return Segment(ids, text, finish_reason=finish, stop_text=stop_text)

    def _top_k(self, entry: dict[str, Any], k: int) -> dict[int, float]:
        pairs = ((self.vocab.piece_id(_piece(t)), float(t["logprob"])) for t in entry.get("top_logprobs") or [])
        ranked = sorted(pairs, key=lambda kv: -kv[1])
        return dict(ranked[:k])


def _chat_dict(message: ChatMessage) -> dict[str, Any]:
    """A message for a chat API: without earlier thinking (DeepSeek's API refuses it in input)."""
    return {k: v for k, v in message.to_template_dict().items() if k not in ("reasoning", "reasoning_content")}


def _piece(entry: dict[str, Any]) -> bytes:
    raw = entry.get("bytes")
    return bytes(raw) if raw is not None else str(entry.get("token", "")).encode()
