"""GET /status (HTML), /status.json and /status/feed.atom: read-only, cacheable, no scripts, no third parties."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.deps import Deps
from bot.errors import NotFound
from bot.statuspage import render
from bot.statuspage import state as st
from bot.statuspage.flows import page_snapshot
from commands.statuspage.notify import services

log = logging.getLogger(__name__)
# The page is plain HTML and CSS in one file: anything else (a script, a font, an image) is refused.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; " \
      "frame-ancestors 'none'"


def _headers(deps: Deps, body: bytes) -> dict[str, str]:
    page = deps.config.status_page
    seconds = page.cache_seconds if page is not None else 0
    return {"Cache-Control": f"public, max-age={seconds}, stale-while-revalidate={seconds}",
            "ETag": '"' + hashlib.sha256(body).hexdigest()[:32] + '"', "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Vary": "Accept-Encoding"}


def _answer(request: Request, deps: Deps, body: bytes, media_type: str) -> Response:
    headers = _headers(deps, body)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


async def _page(deps: Deps) -> st.Page | Response:
    try:
        return await page_snapshot(services(deps))
    except NotFound:
        return Response("No status page is configured.\n", status_code=404, media_type="text/plain")
    except Exception as exc:  # the database is down: say so briefly, never a traceback
        log.warning("status page unavailable: %s", type(exc).__name__)
        return Response("The status page is temporarily unavailable.\n", status_code=503, media_type="text/plain",
                        headers={"Retry-After": "30", "Cache-Control": "no-store"})


def _base(request: Request, deps: Deps) -> str:
    page = deps.config.status_page
    return page.url.rstrip("/") if page is not None and page.url else str(request.base_url).rstrip("/")


Handler = Callable[[Request], Awaitable[Response]]


def handlers(deps: Deps) -> tuple[Handler, Handler, Handler]:
    async def html(request: Request) -> Response:
        page = await _page(deps)
        if isinstance(page, Response):
            return page
        return _answer(request, deps, render.html(page).encode(), "text/html; charset=utf-8")

    async def as_json(request: Request) -> Response:
        page = await _page(deps)
        if isinstance(page, Response):
            return page if page.status_code != 404 else JSONResponse({"error": "no status page"}, status_code=404)
        body = json.dumps(render.as_json(page), separators=(",", ":")).encode()
        return _answer(request, deps, body, "application/json")

    async def atom(request: Request) -> Response:
        page = await _page(deps)
        if isinstance(page, Response):
            return page
        return _answer(request, deps, render.atom(page, base_url=_base(request, deps)).encode(),
                       "application/atom+xml; charset=utf-8")

    return html, as_json, atom
