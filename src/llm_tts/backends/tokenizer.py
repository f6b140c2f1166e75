"""A Hugging Face tokenizer wrapped for the backend protocol (shared by transformers and vLLM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from llm_tts.messages import ChatMessage


class ChatTokenizer:
    """Renders chats to token ids and decodes token ids, once, the same way for every backend."""

    def __init__(self, tokenizer: Any) -> None:
        self.hf = tokenizer
        self.eos_token_ids = _eos_ids(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_token_ids)

    @classmethod
    def from_folder(cls, path: str | Path) -> ChatTokenizer:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(path)))

    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]:
        """The prompt's token ids; a trailing assistant message is continued, not closed."""
        dicts = [m.to_template_dict() for m in messages]
        continue_final = messages[-1].role == "assistant"
        ids = self.hf.apply_chat_template(
            dicts,
            add_generation_prompt=not continue_final,
            continue_final_message=continue_final,
            tokenize=True,
            **dict(template_kwargs or {}),
        )
        if hasattr(ids, "keys"):  # transformers >= 5 may return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    # -- function calling: tools through the chat template -------------------------------------------
    def render_chat_with_tools(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]]
    ) -> list[int] | None:
        """The prompt with OpenAI-shaped ``tools`` rendered by the chat template, or None when the
        template has no tools slot (the caller then describes the tools in the system prompt)."""
        template = self.hf.chat_template
        if not isinstance(template, str) or "tools" not in template:
            return None
        ids = self.hf.apply_chat_template(
            [m.to_template_dict() for m in messages], tools=list(tools), add_generation_prompt=True, tokenize=True
        )
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.hf.decode(list(token_ids), skip_special_tokens=True)

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return self.hf.batch_decode([[t] for t in token_ids], skip_special_tokens=True)


class TextTokenizer(Protocol):
    """What a backend needs of a tokenizer: a local one (ChatTokenizer) or a server's."""

    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def token_texts(self, token_ids: Sequence[int]) -> list[str]: ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` alone (no special tokens): how injected text enters a trajectory."""
        ...


class TokenizerMixin:
    """render_chat/decode/token_texts of the Backend protocol, delegated to ``self.tokenizer``."""

    tokenizer: TextTokenizer

    def render_chat(
        self, messages: Sequence[ChatMessage], template_kwargs: Mapping[str, Any] | None = None
    ) -> list[int]:
        return self.tokenizer.render_chat(messages, template_kwargs)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(token_ids)

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return self.tokenizer.token_texts(token_ids)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def render_chat_with_tools(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]]
    ) -> list[int] | None:
        """See :meth:`ChatTokenizer.render_chat_with_tools`; None for a tokenizer without templates."""
        render = getattr(self.tokenizer, "render_chat_with_tools", None)
        return None if render is None else render(messages, tools)


def _eos_ids(tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    # Chat models often end a turn with a different special token than eos.
    for name in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(name) if name in tokenizer.get_vocab() else None
        if tid is not None:
            ids.add(int(tid))
    return frozenset(ids)
