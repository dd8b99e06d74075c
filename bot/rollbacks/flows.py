"""A rollback's life: request, approvals, the provider run with its progress, health verification, and
what people are told at each step — through a `RollbackNotifier` the Slack layer implements.

Every step is a named job (commands/rollback/jobs.py) and may run twice (its worker died): a request
resumes the one it created, an approval already counted still makes sure the run is queued (once per
rollback), and a run whose start was recorded never runs its provider again (the lost-run sweep fails it
after its timeout, as after a restart)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select

from bot import timeline
from bot.errors import OpsbotError, ProviderError
from bot.health import check_patiently, verifiable
from bot.models import AuditEntry, Incident, Rollback
from bot.providers.rollback_base import Progress, RollbackOutcome, RollbackRequest, build_runner
from bot.rollbacks import (
    Plan,
    Target,
    active,
    expire_due,
    fail_lost,
    finish,
    get,
    key,
    plan,
    request,
    started,
    target,
    versions,
    with_source,
)
from bot.rollbacks import approve as approve_row
from bot.rollbacks import reject as reject_row
from bot.rollbacks import verification as checks_for

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)
RUN_JOB = "rollback.run"  # defined by the Slack layer's jobs module, with its notifier


class PostFailed(Exception):
    """The request message could not be posted; `reason` says why (e.g. `channel_not_found`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RollbackNotifier(Protocol):
    """What people see of a rollback. Only `post_request` may fail (PostFailed): a lost progress line or
    message update must never stop or fail a rollback."""

    async def post_request(self, row: Rollback, *, provider: str) -> tuple[str, str]:
        """The request (with Approve/Reject) in the ops channel: its (channel, ts)."""
        ...

    async def requested(self, row: Rollback, *, user: str, channel: str | None,
                        incident_channel: str | None) -> None: ...

    async def approved(self, row: Rollback, *, user: str) -> None: ...

    async def rejected(self, row: Rollback, *, user: str, incident_channel: str | None) -> None: ...

    async def expired(self, row: Rollback, *, incident_channel: str | None) -> None: ...

    async def lost(self, row: Rollback) -> None: ...

    async def running(self, row: Rollback, *, provider: str) -> None: ...

    async def progress(self, row: Rollback, text: str) -> None:
        """A line of the run (the provider's, or verification's) in the request's thread."""
        ...

    async def output(self, row: Rollback, output: str) -> None: ...

    async def finished(self, row: Rollback, *, detail: str, health: list[str], incident_channel: str | None) -> None:
        ...

    async def broke(self, row: Rollback) -> None:
        """The run stopped on an internal error and was marked failed."""
        ...


def provider_of(deps: Deps, row: Rollback) -> str:
    try:
        return target(deps.config, row.service, row.environment).runner.provider
    except OpsbotError:
        return ""


async def incident_channel(deps: Deps, row: Rollback) -> str | None:
    if row.incident_id is None:
        return None
    async with deps.db.session() as session:
        incident = await session.get(Incident, row.incident_id)
        return incident.channel_id if incident else None


# -- request ---------------------------------------------------------------------------------

async def prepare(deps: Deps, *, user: str, found: Target, version: str | None) -> Plan:
    """Before the request modal opens: permitted, within the rate limit, nothing else active."""
    await deps.require(user=user, action="rollback", target=key(found.service, found.environment),
                       environment=found.environment)
    await deps.ratelimit.check(user, "rollback")
    async with deps.db.session() as session:
        planned = await plan(session, config=deps.config, service=found.service, environment=found.environment,
                             version=version)
    if found.versions is None:
        return planned
    try:
        listed = await versions.read(found.versions, service=found.service, environment=found.environment,
                                     http=deps.http, scrub=deps.scrubber)
    except versions.VersionsUnavailable as exc:
        log.warning("version source of %s/%s: %s", found.service, found.environment, exc)
        return with_source(planned, None, problem=str(exc))
    return with_source(planned, listed, version=version)


async def submit(deps: Deps, notifier: RollbackNotifier, *, user: str, service: str, environment: str,
                 from_version: str | None, to_version: str, reason: str, channel: str | None) -> None:
    found = target(deps.config, service, environment)
    await deps.require(user=user, action="rollback", target=key(found.service, found.environment),
                       environment=found.environment, fresh=True)
    async with deps.db.session() as session:
        row = await _unposted(session, found, user=user, to_version=to_version, reason=reason)
        if row is None:
            incident = await timeline.open_incident_in_channel(session, channel)
            row = await request(session, clock=deps.clock, config=deps.config, service=found.service,
                                environment=found.environment, from_version=from_version, to_version=to_version,
                                reason=reason, requested_by=user, incident_id=incident.id if incident else None)
    try:
        posted_channel, ts = await notifier.post_request(row, provider=found.runner.provider)
    except PostFailed as exc:
        # Without its message nobody could approve or follow it: end it rather than block the service.
        ops = deps.config.channels.ops_channel
        async with deps.db.session() as session:
            await finish(session, clock=deps.clock, rollback_id=row.id, status="failed",
                         detail=f"could not post to {ops} ({exc.reason})")
        raise ProviderError(f"Rollback #{row.id} was not started: posting to {ops} failed ({exc.reason}).") from None
    async with deps.db.session() as session:
        row = await get(session, row.id)
        row.channel, row.message_ts = posted_channel, ts
    await notifier.requested(row, user=user, channel=channel, incident_channel=await incident_channel(deps, row))
    if row.status == "running":
        await start(deps, row.id)


async def _unposted(session: Any, found: Target, *, user: str, to_version: str, reason: str) -> Rollback | None:
    """This very request, stored by an earlier run of its job that stopped before posting it."""
    row = await active(session, service=found.service, environment=found.environment)
    if (row is not None and row.message_ts is None and row.requested_by == user and row.to_version == to_version
            and row.reason == reason.strip()[:2000]):
        return row
    return None


# -- approvals -------------------------------------------------------------------------------

async def approve(deps: Deps, notifier: RollbackNotifier, *, rollback_id: int, user: str) -> None:
    await expire(deps, notifier)
    async with deps.db.session() as session:
        row = await get(session, rollback_id)
    if row.status == "running" and user in (row.approved_by or []):
        await start(deps, row.id)  # this approval started it: make sure the run is queued (once per rollback)
    if row.status == "pending_approval" and user != row.requested_by:
        await deps.require(user=user, action="rollback.approve", target=key(row.service, row.environment),
                           environment=row.environment, fresh=True)
    row = await approve_row(deps.db, clock=deps.clock, rollback_id=rollback_id, user=user)
    await notifier.approved(row, user=user)
    if row.status == "running":
        await start(deps, row.id)


async def reject(deps: Deps, notifier: RollbackNotifier, *, rollback_id: int, user: str) -> None:
    async with deps.db.session() as session:
        row = await get(session, rollback_id)
    if row.status == "pending_approval" and user != row.requested_by:  # requesters may withdraw their own
        await deps.require(user=user, action="rollback.approve", target=key(row.service, row.environment),
                           environment=row.environment)
    row = await reject_row(deps.db, clock=deps.clock, rollback_id=rollback_id, user=user)
    await notifier.rejected(row, user=user, incident_channel=await incident_channel(deps, row))


async def expire(deps: Deps, notifier: RollbackNotifier) -> None:
    """The scheduled job (and an approval's first step): expire overdue requests, fail lost runs."""
    async with deps.db.session() as session:
        expired = await expire_due(session, clock=deps.clock)
        lost = await fail_lost(session, clock=deps.clock, config=deps.config)
    for row in expired:
        await notifier.expired(row, incident_channel=await incident_channel(deps, row))
    for row in lost:
        await notifier.lost(row)


# -- running -------------------------------------------------------------------------------

async def start(deps: Deps, rollback_id: int) -> None:
    """Queue the run; once per rollback, however many approvals (or re-runs of one) ask for it."""
    await deps.queue.defer(RUN_JOB, {"rollback_id": rollback_id}, once=f"rollback:{rollback_id}")


async def _claim_run(deps: Deps, rollback_id: int, provider: str) -> Rollback | None:
    """Record the start (audited, on the timeline) unless an earlier run of this job already did: then None,
    and the provider is not run a second time."""
    async with deps.db.session() as session:
        row = await get(session, rollback_id, lock=True)
        if row.status == "running" and await _start_recorded(session, row):
            return None
        return await started(session, clock=deps.clock, rollback_id=rollback_id, provider=provider)


async def _start_recorded(session: Any, row: Rollback) -> bool:
    query = select(AuditEntry.after).where(AuditEntry.action == "rollback.start",
                                           AuditEntry.target == key(row.service, row.environment),
                                           AuditEntry.at >= row.created_at)
    return any(isinstance(after, dict) and after.get("rollback_id") == row.id
               for after in (await session.scalars(query)).all())


async def execute(deps: Deps, notifier: RollbackNotifier, rollback_id: int) -> None:
    """Run the provider, verify health, record the result. The row always ends finished."""
    finished = False
    row: Rollback | None = None
    try:
        async with deps.db.session() as session:
            loaded = await get(session, rollback_id)
        found = target(deps.config, loaded.service, loaded.environment)
        claimed = await _claim_run(deps, rollback_id, found.runner.provider)
        if claimed is None:
            log.warning("rollback #%s was started by an earlier run of its job; not running it again", rollback_id)
            finished = True
            return
        row = current = claimed
        await notifier.running(row, provider=found.runner.provider)

        async def progress(text: str) -> None:
            await notifier.progress(current, text)

        outcome = await _run_provider(deps, row, found.runner, progress)
        if outcome.output is not None:
            await notifier.output(row, outcome.output)
        verification: str | None = None
        health: list[str] = []
        if outcome.succeeded:
            verification, health = await verify(deps, row.environment, found.runner, progress, service=row.service)
        async with deps.db.session() as session:
            row = await finish(session, clock=deps.clock, rollback_id=rollback_id, status=outcome.status,
                               detail=outcome.detail, verification=verification, run_url=outcome.run_url,
                               output=outcome.output)
        finished = True
        await notifier.finished(row, detail=outcome.detail, health=health,
                                incident_channel=await incident_channel(deps, row))
    finally:
        if not finished and row is not None:
            log.error("rollback #%s ended without a result; marking it failed", rollback_id)
            async with deps.db.session() as session:
                row = await finish(session, clock=deps.clock, rollback_id=rollback_id, status="failed",
                                   detail="opsbot hit an internal error (logged).")
            await notifier.broke(row)


async def _run_provider(deps: Deps, row: Rollback, runner: Any, progress: Progress) -> RollbackOutcome:
    request_ = RollbackRequest(rollback_id=row.id, service=row.service, environment=row.environment,
                               version=row.to_version or "", previous_version=row.from_version,
                               reason=row.reason, requested_by=row.requested_by)
    try:
        return await build_runner(runner, http=deps.http, scrub=deps.scrubber).run(request_, progress)
    except OpsbotError as exc:  # ProviderError, an invalid version, an unset token variable…
        return RollbackOutcome("failed", str(exc))


async def verify(deps: Deps, environment: str, runner: Any, progress: Progress,
                 *, service: str = "") -> tuple[str | None, list[str]]:
    """Run the environment's health checks after a successful rollback: (verification, lines)."""
    if not runner.verify:
        return None, []
    env = checks_for(deps.config, service=service, environment=environment, runner=runner)
    if env is None or not env.checks:
        return "skipped", []
    await progress(f"Verifying: running {verifiable(env)} health check(s) for *{environment}*…")
    try:
        # A 429 is the target refusing to answer, not a verdict: wait (Retry-After) and ask again.
        report = await check_patiently(environment, env, http=deps.probes, scrub=deps.scrubber, waiting=progress,
                                       within=env.verify_timeout.total_seconds())
    except Exception as exc:  # the engine should not raise; a bug there must not hide the rollback's result
        log.exception("health verification failed")
        return "error", [f"• {type(exc).__name__}"]
    if report.status == "healthy":
        return "verified", [f"All {len(report.results)} health check(s) pass."]
    wanted = "fail" if report.status == "unhealthy" else "warn"
    lines = [f"• *{r.name}*: {_literal(r.explanation)}" for r in report.results if r.status == wanted]
    return ("unhealthy" if report.status == "unhealthy" else "degraded"), lines


def _literal(text: str) -> str:
    """A target's own words shown as text in mrkdwn (a body saying `<!channel>` must not ping anyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

