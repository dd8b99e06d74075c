"""Named jobs of roles and follow-ups: the `/incident role|followup…` verbs, filing a follow-up in the tracker
(retried; the incident channel told after the last attempt), the tracker poll and the weekly overdue DMs."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date
from functools import partial
from typing import Any

from bot import followups, incidents
from bot.deps import Deps
from bot.errors import DependencyDown
from bot.followups.dates import due_day, end_of
from bot.followups.trackers import IssueTracker, tracker_for
from bot.incidents import AlreadyDone, flows, roles
from bot.jobs import REGISTRY, job, will_retry
from bot.models import FollowUp, Incident
from commands.common import defer, responder, tell
from commands.followups import render
from commands.incident.notify import SlackIncidents, quietly

log = logging.getLogger(__name__)
COMMAND, FILE, POLL, REMIND, ROLES_SAVED = ("followups.command", "followups.file", "followups.poll",
                                            "followups.remind", "followups.roles")
DECLARED_ROLES = "followups.declared_roles"
SET_UP_WAIT = 5.0  # seconds a declared_roles run waits for its incident's channel before it is retried
FILE_RETRIES = 3


def tracker(deps: Deps) -> IssueTracker | None:
    return tracker_for(deps.config.incidents.tracker, deps.http)


async def _answer(deps: Deps, *, user: str, channel: str | None, response_url: str | None, text: str,
                  blocks: list[dict[str, Any]] | None = None) -> None:
    await tell(deps, text=text, blocks=blocks, respond=responder(deps, response_url), user=user, channel=channel)


async def _post(deps: Deps, incident: Incident, text: str) -> None:
    where = incident.channel_id or incident.announcement_channel or deps.config.channels.incidents
    await quietly("followups.post", deps.slack.chat_postMessage(channel=where, text=text))


async def set_role(deps: Deps, incident: Incident, *, role: str, holder: str, actor: str) -> bool:
    """Give `role` to `holder` (the commander through the incident's own assign job); False when unchanged."""
    await deps.require(user=actor, action="incident.assign", target=incident.ref)
    if role == roles.COMMANDER:
        if incident.commander_id == holder:
            return False
        await defer(deps, "incident.assign", user=actor, channel=incident.channel_id, response_url=None,
                    incident_id=incident.id, commander=holder)
        return True
    async with deps.db.session() as session:
        before = await roles.assign(session, clock=deps.clock, config=deps.config, incident=incident, role=role,
                                    user=holder, actor=actor)
    if incident.channel_id:
        await quietly("role.invite", deps.slack.conversations_invite(channel=incident.channel_id, users=holder))
    handed = f" (handed over by <@{before}>)" if before else ""
    await _post(deps, incident, f"🎭 <@{holder}> is now *{role}* of {incident.ref}{handed}, set by <@{actor}>.")
    fresh, events = await flows.read(deps.db, incident_id=incident.id)
    await SlackIncidents(deps).show_summary(fresh, last_update=flows.last_update(events))
    return True


@job(COMMAND, retries=2)
async def command(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                  cmd: dict[str, Any]) -> None:
    """One `/incident role|roles|followup|followups` command, on the incident it names or whose channel it is."""
    incident = await flows.locate(deps.db, ref=cmd.get("ref"), channel_id=channel)
    verb, now = cmd["verb"], deps.clock()
    reply = partial(_answer, deps, user=user, channel=channel, response_url=response_url)
    if verb == "roles":
        async with deps.db.session() as session:
            held = await roles.holders(session, incident=incident)
        text = f"Roles of {incident.ref}\n" + "\n".join(roles.lines(deps.config, held))
        await reply(text=text)
    elif verb == "role":
        try:
            await set_role(deps, incident, role=cmd["role"], holder=cmd["user"], actor=user)
        except AlreadyDone as done:
            await reply(text=str(done))
    elif verb == "followups":
        async with deps.db.session() as session:
            rows = await followups.of_incident(session, incident_id=incident.id)
        text, blocks = render.followup_list(incident, rows, now=now)
        await reply(text=text, blocks=blocks)
    elif verb == "followup":
        await add(deps, incident, text=cmd["text"], owner=cmd.get("user"), due=cmd.get("due"), actor=user)
    elif verb == "done":
        async with deps.db.session() as session:
            row = await followups.complete(session, clock=deps.clock, followup_id=cmd["followup_id"], actor=user,
                                           incident_id=incident.id)
        if row is None:
            await reply(text=f"Follow-up #{cmd['followup_id']} is done already.")
        else:
            await _post(deps, incident, f"✅ Follow-up #{row.id} of {incident.ref} done by <@{user}>: {row.text}")
    elif verb == "reassign":
        async with deps.db.session() as session:
            row, _before = await followups.reassign(session, clock=deps.clock, followup_id=cmd["followup_id"],
                                                    owner=cmd["user"], actor=user, incident_id=incident.id)
        await _post(deps, incident, f"📌 Follow-up #{row.id} of {incident.ref} is now <@{row.owner_id}>'s: {row.text}")


async def add(deps: Deps, incident: Incident, *, text: str, owner: str | None, due: str | None, actor: str) -> None:
    filer = tracker(deps)
    async with deps.db.session() as session:
        row = await followups.create(session, clock=deps.clock, incident_id=incident.id, text=text, owner=owner,
                                     due=end_of(date.fromisoformat(due)) if due else None, actor=actor,
                                     tracker=filer.name if filer else None)
    await _post(deps, incident, render.created(row, incident))
    if filer is not None:
        await defer(deps, FILE, followup_id=row.id)


def _issue_body(row: FollowUp, incident: Incident) -> str:
    lines = [f"Follow-up of {incident.ref}: {incident.title} (severity {incident.severity}).", "", row.text]
    if row.due:
        lines.append(f"Due: {due_day(row.due).isoformat()}")
    return "\n".join(lines)


@job(FILE, retries=FILE_RETRIES)
async def file(deps: Deps, *, followup_id: int) -> None:
    """The follow-up as a tracker issue (once: a follow-up with an issue is not filed again)."""
    filer = tracker(deps)
    async with deps.db.session() as session:
        row = await followups.get(session, followup_id=followup_id)
        incident = await session.get(Incident, row.incident_id)
    if filer is None or row.tracker_key or incident is None:
        return
    try:
        issue = await filer.create(title=row.text[:200], body=_issue_body(row, incident))
    except Exception as exc:
        reason = deps.scrubber(str(exc)) or type(exc).__name__
        async with deps.db.session() as session:
            attempts = await followups.record_failure(session, followup_id=followup_id, error=reason)
        if not will_retry(REGISTRY.get(FILE), exc, attempts - 1):
            await _post(deps, incident, f":warning: Follow-up #{row.id} of {incident.ref} could not be filed in "
                                        f"{getattr(filer, 'label', filer.name)}: {reason}. It is kept in opsbot "
                                        "(`/incident followups`).")
        raise
    async with deps.db.session() as session:
        await followups.record_issue(session, followup_id=followup_id, key=issue.key, url=issue.url,
                                     state=issue.state)
    await _post(deps, incident, f"🔗 Follow-up #{row.id} of {incident.ref} is <{issue.url}|{issue.key}>.")


@job(POLL)
async def poll(deps: Deps) -> None:
    """Follow-ups closed in the tracker are done here too (on the scheduler's leader every few minutes)."""
    filer = tracker(deps)
    if filer is None:
        return
    async with deps.db.session() as session:
        rows = await followups.filed_and_open(session)
    for row in rows:
        if row.tracker != filer.name or not row.tracker_key:
            continue
        try:
            issue = await filer.get(row.tracker_key)
        except Exception as exc:  # one issue that cannot be read does not stop the others
            log.warning("reading follow-up #%d's issue failed: %s", row.id, type(exc).__name__)
            continue
        async with deps.db.session() as session:
            stored = await followups.get(session, followup_id=row.id)
            stored.tracker_state = issue.state[:32]
            done = await followups.complete(session, clock=deps.clock, followup_id=row.id, actor="tracker",
                                            why=f" (closed in {filer.name})") if issue.closed else None
            incident = await session.get(Incident, row.incident_id)
        if done is not None and incident is not None:
            await _post(deps, incident, f"✅ Follow-up #{row.id} of {incident.ref} was closed in the tracker "
                                        f"(<{row.tracker_url}|{row.tracker_key}>): {row.text}")


@job(REMIND)
async def remind(deps: Deps) -> None:
    """Owners of open follow-ups past due get a DM, at most once a week per follow-up."""
    now = deps.clock()
    async with deps.db.session() as session:
        rows = await followups.overdue(session, now=now)
    for row in rows:
        async with deps.db.session() as session:
            claimed = await followups.claim_reminder(session, followup_id=row.id, now=now, seen=row.last_reminded_at)
            incident = await session.get(Incident, row.incident_id)
        if not claimed or incident is None or not row.due:
            continue
        # Without an owner: the holder of the role owning follow-up reminders (scribe), else the commander.
        to = row.owner_id or await roles.remind_whom(deps.db, config=deps.config, incident=incident,
                                                     reminder="followups")
        issue = f" ({render.link(row)})" if row.tracker_url else ""
        whose = "Your follow-up" if row.owner_id else "An unowned follow-up"
        text = (f"⏰ {whose} #{row.id} of {incident.ref} was due {due_day(row.due).isoformat()}: {row.text}{issue}. "
                f"Mark it done with `/incident followup {incident.ref} done {row.id}` (or assign it).")
        if await quietly("followups.remind", deps.slack.chat_postMessage(channel=to, text=text)) is None:
            async with deps.db.session() as session:
                await followups.release_reminder(session, followup_id=row.id, seen=row.last_reminded_at)


@job(ROLES_SAVED)
async def roles_saved(deps: Deps, *, user: str, channel: str | None, response_url: str | None, incident_id: int,
                      chosen: dict[str, str]) -> None:
    """The roles modal: each role whose holder changed is handed over."""
    incident, _events = await flows.read(deps.db, incident_id=incident_id)
    async with deps.db.session() as session:
        held = await roles.holders(session, incident=incident)
    for role, holder in chosen.items():
        if holder and held.get(role) != holder:
            await set_role(deps, incident, role=role, holder=holder, actor=user)


@job(DECLARED_ROLES, retries=4)
async def declared_roles(deps: Deps, *, user: str, channel: str | None, response_url: str | None, dedup_key: str,
                         chosen: dict[str, str]) -> None:
    """The roles picked in the declare modal, given once the incident it declared has its channel."""
    deadline = time.monotonic() + SET_UP_WAIT
    while True:
        async with deps.db.session() as session:
            incident = await incidents.by_dedup_key(session, dedup_key=dedup_key)
        if incident is not None and incident.channel_id:
            break
        if time.monotonic() > deadline:
            raise DependencyDown("the incident is not set up yet")
        await asyncio.sleep(0.05)
    async with deps.db.session() as session:
        held = await roles.holders(session, incident=incident)
    for role, holder in chosen.items():
        if holder and held.get(role) != holder and deps.config.incidents.role(role) is not None:
            await set_role(deps, incident, role=role, holder=holder, actor=user)
