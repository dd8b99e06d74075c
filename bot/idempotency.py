"""Seen-before keys for Slack redeliveries (event_id, view id): the first one wins, retries are no-ops."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.db import Database
from bot.models import ProcessedRequest


async def first_time(db: Database, key: str, *, clock: Clock) -> bool:
    """True exactly once per key, across replicas (a primary key decides)."""
    try:
        async with db.session() as session:
            session.add(ProcessedRequest(key=key[:255], at=clock()))
    except IntegrityError:
        return False
    return True
