"""`/health [env|all]`, the scheduled monitor (posts on a change of state) and smoke suites."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck

from bot import metrics
from bot.config import Config, Environment, SmokeSuite
from bot.deps import Deps
from bot.durations import format_duration
from bot.errors import InvalidInput, NotFound
from bot.health import (
    CheckResult,
    HealthReport,
    SmokeResult,
    StateChange,
    check_environment,
    monitor_once,
    run_smoke,
    smoke_once,
)
from bot.jobs import job
from commands import blocks as bk
from commands.common import ack_deferred, ephemeral, error_text, responder, split_args, tell
from commands.router import Router

log = logging.getLogger(__name__)

HELP = [
    ("/health [environment]", "Run an environment's health checks (the default environment when omitted)"),
    ("/health all", "Check every environment"),
    ("/health smoke <suite> [environment]", "Run a smoke suite now; the result replaces the answer"),
]

STATE_ICON = {"healthy": "✅", "degraded": "⚠️", "unhealthy": "❌"}
CHECK_ICON = {"ok": "✅", "warn": "⚠️", "fail": "❌"}
OUTPUT_SHOWN = 2500  # characters of a smoke command's output shown in Slack (the end of it)


def monitor_job(environment: str) -> str:
    return f"health.monitor.{environment}"


def smoke_job(environment: str, suite: str) -> str:
    return f"health.smoke.{environment}.{suite}"


# -- parsing ----------------------------------------------------------------------------------
def resolve_targets(config: Config, text: str | None) -> list[tuple[str, Environment]]:
    """`` → the default environment, `all` → every one, a name → that one (NotFound lists the valid ones)."""
    words = split_args(text)
    if len(words) > 1:
        raise InvalidInput("Usage: `/health [environment|all]`, one environment at a time.")
    if not config.environments:
        raise InvalidInput("No environments are configured in opsbot.yml (`environments:`).")
    if words and words[0].lower() == "all":
        return list(config.environments.items())
    return [config.environment(words[0] if words else None)]


def resolve_smoke(config: Config, words: list[str]) -> tuple[str, SmokeSuite]:
    """`smoke <suite> [env]` → (environment, suite); NotFound lists the environment's suites."""
    if len(words) > 3:
        raise InvalidInput("Usage: `/health smoke <suite> [environment]`.")
    environment, env = config.environment(words[2] if len(words) == 3 else None)
    names = [suite.name for suite in env.smoke]
    if len(words) < 2:
        listed = ", ".join(f"`{name}`" for name in names) or "none are configured"
        raise InvalidInput(f"Usage: `/health smoke <suite> [environment]`. Smoke suites in {environment}: {listed}.")
    wanted = words[1].lower()
    found = next((suite for suite in env.smoke if suite.name.lower() == wanted), None)
    if found is None:
        raise NotFound("smoke suite", words[1], names)
    return environment, found


def checking_text(targets: list[tuple[str, Environment]]) -> str:
    total = sum(len(env.checks) for _, env in targets)
    checks = f"{total} check{'' if total == 1 else 's'}"
    if len(targets) == 1:
        return f"Checking {targets[0][0]}: {checks}…"
    return f"Checking {len(targets)} environments: {checks}…"


# -- pure renderers ---------------------------------------------------------------------------
def esc(text: str) -> str:
    """Slack mrkdwn control characters; target answers and config text are shown literally."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def latency_text(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def check_line(result: CheckResult) -> str:
    parts = [latency_text(result.latency_ms)]
    if result.status_code is not None:
        parts.append(str(result.status_code))
    if result.detail:
        parts.append(esc(result.detail))
    if result.body:
        parts.append(esc(result.body))
    return f"{CHECK_ICON[result.status]} *{esc(result.name)}* · {' · '.join(parts)}"


def summary_line(report: HealthReport) -> str:
    total = len(report.results)
    icon, name = STATE_ICON[report.status], esc(report.environment)
    if not total:
        return f"{icon} *{name}*: no checks configured"
    if report.status == "unhealthy":
        tail = f"{len(report.failing)} of {total} checks failing"
    elif report.status == "degraded":
        limited = sum(1 for r in report.warnings if r.rate_limited)
        tail = f"{len(report.warnings)} of {total} checks slow or near a limit"
        if limited:
            tail = (f"{limited} of {total} checks rate limited" if limited == len(report.warnings)
                    else f"{len(report.warnings)} of {total} checks slow, near a limit or rate limited")
    else:
        tail = _passing(total)
    return f"{icon} *{name}* is {report.status} · {tail} · {latency_text(report.duration_ms)}"


def _passing(total: int) -> str:
    return f"all {total} checks pass" if total != 1 else "1 check passes"


def _ordered(results: list[CheckResult]) -> list[CheckResult]:
    """Failures first, then warnings, then the rest, each in config order: what matters survives a cut."""
    rank = {"fail": 0, "warn": 1, "ok": 2}
    return sorted(results, key=lambda r: rank[r.status])


def _line_sections(lines: list[str]) -> list[bk.Block]:
    """Lines packed into as few sections as Slack's 3,000-character limit allows."""
    sections, current = [], ""
    for line in lines:
        line = bk.cut(line, bk.SECTION_TEXT)
        if current and len(current) + 1 + len(line) > bk.SECTION_TEXT:
            sections.append(bk.section(current))
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        sections.append(bk.section(current))
    return sections


def report_blocks(report: HealthReport) -> list[bk.Block]:
    return [bk.section(summary_line(report)), *_line_sections([check_line(r) for r in _ordered(report.results)])]


def render_reports(reports: list[HealthReport]) -> list[bk.Block]:
    out: list[bk.Block] = []
    for i, report in enumerate(reports):
        if i:
            out.append(bk.divider())
        out += report_blocks(report)
    return bk.fit(out)


def reports_text(reports: list[HealthReport]) -> str:
    """The notification/fallback text: one summary per environment, no mrkdwn needed."""
    return "\n".join(summary_line(r).replace("*", "") for r in reports)


def render_change(change: StateChange, now: datetime) -> tuple[str, list[bk.Block]]:
    report, name = change.report, esc(change.environment)
    was = f" (was {change.previous}" + (f" for {format_duration(now - change.since)})" if change.since else ")")
    if change.previous is None:
        was = ""
    icon = STATE_ICON[change.current]
    if change.recovered:
        text = f"{icon} {change.environment} recovered: {_passing(len(report.results))}"
        headline = f"{icon} *{name}* recovered: {_passing(len(report.results))}{was}"
    else:
        bad = report.failing or report.warnings
        names = ", ".join(r.name for r in bad)
        text = f"{icon} {change.environment} is {change.current}: {names}"
        headline = f"{icon} *{name}* is {change.current}{was}: {esc(names)}"
    lines = [check_line(r) for r in _ordered(report.results) if r.status != "ok" or change.recovered]
    return text, bk.fit([bk.section(headline), *_line_sections(lines),
                         bk.context(f"Monitor · `/health {name}` for a fresh run")])


def render_smoke(result: SmokeResult) -> tuple[str, list[bk.Block]]:
    icon = "✅" if result.passed else "❌"
    verdict = "passed" if result.passed else "failed"
    text = f"{icon} Smoke suite {result.suite} on {result.environment} {verdict}: {result.detail}"
    blocks = [bk.section(f"{icon} Smoke suite *{esc(result.suite)}* on *{esc(result.environment)}* "
                         f"{verdict}: {esc(result.detail)}")]
    if result.report is not None:
        shown = result.report.results if result.passed else [r for r in result.report.results
                                                              if r.status != "ok"]
        blocks += _line_sections([check_line(r) for r in _ordered(shown)])
    if result.command is not None:
        output = result.command.output.strip()
        if output and not result.passed:
            tail = output if len(output) <= OUTPUT_SHOWN else "…" + output[-OUTPUT_SHOWN:]
            blocks.append(bk.section("```" + esc(tail).replace("```", "`\u200b``") + "```"))
        blocks.append(bk.context(f"Ran in {latency_text(result.command.duration_ms)}"))
    return text, bk.fit(blocks)


# -- listener, jobs and schedule ------------------------------------------------------------------
async def health_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("health")
    words = split_args(command.get("text"))
    if words and words[0].lower() == "smoke":
        await smoke_command(ack, command, deps, words)
        return
    try:
        targets = resolve_targets(deps.config, command.get("text"))
    except (NotFound, InvalidInput) as exc:
        await ack(ephemeral(error_text(exc)))
        return
    await ack_deferred(ack, deps, "health.check", answer=ephemeral(checking_text(targets)),
                       user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"), environments=[name for name, _ in targets],
                       requested_at=time.time())


async def smoke_command(ack: AsyncAck, command: dict[str, Any], deps: Deps, words: list[str]) -> None:
    """`/health smoke <suite> [env]`: ack at once, the suite runs as the `health.smoke_now` job."""
    try:
        environment, suite = resolve_smoke(deps.config, words)
    except (NotFound, InvalidInput) as exc:
        await ack(ephemeral(error_text(exc)))
        return
    await ack_deferred(ack, deps, "health.smoke_now",
                       answer=ephemeral(f"Running smoke suite {suite.name} on {environment}…"),
                       user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"), environment=environment, suite=suite.name)


def register(app: Router) -> None:
    app.command("/health")(health_command)


def schedule(deps: Deps) -> None:
    """Each monitored environment's monitor and each smoke suite: named jobs run by the scheduler's leader."""
    for name, env in deps.config.environments.items():
        if env.monitor is not None and env.checks:
            deps.scheduler.every(monitor_job(name), env.monitor, partial(deps.run_job, "health.monitor",
                                                                         environment=name))
        for suite in (s for s in env.smoke if s.schedule is not None):
            assert suite.schedule is not None
            deps.scheduler.cron(smoke_job(name, suite.name), suite.schedule,
                                partial(deps.run_job, "health.smoke", environment=name, suite=suite.name))


@job("health.check", retries=1)
async def check(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                environments: list[str], requested_at: float | None = None) -> None:
    """`/health`: every check of the environments at once; the answer replaces the "Checking…" ack. Requests
    for the same environment share a round of checks that started after they were made (bot/shared_reads.py):
    a crowd asking during an outage sends the targets one round, not one each."""
    async def checks(name: str) -> HealthReport:
        one_round = partial(check_environment, name, _environment(deps, name), http=deps.probes, scrub=deps.scrubber)
        return await deps.reads.read(("health", name), one_round, asked_at=requested_at)

    reports = list(await asyncio.gather(*(checks(name) for name in environments)))
    text, blocks = reports_text(reports), render_reports(reports)
    respond = responder(deps, response_url)
    if respond is None:
        await tell(deps, text=text, blocks=blocks, user=user, channel=channel)
        return
    await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)


@job("health.monitor")
async def monitor(deps: Deps, *, environment: str) -> None:
    await monitor_once(deps.db, clock=deps.clock, http=deps.probes, environment=environment,
                       env=_environment(deps, environment), notifier=SlackHealth(deps), scrub=deps.scrubber)


@job("health.smoke")
async def smoke(deps: Deps, *, environment: str, suite: str) -> None:
    env = _environment(deps, environment)
    found = next((s for s in env.smoke if s.name == suite), None)
    if found is None:
        raise NotFound("smoke suite", suite, [s.name for s in env.smoke])
    await smoke_once(environment, env, found, http=deps.probes, scrub=deps.scrubber, notifier=SlackHealth(deps))


@job("health.smoke_now", lock="smoke:{environment}:{suite}")
async def smoke_now(deps: Deps, *, user: str, channel: str | None, response_url: str | None, environment: str,
                    suite: str) -> None:
    """`/health smoke`: the suite's result, pass or fail, replaces the "Running…" answer. One run of a suite
    at a time; a user's runs count against the shared rate limit (a suite may be a long end-to-end test)."""
    env = _environment(deps, environment)
    found = next((s for s in env.smoke if s.name == suite), None)
    if found is None:
        raise NotFound("smoke suite", suite, [s.name for s in env.smoke])
    await deps.ratelimit.check(user, "health.smoke")
    result = await run_smoke(environment, env, found, http=deps.probes, scrub=deps.scrubber)
    text, blocks = render_smoke(result)
    respond = responder(deps, response_url)
    if respond is None:
        await tell(deps, text=text, blocks=blocks, user=user, channel=channel)
        return
    await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)


def _environment(deps: Deps, name: str) -> Environment:
    try:
        return deps.config.environments[name]
    except KeyError:
        raise NotFound("environment", name, list(deps.config.environments)) from None


class SlackHealth:
    """bot.health.HealthNotifier: changes of state and smoke results in the alerts channel."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def state_changed(self, change: StateChange) -> None:
        text, blocks = render_change(change, self.deps.clock())
        await self.deps.slack.chat_postMessage(channel=self.deps.config.channels.alerts, text=text, blocks=blocks)

    async def smoke_finished(self, result: SmokeResult) -> None:
        text, blocks = render_smoke(result)
        await self.deps.slack.chat_postMessage(channel=self.deps.config.channels.alerts, text=text, blocks=blocks)
