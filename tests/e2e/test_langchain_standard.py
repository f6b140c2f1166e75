"""langchain-tests' standard suites for ChatTTS, in-process and over HTTP (a real service on
127.0.0.1), on the embedded model with small sizes.

Feature flags are honest: tool calling (with tool_choice), structured output and JSON mode under
constrained decoding; text only (no images, audio, PDF), and no per-call model switch
(one server / one loaded model serves one model).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from llm_tts.integrations import ChatTTS

UNREACHABLE = "http://127.0.0.1:9/v1"  # unit tests never send a request


class _Flags:
    """What ChatTTS really supports, shared by all four suites."""

    @property
    def chat_model_class(self) -> type[ChatTTS]:
        return ChatTTS

    @property
    def has_tool_calling(self) -> bool:
        return True  # bind_tools: forced calls are decoded under the calls' JSON schema

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True  # with_structured_output: json_schema (constrained), json_mode, function_calling

    @property
    def supports_json_mode(self) -> bool:
        return True

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


class _SmallModelLimits:
    """Standard tests a 135M model cannot pass reliably (langchain-tests wants them marked xfail
    with the reason); everything else of tool calling and structured output passes under
    constrained decoding. They are not run (``run=False``): a run that fails is expected, and one
    that passes by luck would prove nothing, so running the model for them in both modes only
    costs time."""

    @pytest.mark.xfail(
        run=False,
        reason="tool_choice='auto': SmolLM2-135M answers the weather question in text instead of calling the "
        "tool (only forced calls are guaranteed; test_structured.py's react agent forces its first call)",
    )
    def test_agent_loop(self, *args: Any, **kwargs: Any) -> None:
        super().test_agent_loop(*args, **kwargs)  # type: ignore[misc]

    @pytest.mark.xfail(
        run=False,
        reason="json_mode constrains to any JSON object: SmolLM2-135M may drop the 'punchline' key the prompt "
        "asks for (method='json_schema' enforces it and passes test_structured_output)",
    )
    def test_json_mode(self, *args: Any, **kwargs: Any) -> None:
        super().test_json_mode(*args, **kwargs)  # type: ignore[misc]

    @pytest.mark.xfail(
        run=False,
        reason="SmolLM2-135M does not reliably copy Japanese into a tool argument: asked for 'こんにちは', one CI "
        "run's HTTP-mode call carried 'トラップサイブルト・ポールラス' (the call itself parses and is selected)",
    )
    def test_unicode_tool_call_integration(self, *args: Any, **kwargs: Any) -> None:
        super().test_unicode_tool_call_integration(*args, **kwargs)  # type: ignore[misc]

    # A cut object never parses: structured-output and tool tests get room for a whole object and
    # four candidates (SmolLM2 sometimes writes a string longer than 300 characters, and gets a
    # call's argument wrong: the vote needs candidates that finished, and a majority to agree);
    # text tests stay short.
    tokens: int = 8
    paths: int = 2

    @pytest.fixture(autouse=True)
    def _room(self, request: pytest.FixtureRequest) -> None:
        name = request.node.name
        if "structured" in name or "json" in name:
            type(self).tokens, type(self).paths = 128, 4
        elif "tool" in name or "agent" in name:
            type(self).tokens, type(self).paths = 96, 4
        else:
            type(self).tokens, type(self).paths = 8, 2


@pytest.fixture(scope="module")
def vllm_engine(vllm_backend: Any) -> Any:
    """The session's vLLM engine: it batches a test's paths and decodes under vLLM's own grammar
    engine, several times faster on a CPU than the transformers backend for these many calls."""
    from llm_tts.engine import TTSEngine

    return TTSEngine(vllm_backend)


class TestChatTTSIntegrationInProcess(_SmallModelLimits, _Flags, ChatModelIntegrationTests):
    engine: Any = None

    @pytest.fixture(autouse=True)
    def _structured_output_over_http_only(self, request: pytest.FixtureRequest) -> None:
        # The structured-output standard tests run over HTTP only: ChatTTS builds the same request
        # in both modes and the HTTP run also crosses the client, the service and the engine;
        # in-process structured output is tested in tests/model/test_structured.py. Each costs
        # 15-40 s here. Skipped by a fixture: langchain-tests refuses overridden standard tests.
        if request.node.originalname.startswith("test_structured_output"):
            pytest.skip("run in TestChatTTSIntegrationHTTP (same ChatTTS code, whole stack)")

    @pytest.fixture(autouse=True)
    def _engine(self, vllm_engine: Any) -> None:
        # chat_model_params is a property, not a fixture: hand it the module's engine.
        type(self).engine = vllm_engine

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"engine": self.engine, "num_paths": self.paths, "max_tokens": self.tokens}


class TestChatTTSIntegrationHTTP(_SmallModelLimits, _Flags, ChatModelIntegrationTests):
    url: str = ""

    @pytest.fixture(autouse=True)
    def _service(self, serve_app: Any, vllm_engine: Any) -> None:
        from llm_tts.service import ServiceSettings, create_app

        if not type(self).url:  # one service on the module's engine
            type(self).url = serve_app(create_app(vllm_engine, ServiceSettings(max_concurrency=8))) + "/v1"

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": self.url, "num_paths": self.paths, "max_tokens": self.tokens}
