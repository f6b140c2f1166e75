"""Engine libraries' logs stay out of sight unless someone asked for them.

vLLM, transformers and torch report their start-up at length (vLLM: about forty lines, one of
them a config dump of several kilobytes), which buries a program's own output. Before an engine
starts, :func:`quiet_engine_logs` applies one rule per library:

- **asked for**: the user configured logging (handlers on the root logger: ``logging.basicConfig``,
  a ``dictConfig``, ``llm-tts --verbose``), configured that library's logger (a level or handler
  of their own), or set that library's own environment variables (``VLLM_CONFIGURE_LOGGING``,
  ``VLLM_LOGGING_LEVEL``, ``VLLM_LOGGING_CONFIG_PATH``, ``TRANSFORMERS_VERBOSITY``). Nothing is
  changed, and vLLM's records flow into the user's configuration (vLLM installs no handler of its own);
- **not asked for**: the library's logger is set to ERROR, Python warnings raised from torch,
  transformers and vLLM are ignored unless warnings were configured (``-W`` or
  ``PYTHONWARNINGS``), and torch's C++ log level is set to ERROR if torch is not loaded yet
  (``TORCH_CPP_LOG_LEVEL`` or ``TORCH_LOGS`` set by the user ask for torch's logs).

A logger quieted here is given back its level when a later engine finds that the user has since
configured logging, so a notebook that calls ``logging.basicConfig`` after a first, quiet engine
sees the next engine's logs.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
import warnings
from typing import Any

# Environment variables through which a library's own logging is asked for.
_LIBRARY_ENV: dict[str, tuple[str, ...]] = {
    "vllm": ("VLLM_CONFIGURE_LOGGING", "VLLM_LOGGING_LEVEL", "VLLM_LOGGING_CONFIG_PATH"),
    "transformers": ("TRANSFORMERS_VERBOSITY",),
    "torch": ("TORCH_CPP_LOG_LEVEL", "TORCH_LOGS"),
}
# A library's logger at this level has not been touched by the user (transformers sets WARNING itself).
_UNTOUCHED_LEVELS: dict[str, frozenset[int]] = {
    "vllm": frozenset({logging.NOTSET}),
    "transformers": frozenset({logging.NOTSET, logging.WARNING}),
}
_WARNING_MODULES = r"(torch|transformers|vllm)(\.|$)"

_lock = threading.Lock()
_quieted: dict[str, int] = {}  # logger name -> the level it had before it was quieted here
_warnings_filtered = False
_env_set_here: set[str] = set()  # variables this module set, which are not the user asking for logs


def logging_configured() -> bool:
    """True when the user configured Python logging (the root logger has handlers)."""
    return bool(logging.getLogger().handlers)


def logs_asked_for(library: str) -> bool:
    """True when ``library``'s logs should show: see the rule in the module doc."""
    if any(os.environ.get(var) for var in _LIBRARY_ENV.get(library, ()) if var not in _env_set_here):
        return True
    if logging_configured():
        return True
    if library in _quieted or library not in _UNTOUCHED_LEVELS:
        return False
    logger = logging.getLogger(library)
    own_handlers = library != "transformers" and bool(logger.handlers)  # transformers always installs one
    return own_handlers or logger.level not in _UNTOUCHED_LEVELS[library]


def quiet_engine_logs() -> None:
    """Apply the module's rule now; call it before an engine library is imported or started."""
    global _warnings_filtered
    if "torch" not in sys.modules and not logs_asked_for("torch"):
        # torch's C++ warnings (vLLM's CPU worker logs one about NUMA binding) print straight to
        # stderr, below Python's logging; their level is read once, when torch loads.
        os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    _keep_vllm_handler_off()
    _configure_transformers_logging()  # it sets its own level on first use; ours must come after
    with _lock:
        for library in _UNTOUCHED_LEVELS:
            logger = logging.getLogger(library)
            if logs_asked_for(library):
                if library in _quieted:
                    logger.setLevel(_quieted.pop(library))
            elif library not in _quieted:
                _quieted[library] = logger.level
                logger.setLevel(logging.ERROR)
        if not _warnings_filtered and not sys.warnoptions and not logging_configured():
            warnings.filterwarnings("ignore", module=_WARNING_MODULES)
            _warnings_filtered = True


def vllm_engine_args() -> dict[str, Any]:
    """``vllm.EngineArgs`` options that apply the rule to one engine (after :func:`quiet_engine_logs`).

    vLLM's weight-loading progress bar shows only when vLLM's logs are asked for. (Whether vLLM
    installs its own log handler is decided by ``VLLM_CONFIGURE_LOGGING``, which
    :func:`quiet_engine_logs` sets: see there.)
    """
    return {"use_tqdm_on_load": logs_asked_for("vllm")}


def _keep_vllm_handler_off() -> None:
    # Unless the user configured vLLM's logging through its own variables, vLLM must not install
    # its handler (which writes INFO to stdout whatever the user configured): its records then go
    # where the user's logging sends them, or nowhere below ERROR. VLLM_CONFIGURE_LOGGING is the
    # one switch every supported vLLM reads (0.20 when it is imported, later releases when an
    # engine starts; see llm_tts.backends.vllm_compat), and engine processes inherit it.
    if not any(os.environ.get(var) for var in _LIBRARY_ENV["vllm"]):
        os.environ["VLLM_CONFIGURE_LOGGING"] = "0"
        _env_set_here.add("VLLM_CONFIGURE_LOGGING")


def _configure_transformers_logging() -> None:
    # transformers is a dependency; a broken install is reported where it is used
    with contextlib.suppress(ImportError):
        importlib.import_module("transformers.utils.logging").get_logger()  # installs its handler and level once
