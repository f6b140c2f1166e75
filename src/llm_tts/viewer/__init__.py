"""The trace viewer: one web page (plain HTML, CSS and JavaScript shipped in the package) that draws
an ``llm_tts.trace``. The service serves it at ``/ui`` for live runs; ``llm-tts view PATH`` serves it
on loopback with the traces of a file or folder (:mod:`llm_tts.viewer.local_server`)."""

from llm_tts.viewer.page import ASSET_TYPES, PAGE_HEADERS, asset_bytes, page_html

__all__ = ["ASSET_TYPES", "PAGE_HEADERS", "asset_bytes", "page_html"]
