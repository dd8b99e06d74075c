"""The health-check engine: every check of an environment at once, each with its own timeout.

Used by `/health`, by rollbacks (verification) and by alerts; knows nothing of Slack. The scheduled monitor
and smoke suites (`monitor_once`, `smoke_once`) announce through a `HealthNotifier`, which commands/health
implements."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import metrics
from bot.childenv import child_env
from bot.clock import Clock
from bot.config.health import Check, Environment, HttpCheck, PostgresCheck, SmokeSuite, TcpCheck
from bot.db import Database
from bot.errors import ConfigError
from bot.models import MonitorState
from bot.providers.checks_common import Probe, seconds_text
from bot.providers.checks_http import probe_http
from bot.providers.checks_postgres import probe_postgres
from bot.providers.checks_tcp import probe_tcp
from bot.secrets import Scrubber

log = logging.getLogger(__name__)

CheckStatus = Literal["ok", "warn", "fail"]
OverallStatus = Literal["healthy", "degraded", "unhealthy"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    status: CheckStatus
    latency_ms: float
    detail: str
    status_code: int | None = None


@dataclass(frozen=True)
class HealthReport:
    environment: str
    status: OverallStatus
    results: list[CheckResult]
    duration_ms: float

    @property
    def failing(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "warn"]


def overall(results: list[CheckResult]) -> OverallStatus:
    """Any failed check makes the environment unhealthy; any warning makes it degraded."""
    if any(r.status == "fail" for r in results):
        return "unhealthy"
    if any(r.status == "warn" for r in results):
        return "degraded"
    return "healthy"


async def check_environment(name: str, env: Environment, *, http: httpx.AsyncClient,
                            only: list[str] | None = None) -> HealthReport:
    """Run the environment's checks concurrently (or the ones named in `only`); never raises for a check."""
    checks = [c for c in env.checks if only is None or c.label() in only]
    started = time.perf_counter()
    results = await asyncio.gather(*(run_check(check, env, http=http) for check in checks))
    duration = (time.perf_counter() - started) * 1000
    return HealthReport(environment=name, status=overall(list(results)), results=list(results),
                        duration_ms=duration)


async def run_check(check: Check, env: Environment, *, http: httpx.AsyncClient) -> CheckResult:
    """One check bounded by its timeout (the check's own, else the environment's)."""
    timeout = (check.timeout or env.timeout).total_seconds()
    latency_warn = (check.latency_warn or env.latency_warn).total_seconds()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            probe = await _probe(check, http=http, timeout=timeout)
    except TimeoutError:
        probe = Probe("fail", f"timeout after {seconds_text(timeout)}")
    except Exception as exc:  # a bug or an odd library error must not take the other checks down
        log.exception("health check %s failed unexpectedly", check.label())
        probe = Probe("fail", f"check error ({type(exc).__name__})")
    elapsed = time.perf_counter() - started
    status, detail = probe.status, probe.detail
    if status == "ok" and latency_warn and elapsed > latency_warn:
        status = "warn"
        detail = _join(detail, f"slow: over {seconds_text(latency_warn)}")
    metrics.HEALTH_CHECKS.labels(kind=check.type, outcome=status).observe(elapsed)
    return CheckResult(name=check.label(), kind=check.type, status=status, latency_ms=elapsed * 1000,
                       detail=detail, status_code=probe.status_code)


async def _probe(check: Check, *, http: httpx.AsyncClient, timeout: float) -> Probe:
    if isinstance(check, HttpCheck):
        return await probe_http(check, http=http, timeout=timeout)
    if isinstance(check, PostgresCheck):
        return await probe_postgres(check, timeout=timeout)
    if isinstance(check, TcpCheck):
        return await probe_tcp(check)
    raise TypeError(f"unknown check type {type(check).__name__}")


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# -- scheduled monitoring: remember the last state, report only changes ---------------------------
@dataclass(frozen=True)
class StateChange:
    """An environment's health changed since the previous monitor run (or was first seen unwell)."""

    environment: str
    previous: OverallStatus | None
    report: HealthReport
    since: datetime | None  # when the previous state began

    @property
    def current(self) -> OverallStatus:
        return self.report.status

    @property
    def recovered(self) -> bool:
        return self.current == "healthy"


async def observe(session: AsyncSession, *, report: HealthReport, clock: Clock) -> StateChange | None:
    """Record `report` as the environment's latest state; a StateChange when it differs from the last one.

    The first observation of a healthy environment is not news; a first unhealthy one is."""
    now = clock()
    failing = [r.name for r in report.results if r.status != "ok"]
    row = await session.scalar(select(MonitorState).where(MonitorState.environment == report.environment))
    if row is None:
        session.add(MonitorState(environment=report.environment, state=report.status, failing=failing,
                                 changed_at=now, checked_at=now))
        await session.flush()
        return None if report.status == "healthy" else StateChange(report.environment, None, report, None)
    row.checked_at = now
    row.failing = failing
    if row.state == report.status:
        return None
    previous, since = row.state, row.changed_at
    row.state, row.changed_at = report.status, now
    return StateChange(report.environment, _as_status(previous), report, since)


def _as_status(value: str) -> OverallStatus | None:
    return value if value in ("healthy", "degraded", "unhealthy") else None  # type: ignore[return-value]


# -- smoke suites -------------------------------------------------------------------------------
OUTPUT_LIMIT = 16 * 1024  # characters of a smoke command's output kept (the end, where errors are)


@dataclass(frozen=True)
class CommandOutcome:
    exit_code: int | None  # None when it did not finish (timeout) or could not start
    output: str
    detail: str
    duration_ms: float

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class SmokeResult:
    environment: str
    suite: str
    passed: bool
    detail: str
    report: HealthReport | None = None
    command: CommandOutcome | None = None


async def run_smoke(environment: str, env: Environment, suite: SmokeSuite, *,
                    http: httpx.AsyncClient, scrub: Callable[[str], str] | None = None) -> SmokeResult:
    """A suite is its configured command (exit 0 passes) or a set of the environment's checks (none fail).

    A command's output and detail pass through `scrub` (deps.scrubber) before anyone sees them."""
    if suite.command is not None:
        try:
            child = child_env(suite.env, where=f"environments.{environment}.smoke.{suite.name}.env")
        except ConfigError as exc:
            return SmokeResult(environment, suite.name, False, "; ".join(exc.problems))
        outcome = await run_command(suite.command, timeout=suite.timeout.total_seconds(), env=child,
                                    scrub=scrub or Scrubber())
        return SmokeResult(environment, suite.name, outcome.passed, outcome.detail, command=outcome)
    timeout = suite.timeout.total_seconds()
    try:
        async with asyncio.timeout(timeout):
            report = await check_environment(environment, env, http=http, only=suite.checks)
    except TimeoutError:
        return SmokeResult(environment, suite.name, False, f"timeout after {seconds_text(timeout)}")
    failed = len(report.failing)
    detail = f"{failed} of {len(report.results)} checks failed" if failed else f"{len(report.results)} checks passed"
    return SmokeResult(environment, suite.name, failed == 0, detail, report=report)


async def run_command(argv: list[str], *, timeout: float, env: dict[str, str],
                      scrub: Callable[[str], str]) -> CommandOutcome:
    """Run argv without a shell in exactly `env`; output (stdout and stderr) is captured, keeping the last
    OUTPUT_LIMIT chars, and scrubbed."""
    started = time.perf_counter()

    def done(code: int | None, output: bytes, detail: str) -> CommandOutcome:
        text = scrub(output.decode("utf-8", errors="replace"))
        if len(text) > OUTPUT_LIMIT:
            text = "…" + text[-OUTPUT_LIMIT:]
        return CommandOutcome(code, text, scrub(detail), (time.perf_counter() - started) * 1000)

    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=env)
    except FileNotFoundError:
        return done(None, b"", f"command not found: {argv[0]}")
    except PermissionError:
        return done(None, b"", f"not executable: {argv[0]}")
    assert process.stdout is not None
    buffer = bytearray()

    async def read() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            buffer.extend(chunk)
            if len(buffer) > 4 * OUTPUT_LIMIT:
                del buffer[: len(buffer) - 4 * OUTPUT_LIMIT]
        await process.wait()

    try:
        async with asyncio.timeout(timeout):
            await read()
    except TimeoutError:
        _kill_group(process)
        await process.wait()
        return done(None, bytes(buffer), f"timeout after {seconds_text(timeout)}")
    code = process.returncode
    return done(code, bytes(buffer), f"exit code {code}")


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """The command and anything it started (it runs in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def revert(session: AsyncSession, change: StateChange) -> None:
    """Undo `observe` when the change could not be announced, so the next run announces it again."""
    row = await session.scalar(select(MonitorState).where(MonitorState.environment == change.environment))
    if row is None:
        return
    if change.previous is None:
        await session.delete(row)
    else:
        row.state = change.previous
        if change.since is not None:
            row.changed_at = change.since


# -- scheduled work: what the monitor and the smoke suites do each run ----------------------------------
class HealthNotifier(Protocol):
    """Where the monitor and the smoke suites announce (commands/health: the alerts channel)."""

    async def state_changed(self, change: StateChange) -> None: ...

    async def smoke_finished(self, result: SmokeResult) -> None: ...


async def monitor_once(db: Database, *, clock: Clock, http: httpx.AsyncClient, environment: str,
                       env: Environment, notifier: HealthNotifier) -> StateChange | None:
    """Check, record the state, and announce only a change of state; an announcement that fails is undone
    (the next run announces it again) and re-raised."""
    report = await check_environment(environment, env, http=http)
    async with db.session() as session:
        change = await observe(session, report=report, clock=clock)
    if change is None:
        return None
    try:
        await notifier.state_changed(change)
    except Exception:
        async with db.session() as session:
            await revert(session, change)
        raise
    return change


async def smoke_once(environment: str, env: Environment, suite: SmokeSuite, *, http: httpx.AsyncClient,
                     scrub: Callable[[str], str], notifier: HealthNotifier) -> SmokeResult:
    """Run the suite; announce a failure (and a pass when the suite says `report_success`)."""
    result = await run_smoke(environment, env, suite, http=http, scrub=scrub)
    log.info("smoke suite %s on %s: %s", suite.name, environment, result.detail)
    if not result.passed or suite.report_success:
        await notifier.smoke_finished(result)
    return result
