"""The flows of incident roles and follow-ups: what the `followups.*` jobs (commands/followups/jobs.py) run.

Each flow opens its own transactions (the verbs of bot.followups and bot.incidents.roles run inside them) and
tells the outside what happened through a FollowupNotifier, which commands/followups implements in Slack
terms; nothing here knows Slack. The commander is not a role given here: that is the incident's own `assign`
(bot.incidents.flows), which its job runs under the incident's lock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot import followups, incidents
from bot.clock import Clock
from bot.config import Config
from bot.db import Database
from bot.errors import DependencyDown
from bot.followups.dates import due_day
from bot.followups.trackers import IssueTracker
from bot.incidents import roles
from bot.incidents.flows import Require
from bot.models import FollowUp, Incident

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the flows use besides the notifier."""

    db: Database
    config: Config
    clock: Clock
    require: Require
    tracker: IssueTracker | None  # where follow-ups are filed (None: kept in opsbot only)
    scrub: Callable[[str], str]  # secrets out of a tracker's error before it is stored or shown


class FollowupNotifier(Protocol):
    """The outside effects of the flows, in incident terms; none of them raises (a failed post is logged and
    counted), except `remind`, which says whether the reminder reached its recipient."""

    async def role_given(self, incident: Incident, *, role: str, holder: str, before: str | None,
                         actor: str) -> None:
        """`holder` now holds `role` (invited to the incident's channel, told there, the summary refreshed)."""
        ...

    async def added(self, incident: Incident, row: FollowUp) -> None: ...

    async def done(self, incident: Incident, row: FollowUp, *, actor: str, closed_in: str | None) -> None:
        """`row` is done: by `actor`, or closed in the tracker named `closed_in`."""
        ...

    async def reassigned(self, incident: Incident, row: FollowUp) -> None: ...

    async def filed(self, incident: Incident, row: FollowUp) -> None: ...

    async def not_filed(self, incident: Incident, row: FollowUp, *, tracker: str, reason: str) -> None:
        """Filing `row` in `tracker` failed for the last time."""
        ...

    async def remind(self, to: str, incident: Incident, row: FollowUp) -> bool: ...


async def holders(db: Database, *, incident: Incident) -> dict[str, str]:
    """role → user holding it."""
    async with db.session() as session:
        return await roles.holders(session, incident=incident)


async def of_incident(db: Database, *, incident_id: int) -> list[FollowUp]:
    async with db.session() as session:
        return await followups.of_incident(session, incident_id=incident_id)


async def postmortem(db: Database, *, incident_id: int) -> tuple[Incident, dict[str, str], list[FollowUp]] | None:
    """The incident, its role holders and its follow-ups, read together (None: no such incident)."""
    async with db.session() as session:
        incident = await session.get(Incident, incident_id)
        if incident is None:
            return None
        return (incident, await roles.holders(session, incident=incident),
                await followups.of_incident(session, incident_id=incident_id))


async def give_role(s: Services, notifier: FollowupNotifier, incident: Incident, *, role: str, holder: str,
                    actor: str) -> None:
    """Give `role` (not the commander) to `holder`; AlreadyDone when they hold it."""
    async with s.db.session() as session:
        before = await roles.assign(session, clock=s.clock, config=s.config, incident=incident, role=role,
                                    user=holder, actor=actor)
    await notifier.role_given(incident, role=role, holder=holder, before=before, actor=actor)


async def add(s: Services, notifier: FollowupNotifier, incident: Incident, *, text: str, owner: str | None,
              due: datetime | None, actor: str) -> FollowUp:
    """A new follow-up, marked for filing when a tracker is configured (the caller queues the filing)."""
    async with s.db.session() as session:
        row = await followups.create(session, clock=s.clock, incident_id=incident.id, text=text, owner=owner,
                                     due=due, actor=actor, tracker=s.tracker.name if s.tracker else None)
    await notifier.added(incident, row)
    return row


async def complete(s: Services, notifier: FollowupNotifier, incident: Incident, *, followup_id: int,
                   actor: str) -> FollowUp | None:
    """Mark a follow-up of `incident` done; None when it was done already (two people, one completion)."""
    async with s.db.session() as session:
        row = await followups.complete(session, clock=s.clock, followup_id=followup_id, actor=actor,
                                       incident_id=incident.id)
    if row is not None:
        await notifier.done(incident, row, actor=actor, closed_in=None)
    return row


async def reassign(s: Services, notifier: FollowupNotifier, incident: Incident, *, followup_id: int, owner: str,
                   actor: str) -> FollowUp:
    async with s.db.session() as session:
        row, _before = await followups.reassign(session, clock=s.clock, followup_id=followup_id, owner=owner,
                                                actor=actor, incident_id=incident.id)
    await notifier.reassigned(incident, row)
    return row


def issue_body(row: FollowUp, incident: Incident) -> str:
    lines = [f"Follow-up of {incident.ref}: {incident.title} (severity {incident.severity}).", "", row.text]
    if row.due:
        lines.append(f"Due: {due_day(row.due).isoformat()}")
    return "\n".join(lines)


async def file(s: Services, notifier: FollowupNotifier, *, followup_id: int,
               gives_up: Callable[[Exception, int], bool]) -> None:
    """The follow-up as a tracker issue, once (one with an issue is not filed again). A failure is counted and
    raised again; `gives_up(error, attempts so far)` says whether it was the last attempt, and then the
    incident is told."""
    async with s.db.session() as session:
        row = await followups.get(session, followup_id=followup_id)
        incident = await session.get(Incident, row.incident_id)
    if s.tracker is None or row.tracker_key or incident is None:
        return
    try:
        issue = await s.tracker.create(title=row.text[:200], body=issue_body(row, incident))
    except Exception as exc:
        reason = s.scrub(str(exc)) or type(exc).__name__
        async with s.db.session() as session:
            attempts = await followups.record_failure(session, followup_id=followup_id, error=reason)
        if gives_up(exc, attempts):
            await notifier.not_filed(incident, row, tracker=getattr(s.tracker, "label", s.tracker.name),
                                     reason=reason)
        raise
    async with s.db.session() as session:
        row = await followups.record_issue(session, followup_id=followup_id, key=issue.key, url=issue.url,
                                           state=issue.state)
    await notifier.filed(incident, row)


async def poll(s: Services, notifier: FollowupNotifier) -> None:
    """Follow-ups closed in the tracker are done here too."""
    if s.tracker is None:
        return
    async with s.db.session() as session:
        rows = await followups.filed_and_open(session)
    for row in rows:
        if row.tracker != s.tracker.name or not row.tracker_key:
            continue
        try:
            issue = await s.tracker.get(row.tracker_key)
        except Exception as exc:  # one issue that cannot be read does not stop the others
            log.warning("reading follow-up #%d's issue failed: %s", row.id, type(exc).__name__)
            continue
        async with s.db.session() as session:
            stored = await followups.get(session, followup_id=row.id)
            stored.tracker_state = issue.state[:32]
            done = await followups.complete(session, clock=s.clock, followup_id=row.id, actor="tracker",
                                            why=f" (closed in {s.tracker.name})") if issue.closed else None
            incident = await session.get(Incident, row.incident_id)
        if done is not None and incident is not None:
            await notifier.done(incident, done, actor="tracker", closed_in=s.tracker.name)


async def remind(s: Services, notifier: FollowupNotifier) -> None:
    """Owners of open follow-ups past due are reminded, at most once a week per follow-up (claimed first: two
    leaders, one reminder; released again when it did not reach its recipient)."""
    now = s.clock()
    async with s.db.session() as session:
        rows = await followups.overdue(session, now=now)
    for row in rows:
        async with s.db.session() as session:
            claimed = await followups.claim_reminder(session, followup_id=row.id, now=now, seen=row.last_reminded_at)
            incident = await session.get(Incident, row.incident_id)
        if not claimed or incident is None or not row.due:
            continue
        # Without an owner: the holder of the role owning follow-up reminders (scribe), else the commander.
        to = row.owner_id or await roles.remind_whom(s.db, config=s.config, incident=incident,
                                                     reminder="followups")
        if not await notifier.remind(to, incident, row):
            async with s.db.session() as session:
                await followups.release_reminder(session, followup_id=row.id, seen=row.last_reminded_at)


async def declared(db: Database, *, dedup_key: str, wait: float) -> Incident:
    """The incident a declaration made, once it has its channel; DependencyDown (retried) after `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        async with db.session() as session:
            incident = await incidents.by_dedup_key(session, dedup_key=dedup_key)
        if incident is not None and incident.channel_id:
            return incident
        if time.monotonic() > deadline:
            raise DependencyDown("the incident is not set up yet")
        await asyncio.sleep(0.05)
