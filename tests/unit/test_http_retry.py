"""The one HTTP retry policy (llm_tts.http_retry): which answers and failures are sent again,
how long to wait (Retry-After in seconds or as an HTTP date, else backoff), and the cap."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from tenacity import RetryCallState

from llm_tts.errors import DeadlineExceededError, InvalidParameterError, TooManyRequestsError
from llm_tts.http_retry import RETRY_STATUSES, RetryableResponse, RetryPolicy, retry_after
from llm_tts.service.errors import error_headers

POLICY = RetryPolicy(max_retries=2, initial_backoff=0.01, max_backoff=0.05, max_retry_after=60)


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers={k.replace("_", "-"): v for k, v in headers.items()})


def wait_after(policy: RetryPolicy, exc: BaseException, attempt: int = 1) -> float:
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # what tenacity hands the wait
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return policy.wait(state)


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after(answer(429, retry_after="7").headers) == 7.0
    assert retry_after(answer(429, retry_after="0.25").headers) == 0.25
    assert retry_after(answer(429).headers) is None and retry_after(None) is None
    assert retry_after(answer(429, retry_after="not a date").headers) is None
    in_30s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25.0 <= retry_after(answer(503, retry_after=in_30s).headers) <= 30.0
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after(answer(503, retry_after=past).headers) == 0.0
    assert retry_after(answer(429, retry_after="-5").headers) == 0.0


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_statuses_a_retry_can_fix_are_retried(status):
    assert status in {408, 429, 500, 502, 503, 504}
    assert POLICY.retries_response(answer(status))


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 409, 413, 422, 499, 501])
def test_other_statuses_are_the_callers(status):
    assert not POLICY.retries_response(answer(status))


def test_the_server_can_say_whether_to_retry():
    assert not POLICY.retries_response(answer(408, x_should_retry="false"))
    assert POLICY.retries_response(answer(409, x_should_retry="true"))


def test_the_service_says_a_deadline_is_not_worth_retrying():
    headers = error_headers(DeadlineExceededError("the run took longer than tts_deadline=1s"))
    assert not POLICY.retries_response(httpx.Response(408, headers=headers))
    headers = error_headers(TooManyRequestsError(limit=1, retry_after_s=2))
    assert POLICY.retries_response(httpx.Response(429, headers=headers)) and retry_after(httpx.Headers(headers)) == 2.0


def test_transport_failures_retried_and_timeouts_by_choice():
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    failures = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectTimeout, httpx.PoolTimeout)
    for failure in failures:
        assert POLICY.retries_error(failure("x", request=request)), failure
    assert not POLICY.retries_error(httpx.UnsupportedProtocol("ftp", request=request))
    assert not POLICY.retries_error(ValueError("a bug, not the network"))
    read_timeout = httpx.ReadTimeout("slow", request=request)
    assert POLICY.retries_error(read_timeout)
    assert not RetryPolicy(retry_timeouts=False).retries_error(read_timeout)  # ChatTTS: the timeout is the deadline


def test_wait_is_the_servers_retry_after_else_capped_backoff():
    assert wait_after(POLICY, RetryableResponse(answer(429, retry_after="3"))) == 3.0
    http_date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25.0 <= wait_after(POLICY, RetryableResponse(answer(503, retry_after=http_date))) <= 30.0
    for attempt in range(1, 10):
        assert 0.0 <= wait_after(POLICY, RetryableResponse(answer(503)), attempt) <= POLICY.max_backoff
        assert 0.0 <= wait_after(POLICY, httpx.ConnectError("refused"), attempt) <= POLICY.max_backoff


def test_a_retry_after_above_the_cap_fails_at_once_and_says_why():
    too_long = RetryableResponse(answer(429, retry_after="120"))
    assert not POLICY.retries_error(too_long)
    assert POLICY.why_stopped(too_long) == "the server asked to retry after 120s, more than max_retry_after=60s"
    assert POLICY.retries_error(RetryableResponse(answer(429, retry_after="60")))
    assert POLICY.why_stopped(RetryableResponse(answer(503))) == "retries exhausted"


def test_the_loop_retries_max_retries_times_then_reraises():
    attempts = 0
    with pytest.raises(RetryableResponse) as info:
        for attempt in POLICY.retrying():
            with attempt:
                attempts += 1
                raise RetryableResponse(answer(503, retry_after="0"))
    assert attempts == POLICY.max_retries + 1 and info.value.response.status_code == 503
    attempts = 0
    with pytest.raises(RetryableResponse):
        for attempt in POLICY.retrying():
            with attempt:
                attempts += 1
                raise RetryableResponse(answer(429, retry_after="3600"))
    assert attempts == 1


@pytest.mark.parametrize(
    "field, value", [("max_retries", -1), ("max_retries", True), ("max_backoff", -0.5), ("max_retry_after", "long")]
)
def test_bad_policy_values_are_typed_errors(field, value):
    with pytest.raises(InvalidParameterError, match=field):
        RetryPolicy(**{field: value})
