"""Follow-ups: an incident's action items (text, owner, due day, status), each filed in the issue tracker.

Keyword-only verbs over an AsyncSession; nothing here knows Slack. Every change goes on the incident's
timeline (and so the audit log) through bot.timeline.add_event."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.errors import InvalidInput, NotFound
from bot.models import FollowUp
from bot.timeline import add_event

REMIND_EVERY = timedelta(days=7)  # an overdue follow-up's owner is reminded at most once a week
MAX_TEXT = 500


async def create(session: AsyncSession, *, clock: Clock, incident_id: int, text: str, owner: str | None,
                 due: datetime | None, actor: str, tracker: str | None) -> FollowUp:
    text = " ".join(text.split())
    if not text:
        raise InvalidInput("Usage: `/incident followup <text> [@owner] [due <date>]`")
    row = FollowUp(incident_id=incident_id, text=text[:MAX_TEXT], owner_id=owner, due=due, status="open",
                   created_by=actor, created_at=clock(), tracker=tracker, tracker_attempts=0)
    session.add(row)
    await session.flush()
    await add_event(session, clock=clock, incident_id=incident_id, actor=actor, kind="followup",
                    text=f"Follow-up #{row.id}: {row.text}", data={"followup": row.id, "owner": owner})
    return row


async def of_incident(session: AsyncSession, *, incident_id: int) -> list[FollowUp]:
    query = select(FollowUp).where(FollowUp.incident_id == incident_id).order_by(FollowUp.id)
    return list(await session.scalars(query))


async def get(session: AsyncSession, *, followup_id: int, incident_id: int | None = None) -> FollowUp:
    row = await session.get(FollowUp, followup_id)
    if row is None or (incident_id is not None and row.incident_id != incident_id):
        raise NotFound("follow-up", f"#{followup_id}", [])
    return row


async def complete(session: AsyncSession, *, clock: Clock, followup_id: int, actor: str,
                   incident_id: int | None = None, why: str = "") -> FollowUp | None:
    """Mark done; None when it was done already (a conditional write: two people, one completion)."""
    row = await get(session, followup_id=followup_id, incident_id=incident_id)
    done = await session.execute(update(FollowUp).where(FollowUp.id == followup_id, FollowUp.status == "open")
                                 .values(status="done", done_at=clock(), done_by=actor))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await session.refresh(row)
    await add_event(session, clock=clock, incident_id=row.incident_id, actor=actor, kind="followup_done",
                    text=f"Follow-up #{row.id} done{why}: {row.text}", data={"followup": row.id})
    return row


async def reassign(session: AsyncSession, *, clock: Clock, followup_id: int, owner: str, actor: str,
                   incident_id: int | None = None) -> tuple[FollowUp, str | None]:
    row = await get(session, followup_id=followup_id, incident_id=incident_id)
    before, row.owner_id, row.last_reminded_at = row.owner_id, owner, None
    await add_event(session, clock=clock, incident_id=row.incident_id, actor=actor, kind="followup_owner",
                    text=f"Follow-up #{row.id} is now <@{owner}>'s" + (f" (was <@{before}>)" if before else ""),
                    data={"followup": row.id, "owner": owner, "before": before})
    return row, before


async def record_issue(session: AsyncSession, *, followup_id: int, key: str, url: str, state: str) -> FollowUp:
    row = await get(session, followup_id=followup_id)
    row.tracker_key, row.tracker_url, row.tracker_state, row.tracker_error = key, url[:512], state[:32], None
    return row


async def record_failure(session: AsyncSession, *, followup_id: int, error: str) -> int:
    """Count a failed filing; the number of attempts so far."""
    row = await get(session, followup_id=followup_id)
    row.tracker_attempts = (row.tracker_attempts or 0) + 1
    row.tracker_error = error[:255]
    return row.tracker_attempts


async def filed_and_open(session: AsyncSession) -> list[FollowUp]:
    """Open follow-ups that have a tracker issue: what the poll reads."""
    query = select(FollowUp).where(FollowUp.status == "open", FollowUp.tracker_key.is_not(None))
    return list(await session.scalars(query.order_by(FollowUp.id)))


async def overdue(session: AsyncSession, *, now: datetime) -> list[FollowUp]:
    """Open, past due, and not reminded in the last week."""
    query = select(FollowUp).where(FollowUp.status == "open", FollowUp.due.is_not(None), FollowUp.due <= now,
                                   or_(FollowUp.last_reminded_at.is_(None),
                                       FollowUp.last_reminded_at <= now - REMIND_EVERY))
    return list(await session.scalars(query.order_by(FollowUp.id)))


async def claim_reminder(session: AsyncSession, *, followup_id: int, now: datetime,
                         seen: datetime | None) -> bool:
    """Claim this week's reminder (a conditional write first: two leaders, one DM)."""
    condition = FollowUp.last_reminded_at.is_(None) if seen is None else FollowUp.last_reminded_at == seen
    claimed = await session.execute(update(FollowUp).where(FollowUp.id == followup_id, condition)
                                    .values(last_reminded_at=now))
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


async def release_reminder(session: AsyncSession, *, followup_id: int, seen: datetime | None) -> None:
    await session.execute(update(FollowUp).where(FollowUp.id == followup_id).values(last_reminded_at=seen))
