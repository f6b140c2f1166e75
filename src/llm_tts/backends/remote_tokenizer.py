"""Token ids for a remote model when no local tokenizer folder is at hand.

:class:`ServerTokenizer` asks the server itself (``/tokenize`` and ``/detokenize``, as vLLM and
SGLang expose them): prompts are rendered by the server's own chat template, so the ids are
exactly the model's. :class:`TextVocab` is for chat-only APIs (OpenAI, OpenRouter): ids are
stand-ins, a handle for the prompt's messages and one id per distinct token text the API
returned, so the token-level protocol still holds (exact per-token logprobs and counts) though
no prefix can be continued from ids.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from llm_tts.backends.remote_http import RemoteHTTP
from llm_tts.errors import CapabilityError, RemoteAPIError
from llm_tts.messages import ChatMessage

ParallelMap = Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]


class ServerTokenizer:
    """Renders and decodes through the server's tokenizer endpoints. Per-token texts are cached
    (the vocabulary is finite); end-of-sequence ids seen in completions are left out of text."""

    def __init__(self, http: RemoteHTTP, root_url: str, model: str, pmap: ParallelMap) -> None:
        self.http = http
        self.root_url = root_url.rstrip("/")
        self.model = model
        self.pmap = pmap
        self.special_ids: set[int] = set()
        self._pieces: dict[int, str] = {}
        self._lock = threading.Lock()

    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]:
        continue_final = messages[-1].role == "assistant"
        body: dict[str, Any] = {
            "messages": [m.to_template_dict() for m in messages],
            "add_generation_prompt": not continue_final,
            "continue_final_message": continue_final,
        }
        if template_kwargs:
            body["chat_template_kwargs"] = dict(template_kwargs)  # vLLM's /tokenize renders with them
        return self._tokenize(body)

    def encode(self, text: str) -> list[int]:
        return self._tokenize({"prompt": text, "add_special_tokens": False})

    def decode(self, token_ids: Sequence[int]) -> str:
        ids = [t for t in token_ids if t not in self.special_ids]
        pieces = self.token_texts(ids)
        text = "".join(pieces)
        # A character split across tokens does not decode piecewise: ask for the whole run.
        return self.detokenize(ids) if "\ufffd" in text else text

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        missing = sorted({t for t in token_ids if t not in self._pieces and t not in self.special_ids})
        if missing:
            texts = self.pmap(lambda t: self.detokenize([t]), missing)
            with self._lock:
                self._pieces.update(zip(missing, texts))
        return ["" if t in self.special_ids else self._pieces[t] for t in token_ids]

    def note_special(self, token_id: int) -> None:
        with self._lock:
            self.special_ids.add(int(token_id))

    def _tokenize(self, body: dict[str, Any]) -> list[int]:
        resp = self.http.post(f"{self.root_url}/tokenize", {"model": self.model, **body})
        if resp.status_code != 200:
            raise RemoteAPIError(
                f"POST {self.root_url}/tokenize answered HTTP {resp.status_code}: {self.http.detail(resp)}",
                status=resp.status_code,
                url=f"{self.root_url}/tokenize",
            )
        return [int(t) for t in resp.json()["tokens"]]

    def detokenize(self, ids: Sequence[int]) -> str:
        """The server's text for ``ids`` as one run, special tokens included."""
        if not ids:
            return ""
        resp = self.http.post(f"{self.root_url}/detokenize", {"model": self.model, "tokens": list(ids)})
        if resp.status_code != 200:
            raise RemoteAPIError(
                f"POST {self.root_url}/detokenize answered HTTP {resp.status_code}: {self.http.detail(resp)}",
                status=resp.status_code,
                url=f"{self.root_url}/detokenize",
            )
        return str(resp.json()["prompt"])


class TextVocab:
    """Stand-in ids for a chat-only API. Prompt handles live above ``PROMPT_BASE``; the last
    ``max_prompts`` prompts are remembered (a run needs its own only while it runs)."""

    PROMPT_BASE = 1 << 40

    def __init__(self, max_prompts: int = 4096) -> None:
        self.max_prompts = max_prompts
        self._prompts: OrderedDict[int, tuple[ChatMessage, ...]] = OrderedDict()
        self._template_kwargs: dict[int, dict[str, Any]] = {}  # chat_template_kwargs sent with a prompt
        self._prompt_ids: dict[str, int] = {}
        self._next_prompt = self.PROMPT_BASE
        self._pieces: list[bytes] = []
        self._piece_ids: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def prompt_id(self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None) -> int:
        kwargs = dict(template_kwargs or {})
        key = json.dumps([[m.to_template_dict() for m in messages], kwargs], sort_keys=True, default=str)
        with self._lock:
            pid = self._prompt_ids.get(key)
            if pid is None:
                pid = self._next_prompt
                self._next_prompt += 1
                self._prompt_ids[key] = pid
            self._prompts[pid] = tuple(messages)
            if kwargs:
                self._template_kwargs[pid] = kwargs
            self._prompts.move_to_end(pid)
            while len(self._prompts) > self.max_prompts:
                old, _ = self._prompts.popitem(last=False)
                self._template_kwargs.pop(old, None)
                self._prompt_ids = {k: v for k, v in self._prompt_ids.items() if v != old}
            return pid

    def is_prompt(self, token_id: int) -> bool:
        return token_id >= self.PROMPT_BASE

    def messages_of(self, prompt_id: int) -> tuple[ChatMessage, ...]:
        with self._lock:
            msgs = self._prompts.get(prompt_id)
        if msgs is None:
            raise CapabilityError(
                f"prompt id {prompt_id} is not a chat this backend rendered (or it was forgotten after "
                f"{self.max_prompts} newer prompts); a chat-only API takes prompts from render_chat() only"
            )
        return msgs

    def template_fields_of(self, prompt_id: int) -> dict[str, Any]:
        """The request fields that carry the prompt's chat_template_kwargs (none when it has none)."""
        with self._lock:
            kwargs = self._template_kwargs.get(prompt_id)
        return {"chat_template_kwargs": dict(kwargs)} if kwargs else {}

    def piece_id(self, piece: bytes) -> int:
        with self._lock:
            tid = self._piece_ids.get(piece)
            if tid is None:
                tid = len(self._pieces)
                self._pieces.append(piece)
                self._piece_ids[piece] = tid
            return tid

    def decode(self, token_ids: Sequence[int]) -> str:
        return b"".join(self._piece(t) for t in token_ids).decode("utf-8", errors="replace")

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return [self._piece(t).decode("utf-8", errors="ignore") for t in token_ids]

    def _piece(self, token_id: int) -> bytes:
        if self.is_prompt(token_id):
            return b""
        try:
            return self._pieces[token_id]
        except IndexError:
            raise CapabilityError(f"token id {token_id} was not returned by this chat-only API") from None
