"""The sandbox for model-written code: each escape is tried for real and must fail, with the host
(this test process, and the pool) healthy after it."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from llm_tts.errors import SandboxUnavailableError
from llm_tts.sandbox import SandboxImage, SandboxLimits, SandboxPool, check_sandbox

SECRET = "sk-llm-tts-fake-secret-0123456789"
_MARK = "The program each sandbox runs"  # the worker's docstring: it is in every sandbox's command line


def _sandbox_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _MARK.encode() in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def pool():
    # The fake secret is in the environment before any sandbox starts.
    os.environ["LLM_TTS_TEST_SECRET"] = SECRET
    with SandboxPool(2, limits=SandboxLimits(memory_bytes=512 << 20, processes=16)) as p:
        yield p
    os.environ.pop("LLM_TTS_TEST_SECRET", None)


@pytest.fixture
def healthy(pool):
    """After the test: the pool still runs code, and every sandbox process left is one of the pool's
    idle workers (a descendant of their bwrap): nothing the test's code started survived it.
    (Sandboxes that were there before, and other processes' sandboxes, are left out.)"""
    before = _sandbox_pids()
    yield
    assert pool.execute("print('alive')").output == "alive\n"
    idle = set(pool.idle_pids())
    stray = [pid for pid in _sandbox_pids() - before if _ours_or_orphaned(pid) and not idle & _ancestors(pid)]
    assert not stray


def _ours_or_orphaned(pid: int) -> bool:
    """A sandbox process this test process started, or one that outlived its parent (adopted by
    init): another process's sandboxes (a second pytest worker's) are not this test's business."""
    chain = _ancestors(pid)
    return Path(f"/proc/{pid}").exists() and (os.getpid() in chain or chain <= {pid, 1})


def _ancestors(pid: int) -> set[int]:
    chain = {pid}
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        chain.add(pid)
    return chain


def test_runs_code_and_keeps_state_by_replay(pool):
    first = pool.execute("x = 123 * 457\nprint(x)")
    assert (first.status, first.output) == ("ok", "56211\n")
    second = pool.execute("print(x + 1)\nx * 2", history=["x = 123 * 457\nprint('replayed output is dropped')"])
    assert (second.status, second.output) == ("ok", "56212\n112422\n")
    alone = pool.execute("print(x)")  # a fresh sandbox: no state from the runs above
    assert alone.status == "error" and "NameError" in alone.output


def test_error_shows_only_the_codes_traceback(pool):
    result = pool.execute("def f():\n    return 1 / 0\nf()")
    assert result.status == "error"
    assert "ZeroDivisionError" in result.output and "run_block" not in result.output


def test_tcp_connect_to_a_loopback_listener_fails(pool, healthy):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept():
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    t = threading.Thread(target=accept)
    t.start()
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
    result = pool.execute(code)
    t.join()
    server.close()
    assert result.status == "error" and "connected" not in result.output.replace("Connection", "")
    assert "ConnectionRefusedError" in result.output or "OSError" in result.output
    assert not accepted


def test_hostname_resolution_fails(pool, healthy):
    result = pool.execute("import socket\nprint(socket.getaddrinfo('example.com', 443))")
    assert result.status == "error" and "gaierror" in result.output


def test_writes_outside_its_tmp_fail(pool, healthy, tmp_path):
    target = tmp_path / "escaped.txt"
    code = (
        "import os\n"
        f"for path in [{str(target)!r}, '/usr/escaped.txt', '/escaped.txt', '/proc/escaped']:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as e:\n"
        "        print('refused', path, type(e).__name__)\n"
        "open('/tmp/inside.txt', 'w').write('fine')\n"
        "print(open('/tmp/inside.txt').read())"
    )
    result = pool.execute(code)
    assert result.status == "ok", result.output
    assert "WROTE" not in result.output and result.output.count("refused") == 4
    assert result.output.endswith("fine\n")
    assert not target.exists() and not Path("/escaped.txt").exists()


def test_server_environment_is_not_visible(pool, healthy):
    assert os.environ["LLM_TTS_TEST_SECRET"] == SECRET
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit():\n"
        "        try:\n"
        "            print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "        except OSError as e:\n"
        "            print(pid, type(e).__name__)"
    )
    result = pool.execute(code)
    assert result.status == "ok", result.output
    assert SECRET not in result.output and "LLM_TTS_TEST_SECRET" not in result.output
    assert "OPENAI_API_KEY" not in result.output


def test_cannot_signal_or_read_the_parent(pool, healthy):
    me = os.getpid()
    code = (
        "import os, signal\n"
        f"for action in ('kill', 'read'):\n"
        "    try:\n"
        f"        os.kill({me}, signal.SIGKILL) if action == 'kill' else open('/proc/{me}/environ').read()\n"
        "        print('REACHED', action)\n"
        "    except OSError as e:\n"
        "        print('refused', action, type(e).__name__)\n"
        "print('uid', os.getuid(), 'ppid', os.getppid())"
    )
    result = pool.execute(code)
    assert "REACHED" not in result.output and result.output.count("refused") == 2, result.output
    assert "uid 65534" in result.output
    assert os.getpid() == me  # still here


def test_fork_bomb_is_contained(pool, healthy):
    code = "import os\nwhile True:\n    os.fork()"
    result = pool.execute(code, timeout=5)
    assert result.status == "error" and "BlockingIOError" in result.output  # RLIMIT_NPROC stopped it


def test_a_file_past_the_size_limit_fails(pool, healthy):
    result = pool.execute("open('/tmp/big', 'wb').write(b'x' * (32 << 20))")
    assert result.status == "error" and "File too large" in result.output


def test_memory_bomb_is_contained(pool, healthy):
    result = pool.execute("blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))", timeout=10)
    assert result.status == "error" and "MemoryError" in result.output


def test_infinite_loop_times_out(pool, healthy):
    result = pool.execute("while True:\n    pass", timeout=1)
    assert result.status == "timeout"


def test_cpu_limit_kills_a_spinning_sandbox(healthy):
    with SandboxPool(0, limits=SandboxLimits(cpu_seconds=1)) as cold:
        result = cold.execute("while True:\n    pass", timeout=30)
    assert result.status == "killed"


def test_100_mb_of_output_is_cut_at_the_cap(pool, healthy):
    result = pool.execute("import sys\nsys.stdout.write('x' * 100_000_000)\nprint('done')", timeout=10)
    assert result.status == "killed" and result.output_capped
    assert len(result.output) == pool.limits.output_bytes and "done" not in result.output


def test_sleep_past_the_timeout_kills_the_whole_sandbox(pool, healthy):
    seconds = f"{300 + os.getpid() % 1000}.{time.time_ns() % 10**6}"  # unique: another run's sleep is not ours
    code = f"import subprocess, time\nsubprocess.Popen(['sleep', '{seconds}'])\ntime.sleep(300)"
    result = pool.execute(code, timeout=1)
    assert result.status == "timeout"
    mine = f"sleep\x00{seconds}\x00".encode()
    leftover = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == mine]
    assert not leftover


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""


def test_missing_interpreter_is_a_typed_error_not_a_fallback():
    broken = replace(SandboxImage.current(), python="/nonexistent/python3")
    with pytest.raises(SandboxUnavailableError, match="bubblewrap"):
        check_sandbox(broken)
    with pytest.raises(SandboxUnavailableError):
        SandboxPool(1, image=broken)


def test_missing_bwrap_is_a_typed_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailableError, match="apt-get install -y bubblewrap"):
        check_sandbox(SandboxImage.current())
