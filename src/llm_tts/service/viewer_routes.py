"""The trace viewer at ``/ui/``: the page and its two assets, public like ``/docs``. The page holds
no data: a live run posts to ``/v1/chat/completions`` with the key the user types in the page (sent
in the Authorization header, kept in the page's memory), so the key rules of ``/v1`` apply."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from llm_tts.strategies.registry import strategy_names
from llm_tts.viewer import ASSET_TYPES, PAGE_HEADERS, asset_bytes, page_html

router = APIRouter(include_in_schema=False)


@router.get("/ui")
async def viewer_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
async def viewer_page() -> Response:
    return HTMLResponse(page_html("service", strategy_names()), headers=PAGE_HEADERS)


@router.get("/ui/{name}")
async def viewer_asset(name: str) -> Response:
    if name not in ASSET_TYPES:
        return Response(b"not found\n", status_code=404, media_type="text/plain", headers=PAGE_HEADERS)
    return Response(asset_bytes(name), media_type=ASSET_TYPES[name], headers=PAGE_HEADERS)
