"""Framework adapters: ChatTTS, test-time scaling as a LangChain chat model."""

from llm_tts.integrations.chat_tts import ChatTTS

__all__ = ["ChatTTS"]
