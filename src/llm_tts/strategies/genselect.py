"""Generative selection (``tts_genselect``): the policy reads the distinct answers and picks one.

Each distinct answer (a group of equivalent candidates) is shown once, by its best-scored
candidate's text (its reasoning and answer, cut to :data:`SOLUTION_TOKENS` tokens), numbered, under
the question; the model is asked for the number of the correct one (its reply pre-filled with
:data:`PICK_PREFIX`, so that the number comes next), ``tts_genselect`` times in
ONE backend call (sampled at the run's temperature), and the number picked most often wins (ties:
the larger group, then the one shown first). When the solutions do not fit the context at once,
they are judged in a tournament: groups of as many as fit, each group's winner going on to the
next round, until one is left.

A pick is parsed as "Solution K" (or "#K"), else the first whole number in the reply; a number
outside 1..K or no number is malformed. A group in which no pick parsed is decided by the vote
(its largest answer group, as self-consistency decides) and the metadata says so
(``tts_metadata.selection.fallback``). The picks' tokens are generated through the run's context,
so they count in ``usage`` and against ``tts_token_budget``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

from llm_tts.answers import Vote, group_answers
from llm_tts.backends.base import Backend
from llm_tts.messages import ChatMessage
from llm_tts.metadata import SelectionInfo
from llm_tts.strategies.candidates import Beam
from llm_tts.strategies.ranking import score_key
from llm_tts.types import Segment

# The run context's generate: prompts, samples each, max tokens, stop strings -> samples per prompt.
Generate = Callable[[Sequence[Sequence[int]], int, int, Sequence[str]], list[list[Segment]]]

SOLUTION_TOKENS = 384  # each shown solution is cut to this many tokens (its end kept: the answer is there)
PICK_TOKENS = 12
PICK_PREFIX = "The correct solution is Solution"
GENSELECT_SYSTEM = (
    "You compare candidate solutions to a problem and decide which one is correct. "
    "Reply with the number of the correct solution only, as 'Solution K'."
)
_SOLUTION = re.compile(r"(?:solution|#)\s*#?\s*(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\d.])(\d+)(?!\.?\d)")


def parse_pick(reply: str, count: int) -> int | None:
    """The 0-based solution a reply picks among ``count``, or None when it names none of them."""
    match = _SOLUTION.search(reply) or _NUMBER.search(reply)
    if match is None:
        return None
    k = int(match.group(1))
    return k - 1 if 1 <= k <= count else None


def genselect(
    beams: Sequence[Beam], question: str, backend: Backend, picks: int, generate: Generate
) -> tuple[Beam, Vote, SelectionInfo] | None:
    """The beam generative selection picks, marked "selected", with the vote over the candidates
    (group weights: the picks of the last round) and how it went. ``generate`` is the run
    context's (its tokens count in the run). None when fewer than two distinct answers are there
    to choose between (the caller's rule picks)."""
    groups = group_answers([b.answer for b in beams])
    if len(groups) < 2:
        return None
    shown = [max((beams[i] for i in g.members), key=lambda b: (score_key(b), -beams.index(b))) for g in groups]
    texts = [_solution_text(backend, b) for b in shown]
    sizes = [len(g.members) for g in groups]
    alive = list(range(len(groups)))
    info = SelectionInfo(method="genselect", answers=len(groups))
    tally: Counter[int] = Counter()
    while len(alive) > 1:
        brackets = _brackets(backend, question, alive, texts)
        prompts = [_prompt(backend, question, [texts[j] for j in bracket]) for bracket in brackets]
        room = backend.max_context_tokens - PICK_TOKENS - 1
        asked = [i for i, p in enumerate(prompts) if len(p) <= room]  # one that cannot fit falls back to the vote
        answered = generate([prompts[i] for i in asked], picks, PICK_TOKENS, ("\n\n",)) if asked else []
        rows = dict(zip(asked, answered))
        winners = []
        for i, bracket in enumerate(brackets):
            choices = [parse_pick(seg.text, len(bracket)) for seg in rows.get(i, [])]
            info.picks += len(choices)
            info.malformed += sum(p is None for p in choices)
            tally = Counter(bracket[p] for p in choices if p is not None)
            if not tally:  # no pick parsed: the vote decides this group
                info.fallback = True
                winners.append(max(bracket, key=lambda j: (sizes[j], -j)))
            else:
                winners.append(max(tally, key=lambda j: (tally[j], sizes[j], -j)))
        info.rounds += 1
        alive = winners
    (won,) = alive
    info.votes = {groups[j].answer: n for j, n in tally.items()}
    chosen = shown[won]
    chosen.status = "selected"
    result = Vote(
        selected=beams.index(chosen),
        answer=groups[won].answer,
        distribution={g.answer: len(g.members) for g in groups},
        consensus=sizes[won] / len(beams),
        group_weights={groups[j].answer: float(tally.get(j, 0)) for j in range(len(groups))},
    )
    return chosen, result, info


def _solution_text(backend: Backend, beam: Beam) -> str:
    ids = beam.trajectory.completion_token_ids
    if len(ids) > SOLUTION_TOKENS and not backend.capabilities.chat_only:
        return "..." + backend.decode(list(ids[-SOLUTION_TOKENS:])).strip()
    return beam.text.strip()


def _prompt(backend: Backend, question: str, solutions: Sequence[str]) -> list[int]:
    body = "\n\n".join(f"Solution {k}:\n{text}" for k, text in enumerate(solutions, 1))
    user = f"Problem:\n{question}\n\n{body}\n\nWhich solution is correct? Reply as 'Solution K'."
    messages = [
        ChatMessage(role="system", content=GENSELECT_SYSTEM),
        ChatMessage(role="user", content=user),
        ChatMessage(role="assistant", content=PICK_PREFIX),  # pre-filled: the next tokens are the number
    ]
    return list(backend.render_chat(messages))


def _brackets(backend: Backend, question: str, alive: Sequence[int], texts: Sequence[str]) -> list[list[int]]:
    """``alive`` cut into groups whose prompts fit the context: all at once when they fit, else
    the largest group size that does (pairs at least)."""
    room = backend.max_context_tokens - PICK_TOKENS - 1
    size = len(alive)
    while size > 2:
        chunks = [list(alive[i : i + size]) for i in range(0, len(alive), size)]
        if all(len(_prompt(backend, question, [texts[j] for j in c])) <= room for c in chunks):
            break
        size = (size + 1) // 2
    chunks = [list(alive[i : i + size]) for i in range(0, len(alive), size)]
    # a lone last one gets a bye into the next round inside a group of its own (nothing to compare)
    return chunks if len(chunks[-1]) > 1 or len(chunks) == 1 else [*chunks[:-1][:-1], chunks[-2] + chunks[-1]]
