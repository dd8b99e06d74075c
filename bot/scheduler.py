"""APScheduler jobs that run on exactly one replica: the holder of a PostgreSQL advisory lock.

SQLite means a single instance, which is always the leader. On PostgreSQL each replica tries
`pg_try_advisory_lock` on a connection it keeps open; when the leader dies its connection closes,
the lock is released, and another replica takes over on its next attempt (every `lock_interval`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot import metrics
from bot.db import Database

log = logging.getLogger(__name__)
LEADER_LOCK = 7_201_002
JobFunc = Callable[[], Awaitable[object]]


@dataclass
class Job:
    name: str
    func: JobFunc
    every: timedelta | None = None
    cron: str | None = None


def lock_holder_name(pid: int) -> str:
    return f"opsbot-scheduler-{socket.gethostname()[:30]}-{pid}"


class Scheduler:
    def __init__(self, db: Database, *, enabled: bool = True, lock_interval: float = 5.0) -> None:
        self.db = db
        self.enabled = enabled
        self.lock_interval = lock_interval
        self.jobs: dict[str, Job] = {}
        self.is_leader = False
        self._lock_conn: AsyncConnection | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._leader_task: asyncio.Task[None] | None = None

    # -- registration -----------------------------------------------------------------
    def every(self, name: str, interval: timedelta, func: JobFunc) -> None:
        self.jobs[name] = Job(name, func, every=max(interval, timedelta(seconds=1)))

    def cron(self, name: str, crontab: str, func: JobFunc) -> None:
        self.jobs[name] = Job(name, func, cron=crontab)

    # -- running ----------------------------------------------------------------------
    async def run_now(self, name: str) -> None:
        """Run one job immediately (tests, `opsbot` admin), leader or not."""
        await self._guarded(self.jobs[name], require_leader=False)

    async def _guarded(self, job: Job, *, require_leader: bool = True) -> None:
        if require_leader and not self.is_leader:
            return
        try:
            await job.func()
        except Exception:
            metrics.BACKGROUND_FAILURES.labels(name=f"job:{job.name}").inc()
            log.exception("scheduled job %s failed", job.name)

    async def start(self) -> None:
        if not self.enabled:
            return
        scheduler = AsyncIOScheduler(timezone="UTC")
        for job in self.jobs.values():
            trigger = (CronTrigger.from_crontab(job.cron, timezone="UTC") if job.cron
                       else IntervalTrigger(seconds=job.every.total_seconds() if job.every else 60))
            scheduler.add_job(self._guarded, trigger, args=[job], id=job.name, name=job.name, max_instances=1,
                              coalesce=True, misfire_grace_time=30)
        scheduler.start()
        self._scheduler = scheduler
        await self._try_lead()
        self._leader_task = asyncio.create_task(self._leadership_loop(), name="scheduler-leadership")

    async def shutdown(self) -> None:
        if self._leader_task is not None:
            self._leader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._leader_task
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await self._release()

    # -- leadership -------------------------------------------------------------------
    async def _leadership_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lock_interval)
            await self._try_lead()

    async def _try_lead(self) -> None:
        if self.db.is_sqlite:
            self._set_leader(True)
            return
        try:
            if self._lock_conn is None:
                self._lock_conn = await self.db.engine.connect()
                await self._lock_conn.execution_options(isolation_level="AUTOCOMMIT")
                # So the web process beside a worker can tell whether its worker leads (`held_by`).
                await self._lock_conn.execute(text("SELECT set_config('application_name', :n, false)"),
                                              {"n": lock_holder_name(os.getpid())})
            if self.is_leader:
                await self._lock_conn.execute(text("SELECT 1"))  # still connected means still holding
                return
            got = await self._lock_conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK})
            if got:
                log.info("this replica is now the scheduler leader")
            self._set_leader(bool(got))
        except Exception as exc:
            log.warning("scheduler leadership check failed (%s); stepping down", type(exc).__name__)
            self._set_leader(False)
            await self._drop_connection()

    async def held_by(self, pid: int) -> bool:
        """Whether process `pid` (this replica's worker) holds the leader lock (PostgreSQL)."""
        async with self.db.engine.connect() as conn:
            return bool(await conn.scalar(text(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                "WHERE a.application_name = :n AND l.locktype = 'advisory' AND l.objid = :k AND l.granted)"),
                {"n": lock_holder_name(pid), "k": LEADER_LOCK}))

    def _set_leader(self, value: bool) -> None:
        self.is_leader = value
        metrics.SCHEDULER_LEADER.set(1 if value else 0)

    async def _release(self) -> None:
        if self._lock_conn is not None and self.is_leader:
            with contextlib.suppress(Exception):
                await self._lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK})
        self._set_leader(False)
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        if self._lock_conn is not None:
            conn, self._lock_conn = self._lock_conn, None
            with contextlib.suppress(Exception):
                await conn.close()
