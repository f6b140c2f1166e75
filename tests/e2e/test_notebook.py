"""The notebooks are executed, so they can never rot: every cell must run without error (each
notebook that needs the service starts and stops its own on a free loopback port). The notebooks
in the repository keep the outputs of a run, which the docs show; the test runs its own copy."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK = NOTEBOOKS / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs_end_to_end(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("LLM_TTS_BACKEND", "transformers")  # the kernel inherits it: fastest start on a CPU
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell

    text = "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    # The first in-process call says what it is doing (on stderr, which the notebook shows).
    assert re.search(r"llm-tts: loading SmolLM2-135M-Instruct with transformers .*: done in \d+\.\d s", text), text[
        :2000
    ]
    assert "tts_metadata keys match in-process: True" in text
    assert "service stopped: True" in text
    assert "strategy: beam_search" in text
    for name in ("self_consistency", "offline_bon + entropy", "beam_search + perplexity"):
        assert name in text


def _outputs(nb: nbformat.NotebookNode) -> str:
    """Every text a notebook's code cells printed (stdout and stderr)."""
    return "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )


@pytest.fixture
def notebook_kernel(tmp_path, monkeypatch):
    """One kernel for the capability notebooks, run one after another as a user would: the embedded
    model loads once (``shared_engine``) instead of once per notebook."""
    monkeypatch.setenv("LLM_TTS_BACKEND", "transformers")  # the kernel inherits it: fastest start on a CPU
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path))
    yield lambda name: _execute_in(km, NOTEBOOKS / name, tmp_path)
    km.shutdown_kernel(now=True)


def _execute_in(km: KernelManager, path: Path, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # the stored outputs must not stand in for this run's
    NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(cwd)}}).execute()  # names a failing cell
    return nb


@pytest.mark.model  # the kernel loads the embedded model
def test_capability_notebooks_run_in_one_kernel(notebook_kernel):
    # Sessions to RL samples.
    text = _outputs(notebook_kernel("sessions.ipynb"))
    assert "records: 2" in text
    # One merged sample per candidate of the first turn's two-path vote, the selected one first.
    assert re.search(r"tokens=\d+ response=\d+ trained=\d+ .* selected=True", text), text[:2000]
    assert "loss mask and logprobs line up with the response: True" in text
    assert "service stopped: True" in text

    # Code execution: the sandbox ran the model's code, and the record shows what it wrote and got.
    text = _outputs(notebook_kernel("code_execution.ipynb"))
    assert re.search(r"the model wrote:\n +print\(", text), text[:3000]
    assert "the sandbox printed (ok):" in text
    assert re.search(r"vote: \{.+\}", text) and "'executions': " in text, text[:3000]

    # Evaluation: every run finished, the summary table and the plots are shown.
    nb = notebook_kernel("evaluation.ipynb")
    assert "runs: 6 failed: 0" in _outputs(nb)
    shown = [out.get("data", {}) for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    table = next(d["text/markdown"] for d in shown if "text/markdown" in d)
    for configuration in ("| greedy |", "| self_consistency@2 |", "| self_consistency@4 |"):
        assert configuration in table, table
    assert sum("image/png" in d for d in shown) == 3  # accuracy against tokens and FLOPs, reliability
