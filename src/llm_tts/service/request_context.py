"""The request being served, as a context variable that follows its work into threads and logs.

:class:`~llm_tts.service.request_id.RequestIdMiddleware` sets :data:`request_id_var` in the
request's task; work the request hands to threads carries it when submitted through
:class:`ContextExecutor` (``asyncio.to_thread`` copies the context itself), and
:func:`install_log_record_request_id` gives every log record a ``request_id`` attribute (``-``
outside a request), so any log format can show it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextvars import ContextVar, copy_context
from typing import Any, TypeVar

REQUEST_ID_HEADER = "X-Request-Id"
NO_REQUEST_ID = "-"  # a log record's request_id outside any request
request_id_var: ContextVar[str | None] = ContextVar("llm_tts_request_id", default=None)
T = TypeVar("T")


def current_request_id() -> str | None:
    """The id of the request being served in this context (None outside a request)."""
    return request_id_var.get()


class ContextExecutor(Executor):
    """An executor whose work runs in the submitter's context (its request id), not the thread's."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self.inner.submit(copy_context().run, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


_installed = False
_install_lock = threading.Lock()


def install_log_record_request_id() -> None:
    """Give every log record a ``request_id`` attribute (the current request's, else ``-``);
    idempotent, and it keeps whatever record factory was installed before."""
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.request_id = request_id_var.get() or NO_REQUEST_ID
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def serve_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with the request id on every line, and llm_tts's own
    INFO lines (one per request) written next to uvicorn's."""
    from uvicorn.config import LOGGING_CONFIG

    install_log_record_request_id()
    config: dict[str, Any] = {
        **LOGGING_CONFIG,
        "formatters": {name: dict(f) for name, f in LOGGING_CONFIG["formatters"].items()},
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "llm_tts": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
    for formatter in config["formatters"].values():
        formatter["fmt"] = formatter["fmt"].replace("%(levelprefix)s", "%(levelprefix)s [%(request_id)s]", 1)
    return config
