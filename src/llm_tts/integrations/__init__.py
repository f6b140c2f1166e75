"""Framework adapters: ChatTTS, test-time scaling as a LangChain chat model.

``shared_engine`` returns the engine in-process ChatTTS instances share (e.g. to serve the same
loaded model with ``llm_tts.service.create_app``); ``clear_engine_cache`` frees those models.
"""

from llm_tts.integrations.chat_tts import ChatTTS
from llm_tts.integrations.inprocess import clear_engine_cache, shared_engine

__all__ = ["ChatTTS", "clear_engine_cache", "shared_engine"]
