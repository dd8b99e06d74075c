"""What a user's App Home shows (commands/home renders it), and who has opened Home lately.

The Home tab is per user and published by opsbot (views.publish); Slack does not tell when it is closed. So
opsbot keeps who opened it (app_home_opened) as `processed_requests` rows `home:<user>` (no table of its
own; housekeeping prunes them after 24 h, which is what "lately" means), and what it last published to each
of them as `home.published:<user>` (at = when, owner = the view's digest). The refresh job republishes a
viewer's Home when its digest changed and the last publish is at least DEBOUNCE old."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot import oncall
from bot.alerts import CRITICAL, FIRING
from bot.clock import Clock
from bot.config import Config
from bot.db import Database
from bot.models import AlertState, AuditEntry, BuiltinFlag, Incident, IncidentRole, ProcessedRequest, Rollback
from bot.timeline import OPEN

log = logging.getLogger(__name__)
DEBOUNCE = timedelta(seconds=10)
RECENT = timedelta(hours=12)  # within the 24 h the rows are kept
KILL_SWITCH_MEMORY = timedelta(days=30)  # audit entries looked at for stores opsbot does not keep
OPENED, PUBLISHED = "home:", "home.published:"


@dataclass(frozen=True)
class OpenIncident:
    id: int
    ref: str
    title: str
    severity: str
    status: str
    created_at: datetime
    commander_id: str
    channel_id: str | None
    acknowledged: bool
    your_roles: tuple[str, ...]


@dataclass(frozen=True)
class FiringAlert:
    id: int
    rule: str
    level: str | None
    since: datetime | None
    summary: str | None
    channel: str | None
    acked_by: str | None


@dataclass(frozen=True)
class KillSwitch:
    target: str  # flag/environment
    by: str
    at: datetime


@dataclass(frozen=True)
class PendingRollback:
    id: int
    service: str
    environment: str
    to_version: str | None
    requested_by: str
    reason: str
    channel: str | None
    approvals: str  # "1/2"


@dataclass(frozen=True)
class OnCall:
    schedule: str
    people: tuple[str, ...]  # as the schedule names them: U…, @handle or e-mail
    error: str | None = None


@dataclass(frozen=True)
class Home:
    user: str
    incidents: list[OpenIncident] = field(default_factory=list)
    alerts: list[FiringAlert] = field(default_factory=list)
    kill_switches: list[KillSwitch] = field(default_factory=list)
    rollbacks: list[PendingRollback] = field(default_factory=list)
    oncall: list[OnCall] = field(default_factory=list)


# -- what Home shows --------------------------------------------------------------------------------
async def _incidents(session: AsyncSession, config: Config, user: str) -> list[OpenIncident]:
    rows = list((await session.scalars(select(Incident).where(Incident.status.in_(OPEN)))).all())
    rows.sort(key=lambda i: (config.severity_rank(i.severity), i.created_at, i.id))
    roles: dict[int, list[str]] = {}
    if rows:
        held = await session.execute(select(IncidentRole.incident_id, IncidentRole.role)
                                     .where(IncidentRole.user_id == user,
                                            IncidentRole.incident_id.in_([r.id for r in rows]))
                                     .order_by(IncidentRole.role))
        for incident_id, role in held:
            roles.setdefault(incident_id, []).append(role)
    return [OpenIncident(r.id, r.ref, r.title, r.severity, r.status, r.created_at, r.commander_id, r.channel_id,
                         r.acknowledged_at is not None,
                         tuple((["commander"] if r.commander_id == user else []) + roles.get(r.id, [])))
            for r in rows]


async def _alerts(session: AsyncSession) -> list[FiringAlert]:
    rows = list((await session.scalars(select(AlertState).where(AlertState.state == FIRING))).all())
    rows.sort(key=lambda r: (r.level != CRITICAL, r.rule, r.key))
    return [FiringAlert(r.id, r.rule, r.level, r.firing_since, r.summary, r.channel, r.acked_by) for r in rows]


async def _kill_switches(session: AsyncSession, now: datetime) -> list[KillSwitch]:
    """Engaged now: opsbot's own flag rows, and for other stores the latest successful kill switch or flag
    change of each flag that left its kill switch on."""
    found: dict[str, KillSwitch] = {}
    for row in (await session.scalars(select(BuiltinFlag).where(BuiltinFlag.kill_switch.is_(True)))).all():
        found[f"{row.name}/{row.environment}"] = KillSwitch(f"{row.name}/{row.environment}", row.updated_by,
                                                            row.updated_at)
    latest: dict[str, AuditEntry] = {}
    query = (select(AuditEntry).where(AuditEntry.action.in_(("killswitch", "flag")), AuditEntry.outcome == "ok",
                                      AuditEntry.at >= now - KILL_SWITCH_MEMORY)
             .order_by(AuditEntry.at, AuditEntry.id))
    for entry in (await session.scalars(query)).all():
        if isinstance(entry.after, dict) and "kill_switch" in entry.after:
            latest[entry.target] = entry
    for target, entry in latest.items():
        if target not in found and (entry.after or {}).get("kill_switch") is True:
            found[target] = KillSwitch(target, entry.actor, entry.at)
    return sorted(found.values(), key=lambda k: k.target)


async def _rollbacks(session: AsyncSession, user: str) -> list[PendingRollback]:
    """Waiting for approvals that `user` could give: not their own request, not approved by them already."""
    rows = (await session.scalars(select(Rollback).where(Rollback.status == "pending_approval")
                                  .order_by(Rollback.created_at, Rollback.id))).all()
    return [PendingRollback(r.id, r.service, r.environment, r.to_version, r.requested_by, r.reason, r.channel,
                            f"{len(r.approved_by or [])}/{r.approvals_required}")
            for r in rows if r.requested_by != user and user not in (r.approved_by or [])]


async def _oncall(db: Database, config: Config, clock: Clock) -> list[OnCall]:
    out = []
    for name in config.oncall:
        try:
            found = await oncall.status(db, config, clock, name)
        except Exception as exc:  # one broken schedule (a feed never fetched) leaves the others shown
            log.warning("home: schedule %s unavailable: %s", name, type(exc).__name__)
            out.append(OnCall(name, (), "unavailable"))
            continue
        people: list[str] = []
        for shift in found.now:
            if shift.user not in people:
                people.append(shift.user)
        out.append(OnCall(name, tuple(people)))
    return out


async def gather(db: Database, *, config: Config, clock: Clock, user: str) -> Home:
    async with db.session() as session:
        incidents = await _incidents(session, config, user)
        alerts = await _alerts(session)
        switches = await _kill_switches(session, clock())
        rollbacks = await _rollbacks(session, user)
    return Home(user, incidents, alerts, switches, rollbacks, await _oncall(db, config, clock))


# -- who has Home open ------------------------------------------------------------------------------
async def _put(session: AsyncSession, key: str, at: datetime, owner: str | None) -> None:
    """Insert or overwrite the row in one statement (both backends have ON CONFLICT … DO UPDATE)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(ProcessedRequest).values(key=key, at=at, owner=owner)
    await session.execute(statement.on_conflict_do_update(index_elements=[ProcessedRequest.key],
                                                          set_={"at": at, "owner": owner}))


async def opened(db: Database, *, clock: Clock, user: str) -> None:
    async with db.session() as session:
        await _put(session, OPENED + user, clock(), None)


async def viewers(db: Database, *, clock: Clock) -> list[str]:
    """Users who opened Home within RECENT, oldest visit first."""
    async with db.session() as session:
        rows = await session.scalars(select(ProcessedRequest).where(ProcessedRequest.key.startswith(OPENED),
                                                                    ProcessedRequest.at >= clock() - RECENT)
                                     .order_by(ProcessedRequest.at))
        return [row.key.removeprefix(OPENED) for row in rows.all()]


async def last_published(db: Database, *, user: str) -> tuple[datetime, str | None] | None:
    async with db.session() as session:
        row = await session.get(ProcessedRequest, PUBLISHED + user)
        return (row.at, row.owner) if row is not None else None


async def published(db: Database, *, clock: Clock, user: str, digest: str) -> None:
    async with db.session() as session:
        await _put(session, PUBLISHED + user, clock(), digest)


def due(last: tuple[datetime, str | None] | None, *, digest: str, now: datetime) -> bool:
    """Republish: something changed since the last publish, and that was at least DEBOUNCE ago."""
    if last is None:
        return True
    at, seen = last
    return seen != digest and now - at >= DEBOUNCE
