"""Where a local model runs and in which float dtype: one rule for every local model.

Both backends and both PRM runners take their device and dtype from here (the LLM judge runs on
a backend, so it follows the same rule). ``device="auto"`` is CUDA when there is one, else the
CPU. ``dtype="auto"`` is, on a CPU, :func:`llm_tts.backends.cpu_dtype.auto_cpu_dtype` (float32
where the CPU has no bfloat16 instructions); on CUDA, bfloat16 where supported (else float16)
for transformers models and the model's own dtype for vLLM engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_tts.backends.cpu_dtype import auto_cpu_dtype
from llm_tts.errors import BackendUnavailableError, InvalidParameterError


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pick_device(device: str) -> Any:
    """The ``torch.device`` for ``device`` ("auto", "cpu", "cuda", "cuda:N"), checked to exist."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidParameterError("device", device, "must be 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            raise BackendUnavailableError(
                f"device={device!r} was asked for but this machine has {count} usable CUDA device(s) "
                f"(torch {torch.__version__}); use device='cpu' or install a CUDA build of torch"
            )
    return dev


def parse_dtype(dtype: str) -> Any:
    """The ``torch.dtype`` named by ``dtype``, or None for "auto"; checked before anything loads."""
    import torch

    if dtype == "auto":
        return None
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise InvalidParameterError(
            "dtype", dtype, "must be 'auto' or a float dtype name such as 'bfloat16', 'float32'"
        )
    return value


def torch_dtype(dtype: str, device: Any, model_folder: Path) -> Any:
    """The ``torch.dtype`` a transformers model in ``model_folder`` runs in on ``device``."""
    import torch

    chosen = parse_dtype(dtype)
    if chosen is not None:
        return chosen
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, auto_cpu_dtype(model_folder))


def engine_dtype(dtype: str, model_folder: Path, *, on_cpu: bool) -> str:
    """The dtype option for a vLLM engine: "auto" on a CPU becomes the CPU rule's choice; other
    values go to vLLM unchanged (it checks them)."""
    return auto_cpu_dtype(model_folder) if dtype == "auto" and on_cpu else dtype
