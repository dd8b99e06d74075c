"""Work that runs after the Slack ack: tracked so shutdown can wait for it and failures are never silent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bot import metrics

log = logging.getLogger(__name__)

OnError = Callable[[BaseException], Awaitable[None]]


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str = "task",
              on_error: OnError | None = None) -> asyncio.Task[Any]:
        """Run `coro` in the background; on failure log it, count it and call `on_error` (e.g. tell the user)."""
        task = asyncio.create_task(self._run(coro, name, on_error), name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)
        return task

    async def _run(self, coro: Coroutine[Any, Any, Any], name: str, on_error: OnError | None) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            log.warning("background task %s cancelled", name)
            raise
        except Exception as exc:
            metrics.BACKGROUND_FAILURES.labels(name=name).inc()
            from bot.errors import OpsbotError

            if isinstance(exc, OpsbotError):
                log.info("%s: %s", name, exc)
            else:
                log.exception("background task %s failed", name)
            if on_error is not None:
                try:
                    await on_error(exc)
                except Exception:
                    log.exception("reporting the failure of %s failed too", name)
            return None

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no task is running (tasks spawned by tasks included)."""
        try:
            async with asyncio.timeout(timeout):
                while self._tasks:
                    await self._idle.wait()
                    await asyncio.sleep(0)
        except TimeoutError:
            return False
        return True

    async def drain(self, timeout: float = 10.0) -> int:
        """Stop accepting, let in-flight work finish; cancel what is left after `timeout`. Returns cancelled count."""
        self.accepting = False
        if await self.wait_idle(timeout):
            return 0
        left = list(self._tasks)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        return len(left)
