"""The worker process of `opsbot serve` on PostgreSQL: it runs queued jobs (bot/queue.py) and the scheduler.

The web process verifies, acks and enqueues; it never runs a job. Its worker is a separate process, so a
slow job or an alert cycle never shares the acking process's event loop, and it runs at the lowest CPU
priority (`WORKER_NICE`, default 19): acks have Slack's 3-second deadline, jobs are only late. Nothing
passes between the two processes: jobs go through PostgreSQL, so any replica's worker can take any job and a
worker that dies loses nothing (its running jobs are taken back after its heartbeat stops, its waiting
jobs never left the database). The web process restarts a worker that exits, with backoff.

`opsbot serve` forks its first worker once everything is imported and before the web process has an event
loop, a thread or a connection (`fork_worker`): the modules' memory that neither process writes to again
stays shared, so the replica is charged for it once (its cgroup's memory, the processes' PSS) instead of
twice. A worker started later (after one exited) is a new `python -m bot worker`, since forking a process
that runs an event loop and threads would copy their state.

On SQLite there is no worker process: one instance runs everything in one process (bot/queue.py's
InProcessQueue)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from bot.settings import Settings

if TYPE_CHECKING:
    from bot.config import Config

log = logging.getLogger(__name__)
PARENT_ENV = "OPSBOT_WORKER_PARENT"  # set by `opsbot serve`: the worker stops when that process is gone


class Role(StrEnum):
    INLINE = "inline"  # one process acks, runs jobs and the scheduler (SQLite, socket mode, WORKER_PROCESS=false)
    WEB = "web"  # acks and enqueues
    WORKER = "worker"  # runs jobs and the scheduler


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables that rebuild them in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class WorkerProcess:
    """Starts the worker process, restarts it when it exits, stops it with the web process."""

    def __init__(self, settings: Settings, *, on_exit: Callable[[int], None] | None = None,
                 forked: int | None = None) -> None:
        self.settings = settings
        self.on_exit = on_exit
        self.forked = forked  # the pid of a worker already forked by `fork_worker`, run first
        self.pid: int | None = None
        self.restarts = 0
        self._exited = True
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self.pid is not None and not self._exited

    def _signal(self, sig: signal.Signals) -> None:
        if self.pid is not None and not self._exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="worker.supervise")

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: the worker finishes its running jobs (what it cannot finish goes back to the queue)."""
        self._stopping = True
        self._signal(signal.SIGTERM)
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._supervisor), timeout)
            except TimeoutError:
                log.warning("worker did not stop within %.0fs; killing it", timeout)
                self._signal(signal.SIGKILL)
                await self._supervisor

    async def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping:
            started = time.monotonic()
            pid, code = await self._run_one()
            if self.on_exit is not None:
                self.on_exit(pid)
            if self._stopping:
                return
            log.error("worker process exited (code %s); restarting it (its jobs wait in the queue)", code)
            self.restarts += 1
            backoff = 0.5 if time.monotonic() - started > 60 else min(backoff * 2, 30)
            await asyncio.sleep(backoff)

    async def _run_one(self) -> tuple[int, int]:
        """Start a worker (or take the one forked at start) and wait for it to exit: (its pid, exit code)."""
        if self.forked is not None:
            self.pid, self._exited, self.forked = self.forked, False, None
            try:
                return self.pid, await _wait_forked(self.pid)
            finally:
                self._exited = True
        env = {**os.environ, **settings_env(self.settings), PARENT_ENV: str(os.getpid())}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "worker", env=env)
        self.pid, self._exited = proc.pid, False
        try:
            return proc.pid, await proc.wait()
        finally:
            self._exited = True


async def _wait_forked(pid: int) -> int:
    """The exit code of our child `pid`, awaited on a pidfd (asyncio's child watcher knows only the processes
    it started itself)."""
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(pid)
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def fork_worker(settings: Settings, config: Config) -> int | None:
    """Fork the first worker now, from this fully imported process (see the module's docstring); its pid, or
    None (the worker starts as a new process instead) when this process already runs another thread, whose
    locks a fork would copy held."""
    import gc

    from bot import forks

    if not forks.can_fork() or not hasattr(os, "pidfd_open"):
        return None
    gc.collect()
    gc.freeze()  # the collector never touches (and so never copies) what the two processes share
    parent = os.getpid()

    def child() -> int:
        os.environ[PARENT_ENV] = str(parent)
        return run(settings, config)

    return forks.fork(child, name="worker")


def main() -> int:
    """`opsbot worker`: started by `opsbot serve` when it has no zygote; also runnable alone (a worker-only
    replica)."""
    from bot import logs

    settings = Settings()
    logs.configure(settings)
    return run(settings)


def run(settings: Settings, config: Config | None = None) -> int:
    from bot.app import build

    if settings.worker_nice:
        os.nice(settings.worker_nice)
    app = build(settings, config, role=Role.WORKER, migrate=False, freeze_gc=True)
    asyncio.run(_serve(app, settings.worker_stop_timeout))
    return 0


async def _serve(app: object, stop_timeout: float) -> None:
    from bot.app import OpsbotApp

    assert isinstance(app, OpsbotApp)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.environ.get(PARENT_ENV)
    watchdog = asyncio.create_task(_orphaned(int(parent), stop)) if parent else None
    await app.start()
    await stop.wait()
    if watchdog is not None:
        watchdog.cancel()
    deadline = threading.Timer(stop_timeout, _exit_now, args=(stop_timeout,))
    deadline.daemon = True
    deadline.start()
    await app.stop()


def _exit_now(timeout: float) -> None:
    """A stop that has not finished in WORKER_STOP_TIMEOUT: a database that stopped answering can hold a query
    (and psycopg's cancelling of it) for ever. Whatever runs goes back to the queue once its heartbeat is stale."""
    log.error("the worker did not stop within %gs; exiting now (unfinished jobs run again elsewhere)", timeout)
    logging.shutdown()
    os._exit(1)


ORPHAN_POLL = 0.25  # seconds between looks at the parent: an orphan takes jobs until it notices


async def _orphaned(parent: int, stop: asyncio.Event) -> None:
    """A web process killed with SIGKILL cannot stop its worker: the worker notices it was re-parented and
    stops (its running jobs finish or go back to the queue), so a restarted `opsbot serve` does not end
    up with two."""
    while os.getppid() == parent:
        await asyncio.sleep(ORPHAN_POLL)
    log.warning("the web process (pid %d) is gone; this worker stops", parent)
    stop.set()
