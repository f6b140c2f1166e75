"""The suite's own rules (tests/conftest.py), run on a small suite of their own: tiers come from
the fixtures a test uses, and a fast test that loads a model fails however it tries."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)
CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

SNEAKY = """
from llm_tts.models import resolve_model

def test_loads():
    try:
        resolve_model(None)
    except Exception:
        pass  # swallowed: the test fails all the same
"""
CHILD = """
import subprocess, sys

def test_child():
    code = "from llm_tts.models import ensure_embedded_model; ensure_embedded_model()"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0
"""
TIERS = """
import pytest

@pytest.fixture
def embedded_model_dir():
    return "a stand-in: nothing loads"

def test_free():
    pass

def test_uses(embedded_model_dir):
    pass

@pytest.mark.parametrize("name", ["hf_backend"])
def test_named(name):
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    for layer in ("unit", "model"):
        (pytester.path / layer).mkdir()
    return pytester


def test_the_fast_tier_is_what_uses_no_model_and_cannot_load_one(suite):
    (suite.path / "unit" / "test_sneaky.py").write_text(SNEAKY)
    (suite.path / "unit" / "test_child.py").write_text(CHILD)
    (suite.path / "model" / "test_marked.py").write_text(TIERS)
    result = suite.runpytest("-p", "no:cacheprovider", "-m", "fast", "-rA")
    # test_uses and test_named use a model (a fixture, a fixture named in a parameter): not fast.
    result.assert_outcomes(passed=3, errors=1, deselected=2)
    result.stdout.fnmatch_lines(["PASSED unit/test_child.py::test_child", "PASSED model/test_marked.py::test_free"])
    # The swallowed load still fails the test, at its teardown.
    result.stdout.fnmatch_lines(["unit/test_sneaky.py::test_loads loaded a model in the fast tier*"])


def test_a_unit_test_that_asks_for_a_model_is_a_collection_error(suite):
    (suite.path / "unit" / "test_wrong.py").write_text("def test_wrong(embedded_model_dir):\n    pass\n")
    result = suite.runpytest("-p", "no:cacheprovider", "--co", "-q")
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        ["*unit/test_wrong.py::test_wrong uses a model: it belongs in tests/model or tests/e2e*"]
    )
