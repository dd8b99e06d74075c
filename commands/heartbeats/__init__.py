"""Heartbeats of scheduled jobs: `POST /heartbeats/<name>` (and `/heartbeats/<name>/fail`) and the late check."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import partial

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.bodies import TooLarge, read_body, too_large
from bot.deps import Deps
from bot.errors import ConfigError
from bot.heartbeats import token_matches
from bot.heartbeats.flows import received
from commands.alerts.notify import SlackAlerts

log = logging.getLogger(__name__)

CHECK_JOB = "heartbeats.check"
CHECK_EVERY = timedelta(minutes=1)
MAX_BODY = 10 * 1024
FAILED = {"fail", "failed", "failure", "error"}
SUCCEEDED = {"ok", "success", "succeeded"}


def schedule(deps: Deps) -> None:
    if deps.config.heartbeats:
        deps.scheduler.every(CHECK_JOB, CHECK_EVERY, partial(deps.run_job, CHECK_JOB))


def parse_body(body: bytes, failed: bool) -> tuple[str, str | None]:
    """(status, message) from an optional body: `{"status": "fail", "message": "…"}`, or any text as the
    message. ValueError for a status it does not know."""
    status, message = ("fail" if failed else "ok"), None
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return status, message
    try:
        data = json.loads(text)
    except ValueError:
        return status, text
    if not isinstance(data, dict):
        return status, text
    raw = str(data.get("status") or status).lower()
    if raw not in FAILED | SUCCEEDED:
        raise ValueError(f"unknown status {raw[:20]!r} (use ok or fail)")
    message = data.get("message")
    return ("fail" if failed or raw in FAILED else "ok"), (str(message) if message is not None else None)


def routes(deps: Deps) -> list[BaseRoute]:
    async def heartbeat(request: Request) -> Response:
        name = request.path_params["name"]
        configured = next((h for h in deps.config.heartbeats if h.name == name), None)
        if configured is None:
            return JSONResponse({"error": f"no heartbeat named {name[:64]!r}"}, status_code=404)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or \
            request.query_params.get("token", "")
        try:
            if not token_matches(configured, given):
                return JSONResponse({"error": "missing or wrong token"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        except ConfigError as exc:  # its ${VAR} is unset: named, never a value
            log.warning("heartbeat %s: %s", name, exc.problems[0])
            return JSONResponse({"error": exc.problems[0]}, status_code=503)
        try:
            status, message = parse_body(await read_body(request, limit=MAX_BODY),
                                         failed=request.url.path.endswith("/fail"))
        except TooLarge as exc:
            return too_large(exc)
        except ClientDisconnect:
            return Response(status_code=400)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        alert = await received(deps, SlackAlerts(deps), configured, status=status, message=message)
        return JSONResponse({"heartbeat": name, "status": status, "alert": alert})

    return [Route("/heartbeats/{name}", heartbeat, methods=["POST"]),
            Route("/heartbeats/{name}/fail", heartbeat, methods=["POST"])]
