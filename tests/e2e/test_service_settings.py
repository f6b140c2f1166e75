"""Service settings: each one declared once, its flag, environment variable, help and error hint
derived from that declaration; backend options reach the backend from flags and the environment."""

from __future__ import annotations

import re

import httpx
import pytest

from llm_tts.cli import build_parser, main
from llm_tts.errors import InvalidParameterError
from llm_tts.service.server import settings_from_args
from llm_tts.service.settings import ServiceSettings, settings_fields

NOT_A_VALUE = "not-a-value"
# A valid value for each setting, to check that the flag an error names really sets it.
GOOD = {
    "model": "some/model",
    "backend": "vllm",
    "prm_model": "some/prm",
    "api_key": "k",
    "max_concurrency": "3",
    "deadline_s": "7.5",
    "max_body_bytes": "4096",
    "max_budget": "5",
    "max_tokens": "9",
    "retry_after_s": "2",
    "selector_dir": "/srv/selectors",
    "dtype": "float32",
    "max_model_len": "512",
    "gpu_memory_utilization": "0.5",
    "tensor_parallel_size": "2",
    "kv_cache_space": "1.5",
    "enforce_eager": "true",
    "queue_size": "7",
    "queue_timeout_s": "30",
    "session_store": "memory",
    "session_db": "/tmp/some-sessions.sqlite3",
    "session_pool_size": "4",
    "session_ttl_s": "60",
    "max_sessions": "11",
    "max_session_records": "13",
}


def serve(*flags: str) -> ServiceSettings:
    return settings_from_args(build_parser().parse_args(["serve", *flags]))


def test_every_setting_has_a_flag_and_a_variable_that_set_it():
    names = [name for name, _, _ in settings_fields()]
    assert sorted(names) == sorted(GOOD)  # a new setting gets a value above, and so this test
    for name, _, source in settings_fields():
        from_flag = serve(source.flag, GOOD[name])
        from_env = ServiceSettings.from_env({source.env: GOOD[name]})
        assert getattr(from_flag, name) == getattr(from_env, name) != ServiceSettings.model_fields[name].default, name


def test_every_error_hint_names_a_flag_that_exists():
    checked = 0
    for name, _, source in settings_fields():
        try:
            ServiceSettings.from_env({source.env: NOT_A_VALUE})
        except InvalidParameterError as e:
            hinted = re.search(r"flag (--[\w-]+) or env (\w+)", e.message)
            assert hinted is not None, e.message
            flag, env = hinted.groups()
            assert (flag, env) == (source.flag, source.env)
            assert getattr(serve(flag, GOOD[name]), name) == getattr(ServiceSettings.from_env({env: GOOD[name]}), name)
            checked += 1
    assert checked >= 10  # every setting that is not free text


def test_the_deadline_hint_names_the_deadline_flag():
    with pytest.raises(InvalidParameterError, match=r"deadline_s=.*\(flag --deadline or env LLM_TTS_DEADLINE\)"):
        ServiceSettings.from_env({"LLM_TTS_DEADLINE": "-1"})


def test_help_shows_each_default_from_its_field(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "(default: 600.0; env LLM_TTS_DEADLINE)" in flat
    assert f"(default: {1 << 20}; env LLM_TTS_MAX_BODY_BYTES)" in flat
    assert "--dtype {auto,bfloat16,float16,float32}" in flat


def test_backend_options_from_env_and_flags():
    env = {"LLM_TTS_DTYPE": "bfloat16", "LLM_TTS_MAX_MODEL_LEN": "1024", "LLM_TTS_KV_CACHE_SPACE": "3"}
    settings = ServiceSettings.from_args(
        build_parser().parse_args(
            ["serve", "--max-model-len", "512", "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.7"]
        ),
        environ=env,
    )
    assert settings.backend_options() == {  # the flag wins over the variable; unset ones are left out
        "dtype": "bfloat16",
        "max_model_len": 512,
        "gpu_memory_utilization": 0.7,
        "tensor_parallel_size": 2,
        "kv_cache_space": 3.0,
    }
    assert ServiceSettings().backend_options() == {}


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--gpu-memory-utilization", "1.5"],
            r"gpu_memory_utilization=.*less than or equal to 1 .*--gpu-memory-utilization",
        ),
        (["--max-model-len", "8"], r"max_model_len=.*greater than or equal to 16 .*--max-model-len"),
        (["--dtype", "int8"], r"dtype='int8'.*'auto', 'bfloat16', 'float16' or 'float32' .*--dtype"),
        (
            ["--kv-cache-space", "lots"],
            r"kv_cache_space='lots'.*number .*--kv-cache-space or env LLM_TTS_KV_CACHE_SPACE",
        ),
        (
            ["--backend", "transformers", "--max-model-len", "512"],
            r"max_model_len=512 .*only the vllm backend takes it, not backend 'transformers' \(flag --max-model-len",
        ),
        (["--backend", "openai", "--dtype", "float32"], r"dtype='float32' .*not backend 'openai' \(flag --dtype"),
    ],
)
def test_bad_backend_options_exit_before_loading_a_model(capsys, flags, message):
    assert main(["serve", *flags]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_bad_backend_option_in_the_environment_is_typed():
    with pytest.raises(InvalidParameterError, match=r"tensor_parallel_size=.*\(flag --tensor-parallel-size or env"):
        ServiceSettings.from_env({"LLM_TTS_TENSOR_PARALLEL_SIZE": "0"})


def test_backend_options_reach_the_backend_the_service_starts(serve_app, embedded_model_dir):
    import torch

    from llm_tts.service import create_app

    app = create_app(settings=ServiceSettings.from_env({"LLM_TTS_BACKEND": "transformers", "LLM_TTS_DTYPE": "float32"}))
    url = serve_app(app)  # the engine is built at startup from the settings
    assert httpx.get(f"{url}/health").json()["backend"] == "transformers"
    assert app.state.tts.serving.engine.backend.dtype == torch.float32


def test_vllm_options_reach_the_vllm_backend(serve_app, embedded_model_dir):
    pytest.importorskip("vllm")
    from llm_tts.service import create_app

    app = create_app(
        settings=serve("--backend", "vllm", "--dtype", "float32", "--max-model-len", "512", "--kv-cache-space", "0.5"),
        close_engine=True,
    )
    url = serve_app(app)
    assert httpx.get(f"{url}/health").json()["backend"] == "vllm"
    assert app.state.tts.serving.engine.backend.max_context_tokens == 512
