"""The request id's context: it follows work into threads and onto log records and serve's log lines."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from uvicorn.logging import AccessFormatter

from llm_tts.service.request_context import (
    NO_REQUEST_ID,
    ContextExecutor,
    install_log_record_request_id,
    request_id_var,
    serve_log_config,
)
from llm_tts.service.request_id import accepted_request_id

log = logging.getLogger("llm_tts.test_request_context")


def test_work_submitted_through_the_context_executor_logs_under_the_submitters_id(caplog):
    install_log_record_request_id()
    caplog.set_level(logging.INFO, logger="llm_tts")
    with ThreadPoolExecutor(1) as pool:
        executor = ContextExecutor(pool)
        token = request_id_var.set("req-thread-1")
        try:
            executor.submit(log.info, "inside the run").result()
            pool.submit(log.info, "a plain thread").result()  # no context copied: no id
        finally:
            request_id_var.reset(token)
    log.info("outside any request")
    assert [(r.getMessage(), r.request_id) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("inside the run", "req-thread-1"),
        ("a plain thread", NO_REQUEST_ID),
        ("outside any request", NO_REQUEST_ID),
    ]


def test_serve_access_lines_show_the_request_id():
    fmt = serve_log_config()["formatters"]["access"]["fmt"]
    token = request_id_var.set("req-access-7")
    try:
        record = logging.getLogger("uvicorn.access").makeRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            ("1.2.3.4:5", "GET", "/", "1.1", 200),
            None,
        )
    finally:
        request_id_var.reset(token)
    line = AccessFormatter(fmt, use_colors=False).format(record)
    assert "[req-access-7]" in line and '"GET / HTTP/1.1" 200' in line


def test_accepted_ids():
    assert accepted_request_id("abc-DEF_1.2:3") == "abc-DEF_1.2:3"
    assert accepted_request_id("a" * 128) == "a" * 128
    for bad in (None, "", "a" * 129, "a b", "a\nb", "a/b", "ü"):
        assert accepted_request_id(bad) is None
    assert accepted_request_id("sk-secret", token="sk-secret") is None
    assert accepted_request_id("sk-secret", token="other") == "sk-secret"
