"""Rollbacks: request, approve, reject, expire, run, finish. Plain values in, `Rollback` rows out.

States: pending_approval -> running -> succeeded | failed, or pending_approval -> rejected | expired.
`active_key` ("service/environment") is set while pending or running and is unique, so the database
itself refuses a second concurrent rollback of the same service and environment. Every transition is
audited and, for rollbacks requested from an incident channel, added to the incident's timeline."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit, deploys, timeline
from bot.clock import Clock
from bot.config import Config, Environment
from bot.config.rollbacks import VERSION_RE, Runner, VersionSource
from bot.db import Database
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import Rollback

ACTIVE = ("pending_approval", "running")
FINISHED = ("rejected", "expired", "succeeded", "failed")
# A run with no result this long after its provider timeout was lost (opsbot restarted mid-run).
LOST_AFTER = timedelta(minutes=10)
CAS_ATTEMPTS = 8


@dataclass(frozen=True)
class Target:
    service: str
    environment: str
    runner: Runner
    approvals: int
    production: bool
    versions: VersionSource | None = None

    @property
    def destructive(self) -> bool:
        return self.runner.destructive


@dataclass(frozen=True)
class Plan:
    """What the request modal shows."""

    target: Target
    current: str | None
    default_version: str | None
    # Versions offered in the modal's select, newest first: the version source's (`versions:`), or the deploy
    # history's when that source failed. Without a source the modal has a text field, as it always had.
    choices: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    # Why the version source's list is not shown (it failed), when it is not.
    note: str | None = None


def services(config: Config) -> list[str]:
    return list(config.rollbacks)


def target(config: Config, service: str, environment: str | None = None) -> Target:
    """Resolve names case-insensitively; NotFound lists the valid ones. No environment: the default
    environment when the service has it, else the service's only environment."""
    found = next((name for name in config.rollbacks if name.lower() == service.lower()), None)
    if found is None:
        raise NotFound("service", service, config.rollbacks)
    envs = config.rollbacks[found].environments
    if not environment:
        if config.default_environment in envs:
            environment = config.default_environment
        elif len(envs) == 1:
            environment = next(iter(envs))
        else:
            raise InvalidInput(f"Say which environment to roll back `{found}` in: {', '.join(f'`{e}`' for e in envs)}.")
    env = next((name for name in envs if name.lower() == environment.lower()), None)
    if env is None:
        raise NotFound("environment", environment, envs)
    runner = envs[env]
    production = config.is_production(env)
    approvals = runner.approvals if runner.approvals is not None else (2 if production else 0)
    return Target(found, env, runner, approvals, production, config.rollbacks[found].versions)


def check_version(version: str) -> str:
    version = version.strip()
    if not VERSION_RE.match(version):
        raise InvalidInput(f"`{version[:64]}` is not a valid version (letters, digits and . _ : / @ + -, "
                           "at most 128 characters).")
    return version


def key(service: str, environment: str) -> str:
    return f"{service}/{environment}"


async def active(session: AsyncSession, *, service: str, environment: str) -> Rollback | None:
    query = select(Rollback).where(Rollback.active_key == key(service, environment))
    return (await session.scalars(query)).first()


def busy(row: Rollback) -> Conflict:
    state = "waiting for approval" if row.status == "pending_approval" else "running"
    return Conflict(f"A rollback of `{row.service}` in *{row.environment}* is already {state} "
                    f"(#{row.id}, requested by <@{row.requested_by}>). Wait for it to finish"
                    + (" or reject it." if row.status == "pending_approval" else "."))


async def plan(session: AsyncSession, *, config: Config, service: str, environment: str | None,
               version: str | None = None) -> Plan:
    """Validate a request before the modal opens: refuses while another rollback is active."""
    found = target(config, service, environment)
    running = await active(session, service=found.service, environment=found.environment)
    if running is not None:
        raise busy(running)
    history = await deploys.versions(session, service=found.service, environment=found.environment)
    return Plan(found, history.current, check_version(version) if version else history.previous,
                history=history.earlier)


def with_source(plan: Plan, listed: list[str] | None, *, problem: str | None = None,
                version: str | None = None) -> Plan:
    """The plan with the version source's answer: its versions as the choices (the running one left out) and
    the default among them; without an answer, the deploy history's choices and a note saying why."""
    if listed is None:
        return replace(plan, choices=plan.history,
                       note=f"Versions from the configured source are unavailable ({problem}); "
                            "showing the deploy history.")
    choices = tuple(v for v in listed if v != plan.current)
    default = plan.default_version
    if version is None and (default is None or default not in choices):
        default = choices[0] if choices else default
    return replace(plan, choices=choices, default_version=default)


async def get(session: AsyncSession, rollback_id: int | str, *, lock: bool = False) -> Rollback:
    try:
        ident = int(rollback_id)
    except (TypeError, ValueError):
        raise NotFound("rollback", str(rollback_id), []) from None
    query = select(Rollback).where(Rollback.id == ident)
    if lock:
        query = query.with_for_update()
    row = (await session.scalars(query)).first()
    if row is None:
        raise NotFound("rollback", f"#{ident}", [])
    return row


async def _log(session: AsyncSession, *, clock: Clock, row: Rollback, actor: str, action: str, text: str,
               outcome: str = "ok", after: dict[str, Any] | None = None) -> None:
    """Audit one step and put it on the incident's timeline when there is one."""
    data = {"rollback_id": row.id, "service": row.service, "environment": row.environment,
            "to_version": row.to_version, "status": row.status, **(after or {})}
    await audit.record(session, clock=clock, actor=actor, action=f"rollback.{action}",
                       target=key(row.service, row.environment), outcome=outcome, after=data, detail=text)
    if row.incident_id is not None:
        await timeline.add_event(session, clock=clock, incident_id=row.incident_id, actor=actor, kind="rollback",
                                 text=text, data={"rollback_id": row.id, "step": action})


async def request(session: AsyncSession, *, clock: Clock, config: Config, service: str, environment: str,
                  to_version: str, reason: str, requested_by: str, from_version: str | None = None,
                  incident_id: int | None = None) -> Rollback:
    """Create the rollback: pending approval, or running at once when no approval is needed."""
    found = target(config, service, environment)
    to_version = check_version(to_version)
    reason = reason.strip()
    if not reason:
        raise InvalidInput("A reason is required.")
    if from_version is not None and from_version == to_version:
        raise InvalidInput(f"`{found.service}` in *{found.environment}* already runs `{to_version}`.")
    existing = await active(session, service=found.service, environment=found.environment)
    if existing is not None:
        raise busy(existing)
    now = clock()
    needs = found.approvals
    row = Rollback(
        service=found.service, environment=found.environment, from_version=from_version, to_version=to_version,
        reason=reason[:2000], requested_by=requested_by, status="pending_approval" if needs else "running",
        approvals_required=needs, approved_by=[], active_key=key(found.service, found.environment),
        incident_id=incident_id, created_at=now,
        expires_at=now + config.rollback.approval_timeout if needs else None,
        started_at=None if needs else now,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        # Another request won the race between our check and our insert.
        raise Conflict(f"A rollback of `{found.service}` in *{found.environment}* is already in progress.") from None
    await _log(session, clock=clock, row=row, actor=requested_by, action="request",
               text=f"Rollback of {found.service} in {found.environment} to {to_version} requested: {reason[:300]}",
               after={"from_version": from_version, "approvals_required": needs})
    return row


def _mentions(users: list[Any]) -> str:
    names = [f"<@{u}>" for u in users]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + f" and {names[-1]}"


def decided(row: Rollback, now: datetime) -> Conflict:
    """Why a rollback no longer takes approvals or rejections, naming who decided it."""
    when = row.finished_at if row.status == "rejected" else row.started_at
    since = "" if when is None else (" just now" if now - when < timedelta(minutes=1)
                                     else f" {int((now - when).total_seconds() // 60)}m ago")
    if row.status == "rejected":
        return Conflict(f"Already rejected by <@{row.rejected_by}>{since}: rollback #{row.id} will not run.")
    if row.status == "expired":
        return Conflict(f"Rollback #{row.id} already expired; request it again if it is still needed.")
    if row.approved_by:
        return Conflict(f"Already approved by {_mentions(list(row.approved_by))}{since} "
                        f"({len(row.approved_by)}/{row.approvals_required}): rollback #{row.id} is "
                        f"{_state(row.status)}.")
    return Conflict(f"Rollback #{row.id} is already {_state(row.status)}.")


async def _decide(db: Database, *, rollback_id: int | str, change: Any, record: Any) -> Rollback:
    """Compare-and-set: read the row, let `change(row)` check it and return the new values (raising to
    refuse), write them only if nobody changed the row meanwhile (`version`), else decide again on what
    it is now, so a later press is told who was first. The write is its transaction's first statement:
    SQLite never upgrades a read to a write, PostgreSQL re-checks the condition on the committed row.
    `record(session, row)` audits the change in the same transaction."""
    for _ in range(CAS_ATTEMPTS):
        async with db.session() as session:
            row = await get(session, rollback_id)
        values = change(row)
        async with db.session() as session:
            won = await session.execute(
                update(Rollback).where(Rollback.id == row.id, Rollback.version == row.version)
                .values(**values, version=row.version + 1).execution_options(synchronize_session=False))
            if won.rowcount != 1:  # type: ignore[attr-defined]
                continue
            row = await get(session, row.id)
            await record(session, row)
            return row
    raise Conflict(f"Rollback #{rollback_id} is being decided by several people at once; try again.")


async def approve(db: Database, *, clock: Clock, rollback_id: int | str, user: str) -> Rollback:
    """Add `user`'s approval (permission is checked by the caller). The row is `running` once enough
    approvals are in; two approvers at once are two approvals, and only the one that completes them
    sees `running` (so the rollback starts once). Refusals raise and change nothing."""

    def change(row: Rollback) -> dict[str, Any]:
        now = clock()
        if row.status != "pending_approval":
            raise decided(row, now)
        if row.expires_at is not None and now >= row.expires_at:
            raise Conflict(f"Rollback #{row.id} expired; request it again if it is still needed.")
        if user == row.requested_by:
            raise InvalidInput("You requested this rollback, so you cannot approve it; another approver has to.")
        approved = list(row.approved_by or [])
        if user in approved:
            raise InvalidInput(f"You already approved rollback #{row.id}.")
        approved.append(user)
        if len(approved) >= row.approvals_required:
            return {"approved_by": approved, "status": "running", "started_at": now}
        return {"approved_by": approved}

    async def record(session: AsyncSession, row: Rollback) -> None:
        await _log(session, clock=clock, row=row, actor=user, action="approve",
                   text=f"Rollback of {row.service} in {row.environment} approved "
                        f"({len(row.approved_by)}/{row.approvals_required})",
                   after={"approved_by": list(row.approved_by)})

    return await _decide(db, rollback_id=rollback_id, change=change, record=record)


async def reject(db: Database, *, clock: Clock, rollback_id: int | str, user: str) -> Rollback:
    def change(row: Rollback) -> dict[str, Any]:
        if row.status != "pending_approval":
            raise decided(row, clock())
        return {"status": "rejected", "rejected_by": user, "active_key": None, "finished_at": clock()}

    async def record(session: AsyncSession, row: Rollback) -> None:
        await _log(session, clock=clock, row=row, actor=user, action="reject",
                   text=f"Rollback of {row.service} in {row.environment} rejected")

    return await _decide(db, rollback_id=rollback_id, change=change, record=record)


async def started(session: AsyncSession, *, clock: Clock, rollback_id: int, provider: str) -> Rollback:
    """Audit (and put on the timeline) that the provider is being run."""
    row = await get(session, rollback_id)
    if row.status != "running":
        raise Conflict(f"Rollback #{row.id} is {_state(row.status)}, not approved to run.")
    await _log(session, clock=clock, row=row, actor="opsbot", action="start",
               text=f"Rolling back {row.service} in {row.environment} to {row.to_version} via {provider}",
               after={"provider": provider, "approved_by": list(row.approved_by or [])})
    return row


async def expire_due(session: AsyncSession, *, clock: Clock) -> list[Rollback]:
    """Pending requests past their approval deadline become `expired`."""
    now = clock()
    query = select(Rollback).where(Rollback.status == "pending_approval", Rollback.expires_at <= now)
    rows = list((await session.scalars(query.with_for_update())).all())
    for row in rows:
        row.status, row.active_key, row.finished_at = "expired", None, now
        row.version += 1
        await session.flush()
        await _log(session, clock=clock, row=row, actor="opsbot", action="expire",
                   text=f"Rollback request for {row.service} in {row.environment} expired without enough approvals",
                   after={"approved_by": list(row.approved_by or [])})
    return rows


async def fail_lost(session: AsyncSession, *, clock: Clock, config: Config) -> list[Rollback]:
    """Running rollbacks long past their provider's timeout (opsbot restarted mid-run) are failed,
    so they stop blocking new rollbacks of their service."""
    now = clock()
    rows = list((await session.scalars(select(Rollback).where(Rollback.status == "running"))).all())
    lost = []
    for row in rows:
        try:
            timeout = target(config, row.service, row.environment).runner.timeout
        except (NotFound, InvalidInput):
            timeout = timedelta(minutes=30)
        if row.started_at is not None and now - row.started_at > timeout + LOST_AFTER:
            await finish(session, clock=clock, rollback_id=row.id, status="failed",
                         detail="No result: opsbot lost track of this run (restart?). Check the provider.")
            lost.append(row)
    return lost


async def finish(session: AsyncSession, *, clock: Clock, rollback_id: int, status: str, detail: str,
                 verification: str | None = None, run_url: str | None = None, output: str | None = None) -> Rollback:
    """Record the provider's result; a success also records a deploy (source "rollback")."""
    row = await get(session, rollback_id, lock=True)
    row.status, row.verification, row.active_key, row.finished_at = status, verification, None, clock()
    row.version += 1
    row.run_url = run_url or row.run_url
    row.output = output[-20000:] if output else row.output
    await session.flush()
    if status == "succeeded" and row.to_version:
        await deploys.record(session, clock=clock, service=row.service, environment=row.environment,
                             version=row.to_version, deployed_by=row.requested_by, source="rollback")
    await _log(session, clock=clock, row=row, actor="opsbot", action="finish",
               outcome="ok" if status == "succeeded" else "failed",
               text=f"Rollback of {row.service} in {row.environment} to {row.to_version}: {status}"
                    + (f", {verification}" if verification else "") + f". {detail[:300]}",
               after={"verification": verification, "run_url": row.run_url})
    return row


def _state(status: str) -> str:
    return {"pending_approval": "waiting for approval", "running": "approved and running"}.get(status, status)


def verification(config: Config, *, service: str, environment: str, runner: Runner) -> Environment | None:
    """The environment as a rollback of `service` verifies it: only the checks `verify:` names, or the checks
    tagged with the service (`services:`), or — when none is tagged — all of them. None: no such environment."""
    env = config.environments.get(environment)
    if env is None:
        return None
    if isinstance(runner.verify, list):
        names = set(runner.verify)
        checks = [check for check in env.checks if check.label() in names]
    else:
        checks = [check for check in env.checks if service in check.services] or list(env.checks)
    return env.model_copy(update={"checks": checks})
