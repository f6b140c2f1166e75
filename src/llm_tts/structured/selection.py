"""A structured run: N whole candidates under the constraint, parsed, then voted or scored.

Selection rule (documented in docs/guides/structured-output.md): candidates that do not parse are counted and
excluded. Among the rest, ``self_consistency`` takes the WHOLE-OBJECT MAJORITY over canonical
values (per-field voting could assemble an object no candidate wrote, violating cross-field
constraints of the schema); a tie goes to the object whose best member has the higher score
(the scorer's, else the mean token logprob), then to the one seen first. ``offline_bon`` scores
every candidate and follows ``tts_selection``: ``weighted`` sums scores per distinct object,
``best`` takes the best-scored valid candidate. Tool calls vote the same way on (name,
canonical arguments minus ``ignore_argument_keys``); the returned call is the selected member's
own, arguments included. When no candidate parses the run raises StructuredOutputError.
"""

from __future__ import annotations

import json
import operator
import uuid
from dataclasses import dataclass, field

from llm_tts.answers import Vote, vote
from llm_tts.errors import StructuredOutputError
from llm_tts.metadata import InvalidToolCallInfo, StructuredInfo, ToolCallInfo
from llm_tts.strategies import Beam, StrategyContext, StrategyOutcome, best_index, mean_logprob
from llm_tts.structured.parsing import Parsed, parse_candidate
from llm_tts.structured.spec import OutputSpec

STRUCTURED_STRATEGIES: tuple[str, ...] = ("self_consistency", "offline_bon")


@dataclass
class StructuredBeam(Beam):
    """A candidate with its parse; its answer (what tts_metadata shows and the vote groups) is
    the canonical object or call, None when it did not parse."""

    parsed: Parsed = field(default_factory=lambda: Parsed(None, error="not parsed"))

    @property
    def answer(self) -> str | None:
        return self.parsed.key


@dataclass
class StructuredOutcome(StrategyOutcome):
    info: StructuredInfo | None = None
    text: str = ""  # the selected output as the message content (JSON mode: the parsed object)


def run_structured(ctx: StrategyContext, spec: OutputSpec, size: int) -> StructuredOutcome:
    sampled = ctx.sample_full(size)
    beams = [StructuredBeam(**{f: getattr(b, f) for f in b.__dataclass_fields__}) for b in sampled]
    for b in beams:
        b.parsed = parse_candidate(b.answer_text, spec)  # never the thinking of a reasoning model
    ctx.score(beams)
    scores = [b.score if ctx.scorer else mean_logprob(b) for b in beams]
    keys = [b.answer for b in beams]
    valid = [i for i, k in enumerate(keys) if k is not None]
    errors = [b.parsed.error or "" for b in beams if b.answer is None]
    if not valid:
        if spec.mode == "tools" and not spec.forces_call:
            return _failed_attempt(ctx, spec, beams, scores, errors)
        raise StructuredOutputError(len(beams), errors)
    scored = ctx.scorer is not None and ctx.name != "self_consistency"  # self_consistency: scores break ties
    result: Vote | None
    if scored and ctx.config.tts_selection == "best":
        chosen = valid[best_index([scores[i] for i in valid])]
        selection, result = "best score among valid candidates", None
    else:
        result = vote(keys, scores, weighted=scored, equivalent=operator.eq)
        chosen = result.selected
        selection = "weighted vote over whole objects" if scored else "majority vote over whole objects"
    selected = beams[chosen]
    selected.status = "selected"
    ctx.report(1, 0, len(beams), selected.score, f"{len(valid)}/{len(beams)} candidates parsed")
    parsed = selected.parsed
    calls = [] if parsed.call is None else [_call_info(parsed)]
    info = StructuredInfo(
        mode=spec.mode,
        constrained=ctx.constraint is not None,
        valid_candidates=len(valid),
        invalid_candidates=len(beams) - len(valid),
        errors=errors,
        selection=selection,
        value=parsed.value,
        tool_calls=calls,
        ignored_argument_keys=sorted(spec.ignore_argument_keys),
    )
    text = json.dumps(parsed.value, ensure_ascii=False) if spec.mode == "json" else selected.text
    return StructuredOutcome(list(beams), selected, result, info, "" if calls else text)


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _call_info(parsed: Parsed) -> ToolCallInfo:
    assert parsed.call is not None
    return ToolCallInfo(id=_call_id(), name=parsed.call.name, arguments=parsed.call.arguments)


def _failed_attempt(
    ctx: StrategyContext, spec: OutputSpec, beams: list[StructuredBeam], scores: list[float | None], errors: list[str]
) -> StructuredOutcome:
    """tool_choice='auto' and every candidate attempted a call that did not parse: the model may
    answer in text here, so the run returns the best-scored attempt's text, with the attempt as
    an invalid tool call (LangChain's invalid_tool_calls), never as a call."""
    selected = beams[best_index(scores)]
    selected.status = "selected"
    ctx.report(1, 0, len(beams), selected.score, f"0/{len(beams)} candidates parsed")
    invalid = InvalidToolCallInfo(
        id=_call_id(), name=selected.parsed.attempted_tool, args=selected.text, error=selected.parsed.error or ""
    )
    info = StructuredInfo(
        mode=spec.mode,
        constrained=ctx.constraint is not None,
        valid_candidates=0,
        invalid_candidates=len(beams),
        errors=errors,
        selection="no candidate parsed: best-scored attempt, reported as an invalid tool call",
        invalid_tool_calls=[invalid],
        ignored_argument_keys=sorted(spec.ignore_argument_keys),
    )
    return StructuredOutcome(list(beams), selected, None, info, selected.text)
