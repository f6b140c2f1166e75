"""dtype choice (llm_tts.backends.cpu_dtype) and the float32 output head, without the embedded model."""

from __future__ import annotations

import pytest
import torch

from llm_tts.backends.cpu_dtype import CPU_DTYPE_ENV, auto_cpu_dtype, cpu_has_native_bf16
from llm_tts.backends.device import torch_dtype
from llm_tts.backends.float32_head import Float32Head, use_float32_head
from llm_tts.errors import InvalidParameterError


# -- LLM_TTS_CPU_DTYPE ----------------------------------------------------------------------
@pytest.mark.parametrize("forced", ["bfloat16", "float32"])
def test_cpu_dtype_env_forces_the_auto_choice(monkeypatch, tmp_path, forced):
    monkeypatch.setenv(CPU_DTYPE_ENV, forced)
    assert auto_cpu_dtype(tmp_path) == forced
    assert torch_dtype("auto", torch.device("cpu"), tmp_path) == getattr(torch, forced)


def test_an_explicit_dtype_wins_over_the_cpu_dtype_env(monkeypatch, tmp_path):
    monkeypatch.setenv(CPU_DTYPE_ENV, "bfloat16")
    assert torch_dtype("float32", torch.device("cpu"), tmp_path) == torch.float32


def test_without_the_env_the_cpu_rule_decides(monkeypatch, tmp_path):
    monkeypatch.delenv(CPU_DTYPE_ENV, raising=False)
    if cpu_has_native_bf16():
        assert auto_cpu_dtype(tmp_path) == "bfloat16"
    else:  # no weights in tmp_path: float32 fits
        assert auto_cpu_dtype(tmp_path) == "float32"


@pytest.mark.parametrize("bad", ["float16", "fp32", "BFLOAT16", "auto"])
def test_a_bad_cpu_dtype_env_is_a_typed_error(monkeypatch, tmp_path, bad):
    monkeypatch.setenv(CPU_DTYPE_ENV, bad)
    with pytest.raises(
        InvalidParameterError, match=rf"{CPU_DTYPE_ENV}='{bad}' is invalid: must be 'bfloat16' or 'float32'"
    ) as e:
        auto_cpu_dtype(tmp_path)
    assert e.value.param == CPU_DTYPE_ENV


# -- the float32 output head ------------------------------------------------------------------
def tiny_llama(dtype: torch.dtype) -> torch.nn.Module:
    """A small randomly initialised Llama with tied input/output embeddings, like SmolLM2."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).to(dtype).eval()


def test_bf16_model_gets_float32_logits_and_keeps_its_bf16_input_embedding():
    model = tiny_llama(torch.bfloat16)
    embedding = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is embedding  # tied
    assert use_float32_head(model)
    head = model.get_output_embeddings()
    assert isinstance(head, Float32Head) and head.weight.dtype == torch.float32
    assert model.get_input_embeddings().weight is embedding and embedding.dtype == torch.bfloat16
    assert torch.equal(head.weight, embedding.float())
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
        want = torch.nn.functional.linear(out.hidden_states[-1].float(), embedding.float())
    assert out.logits.dtype == torch.float32
    assert torch.equal(out.logits, want)  # not bfloat16 values upcast


def test_float32_model_keeps_its_head():
    model = tiny_llama(torch.float32)
    head = model.get_output_embeddings()
    assert not use_float32_head(model)
    assert model.get_output_embeddings() is head
