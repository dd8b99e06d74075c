"""Quiet, useful logs (bot/logs.py): a start in a few lines, a failure in one line with its reason (the
traceback at LOG_LEVEL=DEBUG), a repeating failure once and then once a minute with a count, secrets masked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot import logs
from bot.deps import Deps
from bot.emulator.harness import BOT_TOKEN, SIGNING_SECRET, BotHarness
from bot.emulator.server import EmulatorServer
from bot.jobs import job
from bot.settings import Settings
from tests.test_alerts_replicas import eventually, free_port
from tests.test_startup import TESTS, clean_env

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", re.M)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """logs.configure rewires the root logger, library levels and filters, and the exception hooks."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    named = [logging.getLogger(n) for n in (*logs.QUIET, "uvicorn.error", "procrastinate.worker")]
    levels = [(lg, lg.level, lg.filters[:]) for lg in named]
    hooks = sys.excepthook, threading.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for lg, lvl, filters in levels:
        lg.setLevel(lvl)
        lg.filters[:] = filters
    sys.excepthook, threading.excepthook = hooks


def _settings(level: str = "INFO") -> Settings:
    return Settings(_env_file=None, log_level=level,  # type: ignore[call-arg]
                    slack_bot_token=SecretStr("xoxb-9999-8888-logsecret"),
                    database_url=SecretStr("postgresql://opsbot:pw-logs-77@db:5432/opsbot"))


def _fail(logger: logging.Logger) -> None:
    try:
        try:
            raise ConnectionRefusedError("connect to postgresql://opsbot:pw-logs-77@db:5432/opsbot refused")
        except ConnectionRefusedError as exc:
            raise RuntimeError("posting with xoxb-9999-8888-logsecret failed") from exc
    except RuntimeError:
        logger.exception("background task %s failed", "digest")


def test_a_failure_is_one_line_with_its_reason_and_no_traceback(capsys: pytest.CaptureFixture[str],
                                                                 restored_logging: None) -> None:
    logs.configure(_settings("INFO"))
    _fail(logging.getLogger("bot.tasks"))
    err = capsys.readouterr().err
    assert len(LINE.findall(err)) == 1 and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert ("ERROR bot.tasks: background task digest failed: RuntimeError: posting with *** failed "
            "(from ConnectionRefusedError: connect to postgresql://opsbot:***@db:5432/opsbot refused)") in err
    assert "pw-logs-77" not in err and "logsecret" not in err


def test_at_debug_the_traceback_is_printed_scrubbed(capsys: pytest.CaptureFixture[str],
                                                     restored_logging: None) -> None:
    logs.configure(_settings("DEBUG"))
    _fail(logging.getLogger("bot.tasks"))
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "The above exception was the direct cause" in err
    assert "pw-logs-77" not in err and "logsecret" not in err


def test_a_multi_line_library_message_becomes_one_line(capsys: pytest.CaptureFixture[str],
                                                        restored_logging: None) -> None:
    logs.configure(_settings("INFO"))
    logging.getLogger("psycopg.pool").warning("error connecting in 'pool-1': connection failed: refused\n"
                                              "\tIs the server running on that host?")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused Is the server running on that host?" in err


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _handler(every: float = 60.0) -> tuple[logging.Logger, list[str], FakeTime]:
    clock, lines = FakeTime(), []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    handler.addFilter(logs.RepeatFilter(every=every, clock=clock))
    logger = logging.getLogger(f"test_logs.repeat.{id(handler)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger, lines, clock


def test_a_repeating_failure_logs_once_then_once_a_minute_with_a_count() -> None:
    logger, lines, clock = _handler()
    for _second in range(600):  # ten minutes of a dead database: a worker restarting twice a second
        for attempt in range(2):
            logger.error("job worker %d stopped (TimeoutError); starting it again in %.1fs", attempt, 0.5)
        clock.now += 1
    assert len(lines) == 10, lines  # once, then once a minute
    assert lines[0] == "job worker 0 stopped (TimeoutError); starting it again in 0.5s"
    assert lines[1] == "job worker 0 stopped (TimeoutError); starting it again in 0.5s (repeated 119 more time(s) " \
        "in the last 60s)"


def test_different_failures_and_info_lines_are_not_held_back() -> None:
    logger, lines, _clock = _handler()
    logger.warning("auth.test failed (ClientConnectorError); retrying")
    logger.warning("scheduler leadership check failed (OperationalError); stepping down")
    logger.warning("auth.test failed (ClientConnectorError); retrying")
    for _ in range(3):
        logger.info("this replica is now the scheduler leader")
    assert lines == ["auth.test failed (ClientConnectorError); retrying",
                     "scheduler leadership check failed (OperationalError); stepping down",
                     *["this replica is now the scheduler leader"] * 3]


FAILURES: list[int] = []


@job("test_logs.broken")
async def broken(deps: Deps, *, user: str, channel: str | None, response_url: str | None) -> None:
    FAILURES.append(1)
    raise ConnectionResetError("the target hung up")


async def test_a_failing_job_logs_one_line_without_a_traceback(bot: BotHarness, capsys: pytest.CaptureFixture[str],
                                                               restored_logging: None) -> None:
    logs.configure(_settings("INFO"))
    capsys.readouterr()
    await bot.deps.queue.defer("test_logs.broken", {"user": "U0ALICE01", "channel": None, "response_url": None})
    await bot.settle(timeout=15)
    assert FAILURES
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if "test_logs.broken" in line]
    assert failed and all("ConnectionResetError: the target hung up" in line for line in failed), err
    assert "Traceback" not in err


async def test_serve_starts_in_a_few_lines_without_alembic_chatter(tmp_path: Path, emulator: EmulatorServer,
                                                                  database_url: str) -> None:
    (tmp_path / "opsbot.yml").write_text((TESTS / "opsbot.test.yml").read_text())
    port, log = free_port(), tmp_path / "serve.log"
    if database_url.startswith("sqlite"):  # a database never migrated: every migration runs at start
        database_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = clean_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, DATABASE_URL=database_url,
                    SLACK_API_URL=emulator.api_url, LOG_LEVEL="INFO", WORKER_PROCESS="false")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1",
                                                    "--port", str(port), env=env, cwd=tmp_path, stdout=out, stderr=out)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            async def ready() -> bool:
                assert proc.returncode is None, log.read_text()
                try:
                    return (await http.get("/health/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, "opsbot serve to start")
            await eventually(lambda: any(m == "auth.test" for m, _ in emulator.state.calls), "auth.test")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
    text = log.read_text()
    start = text.split("Uvicorn running on")[0]
    assert len(LINE.findall(start)) <= 5, start
    assert "alembic" not in text and "setup plugin" not in text and "Context impl" not in text
    assert "jobs run in this process; scheduler on" in text and "(from opsbot.yml in the working directory)" in text
    assert "Traceback" not in text and BOT_TOKEN not in text and SIGNING_SECRET not in text


async def test_a_dead_database_gives_a_bounded_log_without_tracebacks(tmp_path: Path, emulator: EmulatorServer) -> None:
    """opsbot serve against a PostgreSQL port nobody listens on: the migration, the queue, the worker restarts,
    the pool's reconnects and the scheduler all fail again and again; each kind of line is printed once."""
    (tmp_path / "opsbot.yml").write_text((TESTS / "opsbot.test.yml").read_text())
    port, dead, log = free_port(), free_port(), tmp_path / "serve.log"
    env = clean_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=emulator.api_url,
                    DATABASE_URL=f"postgresql://opsbot:pw-dead-db-31@127.0.0.1:{dead}/opsbot", LOG_LEVEL="INFO")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1",
                                                    "--port", str(port), env=env, cwd=tmp_path, stdout=out, stderr=out)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=6) as http:
            async def answering() -> bool:
                assert proc.returncode is None, log.read_text()
                try:
                    return (await http.get("/health")).status_code in (200, 503)
                except httpx.HTTPError:
                    return False

            await eventually(answering, "opsbot serve to answer /health")
        await eventually(lambda: "job worker" in log.read_text(), "a job worker to fail on the dead database")
        await asyncio.sleep(2)  # the failures repeat for a while: the point of the test
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
    text = log.read_text()
    failures = [line.split(" ", 2)[2] for line in text.splitlines()
                if LINE.match(line) and line.split(" ")[2] in ("WARNING", "ERROR")]
    shapes = [re.sub(r"\d+", "#", line) for line in failures]
    assert failures and max(shapes.count(s) for s in shapes) <= 2, text  # once per process (web and worker)
    assert len(failures) <= 20, text
    assert "Traceback" not in text and "pw-dead-db-31" not in text
    assert all(LINE.match(line) for line in text.splitlines() if line.strip()), text  # one line per record
