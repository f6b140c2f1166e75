"""``/docs`` and ``/redoc`` need no network: every asset their pages name is served by the server
itself (from the fastapi-offline package), and each answers 200."""

from __future__ import annotations

import re

import httpx
import pytest

ASSET = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_name_only_assets_the_server_serves(service_url, page):
    with httpx.Client(base_url=service_url, timeout=30) as c:
        r = c.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text  # no CDN, no web font
        urls = {a or b for a, b in ASSET.findall(r.text)}
        assert {"/openapi.json"} < urls  # the page's scripts and styles besides the schema
        for url in urls:
            assert url.startswith("/"), url
            got = c.get(url)
            assert got.status_code == 200 and got.content, url
        scripts = [u for u in urls if u.endswith(".js")]
        assert scripts and all(u.startswith("/docs-assets/") for u in scripts)
