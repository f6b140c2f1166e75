"""OpenAI request fields this service does not honour, each with the reason a client is told.

Every standard field of OpenAI's chat completions request is either honoured (a field of
:class:`~llm_tts.service.protocol.ChatCompletionRequest`) or listed here and answered with a 400
saying why; none is silently ignored. A field in neither place is an unknown parameter. The same
holds for text completions (:class:`~llm_tts.service.completion_protocol.CompletionRequest`), whose
refusals add :data:`REFUSED_COMPLETION_FIELDS` and every chat-only field.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

REFUSED_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "logit_bias": "token biases are not supported by this server's search; steer with stop, temperature, "
        "top_p or the penalties instead",
        "store": "this server stores no completions for OpenAI's evals or distillation; record requests in a "
        "session (POST /sessions) to keep them",
        "metadata": "metadata tags stored completions, which this server does not keep; record requests in a "
        "session (POST /sessions) instead",
        "service_tier": "this server has a single service tier",
        "modalities": "this server generates text only",
        "audio": "this server generates text only",
        "prediction": "predicted outputs are not supported: every answer token is sampled by the search",
        "reasoning_effort": "this server's compute is set by tts_budget (or the strategy's size fields)",
        "verbosity": "the answer's length follows the model and max_tokens",
        "web_search_options": "this server has no web search",
        "functions": "deprecated by OpenAI in favour of tools",
        "function_call": "deprecated by OpenAI in favour of tool_choice",
        "prompt_cache_key": "prefix caching is automatic where the backend has it (vLLM); no key is needed",
        "safety_identifier": "this server keeps no end-user records; send user if a client needs an id",
    }
)


# OpenAI's and vLLM's text completion fields this server does not honour on /v1/completions.
REFUSED_COMPLETION_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "suffix": "text after the insertion point is not supported; the completion continues the prompt",
        "best_of": "the server's search picks the best completion: set tts_strategy and its size (num_paths, ...)",
        "prompt_token_ids": "send the token ids as prompt (vLLM's form), not beside it",
    }
)


def refusal_reason(field: str, refused: Mapping[str, str] = REFUSED_FIELDS) -> str | None:
    """Why ``field`` is refused, or None when it is not an OpenAI field this server refuses."""
    reason = refused.get(field)
    return None if reason is None else f"not supported: {reason}"
