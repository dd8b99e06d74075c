"""The status page (issue 18): GET /status, /status.json, /status/feed.atom, `/incident publish`, the update
modal's "Publish to status page", and the hosted Statuspage mirror.

`/incident publish [INC-42] [investigating|identified|monitoring|resolved] <text>` posts one public update
(the incident is the channel's when not named). commands/incident/handlers.py hands the verb over here."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from bot import incidents, metrics
from bot.statuspage.state import PUBLIC_STATUSES
from bot.statuspage.text import MAX_TEXT
from commands.common import ack_deferred, ephemeral, request_key
from commands.statuspage.jobs import PUBLISH, SYNC

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncAck
    from starlette.routing import BaseRoute

    from bot.deps import Deps

__all__ = ["HELP", "is_publish", "publish_command", "routes", "schedule"]
SYNC_EVERY = timedelta(seconds=30)
USAGE = ("Usage: `/incident publish [INC-42] [" + "|".join(PUBLIC_STATUSES) + "] <text>` — what customers read "
         "on the status page (in an incident's channel the incident is that one).")
HELP = [("/incident publish [INC-42] [status] <text>", "Post a public update to the status page (its own text: "
                                                        "internal updates never reach it)")]
_REF = re.compile(r"^INC-\d{1,9}$", re.IGNORECASE)


def is_publish(text: str | None) -> bool:
    words = (text or "").split(maxsplit=1)
    return bool(words) and words[0].lower() == "publish"


def parse_publish(text: str | None) -> tuple[str | None, str | None, str]:
    """(ref, status, text) of `publish [INC-n] [status] <text>`; ValueError with the usage."""
    words = (text or "").split()[1:]
    ref = None
    if words and _REF.match(words[0]):
        ref, words = words[0].upper(), words[1:]
    status = None
    if words and words[0].lower() in PUBLIC_STATUSES:
        status, words = words[0].lower(), words[1:]
    body = " ".join(words).strip()
    if not body:
        raise ValueError(USAGE)
    if len(body) > MAX_TEXT:
        raise ValueError(f"A public update says at most {MAX_TEXT} characters.")
    return ref, status, body


async def publish_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("incident")
    if deps.config.status_page is None or not deps.config.status_page.enabled:
        await ack(ephemeral(":warning: No status page is configured (`status_page:` in opsbot.yml)."))
        return
    try:
        ref, status, text = parse_publish(command.get("text"))
    except ValueError as exc:
        await ack(ephemeral(f":warning: {exc}"))
        return
    once = request_key(command)
    await ack_deferred(ack, deps, PUBLISH, answer=ephemeral("Publishing to the status page…"), once=once,
                       user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"),
                       incident_id=incidents.parse_ref(ref) if ref else None, ref=ref, status=status, text=text,
                       key=once)


def schedule(deps: Deps) -> None:
    if deps.config.status_page is not None and deps.config.status_page.enabled:
        deps.scheduler.every(SYNC, SYNC_EVERY, partial(deps.run_job, SYNC))


def routes(deps: Deps) -> list[BaseRoute]:
    from starlette.routing import Route

    from commands.statuspage.web import handlers

    html, as_json, atom = handlers(deps)
    return [Route("/status", html, methods=["GET", "HEAD"]), Route("/status.json", as_json, methods=["GET", "HEAD"]),
            Route("/status/feed.atom", atom, methods=["GET", "HEAD"])]
