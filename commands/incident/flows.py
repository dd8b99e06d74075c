"""Orchestration after the ack: domain verbs from bot.incidents, rendering from render.py, Slack calls
made concurrently where they do not depend on each other.

Declaring costs three Web API round trips on the critical path:
  1. announcement ‖ conversations.create
  2. invite ‖ topic ‖ summary post ‖ announcement edit (channel link) ‖ escalation
  3. pin the summary"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import incidents, metrics
from bot.config import Severity
from bot.deps import Deps
from bot.errors import NotFound
from bot.incidents import Declaration
from bot.models import Incident, IncidentEvent
from commands.incident import render

log = logging.getLogger(__name__)
Respond = Callable[..., Awaitable[Any]]
NAME_ATTEMPTS = 5


async def quietly(name: str, coro: Awaitable[Any]) -> Any:
    """Await a Slack call whose failure must not stop its siblings; the failure is logged and counted."""
    try:
        return await coro
    except SlackApiError as exc:
        log.warning("%s failed: %s", name, exc.response.get("error"))
    except Exception:
        log.exception("%s failed", name)
    metrics.BACKGROUND_FAILURES.labels(name=f"incident.{name}").inc()
    return None


def severity_of(deps: Deps, incident: Incident) -> Severity | None:
    try:
        return deps.config.severity(incident.severity)
    except NotFound:
        return None


def _last_update(timeline: list[IncidentEvent]) -> str | None:
    return next((e.text for e in reversed(timeline) if e.kind == "update"), None)


# -- declare ---------------------------------------------------------------------------------------
async def declare(deps: Deps, *, request: Declaration, dedup_key: str | None,
                  respond: Respond | None = None) -> Incident:
    """Store (once per dedup_key), announce, and set up the incident channel."""
    await deps.require(user=request.reporter_id, action="incident.declare", target=request.title[:200],
                       environment=request.environment)
    try:
        async with deps.db.session() as session:
            incident, created = await incidents.declare(session, config=deps.config, clock=deps.clock,
                                                        request=request, dedup_key=dedup_key)
    except IntegrityError:  # a concurrent retry of the same request won the insert
        async with deps.db.session() as session:
            found = await incidents.by_dedup_key(session, dedup_key=dedup_key or "")
        if found is None:
            raise
        incident, created = found, False
    if not created:
        log.info("duplicate declaration %s ignored (%s)", dedup_key, incident.ref)
        return incident
    await _set_up(deps, incident, respond=respond)
    return incident


async def _create_channel(deps: Deps, incident: Incident) -> tuple[str | None, str | None, str | None]:
    """(channel id, name, error): a taken name gets a numeric suffix."""
    settings = deps.config.incidents
    error = None
    for attempt in range(NAME_ATTEMPTS):
        name = incidents.channel_name(settings.channel_prefix, incident.id, incident.title, attempt)
        try:
            response = await deps.slack.conversations_create(name=name, is_private=settings.private_channels)
            channel = response["channel"]
            return channel["id"], channel.get("name", name), None
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "error")
            if error != "name_taken":
                break
        except Exception as exc:
            error = type(exc).__name__
            break
    log.warning("creating the channel of %s failed: %s", incident.ref, error)
    return None, None, error


async def _set_up(deps: Deps, incident: Incident, *, respond: Respond | None) -> None:
    slack, now, severity = deps.slack, deps.clock(), severity_of(deps, incident)
    pending = incidents.channel_name(deps.config.incidents.channel_prefix, incident.id, incident.title)
    text, blocks = render.announcement(incident, severity, now=now, pending_channel=pending)
    posted, (channel_id, name, error) = await asyncio.gather(
        quietly("announce", slack.chat_postMessage(channel=deps.config.channels.incidents, text=text,
                                                    blocks=blocks, unfurl_links=False)),
        _create_channel(deps, incident))
    # The local copy drives the rendering of round trip 2; the database write runs beside it.
    if posted is not None:
        incident.announcement_channel, incident.announcement_ts = posted["channel"], posted["ts"]
    incident.channel_id, incident.channel_name, incident.channel_error = channel_id, name, error

    jobs: list[Awaitable[Any]] = [quietly("save", _save_channel(deps, incident))]
    if incident.announcement_ts:
        text, blocks = render.announcement(incident, severity, now=now)
        jobs.append(quietly("announce.update", slack.chat_update(
            channel=incident.announcement_channel, ts=incident.announcement_ts, text=text, blocks=blocks)))
    if channel_id:
        invitees = sorted({incident.reporter_id, incident.commander_id})
        jobs += [invite(deps, channel_id, invitees),
                 quietly("topic", slack.conversations_setTopic(channel=channel_id, topic=render.topic(incident))),
                 _post_summary(deps, incident)]
    if incident.escalated_at is not None and severity is not None:  # immediate severity: page at declaration
        jobs.append(quietly("escalate", _post_escalation(deps, incident, severity, immediate=True)))
    if respond is not None:
        where = f"<#{channel_id}>" if channel_id else f"(no channel: {error})"
        jobs.append(quietly("respond", respond(text=f"Declared *{incident.ref}* ({incident.severity}) {where}",
                                                response_type="ephemeral", replace_original=False)))
    await asyncio.gather(*jobs)


async def _save_channel(deps: Deps, incident: Incident) -> None:
    async with deps.db.session() as session:
        stored = await incidents.get(session, incident_id=incident.id)
        stored.announcement_channel, stored.announcement_ts = incident.announcement_channel, incident.announcement_ts
        await incidents.record_channel(session, clock=deps.clock, incident=stored, channel_id=incident.channel_id,
                                       name=incident.channel_name, error=incident.channel_error)


async def invite(deps: Deps, channel_id: str, users: list[str]) -> None:
    extra: set[str] = set()
    for principal in deps.config.incidents.invite:
        # A failing group lookup (missing scope, Slack down) must not keep reporter and commander out.
        extra |= await quietly("invite.lookup", deps.directory.members(principal)) or set()
    everyone = sorted(set(users) | extra)
    await quietly("invite", deps.slack.conversations_invite(channel=channel_id, users=",".join(everyone)))


async def _post_summary(deps: Deps, incident: Incident) -> None:
    text, blocks = render.summary(incident, severity_of(deps, incident), now=deps.clock())
    posted = await quietly("summary", deps.slack.chat_postMessage(channel=incident.channel_id, text=text,
                                                                   blocks=blocks))
    if posted is None:
        return
    incident.summary_ts = posted["ts"]
    await asyncio.gather(quietly("pin", deps.slack.pins_add(channel=incident.channel_id, timestamp=posted["ts"])),
                         _save_summary(deps, incident.id, posted["ts"]))


async def _save_summary(deps: Deps, incident_id: int, ts: str) -> None:
    async with deps.db.session() as session:
        (await incidents.get(session, incident_id=incident_id)).summary_ts = ts


# -- changes ----------------------------------------------------------------------------------------
Mutation = Callable[[AsyncSession, Incident], Awaitable[Any]]


async def change(deps: Deps, *, actor: str, action: str, ref: str | None, channel_id: str | None,
                 mutate: Mutation, incident_id: int | None = None) -> tuple[Incident, list[IncidentEvent], Any]:
    """Find the incident, check `action` is allowed for `actor` in its environment, apply `mutate`."""
    async with deps.db.session() as session:
        if incident_id is not None:
            found = await incidents.get(session, incident_id=incident_id)
        else:
            found = await incidents.find(session, ref=ref, channel_id=channel_id)
    await deps.require(user=actor, action=action, target=found.ref, environment=found.environment)
    async with deps.db.session() as session:
        incident = await incidents.get(session, incident_id=found.id)
        result = await mutate(session, incident)
        timeline = await incidents.events(session, incident_id=incident.id)
    return incident, timeline, result


def refresh(deps: Deps, incident: Incident, timeline: list[IncidentEvent]) -> list[Awaitable[Any]]:
    """chat.update of the announcement and the pinned summary, so both show the current state."""
    severity, now, last = severity_of(deps, incident), deps.clock(), _last_update(timeline)
    jobs: list[Awaitable[Any]] = []
    if incident.announcement_ts:
        text, blocks = render.announcement(incident, severity, now=now, last_update=last)
        jobs.append(quietly("announce.update", deps.slack.chat_update(
            channel=incident.announcement_channel, ts=incident.announcement_ts, text=text, blocks=blocks)))
    if incident.channel_id and incident.summary_ts:
        text, blocks = render.summary(incident, severity, now=now, last_update=last)
        jobs.append(quietly("summary.update", deps.slack.chat_update(
            channel=incident.channel_id, ts=incident.summary_ts, text=text, blocks=blocks)))
    return jobs


def home(deps: Deps, incident: Incident) -> str:
    """Where the incident's conversation happens: its channel, else the incidents channel."""
    return incident.channel_id or incident.announcement_channel or deps.config.channels.incidents


def post(deps: Deps, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
         name: str = "post") -> Awaitable[Any]:
    return quietly(name, deps.slack.chat_postMessage(channel=channel, text=text, blocks=blocks or None,
                                                      unfurl_links=False))


async def broadcast_status(deps: Deps, incident: Incident, timeline: list[IncidentEvent],
                           extra: list[Awaitable[Any]] | None = None) -> None:
    """The templated status update to the incident channel and the incidents channel, plus in-place edits."""
    text, blocks = render.status_update(incidents.status_text(deps.config, incident, timeline))
    targets = {home(deps, incident), incident.announcement_channel or deps.config.channels.incidents}
    await asyncio.gather(*(post(deps, t, text, blocks, "status") for t in targets),
                         *refresh(deps, incident, timeline), *(extra or []))


async def announce_change(deps: Deps, incident: Incident, timeline: list[IncidentEvent], line: str,
                          *, topic: bool = False) -> None:
    """A one-line note in the incident's home channel, the in-place edits, and the topic when it changed."""
    text, blocks = render.note(line)
    jobs = [post(deps, home(deps, incident), text, blocks, "note"), *refresh(deps, incident, timeline)]
    if topic and incident.channel_id:
        jobs.append(quietly("topic", deps.slack.conversations_setTopic(channel=incident.channel_id,
                                                                         topic=render.topic(incident))))
    await asyncio.gather(*jobs)


async def resolved(deps: Deps, incident: Incident, timeline: list[IncidentEvent]) -> None:
    text, blocks = render.postmortem(incidents.postmortem(deps.config, incident, timeline))
    extra = [post(deps, home(deps, incident), f"📝 Postmortem draft for {incident.ref}\n{text}", blocks,
                  "postmortem")]
    if incident.channel_id:
        extra.append(quietly("topic", deps.slack.conversations_setTopic(channel=incident.channel_id,
                                                                          topic=render.topic(incident))))
    await broadcast_status(deps, incident, timeline, extra)


# -- escalation and reminders --------------------------------------------------------------------------
async def _post_escalation(deps: Deps, incident: Incident, severity: Severity, *, immediate: bool) -> None:
    mentions = [await deps.directory.mention(target) for target in severity.escalate_to]
    await deps.slack.chat_postMessage(channel=home(deps, incident),
                                      text=render.escalation(incident, mentions, severity, immediate=immediate))


async def escalate(deps: Deps, incident: Incident) -> None:
    """Mention the severity's escalation targets once, then record it (a failed post is retried next run)."""
    severity = severity_of(deps, incident)
    if severity is None or not severity.escalate_to:
        return
    await _post_escalation(deps, incident, severity, immediate=severity.immediate)
    async with deps.db.session() as session:
        stored = await incidents.get(session, incident_id=incident.id)
        await incidents.mark_escalated(session, clock=deps.clock, incident=stored, targets=severity.escalate_to,
                                       immediate=severity.immediate)


async def remind(deps: Deps, incident: Incident) -> None:
    last = max(t for t in (incident.created_at, incident.last_update_at) if t)
    quiet_for = incidents.age(last, deps.clock())
    await deps.slack.chat_postMessage(channel=home(deps, incident), text=render.reminder(incident,
                                                                                         quiet_for=quiet_for))
    async with deps.db.session() as session:
        await incidents.mark_reminded(session, clock=deps.clock,
                                      incident=await incidents.get(session, incident_id=incident.id))


async def run_timers(deps: Deps) -> None:
    """The `incidents.timers` job: everything is derived from the database and deps.clock()."""
    now = deps.clock()
    async with deps.db.session() as session:
        escalations = await incidents.due_escalations(session, config=deps.config, now=now)
        reminders = await incidents.due_reminders(session, config=deps.config, now=now)
    for job, rows in ((escalate, escalations), (remind, reminders)):
        for incident in rows:
            try:
                await job(deps, incident)
            except Exception:  # one failing incident must not stop the others
                metrics.BACKGROUND_FAILURES.labels(name=f"job:incidents.{job.__name__}").inc()
                log.exception("%s of %s failed", job.__name__, incident.ref)
