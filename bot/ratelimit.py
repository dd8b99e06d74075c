"""Per-user rate limit for destructive commands (kill switches, flags, rollbacks, resolves).

The count lives in opsbot's database (`rate_limits`), so the web process, the worker and every replica
share one limit. One row per user and action holds the times of the last allowed attempts; a check
locks that row (PostgreSQL `SELECT … FOR UPDATE`; on SQLite the leading INSERT takes the write lock),
so parallel attempts are counted one after another. Rows older than the window are pruned by the
housekeeping job (bot/housekeeping.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.clock import Clock, as_utc
from bot.db import Database
from bot.errors import RateLimited
from bot.models import RateLimitBucket

ATTEMPTS = 3  # a bucket pruned between the insert and the locking read is created again


class RateLimiter:
    """At most `limit` attempts per user and action within `window` (sliding window), across processes."""

    def __init__(self, db: Database, clock: Clock, *, limit: int = 10,
                 window: timedelta = timedelta(minutes=1)) -> None:
        self.db, self.clock, self.limit, self.window = db, clock, limit, window

    async def check(self, user: str, action: str) -> None:
        """Count one attempt, or raise RateLimited (not counted) when the window is full."""
        now = self.clock()
        for _ in range(ATTEMPTS):
            async with self.db.session() as session:
                await session.execute(self._create(user, action, now))
                query = (select(RateLimitBucket).where(RateLimitBucket.user == user, RateLimitBucket.action == action)
                         .with_for_update())
                bucket = (await session.scalars(query)).first()
                if bucket is None:
                    continue
                hits = [hit for hit in _times(bucket.hits) if now - hit < self.window]
                if len(hits) >= self.limit:
                    wait = int((hits[0] + self.window - now).total_seconds()) + 1
                    raise RateLimited(f"Slow down: at most {self.limit} `{action}` requests per "
                                      f"{int(self.window.total_seconds())}s. Try again in {wait}s.")
                bucket.hits = [hit.isoformat() for hit in [*hits, now]]
                bucket.updated_at = now
                return
        raise RuntimeError("rate limit bucket kept disappearing")  # pragma: no cover - needs a prune per attempt

    def _create(self, user: str, action: str, now: datetime) -> Any:
        """An empty bucket unless one exists (a write first: on SQLite it takes the lock before the read)."""
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        return insert(RateLimitBucket).values(user=user, action=action, hits=[], updated_at=now) \
            .on_conflict_do_nothing(index_elements=["user", "action"])

    async def prune(self) -> int:
        """Delete buckets whose newest hit is older than the window (they count nothing)."""
        async with self.db.session() as session:
            result = await session.execute(
                delete(RateLimitBucket).where(RateLimitBucket.updated_at < self.clock() - self.window))
        return int(getattr(result, "rowcount", 0) or 0)


def _times(values: list[Any]) -> list[datetime]:
    return [time for time in (as_utc(datetime.fromisoformat(str(v))) for v in values) if time is not None]
