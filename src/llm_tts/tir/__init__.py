"""Tool-integrated reasoning: the model's code blocks run in a sandbox while it generates.

:mod:`.blocks` finds blocks and formats what is injected after them, :mod:`.loop` is the
generate / run / inject / continue loop every strategy's generation goes through, :mod:`.steps`
makes a block and its output one reasoning step, :mod:`.runner` runs blocks concurrently over
the sandbox pool (:mod:`llm_tts.sandbox`).
"""

from llm_tts.tir.blocks import CodeExecutionSettings
from llm_tts.tir.loop import CodeExecutionLoop, Grown, Origin
from llm_tts.tir.runner import CodeJob, CodeRunner

__all__ = ["CodeExecutionLoop", "CodeExecutionSettings", "CodeJob", "CodeRunner", "Grown", "Origin"]
