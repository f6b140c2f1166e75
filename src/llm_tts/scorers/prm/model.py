"""The Qwen2.5-Math-PRM architecture, in our code (its remote code cannot be downloaded here).

``Qwen2ForProcessRewardModel`` is a Qwen2 body plus a two-class token head
``score = Linear(h, h) -> ReLU -> Linear(h, 2)``; checkpoint names are ``model.*`` and
``score.0.*`` / ``score.2.*``, exactly as in the published weights, so ``from_pretrained``
loads them. Imported lazily (it pulls in torch and transformers).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel

NUM_LABELS = 2  # index 1 is the "step is correct" class


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    config_class = Qwen2Config

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        self.num_labels = NUM_LABELS
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.ReLU(),
            nn.Linear(config.hidden_size, NUM_LABELS),
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        """Per-token logits ``[batch, seq, 2]`` and the (updated) KV cache."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )
        return self.score(out.last_hidden_state), out.past_key_values
