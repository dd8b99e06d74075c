"""Seen-before keys for Slack redeliveries (event_id, view id) and webhook deliveries (a provider's delivery id):
the first one wins, retries are no-ops."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.db import Database
from bot.models import ProcessedRequest, WebhookDelivery


async def first_time(db: Database, key: str, *, clock: Clock, owner: str | None = None) -> bool:
    """True exactly once per key, across replicas (a primary key decides) — and again for the same `owner`:
    a job run a second time because its worker died after writing the key must still do its work.

    One statement on a Core connection (INSERT … ON CONFLICT DO NOTHING RETURNING), not an ORM session: every
    job with a redelivery key starts with this, so its cost is paid once per request in a burst."""
    key = key[:255]
    insert = sqlite_insert if db.is_sqlite else pg_insert
    statement = (insert(ProcessedRequest).values(key=key, at=clock(), owner=owner)
                 .on_conflict_do_nothing(index_elements=[ProcessedRequest.key]).returning(ProcessedRequest.key))
    async with db.connection() as connection:
        if (await connection.execute(statement)).first() is not None:
            return True
        if owner is None:
            return False
        found = await connection.scalar(select(ProcessedRequest.owner).where(ProcessedRequest.key == key))
    return found == owner


async def first_delivery(db: Database, delivery: str, *, source: str, clock: Clock) -> bool:
    """True the first time a webhook delivery id is seen (a primary key decides, across replicas)."""
    try:
        async with db.session() as session:
            session.add(WebhookDelivery(id=delivery[:255], source=source, at=clock()))
    except IntegrityError:
        return False
    return True


async def forget_delivery(db: Database, delivery: str) -> None:
    """The delivery was not handled after all (its job could not be queued): its sender's retry is handled."""
    async with db.session() as session:
        await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id == delivery[:255]))
