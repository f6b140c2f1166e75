"""Error codes on the wire map to classes through one table (llm_tts.errors.ERROR_CLASSES), so a
client raises the same class whatever it imported."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import llm_tts
from llm_tts.errors import ERROR_CLASSES, LLMTTSError, ServiceError, error_class
from llm_tts.service import ServiceSettings, create_app

SRC = Path(llm_tts.__file__).resolve().parents[1]

# Run in a fresh interpreter: a ChatTTS client in HTTP mode, nothing else imported.
CLIENT = """
import json, sys
from llm_tts.integrations import ChatTTS
from llm_tts.integrations.transport import remote_error
try:
    ChatTTS(base_url=sys.argv[1], max_retries=0, num_paths=1, max_tokens=4).invoke("What is 2+2?")
    raised = None
except Exception as e:
    raised = type(e)
auth = remote_error(401, json.dumps({"error": {"message": "no", "code": "invalid_api_key"}}).encode())
print(json.dumps({
    "raised": [raised.__module__, raised.__name__] if raised else None,
    "http_status": getattr(raised, "http_status", None),
    "auth": type(auth).__name__,
    "service_imported": "llm_tts.service" in sys.modules,
}))
"""


def package_error_classes() -> set[type[LLMTTSError]]:
    for module in pkgutil.walk_packages(llm_tts.__path__, "llm_tts."):
        importlib.import_module(module.name)  # every module that may define an error class
    found, pending = set(), [LLMTTSError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("llm_tts."):
            found.add(cls)
        pending.extend(cls.__subclasses__())
    return found - {LLMTTSError}


def test_every_error_class_of_the_package_is_in_the_table():
    classes = package_error_classes()
    assert classes, "no error classes found"
    for cls in classes:  # a class that keeps its parent's code decodes as the parent
        listed = ERROR_CLASSES.get(cls.code)
        assert listed is not None and issubclass(cls, listed), f"{cls.__module__}.{cls.__name__} (code {cls.code!r})"
    for code, cls in ERROR_CLASSES.items():
        assert cls.code == code
    assert error_class("something_new") is ServiceError and error_class(None) is ServiceError


def test_a_429_decodes_to_its_class_in_a_process_that_never_imported_the_service(serve_app, tts_engine):
    app = create_app(tts_engine, ServiceSettings(max_concurrency=1, queue_size=0))
    url = serve_app(app)
    slot = app.state.tts.serving.slots.acquire()  # the one run slot is busy: the next request gets 429
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run(
            [sys.executable, "-c", CLIENT, f"{url}/v1"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        )
    finally:
        slot.release()
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["service_imported"] is False
    assert seen["raised"] == ["llm_tts.errors", "TooManyRequestsError"] and seen["http_status"] == 429
    assert seen["auth"] == "AuthenticationError"
