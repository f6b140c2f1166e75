"""Reasoning steps of tool-integrated trajectories: a code block and its output are one step.

A step that spans several segments (the model's code, the injected output, the model's words
after it) is given to scorers as ONE :class:`~llm_tts.types.Step` whose segment is the model's
part alone (its tokens, logprobs and top-k, concatenated), and whose text is everything, the
output included. Logprob scorers thus score only what the model sampled; a PRM or a judge reads
the output as context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llm_tts.tir.blocks import CodeExecutionSettings
from llm_tts.types import Segment, Step


def merged_step(parts: Sequence[Step | Segment]) -> Step:
    """One step over model parts (steps) and injected segments, in order."""
    model = [p for p in parts if isinstance(p, Step)]
    if len(parts) == 1 and model:
        return model[0]
    text = "".join(p.text for p in parts)
    if not model:
        return Step(Segment((), ""), 0, 0, text)
    lps = [p.logprobs for p in model]
    tops = [p.top_logprobs for p in model]
    last = model[-1]
    seg = Segment(
        tuple(t for p in model for t in p.token_ids),
        "".join(p.text for p in model),
        None if any(x is None for x in lps) else tuple(v for x in lps if x is not None for v in x),
        None if any(x is None for x in tops) else tuple(v for x in tops if x is not None for v in x),
        finish_reason="length" if last.hit_length_limit else last.segment.finish_reason,
        stop_text=last.segment.stop_text,
    )
    return Step(seg, 0, len(seg), text)


def whole_steps(segments: Sequence[Segment]) -> Step:
    """The one step a step strategy grew (its model segments whole, and the outputs between)."""
    return merged_step([Step(s, 0, len(s), s.text) if s.is_model else s for s in segments])


def trajectory_steps(
    segments: Sequence[Segment], split: Callable[[Segment], list[Step]], settings: CodeExecutionSettings
) -> list[Step]:
    """A whole trajectory's steps: model segments split at the delimiter, except inside a code
    block, and a block's output joined to the step that closed it and to the words after it."""
    groups: list[list[Step | Segment]] = []
    joined = False  # the next part belongs to the current step
    for seg in segments:
        if not seg.is_model:
            if groups:
                groups[-1].append(seg)
            else:
                groups.append([seg])
            joined = True
            continue
        for part in split(seg):
            if joined and groups:
                groups[-1].append(part)
            else:
                groups.append([part])
            text = "".join(p.text for p in groups[-1])
            joined = settings.in_open_block(text) or settings.closes_block(part.text)
    return [merged_step(g) for g in groups]
