"""The health-check engine: every check of an environment at once, each with its own timeout.

Used by `/health`, by rollbacks (verification) and by alerts; knows nothing of Slack."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from bot import metrics
from bot.config.health import Check, Environment, HttpCheck, PostgresCheck, TcpCheck
from bot.providers.checks_common import Probe, seconds_text
from bot.providers.checks_http import probe_http
from bot.providers.checks_postgres import probe_postgres
from bot.providers.checks_tcp import probe_tcp

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
