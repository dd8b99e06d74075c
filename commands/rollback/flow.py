"""The rollback's life in Slack: request message, approvals, the provider run with progress in the
thread, health verification, and the incident channel. Domain rules live in bot/rollbacks.py."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError

from bot import rollbacks, timeline
from bot.deps import Deps
from bot.errors import OpsbotError, ProviderError
from bot.health import check_environment
from bot.models import Incident, Rollback
from bot.providers.rollback_base import RollbackOutcome, RollbackRequest, build_runner
from commands.common import tell_user
from commands.rollback import render

log = logging.getLogger(__name__)
# What a Web API call raises: Slack's refusal, or (after slack_sdk's retries) a timeout or connection error.
SLACK_ERRORS = (SlackApiError, TimeoutError, ClientError)


def _provider(deps: Deps, row: Rollback) -> str:
    try:
        return rollbacks.target(deps.config, row.service, row.environment).runner.provider
    except OpsbotError:
        return ""


def _slack_error(exc: BaseException) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else type(exc).__name__


async def _incident_channel(deps: Deps, row: Rollback) -> str | None:
    if row.incident_id is None:
        return None
    async with deps.db.session() as session:
        incident = await session.get(Incident, row.incident_id)
        return incident.channel_id if incident else None


async def _post_incident(deps: Deps, row: Rollback, text: str) -> None:
    channel = await _incident_channel(deps, row)
    if channel:
        try:
            await deps.slack.chat_postMessage(channel=channel, text=text)
        except SLACK_ERRORS as exc:
            log.warning("rollback #%s: posting to the incident channel failed (%s)", row.id, _slack_error(exc))


async def _thread(deps: Deps, row: Rollback, text: str) -> None:
    """Progress goes in the request message's thread; losing one progress line must not stop the run."""
    try:
        await deps.slack.chat_postMessage(channel=row.channel or deps.config.channels.ops_channel,
                                          thread_ts=row.message_ts, text=text)
    except SLACK_ERRORS as exc:
        log.warning("rollback #%s: progress message failed (%s)", row.id, _slack_error(exc))


async def refresh(deps: Deps, row: Rollback) -> None:
    """Re-render the request message from the row (approvals, status, run link)."""
    if not row.channel or not row.message_ts:
        return
    text, blocks = render.request_message(render.summary(row, provider=_provider(deps, row)))
    try:
        await deps.slack.chat_update(channel=row.channel, ts=row.message_ts, text=text, blocks=blocks)
    except SLACK_ERRORS as exc:
        log.warning("rollback #%s: updating the request message failed (%s)", row.id, _slack_error(exc))


# -- request ---------------------------------------------------------------------------------
async def submit(deps: Deps, *, user: str, service: str, environment: str, from_version: str | None,
                 to_version: str, reason: str, channel: str | None) -> None:
    found = rollbacks.target(deps.config, service, environment)
    await deps.require(user=user, action="rollback", target=rollbacks.key(found.service, found.environment),
                       environment=found.environment, fresh=True)
    async with deps.db.session() as session:
        incident = await timeline.open_incident_in_channel(session, channel)
        row = await rollbacks.request(session, clock=deps.clock, config=deps.config, service=found.service,
                                      environment=found.environment, from_version=from_version,
                                      to_version=to_version, reason=reason, requested_by=user,
                                      incident_id=incident.id if incident else None)
    text, blocks = render.request_message(render.summary(row, provider=found.runner.provider))
    try:
        posted = await deps.slack.chat_postMessage(channel=deps.config.channels.ops_channel, text=text,
                                                   blocks=blocks)
    except SLACK_ERRORS as exc:
        # Without its message nobody could approve or follow it: end it rather than block the service.
        error = _slack_error(exc)
        async with deps.db.session() as session:
            await rollbacks.finish(session, clock=deps.clock, rollback_id=row.id, status="failed",
                                   detail=f"could not post to {deps.config.channels.ops_channel} ({error})")
        raise ProviderError(f"Rollback #{row.id} was not started: posting to {deps.config.channels.ops_channel} "
                            f"failed ({error}).") from None
    async with deps.db.session() as session:
        row = await rollbacks.get(session, row.id)
        row.channel, row.message_ts = posted["channel"], posted["ts"]
    where = f"<#{posted['channel']}>"
    if row.status == "pending_approval":
        note = (f"Rollback #{row.id} of `{row.service}` in *{row.environment}* to `{row.to_version}` requested; "
                f"it needs {row.approvals_required} approval(s) in {where}.")
    else:
        note = (f"Rolling back `{row.service}` in *{row.environment}* to `{row.to_version}` (#{row.id}); "
                f"progress in {where}.")
    if channel and channel != posted["channel"]:
        await tell_user(deps, user=user, channel=channel, text=note)
    await _post_incident(deps, row, f":rewind: <@{user}> requested rollback #{row.id} of `{row.service}` in "
                                    f"*{row.environment}* to `{row.to_version}`: {render.esc(row.reason[:300])}")
    if row.status == "running":
        start(deps, row.id)


# -- approvals -------------------------------------------------------------------------------
async def approve(deps: Deps, *, rollback_id: int, user: str) -> None:
    await expire(deps)
    async with deps.db.session() as session:
        row = await rollbacks.get(session, rollback_id)
    if row.status == "pending_approval" and user != row.requested_by:
        await deps.require(user=user, action="rollback.approve", target=rollbacks.key(row.service, row.environment),
                           environment=row.environment, fresh=True)
    row = await rollbacks.approve(deps.db, clock=deps.clock, rollback_id=rollback_id, user=user)
    await refresh(deps, row)
    await _thread(deps, row, f"<@{user}> approved ({len(row.approved_by)}/{row.approvals_required}).")
    if row.status == "running":
        start(deps, row.id)


async def reject(deps: Deps, *, rollback_id: int, user: str) -> None:
    async with deps.db.session() as session:
        row = await rollbacks.get(session, rollback_id)
    if row.status == "pending_approval" and user != row.requested_by:  # requesters may withdraw their own
        await deps.require(user=user, action="rollback.approve", target=rollbacks.key(row.service, row.environment),
                           environment=row.environment)
    row = await rollbacks.reject(deps.db, clock=deps.clock, rollback_id=rollback_id, user=user)
    await refresh(deps, row)
    await _thread(deps, row, f":no_entry_sign: <@{user}> rejected the rollback; nothing was changed.")
    await _post_incident(deps, row, f":no_entry_sign: Rollback #{row.id} of `{row.service}` in *{row.environment}* "
                                    f"was rejected by <@{user}>.")


async def expire(deps: Deps) -> None:
    """The scheduled job (and a click's first step): expire overdue requests, fail lost runs."""
    async with deps.db.session() as session:
        expired = await rollbacks.expire_due(session, clock=deps.clock)
        lost = await rollbacks.fail_lost(session, clock=deps.clock, config=deps.config)
    for row in expired:
        await refresh(deps, row)
        await _thread(deps, row, ":hourglass: The request expired without enough approvals; nothing was changed.")
        await _post_incident(deps, row, f":hourglass: Rollback request #{row.id} of `{row.service}` expired.")
    for row in lost:
        await refresh(deps, row)
        await _thread(deps, row, ":x: No result from this run (opsbot restarted?); marked failed. "
                                 "Check the provider before retrying.")


# -- running -------------------------------------------------------------------------------
def start(deps: Deps, rollback_id: int) -> None:
    deps.tasks.spawn(execute(deps, rollback_id), name="rollback.run")


async def execute(deps: Deps, rollback_id: int) -> None:
    """Run the provider, verify health, record the result. The row always ends finished."""
    finished = False
    row: Rollback | None = None
    try:
        async with deps.db.session() as session:
            loaded = await rollbacks.get(session, rollback_id)
            found = rollbacks.target(deps.config, loaded.service, loaded.environment)
            row = await rollbacks.started(session, clock=deps.clock, rollback_id=rollback_id,
                                          provider=found.runner.provider)
        await refresh(deps, row)
        current = row

        async def progress(text: str) -> None:
            await _thread(deps, current, text)

        await progress(f":arrows_counterclockwise: Rolling back `{row.service}` in *{row.environment}* "
                       f"to `{row.to_version}` via `{found.runner.provider}`…")
        outcome = await _run_provider(deps, row, found.runner, progress)
        if outcome.output is not None:
            await progress(render.output_text(outcome.output))
        verification: str | None = None
        health: list[str] = []
        if outcome.succeeded:
            verification, health = await verify(deps, row.environment, found.runner, progress)
        async with deps.db.session() as session:
            row = await rollbacks.finish(session, clock=deps.clock, rollback_id=rollback_id, status=outcome.status,
                                         detail=outcome.detail, verification=verification, run_url=outcome.run_url,
                                         output=outcome.output)
        finished = True
        text = render.result_text(render.summary(row), outcome.detail, health)
        await refresh(deps, row)
        await _thread(deps, row, text)
        await _post_incident(deps, row, text)
    finally:
        if not finished and row is not None:
            log.error("rollback #%s ended without a result; marking it failed", rollback_id)
            async with deps.db.session() as session:
                row = await rollbacks.finish(session, clock=deps.clock, rollback_id=rollback_id, status="failed",
                                             detail="opsbot hit an internal error (logged).")
            await refresh(deps, row)
            await _thread(deps, row, ":x: The rollback stopped on an internal error (logged); check the provider.")


async def _run_provider(deps: Deps, row: Rollback, runner: Any, progress: Any) -> RollbackOutcome:
    request = RollbackRequest(rollback_id=row.id, service=row.service, environment=row.environment,
                              version=row.to_version or "", previous_version=row.from_version,
                              reason=row.reason, requested_by=row.requested_by)
    try:
        return await build_runner(runner, http=deps.http, scrub=deps.scrubber).run(request, progress)
    except OpsbotError as exc:  # ProviderError, an invalid version, an unset token variable…
        return RollbackOutcome("failed", str(exc))


async def verify(deps: Deps, environment: str, runner: Any, progress: Any) -> tuple[str | None, list[str]]:
    """Run the environment's health checks after a successful rollback: (verification, lines)."""
    if not runner.verify:
        return None, []
    env = deps.config.environments.get(environment)
    if env is None or not env.checks:
        return "skipped", []
    await progress(f"Verifying: running {len(env.checks)} health check(s) for *{environment}*…")
    try:
        report = await check_environment(environment, env, http=deps.http)
    except Exception as exc:  # the engine should not raise; a bug there must not hide the rollback's result
        log.exception("health verification failed")
        return "error", [f"• {type(exc).__name__}"]
    if report.status == "healthy":
        return "verified", [f"All {len(report.results)} health check(s) pass."]
    wanted = "fail" if report.status == "unhealthy" else "warn"
    lines = [f"• *{r.name}*: {r.detail}" for r in report.results if r.status == wanted]
    return ("unhealthy" if report.status == "unhealthy" else "degraded"), lines
