"""Per-user rate limit for destructive commands (kill switches, flags, rollbacks)."""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import timedelta

from bot.clock import Clock
from bot.errors import RateLimited


class RateLimiter:
    """At most `limit` attempts per user and action within `window` (sliding window)."""

    def __init__(self, clock: Clock, *, limit: int = 10, window: timedelta = timedelta(minutes=1)) -> None:
        self.clock, self.limit, self.window = clock, limit, window
        self._hits: dict[tuple[str, str], deque] = defaultdict(deque)

    def check(self, user: str, action: str) -> None:
        now = self.clock()
        hits = self._hits[(user, action)]
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            wait = int((hits[0] + self.window - now).total_seconds()) + 1
            raise RateLimited(f"Slow down: at most {self.limit} `{action}` requests per "
                              f"{int(self.window.total_seconds())}s. Try again in {wait}s.")
        hits.append(now)
