"""Which float dtype a model runs in on a CPU when the user leaves ``dtype="auto"``.

bfloat16 is fast only on CPUs that compute in it natively (AVX512-BF16 or AMX). Elsewhere every
bfloat16 matrix product is converted on the fly and float32 is much faster: on this project's
2-core AVX-512 Xeon (no BF16), SmolLM2-135M prefilled 3.3-3.5x and decoded 1.5-1.9x faster in
float32 on both backends (``bench/bench_dtype.py``). float32 doubles the weights' memory, so it
is chosen only when they still fit in a quarter of the machine's RAM.

``LLM_TTS_CPU_DTYPE=bfloat16`` or ``=float32`` overrides the CPU rule for every local model that
uses it (transformers and vLLM backends, the PRM on either): to reproduce on one machine what the
other kind of CPU runs, e.g. the test suite both ways. An explicit ``dtype`` still wins.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from llm_tts.errors import InvalidParameterError

log = logging.getLogger(__name__)

CPU_DTYPE_ENV = "LLM_TTS_CPU_DTYPE"
CPU_DTYPES = ("bfloat16", "float32")  # the values CPU_DTYPE_ENV may force
_RAM_SHARE = 0.25  # at most this share of RAM for float32 weights


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    import torch

    try:  # private helpers, present in torch 2.x; fall back to the kernel's CPU flags
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True  # unknown: keep the model's own dtype
        return "avx512_bf16" in flags or "amx_bf16" in flags


def forced_cpu_dtype() -> str | None:
    """The dtype ``LLM_TTS_CPU_DTYPE`` forces, or None when it is unset or empty."""
    value = os.environ.get(CPU_DTYPE_ENV, "").strip()
    if not value:
        return None
    if value not in CPU_DTYPES:
        raise InvalidParameterError(
            CPU_DTYPE_ENV, value, "must be 'bfloat16' or 'float32', or unset to choose by the CPU's instructions"
        )
    return value


def auto_cpu_dtype(model_folder: Path) -> str:
    """What ``LLM_TTS_CPU_DTYPE`` forces; else "bfloat16" where the CPU computes in it natively
    or float32 weights would not fit, else "float32"."""
    forced = forced_cpu_dtype()
    if forced is not None:
        log.info("%s=%s: running in %s", CPU_DTYPE_ENV, forced, forced)
        return forced
    if cpu_has_native_bf16():
        return "bfloat16"
    fp32_bytes = 2 * sum(f.stat().st_size for f in Path(model_folder).glob("*.safetensors"))  # stored as 16-bit
    ram = _total_ram()
    if ram is not None and fp32_bytes > _RAM_SHARE * ram:
        log.info(
            "this CPU has no bfloat16 instructions, but float32 weights (%.1f GB) would not fit: using bfloat16",
            fp32_bytes / 1e9,
        )
        return "bfloat16"
    log.info("this CPU has no bfloat16 instructions (AVX512-BF16, AMX): running in float32, which is faster here")
    return "float32"


def _total_ram() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
