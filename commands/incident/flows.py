"""Orchestration after the ack: domain verbs from bot.incidents, rendering from render.py, Slack calls
made concurrently where they do not depend on each other.

Declaring costs three Web API round trips on the critical path:
  1. announcement ‖ conversations.create
  2. invite ‖ topic ‖ summary post ‖ announcement edit (channel link) ‖ escalation ‖ record them
  3. pin the summary ‖ record it
then one answer to the declarer. A lost answer (timeout, 5xx) is resolved by looking the object up before
asking again (bot/slack.py), and the records are retried while opsbot's database is away."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError

from bot import incidents, metrics, slack
from bot.config import Severity
from bot.deps import Deps
from bot.errors import DependencyDown, NotFound
from bot.incidents import Declaration
from bot.models import Incident, IncidentEvent
from commands.incident import render

log = logging.getLogger(__name__)
Respond = Callable[..., Awaitable[Any]]
NAME_ATTEMPTS = 5
METADATA_EVENT = "opsbot_incident"  # Slack message metadata event_type of the announcement and the summary
ANNOUNCEMENT, SUMMARY = "announcement", "summary"
# Recording what Slack made while opsbot's database is away: retried with backoff for this long (seconds).
SAVE_RETRY_FOR = 600.0
SAVE_FIRST_DELAY, SAVE_MAX_DELAY = 0.25, 5.0


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


async def _create_channel(deps: Deps, incident: Incident, *, since: float) -> tuple[str | None, str | None, str | None]:
    """(channel id, name, error): a taken name gets a numeric suffix; a channel a lost answer made is adopted."""
    settings = deps.config.incidents
    names = [incidents.channel_name(settings.channel_prefix, incident.id, incident.title, attempt)
             for attempt in range(NAME_ATTEMPTS)]
    try:
        made = await slack.create_channel_once(deps.slack, names=names, is_private=settings.private_channels,
                                               since=since)
    except Exception as exc:
        log.exception("creating the channel of %s failed", incident.ref)
        made = slack.Outcome(None, type(exc).__name__)
    if made.data is None:
        log.warning("creating the channel of %s failed: %s", incident.ref, made.error)
        return None, None, made.error
    return made.data["id"], made.data.get("name") or names[0], None


def _metadata(incident: Incident, role: str) -> dict[str, Any]:
    """Slack message metadata naming the incident and the message's role: how a post whose answer was lost
    is found again (bot/slack.py post_once)."""
    return {"event_type": METADATA_EVENT, "event_payload": {"incident_id": incident.id, "ref": incident.ref,
                                                            "role": role}}


async def _post(deps: Deps, incident: Incident, role: str, **message: Any) -> slack.Outcome:
    try:
        return await slack.post_once(deps.slack, metadata=_metadata(incident, role), **message)
    except Exception as exc:
        log.exception("posting the %s of %s failed", role, incident.ref)
        return slack.Outcome(None, type(exc).__name__)


def _mention(channel: str) -> str:
    """A configured channel (`#incidents` or an id) as the declarer should read it."""
    return channel if channel.startswith("#") else f"<#{channel}>"


async def _set_up(deps: Deps, incident: Incident, *, respond: Respond | None) -> None:
    """Announce and create the channel, then set it up; record what Slack made (retrying while the database
    is away), then answer the declarer once with the outcome."""
    client, now, severity = deps.slack, deps.clock(), severity_of(deps, incident)
    announce_in = deps.config.channels.incidents
    pending = incidents.channel_name(deps.config.incidents.channel_prefix, incident.id, incident.title)
    text, blocks = render.announcement(incident, severity, now=now, pending_channel=pending)
    posted, (channel_id, name, error) = await asyncio.gather(
        _post(deps, incident, ANNOUNCEMENT, channel=announce_in, text=text, blocks=blocks, unfurl_links=False),
        _create_channel(deps, incident, since=time.time()))
    # The local copy drives the rendering of round trip 2; the database write runs beside it.
    if posted.data is not None:
        incident.announcement_channel, incident.announcement_ts = posted.data["channel"], posted.data["ts"]
    incident.channel_id, incident.channel_name, incident.channel_error = channel_id, name, error

    saved: Awaitable[str | None] = _save_channel(deps, incident, announcement_error=posted.error)
    summary: Awaitable[tuple[str | None, str | None]] = (
        _post_summary(deps, incident, channel_id) if channel_id else _nothing((None, None)))
    jobs: list[Awaitable[Any]] = []
    if incident.announcement_channel and incident.announcement_ts:
        text, blocks = render.announcement(incident, severity, now=now)
        jobs.append(quietly("announce.update", client.chat_update(
            channel=incident.announcement_channel, ts=incident.announcement_ts, text=text, blocks=blocks)))
    if channel_id:
        invitees = sorted({incident.reporter_id, incident.commander_id})
        jobs += [invite(deps, channel_id, invitees),
                 quietly("topic", client.conversations_setTopic(channel=channel_id, topic=render.topic(incident)))]
    if incident.escalated_at is not None and severity is not None:  # immediate severity: page at declaration
        jobs.append(quietly("escalate", _post_escalation(deps, incident, severity, immediate=True)))
    unsaved, (summary_error, summary_unsaved), *_ = await asyncio.gather(saved, summary, *jobs)
    if respond is not None:
        answer = render.declared(incident, announced_in=_mention(announce_in), announcement_error=posted.error,
                                 summary_error=summary_error, unsaved=unsaved or summary_unsaved)
        await quietly("respond", respond(text=answer, response_type="ephemeral", replace_original=False))
    # The announcement's buttons work as soon as it is posted: a change committed meanwhile edited the
    # messages from the database, and the edits above (from this copy) may have landed after its edits.
    await quietly("refresh", _refresh_if_changed(deps, incident))


async def _refresh_if_changed(deps: Deps, incident: Incident) -> None:
    async with deps.db.session() as session:
        latest = await incidents.newer(session, incident_id=incident.id, version=incident.version)
    if latest is not None:
        await refresh(deps, *latest)


async def _nothing(value: Any) -> Any:
    return value


async def durably(deps: Deps, what: str, write: Callable[[], Awaitable[None]]) -> str | None:
    """Run a database write until it lands: while opsbot's database is unreachable it is retried with backoff
    for up to SAVE_RETRY_FOR seconds. None once written, else why not (logged with `what`, so an operator can
    record it by hand)."""
    deadline, delay = time.monotonic() + SAVE_RETRY_FOR, SAVE_FIRST_DELAY
    try:
        while True:
            try:
                await write()
                return None
            except DependencyDown as exc:
                if time.monotonic() + delay > deadline:
                    reason = f"database unreachable for {SAVE_RETRY_FOR / 60:.0f} min"
                    log.error("gave up recording %s: %s (%s)", what, reason, exc)
                    metrics.BACKGROUND_FAILURES.labels(name="incident.save").inc()
                    return reason
                log.warning("recording %s failed (%s); retrying in %.1fs", what, exc, delay)
            except Exception:
                log.exception("recording %s failed", what)
                metrics.BACKGROUND_FAILURES.labels(name="incident.save").inc()
                return "an error on opsbot's side; it has been logged"
            await asyncio.sleep(delay)
            delay = min(delay * 2, SAVE_MAX_DELAY)
    except asyncio.CancelledError:  # stopped mid-retry: leave the operator what Slack made
        log.error("not recorded (opsbot stopped while retrying): %s", what)
        raise


async def _save_channel(deps: Deps, incident: Incident, *, announcement_error: str | None) -> str | None:
    announcement = ((incident.announcement_channel, incident.announcement_ts)
                    if incident.announcement_channel and incident.announcement_ts else None)

    async def write() -> None:
        async with deps.db.session() as session:
            stored = await incidents.get(session, incident_id=incident.id)
            await incidents.record_set_up(session, clock=deps.clock, incident=stored, announcement=announcement,
                                          announcement_error=announcement_error, channel_id=incident.channel_id,
                                          name=incident.channel_name, error=incident.channel_error)

    what = (f"{incident.ref}: announcement {announcement}, channel {incident.channel_id} "
            f"({incident.channel_name or incident.channel_error})")
    return await durably(deps, what, write)


async def invite(deps: Deps, channel_id: str, users: list[str]) -> None:
    extra: set[str] = set()
    for principal in deps.config.incidents.invite:
        # A failing group lookup (missing scope, Slack down) must not keep reporter and commander out.
        extra |= await quietly("invite.lookup", deps.directory.members(principal)) or set()
    everyone = sorted(set(users) | extra)
    await quietly("invite", deps.slack.conversations_invite(channel=channel_id, users=",".join(everyone)))


async def _post_summary(deps: Deps, incident: Incident, channel_id: str) -> tuple[str | None, str | None]:
    """(why the summary is missing, why it is not recorded): None, None once posted, pinned and saved."""
    text, blocks = render.summary(incident, severity_of(deps, incident), now=deps.clock())
    posted = await _post(deps, incident, SUMMARY, channel=channel_id, text=text, blocks=blocks)
    if posted.data is None:
        log.warning("the summary of %s could not be posted: %s", incident.ref, posted.error)
        return posted.error, None
    ts = posted.data["ts"]
    incident.summary_ts = ts
    _, unsaved = await asyncio.gather(quietly("pin", deps.slack.pins_add(channel=channel_id, timestamp=ts)),
                                      _save_summary(deps, incident.id, ts))
    return None, unsaved


async def _save_summary(deps: Deps, incident_id: int, ts: str) -> str | None:
    async def write() -> None:
        async with deps.db.session() as session:
            (await incidents.get(session, incident_id=incident_id)).summary_ts = ts

    return await durably(deps, f"INC-{incident_id}: summary {ts}", write)


# -- changes ----------------------------------------------------------------------------------------
Mutation = incidents.Mutation
REFRESH_ROUNDS = 5


async def change(deps: Deps, *, actor: str, action: str, ref: str | None, channel_id: str | None,
                 mutate: Mutation, incident_id: int | None = None) -> tuple[Incident, list[IncidentEvent], Any]:
    """Find the incident, check `action` is allowed for `actor` in its environment, apply `mutate` (in
    turn with other changes of the incident: `incidents.apply`)."""
    async with deps.db.session() as session:
        if incident_id is not None:
            found = await incidents.get(session, incident_id=incident_id)
        else:
            found = await incidents.find(session, ref=ref, channel_id=channel_id)
    await deps.require(user=actor, action=action, target=found.ref, environment=found.environment)
    return await incidents.apply(deps.db, incident_id=found.id, mutate=mutate)


async def refresh(deps: Deps, incident: Incident, timeline: list[IncidentEvent]) -> None:
    """chat.update of the announcement and the pinned summary, so both show the current state.

    Two changes at once edit the same messages, and their edits may land in either order. So after editing,
    a newer version in the database (a change committed meanwhile, whose edit may have landed first) means
    edit again from the newest state: the edit that lands last then always shows the last change."""
    for _ in range(REFRESH_ROUNDS):
        await asyncio.gather(*_edits(deps, incident, timeline))
        async with deps.db.session() as session:
            latest = await incidents.newer(session, incident_id=incident.id, version=incident.version)
        if latest is None:
            return
        incident, timeline = latest


def _edits(deps: Deps, incident: Incident, timeline: list[IncidentEvent]) -> list[Awaitable[Any]]:
    severity, now, last = severity_of(deps, incident), deps.clock(), _last_update(timeline)
    jobs: list[Awaitable[Any]] = []
    if incident.announcement_channel and incident.announcement_ts:
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
                         refresh(deps, incident, timeline), *(extra or []))


async def announce_change(deps: Deps, incident: Incident, timeline: list[IncidentEvent], line: str,
                          *, topic: bool = False) -> None:
    """A one-line note in the incident's home channel, the in-place edits, and the topic when it changed."""
    text, blocks = render.note(line)
    jobs = [post(deps, home(deps, incident), text, blocks, "note"), refresh(deps, incident, timeline)]
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
    """Mention the severity's escalation targets once. The escalation is claimed first, in turn with the users'
    changes (an acknowledgement or another escalation that committed meanwhile wins and nobody is paged), then
    posted; a failed post releases the claim, so the next timer run tries again."""
    severity = severity_of(deps, incident)
    if severity is None or not severity.escalate_to:
        return
    _, _, claimed = await incidents.apply(deps.db, incident_id=incident.id, mutate=lambda session, stored: (
        incidents.claim_escalation(session, clock=deps.clock, incident=stored, targets=severity.escalate_to,
                                   immediate=severity.immediate)))
    if not claimed:
        return
    try:
        await _post_escalation(deps, incident, severity, immediate=severity.immediate)
    except Exception as exc:
        reason = exc.response.get("error", "error") if isinstance(exc, SlackApiError) else type(exc).__name__
        await incidents.apply(deps.db, incident_id=incident.id, mutate=lambda session, stored: (
            incidents.release_escalation(session, clock=deps.clock, incident=stored, reason=str(reason))))
        raise


async def remind(deps: Deps, incident: Incident) -> None:
    last = max(t for t in (incident.created_at, incident.last_update_at) if t)
    quiet_for = incidents.age(last, deps.clock())
    await deps.slack.chat_postMessage(channel=home(deps, incident), text=render.reminder(incident,
                                                                                         quiet_for=quiet_for))
    await incidents.apply(deps.db, incident_id=incident.id, mutate=lambda session, stored: incidents.mark_reminded(
        session, clock=deps.clock, incident=stored))


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
