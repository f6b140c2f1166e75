"""A closed sandbox for model-written code (bubblewrap), with a pool of warm workers.

See :mod:`llm_tts.sandbox.bwrap` for what a sandbox can and cannot reach, and
:mod:`llm_tts.sandbox.pool` for how a trajectory's state persists without being shared.
"""

from llm_tts.sandbox.bwrap import SandboxImage, SandboxLimits, check_sandbox
from llm_tts.sandbox.pool import SandboxPool
from llm_tts.sandbox.worker import ExecutionResult, ExecutionStatus

__all__ = ["ExecutionResult", "ExecutionStatus", "SandboxImage", "SandboxLimits", "SandboxPool", "check_sandbox"]
