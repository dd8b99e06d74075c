"""Everything a handler or job needs, built once from Settings and Config and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from slack_sdk.web.async_client import AsyncWebClient

from bot import audit, housekeeping, jobs
from bot.clock import Clock, utcnow
from bot.config import Config
from bot.db import Database
from bot.errors import PermissionDenied
from bot.permissions import Authorizer
from bot.providers.probe_client import Probes
from bot.queue import JobQueue, make_queue
from bot.ratelimit import RateLimiter
from bot.scheduler import Scheduler
from bot.secrets import Scrubber
from bot.settings import Settings
from bot.shared_reads import SharedReads
from bot.slack import Directory
from bot.tasks import BackgroundTasks

# Target systems: bounded connections, timeouts on every call, bodies read with a size cap by callers.
HTTP_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
RECOVER_JOB = "jobs.recover"
RECOVER_INTERVAL = timedelta(seconds=2)


@dataclass
class Deps:
    settings: Settings
    config: Config
    db: Database
    slack: AsyncWebClient
    http: httpx.AsyncClient
    scheduler: Scheduler
    clock: Clock = utcnow
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)
    directory: Directory = field(init=False)
    authorizer: Authorizer = field(init=False)
    ratelimit: RateLimiter = field(init=False)
    # Masks every secret opsbot knows (settings, values of the config's ${VAR}s) in command output and logs.
    scrubber: Scrubber = field(init=False)
    # Named jobs (bot/jobs.py) wait here: procrastinate on PostgreSQL, this process on SQLite.
    queue: JobQueue = field(init=False)
    # Identical reads (an environment's checks, a flag's state, the open incidents) asked for together.
    reads: SharedReads = field(default_factory=SharedReads)
    # HTTP for health checks (aiohttp: a hundred checks at once cost a third of httpx's CPU).
    probes: Probes = field(default_factory=Probes)

    def __post_init__(self) -> None:
        self.queue = make_queue(self.settings.database_url.get_secret_value(), jobs.REGISTRY, self.tasks)
        self.directory = Directory(self.slack)
        self.authorizer = Authorizer(self.config, self.directory)
        self.ratelimit = RateLimiter(self.db, self.clock)
        self.scrubber = Scrubber.of(settings=self.settings, config=self.config)
        self.scheduler.every(housekeeping.JOB, housekeeping.INTERVAL, self.housekeeping)
        if self.queue.durable:  # jobs of a worker that died mid-job go back to the queue within seconds
            self.scheduler.every(RECOVER_JOB, RECOVER_INTERVAL, self.queue.recover_stalled)

    async def run_job(self, name: str, **kwargs: object) -> object:
        """Run a named job here and now (the scheduler's work: the next tick is its retry)."""
        return await jobs.run(self, jobs.REGISTRY.get(name), kwargs)

    async def housekeeping(self) -> None:
        """The scheduled prune of seen-request keys and rate limit buckets (bot/housekeeping.py)."""
        await housekeeping.run(self.db, clock=self.clock, ratelimit=self.ratelimit)
        await self.queue.prune(housekeeping.FAILED_JOB_RETENTION)

    async def require(self, *, user: str, action: str, target: str, environment: str | None = None,
                      fresh: bool = False) -> None:
        """Raise PermissionDenied (and audit the denial) unless `user` may `action` in `environment`.

        `fresh=True` for the re-check right before a destructive effect (a confirm or approve press): group
        membership is read from Slack now, not from the minute-long cache, and an unanswered lookup denies."""
        decision = await self.authorizer.decide(user, action, environment, fresh=fresh)
        if decision.allowed:
            return
        async with self.db.session() as session:
            await audit.record(session, clock=self.clock, actor=user, action=action, target=target,
                               outcome="denied", detail=decision.reason,
                               after={"environment": environment} if environment else None)
        raise PermissionDenied(action, target, f"({decision.reason})")


def make_http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS, follow_redirects=False,
                             headers={"User-Agent": "opsbot"})
