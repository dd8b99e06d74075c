"""Work that runs after the Slack ack: tracked so shutdown can wait for it and failures are never silent.

Acks have priority. Slack's 3-second deadline is hard, background latency is not, and both share one
event loop, so during a burst of Slack requests (one in flight, or one within the last `quiet_after`
seconds) only `max_running_under_load` background tasks may start; the rest wait in FIFO order and start
as soon as the burst is over. At least one always runs, so background work never starves."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bot import metrics
from bot.errors import OpsbotError

log = logging.getLogger(__name__)

OnError = Callable[[BaseException], Awaitable[None]]


class BackgroundTasks:
    def __init__(self, *, max_running: int = 64, max_running_under_load: int = 2,
                 quiet_after: float = 0.02) -> None:
        self.max_running = max_running
        self.max_running_under_load = max(1, max_running_under_load)
        self.quiet_after = quiet_after
        self._last_foreground = float("-inf")
        self._wake_timer: asyncio.TimerHandle | None = None
        self.accepting = True
        self.foreground = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    # -- foreground (Slack requests being answered) -------------------------------------
    def foreground_started(self) -> None:
        self.foreground += 1
        self._last_foreground = asyncio.get_running_loop().time()

    def foreground_finished(self) -> None:
        self.foreground -= 1
        self._wake()

    # -- admission ------------------------------------------------------------------------
    def _under_load(self) -> bool:
        if self.foreground > 0:
            return True
        return asyncio.get_running_loop().time() - self._last_foreground < self.quiet_after

    def _limit(self) -> int:
        return self.max_running_under_load if self._under_load() else self.max_running

    async def _acquire(self) -> None:
        if not self._waiters and self._running < self._limit():
            self._running += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is counted for us by _wake before the result is set
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()
            raise

    def _release(self) -> None:
        self._running -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._running < self._limit():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._running += 1
                waiter.set_result(None)
        if self._waiters and self._wake_timer is None and self.foreground == 0:
            # Still inside the quiet window: look again when it ends.
            def again() -> None:
                self._wake_timer = None
                self._wake()

            self._wake_timer = asyncio.get_running_loop().call_later(self.quiet_after, again)

    # -- tasks ----------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str = "task",
              on_error: OnError | None = None, urgent: bool = False) -> asyncio.Task[Any]:
        """Run `coro` in the background; on failure log it, count it and call `on_error` (e.g. tell the user).

        `urgent` work starts at once, burst or not: opening a modal must use its trigger_id within 3 s."""
        task = asyncio.create_task(self._run(coro, name, on_error, urgent), name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)
        return task

    async def _run(self, coro: Coroutine[Any, Any, Any], name: str, on_error: OnError | None,
                   urgent: bool = False) -> Any:
        if urgent:
            self._running += 1
        else:
            try:
                await self._acquire()
            except asyncio.CancelledError:
                coro.close()
                raise
        try:
            return await coro
        except asyncio.CancelledError:
            log.warning("background task %s cancelled", name)
            raise
        except Exception as exc:
            metrics.BACKGROUND_FAILURES.labels(name=name).inc()
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
        finally:
            self._release()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no task is running or waiting (tasks spawned by tasks included)."""
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
        self.foreground = 0
        self._last_foreground = float("-inf")
        self._wake()
        if await self.wait_idle(timeout):
            return 0
        left = list(self._tasks)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        return len(left)
