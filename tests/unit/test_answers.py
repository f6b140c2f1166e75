"""Final-answer extraction, equivalence by math-verify, voting and tie-breaking."""

from __future__ import annotations

import threading

import pytest

from llm_tts.answers import (
    MAX_MATH_CHARS,
    answers_equivalent,
    extract_answer,
    group_answers,
    has_final_answer,
    normalize,
    vote,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so the sum is \\boxed{71}.", "71"),
        ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # the last box wins
        ("nested \\boxed{\\frac{\\sqrt{2}}{2}} here", "\\frac{\\sqrt{2}}{2}"),
        ("a set \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{7}", "7"),
        ("The answer is 42.", "42"),
        ("Therefore, the final answer is: $\\frac{3}{4}$.\nDone", "\\frac{3}{4}"),
        ("Answer: **Paris**", "Paris"),
        ("we add 23 and 48 and get 71 apples", "71"),  # last-number fallback
        ("the total is 1,000", "1000"),
        ("it is -3.5 degrees", "-3.5"),
        ("no numbers here", None),
        ("an empty box \\boxed{} and nothing else", None),
        ("The answer is \\boxed{}", None),  # a template's empty box, phrased
        ("x \\boxed{\\boxed{}}", None),
        ("So the answer is correct.", None),  # a verdict, not an answer
        ("3 + 4 = 7. The answer is correct.", "7"),
        ("The answer is Paris.", "Paris"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # Seen in the demo's votes: an equation is not an answer, its right-hand side is.
        ("\\boxed{9 * 7 = 63}", "63"),
        ("The answer is 9 * 7 = 63", "63"),
        ("9 * 7 = 63", "63"),
        ("so 15 * 7 = 105.", "105"),
        ("The answer is x = 5", "5"),
        # A clause is not a value: no answer, not the last number in it.
        ("The answer is reached by adding 115 to the result of 15 multiplied by 7", None),
        ("The answer is that we need to add them", None),
        # Cut off by max_tokens inside the box: no answer yet, not the text "\\boxed{".
        ("The answer is \\boxed{", None),
        ("The answer is \\boxed{18", None),
        # ... unless the clause ends on the value it computes.
        ("The answer is 15 multiplied by 7, which is 105.", "105"),
        # Values: negatives, decimals, fractions, LaTeX, trailing punctuation, units, remarks.
        ("The answer is -7.", "-7"),
        ("The answer is \u22127", "-7"),
        ("The final answer is 0.5.", "0.5"),
        ("The answer is 3/4.", "3/4"),
        ("The answer is \\(\\frac{1}{2}\\).", "\\frac{1}{2}"),
        ("The answer is $\\frac{\\sqrt{2}}{2}$.", "\\frac{\\sqrt{2}}{2}"),
        ("The answer is 2^{10}.", "2^{10}"),
        ("x = \\frac{3}{4}", "\\frac{3}{4}"),  # the last equation, not the 4 of its denominator
        ("The answer is 63 apples.", "63"),
        ("The answer is 63 \\text{ apples}.", "63"),
        ("The answer is 63%.", "63%"),
        ("The answer is simply 28.", "28"),
        ("The answer is 14 (seven plus seven).", "14"),
        ("The answer is 105, since 15 * 7 = 105.", "105"),
        ("The answer is (1, 2).", "(1, 2)"),
        ("The answer is B.", "B"),
        # The final equation's value, not the operands a model restates after it.
        ("6 + 4 = 10. This is because 10 is the sum of 6 and 4.", "10"),
    ],
)
def test_extract_answer_returns_a_value_never_a_clause(text, expected):
    assert extract_answer(text) == expected


def test_equation_answers_vote_with_their_values():
    # '9 * 7 = 63' used to be a group of its own; now it is a vote for 63.
    answers = [extract_answer(t) for t in ["\\boxed{9 * 7 = 63}", "The answer is 63.", "\\boxed{63.0}"]]
    assert vote(answers, [None] * 3).distribution == {"63": 3}


def test_boxed_beats_phrase_beats_number():
    text = "The answer is 5. Actually 6 is right: \\boxed{7} and 8"
    assert extract_answer(text) == "7"
    assert extract_answer("The answer is 5, not 6 or 8") == "5"  # a value, then a remark
    assert has_final_answer("\\boxed{3}") and has_final_answer("The answer is 3")
    assert not has_final_answer("3 + 4 = 7")


def test_fraction_decimal_and_slash_are_equivalent():
    forms = ["\\frac{1}{2}", "0.5", "1/2", "$\\dfrac{1}{2}$"]
    for a in forms:
        for b in forms:
            assert answers_equivalent(a, b), (a, b)
    assert not answers_equivalent("\\frac{1}{2}", "0.25")
    assert answers_equivalent("71", "71.0")
    assert answers_equivalent("3,000", "3000")


def test_non_math_answers_compare_as_normalised_strings():
    assert answers_equivalent("Paris", "paris.")
    assert answers_equivalent("\\text{Paris}", " PARIS ")
    assert not answers_equivalent("Paris", "Rome")
    # Words are never parsed as products of symbols (P*a*r*i*s would equal s*i*r*a*P).
    assert not answers_equivalent("Paris", "sirap")
    assert normalize("$\\text{Blue}$.") == "blue"


def test_unsafe_math_falls_back_to_string_comparison():
    # A power tower could keep sympy busy for minutes: it is compared as a string instead.
    assert not answers_equivalent("9^{9^{9}}", "9^(9^9)")
    assert answers_equivalent("9^{9^{9}}", "9^{9^{9}}")
    long = "1+" * MAX_MATH_CHARS + "1"
    assert not answers_equivalent(long, str(MAX_MATH_CHARS + 1))


def test_grouping_keeps_first_form_and_skips_missing():
    groups = group_answers(["0.5", None, "\\frac{1}{2}", "3", "1/2"])
    assert [(g.answer, g.members) for g in groups] == [("0.5", [0, 2, 4]), ("3", [3])]


def test_majority_vote_counts_equivalent_answers():
    v = vote(["\\frac{1}{2}", "0.5", "3", "1/2", None], [None] * 5)
    assert v.answer == "\\frac{1}{2}"
    assert v.distribution == {"\\frac{1}{2}": 3, "3": 1}
    assert v.consensus == pytest.approx(3 / 5)  # the no-answer path counts in the denominator
    assert v.selected == 0


def test_tie_goes_to_group_with_best_member_score_then_first_seen():
    # 2 vs 2: the "3" group holds the best single score.
    v = vote(["1/2", "0.5", "3", "3"], [0.4, 0.5, 0.9, 0.1])
    assert v.answer == "3" and v.selected == 2
    # Equal best scores: the group seen first wins.
    v = vote(["7", "8"], [0.5, 0.5])
    assert v.answer == "7" and v.selected == 0
    # No scores at all: first seen.
    assert vote(["8", "7"], [None, None]).answer == "8"
    # Within the winning group, the highest-scoring member is returned.
    assert vote(["5", "5.0", "6"], [0.1, 0.3, 0.2]).selected == 1


def test_weighted_vote_sums_scores_per_answer():
    # One confident "9" (0.9) loses to two moderately scored "4"s (0.5 + 0.5).
    v = vote(["9", "4", "4.0"], [0.9, 0.5, 0.5], weighted=True)
    assert v.answer == "4"
    assert v.group_weights == {"9": pytest.approx(0.9), "4": pytest.approx(1.0)}
    assert v.selected == 1
    # Plain majority would pick the "4"s too, but weights can overturn a majority.
    v = vote(["9", "4", "4"], [0.95, 0.2, 0.2], weighted=True)
    assert v.answer == "9"


def test_weighted_vote_with_log_space_scores_uses_relative_probabilities():
    v = vote(["1", "2", "2"], [-0.1, -1.0, -1.0], weighted=True)
    # exp(0) = 1 vs 2 * exp(-0.9) ~= 0.81: the single likely answer wins.
    assert v.answer == "1"


def test_vote_without_any_answer_picks_best_score():
    v = vote([None, None], [0.2, 0.7])
    assert v.answer is None and v.selected == 1 and v.consensus == 0.0 and v.distribution == {}


def test_equivalence_and_vote_work_off_the_main_thread():
    results: dict[str, object] = {}

    def work() -> None:
        try:
            results["eq"] = answers_equivalent("\\frac{3}{4}", "0.75")
            results["vote"] = vote(["\\frac{3}{4}", "0.75", "1"], [None] * 3).distribution
        except Exception as e:  # noqa: BLE001  (recorded, then asserted on the main thread)
            results["error"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert "error" not in results, results.get("error")
    assert results["eq"] is True
    assert results["vote"] == {"\\frac{3}{4}": 2, "1": 1}
