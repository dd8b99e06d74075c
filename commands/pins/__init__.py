"""📌 on a message in an incident channel puts it on the incident's timeline (and so in the postmortem);
removing the reaction takes it off. Events are acked by bolt when the listener returns; the work is a job,
once per event_id (a redelivered event does nothing), one at a time per channel (a quick pin and unpin stay
in order). Needs the `reaction_added`/`reaction_removed` events and `reactions:read`, `channels:history`
(`groups:history` in private channels) scopes."""

from __future__ import annotations

from typing import Any

from bot.deps import Deps
from bot.pins import REACTION
from commands.common import defer, request_key
from commands.router import Router

PIN_JOB = "pins.add"
UNPIN_JOB = "pins.remove"


def _target(event: dict[str, Any]) -> tuple[str, str] | None:
    """(channel, ts) of a 📌 on a message; None for any other reaction or item."""
    item = event.get("item")
    if event.get("reaction") != REACTION or not isinstance(item, dict) or item.get("type") != "message":
        return None
    channel, ts = item.get("channel"), item.get("ts")
    if not (isinstance(channel, str) and channel and isinstance(ts, str) and ts):
        return None
    return channel, ts


async def _handle(name: str, event: dict[str, Any], body: dict[str, Any], deps: Deps) -> None:
    target = _target(event)
    user = event.get("user")
    if target is None or not isinstance(user, str):
        return
    channel, ts = target
    await defer(deps, name, once=request_key(body), by=user, channel=channel, ts=ts)


async def reaction_added(event: dict[str, Any], body: dict[str, Any], deps: Deps) -> None:
    await _handle(PIN_JOB, event, body, deps)


async def reaction_removed(event: dict[str, Any], body: dict[str, Any], deps: Deps) -> None:
    await _handle(UNPIN_JOB, event, body, deps)


def register(app: Router) -> None:
    app.event("reaction_added")(reaction_added)
    app.event("reaction_removed")(reaction_removed)
