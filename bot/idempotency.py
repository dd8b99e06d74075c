"""Seen-before keys for Slack redeliveries (event_id, view id): the first one wins, retries are no-ops."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.db import Database
from bot.models import ProcessedRequest


async def first_time(db: Database, key: str, *, clock: Clock, owner: str | None = None) -> bool:
    """True exactly once per key, across replicas (a primary key decides) — and again for the same `owner`:
    a job run a second time because its worker died after writing the key must still do its work."""
    key = key[:255]
    try:
        async with db.session() as session:
            session.add(ProcessedRequest(key=key, at=clock(), owner=owner))
    except IntegrityError:
        if owner is None:
            return False
        async with db.session() as session:
            found = await session.scalar(select(ProcessedRequest.owner).where(ProcessedRequest.key == key))
        return found == owner
    return True
