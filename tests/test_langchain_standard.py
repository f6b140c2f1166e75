"""langchain-tests' standard suites for ChatTTS, in-process and over HTTP (a real service on
127.0.0.1), on the embedded model with small sizes.

Feature flags are honest: no tool calling, no structured output, no JSON mode, text only (no
images, audio, PDF), and no per-call model switch (one server / one loaded model serves one model).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from llm_tts.integrations import ChatTTS

# Small enough that both integration suites together take a few minutes on a CPU.
SMALL: dict[str, Any] = {"num_paths": 2, "max_tokens": 8}
UNREACHABLE = "http://127.0.0.1:9/v1"  # unit tests never send a request


class _Flags:
    """What ChatTTS really supports, shared by all four suites."""

    @property
    def chat_model_class(self) -> type[ChatTTS]:
        return ChatTTS

    @property
    def has_tool_calling(self) -> bool:
        return False  # bind_tools raises NotImplementedError with the reason

    @property
    def has_structured_output(self) -> bool:
        return False  # with_structured_output raises NotImplementedError with the reason

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # one loaded model (in-process) or one served model (HTTP) per instance


# Unit suites never generate; their test_standard_params passes max_tokens itself.
class TestChatTTSUnitInProcess(_Flags, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"backend": "transformers", "num_paths": 2}


class TestChatTTSUnitHTTP(_Flags, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": UNREACHABLE, "num_paths": 2}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return {"LLM_TTS_API_KEY": "key-from-env"}, {"base_url": UNREACHABLE}, {"api_key": "key-from-env"}


class TestChatTTSIntegrationInProcess(_Flags, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        # The shared engine cache: every test's model runs on one loaded SmolLM2.
        return {"backend": "transformers", **SMALL}


class TestChatTTSIntegrationHTTP(_Flags, ChatModelIntegrationTests):
    url: str = ""

    @pytest.fixture(autouse=True)
    def _service(self, service_url: str) -> None:
        # chat_model_params is a property, not a fixture: hand it the session's service URL.
        type(self).url = f"{service_url}/v1"

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": self.url, **SMALL}
