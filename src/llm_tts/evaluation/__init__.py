"""The evaluation harness: accuracy against compute on your own data (``llm-tts eval``).

One job per module: :mod:`.dataset` reads and checks questions, :mod:`.configurations` the
strategies x budgets to run, :mod:`.runner` runs them concurrently (in-process or against a
service), :mod:`.store` keeps ``results.jsonl`` (append-only, resumable), :mod:`.summary` and
:mod:`.plots` turn rows into numbers and pictures, :mod:`.rescore` chooses again from recorded
candidates without generating, and :mod:`.command` is the CLI.
"""

from llm_tts.evaluation.configurations import GREEDY, Configuration, build_configurations, parse_budgets, parse_strategy
from llm_tts.evaluation.dataset import SHIPPED_SETS, Question, load_questions, shipped_set_path
from llm_tts.evaluation.records import ResultRow
from llm_tts.evaluation.rescore import RESCORE_SETTINGS, rescore_directory, rescore_row, rescore_trace
from llm_tts.evaluation.runner import InProcessSolver, ServiceSolver, Solver, run_evaluation
from llm_tts.evaluation.store import ResultsStore
from llm_tts.evaluation.summary import ConfigurationSummary, summarize, write_summary

__all__ = [
    "GREEDY",
    "RESCORE_SETTINGS",
    "SHIPPED_SETS",
    "Configuration",
    "ConfigurationSummary",
    "InProcessSolver",
    "Question",
    "ResultRow",
    "ResultsStore",
    "ServiceSolver",
    "Solver",
    "build_configurations",
    "load_questions",
    "parse_budgets",
    "parse_strategy",
    "rescore_directory",
    "rescore_row",
    "rescore_trace",
    "run_evaluation",
    "shipped_set_path",
    "summarize",
    "write_summary",
]
