"""Build a randomly initialised Llama of about 1B parameters, for speed benchmarks only.

Random weights measure speed, not quality: every number measured on this model says so. It
uses the embedded SmolLM2 tokenizer (vocab 49152) so prompts and chat templates are the same.

    python bench/make_random_llama.py OUT_DIR [--device cuda]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def make_random_llama(out: Path, device: str = "cpu") -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llm_tts.models import ensure_embedded_model

    if (out / "config.json").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(str(ensure_embedded_model()))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    print(f"random Llama with {params / 1e9:.2f}B parameters written to {out}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    make_random_llama(args.out, args.device)
