"""Background work in a second process, so the process that acks Slack never shares its core with it.

`opsbot serve` starts one worker process beside itself (`WORKER_PROCESS=true`, the default). The web process
verifies, acks and answers every Slack request as before. When a listener hands non-urgent work to the
background (`commands.common.run_after_ack`), the web process does not run it: once the ack is written it
forwards the request itself (body and headers, already verified) to the worker over a private socket pair.
The worker runs the same bolt app and replays the request: its acks go nowhere, urgent work (opening a modal,
which the web process did while the trigger_id was fresh) is skipped, and the rest runs there. The worker
also runs the scheduler (alert rules, reminders), so a rules cycle no longer delays acks either.

The worker runs at the lowest CPU priority (`WORKER_NICE`, default 19): acks have Slack's 3-second deadline
and a missed one loses the command, while background work that a burst of acks delays is only late (on a core
shared with a busy web process it still gets ~1.5 % of the core, and all of it once the burst is over).

If the worker dies, the web process tells the users whose work was in flight (through their response_url or
an ephemeral message), starts a new worker, and sends it what was forwarded meanwhile.

Wire format: web -> worker, per request a line `<id> <length> <headers as JSON>` followed by `length` bytes
of the request body as Slack sent it; worker -> web, JSON lines `{"ready": pid}`, `{"done": [ids]}` and
`{"status": {...}}` every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bot.errors import OpsbotError
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.app import OpsbotApp

log = logging.getLogger(__name__)

STATUS_INTERVAL = 2.0
BATCH_DELAY = 0.005  # seconds forwarded requests (web) and finished ones (worker) are collected per write
MAX_REPLAYS = 64  # forwarded requests the worker works on at once
READY_TIMEOUT = 60.0
Report = Callable[[BaseException], Awaitable[None]]


class Role(StrEnum):
    INLINE = "inline"  # one process does everything (tests, shell, socket mode, WORKER_PROCESS=false)
    WEB = "web"  # acks; forwards background work to the worker
    WORKER = "worker"  # replays forwarded requests and runs the background work and the scheduler


class WorkerLost(OpsbotError):
    def __init__(self) -> None:
        super().__init__("opsbot's background worker restarted while working on this, so it may not have "
                         "finished. Check the result and try again if needed.")


@dataclass
class Forward:
    """One Slack request being answered by the web process: did its listener hand work to the background?"""

    report: Report | None = None
    wanted: bool = False


@dataclass
class Replay:
    """One forwarded request being replayed by the worker: the background tasks its listener started."""

    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


CURRENT: ContextVar[Forward | Replay | None] = ContextVar("opsbot_worker_current", default=None)


def _frame(job: int, body: bytes, headers: Mapping[str, str]) -> bytes:
    return b"%d %d %s\n%s" % (job, len(body), _headers_json(tuple(headers.items())), body)


@functools.lru_cache(maxsize=64)
def _headers_json(headers: tuple[tuple[str, str], ...]) -> bytes:
    """The few headers bolt reads (bot.inbound.bolt_headers) take a handful of distinct values."""
    return json.dumps(dict(headers)).encode()


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


# -- the web side -------------------------------------------------------------------------------

class WorkerLink:
    """Starts and supervises the worker process; forwards requests to it; reports work lost with it."""

    def __init__(self, settings: Settings, *, on_exit: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.on_exit = on_exit
        self.pid: int | None = None
        self.status: dict[str, Any] = {}
        self.restarts = 0
        self._next_id = 0
        self._inflight: dict[int, Report | None] = {}
        self._unsent: list[tuple[int, Report | None, bytes]] = []
        self._writer: asyncio.StreamWriter | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._writer is not None

    @property
    def pending(self) -> int:
        return len(self._inflight) + len(self._unsent)

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="worker.supervise")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait([ready, self._supervisor], timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            ready.cancel()
            raise RuntimeError("opsbot's worker process did not start (see its log above)")

    def forward(self, body: bytes, headers: Mapping[str, str], report: Report | None) -> None:
        """Queue one verified Slack request (with its `inbound.bolt_headers`) for the worker; never waits."""
        self._next_id += 1
        self._unsent.append((self._next_id, report, _frame(self._next_id, body, headers)))
        if self._writer is not None and len(self._unsent) == 1:
            # One write per BATCH_DELAY, however many requests were answered meanwhile (a write is a syscall).
            asyncio.get_running_loop().call_later(BATCH_DELAY, self._flush)

    def _flush(self) -> None:
        """Hand what is queued to the current worker (kept for the next one while there is none)."""
        if self._writer is None or not self._unsent:
            return
        frames = []
        for job, report, frame in self._unsent:
            self._inflight[job] = report
            frames.append(frame)
        self._unsent.clear()
        self._writer.write(b"".join(frames))

    async def stop(self, timeout: float = 20.0) -> None:
        """Close the worker's input; it finishes what it has, stops its scheduler and exits."""
        self._stopping = True
        if self._writer is not None:
            self._flush()
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write_eof()
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._supervisor), timeout)
            except TimeoutError:
                log.warning("worker did not finish within %.0fs; killing it", timeout)
                if self._proc is not None and self._proc.returncode is None:
                    self._proc.kill()
                await self._supervisor

    async def _supervise(self) -> None:
        backoff = 0.5
        while True:
            started = time.monotonic()
            code = await self._run_once()
            lost = list(self._inflight.values())
            self._inflight.clear()
            if self.on_exit is not None and self.pid is not None:
                self.on_exit(self.pid)
            if lost or not self._stopping:
                log.error("worker process exited (code %s) with %d request(s) unfinished", code, len(lost))
            await _report_all(lost)
            if self._stopping:
                return
            self.restarts += 1
            backoff = 0.5 if time.monotonic() - started > 60 else min(backoff * 2, 30)
            await asyncio.sleep(backoff)

    async def _run_once(self) -> int | None:
        parent, child = socket.socketpair()
        try:
            env = {**os.environ, **settings_env(self.settings)}
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "worker", "--fd", str(child.fileno()),
                pass_fds=(child.fileno(),), env=env)
        finally:
            child.close()
        self.pid = self._proc.pid
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=2**20)
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if "done" in message:
                    for job in message["done"]:
                        self._inflight.pop(job, None)
                elif "status" in message:
                    self.status = message["status"]
                elif "ready" in message:
                    self._writer = writer
                    self._flush()
                    if self._stopping:
                        writer.write_eof()
                    self._ready.set()
        except (ConnectionError, ValueError) as exc:
            log.error("lost the worker's channel: %s", exc)
        finally:
            self._writer = None
            self.status = {}
            writer.close()
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        return await self._proc.wait()


async def _report_all(reports: list[Report | None]) -> None:
    for report in reports:
        if report is not None:
            try:
                await report(WorkerLost())
            except Exception:
                log.exception("telling a user about lost work failed")


# -- the worker side ----------------------------------------------------------------------------

def main(fd: int) -> int:
    """`opsbot worker --fd N`: started by `opsbot serve`, never by hand."""
    from bot import logs
    from bot.app import build

    settings = Settings()
    logs.configure(settings)
    if settings.worker_nice:
        os.nice(settings.worker_nice)
    app = build(settings, role=Role.WORKER, migrate=False, freeze_gc=True)
    asyncio.run(_serve(app, socket.socket(fileno=fd)))
    return 0


async def _serve(app: OpsbotApp, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    # SIGTERM/SIGINT reach the whole process group; the web process closes our input once its own requests
    # are done, and that is when we stop (with a deadline in case it never does).
    stop_deadline = asyncio.Event()

    def late_stop() -> None:
        loop.call_later(25, stop_deadline.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, late_stop)

    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**24)

    def send(message: dict[str, Any]) -> None:
        if not writer.is_closing():
            writer.write(json.dumps(message).encode() + b"\n")

    finished: list[int] = []

    def report_finished() -> None:
        send({"done": finished[:]})
        finished.clear()

    async def status() -> None:
        while True:
            send({"status": {"leader": app.deps.scheduler.is_leader, "pending": app.deps.tasks.pending}})
            await asyncio.sleep(STATUS_INTERVAL)

    async def replay(job: dict[str, Any]) -> None:
        current = Replay()
        token = CURRENT.set(current)
        try:
            await app.inbound.dispatch(job["body"], job["headers"])
        except Exception:
            log.exception("replaying a forwarded request failed")
        finally:
            CURRENT.reset(token)
        if current.tasks:
            await asyncio.gather(*current.tasks, return_exceptions=True)
        finished.append(job["id"])
        if len(finished) == 1:
            loop.call_later(BATCH_DELAY, report_finished)

    await app.start()
    send({"ready": os.getpid()})
    reporter = asyncio.create_task(status())
    replays: set[asyncio.Task[None]] = set()
    reading = asyncio.create_task(_read_jobs(reader, replay, replays))
    deadline = asyncio.create_task(stop_deadline.wait())
    await asyncio.wait([reading, deadline], return_when=asyncio.FIRST_COMPLETED)
    reading.cancel()
    deadline.cancel()
    if replays:
        await asyncio.wait(replays, timeout=10)
    await app.stop()
    reporter.cancel()
    if finished:
        report_finished()
    writer.close()


async def _read_jobs(reader: asyncio.StreamReader, replay: Callable[[dict[str, Any]], Coroutine[Any, Any, None]],
                     replays: set[asyncio.Task[None]]) -> None:
    """Take the next request only while fewer than MAX_REPLAYS run: a backlog waits as bytes in the socket
    and the web process's buffer rather than as thousands of half-started tasks here."""
    slots = asyncio.Semaphore(MAX_REPLAYS)
    while True:
        await slots.acquire()
        line = await reader.readline()
        if not line:
            return
        job, length, headers = line.split(b" ", 2)
        body = await reader.readexactly(int(length))
        task = asyncio.create_task(replay({"id": int(job), "headers": json.loads(headers), "body": body}))
        replays.add(task)
        task.add_done_callback(replays.discard)
        task.add_done_callback(lambda _task: slots.release())
