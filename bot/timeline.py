"""Incident timeline entries, shared by every feature that acts inside an incident
(kill switches, rollbacks, alerts) without depending on the incident commands."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.clock import Clock
from bot.models import Incident, IncidentEvent

OPEN = ("investigating", "identified", "mitigating", "monitoring")


async def open_incident_in_channel(session: AsyncSession, channel_id: str | None) -> Incident | None:
    """The open incident whose dedicated channel is `channel_id`, if any."""
    if not channel_id:
        return None
    query = select(Incident).where(Incident.channel_id == channel_id, Incident.status.in_(OPEN))
    return (await session.scalars(query.limit(1))).first()


async def add_event(session: AsyncSession, *, clock: Clock, incident_id: int, actor: str, kind: str,
                    text: str, data: dict[str, Any] | None = None) -> IncidentEvent:
    """Append to the incident's timeline and the audit log in the caller's transaction."""
    event = IncidentEvent(incident_id=incident_id, at=clock(), actor=actor, kind=kind, text=text, data=data)
    session.add(event)
    await audit.record(session, clock=clock, actor=actor, action=f"incident.{kind}", target=f"INC-{incident_id}",
                       after={"text": text, **(data or {})})
    await session.flush()
    return event
