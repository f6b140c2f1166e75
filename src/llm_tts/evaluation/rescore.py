"""Re-scoring without generating: another aggregation, window or selection rule, applied to the
candidates and step scores ``results.jsonl`` recorded, in seconds.

What a strategy's choice depends on decides what can change (the candidates themselves are what
was generated; a search that ranked partial answers by their score would have searched
differently, which only a new run shows):

- ``offline_bon``, ``dvts``, ``particle_filtering``: the final candidates (not pruned) are
  re-aggregated and chosen by ``tts_selection`` exactly as the strategy chooses.
- ``beam_search``: the same among its final beams that finished, or the open ones when none did
  (a beam cut by ``max_tokens`` counts as finished; one cut by the context length is not told
  apart from an open one).
- ``self_consistency`` with a scorer: the vote is taken again with the new scores breaking ties;
  with ``majority_vote`` nothing here changes it.
- ``online_bon``: one trajectory; only its aggregated score changes.

With the run's own settings every row keeps the run's choice. A trace (``llm_tts.trace``) carries
the same facts: :func:`rescore_trace` re-applies the same rules to the nodes it lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llm_tts.answers import Vote, vote
from llm_tts.config import TTSConfig
from llm_tts.errors import DatasetError, UnknownNameError
from llm_tts.evaluation.plots import write_plots
from llm_tts.evaluation.records import ResultRow, is_correct
from llm_tts.evaluation.store import ResultsStore
from llm_tts.evaluation.summary import ConfigurationSummary, summarize, write_summary
from llm_tts.metadata import CandidateInfo
from llm_tts.scorers.aggregation import aggregate
from llm_tts.strategies import VOTING_SCORER, select_index
from llm_tts.trace import Trace

RESCORE_SETTINGS = ("tts_score_aggregation", "tts_window_size", "tts_selection")


def rescore_row(row: ResultRow, settings: Mapping[str, Any]) -> ResultRow:
    """``row`` chosen again under ``settings`` (a subset of :data:`RESCORE_SETTINGS`)."""
    for name in settings:
        if name not in RESCORE_SETTINGS:
            raise UnknownNameError("re-score setting", name, list(RESCORE_SETTINGS), param=name)
    config = TTSConfig.create(**{**row.config, **settings})  # typed errors for bad values
    md = row.metadata
    if md is None:
        return row.model_copy(update={"config": config.model_dump(mode="json")})
    candidates = md.candidates
    scores = [
        aggregate(c.step_scores, config.tts_score_aggregation, config.tts_window_size) if c.step_scores else c.score
        for c in candidates
    ]
    index, result = _choose(md.strategy, md.scorer, candidates, scores, config)
    chosen = candidates[index]
    new_candidates = [
        c.model_copy(
            update={"score": s, "status": "selected" if i == index else ("pruned" if c.status == "pruned" else "kept")}
        )
        for i, (c, s) in enumerate(zip(candidates, scores))
    ]
    update: dict[str, Any] = {"candidates": new_candidates, "aggregated_score": scores[index]}
    if result is not None:
        update |= {
            "selected_answer": result.answer,
            "consensus_score": result.consensus,
            "uncertainty_score": 1.0 - result.consensus,
            "answer_distribution": result.distribution,
        }
    elif md.scorer != VOTING_SCORER:  # no vote decided (the pure vote's outcome stands as recorded)
        update |= {
            "selected_answer": chosen.answer,
            "consensus_score": None,
            "uncertainty_score": None,
            "answer_distribution": None,
        }
    metadata = md.model_copy(update=update)
    return row.model_copy(
        update={
            "config": config.model_dump(mode="json"),
            "metadata": metadata,
            "selected_answer": metadata.selected_answer,
            "correct": is_correct(metadata.selected_answer, row.gold),
        }
    )


def rescore_trace(trace: Trace, settings: Mapping[str, Any]) -> str:
    """The id of the node the run's final rule picks under ``settings`` (see :func:`rescore_row`),
    read from the trace alone: with the run's own settings, the run's selected node."""
    for name in settings:
        if name not in RESCORE_SETTINGS:
            raise UnknownNameError("re-score setting", name, list(RESCORE_SETTINGS), param=name)
    config = TTSConfig.create(**{**trace.run.config, **settings})
    nodes = sorted((n for n in trace.nodes if n.candidate is not None), key=lambda n: n.candidate or 0)
    candidates = [candidate_of(trace, n.id) for n in nodes]
    scores = [
        aggregate(c.step_scores, config.tts_score_aggregation, config.tts_window_size) if c.step_scores else c.score
        for c in candidates
    ]
    index, _ = _choose(trace.run.strategy, trace.run.scorer or VOTING_SCORER, candidates, scores, config)
    return nodes[index].id


_AS_CANDIDATE_STATUS = {"selected": "selected", "finished": "kept", "aborted": "kept", "kept": "kept"}


def candidate_of(trace: Trace, node_id: str) -> CandidateInfo:
    """The tts_metadata candidate a trace's node stands for: its path's text and step scores."""
    path = trace.path(node_id)[1:]
    node = path[-1]
    steps = node.step_scores if node.kind == "candidate" else [n.step_score for n in path if n.step_score is not None]
    return CandidateInfo.model_validate(
        {
            "text": "".join(n.text for n in path),
            "answer": node.answer,
            "score": node.score,
            "step_scores": steps,
            "status": _AS_CANDIDATE_STATUS.get(node.status or "", "pruned"),
            "num_tokens": node.tokens[1] if node.tokens else 0,
            "finish_reason": node.finish_reason or "stop",
        }
    )


def _choose(
    strategy: str, scorer: str, candidates: Sequence[CandidateInfo], scores: Sequence[float | None], config: TTSConfig
) -> tuple[int, Vote | None]:
    """The index each strategy's own final rule picks (see the module doc), and its vote if any."""
    current = _selected(candidates)
    final = [i for i, c in enumerate(candidates) if c.status != "pruned"]
    if strategy == "self_consistency":
        if scorer == VOTING_SCORER:
            return current, None
        voted = vote([c.answer for c in candidates], scores)
        return voted.selected, voted
    if strategy in ("offline_bon", "dvts", "particle_filtering", "beam_search"):
        pool = final
        if strategy == "beam_search":  # among the beams that finished; the open ones only if none did
            pool = [
                i
                for i in final
                if candidates[i].finish_reason == "stop" or candidates[i].num_tokens >= config.max_tokens
            ]
            pool = pool or final
        j, result = select_index([candidates[i].answer for i in pool], [scores[i] for i in pool], config.tts_selection)
        return pool[j], result
    return current, None  # online_bon: the search kept one trajectory


def _selected(candidates: Sequence[CandidateInfo]) -> int:
    return next(i for i, c in enumerate(candidates) if c.status == "selected")


def rescore_directory(
    directory: str | Path, settings: Mapping[str, Any], out: str | Path | None = None, *, plots: bool = True
) -> tuple[Path, list[ConfigurationSummary]]:
    """Re-score every row of ``directory`` into ``out`` (default: a subfolder named by the
    settings) with its own results.jsonl, summary and plots; the original stays untouched."""
    source = ResultsStore(directory)
    rows = list(source.latest().values())
    if not rows:
        raise DatasetError(
            f"{source.path} holds no results: give the --out folder of an llm-tts eval run", param="directory"
        )
    rescored = [rescore_row(row, settings) for row in rows]
    tag = "-".join(f"{k.removeprefix('tts_')}={v}" for k, v in sorted(settings.items())) or "same"
    target = Path(out) if out is not None else Path(directory) / f"rescored-{tag}"
    ResultsStore(target).rewrite(rescored)
    summaries = summarize(rescored)
    write_summary(target, summaries)
    if plots:
        write_plots(target, summaries, rescored)
    return target, summaries
