"""Incident roles (`incidents.roles:`): who holds communications, scribe… in an incident, and whom a reminder
goes to. The commander is `incidents.commander_id` (changed by bot.incidents.assign); other roles are
`incident_roles` rows. Handovers go on the timeline (and the audit log)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.db import Database
from bot.errors import NotFound
from bot.incidents import AlreadyDone
from bot.models import Incident, IncidentRole
from bot.timeline import add_event

COMMANDER = "commander"


def role_name(config: Config, name: str) -> str:
    """The configured spelling of a role; NotFound listing the roles."""
    role = config.incidents.role(name)
    if role is None:
        raise NotFound("role", name, [r.name for r in config.incidents.roles])
    return role.name


async def holders(session: AsyncSession, *, incident: Incident) -> dict[str, str]:
    """role → user, the commander first."""
    rows = await session.scalars(select(IncidentRole).where(IncidentRole.incident_id == incident.id))
    return {COMMANDER: incident.commander_id, **{row.role: row.user_id for row in rows}}


async def assign(session: AsyncSession, *, clock: Clock, config: Config, incident: Incident, role: str, user: str,
                 actor: str) -> str | None:
    """Give `role` (not the commander: bot.incidents.assign) to `user`; the previous holder, if any."""
    name = role_name(config, role)
    row = await session.scalar(select(IncidentRole).where(IncidentRole.incident_id == incident.id,
                                                          IncidentRole.role == name))
    before = row.user_id if row else None
    if before == user:
        raise AlreadyDone(incident.ref, f"given {name} to <@{user}>", actor=row.assigned_by if row else actor,
                          at=row.assigned_at if row else clock(), now=clock())
    if row is None:
        session.add(IncidentRole(incident_id=incident.id, role=name, user_id=user, assigned_by=actor,
                                 assigned_at=clock()))
    else:
        row.user_id, row.assigned_by, row.assigned_at = user, actor, clock()
    text = f"<@{user}> is now {name}" + (f" (handed over by <@{before}>)" if before else "")
    await add_event(session, clock=clock, incident_id=incident.id, actor=actor, kind="role", text=text,
                    data={"role": name, "user": user, "before": before})
    return before


def reminder_owner(config: Config, held: dict[str, str], reminder: str) -> str | None:
    """Who gets `reminder`: the first configured role owning it that someone holds, else the commander."""
    for role in config.incidents.roles:
        if reminder in role.reminders and held.get(role.name):
            return held[role.name]
    return held.get(COMMANDER)


def lines(config: Config, held: dict[str, str]) -> list[str]:
    """`*Role*: <@U…>` for every configured role, `unassigned` for the empty ones."""
    return [f"*{r.name.capitalize()}*: " + (f"<@{held[r.name]}>" if held.get(r.name) else "_unassigned_")
            for r in config.incidents.roles]


async def remind_whom(db: Database, *, config: Config, incident: Incident, reminder: str) -> str:
    """The holder of the role owning `reminder` (status updates → communications), else the commander."""
    async with db.session() as session:
        held = await holders(session, incident=incident)
    return reminder_owner(config, held, reminder) or incident.commander_id
