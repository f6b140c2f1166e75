"""Token choice from logits (llm_tts.backends.sampling), on hand-made tensors with tied logits.

bfloat16 logits tie at the top (SmolLM2 gave 29.0 and 29.0 for its two best first tokens), so
these cases are real: top-k must keep exactly k tokens and break ties as greedy does.
"""

from __future__ import annotations

import pytest
import torch

from llm_tts.backends.base import SamplingParams
from llm_tts.backends.sampling import sample_next_tokens

DRAWS = 200


def draws(logits: torch.Tensor, **params) -> set[int]:
    """Every token id drawn for row 0 over DRAWS seeds."""
    p = SamplingParams(temperature=1.0, **params)
    return {int(sample_next_tokens(logits, p, torch.Generator().manual_seed(s))[0]) for s in range(DRAWS)}


def test_top_k_1_picks_the_first_of_tied_maxima_like_greedy():
    logits = torch.tensor([[1.0, 5.0, 5.0, 5.0, 0.0]])
    assert int(logits.argmax(dim=-1)[0]) == 1
    assert draws(logits, top_k=1) == {1}


def test_top_k_keeps_exactly_k_tokens_when_the_kth_is_tied():
    logits = torch.tensor([[5.0, 3.0, 3.0, 3.0, 0.0]])
    assert draws(logits, top_k=2) == {0, 1}  # not 2 and 3, tied with the 2nd


def test_tiny_top_p_picks_the_first_of_tied_maxima():
    logits = torch.tensor([[0.0, 2.0, 7.0, 7.0, 7.0]])
    assert draws(logits, top_p=1e-6) == {2}


def test_top_k_then_top_p_share_the_tie_order():
    logits = torch.tensor([[4.0, 4.0, 4.0, 4.0]])  # 0.25 each; top_k=3 leaves 1/3 each
    assert draws(logits, top_k=3, top_p=0.5) == {0, 1}  # the smallest set reaching 0.5, in id order


@pytest.mark.parametrize("filters", [{"top_k": 1}, {"top_p": 1e-6}, {"top_k": 1, "top_p": 0.9}])
def test_batch_of_tied_rows_samples_greedy_tokens(filters):
    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 4, (64, 50), generator=g).float()  # every row has ties at its maximum
    params = SamplingParams(temperature=1.5, **filters)
    got = sample_next_tokens(logits, params, torch.Generator().manual_seed(1))
    assert got.tolist() == logits.argmax(dim=-1).tolist()


def test_without_filters_every_token_can_be_drawn():
    logits = torch.zeros((1, 4))
    assert draws(logits) == {0, 1, 2, 3}


def test_greedy_ignores_the_generator():
    logits = torch.tensor([[0.0, 3.0, 3.0], [2.0, 1.0, 2.0]])
    got = sample_next_tokens(logits, SamplingParams(temperature=0.0), torch.Generator().manual_seed(5))
    assert got.tolist() == [1, 0]
