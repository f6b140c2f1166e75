"""The PRM scorer against a direct forward pass of the model card's recipe, on a tiny random PRM."""

from __future__ import annotations

import pytest
import torch

from llm_tts.backends import cpu_dtype
from llm_tts.backends.cost import checkpoint_parameters
from llm_tts.backends.cpu_dtype import CPU_DTYPE_ENV
from llm_tts.backends.device import torch_dtype
from llm_tts.backends.usage import metered
from llm_tts.errors import (
    CapabilityError,
    ContextLengthError,
    InvalidParameterError,
    ModelLoadError,
    ModelNotFoundError,
)
from llm_tts.scorers import ScorerContext, ScoreRequest, create_scorer
from llm_tts.scorers.prm import STEP_SEPARATOR, PRMScorer, load_prm, prm_messages, release_prm_models
from llm_tts.types import Segment, Step

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = [
    "Tom starts with 3 apples.\n\n",
    "He buys 4 more, so 3 + 4 = 7.\n\n",
    "  Let me check: 7 - 4 = 3, which matches.\n\n",
    "The answer is \\boxed{7}.",
]
TOL = 1e-4


def steps_of(texts: list[str]) -> list[Step]:
    """Hand-made steps: the PRM reads only their text."""
    seg = Segment(token_ids=tuple(range(len(texts))), text="".join(texts))
    return [Step(seg, i, i + 1, t) for i, t in enumerate(texts)]


def reference(prm, question: str, texts: list[str]) -> tuple[list[int], list[float]]:
    """The model card's recipe: render the whole chat, encode it, one forward pass, P(1) at <extra_0>."""
    tok = prm.tokenizer
    text = tok.apply_chat_template(prm_messages(question, texts), tokenize=False, add_generation_prompt=False)
    ids = tok.encode(text)
    with torch.inference_mode():
        logits, _ = prm.model(input_ids=torch.tensor([ids], device=next(prm.model.parameters()).device))
    probs = torch.softmax(logits.float(), dim=-1)[0, :, 1]
    sep = tok.convert_tokens_to_ids(STEP_SEPARATOR)
    return ids, [float(probs[i]) for i, t in enumerate(ids) if t == sep]


@pytest.fixture()
def scorer(tiny_prm_dir):
    s = PRMScorer(tiny_prm_dir, dtype="float32")
    yield s
    s.close()


def test_input_ids_match_the_rendered_chat_and_separators_sit_after_each_step(scorer):
    ids, _ = reference(scorer.prm, QUESTION, STEPS)
    ours = scorer.input_ids(QUESTION, STEPS)
    assert ours == ids[: len(ours)]  # the reference goes on with the template's closing tokens only
    assert ours[-1] == scorer.prm.sep_id
    assert ours.count(scorer.prm.sep_id) == len(STEPS)
    # each separator follows exactly the tokens of its (stripped) step
    text = scorer.prm.tokenizer.decode(ours, skip_special_tokens=False)
    assert "Tom starts with 3 apples.<extra_0>He buys 4 more" in text


def test_step_rewards_equal_the_direct_forward_pass(scorer):
    _, expected = reference(scorer.prm, QUESTION, STEPS)
    (got,) = scorer.score([ScoreRequest(QUESTION, steps_of(STEPS))])
    assert len(got) == len(STEPS)
    assert got == pytest.approx(expected, abs=TOL)
    assert all(0.0 <= p <= 1.0 for p in got)
    assert max(got) - min(got) > 1e-3  # rewards depend on the position: the test can tell them apart


def test_a_batch_of_requests_is_one_forward_pass_with_the_same_rewards(scorer):
    requests = [
        ScoreRequest(QUESTION, steps_of(STEPS)),
        ScoreRequest("What is 2 + 2?", steps_of(["2 + 2 = 4.", "\\boxed{4}"])),
        ScoreRequest(QUESTION, steps_of(STEPS[:1])),
        ScoreRequest(QUESTION, steps_of(STEPS[:2]), first_unscored=2),  # nothing to score
    ]
    got = scorer.score(requests)
    assert scorer.stats.forward_calls == 1
    assert got[3] == []
    for r, g in zip(requests[:3], got):
        _, expected = reference(scorer.prm, r.question, [s.text for s in r.steps])
        assert g == pytest.approx(expected, abs=TOL)


def test_incremental_scoring_reuses_the_prefix_and_equals_scoring_from_scratch(scorer, tiny_prm_dir):
    _, expected = reference(scorer.prm, QUESTION, STEPS)
    first = scorer.score([ScoreRequest(QUESTION, steps_of(STEPS[:2]))])
    computed_before = scorer.stats.computed_tokens
    prefix_len = len(scorer.input_ids(QUESTION, STEPS[:2]))
    full_len = len(scorer.input_ids(QUESTION, STEPS))

    with metered() as usage:  # what a run's cost counts of this call
        (later,) = scorer.score([ScoreRequest(QUESTION, steps_of(STEPS), first_unscored=2)])

    assert first == [pytest.approx(expected[:2], abs=TOL)]
    assert later == pytest.approx(expected[2:], abs=TOL)
    assert scorer.stats.reused_tokens == prefix_len
    assert scorer.stats.computed_tokens - computed_before == full_len - prefix_len  # only the new steps ran
    assert (usage.prompt_tokens, usage.cached_tokens) == (full_len, prefix_len)
    assert scorer.parameter_count == checkpoint_parameters(tiny_prm_dir)  # the loaded model's, the stored weights


def test_beam_children_and_fresh_rows_share_one_padded_batch(scorer):
    """Two children of one cached parent, a child of a shorter cached parent, and an uncached row."""
    scorer.score([ScoreRequest(QUESTION, steps_of(STEPS[:2])), ScoreRequest(QUESTION, steps_of(STEPS[:1]))])
    calls = scorer.stats.forward_calls
    branches = [
        STEPS[:2] + ["So he has 7 apples."],
        STEPS[:2] + ["So he has 12 apples, then 12 / 2 = 6."],
        STEPS[:1] + ["4 + 3 = 8."],
        ["I do not know."] + STEPS[1:3],
    ]
    requests = [
        ScoreRequest(QUESTION, steps_of(branches[0]), first_unscored=2),
        ScoreRequest(QUESTION, steps_of(branches[1]), first_unscored=2),
        ScoreRequest(QUESTION, steps_of(branches[2]), first_unscored=1),
        ScoreRequest(QUESTION, steps_of(branches[3]), first_unscored=1),  # no cached prefix: from scratch
    ]
    reused_before = scorer.stats.reused_tokens
    got = scorer.score(requests)
    assert scorer.stats.forward_calls == calls + 1
    assert scorer.stats.reused_tokens - reused_before == 2 * len(scorer.input_ids(QUESTION, STEPS[:2])) + len(
        scorer.input_ids(QUESTION, STEPS[:1])
    )
    for r, texts, g in zip(requests, branches, got):
        _, expected = reference(scorer.prm, QUESTION, texts)
        assert g == pytest.approx(expected[r.first_unscored :], abs=TOL)


def test_prefix_cache_is_bounded_in_entries_and_bytes(tiny_prm_dir):
    s = PRMScorer(tiny_prm_dir, dtype="float32", cache_max_entries=2)
    s.score([ScoreRequest(QUESTION, steps_of(STEPS[:k])) for k in (1, 2, 3, 4)])
    assert len(s._cache) == 2
    s.close()
    assert len(s._cache) == 0
    tiny = PRMScorer(tiny_prm_dir, dtype="float32", cache_max_bytes=1024)  # smaller than any entry
    tiny.score([ScoreRequest(QUESTION, steps_of(STEPS[:2]))])
    assert len(tiny._cache) == 0
    (got,) = tiny.score([ScoreRequest(QUESTION, steps_of(STEPS), first_unscored=2)])  # falls back to a full pass
    assert tiny.stats.reused_tokens == 0
    assert got == pytest.approx(reference(tiny.prm, QUESTION, STEPS)[1][2:], abs=TOL)


def test_long_trajectories_drop_the_earliest_steps_from_the_prm_view(scorer, tiny_prm_dir):
    texts = [f"Step {i}: we add {i} and {i + 1} to get {2 * i + 1}." for i in range(8)]
    full = len(scorer.input_ids(QUESTION, texts))
    limit = len(scorer.input_ids(QUESTION, texts[:3]))  # room for about three steps
    assert full > limit
    truncating = PRMScorer(tiny_prm_dir, dtype="float32", max_context_tokens=limit)
    (got,) = truncating.score([ScoreRequest(QUESTION, steps_of(texts))])
    assert len(got) == len(texts)
    context_starts = []
    for i, g in enumerate(got):
        # step i is scored with some window steps[a..i] that fits, exactly as a direct pass on that window
        fits = [a for a in range(i + 1) if len(scorer.input_ids(QUESTION, texts[a : i + 1])) <= limit]
        match = [a for a in fits if abs(reference(scorer.prm, QUESTION, texts[a : i + 1])[1][-1] - g) < TOL]
        assert match, f"step {i} matches no window that fits"
        context_starts.append(min(fits))
    assert context_starts[-1] > 0  # the earliest steps really were dropped for the last step
    truncating.close()


def test_a_single_step_longer_than_the_prm_context_is_a_typed_error(scorer, tiny_prm_dir):
    limit = len(scorer.input_ids(QUESTION, STEPS[:1])) + 5
    small = PRMScorer(tiny_prm_dir, dtype="float32", max_context_tokens=limit)
    long_step = "seven " * 50
    with pytest.raises(ContextLengthError) as e:
        small.score([ScoreRequest(QUESTION, steps_of([STEPS[0], long_step]))])
    assert str(limit) in str(e.value)


def test_create_scorer_prm_loads_from_the_context_path_in_the_local_models_dtype(tiny_prm_dir, hf_backend):
    s = create_scorer("prm", ScorerContext(hf_backend, prm_model=str(tiny_prm_dir)))
    assert isinstance(s, PRMScorer)
    assert s.prm.model.dtype == torch_dtype("auto", s.prm.device, tiny_prm_dir)  # as the backends would run it
    _, expected = reference(PRMScorer(tiny_prm_dir, dtype="float32").prm, QUESTION, STEPS)
    (got,) = s.score([ScoreRequest(QUESTION, steps_of(STEPS))])
    assert got == pytest.approx(expected, abs=0.05)  # bf16 arithmetic where the CPU rule picks it


def test_prm_on_a_cpu_without_bfloat16_follows_the_backends_float32_rule(tiny_prm_dir, monkeypatch):
    # Was a bug: the PRM passed dtype=None ("apply the CPU rule") to transformers, which then
    # loaded the checkpoint's bfloat16 on CPUs where the backends run in float32.
    monkeypatch.setattr(cpu_dtype, "cpu_has_native_bf16", lambda: False)
    assert cpu_dtype.auto_cpu_dtype(tiny_prm_dir) == "float32"  # the rule, for a model this small
    assert torch_dtype("auto", torch.device("cpu"), tiny_prm_dir) == torch.float32  # what the backends load
    s = PRMScorer(tiny_prm_dir, device="cpu")  # dtype="auto"
    assert s.prm.model.dtype == torch.float32


@pytest.mark.parametrize("forced", ["bfloat16", "float32"])
def test_prm_dtype_auto_on_a_cpu_follows_the_cpu_dtype_env(tiny_prm_dir, monkeypatch, forced):
    monkeypatch.setenv(CPU_DTYPE_ENV, forced)
    release_prm_models()  # loaded models are shared per (path, device, dtype name): load afresh
    try:
        assert load_prm(tiny_prm_dir, device="cpu").model.dtype == getattr(torch, forced)
    finally:
        release_prm_models()


def test_prm_without_a_path_is_a_capability_error(hf_backend, monkeypatch):
    monkeypatch.delenv("PRM_MODEL_PATH", raising=False)
    with pytest.raises(CapabilityError, match="PRM_MODEL_PATH"):
        create_scorer("prm", ScorerContext(hf_backend))


def test_prm_path_from_the_environment(hf_backend, tiny_prm_dir, monkeypatch):
    monkeypatch.setenv("PRM_MODEL_PATH", str(tiny_prm_dir))
    assert isinstance(create_scorer("prm", ScorerContext(hf_backend)), PRMScorer)


def test_prm_device_and_dtype_are_checked_like_every_local_models(tiny_prm_dir):
    with pytest.raises(InvalidParameterError, match="device='tpu:0' is invalid"):
        PRMScorer(tiny_prm_dir, device="tpu:0")
    with pytest.raises(InvalidParameterError, match="dtype='int8' is invalid"):
        PRMScorer(tiny_prm_dir, dtype="int8")


def test_missing_or_non_prm_folders_are_typed_errors(tmp_path, embedded_model_dir):
    with pytest.raises(ModelNotFoundError, match="does-not-exist"):
        load_prm(tmp_path / "does-not-exist")
    with pytest.raises(ModelLoadError, match="Qwen2ForProcessRewardModel"):
        load_prm(embedded_model_dir)  # a chat model, not a PRM
