"""A real TTSEngine that records how each run ended, for tests of cancellation and deadlines."""

from __future__ import annotations

import queue

from llm_tts.engine import TTSEngine


class RecordingEngine(TTSEngine):
    """The real engine, recording how each run ended (result or exception) in ``ended``.

    Every face runs a request through :meth:`TTSEngine.execute`, so every run is recorded."""

    def __init__(self, backend):
        super().__init__(backend)
        self.ended: queue.Queue = queue.Queue()

    def execute(self, *args, **kwargs):
        try:
            result = super().execute(*args, **kwargs)
        except BaseException as e:
            self.ended.put(e)
            raise
        self.ended.put(result)
        return result
