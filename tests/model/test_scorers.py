"""Scorer formulas on hand-made logprobs, aggregation, capability errors, llm_judge on the embedded model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from llm_tts.backends.base import BackendCapabilities, SamplingParams
from llm_tts.errors import CapabilityError, ContextLengthError, InvalidParameterError, UnknownNameError
from llm_tts.messages import ChatMessage
from llm_tts.scorers import ScorerContext, ScoreRequest, aggregate, create_scorer, scorer_names
from llm_tts.scorers.llm_judge import LLMJudgeScorer
from llm_tts.scorers.logprob import ENTROPY_TOP_K, EntropyScorer
from llm_tts.types import Segment, Step, split_steps

LN = math.log


def seg(logprobs, top=None, ids=None, **kw) -> Segment:
    ids = ids or tuple(range(100, 100 + len(logprobs)))
    return Segment(
        token_ids=tuple(ids),
        text="x" * len(ids),
        logprobs=tuple(logprobs),
        top_logprobs=None if top is None else tuple(top),
        **kw,
    )


def whole(segment: Segment) -> Step:
    return Step(segment, 0, len(segment), segment.text)


@dataclass
class FakeBackend:
    """Stands in for a backend that cannot exist here (an API without logprobs, or a low top-k cap)."""

    capabilities: BackendCapabilities = field(default_factory=BackendCapabilities)
    name: str = "fake-api"


def score_one(name: str, step: Step) -> float:
    (scores,) = create_scorer(name, ScorerContext(FakeBackend())).score([ScoreRequest("q", [step])])
    return scores[0]


# -- aggregation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("how", "expected"),
    [("min", 0.2), ("mean", (0.5 + 0.2 + 0.9) / 3), ("max", 0.9), ("product", 0.5 * 0.2 * 0.9), ("last", 0.9)],
)
def test_aggregation_modes(how, expected):
    assert aggregate([0.5, 0.2, 0.9], how) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("how", "expected"), [("min", 0.6), ("mean", 0.75), ("max", 0.9), ("product", 0.54), ("last", 0.6)]
)
def test_aggregation_window_uses_only_the_last_k_steps(how, expected):
    assert aggregate([0.1, 0.9, 0.6], how, window=2) == pytest.approx(expected)


def test_aggregation_window_larger_than_the_trajectory_uses_all_steps():
    assert aggregate([0.3, 0.4], "min", window=10) == pytest.approx(0.3)


def test_unknown_aggregation_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="'median'.*last, max, mean, min, product") as e:
        aggregate([0.5], "median")
    assert e.value.param == "tts_score_aggregation"


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
def test_bad_window_is_a_typed_error(window):
    with pytest.raises(InvalidParameterError, match="tts_window_size"):
        aggregate([0.5], "min", window=window)


def test_empty_trajectory_has_no_score_unless_the_caller_says_so():
    with pytest.raises(InvalidParameterError, match="without steps"):
        aggregate([], "mean")
    assert aggregate([], "mean", empty=-math.inf) == -math.inf


def test_product_refuses_negative_scores_and_nan_is_refused():
    with pytest.raises(InvalidParameterError, match="non-negative"):
        aggregate([-0.5, -0.5], "product")
    with pytest.raises(InvalidParameterError, match="finite"):
        aggregate([0.5, math.nan], "mean")


# -- logprob scorers: formulas on hand-made logprobs --------------------------------------------
def test_perplexity_is_the_geometric_mean_token_probability():
    step = whole(seg([LN(0.5), LN(0.25)]))
    assert score_one("perplexity", step) == pytest.approx(math.sqrt(0.5 * 0.25))


def test_sequence_prob_is_the_probability_of_the_whole_step():
    step = whole(seg([LN(0.5), LN(0.25), LN(0.8)]))
    assert score_one("sequence_prob", step) == pytest.approx(0.5 * 0.25 * 0.8)


def test_entropy_score_from_top_k_with_the_leftover_mass_lumped():
    # position 0: top-2 {0.5, 0.3}, sampled the first; leftover 0.2 is one outcome.
    # position 1: top-1 {0.9}, sampled a token outside the top-k with p=0.05; leftover 0.05.
    top = [{100: LN(0.5), 7: LN(0.3)}, {7: LN(0.9)}]
    step = whole(seg([LN(0.5), LN(0.05)], top=top))
    h0 = -(0.5 * LN(0.5) + 0.3 * LN(0.3) + 0.2 * LN(0.2))
    h1 = -(0.9 * LN(0.9) + 0.05 * LN(0.05) + 0.05 * LN(0.05))
    assert score_one("entropy", step) == pytest.approx(math.exp(-(h0 + h1) / 2))


def test_entropy_is_one_when_the_model_is_certain_and_lower_when_it_hesitates():
    certain = whole(seg([0.0, 0.0], top=[{100: 0.0}, {101: 0.0}]))
    unsure = whole(seg([LN(0.25)], top=[{100: LN(0.25), 1: LN(0.25), 2: LN(0.25), 3: LN(0.25)}]))
    assert score_one("entropy", certain) == pytest.approx(1.0)
    assert score_one("entropy", unsure) == pytest.approx(0.25)  # uniform over 4: H = ln 4


def test_self_certainty_is_the_kl_from_uniform_over_the_top_k():
    # position 0: top-2 {0.5, 0.3}: KL = -ln 2 - (ln 0.5 + ln 0.3) / 2; position 1: top-2 uniform {0.4, 0.4}
    top = [{100: LN(0.5), 7: LN(0.3)}, {101: LN(0.4), 7: LN(0.4)}]
    step = whole(seg([LN(0.5), LN(0.4)], top=top))
    kl0, kl1 = -LN(2) - (LN(0.5) + LN(0.3)) / 2, -LN(2) - LN(0.4)
    assert score_one("self_certainty", step) == pytest.approx(1 - math.exp(-(kl0 + kl1) / 2))


def test_self_certainty_is_zero_for_a_uniform_top_k():
    uniform = whole(seg([LN(0.25)], top=[{100: LN(0.25), 1: LN(0.25), 2: LN(0.25), 3: LN(0.25)}]))
    assert score_one("self_certainty", uniform) == pytest.approx(0.0)


def test_tail_entropy_judges_a_step_by_its_most_uncertain_window():
    from llm_tts.scorers.logprob import TAIL_WINDOW

    sure, unsure = {0: 0.0}, {0: LN(0.25), 1: LN(0.25), 2: LN(0.25), 3: LN(0.25)}
    n = 3 * TAIL_WINDOW  # one uncertain stretch of TAIL_WINDOW tokens in the middle of certain ones
    tops = [unsure if TAIL_WINDOW <= i < 2 * TAIL_WINDOW else sure for i in range(n)]
    step = whole(seg([next(iter(t.values())) for t in tops], top=tops, ids=[0] * n))
    assert score_one("tail_entropy", step) == pytest.approx(0.25)  # that window: H = ln 4
    assert score_one("entropy", step) == pytest.approx(math.exp(-LN(4) / 3))  # the mean dilutes it
    short = whole(seg([LN(0.25)], top=[unsure], ids=[0]))  # shorter than a window: the whole step
    assert score_one("tail_entropy", short) == pytest.approx(0.25)


@pytest.mark.parametrize("name", ["entropy", "perplexity", "sequence_prob", "self_certainty", "tail_entropy"])
def test_higher_is_better_for_a_more_confident_step(name):
    confident = whole(seg([LN(0.9)] * 3, top=[{100 + i: LN(0.9), 1: LN(0.05)} for i in range(3)]))
    shaky = whole(seg([LN(0.3)] * 3, top=[{100 + i: LN(0.3), 1: LN(0.3), 2: LN(0.3)} for i in range(3)]))
    assert 0.0 <= score_one(name, shaky) < score_one(name, confident) <= 1.0


def test_only_the_unscored_steps_are_scored():
    segment = seg([LN(0.5), LN(0.5), LN(0.1), LN(0.2)])
    steps = [Step(segment, 0, 2, "ab"), Step(segment, 2, 3, "c"), Step(segment, 3, 4, "d")]
    scorer = create_scorer("sequence_prob", ScorerContext(FakeBackend()))
    got = scorer.score([ScoreRequest("q", steps, first_unscored=1), ScoreRequest("q", steps, first_unscored=3)])
    assert got == [pytest.approx([0.1, 0.2]), []]


def test_first_unscored_out_of_range_is_a_typed_error():
    with pytest.raises(InvalidParameterError, match=r"first_unscored=3.*\[0, 1\]"):
        ScoreRequest("q", [whole(seg([0.0]))], first_unscored=3)


# -- capability errors: never a silent 0 --------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["entropy", "perplexity", "sequence_prob", "self_certainty", "tail_entropy", "llm_judge"]
)
def test_fake_backend_without_logprobs_is_refused_when_the_request_is_made(name):
    with pytest.raises(CapabilityError, match=name):
        create_scorer(name, ScorerContext(FakeBackend(BackendCapabilities(logprobs=False))))


def test_fake_backend_with_a_low_top_k_cap_gets_a_coarser_entropy_estimate():
    low = EntropyScorer(ScorerContext(FakeBackend(BackendCapabilities(max_top_logprobs=3))))
    assert low.top_logprobs_needed == 3
    assert EntropyScorer.top_logprobs_needed == ENTROPY_TOP_K
    with pytest.raises(CapabilityError, match="top-k"):
        EntropyScorer(ScorerContext(FakeBackend(BackendCapabilities(max_top_logprobs=0))))


@pytest.mark.parametrize("name", ["entropy", "perplexity", "sequence_prob", "self_certainty", "tail_entropy"])
def test_a_step_without_logprobs_raises(name):
    bare = Segment(token_ids=(1, 2), text="ab")
    with pytest.raises(CapabilityError, match="without logprobs"):
        score_one(name, whole(bare))
    injected = Segment.injected((1, 2), "tool output")
    with pytest.raises(CapabilityError, match="injected"):
        score_one(name, whole(injected))


@pytest.mark.parametrize("name", ["entropy", "self_certainty", "tail_entropy"])
def test_top_k_scorers_on_a_step_without_top_logprobs_raise(name):
    with pytest.raises(CapabilityError, match="top_logprobs"):
        score_one(name, whole(seg([LN(0.5)])))


def test_logprob_scorers_declare_what_generation_must_return():
    ctx = ScorerContext(FakeBackend())
    for name in ("entropy", "perplexity", "sequence_prob", "self_certainty", "tail_entropy"):
        assert create_scorer(name, ctx).needs_logprobs
    for name in ("entropy", "self_certainty", "tail_entropy"):
        assert create_scorer(name, ctx).top_logprobs_needed == ENTROPY_TOP_K
    assert create_scorer("perplexity", ctx).top_logprobs_needed == 0


def test_unknown_scorer_lists_the_valid_ones_and_majority_vote_is_not_a_step_scorer():
    names = ["entropy", "llm_judge", "perplexity", "prm", "self_certainty", "sequence_prob", "tail_entropy"]
    assert scorer_names() == names
    with pytest.raises(UnknownNameError, match="majority_vote.*" + ", ".join(names)):
        create_scorer("majority_vote", ScorerContext(FakeBackend()))


# -- on the embedded model ----------------------------------------------------------------------
def test_logprob_scorers_on_real_generated_steps(hf_backend):
    entropy = create_scorer("entropy", ScorerContext(hf_backend))
    prompt = hf_backend.render_chat([ChatMessage(role="user", content="Count: 1, 2, 3")])
    params = SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=0, top_logprobs=entropy.top_logprobs_needed)
    samples = hf_backend.generate([prompt], params)[0]
    requests = []
    for s in samples:
        steps = split_steps(s, hf_backend.token_texts(s.token_ids), ",", hf_backend.decode)
        requests.append(ScoreRequest("Count: 1, 2, 3", steps))
    for name in ("entropy", "perplexity", "sequence_prob", "self_certainty", "tail_entropy"):
        got = create_scorer(name, ScorerContext(hf_backend)).score(requests)
        assert [len(g) for g in got] == [len(r.steps) for r in requests]
        assert all(0.0 < x <= 1.0 for g in got for x in g)
    ppl = create_scorer("perplexity", ScorerContext(hf_backend)).score(requests)
    first = requests[0].steps[0]
    assert ppl[0][0] == pytest.approx(math.exp(sum(first.logprobs) / first.num_tokens))


class SpyBackend:
    """The real backend, with its generate calls recorded."""

    def __init__(self, backend):
        self._backend = backend
        self.calls: list[tuple[int, SamplingParams]] = []

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def generate(self, prompts, params):
        self.calls.append((len(prompts), params))
        return self._backend.generate(prompts, params)


def judge_steps(texts: list[str]) -> list[Step]:
    segment = Segment(token_ids=tuple(range(len(texts))), text="".join(texts))
    return [Step(segment, i, i + 1, t) for i, t in enumerate(texts)]


def test_llm_judge_scores_every_new_step_in_one_batched_call(hf_backend):
    spy = SpyBackend(hf_backend)
    judge = create_scorer("llm_judge", ScorerContext(spy))
    requests = [
        ScoreRequest("What is 2 + 3?", judge_steps(["2 + 3 = 5.\n\n", "The answer is 5."])),
        ScoreRequest("What is 2 + 3?", judge_steps(["2 + 3 = 7.\n\n", "The answer is 7."]), first_unscored=1),
        ScoreRequest("What is 6 * 7?", judge_steps(["6 * 7 = 42."])),
    ]
    got = judge.score(requests)
    assert [len(g) for g in got] == [2, 1, 1]
    assert all(0.0 <= x <= 1.0 for g in got for x in g)
    assert len(spy.calls) == 1
    n_prompts, params = spy.calls[0]
    assert n_prompts == 4 and params.max_tokens == 1 and params.top_logprobs == 20


def test_llm_judge_score_is_p_yes_over_p_yes_plus_p_no(hf_backend):
    judge = LLMJudgeScorer(hf_backend)
    steps = judge_steps(["2 + 3 = 5."])
    (got,) = judge.score([ScoreRequest("What is 2 + 3?", steps)])
    # the same prompt by hand: the first token's distribution over Yes/No variants
    prompt = judge._prompt("What is 2 + 3?", steps, 0)
    assert hf_backend.decode(prompt).rstrip().endswith("Answer:")
    (sample,) = hf_backend.generate([prompt], SamplingParams(n=1, temperature=0.0, max_tokens=1, top_logprobs=20))[0]
    top = sample.top_logprobs[0]
    words = {tid: hf_backend.decode([tid]).strip().strip(".,!:").lower() for tid in top}
    p_yes = sum(math.exp(lp) for tid, lp in top.items() if words[tid] == "yes")
    p_no = sum(math.exp(lp) for tid, lp in top.items() if words[tid] == "no")
    assert p_yes > 0 and p_no > 0  # the pre-filled "Answer:" makes the verdict the likely next token
    assert got == [pytest.approx(p_yes / (p_yes + p_no), abs=1e-6)]


def test_llm_judge_drops_the_earliest_steps_when_the_prompt_is_too_long(hf_backend, monkeypatch):
    judge = LLMJudgeScorer(hf_backend)
    steps = judge_steps([f"Step {i}: {i} + {i} = {2 * i}.\n\n" for i in range(6)])
    full = len(judge._prompt("Add.", steps, 5))
    monkeypatch.setattr(hf_backend, "max_context_tokens", full - 10)
    short = judge._prompt("Add.", steps, 5)
    assert len(short) < full - 10
    text = hf_backend.decode(short)
    assert "Step 5" in text and "Step 0" not in text and "...\n" in text
    monkeypatch.setattr(hf_backend, "max_context_tokens", 20)
    with pytest.raises(ContextLengthError, match="20 tokens"):
        judge.score([ScoreRequest("Add.", steps)])
