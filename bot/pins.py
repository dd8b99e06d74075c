"""Messages pinned to an incident's timeline with a 📌 reaction (commands/pins).

A pinned message is one `pinned` timeline entry (its text, author and permalink in `data`), whoever else
pins it too (their ids join `data["by"]`); when the last of them removes the reaction the entry is deleted,
so neither the timeline nor the postmortem shows it any longer (the audit log keeps both steps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.clock import Clock
from bot.db import Database
from bot.models import Incident, IncidentEvent
from bot.timeline import add_event

PINNED = "pinned"
REACTION = "pushpin"
MAX_TEXT = 500


@dataclass(frozen=True)
class PinnedMessage:
    channel: str
    ts: str
    author: str | None  # a user id; None for a bot or webhook message without one
    text: str
    permalink: str | None


async def _incident_of(session: AsyncSession, channel: str) -> Incident | None:
    query = select(Incident).where(Incident.channel_id == channel).order_by(Incident.id.desc()).limit(1)
    return (await session.scalars(query)).first()


async def incident_of_channel(db: Database, channel: str) -> Incident | None:
    """The latest incident whose dedicated channel this is (resolved ones too: pins made while writing the
    postmortem count)."""
    async with db.session() as session:
        return await _incident_of(session, channel)


async def _entry(session: AsyncSession, incident_id: int, ts: str) -> IncidentEvent | None:
    query = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == PINNED)
    return next((e for e in (await session.scalars(query)).all() if (e.data or {}).get("ts") == ts), None)


def timeline_text(message: PinnedMessage) -> str:
    who = f"<@{message.author}>" if message.author else "a message"
    text = " ".join(message.text.split())
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    link = f" <{message.permalink}|(link)>" if message.permalink else ""
    return f"{who}: “{text}”{link}"


async def pin(db: Database, *, clock: Clock, incident_id: int, message: PinnedMessage, by: str) -> bool:
    """Put the message on the timeline; False when it is there already (`by` is then noted as a pinner)."""
    async with db.session() as session:
        found = await _entry(session, incident_id, message.ts)
        if found is not None:
            data: dict[str, Any] = dict(found.data or {})
            if by not in data.get("by", []):
                data["by"] = [*data.get("by", []), by]
                found.data = data
            return False
        await add_event(session, clock=clock, incident_id=incident_id, actor=by[:64], kind=PINNED,
                        text=timeline_text(message),
                        data={"ts": message.ts, "channel": message.channel, "author": message.author,
                              "permalink": message.permalink, "text": message.text[:MAX_TEXT], "by": [by]})
        return True


async def unpin(db: Database, *, clock: Clock, channel: str, ts: str, by: str) -> bool:
    """`by` removed their 📌 in `channel`: True when that took the message off the timeline of the channel's
    incident (nobody else pins it); False too when the channel is no incident's."""
    async with db.session() as session:
        incident = await _incident_of(session, channel)
        return incident is not None and await _unpin(session, clock=clock, incident_id=incident.id, ts=ts, by=by)


async def _unpin(session: AsyncSession, *, clock: Clock, incident_id: int, ts: str, by: str) -> bool:
    found = await _entry(session, incident_id, ts)
    if found is None:
        return False
    data: dict[str, Any] = dict(found.data or {})
    pinners = [user for user in data.get("by", []) if user != by]
    if pinners:
        data["by"] = pinners
        found.data = data
        return False
    await audit.record(session, clock=clock, actor=by[:64], action="incident.unpinned", target=f"INC-{incident_id}",
                       before={"text": found.text, "ts": ts})
    await session.delete(found)
    await session.flush()
    return True
