"""Schemathesis fuzz pass over the service's OpenAPI schema: no input makes it answer 5xx.

The server under fuzz has tight limits (budget 2, 8 tokens, 10 s deadline) so that generated
requests that are valid run the real engine briefly, and examples are few so the pass stays short.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from llm_tts.service import ServiceSettings, create_app


@pytest.fixture(scope="module")
def fuzz_url(serve_app, tts_engine):
    limits = ServiceSettings(max_budget=2, max_tokens=8, deadline_s=10, max_concurrency=2, max_body_bytes=64 * 1024)
    return serve_app(create_app(tts_engine, limits))


# The schema of an app with the same routes (building an app loads no model); the cases are
# sent to the live server of ``fuzz_url``. Text completions are left out: their request shares
# every field but prompt, logprobs and echo with the chat request fuzzed here (ServedRequest), and
# those three have their own 400 tests (test_completions.py); fuzzing the route costs about as
# much suite time as the chat route's.
schema = schemathesis.openapi.from_dict(create_app(settings=ServiceSettings()).openapi()).exclude(
    path_regex="/v1/completions$"
)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_a_server_error(fuzz_url, case):
    response = case.call(base_url=fuzz_url, timeout=120)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["type"] and error["code"], response.text
