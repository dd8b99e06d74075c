"""The emulator's HTTP face: `/api/<method>` like slack.com/api, `/response/<token>` for response_url."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.emulator.localserver import LocalServer
from bot.emulator.state import Fault, SlackApiError, SlackState

log = logging.getLogger(__name__)
SCOPES = ("commands,chat:write,chat:write.public,channels:manage,channels:read,channels:history,groups:read,"
          "groups:write,groups:history,pins:write,users:read,usergroups:read")


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
        elif body:
            form = await request.form()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
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
    return JSONResponse(data, headers={"x-oauth-scopes": SCOPES})


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

    return Starlette(routes=[
        Route("/api/{method}", api, methods=["GET", "POST"]),
        Route("/response/{token}", response_url, methods=["POST"]),
    ])


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
        return self

    async def stop(self) -> None:
        await self._server.stop()
