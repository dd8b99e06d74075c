"""Baselines for bench/ack_latency.py: a minimal slack-bolt app that only acks, served the same way as opsbot
(uvicorn, one worker, bolt's Starlette adapter). BASELINE_PBR=1 sets process_before_response=True."""

from __future__ import annotations

import os

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route


async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
    return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token="xoxb-bench",
                           bot_user_id="U0BOT0001", bot_id="B0BOT0001")


app = AsyncApp(signing_secret=os.environ["SLACK_SIGNING_SECRET"], authorize=authorize,
               process_before_response=os.environ.get("BASELINE_PBR") == "1")


@app.command("/incident")
@app.command("/health")
@app.command("/killswitch")
async def only_ack(ack) -> None:  # type: ignore[no-untyped-def]
    await ack()


handler = AsyncSlackRequestHandler(app)


async def events(request: Request):  # type: ignore[no-untyped-def]
    return await handler.handle(request)


asgi = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
