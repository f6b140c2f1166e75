"""Server settings: what one deployment of the service allows, read from flags or the environment.

Each setting is declared once, as a field of :class:`ServiceSettings` whose :class:`Source`
names its ``llm-tts serve`` flag and environment variable. The flags, their help text (with the
field's default), the environment parsing and the hint in an error message are all derived from
those fields, so they cannot disagree.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo

from llm_tts.config import MAX_PATHS, MAX_TOKENS
from llm_tts.errors import InvalidParameterError
from llm_tts.sessions.factory import store_kind
from llm_tts.sessions.postgres_store import redacted
from llm_tts.validation_errors import typed_validation

DEFAULT_PORT = 8001


@dataclass(frozen=True, slots=True)
class Source:
    """Where a setting comes from besides code: a flag of ``llm-tts serve`` (which wins) and an
    environment variable. ``backends`` marks a backend option: the backends that take it."""

    flag: str
    env: str
    backends: tuple[str, ...] = ()

    @property
    def hint(self) -> str:
        return f"flag {self.flag} or env {self.env}"


BackendName = Literal["auto", "vllm", "transformers", "openai"]
DType = Literal["auto", "bfloat16", "float16", "float32"]
_LOCAL = ("auto", "vllm", "transformers")  # backends that load a model here
_VLLM = ("auto", "vllm")


class ServiceSettings(BaseModel):
    """Limits and identity of one server. Immutable: a running app never changes them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Annotated[str | None, Source("--model", "LLM_TTS_MODEL")] = Field(
        None, description="model folder or hub id; unset: the embedded SmolLM2"
    )
    backend: Annotated[BackendName, Source("--backend", "LLM_TTS_BACKEND")] = Field(
        "auto", description="generation backend; auto: vLLM when it is installed and starts, else transformers"
    )
    prm_model: Annotated[str | None, Source("--prm-model", "PRM_MODEL_PATH")] = Field(
        None, description="PRM model path for tts_scorer=prm"
    )
    api_key: Annotated[SecretStr | None, Source("--api-key", "LLM_TTS_API_KEY")] = Field(
        None, description="when set, /v1 requests need 'Authorization: Bearer <key>' (prefer the env: flags show in ps)"
    )
    max_concurrency: Annotated[int | None, Source("--max-concurrency", "LLM_TTS_MAX_CONCURRENCY")] = Field(
        None,
        ge=1,
        le=1024,
        description="requests run at once (more wait in the queue); unset: what the engine batches "
        "(vLLM: its max_num_seqs; transformers, which runs one call at a time: 4)",
    )
    deadline_s: Annotated[float, Source("--deadline", "LLM_TTS_DEADLINE")] = Field(
        600.0, gt=0, description="seconds a request may run before it gets 408"
    )
    max_body_bytes: Annotated[int, Source("--max-body-bytes", "LLM_TTS_MAX_BODY_BYTES")] = Field(
        1 << 20, ge=1024, description="largest request body accepted, in bytes (413 above)"
    )
    max_budget: Annotated[int, Source("--max-budget", "LLM_TTS_MAX_BUDGET")] = Field(
        MAX_PATHS,
        ge=1,
        description="largest strategy size a request may ask for (what tts_budget sets: num_paths, "
        "tts_num_trajectories, tts_candidates_per_step or tts_beam_size); larger defaults are lowered to it",
    )
    max_tokens: Annotated[int, Source("--max-tokens", "LLM_TTS_MAX_TOKENS")] = Field(
        MAX_TOKENS,
        ge=1,
        le=MAX_TOKENS,
        description="largest max_tokens a request may ask for; a larger default is lowered to it",
    )
    selector_dir: Annotated[str | None, Source("--selector-dir", "LLM_TTS_SELECTOR_DIR")] = Field(
        None,
        description="folder of selector files (llm-tts fit-selector) a request may name in tts_selector by file "
        "name; unset: only the builtin selectors (builtin:NAME)",
    )
    retry_after_s: Annotated[int, Source("--retry-after", "LLM_TTS_RETRY_AFTER")] = Field(
        1, ge=1, description="seconds sent as Retry-After with 429"
    )
    # -- backend options: the keyword options ChatTTS passes as backend_options ---------------
    dtype: Annotated[DType | None, Source("--dtype", "LLM_TTS_DTYPE", _LOCAL)] = Field(
        None, description="weights' dtype; unset: the backend's auto (the model's own, or float32 on CPUs without bf16)"
    )
    max_model_len: Annotated[int | None, Source("--max-model-len", "LLM_TTS_MAX_MODEL_LEN", _VLLM)] = Field(
        None, ge=16, description="vLLM context length in tokens; unset: the model's"
    )
    gpu_memory_utilization: Annotated[
        float | None, Source("--gpu-memory-utilization", "LLM_TTS_GPU_MEMORY_UTILIZATION", _VLLM)
    ] = Field(
        None,
        gt=0,
        le=1,
        description="vLLM: fraction of GPU memory for weights and KV cache; unset: 0.9, or what is free when --kv-cache-space sizes the KV cache",
    )
    tensor_parallel_size: Annotated[
        int | None, Source("--tensor-parallel-size", "LLM_TTS_TENSOR_PARALLEL_SIZE", _VLLM)
    ] = Field(None, ge=1, description="vLLM: GPUs to shard the model over; unset: 1")
    kv_cache_space: Annotated[float | None, Source("--kv-cache-space", "LLM_TTS_KV_CACHE_SPACE", _VLLM)] = Field(
        None, gt=0, description="vLLM: GiB of KV cache (on CPU; unset: $VLLM_CPU_KVCACHE_SPACE or 2)"
    )
    enforce_eager: Annotated[bool | None, Source("--enforce-eager", "LLM_TTS_ENFORCE_EAGER", _VLLM)] = Field(
        None,
        description="vLLM: true runs eagerly (no CUDA graphs: quicker start, slower decoding); unset: false on CUDA, true on CPU",
    )

    # -- the wait queue and sessions ------------------------------------------------
    queue_size: Annotated[int, Source("--queue-size", "LLM_TTS_QUEUE_SIZE")] = Field(
        4096, ge=0, description="requests that may wait for a run slot; beyond it they get 429 with Retry-After"
    )
    queue_timeout_s: Annotated[float, Source("--queue-timeout", "LLM_TTS_QUEUE_TIMEOUT")] = Field(
        600.0, gt=0, description="seconds a request may wait for a run slot before it gets 503"
    )
    session_store: Annotated[str, Source("--session-store", "LLM_TTS_SESSION_STORE")] = Field(
        "sqlite",
        description="where sessions are kept: sqlite (the file --session-db names; survives restarts), a file path "
        "or sqlite:///path, memory, or a postgresql://user@host:port/db URL that several replicas share "
        "(give its password in the env or ~/.pgpass: flags show in ps)",
    )
    session_db: Annotated[str | None, Source("--session-db", "LLM_TTS_SESSION_DB")] = Field(
        None, description="the sqlite store's file; unset: $XDG_STATE_HOME/llm-tts/sessions.sqlite3"
    )
    session_pool_size: Annotated[int, Source("--session-pool-size", "LLM_TTS_SESSION_POOL_SIZE")] = Field(
        10, ge=1, le=1000, description="a PostgreSQL session store's connections per replica, at most"
    )
    session_ttl_s: Annotated[float, Source("--session-ttl", "LLM_TTS_SESSION_TTL")] = Field(
        3600.0, gt=0, description="seconds a session may sit unused before it expires (404 after)"
    )
    max_sessions: Annotated[int, Source("--max-sessions", "LLM_TTS_MAX_SESSIONS")] = Field(
        10000, ge=1, description="open sessions at most (429 beyond)"
    )
    max_session_records: Annotated[int, Source("--max-session-records", "LLM_TTS_MAX_SESSION_RECORDS")] = Field(
        10000, ge=1, description="records one session may hold (413 beyond)"
    )

    @field_validator("session_store")
    @classmethod
    def _a_store_we_know(cls, value: str) -> str:
        try:
            store_kind(value)
        except InvalidParameterError as e:  # its value is shown without a password: keep that one
            hint = next(src.hint for name, _, src in settings_fields() if name == "session_store")
            raise InvalidParameterError("session_store", e.value, f"{e.limit} ({hint})") from None
        return value

    def __repr_args__(self) -> Any:  # the store URL may hold a password: never in a repr
        for name, value in super().__repr_args__():
            yield name, (redacted(value) if name == "session_store" and isinstance(value, str) else value)

    @model_validator(mode="after")
    def _options_fit_the_backend(self) -> ServiceSettings:
        for name, _, source in settings_fields():
            value = getattr(self, name)
            if source.backends and value is not None and self.backend not in source.backends:
                takers = " and ".join(b for b in source.backends if b != "auto")
                raise InvalidParameterError(
                    name, value, f"only the {takers} backend takes it, not backend {self.backend!r} ({source.hint})"
                )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServiceSettings:
        """Settings from the environment variables, then ``overrides`` (None values are ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {name: env[src.env] for name, _, src in settings_fields() if env.get(src.env)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.build(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Settings from the flags :func:`add_arguments` added, over the environment."""
        return cls.from_env(environ, **{name: getattr(args, name) for name, _, _ in settings_fields()})

    @classmethod
    def build(cls, **values: Any) -> ServiceSettings:
        """Validated settings; a bad value is an InvalidParameterError naming its flag and variable."""
        hints = {name: source.hint for name, _, source in settings_fields()}
        with typed_validation(names=cls.model_fields, hints=hints, secret={"api_key"}):
            return cls(**values)

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def backend_options(self) -> dict[str, Any]:
        """Keyword options for the backend (what ChatTTS calls ``backend_options``): the set ones."""
        options = {name: getattr(self, name) for name, _, src in settings_fields() if src.backends}
        return {name: value for name, value in options.items() if value is not None}


def settings_fields() -> Iterator[tuple[str, FieldInfo, Source]]:
    """Each setting that has a flag and an environment variable: name, field, source."""
    for name, info in ServiceSettings.model_fields.items():
        source = next((m for m in info.metadata if isinstance(m, Source)), None)
        if source is not None:
            yield name, info, source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting. Values are parsed (and rejected) by the settings model, as the
    environment's are, so a bad value gets the same message whichever way it came."""
    for name, info, source in settings_fields():
        parser.add_argument(
            source.flag,
            dest=name,
            default=None,
            metavar=_metavar(source, info),
            help=f"{info.description} ({_default_text(info)}env {source.env})",
        )


def _metavar(source: Source, info: FieldInfo) -> str:
    """``{a,b}`` for a choice, else the flag's name in capitals."""
    kinds = (info.annotation, *get_args(info.annotation))
    literal = next((k for k in kinds if get_origin(k) is Literal), None)
    if literal is not None:
        return "{" + ",".join(get_args(literal)) + "}"
    return source.flag.lstrip("-").replace("-", "_").upper()


def _default_text(info: FieldInfo) -> str:
    return "" if info.default is None else f"default: {info.default}; "  # unset: the description says
