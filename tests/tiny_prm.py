"""A tiny, randomly initialised PRM checkpoint in the Qwen2.5-Math-PRM format, for tests.

No PRM weights can be downloaded here, so tests build one: ``config.json`` with architectures
``["Qwen2ForProcessRewardModel"]`` and model_type ``qwen2``, safetensors named ``model.*`` and
``score.0.*`` / ``score.2.*``, and the embedded SmolLM2 tokenizer (a ChatML template like
Qwen's) plus the special token ``<extra_0>``. Usable by transformers (our class) and by vLLM's
native ``Qwen2ForProcessRewardModel``.
"""

from __future__ import annotations

from pathlib import Path

STEP_SEPARATOR = "<extra_0>"


def make_tiny_prm(path: str | Path, *, max_position_embeddings: int = 1024, seed: int = 0, **sizes: int) -> Path:
    """Write the tiny PRM into folder ``path`` (created if needed) and return it.

    ``sizes`` override the Qwen2 config (e.g. ``hidden_size``, ``num_hidden_layers``) for a
    bigger random PRM, as the benchmark uses.
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config

    from llm_tts.models import ensure_embedded_model
    from llm_tts.scorers.prm.model import Qwen2ForProcessRewardModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(ensure_embedded_model()))
    tokenizer.add_special_tokens({"additional_special_tokens": [STEP_SEPARATOR]})
    dims = {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,  # head_dim 64, grouped-query attention like the real model
        "initializer_range": 0.1,  # wide enough that step rewards differ visibly between positions
    }
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        **{**dims, **sizes},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.architectures = ["Qwen2ForProcessRewardModel"]
    torch.manual_seed(seed)
    model = Qwen2ForProcessRewardModel(config).to(torch.bfloat16)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path
