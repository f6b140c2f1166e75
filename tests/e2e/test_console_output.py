"""What a user sees: start-up progress and answers, engine libraries' logs only when asked for.

The rule (llm_tts.engine_logs) changes process-wide logging, so each case runs in a fresh
interpreter: the cheap ones without a model, then ``llm-tts demo`` and ``llm-tts serve`` for real
on the embedded model with vLLM.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import pytest

# Environment through which a user asks for engine logs: cleared so the default is what is tested.
_ASKING_ENV = (
    "VLLM_CONFIGURE_LOGGING",
    "VLLM_LOGGING_LEVEL",
    "VLLM_LOGGING_CONFIG_PATH",
    "TRANSFORMERS_VERBOSITY",
    "TORCH_CPP_LOG_LEVEL",
    "TORCH_LOGS",
    "PYTHONWARNINGS",
)
# Signs of engine logs: vLLM's record prefix and config dump, torch's C++ warnings, load bars.
ENGINE_LOG_SIGNS = re.compile(
    r"\) (?:INFO|WARNING) \d\d-\d\d|Initializing a V1 LLM engine|^\[W\d{4}|Loading safetensors|FutureWarning", re.M
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ASKING_ENV}
    return {**env, **extra}


def _start(*parts: str, **env: str) -> subprocess.Popen[str]:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env)
    )


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _python(*parts: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _finish(_start(*parts, **env))


_STATE = """
    import json, logging, os, sys, warnings
    from llm_tts.engine_logs import quiet_engine_logs, vllm_engine_args
    def torch_warning_shown():
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn_explicit("probe", UserWarning, "probe.py", 1, module="torch.nn.probe", registry={})
        return bool(seen)
    def state():
        import vllm.envs as vllm_envs  # imported after quiet_engine_logs, as the backends do
        args = vllm_engine_args()
        return {
            "vllm": logging.getLogger("vllm").level,
            "transformers": logging.getLogger("transformers").level,
            "torch_cpp": os.environ.get("TORCH_CPP_LOG_LEVEL"),
            "torch_warnings_ignored": not torch_warning_shown(),
            "vllm_configures_logging": vllm_envs.VLLM_CONFIGURE_LOGGING,  # what every vLLM release reads
            "tqdm": args["use_tqdm_on_load"],
        }
"""


# The cases that import vLLM (seconds each, so they are marked vllm: not in the fast tier) start
# their interpreters together, side by side.
_CASES = {
    "nobody asked": ((_STATE, "quiet_engine_logs()\nprint(json.dumps(state()))"), {}),
    "user configured": (
        (_STATE, "logging.basicConfig(level=logging.INFO)\nquiet_engine_logs()\nprint(json.dumps(state()))"),
        {},
    ),
    "configured after": (
        (
            _STATE,
            "quiet_engine_logs()\nlogging.basicConfig(level=logging.INFO)\nquiet_engine_logs()\nprint(json.dumps(state()))",
        ),
        {},
    ),
    "vllm variables": ((_STATE, "quiet_engine_logs()\nprint(json.dumps(state()))"), {"VLLM_LOGGING_LEVEL": "DEBUG"}),
}


@pytest.fixture(scope="module")
def cases():
    procs = {name: _start(*parts, **env) for name, (parts, env) in _CASES.items()}
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.vllm
def test_engine_logs_are_quieted_when_nobody_asked(cases):
    proc = _finish(cases["nobody asked"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "vllm": logging_level("ERROR"),
        "transformers": logging_level("ERROR"),
        "torch_cpp": "ERROR",
        "torch_warnings_ignored": True,
        "vllm_configures_logging": False,
        "tqdm": False,
    }


@pytest.mark.vllm
def test_a_users_logging_configuration_is_left_alone_and_receives_engine_logs(cases):
    proc = _finish(cases["user configured"])
    assert proc.returncode == 0, proc.stderr
    # Nothing changed; vLLM is told not to install its own handler, so its records reach the user's.
    assert json.loads(proc.stdout) == {
        "vllm": logging_level("NOTSET"),
        "transformers": logging_level("WARNING"),
        "torch_cpp": None,
        "torch_warnings_ignored": False,
        "vllm_configures_logging": False,
        "tqdm": True,
    }


@pytest.mark.vllm
def test_logging_configured_after_a_quiet_engine_applies_to_the_next_one(cases):
    proc = _finish(cases["configured after"])
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert (got["vllm"], got["transformers"], got["tqdm"]) == (logging_level("NOTSET"), logging_level("WARNING"), True)


@pytest.mark.vllm
def test_vllms_own_logging_variables_are_honoured(cases):
    proc = _finish(cases["vllm variables"])
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["vllm"] == logging_level("NOTSET")  # vLLM configures itself from its variables
    assert got["vllm_configures_logging"] is True and got["tqdm"] is True
    assert got["transformers"] == logging_level("ERROR")  # the others are still quiet


def test_startup_steps_print_once_with_or_without_a_logging_configuration():
    step = "from llm_tts.startup import startup_step\nwith startup_step('warming up'):\n    pass\n"
    plain = _python(step)
    assert plain.returncode == 0, plain.stderr
    assert re.fullmatch(r"llm-tts: warming up \.\.\.\nllm-tts: warming up: done in \d+\.\d s\n", plain.stderr)
    configured = _python("import logging\nlogging.basicConfig(format='%(name)s|%(message)s', level=logging.INFO)", step)
    assert configured.returncode == 0, configured.stderr
    assert configured.stderr.splitlines() == [
        "llm_tts.startup|warming up ...",
        next(line for line in configured.stderr.splitlines() if "done in" in line),
    ]


def logging_level(name: str) -> int:
    import logging

    return logging.getLevelName(name)


# -- the real faces on the embedded model ------------------------------------------------------
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "llm_tts.cli", *args]


@pytest.mark.slow
@pytest.mark.vllm
def test_demo_shows_progress_answers_and_table_without_engine_logs(embedded_model_dir):
    pytest.importorskip("vllm")
    proc = subprocess.run(_cli("demo", "--questions", "2"), capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not ENGINE_LOG_SIGNS.search(proc.stdout + proc.stderr), (proc.stdout + proc.stderr)[:3000]
    # stderr holds our progress lines and nothing else.
    assert proc.stderr.splitlines() == [
        "llm-tts: starting the vLLM engine for SmolLM2-135M-Instruct (CPU, "
        + proc.stderr.split("(CPU, ", 1)[1].split(")", 1)[0]
        + ") ...",
        next(line for line in proc.stderr.splitlines() if "done in" in line),
    ]
    out = proc.stdout
    assert "start-up:" in out and "not counted below" in out
    methods = ("greedy decoding", "self-consistency, 8 paths", "+ adaptive stop", "beam search", "+ code execution")
    for method in methods:
        assert re.search(r"^  .*" + re.escape(method) + r".* \d+/2 +\d+% ", out, re.M), out  # its row, as it finished
    assert "1. reasoning in text: 2 small" in out and "2. code execution: 2 questions" in out
    assert "adaptive stopping vs self-consistency:" in out and "code execution vs greedy:" in out
    # The worked example shows the model's code and the sandbox's output (or says there is none).
    assert "the chosen path's code:" in out or "no path chose to run code" in out, out


def _serve_until_running(*flags: str) -> str:
    """``llm-tts serve`` on the embedded model until uvicorn runs; returns everything it printed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        _cli("serve", "--backend", "vllm", "--port", str(port), *flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    lines: list[str] = []
    try:
        give_up = time.monotonic() + 300
        while time.monotonic() < give_up:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Uvicorn running on" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = "".join(lines)
    assert "Uvicorn running on" in text, text[-3000:]
    return text


@pytest.mark.slow
@pytest.mark.vllm
def test_serve_startup_reports_progress_without_engine_logs(embedded_model_dir):
    pytest.importorskip("vllm")
    text = _serve_until_running()
    assert "llm-tts: starting the vLLM engine for SmolLM2-135M-Instruct" in text
    assert re.search(r"starting the vLLM engine .*: done in \d+\.\d s", text)
    assert not ENGINE_LOG_SIGNS.search(text), text[:3000]


@pytest.mark.slow
@pytest.mark.vllm
def test_verbose_shows_the_engine_logs(embedded_model_dir):
    """--verbose is one flag every command shares (cli._verbose_flag); serve shows it soonest."""
    pytest.importorskip("vllm")
    text = _serve_until_running("--verbose")
    assert "Initializing a V1 LLM engine" in text  # vLLM's INFO records, through the root logger
    assert "llm_tts.startup: starting the vLLM engine" in text
