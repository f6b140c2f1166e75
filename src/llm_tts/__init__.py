"""llm-tts: LangChain-native test-time scaling for LLM reasoning."""

from llm_tts.config import TTSConfig
from llm_tts.errors import LLMTTSError
from llm_tts.messages import ChatMessage
from llm_tts.metadata import TTSMetadata
from llm_tts.types import Segment, Step, Trajectory

__version__ = "0.1.0"

__all__ = ["ChatMessage", "LLMTTSError", "Segment", "Step", "TTSConfig", "TTSMetadata", "Trajectory", "__version__"]
