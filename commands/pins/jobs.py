"""The pin jobs: read the message (conversations.replies finds a thread reply too), its permalink, then the
timeline entry. Not the requester's business when it fails (nobody typed a command): logged only."""

from __future__ import annotations

import logging
from typing import Any

from bot import pins
from bot.deps import Deps
from bot.jobs import job
from commands.pins import PIN_JOB, UNPIN_JOB

log = logging.getLogger(__name__)
LOCK = "pins:{channel}"


async def _message(deps: Deps, channel: str, ts: str) -> dict[str, Any] | None:
    answer = await deps.slack.conversations_replies(channel=channel, ts=ts, limit=1, inclusive=True)
    return next((m for m in answer.get("messages") or [] if isinstance(m, dict) and m.get("ts") == ts), None)


@job(PIN_JOB, lock=LOCK, retries=2)
async def pin(deps: Deps, *, by: str, channel: str, ts: str) -> None:
    incident = await pins.incident_of_channel(deps.db, channel)
    if incident is None:
        return  # not an incident channel: a 📌 like any other
    found = await _message(deps, channel, ts)
    if found is None:
        log.info("pinned message %s in %s is gone", ts, channel)
        return
    permalink = (await deps.slack.chat_getPermalink(channel=channel, message_ts=ts)).get("permalink")
    author = found.get("user") if isinstance(found.get("user"), str) else None
    message = pins.PinnedMessage(channel=channel, ts=ts, author=author,
                                 text=deps.scrubber(str(found.get("text") or ""))[: pins.MAX_TEXT],
                                 permalink=permalink if isinstance(permalink, str) else None)
    await pins.pin(deps.db, clock=deps.clock, incident_id=incident.id, message=message, by=by)


@job(UNPIN_JOB, lock=LOCK, retries=2)
async def unpin(deps: Deps, *, by: str, channel: str, ts: str) -> None:
    await pins.unpin(deps.db, clock=deps.clock, channel=channel, ts=ts, by=by)
