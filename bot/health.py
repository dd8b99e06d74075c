"""The health-check engine: every check of an environment at once, each with its own timeout.

Used by `/health`, by rollbacks (verification) and by alerts; knows nothing of Slack. The scheduled monitor
and smoke suites (`monitor_once`, `smoke_once`) announce through a `HealthNotifier`, which commands/health
implements."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import metrics
from bot.childenv import child_env
from bot.clock import Clock
from bot.config.health import (
    PATTERN_PREFIX,
    Check,
    Environment,
    HttpCheck,
    PostgresCheck,
    RateLimitCheck,
    SmokeSuite,
    TcpCheck,
)
from bot.db import Database
from bot.errors import ConfigError
from bot.models import MonitorState
from bot.providers.checks_common import Probe, seconds_text
from bot.providers.checks_http import probe_http
from bot.providers.checks_postgres import probe_postgres
from bot.providers.checks_rate_limit import probe_rate_limit
from bot.providers.checks_tcp import probe_tcp
from bot.providers.probe_client import Probes
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
    body: str = ""                   # what a failing target's answer says about itself (scrubbed)
    rate_limited: bool = False       # a 429: a warning that says nothing new about the target's health
    retry_after: float | None = None

    @property
    def explanation(self) -> str:
        """The detail and what the body says: `expected 2xx got 503 · status=unhealthy · error=…`."""
        return " · ".join(part for part in (self.detail, self.body) if part)


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


async def check_environment(name: str, env: Environment, *, http: Probes,
                            only: list[str] | None = None, rate_limits: bool = True,
                            scrub: Callable[[str], str] | None = None) -> HealthReport:
    """Run the environment's checks concurrently (or the ones named in `only`); never raises for a check.

    `rate_limits=False` leaves out `rate_limit` checks (they spend the target's budget: the monitor and
    rollback verification do not run them). `scrub` (deps.scrubber) masks secrets in every detail."""
    checks = [c for c in env.checks if (only is None or c.label() in only)
              and (rate_limits or not isinstance(c, RateLimitCheck))]
    started = time.perf_counter()
    results = await asyncio.gather(*(run_check(check, env, http=http, scrub=scrub) for check in checks))
    duration = (time.perf_counter() - started) * 1000
    return HealthReport(environment=name, status=overall(list(results)), results=list(results),
                        duration_ms=duration)


async def run_check(check: Check, env: Environment, *, http: Probes,
                    scrub: Callable[[str], str] | None = None) -> CheckResult:
    """One check bounded by its timeout (the check's own, else the environment's)."""
    timeout = (check.timeout or env.timeout).total_seconds()
    latency_warn = (check.latency_warn or env.latency_warn).total_seconds()
    if isinstance(check, RateLimitCheck) and check.latency_warn is None:
        latency_warn = 0  # dozens of requests: its duration is not a latency
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
    body = probe.body
    if scrub is not None:
        detail, body = scrub(detail), scrub(body)
    return CheckResult(name=check.label(), kind=check.type, status=status, latency_ms=elapsed * 1000,
                       detail=detail, status_code=probe.status_code, body=body, rate_limited=probe.rate_limited,
                       retry_after=probe.retry_after)


async def _probe(check: Check, *, http: Probes, timeout: float) -> Probe:
    if isinstance(check, HttpCheck):
        return await probe_http(check, http=http, timeout=timeout)
    if isinstance(check, PostgresCheck):
        return await probe_postgres(check, timeout=timeout)
    if isinstance(check, TcpCheck):
        return await probe_tcp(check)
    if isinstance(check, RateLimitCheck):
        return await probe_rate_limit(check, http=http)
    raise TypeError(f"unknown check type {type(check).__name__}")


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# -- rollback verification: a rate limited target is asked again, not judged -------------------------
RETRY_WAIT = 5.0       # seconds to wait after a 429 without Retry-After
MIN_RETRY_WAIT = 0.2   # never retry in a tight loop, even after `Retry-After: 0`


def verifiable(env: Environment) -> int:
    """How many of the environment's checks verification runs (all but `rate_limit` checks)."""
    return sum(1 for check in env.checks if not isinstance(check, RateLimitCheck))


async def check_patiently(name: str, env: Environment, *, http: Probes, within: float,
                          only: list[str] | None = None, scrub: Callable[[str], str] | None = None,
                          waiting: Callable[[str], Awaitable[None]] | None = None,
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> HealthReport:
    """`check_environment` (without rate_limit checks), then the checks answered 429 again after their
    Retry-After (capped by what is left of `within` seconds) until they answer or the time is up.

    `waiting` hears each wait ("api rate limited (429); retrying in 3 s"). A check still rate limited at
    the end stays a warning: the report is degraded, not unhealthy."""
    deadline = time.monotonic() + within
    started = time.perf_counter()
    report = await check_environment(name, env, http=http, only=only, rate_limits=False, scrub=scrub)
    results = list(report.results)
    while limited := [r for r in results if r.rate_limited]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        asked = max((r.retry_after for r in limited if r.retry_after is not None), default=RETRY_WAIT)
        wait = min(max(asked, MIN_RETRY_WAIT), remaining)
        if waiting is not None:
            names = ", ".join(r.name for r in limited)
            await waiting(f"{names} rate limited (429); retrying in {seconds_text(round(wait, 1))}…")
        await sleep(wait)
        again = await check_environment(name, env, http=http, only=[r.name for r in limited], rate_limits=False,
                                        scrub=scrub)
        fresh = {r.name: r for r in again.results}
        results = [fresh.get(r.name, r) for r in results]
    return HealthReport(environment=name, status=overall(results), results=results,
                        duration_ms=(time.perf_counter() - started) * 1000)


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
    row = await session.scalar(select(MonitorState).where(MonitorState.environment == report.environment))
    report = _carry_rate_limited(report, row)
    failing = [r.name for r in report.results if (r.status != "ok" and not r.rate_limited)
               or (r.rate_limited and row is not None and r.name in (row.failing or []))]
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


def _carry_rate_limited(report: HealthReport, row: MonitorState | None) -> HealthReport:
    """A check the target rate limits (429) says nothing new: it keeps the part it had in the last state, so
    the monitor does not flap on a 429 (the report still shows it as a warning)."""
    if not any(r.rate_limited for r in report.results):
        return report
    before = set(row.failing or []) if row is not None else set()
    previous = row.state if row is not None else "healthy"
    statuses: list[CheckStatus] = []
    for r in report.results:
        if not r.rate_limited:
            statuses.append(r.status)
        elif r.name in before and previous in ("unhealthy", "degraded"):
            statuses.append("fail" if previous == "unhealthy" else "warn")
        else:
            statuses.append("ok")
    status: OverallStatus = "unhealthy" if "fail" in statuses else "degraded" if "warn" in statuses else "healthy"
    return replace(report, status=status)


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
    missing: tuple[str, ...] = ()  # `expect_output` entries the output lacked

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.missing


@dataclass(frozen=True)
class SmokeResult:
    environment: str
    suite: str
    passed: bool
    detail: str
    report: HealthReport | None = None
    command: CommandOutcome | None = None


async def run_smoke(environment: str, env: Environment, suite: SmokeSuite, *,
                    http: Probes, scrub: Callable[[str], str] | None = None) -> SmokeResult:
    """A suite is its configured command (exit 0 and every `expect_output` line seen passes) or a set of the
    environment's checks (none fail).

    A command's output and detail pass through `scrub` (deps.scrubber) before anyone sees them."""
    if suite.command is not None:
        try:
            child = child_env(suite.env, where=f"environments.{environment}.smoke.{suite.name}.env")
        except ConfigError as exc:
            return SmokeResult(environment, suite.name, False, "; ".join(exc.problems))
        outcome = await run_command(suite.command, timeout=suite.timeout.total_seconds(), env=child,
                                    scrub=scrub or Scrubber(), cwd=suite.cwd, expect=suite.expect_output)
        return SmokeResult(environment, suite.name, outcome.passed, outcome.detail, command=outcome)
    timeout = suite.timeout.total_seconds()
    try:
        async with asyncio.timeout(timeout):
            report = await check_environment(environment, env, http=http, only=suite.checks, scrub=scrub)
    except TimeoutError:
        return SmokeResult(environment, suite.name, False, f"timeout after {seconds_text(timeout)}")
    failed = len(report.failing)
    detail = f"{failed} of {len(report.results)} checks failed" if failed else f"{len(report.results)} checks passed"
    return SmokeResult(environment, suite.name, failed == 0, detail, report=report)


class _Expected:
    """`expect_output` entries, matched line by line as the output streams (so none is lost to the cap)."""

    def __init__(self, entries: list[str]) -> None:
        self.entries = entries
        self.seen = [False] * len(entries)
        self._partial = b""
        self._patterns = [re.compile(entry[len(PATTERN_PREFIX):]) if entry.startswith(PATTERN_PREFIX) else entry
                          for entry in entries]

    def feed(self, chunk: bytes, *, end: bool = False) -> None:
        if not self.entries:
            return
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = b"" if end else lines.pop()
        if len(self._partial) > 4 * OUTPUT_LIMIT:  # a "line" without end: look at it as it is, keep its tail
            lines.append(self._partial)
            self._partial = self._partial[-OUTPUT_LIMIT:]
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            for index, pattern in enumerate(self._patterns):
                if not self.seen[index] and (pattern in line if isinstance(pattern, str) else pattern.search(line)):
                    self.seen[index] = True

    @property
    def missing(self) -> list[str]:
        return [entry for entry, seen in zip(self.entries, self.seen, strict=True) if not seen]


async def run_command(argv: list[str], *, timeout: float, env: dict[str, str],
                      scrub: Callable[[str], str], cwd: str | None = None,
                      expect: list[str] | None = None) -> CommandOutcome:
    """Run argv without a shell in exactly `env` (in `cwd` when given); output (stdout and stderr) is
    captured, keeping the last OUTPUT_LIMIT chars, and scrubbed. With `expect`, exit 0 passes only when each
    entry was found in a line of the output (text, or `re:` and a pattern)."""
    started = time.perf_counter()
    expected = _Expected(list(expect or []))

    def done(code: int | None, output: bytes, detail: str, missing: list[str] | None = None) -> CommandOutcome:
        text = scrub(output.decode("utf-8", errors="replace"))
        if len(text) > OUTPUT_LIMIT:
            text = "…" + text[-OUTPUT_LIMIT:]
        return CommandOutcome(code, text, scrub(detail), (time.perf_counter() - started) * 1000,
                              tuple(missing or ()))

    if cwd is not None and not os.path.isdir(cwd):
        return done(None, b"", f"working directory not found: {cwd}")
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=env, cwd=cwd)
    except FileNotFoundError:
        return done(None, b"", f"command not found: {argv[0]}")
    except PermissionError:
        return done(None, b"", f"not executable: {argv[0]}")
    assert process.stdout is not None
    buffer = bytearray()

    async def read() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            expected.feed(chunk)
            buffer.extend(chunk)
            if len(buffer) > 4 * OUTPUT_LIMIT:
                del buffer[: len(buffer) - 4 * OUTPUT_LIMIT]
        expected.feed(b"", end=True)
        await process.wait()

    try:
        async with asyncio.timeout(timeout):
            await read()
    except TimeoutError:
        _kill_group(process)
        await process.wait()
        return done(None, bytes(buffer), f"timeout after {seconds_text(timeout)}")
    code = process.returncode
    missing = expected.missing
    if code == 0 and missing:
        shown = ", ".join(f"`{entry}`" for entry in missing[:3]) + (f" and {len(missing) - 3} more"
                                                                    if len(missing) > 3 else "")
        return done(code, bytes(buffer), f"exit code 0 but the output lacks {shown}", missing)
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


async def monitor_once(db: Database, *, clock: Clock, http: Probes, environment: str,
                       env: Environment, notifier: HealthNotifier,
                       scrub: Callable[[str], str] | None = None) -> StateChange | None:
    """Check, record the state, and announce only a change of state; an announcement that fails is undone
    (the next run announces it again) and re-raised."""
    report = await check_environment(environment, env, http=http, rate_limits=False, scrub=scrub)
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


async def smoke_once(environment: str, env: Environment, suite: SmokeSuite, *, http: Probes,
                     scrub: Callable[[str], str], notifier: HealthNotifier) -> SmokeResult:
    """Run the suite; announce a failure (and a pass when the suite says `report_success`)."""
    result = await run_smoke(environment, env, suite, http=http, scrub=scrub)
    log.info("smoke suite %s on %s: %s", suite.name, environment, result.detail)
    if not result.passed or suite.report_success:
        await notifier.smoke_finished(result)
    return result
