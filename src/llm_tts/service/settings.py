"""Server settings: what one deployment of the service allows, read from flags or the environment."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from llm_tts.config import MAX_PATHS, MAX_TOKENS
from llm_tts.errors import InvalidParameterError

DEFAULT_PORT = 8001

# Environment variable -> settings field. Flags of `llm-tts serve` override these.
ENV_VARS: dict[str, str] = {
    "LLM_TTS_MODEL": "model",
    "LLM_TTS_BACKEND": "backend",
    "PRM_MODEL_PATH": "prm_model",
    "LLM_TTS_API_KEY": "api_key",
    "LLM_TTS_MAX_CONCURRENCY": "max_concurrency",
    "LLM_TTS_DEADLINE": "deadline_s",
    "LLM_TTS_MAX_BODY_BYTES": "max_body_bytes",
    "LLM_TTS_MAX_BUDGET": "max_budget",
    "LLM_TTS_MAX_TOKENS": "max_tokens",
}


class ServiceSettings(BaseModel):
    """Limits and identity of one server. Immutable: a running app never changes them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(None, description="model folder or hub id; None = the embedded SmolLM2")
    backend: str = Field("auto", description="auto, vllm, transformers or openai")
    prm_model: str | None = Field(None, description="PRM model path for tts_scorer=prm")
    api_key: SecretStr | None = Field(None, description="when set, /v1 requests need 'Authorization: Bearer <key>'")
    max_concurrency: int = Field(4, ge=1, le=256, description="requests run at once; more get 429")
    deadline_s: float = Field(600.0, gt=0, description="longest a request may run before it gets 408")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body accepted (413 above)")
    max_budget: int = Field(
        MAX_PATHS, ge=1, description="largest strategy size a request may ask for (what tts_budget sets: num_paths, "
        "tts_num_trajectories, tts_candidates_per_step or tts_beam_size); larger defaults are lowered to it"
    )
    max_tokens: int = Field(
        MAX_TOKENS, ge=1, le=MAX_TOKENS, description="largest max_tokens a request may ask for; a larger default is lowered to it"
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 429")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ServiceSettings:
        """Settings from ``LLM_TTS_*`` variables, then ``overrides`` (None values are ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {field: env[var] for var, field in ENV_VARS.items() if env.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.build(**values)

    @classmethod
    def build(cls, **values: Any) -> ServiceSettings:
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            var = next((v for v, f in ENV_VARS.items() if f == field), None)
            where = f" (flag --{field.replace('_', '-')}" + (f" or env {var})" if var else ")")
            shown = "***" if field == "api_key" else err.get("input")
            raise InvalidParameterError(field, shown, err["msg"] + where) from None

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

