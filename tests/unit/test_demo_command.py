"""``llm-tts demo``'s arguments: the two sections by default, or one question of the user's."""

from __future__ import annotations

from llm_tts.cli import build_parser


def test_demo_takes_a_question_of_the_users():
    args = build_parser().parse_args(["demo", "What is 17 * 23?", "--backend", "transformers"])
    assert (args.question, args.questions, args.backend) == ("What is 17 * 23?", None, "transformers")


def test_demo_without_a_question_runs_the_sections_at_their_default_sizes():
    args = build_parser().parse_args(["demo"])
    assert args.question is None and args.questions is None  # run_demo picks 12 and 8
    assert build_parser().parse_args(["demo", "--questions", "2"]).questions == 2
