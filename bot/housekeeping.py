"""The housekeeping job: prune tables that only ever grow (seen-request keys, inbound webhook deliveries, rate
limit buckets).

Runs through the scheduler, so on one replica (the leader); deletes in bounded batches so a large backlog
never holds a long transaction or lock."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from bot.clock import Clock
from bot.db import Database
from bot.models import ProcessedRequest, WebhookDelivery
from bot.ratelimit import RateLimiter

log = logging.getLogger(__name__)
JOB = "housekeeping.prune"
FAILED_JOB_RETENTION = timedelta(days=3)  # failed jobs stay this long in the queue's tables, for inspection
INTERVAL = timedelta(minutes=10)
# Seen-request keys only have to outlive Slack's redeliveries (3 retries over about 5 minutes) and double
# submissions of a view or trigger (seconds to minutes). A day is far past both, and keeps the table to a
# day's interactions; a key pruned later than that can only match a request Slack no longer sends.
PROCESSED_RETENTION = timedelta(hours=24)
# Inbound provider webhooks (PagerDuty's X-Webhook-Id) are redelivered for up to 48 hours: a week is past that.
WEBHOOK_RETENTION = timedelta(days=7)
BATCH = 1000
MAX_BATCHES = 50  # at most 50,000 rows per run; the rest waits for the next run


@dataclass(frozen=True)
class Pruned:
    processed_requests: int
    rate_limits: int
    webhook_deliveries: int = 0


async def _prune(db: Database, table: type[ProcessedRequest] | type[WebhookDelivery], key: Any, at: Any, *,
                 cutoff: datetime, batch: int, max_batches: int) -> int:
    """Delete the rows of `table` older than `cutoff`, `batch` rows per transaction."""
    total = 0
    for _ in range(max_batches):
        async with db.session() as session:
            oldest = select(key).where(at < cutoff).limit(batch)
            result = await session.execute(delete(table).where(key.in_(oldest)))
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if deleted < batch:
            break
    return total


async def prune_processed(db: Database, *, clock: Clock, retention: timedelta = PROCESSED_RETENTION,
                          batch: int = BATCH, max_batches: int = MAX_BATCHES) -> int:
    """Delete seen-request keys older than `retention`, `batch` rows per transaction."""
    return await _prune(db, ProcessedRequest, ProcessedRequest.key, ProcessedRequest.at,
                        cutoff=clock() - retention, batch=batch, max_batches=max_batches)


async def prune_webhook_deliveries(db: Database, *, clock: Clock, retention: timedelta = WEBHOOK_RETENTION,
                                   batch: int = BATCH, max_batches: int = MAX_BATCHES) -> int:
    """Delete the ids of inbound webhooks handled longer ago than `retention`."""
    return await _prune(db, WebhookDelivery, WebhookDelivery.id, WebhookDelivery.at,
                        cutoff=clock() - retention, batch=batch, max_batches=max_batches)


async def run(db: Database, *, clock: Clock, ratelimit: RateLimiter) -> Pruned:
    pruned = Pruned(await prune_processed(db, clock=clock), await ratelimit.prune(),
                    await prune_webhook_deliveries(db, clock=clock))
    if pruned.processed_requests or pruned.rate_limits or pruned.webhook_deliveries:
        log.info("housekeeping pruned %d processed request key(s), %d rate limit bucket(s), %d webhook "
                 "delivery id(s)", pruned.processed_requests, pruned.rate_limits, pruned.webhook_deliveries)
    return pruned
