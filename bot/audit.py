"""The audit log: who did what to which target, before and after, allowed or not."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.models import AuditEntry


async def record(
    session: AsyncSession,
    *,
    clock: Clock,
    actor: str,
    action: str,
    target: str,
    outcome: str = "ok",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=clock(), actor=actor, action=action, target=target[:255], outcome=outcome,
        before=before, after=after, detail=detail,
    )
    session.add(entry)
    await session.flush()
    return entry


async def recent(session: AsyncSession, *, target: str | None = None, limit: int = 50) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    return list((await session.scalars(query)).all())
