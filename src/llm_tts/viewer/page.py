"""The viewer's page and assets, read from the package, and the headers every answer carries.

The page runs only its own script and style (the Content-Security-Policy below), talks only to the
server it came from, and never lets a frame or another site embed it. Model text is hostile: the
script writes it as text nodes only, and the policy forbids inline script as a second wall.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Literal

ViewerMode = Literal["service", "files"]

# The files the page loads, relative to the page (served next to it, under /ui/).
ASSET_TYPES: dict[str, str] = {
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@cache
def asset_bytes(name: str) -> bytes:
    """One of :data:`ASSET_TYPES`' files (KeyError for any other name: nothing else is served)."""
    if name not in ASSET_TYPES:
        raise KeyError(name)
    return files("llm_tts.viewer").joinpath("static", name).read_bytes()


def page_html(mode: ViewerMode, strategies: Iterable[str] = ()) -> str:
    """The page. ``mode`` "service" shows the live-run form (``strategies`` fill its list);
    "files" lists the runs the local viewer server loaded."""
    return _template().replace("{{mode}}", mode).replace("{{strategies}}", html.escape(",".join(strategies)))


@cache
def _template() -> str:
    return files("llm_tts.viewer").joinpath("static", "index.html").read_text(encoding="utf-8")
