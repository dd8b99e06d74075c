"""Identical reads asked for at about the same time share one read, when that read is fresh enough for each.

Twenty people typing `/health prod` during an outage would otherwise send twenty rounds of probes to a
production that is already struggling, and a queue drained after a burst would repeat the same read for
every job in it. A read answers a request when it *started after the request was made*: its result then
tells the requester nothing older than a read of their own would have, at the moment they asked. So a job
joins a read of the same key that is under way, or takes the last finished one, only if that read started
after its `asked_at`; otherwise it starts a read of its own (which later requests may join). A finished
read is taken only while it is fresh (`keep`, 5 s after it finished): an answer taken from the queue long
after it was asked still shows what is true about now, not a read that happened to start after the request.

- Times are wall-clock seconds (`time.time()`): the web process stamps `asked_at` when it enqueues, the
  worker compares. Replicas' clocks agree to well under the time a read takes (NTP); the comparison is
  strict, so a request and a read stamped in the same instant do not share.
- A read that fails fails every job that joined it (each job's own retry then starts a fresh read, since
  its retry starts after the failure); only a successful result is kept for later requests, one per key.
- A job that is cancelled while it waits does not cancel the read the others wait for.
- `asked_at=None` (a job enqueued before this existed, or work that must read for itself) never shares.
- Per process: keys are few (an environment, a flag, the open incidents), and one result per key is kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot import metrics

T = TypeVar("T")
Now = Callable[[], float]


KEEP = 5.0  # seconds a finished read answers later requests (made before it started)


@dataclass
class _Read:
    started: float
    future: asyncio.Future[Any]
    finished: float = 0.0


class SharedReads:
    def __init__(self, now: Now = time.time, *, keep: float = KEEP) -> None:
        self._now = now
        self.keep = keep
        self._running: dict[Hashable, _Read] = {}
        self._finished: dict[Hashable, _Read] = {}

    async def read(self, key: Hashable, read: Callable[[], Awaitable[T]], *, asked_at: float | None) -> T:
        """The result of `read()`, or of a read of `key` that started after `asked_at`."""
        if asked_at is not None:
            running, finished = self._running.get(key), self._finished.get(key)
            if finished is not None and self._now() - finished.finished > self.keep:
                finished = None
            for found in (running, finished):
                if found is not None and found.started > asked_at:
                    metrics.READS.labels(what=_what(key), outcome="shared").inc()
                    result: T = await asyncio.shield(found.future)
                    return result
        entry = _Read(self._now(), asyncio.ensure_future(read()))
        metrics.READS.labels(what=_what(key), outcome="read").inc()
        self._running[key] = entry
        entry.future.add_done_callback(lambda future: self._done(key, entry))
        result = await asyncio.shield(entry.future)
        return result

    def _done(self, key: Hashable, entry: _Read) -> None:
        if self._running.get(key) is entry:
            del self._running[key]
        if entry.future.cancelled() or entry.future.exception() is not None:  # retrieved: no "never retrieved"
            return
        entry.finished = self._now()
        kept = self._finished.get(key)
        if kept is None or kept.started < entry.started:
            self._finished[key] = entry


def _what(key: Hashable) -> str:
    """The /metrics label of a key: its kind (`("health", "prod")` -> "health")."""
    return str(key[0] if isinstance(key, tuple) and key else key)
