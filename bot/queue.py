"""Where named jobs (bot/jobs.py) wait and run: procrastinate on PostgreSQL, in-process on SQLite.

- `PostgresQueue`: a job is a row in procrastinate's tables, written before the Slack ack is sent, so it
  survives the death of the web process, the worker or the whole replica. Every replica's worker process
  takes jobs; jobs with the same lock run one at a time across all of them. A worker that dies mid-job
  stops its heartbeat; `recover_stalled` (scheduled on the leader) puts its jobs back in the queue.
  Defers made while another is being written are sent together in one statement (group commit), so a
  burst of acks costs a few round trips, not one per request.
- `InProcessQueue`: SQLite is one instance (the shell, a trial): the same jobs, locks, retries and failure
  reports, as tasks of this process. Not durable: it lives as long as the process.

Both run each attempt through `JobQueue.attempt`, which applies the redelivery key, counts the outcome
and tells the requester when a job has failed for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot import metrics
from bot.errors import DependencyDown, OpsbotError
from bot.idempotency import first_time
from bot.jobs import Job, Registry, Reporter, will_retry
from bot.jobs import run as run_job

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from bot.deps import Deps
    from bot.tasks import BackgroundTasks

log = logging.getLogger(__name__)
ONCE = "_once"  # reserved argument: the Slack request's redelivery key (commands.common.request_key)
OWNER = "_owner"  # reserved argument: whose redelivery key it is, when not this run's (a bundled job's retry)
DONE = "_attempts"  # reserved argument: attempts made before this row (a bundled job's retry is a new row)
RESERVED = (ONCE, OWNER, DONE)
POOL_STOP_TIMEOUT = 5.0  # seconds a failed pool's workers get to stop (a connection attempt's connect_timeout)
STATS_TTL = 2.0  # seconds /metrics and /health reuse one reading of the queue's depth
DEFER_TIMEOUT = 2.0  # seconds an enqueue may take before the request is refused (the ack is due in 3 s)
INSERTS_AT_ONCE = 2  # enqueue statements in flight at once (the connections of the enqueue pool)


@dataclass  # not frozen: bot.metrics.set_queue's Protocol reads plain attributes
class QueueStats:
    waiting: int  # ready or scheduled, not started
    running: int
    failed: int  # failed for good, kept for inspection until housekeeping prunes them
    oldest_seconds: float  # age of the oldest waiting job (0 when none)

    def as_dict(self) -> dict[str, Any]:
        return {"waiting": self.waiting, "running": self.running, "failed": self.failed,
                "oldest_seconds": round(self.oldest_seconds, 3)}


class QueueUnavailable(DependencyDown):
    def __init__(self) -> None:
        super().__init__("opsbot could not queue this: its database is unreachable, so nothing was done; "
                         "please try again in a moment.")


class QueueTimeout(DependencyDown):
    """The database took the insert but did not answer in time: it may still commit it."""

    def __init__(self) -> None:
        super().__init__("opsbot could not queue this: its database did not answer in time, so it was most "
                         "likely not done; if it was a change, check before trying again.")


async def _stop_pool(pool: Any) -> None:
    with contextlib.suppress(Exception):
        await pool.close(timeout=POOL_STOP_TIMEOUT)


async def _autocommit(connection: Any) -> None:
    """Each of procrastinate's statements is one function call, atomic on its own: in a transaction each also
    cost a BEGIN and a COMMIT round trip (an ack waits for its insert)."""
    await connection.set_autocommit(True)


def _attempts_made(attempts: int, kwargs: Mapping[str, Any]) -> int:
    """procrastinate's count for this row, plus the attempts made before it (a bundled job's retry)."""
    return attempts + int(kwargs.get(DONE, 0))


def _forget(task: asyncio.Task[None]) -> None:
    """An abandoned insert's outcome, read so that asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()


def plain(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as JSON will carry them; anything JSON cannot carry is a programming error here."""
    try:
        return json.loads(json.dumps(dict(kwargs)))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"job arguments must be plain JSON: {exc}") from None


class JobQueue(ABC):
    """What listeners (`defer`), the app (`start`/`stop`, `stats`) and the tests (`wait_idle`) use."""

    durable = False
    backend = "in-process"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.reporter: Reporter | None = None
        self.deps: Deps | None = None
        self._stats: tuple[float, QueueStats] | None = None

    async def open(self) -> None:
        """Connect (to defer); idempotent."""
        return None  # nothing to do in this process (the in-process queue)

    async def close(self) -> None:
        await self.stop_worker()

    @abstractmethod
    async def defer(self, name: str, kwargs: Mapping[str, Any], *, once: str | None = None) -> None:
        """Store the job `name` with `kwargs` (and the redelivery key `once`) for a worker."""

    async def start_worker(self, deps: Deps) -> None:
        """Run jobs in this process from now on."""
        self.deps = deps

    async def stop_worker(self, timeout: float = 10.0) -> None:
        """Finish (for up to `timeout` seconds) what this process is running; take no more."""
        return None  # nothing to do in this process (the in-process queue)

    async def stats(self) -> QueueStats:
        now = time.monotonic()
        if self._stats is not None and now - self._stats[0] < STATS_TTL:
            return self._stats[1]
        stats = await self._read_stats()
        self._stats = (now, stats)
        metrics.set_queue(stats)
        return stats

    @abstractmethod
    async def _read_stats(self) -> QueueStats:
        """The queue's depth now."""

    @abstractmethod
    async def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once no job is waiting or running."""

    async def recover_stalled(self) -> int:
        """Put back the jobs of workers that stopped without finishing them; how many."""
        return 0

    async def prune(self, older_than: timedelta) -> None:
        """Forget failed jobs older than `older_than` (finished ones are deleted when they finish)."""
        return None  # nothing to do in this process (the in-process queue)

    # -- one attempt, the same on both backends ----------------------------------------------------
    async def attempt(self, job: Job, kwargs: Mapping[str, Any], *, attempt: int, owner: str) -> None:
        """Run `job` once; raise if it failed. On its final failure (no retry will follow) the requester
        is told before the exception is re-raised."""
        deps = self.deps
        assert deps is not None, "start_worker() first"
        args = {key: value for key, value in kwargs.items() if key not in RESERVED}
        once = kwargs.get(ONCE)
        owner = str(kwargs.get(OWNER) or owner)
        started = time.perf_counter()
        try:
            if isinstance(once, str) and not await first_time(deps.db, f"{job.name}:{once}", clock=deps.clock,
                                                             owner=owner):
                log.info("redelivered request %s ignored (job %s)", once, job.name)
                metrics.count_job(job.name, "duplicate", time.perf_counter() - started)
                return
            await run_job(deps, job, args)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            if will_retry(job, exc, attempt):
                metrics.count_job(job.name, "retried", elapsed)
                log.warning("job %s failed (%s), attempt %d of %d; retrying in %.0fs", job.name,
                            type(exc).__name__, attempt + 1, job.retries + 1, job.backoff(attempt))
            else:
                metrics.count_job(job.name, "failed", elapsed)
                if isinstance(exc, OpsbotError):
                    log.info("job %s: %s", job.name, exc)
                else:
                    log.error("job %s failed for good after %d attempt(s)", job.name, attempt + 1, exc_info=exc)
                await self._report(job, args, exc)
            raise
        metrics.count_job(job.name, "done", time.perf_counter() - started)

    async def _report(self, job: Job, args: Mapping[str, Any], exc: BaseException) -> None:
        if self.reporter is None:
            return
        try:
            await self.reporter(job.name, args, exc)
        except Exception:
            log.exception("telling the requester that job %s failed, failed too", job.name)


# -- SQLite: in this process ------------------------------------------------------------------------

class InProcessQueue(JobQueue):
    """Jobs as tasks of this process (bot/tasks.py: tracked, drained at shutdown, acks first in a burst)."""

    def __init__(self, registry: Registry, tasks: BackgroundTasks) -> None:
        super().__init__(registry)
        self.tasks = tasks
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: defaultdict[str, int] = defaultdict(int)
        self._waiting: dict[int, float] = {}  # a number per deferred job -> when it was deferred (monotonic)
        self._numbers = itertools.count()
        self._running = 0
        self._failed = 0

    async def defer(self, name: str, kwargs: Mapping[str, Any], *, once: str | None = None) -> None:
        job = self.registry.get(name)
        args = plain({**kwargs, **({ONCE: once} if once else {})})
        lock = job.lock_for(args)
        if not self.tasks.accepting:
            raise DependencyDown("opsbot is restarting; please try again in a few seconds.")
        number = next(self._numbers)
        self._waiting[number] = time.monotonic()
        self.tasks.spawn(self._run(job, args, lock, number), name=name)

    async def _run(self, job: Job, args: dict[str, Any], lock: str | None, number: int) -> None:
        try:
            await self._run_locked(job, args, lock, number)
        finally:
            self._waiting.pop(number, None)  # also when cancelled (shutdown) while waiting for its lock

    async def _run_locked(self, job: Job, args: dict[str, Any], lock: str | None, number: int) -> None:
        owner = uuid.uuid4().hex
        async with self._locked(lock):
            self._waiting.pop(number, None)
            self._running += 1
            try:
                attempt = 0
                while True:
                    try:
                        await self.attempt(job, args, attempt=attempt, owner=owner)
                        return
                    except Exception as exc:
                        if not will_retry(job, exc, attempt):
                            self._failed += 1
                            return
                    await asyncio.sleep(job.backoff(attempt))
                    attempt += 1
            finally:
                self._running -= 1

    @contextlib.asynccontextmanager
    async def _locked(self, lock: str | None) -> Any:
        if lock is None:
            yield
            return
        self._holders[lock] += 1
        guard = self._locks.setdefault(lock, asyncio.Lock())
        try:
            async with guard:  # asyncio.Lock wakes its waiters in FIFO order: jobs run in the order deferred
                yield
        finally:
            self._holders[lock] -= 1
            if not self._holders[lock]:
                del self._holders[lock]
                self._locks.pop(lock, None)

    async def _read_stats(self) -> QueueStats:
        oldest = time.monotonic() - min(self._waiting.values()) if self._waiting else 0.0
        return QueueStats(waiting=len(self._waiting), running=self._running, failed=self._failed,
                          oldest_seconds=oldest)

    async def wait_idle(self, timeout: float = 10.0) -> bool:
        return await self.tasks.wait_idle(timeout)


# -- PostgreSQL: procrastinate -----------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerTuning:
    concurrency: int = 20  # queue rows (a job, or a bundle of jobs) one worker process takes at once
    jobs_at_once: int = 100  # jobs one worker process runs at once, bundled ones included
    # procrastinate workers in the process: each fetches one job per round trip. Only the first listens for
    # new jobs (every listener woke for every job and asked for it); the others poll, and after a job of
    # their own fetch again at once, so under load all of them stay busy.
    fetchers: int = 4
    polling_interval: float = 0.5  # seconds; also how soon a retry or the next job on a lock starts
    heartbeat_interval: float = 1.0
    # Seconds without a heartbeat before a worker's jobs are taken back. A busy worker's event loop can miss a
    # few 1 s heartbeats while it is alive (5 s was seen to double-run a declaration on a loaded machine).
    stalled_after: float = 10.0


class PostgresQueue(JobQueue):
    durable = True
    backend = "postgresql"

    def __init__(self, conninfo: str, registry: Registry, *, pool_size: int = 10,
                 tuning: WorkerTuning | None = None) -> None:
        import procrastinate

        super().__init__(registry)
        self.tuning = tuning or WorkerTuning()
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(
            conninfo=conninfo, min_size=1, max_size=pool_size, timeout=10,
            kwargs={"connect_timeout": 5, "application_name": "opsbot-jobs"}, configure=_autocommit))
        self._opened = False
        self._opening = asyncio.Lock()
        self._conninfo = conninfo
        self._enqueue_pool: AsyncConnectionPool[Any] | None = None  # defers have a pool of their own: see _insert
        # (row, its future, its deadline): a defer is answered within DEFER_TIMEOUT of its call, also when it
        # had to wait behind a batch in flight.
        self._pending: list[tuple[Row, asyncio.Future[None], float]] = []
        self._inserts: set[asyncio.Task[None]] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        # Jobs running at once in this process, bundled ones included: a bundle's jobs run side by side, and 20
        # bundles of 50 at once had a thousand jobs waiting for 30 database connections (some timed out).
        self._slots = asyncio.Semaphore(self.tuning.jobs_at_once)

    def _register(self, job: Job) -> None:
        from procrastinate import BaseRetryStrategy, RetryDecision

        queue = self

        class Retry(BaseRetryStrategy):
            def get_retry_decision(self, *, exception: BaseException, job: Any) -> RetryDecision | None:
                spec = queue.registry.get(job.task_name)
                attempts = _attempts_made(job.attempts, job.task_kwargs)
                if not will_retry(spec, exception, attempts):
                    return None
                return RetryDecision(retry_in={"seconds": int(max(1, spec.backoff(attempts)))})

        async def run(context: Any, **kwargs: Any) -> None:
            attempt = _attempts_made(context.job.attempts, kwargs)
            async with queue._slots:
                await queue.attempt(job, kwargs, attempt=attempt, owner=f"job:{context.job.id}")

        self.app.task(name=job.name, pass_context=True, retry=Retry())(run)

    async def open(self) -> None:
        """Open the pool; idempotent. A process that started while the database was down opens it on first
        use (a defer, a reading, a fetcher's next start) instead of staying without a queue."""
        if self._opened:
            return
        async with self._opening:
            if not self._opened:
                await self._open()

    async def _open(self) -> None:
        try:
            await asyncio.wait_for(self.app.open_async(), DEFER_TIMEOUT)
        except BaseException:
            # procrastinate keeps a pool that failed to open and would never try again: forget it.
            connector = self.app.connector
            pool = getattr(connector, "_async_pool", None)
            connector._async_pool = None  # type: ignore[attr-defined]
            if pool is not None:
                # Stopped, not left running: psycopg_pool's scheduler task swallows a CancelledError that
                # arrives during one of its actions, so an abandoned pool's tasks kept an event loop from
                # ever closing (a shutdown, a test's teardown). They are asked to stop and given time to, in
                # the background (whoever asked for the pool gets its answer now); `close` waits for them.
                closing = asyncio.create_task(_stop_pool(pool), name="queue.pool-stop")
                self._inserts.add(closing)
                closing.add_done_callback(self._inserts.discard)
            raise
        self._opened = True
        await self._enqueue_pool_ready()

    async def _enqueue_pool_ready(self) -> None:
        """The enqueue pool's first connection, made when the queue opens rather than by the first request: on
        a loaded machine a connection took longer than a request's DEFER_TIMEOUT."""
        from psycopg_pool import PoolTimeout

        pool = await self._enqueuing()
        try:
            await pool.wait(timeout=DEFER_TIMEOUT)
        except PoolTimeout:  # psycopg_pool closed it: the next defer opens another
            if self._enqueue_pool is pool:
                self._enqueue_pool = None

    async def close(self) -> None:
        await self.stop_worker()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=DEFER_TIMEOUT + 1)
        if self._inserts:  # abandoned inserts and failed pools being stopped
            await asyncio.wait(set(self._inserts), timeout=POOL_STOP_TIMEOUT + 1)
        if self._enqueue_pool is not None:
            pool, self._enqueue_pool = self._enqueue_pool, None
            await _stop_pool(pool)
        if self._opened:
            await self.app.close_async()
            self._opened = False

    async def defer(self, name: str, kwargs: Mapping[str, Any], *, once: str | None = None) -> None:
        """Written (committed) when this returns; several concurrent defers share one statement."""
        job = self.registry.get(name)
        args = plain({**kwargs, **({ONCE: once} if once else {})})
        row = Row(task_name=job.name, args=args, lock=job.lock_for(args))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, done, time.monotonic() + DEFER_TIMEOUT))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="queue.flush")
        await done

    async def _flush(self) -> None:
        """Sends what is pending, INSERTS_AT_ONCE statements at most in flight: the acks that arrive while one
        commits go out in the next, which is sent at once instead of after it (under load the web process
        otherwise idled, every request in flight waiting for the one commit)."""
        try:
            while self._pending:
                now = time.monotonic()
                expired = [done for _, done, deadline in self._pending if deadline <= now]
                self._pending = [entry for entry in self._pending if entry[2] > now]
                for done in expired:  # waited its whole time behind batches that did not get through
                    if not done.done():
                        done.set_exception(QueueUnavailable())
                if not self._pending:
                    break
                if len(self._sending) >= INSERTS_AT_ONCE:
                    earliest = min(deadline for _, _, deadline in self._pending)
                    await asyncio.wait(set(self._sending), timeout=max(0.0, earliest - now),
                                       return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch, self._pending = self._pending[:500], self._pending[500:]
                sending = asyncio.create_task(self._send(batch), name="queue.send")
                self._sending.add(sending)
                sending.add_done_callback(self._sending.discard)
        finally:
            self._flusher = None

    async def _send(self, batch: list[tuple[Row, asyncio.Future[None], float]]) -> None:
        """One statement for `batch`, whose requests are answered by the earliest of their deadlines: Slack
        gives up on an ack after 3 s, so a database that does not answer by then gets them refused, and the
        cancelled insert leaves no job."""
        timeout = min(deadline for _, _, deadline in batch) - time.monotonic()
        rows = bundled([row for row, _, _ in batch])
        insert = asyncio.create_task(self._insert(rows), name="queue.insert")
        self._inserts.add(insert)
        insert.add_done_callback(self._inserts.discard)
        await asyncio.wait({insert}, timeout=timeout)
        failure: DependencyDown | None = None
        if not insert.done():
            # Not waited for: psycopg cancels a statement by asking the server over a new connection, which
            # hangs as long as the database does; the requests are answered now.
            insert.cancel()
            insert.add_done_callback(_forget)  # kept in self._inserts until it ends
            log.error("enqueueing %d job(s): no answer within %.1fs", len(batch), timeout)
            failure = QueueTimeout()
        elif insert.cancelled() or insert.exception() is not None:
            log.error("enqueueing %d job(s) failed: %s", len(batch),
                      "cancelled" if insert.cancelled() else type(insert.exception()).__name__)
            failure = QueueUnavailable()
        for _, done, _ in batch:
            if done.done():
                continue
            if failure is None:
                done.set_result(None)
            else:
                done.set_exception(failure)

    async def _insert(self, rows: list[Row]) -> None:
        """One statement for `rows`, on a connection of the enqueue pool. That pool checks no connection before
        lending it (procrastinate's checks each: one more round trip per ack, and a third of an enqueue's CPU):
        a connection the database dropped (it restarted) fails the statement, which is sent again on another."""
        import psycopg
        from psycopg_pool import PoolTimeout

        await self.open()
        pool = await self._enqueuing()
        # The rows as one JSON document, not procrastinate's array of composite values: psycopg escapes those
        # with a regular expression, character by character (a sixth of the web process's CPU per ack at c=50).
        document = json.dumps([row.as_json() for row in rows], separators=(",", ":"))
        for attempt in range(INSERTS_AT_ONCE + 1):  # each idle connection may be one the database dropped
            try:
                async with pool.connection() as connection:
                    await connection.execute(_INSERT_SQL, {"rows": document})
                return
            except PoolTimeout:  # no connection within DEFER_TIMEOUT: the database is away, not a dropped link
                raise
            except psycopg.OperationalError:
                if attempt == INSERTS_AT_ONCE:
                    raise

    async def _enqueuing(self) -> AsyncConnectionPool[Any]:
        """The enqueue pool, opened on first use (in the process and event loop that defers)."""
        if self._enqueue_pool is None:
            from psycopg_pool import AsyncConnectionPool

            self._enqueue_pool = AsyncConnectionPool(
                self._conninfo, min_size=1, max_size=INSERTS_AT_ONCE, open=False, timeout=DEFER_TIMEOUT,
                name="opsbot-enqueue", kwargs={"connect_timeout": 5, "application_name": "opsbot-enqueue"},
                configure=_autocommit)
            await self._enqueue_pool.open(wait=False)  # connects in the background; a getconn waits for it
        return self._enqueue_pool

    async def start_worker(self, deps: Deps) -> None:
        await super().start_worker(deps)
        for job in self.registry:  # the families' jobs are imported after the queue is built
            if job.name not in self.app.tasks:
                self._register(job)
        if BUNDLE not in self.app.tasks:
            self.app.task(name=BUNDLE, pass_context=True)(self._run_bundle)
        tuning = self.tuning  # each fetcher opens the pool (again) itself: the database may be down now
        per_fetcher = max(1, tuning.concurrency // tuning.fetchers)
        for index in range(tuning.fetchers):
            self._workers.append(asyncio.create_task(self._fetcher(index, per_fetcher), name=f"queue.worker.{index}"))

    async def _fetcher(self, index: int, concurrency: int) -> None:
        """One procrastinate worker, started again (with backoff) when it ends because the database went
        away: its running jobs are taken back by `recover_stalled` once its heartbeat is stale."""
        tuning = self.tuning
        backoff = 0.5
        while True:
            started = time.monotonic()
            try:
                await self.open()
                await self.app.run_worker_async(
                    name=f"opsbot-{index}", concurrency=concurrency, install_signal_handlers=False,
                    fetch_job_polling_interval=tuning.polling_interval, abort_job_polling_interval=60,
                    update_heartbeat_interval=tuning.heartbeat_interval,
                    stalled_worker_timeout=tuning.stalled_after, delete_jobs="successful",
                    shutdown_graceful_timeout=10, listen_notify=index == 0)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Stopping: procrastinate's shutdown (unregistering the worker) failed on a database that
                    # is away. Started again, the worker would take jobs after its process was told to stop
                    # (an orphaned worker did, for ever).
                    raise asyncio.CancelledError from exc
                log.error("job worker %d stopped (%s); starting it again in %.1fs", index, type(exc).__name__,
                          backoff)
            backoff = 0.5 if time.monotonic() - started > 60 else min(backoff * 2, 15)
            await asyncio.sleep(backoff)

    async def stop_worker(self, timeout: float = 10.0) -> None:
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()  # procrastinate's worker stops fetching and waits for its running jobs
        if workers:
            done, _pending = await asyncio.wait(workers, timeout=timeout + 5)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("job worker ended with %s", type(task.exception()).__name__)

    async def _run_bundle(self, context: Any, *, jobs: list[dict[str, Any]]) -> None:
        """The jobs of one bundle (see `bundled`), side by side. Each has its own outcome: one that fails for
        a reason worth another attempt is enqueued again on its own (after the first backoff, with its attempt
        and its redelivery key's owner carried over); one that fails for good is reported as any job is. The
        bundle itself never fails (so it is never run again whole), but it runs again whole when its worker
        dies, as a lone job does: a job with a redelivery key runs again as the same owner (its effects are
        idempotent, as every job's must be), a read-only answer comes twice."""
        async def one(index: int, item: dict[str, Any]) -> None:
            try:
                job = self.registry.get(item["name"])
            except LookupError:
                log.error("bundled job %s is not registered here; dropped", item.get("name"))
                return
            owner = f"job:{context.job.id}:{index}"
            try:
                async with self._slots:
                    await self.attempt(job, item["args"], attempt=0, owner=owner)
            except Exception as exc:
                if will_retry(job, exc, 0):
                    # Its retry is its own row, and still this run's: a redelivery key this run wrote is its own.
                    at = datetime.now(UTC) + timedelta(seconds=job.backoff(0))
                    args = {OWNER: owner, DONE: 1, **item["args"]}
                    await self._insert([Row(task_name=job.name, args=args, scheduled_at=at)])

        await asyncio.gather(*(one(index, item) for index, item in enumerate(jobs)))

    async def recover_stalled(self) -> int:
        await self.open()
        stalled = list(await self.app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=self.tuning.stalled_after))
        for job in stalled:
            try:
                await self.app.job_manager.retry_job(job)
            except Exception as exc:  # another replica's sweep took it first
                log.info("job %s (%s) not put back: %s", job.id, job.task_name, type(exc).__name__)
                continue
            log.warning("job %s (%s) was running on a worker that stopped; it runs again", job.id, job.task_name)
            metrics.count_job(job.task_name, "recovered", 0.0)
        return len(stalled)

    async def prune(self, older_than: timedelta) -> None:
        await self.app.job_manager.delete_old_jobs(nb_hours=max(1, int(older_than.total_seconds() // 3600)),
                                                   include_failed=True)

    async def _read_stats(self) -> QueueStats:
        # Bounded as a whole: while the database is away the fetchers try to open the pool one after another,
        # and waiting behind them took /health 10 s.
        async with asyncio.timeout(DEFER_TIMEOUT):
            await self.open()
            row = await self.app.connector.execute_query_one_async(query=_STATS_SQL)
        return QueueStats(waiting=int(row["waiting"]), running=int(row["running"]), failed=int(row["failed"]),
                          oldest_seconds=float(row["oldest"] or 0.0))

    async def wait_idle(self, timeout: float = 10.0) -> bool:
        """No job waiting or running (tests; scheduled retries included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pending and self._flusher is None and not self._sending:
                try:
                    await self.open()
                    row = await asyncio.wait_for(self.app.connector.execute_query_one_async(query=_BUSY_SQL),
                                                 DEFER_TIMEOUT)
                except Exception:  # the database is down: no job can start or finish anyway
                    return True
                if not row["busy"]:
                    return True
            await asyncio.sleep(0.02)
        return False


_STATS_SQL = """
SELECT count(*) FILTER (WHERE status = 'todo') AS waiting,
       count(*) FILTER (WHERE status = 'doing') AS running,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       (SELECT extract(epoch FROM now() - min(e.at))
          FROM procrastinate_events e JOIN procrastinate_jobs t ON t.id = e.job_id
         WHERE t.status = 'todo' AND e.type = 'deferred') AS oldest
  FROM procrastinate_jobs
"""
_BUSY_SQL = "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing')) AS busy"


_INSERT_SQL = """
INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
SELECT 'default', row.task_name, 0, row.lock, NULL, row.args, row.scheduled_at
  FROM jsonb_to_recordset(%(rows)s::jsonb) AS row(task_name text, lock text, args jsonb, scheduled_at timestamptz)
"""  # what procrastinate_defer_jobs_v1 inserts (its triggers record the event and notify the workers)


@dataclass(frozen=True)
class Row:
    """One job as it is written to procrastinate_jobs."""
    task_name: str
    args: dict[str, Any]
    lock: str | None = None
    scheduled_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {"task_name": self.task_name, "lock": self.lock, "args": self.args,
                "scheduled_at": self.scheduled_at.isoformat() if self.scheduled_at else None}


BUNDLE = "jobs.bundle"
BUNDLE_MAX = 50  # jobs per bundle


def bundled(rows: list[Row]) -> list[Row]:
    """The rows of one group commit, with the jobs that need no lock (read-only answers such as `/incident
    list`, `/health`, `/deploys`; proposals such as `/killswitch`'s confirmation; declarations) packed
    BUNDLE_MAX at a time into one `jobs.bundle` row. Jobs on a lock stay rows of their own, so that the
    engine runs them one at a time per object.
    A worker takes a job with one fetch round trip and finishes it with another, whatever the job does: during
    a burst of acks, a bundle of 50 costs what one job does. A lone job stays a row of its own."""
    alone: list[Row] = []
    loose: list[Row] = []
    for row in rows:
        (alone if row.lock is not None or row.scheduled_at else loose).append(row)
    if len(loose) < 2:
        return rows
    bundles = [Row(task_name=BUNDLE, args={"jobs": [{"name": row.task_name, "args": row.args}
                                                    for row in loose[start:start + BUNDLE_MAX]]})
               for start in range(0, len(loose), BUNDLE_MAX)]
    return alone + bundles


def conninfo(url: str) -> str:
    """A libpq connection string from opsbot's DATABASE_URL (any of the spellings bot/db.py accepts)."""
    from bot.db import normalize_url

    return normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_queue(database_url: str, registry: Registry, tasks: BackgroundTasks, *,
               tuning: WorkerTuning | None = None) -> JobQueue:
    from bot.db import is_sqlite, normalize_url

    if is_sqlite(normalize_url(database_url)):
        return InProcessQueue(registry, tasks)
    return PostgresQueue(conninfo(database_url), registry, tuning=tuning)
