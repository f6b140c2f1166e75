"""Segment, Trajectory, Step and split_steps: the token-level types everything else uses."""

from __future__ import annotations

import itertools

import pytest

from llm_tts.errors import InvalidParameterError
from llm_tts.types import Segment, Step, Trajectory, split_steps


def seg(texts: list[str], **kw) -> Segment:
    """A model segment whose token i has id 100 + i and text texts[i]."""
    ids = [100 + i for i in range(len(texts))]
    return Segment(token_ids=ids, text="".join(texts), logprobs=[-0.1 * (i + 1) for i in range(len(texts))], **kw)


# -- Segment ---------------------------------------------------------------------------------
def test_segment_stores_sequences_as_tuples():
    s = Segment(token_ids=[1, 2], text="ab", logprobs=[-1.0, -2.0], top_logprobs=[{1: -1.0}, {2: -2.0}])
    assert s.token_ids == (1, 2) and s.logprobs == (-1.0, -2.0) and s.top_logprobs == ({1: -1.0}, {2: -2.0})
    assert len(s) == 2 and s.is_model
    hash(s.token_ids)  # usable as a dict key (prefix caches, dedup)


def test_segment_logprobs_count_must_match_tokens():
    with pytest.raises(InvalidParameterError, match=r"logprobs.*3 entries.*one per token \(2\)"):
        Segment(token_ids=(1, 2), text="ab", logprobs=(-1.0, -2.0, -3.0))


def test_segment_top_logprobs_count_must_match_tokens():
    with pytest.raises(InvalidParameterError, match=r"top_logprobs.*1 entries.*one per token \(2\)"):
        Segment(token_ids=(1, 2), text="ab", top_logprobs=({1: -1.0},))


def test_segment_source_is_checked():
    with pytest.raises(InvalidParameterError, match="source='tool'.*'model' or 'injected'"):
        Segment(token_ids=(1,), text="a", source="tool")  # type: ignore[arg-type]


def test_injected_segment_has_no_logprobs_and_is_not_model():
    s = Segment.injected([5, 6], "tool output")
    assert s.source == "injected" and not s.is_model
    assert s.logprobs is None and s.finish_reason is None and s.token_ids == (5, 6)


# -- Trajectory ------------------------------------------------------------------------------
def test_trajectory_token_ids_are_prompt_plus_every_segment_in_order():
    a = Segment(token_ids=(10, 11), text="x", finish_reason="stop")
    tool = Segment.injected((20,), "y")
    b = Segment(token_ids=(30,), text="z", finish_reason="eos")
    t = Trajectory(prompt_token_ids=(1, 2, 3)).extend(a).extend(tool, b)
    assert t.token_ids == (1, 2, 3, 10, 11, 20, 30)
    assert t.completion_token_ids == (10, 11, 20, 30)
    assert t.text == "xyz"
    assert t.num_completion_tokens == 4 and t.num_model_tokens == 3
    assert t.loss_mask() == [1, 1, 0, 1]
    assert t.finish_reason == "eos" and t.ended


def test_trajectory_extend_returns_a_new_trajectory():
    t0 = Trajectory(prompt_token_ids=(1,))
    t1 = t0.extend(Segment(token_ids=(2,), text="b", finish_reason="stop"))
    assert t0.segments == () and t0.finish_reason is None and not t0.ended
    assert len(t1.segments) == 1 and t1.finish_reason == "stop" and not t1.ended


def test_trajectory_ended_by_length():
    t = Trajectory((1,)).extend(Segment(token_ids=(2,), text="b", finish_reason="length"))
    assert t.ended


def test_trajectory_steps_skip_injected_and_empty_segments():
    a = Segment(token_ids=(10, 11), text="step one\n", finish_reason="stop")
    tool = Segment.injected((20,), "tool")
    empty = Segment(token_ids=(), text="", finish_reason="eos")
    b = Segment(token_ids=(30,), text="two", finish_reason="length")
    steps = Trajectory((1,), (a, tool, b, empty)).steps()
    assert [s.text for s in steps] == ["step one\n", "two"]
    assert [s.token_ids for s in steps] == [(10, 11), (30,)]
    assert [s.hit_length_limit for s in steps] == [False, True]


# -- Step ------------------------------------------------------------------------------------
def test_step_is_a_view_over_its_segment():
    s = Segment(
        token_ids=(1, 2, 3, 4),
        text="abcd",
        logprobs=(-1.0, -2.0, -3.0, -4.0),
        top_logprobs=({1: -1.0}, {2: -2.0}, {3: -3.0}, {4: -4.0}),
        finish_reason="length",
    )
    step = Step(s, 1, 3, "bc")
    assert step.token_ids == (2, 3) and step.logprobs == (-2.0, -3.0)
    assert step.top_logprobs == ({2: -2.0}, {3: -3.0})
    assert step.num_tokens == 2
    assert not step.hit_length_limit  # ends before the segment's end
    assert Step(s, 3, 4, "d").hit_length_limit


def test_step_without_logprobs():
    step = Step(Segment(token_ids=(1,), text="a"), 0, 1, "a")
    assert step.logprobs is None and step.top_logprobs is None


# -- split_steps -----------------------------------------------------------------------------
def test_split_delimiter_spanning_two_tokens_ends_the_step_at_the_second():
    texts = ["First", ".\n", "\nSecond", " part", ".\n\n", "Third"]
    steps = split_steps(seg(texts), texts, "\n\n")
    assert [(s.start, s.end) for s in steps] == [(0, 3), (3, 5), (5, 6)]
    assert [s.text for s in steps] == ["First.\n\nSecond", " part.\n\n", "Third"]
    # The token that completes the delimiter is the step's last token: the delimiter stays in it.
    assert steps[0].token_ids == (100, 101, 102) and steps[0].logprobs == pytest.approx((-0.1, -0.2, -0.3))


def test_split_steps_cover_the_segment_exactly():
    texts = ["a", "\n", "\n", "b", "\n\n", "\n\n", "c", "\n"]
    s = seg(texts)
    steps = split_steps(s, texts, "\n\n")
    assert steps[0].start == 0 and steps[-1].end == len(s)
    assert all(x.end == y.start for x, y in itertools.pairwise(steps))
    assert "".join(x.text for x in steps) == s.text
    assert [x.text for x in steps] == ["a\n\n", "b\n\n", "\n\n", "c\n"]


def test_split_trailing_delimiter_makes_no_empty_step():
    texts = ["a", "\n\n"]
    steps = split_steps(seg(texts), texts, "\n\n")
    assert [x.text for x in steps] == ["a\n\n"]


def test_split_without_delimiter_is_one_step():
    texts = ["no", " delimiter", " here"]
    steps = split_steps(seg(texts), texts, "\n\n")
    assert len(steps) == 1 and (steps[0].start, steps[0].end) == (0, 3)
    assert split_steps(seg(texts), texts, "") == steps  # empty delimiter: never splits


def test_split_multi_character_delimiter_over_three_tokens():
    texts = ["x", "St", "ep", ":", "y", "Step:", "z"]
    steps = split_steps(seg(texts), texts, "Step:")
    assert [x.text for x in steps] == ["xStep:", "yStep:", "z"]


def test_split_empty_segment():
    assert split_steps(Segment(token_ids=(), text=""), [], "\n") == []


def test_split_uses_decode_for_step_text():
    texts = ["\ufffd", "\ufffd", "\n"]  # halves of one multi-byte character do not decode alone
    s = Segment(token_ids=(1, 2, 3), text="é\n")
    steps = split_steps(s, texts, "\n", decode=lambda ids: {(1, 2, 3): "é\n"}[tuple(ids)])
    assert [x.text for x in steps] == ["é\n"]


def test_split_token_texts_must_match_tokens():
    with pytest.raises(InvalidParameterError, match=r"token_texts.*2 entries.*one per token \(3\)"):
        split_steps(seg(["a", "b", "c"]), ["a", "b"], "\n")
