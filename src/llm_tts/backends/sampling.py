"""Choosing the next token from a batch of float32 logits: greedy, temperature, top-k, top-p.

Ties are broken as greedy breaks them: ``argmax`` returns the first (lowest token id) of tied
maxima, and one stable descending sort, shared by top-k and top-p, keeps tied logits in token-id
order. So top-k keeps exactly ``k`` tokens, and top_k=1 or a tiny top_p sample the greedy token
even where logits tie (bfloat16 logits did, before the heads moved to float32).
"""

from __future__ import annotations

from typing import Any

from llm_tts.backends.base import SamplingParams


def sample_next_tokens(logits: Any, params: SamplingParams, generator: Any) -> Any:
    """One token id per row of ``logits`` (rows x vocab), drawn with ``generator``."""
    import torch

    if params.greedy:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    if params.top_k or params.top_p < 1.0:
        # A threshold (`logits < kth`, as vLLM does) would keep every token tied with the k-th.
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
        if params.top_k:
            sorted_logits[:, params.top_k :] = float("-inf")
        if params.top_p < 1.0:
            probs = torch.softmax(sorted_logits, dim=-1)
            drop = probs.cumsum(dim=-1) - probs > params.top_p  # keep the smallest set reaching top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
