"""The notebooks are executed, so they can never rot: every cell must run without error (each
notebook that needs the service starts and stops its own on a free loopback port)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
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


@pytest.mark.model  # the kernel loads the embedded model
def test_sessions_notebook_builds_samples_from_a_recorded_conversation(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOKS / "sessions.ipynb", as_version=4)
    monkeypatch.setenv("LLM_TTS_BACKEND", "transformers")
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    text = "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    assert "records: 2" in text
    # One merged sample per candidate of the first turn's two-path vote, the selected one first.
    assert re.search(r"tokens=\d+ response=\d+ trained=\d+ .* selected=True", text), text[:2000]
    assert "loss mask and logprobs line up with the response: True" in text
    assert "service stopped: True" in text
