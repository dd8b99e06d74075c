"""The housekeeping job: prune tables that only ever grow (seen-request keys, rate limit buckets).

Runs through the scheduler, so on one replica (the leader); deletes in bounded batches so a large backlog
never holds a long transaction or lock."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from bot.clock import Clock
from bot.db import Database
from bot.models import ProcessedRequest
from bot.ratelimit import RateLimiter

log = logging.getLogger(__name__)
JOB = "housekeeping.prune"
FAILED_JOB_RETENTION = timedelta(days=3)  # failed jobs stay this long in the queue's tables, for inspection
INTERVAL = timedelta(minutes=10)
# Seen-request keys only have to outlive Slack's redeliveries (3 retries over about 5 minutes) and double
# submissions of a view or trigger (seconds to minutes). A day is far past both, and keeps the table to a
# day's interactions; a key pruned later than that can only match a request Slack no longer sends.
PROCESSED_RETENTION = timedelta(hours=24)
BATCH = 1000
MAX_BATCHES = 50  # at most 50,000 rows per run; the rest waits for the next run


@dataclass(frozen=True)
class Pruned:
    processed_requests: int
    rate_limits: int


async def prune_processed(db: Database, *, clock: Clock, retention: timedelta = PROCESSED_RETENTION,
                          batch: int = BATCH, max_batches: int = MAX_BATCHES) -> int:
    """Delete seen-request keys older than `retention`, `batch` rows per transaction."""
    cutoff = clock() - retention
    total = 0
    for _ in range(max_batches):
        async with db.session() as session:
            oldest = select(ProcessedRequest.key).where(ProcessedRequest.at < cutoff).limit(batch)
            result = await session.execute(delete(ProcessedRequest).where(ProcessedRequest.key.in_(oldest)))
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if deleted < batch:
            break
    return total


async def run(db: Database, *, clock: Clock, ratelimit: RateLimiter) -> Pruned:
    pruned = Pruned(await prune_processed(db, clock=clock), await ratelimit.prune())
    if pruned.processed_requests or pruned.rate_limits:
        log.info("housekeeping pruned %d processed request key(s), %d rate limit bucket(s)",
                 pruned.processed_requests, pruned.rate_limits)
    return pruned
