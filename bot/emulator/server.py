"""The emulator's HTTP face: `/api/<method>` like slack.com/api, `/response/<token>` for response_url, and a
read-only view of the workspace: `GET /` (an HTML page of channels and what was posted) and `GET /_state.json`.

Web API arguments come as a query string, a JSON body or a form body (`application/x-www-form-urlencoded`, what
slack_sdk's sync WebClient and `curl -d` send), parsed here with the standard library."""

from __future__ import annotations

import asyncio
import html
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

from bot.emulator.localserver import LocalServer
from bot.emulator.state import Channel, Fault, SlackApiError, SlackState

log = logging.getLogger(__name__)
MAX_SHOWN = 200  # messages per channel on the state page and in /_state.json (the latest ones)


async def _args(request: Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        body = await request.body()
        if "json" in content_type and body:
            try:
                data = json.loads(body)
            except ValueError:
                raise SlackApiError("invalid_json") from None
            if isinstance(data, dict):
                args.update(data)
        elif "multipart/" in content_type:
            raise SlackApiError("invalid_form_data")  # file uploads: not emulated
        elif body:
            try:
                args.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                raise SlackApiError("invalid_form_data") from None
    return args


async def _apply(state: SlackState, method: str, request: Request) -> JSONResponse:
    """Authenticate and run the method against the workspace."""
    auth = request.headers.get("authorization", "")
    try:
        args = await _args(request)
        token = auth.removeprefix("Bearer ").strip() or str(args.pop("token", ""))
        if not token:
            raise SlackApiError("not_authed")
        if not token.startswith(("xoxb-", "xoxp-")):
            raise SlackApiError("invalid_auth")
        data = state.call(method, args)
    except SlackApiError as exc:
        return JSONResponse({"ok": False, "error": exc.error, **exc.extra})
    return JSONResponse(data, headers={"x-oauth-scopes": ",".join(state.scopes)})


def _rate_limited(state: SlackState, method: str, retry_after: int) -> JSONResponse:
    state.rate_limited(method, retry_after)
    return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429,
                        headers={"Retry-After": str(retry_after)})


def _fault_answer(state: SlackState, method: str, fault: Fault) -> JSONResponse | None:
    """What a fault answers instead of the method's result; None for a delay alone (a slow success)."""
    if fault.status == 200 and fault.error is None:
        return None
    if fault.status == 429:
        return _rate_limited(state, method, fault.retry_after)
    if fault.status != 200:
        return JSONResponse({"ok": False, "error": "internal_error"}, status_code=fault.status)
    return JSONResponse({"ok": False, "error": fault.error or "fatal_error"})


def build_app(state: SlackState) -> Starlette:
    async def api(request: Request) -> JSONResponse:
        method = request.path_params["method"]
        if state.latency:
            await asyncio.sleep(state.latency)
        window = state.rate_window(method)
        if window > 0:  # back before Retry-After: Slack answers 429 again
            state.early_retries.append(method)
            return _rate_limited(state, method, max(1, round(window)))
        fault = state.take_fault(method)
        if fault is not None and fault.gate is not None:
            state.held.append(method)
            await fault.gate.wait()
            state.held.remove(method)
            fault = None
        if fault is not None and fault.applied:  # Slack acts first; the answer is what goes wrong
            await request.body()
            answer = await _apply(state, method, request)
            if fault.delay:
                await asyncio.sleep(fault.delay)
                if await request.is_disconnected():
                    state.abandoned.append(method)
            return _fault_answer(state, method, fault) or answer
        if fault is not None and fault.delay:
            await request.body()  # read (and cache) it first: the disconnect check below consumes the stream
            await asyncio.sleep(fault.delay)
            if await request.is_disconnected():  # the client gave up waiting (a timeout on its side)
                state.abandoned.append(method)
                return JSONResponse({"ok": False, "error": "client_gone"})
        if fault is not None:
            failed = _fault_answer(state, method, fault)
            if failed is not None:
                return failed
        return await _apply(state, method, request)

    async def response_url(request: Request) -> JSONResponse:
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid_json"}, status_code=400)
        if state.latency:
            await asyncio.sleep(state.latency)
        state.respond(request.path_params["token"], payload if isinstance(payload, dict) else {})
        return JSONResponse({"ok": True})

    async def upload(request: Request) -> PlainTextResponse:
        """An upload_url from files.getUploadURLExternal: the raw bytes (Slack answers `OK - <size>`)."""
        content = await request.body()
        if not state.upload(request.path_params["file_id"], content):
            return PlainTextResponse("file not found", status_code=404)
        return PlainTextResponse(f"OK - {len(content)}")

    async def state_json(request: Request) -> JSONResponse:
        return JSONResponse(snapshot(state))

    async def state_page(request: Request) -> HTMLResponse:
        return HTMLResponse(render_page(snapshot(state)))

    return Starlette(routes=[
        Route("/api/{method}", api, methods=["GET", "POST"]),
        Route("/response/{token}", response_url, methods=["POST"]),
        Route("/upload/v1/{file_id}", upload, methods=["POST"]),
        Route("/_state.json", state_json, methods=["GET"]),
        Route("/", state_page, methods=["GET"]),
    ])


def snapshot(state: SlackState) -> dict[str, Any]:
    """What the workspace holds, for people: channels with their messages, ephemerals, responses, modals."""
    def channel(c: Channel) -> dict[str, Any]:
        return {"id": c.id, "name": c.name, "is_private": c.is_private, "is_archived": c.is_archived,
                "topic": c.topic, "members": sorted(c.members), "message_count": len(c.messages),
                "messages": [{"ts": m.ts, "thread_ts": m.thread_ts, "user": m.user, "text": m.all_text().strip(),
                              "edits": m.edits, "pinned": m.pinned} for m in c.messages[-MAX_SHOWN:]]}

    return {
        "channels": [channel(c) for c in sorted(state.channels.values(), key=lambda c: c.name)],
        "ephemerals": [{"channel": e.get("channel"), "user": e.get("user"), "text": e.get("text", "")}
                       for e in state.ephemerals[-MAX_SHOWN:]],
        "responses": [{"text": r.get("text", ""), "response_type": r.get("response_type")}
                      for r in state.responses[-MAX_SHOWN:]],
        "views": [{"title": (v.get("view", {}).get("title") or {}).get("text", ""), "method": v.get("method")}
                  for v in state.view_log[-MAX_SHOWN:]],
        "users": [{"id": u["id"], "name": u["name"]} for u in state.users.values()],
        "usergroups": [{"id": g["id"], "handle": g["handle"], "users": g["users"]} for g in state.usergroups.values()],
        "scopes": list(state.scopes),
        "calls": len(state.calls),
    }


def render_page(data: dict[str, Any]) -> str:
    """The state page: read-only, every value escaped (messages are whatever was posted)."""
    e = html.escape
    parts = ["<!doctype html><meta charset=utf-8><title>opsbot emulator</title>",
             "<style>body{font:14px system-ui;margin:2em}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}"
             "h2{margin-top:1.5em}</style>",
             f"<h1>Slack emulator</h1><p>{data['calls']} Web API call(s). "
             "JSON: <a href='/_state.json'>/_state.json</a></p>"]
    for c in data["channels"]:
        flags = " (private)" * c["is_private"] + " (archived)" * c["is_archived"]
        parts.append(f"<h2>#{e(c['name'])} <small>{e(c['id'])}{flags}, {c['message_count']} message(s)</small></h2>")
        if c["topic"]:
            parts.append(f"<p>Topic: {e(c['topic'])}</p>")
        for m in c["messages"]:
            thread = f" in thread {e(m['thread_ts'])}" if m["thread_ts"] else ""
            parts.append(f"<div><small>{e(m['ts'])}{thread} {e(m['user'])}</small><pre>{e(m['text'])}</pre></div>")
    if data["ephemerals"] or data["responses"]:
        parts.append("<h2>Ephemeral answers</h2>")
        for item in [*data["ephemerals"], *data["responses"]]:
            parts.append(f"<pre>{e(str(item['text']))}</pre>")
    return "\n".join(parts)


class EmulatorServer:
    """Runs the emulator on loopback inside the current event loop."""

    def __init__(self, state: SlackState | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state or SlackState()
        self.host = host
        self._server = LocalServer(build_app(self.state), port=port, host=host)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    async def start(self) -> EmulatorServer:
        await self._server.start()
        self.state.upload_base = self.base_url
        return self

    async def stop(self) -> None:
        await self._server.stop()
