"""Named jobs of roles and follow-ups: the `/incident role|followup…` verbs, filing a follow-up in the tracker
(retried; the incident channel told after the last attempt), the tracker poll and the weekly overdue DMs."""

from __future__ import annotations

from datetime import date
from functools import partial
from typing import Any

from bot.deps import Deps
from bot.followups import flows
from bot.followups.dates import end_of
from bot.incidents import AlreadyDone, roles
from bot.incidents import flows as incident_flows
from bot.jobs import REGISTRY, job, will_retry
from bot.models import Incident
from commands.common import defer, responder, tell
from commands.followups import render
from commands.followups.notify import SlackFollowups, services

COMMAND, FILE, POLL, REMIND, ROLES_SAVED = ("followups.command", "followups.file", "followups.poll",
                                            "followups.remind", "followups.roles")
DECLARED_ROLES = "followups.declared_roles"
SET_UP_WAIT = 5.0  # seconds a declared_roles run waits for its incident's channel before it is retried
FILE_RETRIES = 3


async def _answer(deps: Deps, *, user: str, channel: str | None, response_url: str | None, text: str,
                  blocks: list[dict[str, Any]] | None = None) -> None:
    await tell(deps, text=text, blocks=blocks, respond=responder(deps, response_url), user=user, channel=channel)


async def set_role(deps: Deps, incident: Incident, *, role: str, holder: str, actor: str) -> bool:
    """Give `role` to `holder` (the commander through the incident's own assign job); False when unchanged."""
    await deps.require(user=actor, action="incident.assign", target=incident.ref)
    if role == roles.COMMANDER:
        if incident.commander_id == holder:
            return False
        await defer(deps, "incident.assign", user=actor, channel=incident.channel_id, response_url=None,
                    incident_id=incident.id, commander=holder)
        return True
    await flows.give_role(services(deps), SlackFollowups(deps), incident, role=role, holder=holder, actor=actor)
    return True


@job(COMMAND, retries=2)
async def command(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                  cmd: dict[str, Any]) -> None:
    """One `/incident role|roles|followup|followups` command, on the incident it names or whose channel it is."""
    incident = await incident_flows.locate(deps.db, ref=cmd.get("ref"), channel_id=channel)
    verb, now = cmd["verb"], deps.clock()
    s, notifier = services(deps), SlackFollowups(deps)
    reply = partial(_answer, deps, user=user, channel=channel, response_url=response_url)
    if verb == "roles":
        held = await flows.holders(deps.db, incident=incident)
        await reply(text=f"Roles of {incident.ref}\n" + "\n".join(roles.lines(deps.config, held)))
    elif verb == "role":
        try:
            await set_role(deps, incident, role=cmd["role"], holder=cmd["user"], actor=user)
        except AlreadyDone as done:
            await reply(text=str(done))
    elif verb == "followups":
        text, blocks = render.followup_list(incident, await flows.of_incident(deps.db, incident_id=incident.id),
                                            now=now)
        await reply(text=text, blocks=blocks)
    elif verb == "followup":
        await add(deps, incident, text=cmd["text"], owner=cmd.get("user"), due=cmd.get("due"), actor=user)
    elif verb == "done":
        if await flows.complete(s, notifier, incident, followup_id=cmd["followup_id"], actor=user) is None:
            await reply(text=f"Follow-up #{cmd['followup_id']} is done already.")
    elif verb == "reassign":
        await flows.reassign(s, notifier, incident, followup_id=cmd["followup_id"], owner=cmd["user"], actor=user)


async def add(deps: Deps, incident: Incident, *, text: str, owner: str | None, due: str | None, actor: str) -> None:
    s = services(deps)
    row = await flows.add(s, SlackFollowups(deps), incident, text=text, owner=owner,
                          due=end_of(date.fromisoformat(due)) if due else None, actor=actor)
    if s.tracker is not None:
        await defer(deps, FILE, followup_id=row.id)


@job(FILE, retries=FILE_RETRIES)
async def file(deps: Deps, *, followup_id: int) -> None:
    """The follow-up as a tracker issue (once: a follow-up with an issue is not filed again)."""
    await flows.file(services(deps), SlackFollowups(deps), followup_id=followup_id,
                     gives_up=lambda exc, attempts: not will_retry(REGISTRY.get(FILE), exc, attempts - 1))


@job(POLL)
async def poll(deps: Deps) -> None:
    """Follow-ups closed in the tracker are done here too (on the scheduler's leader every few minutes)."""
    await flows.poll(services(deps), SlackFollowups(deps))


@job(REMIND)
async def remind(deps: Deps) -> None:
    """Owners of open follow-ups past due get a DM, at most once a week per follow-up."""
    await flows.remind(services(deps), SlackFollowups(deps))


@job(ROLES_SAVED)
async def roles_saved(deps: Deps, *, user: str, channel: str | None, response_url: str | None, incident_id: int,
                      chosen: dict[str, str]) -> None:
    """The roles modal: each role whose holder changed is handed over."""
    incident, _events = await incident_flows.read(deps.db, incident_id=incident_id)
    held = await flows.holders(deps.db, incident=incident)
    for role, holder in chosen.items():
        if holder and held.get(role) != holder:
            await set_role(deps, incident, role=role, holder=holder, actor=user)


@job(DECLARED_ROLES, retries=4)
async def declared_roles(deps: Deps, *, user: str, channel: str | None, response_url: str | None, dedup_key: str,
                         chosen: dict[str, str]) -> None:
    """The roles picked in the declare modal, given once the incident it declared has its channel."""
    incident = await flows.declared(deps.db, dedup_key=dedup_key, wait=SET_UP_WAIT)
    held = await flows.holders(deps.db, incident=incident)
    for role, holder in chosen.items():
        if holder and held.get(role) != holder and deps.config.incidents.role(role) is not None:
            await set_role(deps, incident, role=role, holder=holder, actor=user)
