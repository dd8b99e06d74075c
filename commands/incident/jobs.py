"""The incident family's named jobs (bot/jobs.py): what the listeners enqueue, and the scheduled timers.

Every job that changes an existing incident holds its lock (`incident:{incident_id}`), so two people's
clicks on one incident run one after the other and the second is told who was first. A job may run twice
(its worker died): a declaration finds its incident by its dedup key and posts nothing again, a change made
already answers AlreadyDone, an update already on the timeline for the same request is not posted again."""

from __future__ import annotations

from typing import Any

from bot import incidents
from bot.deps import Deps
from bot.incidents import AlreadyDone, Declaration, flows
from bot.jobs import job
from commands.common import defer, responder, tell
from commands.incident import render
from commands.incident.notify import SlackIncidents, services

LOCK = "incident:{incident_id}"
TIMERS = "incidents.timers"
# Verbs that change an incident, by the job that runs them (each job's own arguments after incident_id).
MUTATING = {"update": "incident.update", "ack": "incident.ack", "severity": "incident.severity",
            "assign": "incident.assign", "resolve": "incident.resolve"}


async def _answer(deps: Deps, *, user: str, channel: str | None, response_url: str | None, text: str,
                  blocks: list[dict[str, Any]]) -> None:
    """Ephemeral: via response_url, else (a modal's submission) where the modal was opened, else a DM."""
    await tell(deps, text=text, blocks=blocks, respond=responder(deps, response_url), user=user, channel=channel)


async def _already(deps: Deps, done: AlreadyDone, *, user: str, channel: str | None,
                   response_url: str | None) -> None:
    """Someone made the change first: not an error, an answer naming who and when."""
    text, blocks = render.already_done(str(done))
    await _answer(deps, user=user, channel=channel, response_url=response_url, text=text, blocks=blocks)


@job("incident.declare", retries=2)
async def declare(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                  declaration: dict[str, Any], dedup_key: str | None) -> None:
    """Declare once per `dedup_key` (the command's trigger id, the modal's view id)."""
    notifier = SlackIncidents(deps, respond=responder(deps, response_url))
    await flows.declare(services(deps), notifier, request=Declaration(**declaration), dedup_key=dedup_key)


@job("incident.read", retries=2)
async def read(deps: Deps, *, user: str, channel: str | None, response_url: str | None, verb: str,
               ref: str | None, requested_at: float | None = None) -> None:
    """list, show, timeline, postmortem: answered to the requester only. Lists asked for together share a
    read that started after they were asked (bot/shared_reads.py)."""
    if verb == "list":
        rows = await deps.reads.read(("incidents", "open"), lambda: flows.open_incidents(deps.db, config=deps.config),
                                     asked_at=requested_at)
        text, blocks = render.incident_list(rows, now=deps.clock(), severities=deps.config.severities)
    else:
        found = await flows.locate(deps.db, ref=ref, channel_id=channel)
        incident, events = await flows.read(deps.db, incident_id=found.id)
        if verb == "show":
            text, blocks = render.show(incident, services(deps).severity(incident), now=deps.clock(),
                                       timeline=events)
        elif verb == "timeline":
            text, blocks = render.timeline(incident, events)
        else:
            from commands.followups import postmortem_extra  # roles and follow-ups (commands/followups)

            extra, _buttons = await postmortem_extra(deps, incident.id)
            text, blocks = render.postmortem(incidents.postmortem(deps.config, incident, events) + extra)
    await _answer(deps, user=user, channel=channel, response_url=response_url, text=text, blocks=blocks)


@job("incident.locate", retries=2)
async def locate(deps: Deps, *, user: str, channel: str | None, response_url: str | None, verb: str,
                 args: dict[str, Any], request: str | None) -> None:
    """A change run in an incident channel without naming the incident: find it, then enqueue the change
    under the incident's lock (once per `request`, like the listener's own enqueue)."""
    incident = await flows.locate(deps.db, ref=None, channel_id=channel)
    await defer(deps, MUTATING[verb], once=request, user=user, channel=channel, response_url=response_url,
                incident_id=incident.id, **args)


@job("incident.update", lock=LOCK, retries=2)
async def update(deps: Deps, *, user: str, channel: str | None, response_url: str | None, incident_id: int,
                 text: str, status: str | None = None, impact: str | None = None, eta: str | None = None,
                 request: str | None = None) -> None:
    try:
        await flows.update(services(deps), SlackIncidents(deps), incident_id=incident_id, actor=user, text=text,
                           status=status, impact=impact, eta=eta, request=request)
    except AlreadyDone as done:
        await _already(deps, done, user=user, channel=channel, response_url=response_url)


@job("incident.ack", lock=LOCK, retries=2)
async def acknowledge(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                      incident_id: int) -> None:
    try:
        await flows.acknowledge(services(deps), SlackIncidents(deps), incident_id=incident_id, actor=user)
    except AlreadyDone as done:
        await _already(deps, done, user=user, channel=channel, response_url=response_url)


@job("incident.severity", lock=LOCK, retries=2)
async def severity(deps: Deps, *, user: str, channel: str | None, response_url: str | None, incident_id: int,
                   severity: str) -> None:
    try:
        pages = await flows.change_severity(services(deps), SlackIncidents(deps), incident_id=incident_id,
                                            actor=user, severity=severity)
    except AlreadyDone as done:
        await _already(deps, done, user=user, channel=channel, response_url=response_url)
        return
    if pages:  # its own job: a failed page is retried without changing the severity again
        await defer(deps, "incident.escalate", user=user, channel=channel, response_url=response_url,
                    incident_id=incident_id)


@job("incident.assign", lock=LOCK, retries=2)
async def assign(deps: Deps, *, user: str, channel: str | None, response_url: str | None, incident_id: int,
                 commander: str) -> None:
    try:
        await flows.assign(services(deps), SlackIncidents(deps), incident_id=incident_id, actor=user,
                           commander=commander)
    except AlreadyDone as done:
        await _already(deps, done, user=user, channel=channel, response_url=response_url)


@job("incident.resolve", lock=LOCK, retries=2)
async def resolve(deps: Deps, *, user: str, channel: str | None, response_url: str | None, incident_id: int,
                  summary: str) -> None:
    try:
        await flows.resolve(services(deps), SlackIncidents(deps), incident_id=incident_id, actor=user,
                            summary=summary)
    except AlreadyDone as done:
        await _already(deps, done, user=user, channel=channel, response_url=response_url)


@job("incident.escalate", lock=LOCK, retries=2)
async def escalate(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                   incident_id: int) -> None:
    """Page now (a severity raised to an immediate level); claimed first, so a repeat pages nobody twice.
    A page Slack keeps refusing ends with the requester told (and the timer trying again)."""
    await flows.escalate_now(services(deps), SlackIncidents(deps), incident_id=incident_id)


@job(TIMERS)
async def timers(deps: Deps) -> None:
    """Escalations and reminders that are due (every 30 s on the scheduler's leader; the next run retries)."""
    await flows.run_timers(services(deps), SlackIncidents(deps))
