"""Training samples from a session's records, in the field names RL trainers use (Miles):
``tokens``, ``response_length``, ``loss_mask``, ``rollout_log_probs``, ``reward``, ``status``,
``metadata``.

- A multi-turn conversation (each request extends the previous one's messages, or its exact
  tokens) becomes one sample: the first prompt, then each turn's sampled answer (mask 1) and what
  came between the turns (mask 0). Where the template re-rendered an answer differently, the
  sampled tokens are kept and ``metadata.rerendered_turns`` says which turns.
- Branches: a request that continues an earlier turn rather than the latest one (an agent's
  retry, a search fanning out) starts a branch; the session is a tree of turns, and each
  root-to-leaf path is one sample (the shared turns exact in each). The paths of a tree that
  branches share ``metadata.group`` (their first record's id) and say ``metadata.branched``.
- ``metadata.thinking_spans`` lists where a reasoning model's thinking is in the response
  ([start, end) token positions, one per turn that thought): sampled, so its mask is 1.
- Every other candidate of a search becomes its own sample (its request's prompt + its tokens),
  grouped by request in ``metadata.group`` with ``metadata.selected``, its step scores and its
  aggregated score as ``reward`` unless the caller gives one.

Rewards: a turn's reward is set after the fact (``POST /sessions/{id}/rewards``, by completion id
or record). A conversation's sample keeps every turn's reward in ``metadata.turn_rewards`` and
where each turn's answer ends in the response in ``metadata.reward_positions`` (the position of
its last token, for per-turn credit). The sample's ``reward`` is, in order: the request's
``reward`` when given; else the reward of the last turn that has one; else the selected
candidate's aggregated score. A search's other candidates get the request's ``reward`` or their
own score (a completion's reward is for the answer it returned).

``rollout_log_probs`` is the logprob the engine returned for each sampled token (the model's raw
distribution), 0.0 where the mask is 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from llm_tts.sessions.conversation_index import ConversationIndex
from llm_tts.sessions.records import CandidateRecord, RecordStatus, SessionRecord
from llm_tts.sessions.turns import align_turn, extends_messages


class Sample(BaseModel):
    """One training sample: ``tokens`` = prompt + response; the lists cover the response."""

    tokens: list[int]
    response_length: int
    loss_mask: list[int] = Field(description="per response token: 1 sampled by the model, 0 not")
    rollout_log_probs: list[float] = Field(description="per response token: its logprob; 0.0 where the mask is 0")
    reward: float | None = Field(
        description="the request's reward, else the last rewarded turn's reward, else the candidate's aggregated score"
    )
    status: RecordStatus
    metadata: dict[str, Any]


class SampleOptions(BaseModel):
    """How ``POST /sessions/{id}/samples`` (and the export) builds samples."""

    candidates: Literal["all", "selected"] = Field(
        default="all", description="all: one sample per candidate of a search; selected: the selected answers only"
    )
    reward: float | None = Field(
        default=None,
        description="reward of every sample, overriding the turns' rewards; unset: the last rewarded turn's "
        "reward, else the candidate's aggregated score",
    )
    merge_turns: bool = Field(
        default=True, description="merge a multi-turn conversation into one sample; false: one sample per request"
    )


@dataclass
class _Builder:
    """A sample being assembled: prompt tokens, then response pieces."""

    prompt: list[int]
    response: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    def add(self, tokens: Sequence[int], mask: Sequence[int] | int, logprobs: Sequence[float] | None = None) -> None:
        self.response.extend(tokens)
        self.mask.extend([mask] * len(tokens) if isinstance(mask, int) else mask)
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(tokens))

    def sample(self, reward: float | None, status: RecordStatus, metadata: dict[str, Any]) -> Sample:
        return Sample(
            tokens=[*self.prompt, *self.response],
            response_length=len(self.response),
            loss_mask=self.mask,
            rollout_log_probs=[lp if m else 0.0 for lp, m in zip(self.logprobs, self.mask)],
            reward=reward,
            status=status,
            metadata=metadata,
        )


def build_samples(
    records: Sequence[SessionRecord], end_of_turn_ids: Collection[int], options: SampleOptions | None = None
) -> list[Sample]:
    """The session's samples (see the module docstring), conversations first, in record order."""
    options = options or SampleOptions()
    chains = conversations(records, end_of_turn_ids) if options.merge_turns else [[r] for r in records]
    leaves_per_root = Counter(chain[0].id for chain in chains)
    samples = [
        _conversation_sample(chain, end_of_turn_ids, options, branched=leaves_per_root[chain[0].id] > 1)
        for chain in chains
    ]
    if options.candidates == "all":
        for record in records:
            samples.extend(_other_candidates(record, options))
    return samples


def conversation_tree(records: Sequence[SessionRecord], end_of_turn_ids: Collection[int]) -> ConversationIndex:
    """The records as a forest of turns: a record's parent is the turn it continues (by messages,
    or by its exact tokens): the latest conversation's last turn when it can, else an earlier turn
    (a branch)."""
    tree = ConversationIndex(lambda prev, record: _continues(prev, record, end_of_turn_ids))
    for record in records:
        tree.add(record)
    return tree


def conversations(records: Sequence[SessionRecord], end_of_turn_ids: Collection[int]) -> list[list[SessionRecord]]:
    """The conversations: every root-to-leaf path of :func:`conversation_tree` (without branches,
    each record joins the latest conversation whose last turn it extends, else starts one)."""
    return conversation_tree(records, end_of_turn_ids).paths()


def _continues(prev: SessionRecord, record: SessionRecord, end_of_turn_ids: Collection[int]) -> bool:
    if prev.status == "aborted":
        return False  # it never answered: nothing can continue it
    if record.continued_from == prev.id:
        return True
    by_messages = extends_messages(prev.messages, prev.answer_text, record.messages)
    aligned = align_turn(prev.prompt_token_ids, prev.chosen.token_ids, record.prompt_token_ids, end_of_turn_ids)
    return aligned is not None and (by_messages or not aligned.rerendered)


def _conversation_sample(
    chain: list[SessionRecord], end_of_turn_ids: Collection[int], options: SampleOptions, *, branched: bool
) -> Sample:
    first, last = chain[0], chain[-1]
    builder = _Builder(list(first.prompt_token_ids))
    rerendered: list[dict[str, Any]] = []
    thinking: list[list[int]] = []  # [start, end) of each turn's thinking in the response
    positions: list[int] = []  # where each turn's answer ends in the response (its last token)
    for turn, record in enumerate(chain):
        if turn:
            prev = chain[turn - 1]
            aligned = align_turn(prev.prompt_token_ids, prev.chosen.token_ids, record.prompt_token_ids, end_of_turn_ids)
            assert aligned is not None  # conversations() only chains records that align
            if aligned.rerendered:
                rerendered.append(
                    {"turn": turn - 1, "record_id": prev.id, "rendered_answer_token_ids": list(aligned.rendered_answer)}
                )
            builder.add(aligned.between, 0)
        chosen = record.chosen
        thinking += _thinking_spans(chosen, len(builder.response))
        builder.add(chosen.token_ids, chosen.loss_mask, chosen.logprobs)
        positions.append(len(builder.response) - 1)
    chosen = last.chosen
    turn_rewards = [r.reward for r in chain]
    metadata = {
        **_metadata(last, chosen),
        "record_ids": [r.id for r in chain],
        "turns": len(chain),
        "prompt_length": len(first.prompt_token_ids),
        "rerendered_turns": rerendered,
        "thinking_spans": thinking,
        "turn_rewards": turn_rewards,
        "reward_positions": positions,
        "branched": branched,
    }
    if branched:  # the leaf paths of one tree start from one prompt and compete: one group
        metadata["group"] = first.id
    rewarded = next((r for r in reversed(turn_rewards) if r is not None), None)
    reward = options.reward if options.reward is not None else rewarded if rewarded is not None else chosen.score
    return builder.sample(reward, _worst(r.status for r in chain), metadata)


def _other_candidates(record: SessionRecord, options: SampleOptions) -> list[Sample]:
    out = []
    for candidate in record.candidates:
        if candidate.index == record.selected:
            continue
        builder = _Builder(list(record.prompt_token_ids))
        builder.add(candidate.token_ids, candidate.loss_mask, candidate.logprobs)
        metadata = {**_metadata(record, candidate), "record_ids": [record.id], "turns": 1}
        metadata.update(
            prompt_length=len(record.prompt_token_ids),
            rerendered_turns=[],
            thinking_spans=_thinking_spans(candidate, 0),
            turn_rewards=[None],  # a turn's reward is for the answer it returned, not its rivals
            reward_positions=[len(builder.response) - 1],
            branched=False,
        )
        status: RecordStatus = "truncated" if candidate.finish_reason == "length" else "completed"
        reward = options.reward if options.reward is not None else candidate.score
        out.append(builder.sample(reward, status, metadata))
    return out


def _metadata(record: SessionRecord, candidate: CandidateRecord) -> dict[str, Any]:
    """What every sample says about the request and candidate it comes from."""
    return {
        "session_id": record.session_id,
        "group": record.id,
        "selected": candidate.index == record.selected,
        "candidate_index": candidate.index,
        "candidate_status": candidate.status,
        "step_scores": candidate.step_scores,
        "score": candidate.score,
        "strategy": record.strategy,
        "scorer": record.scorer,
    }


def _thinking_spans(candidate: CandidateRecord, offset: int) -> list[list[int]]:
    """Where a reasoning model's thinking is in the response: [start, end) token positions."""
    return [[offset, offset + candidate.thinking_tokens]] if candidate.thinking_tokens else []


def _worst(statuses: Any) -> RecordStatus:
    seen = set(statuses)
    return "aborted" if "aborted" in seen else "truncated" if "truncated" in seen else "completed"
