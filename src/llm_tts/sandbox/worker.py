"""One sandboxed Python worker: started ahead of time, used for exactly one execution, then killed.

The parent side of :mod:`llm_tts.sandbox.worker_main`. The worker's stdout and stderr share one
pipe that the parent reads with a byte cap; a control pipe says when the replay ended and how
the block ended. The wall timeout counts from the end of the replay (the replayed blocks have
their own allowance), and on timeout, on too much output, or after the block, the whole sandbox
is killed: the sandbox's first process (its PID namespace's init, whose id bwrap reports) gets
SIGKILL, which makes the kernel kill every process in the namespace; bwrap exits once they are
all gone, and only then does the kill return (bwrap's own process group is killed after, and
``--die-with-parent`` covers a parent that dies first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Literal

from llm_tts.sandbox.bwrap import SandboxImage, SandboxLimits, worker_command

ExecutionStatus = Literal["ok", "error", "timeout", "killed"]
_READ_CHUNK = 65536
_KILL_WAIT_S = 10.0  # bwrap exits when the last process of its namespace is gone
_AFTER_BLOCK_S = 0.2  # how long output still written by the block's own children is read


@dataclass(frozen=True)
class ExecutionResult:
    """How one block ran: its combined stdout/stderr (decoded, capped) and why it ended.

    status: ok (ran to the end), error (raised: the traceback is in the output), timeout (killed
    at the wall timeout), killed (died by a signal or a resource limit, or was killed for writing
    more than the output cap: then ``output_capped``). ``output_bytes`` and ``output_sha256``
    describe the raw bytes read back, so a record can keep them instead of the capture itself.
    """

    output: str
    status: ExecutionStatus
    seconds: float
    output_bytes: int
    output_sha256: str
    output_capped: bool = False

    @classmethod
    def of_capture(
        cls, raw: bytes, status: ExecutionStatus, seconds: float, *, capped: bool = False
    ) -> ExecutionResult:
        """The result of a block whose stdout/stderr read back were ``raw``."""
        return cls(
            raw.decode("utf-8", errors="replace"), status, seconds, len(raw), hashlib.sha256(raw).hexdigest(), capped
        )


class Worker:
    """A started sandbox waiting on its stdin for one request."""

    def __init__(self, image: SandboxImage, limits: SandboxLimits) -> None:
        self.limits = limits
        control_r, control_w = os.pipe()
        info_r, info_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                worker_command(image, limits, control_w, info_w),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(control_w, info_w),
                start_new_session=True,  # its own process group: one killpg ends it all
                env={},  # bwrap itself gets nothing either (--clearenv applies inside)
            )
        except BaseException:
            os.close(control_r)
            os.close(info_r)
            raise
        finally:
            os.close(control_w)
            os.close(info_w)
        self.control = control_r
        self.info = info_r
        self.info_text = b""

    def run(self, code: str, replay: list[str], timeout: float) -> ExecutionResult:
        """Replay ``replay`` silently, then run ``code`` under ``timeout`` seconds; always kills the sandbox."""
        started = time.perf_counter()
        try:
            return self._run(code, replay, timeout, started)
        finally:
            self.kill()

    def _run(self, code: str, replay: list[str], timeout: float, started: float) -> ExecutionResult:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps({"replay": replay, "code": code}).encode())
            self.process.stdin.close()
        except BrokenPipeError:
            return ExecutionResult.of_capture(b"sandbox ended before it could run the code", "killed", 0.0)
        out = bytearray()
        events = bytearray()
        # The replay gets the time its blocks had when they first ran; the block gets `timeout`.
        deadline = time.monotonic() + timeout * (len(replay) + 1) + 1.0
        block_start: float | None = None
        selector = selectors.DefaultSelector()
        selector.register(self.control, selectors.EVENT_READ, "control")
        selector.register(self.process.stdout, selectors.EVENT_READ, "output")
        open_streams = 2
        status: ExecutionStatus | None = None
        try:
            while open_streams:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    status = "timeout" if not events.endswith((b"O", b"E")) else status
                    break
                ready = selector.select(wait)
                # Control first: a block's output is never taken for the replay's.
                for key, _ in sorted(ready, key=lambda kv: kv[0].data != "control"):
                    fd = key.fd
                    chunk = os.read(fd, _READ_CHUNK)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        open_streams -= 1
                    elif key.data == "control":
                        events += chunk
                        if b"S" in chunk and block_start is None:
                            block_start = time.perf_counter()
                            deadline = time.monotonic() + timeout
                        if chunk.endswith((b"O", b"E")):
                            deadline = min(deadline, time.monotonic() + _AFTER_BLOCK_S)
                    else:
                        out += chunk
                        if len(out) > self.limits.output_bytes:
                            del out[self.limits.output_bytes :]
                            status = "killed"
                            open_streams = 0
                            break
        finally:
            selector.close()
        elapsed = time.perf_counter() - (block_start or started)
        if status is None:
            status = self._ended(bytes(events))
        capped = len(out) >= self.limits.output_bytes
        return ExecutionResult.of_capture(bytes(out), status, elapsed, capped=capped)

    def _ended(self, events: bytes) -> ExecutionStatus:
        if events.endswith(b"O"):
            return "ok"
        if events.endswith(b"E"):
            return "error"
        return "killed"  # died without reporting: a signal (CPU limit, SIGKILL) or os._exit

    def kill(self) -> None:
        """End the sandbox and every process in it, and wait until they are gone; idempotent."""
        init = self._sandbox_init()
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=_KILL_WAIT_S)  # bwrap returns once its namespace is empty
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        for fd in (self.control, self.info):
            if fd >= 0:
                os.close(fd)
        self.control = self.info = -1

    def _sandbox_init(self) -> int | None:
        """The host pid of the sandbox's PID-namespace init, from bwrap's --info-fd (None: not started yet)."""
        if self.info < 0:
            return None
        os.set_blocking(self.info, False)
        try:
            while chunk := os.read(self.info, 4096):
                self.info_text += chunk
        except BlockingIOError:
            pass
        try:
            return int(json.loads(self.info_text)["child-pid"])
        except (ValueError, KeyError, TypeError):
            return None
