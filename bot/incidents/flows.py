"""What the incident verbs do end to end: store (each step in its own transaction, opened here), then tell
people through an `IncidentNotifier`, which commands/incident implements with Block Kit and Web API calls.
Nothing here knows a Slack payload or client.

Declaring costs three Web API round trips on the critical path:
  1. announcement ‖ channel creation
  2. invite ‖ topic ‖ summary post ‖ announcement edit (channel link) ‖ page ‖ record them
  3. pin the summary ‖ record it
then one answer to the declarer. A lost answer (timeout, 5xx) is resolved by the notifier looking the
object up before asking again (bot/slack.py), and the records are retried while opsbot's database is away.

The verbs are run by named jobs (commands/incident/jobs.py) that hold the incident's queue lock, so two
people's clicks on one incident run one after the other; `incidents.apply`'s row lock stays underneath for
the work that does not go through the queue (the timers)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from bot import incidents, metrics
from bot.clock import Clock
from bot.config import Config, Severity
from bot.db import Database
from bot.errors import DependencyDown, NotFound, OpsbotError
from bot.incidents import Declaration
from bot.models import Incident, IncidentEvent
from bot.paging import Recipients, expand
from bot.paging import flows as paging
from bot.paging.escalation import INFORM_CYCLE, LEGACY_PREFIX, Step
from bot.ratelimit import RateLimiter

log = logging.getLogger(__name__)
NAME_ATTEMPTS = 5
# Recording what Slack made while opsbot's database is away: retried with backoff for this long (seconds).
SAVE_RETRY_FOR = 600.0
SAVE_FIRST_DELAY, SAVE_MAX_DELAY = 0.25, 5.0
REFRESH_ROUNDS = 5
Mutation = incidents.Mutation


class Require(Protocol):
    """The permission check (bot.deps.Deps.require): raises PermissionDenied, audited."""

    async def __call__(self, *, user: str, action: str, target: str, environment: str | None = None) -> None: ...


@dataclass(frozen=True)
class Services:
    """What the flows use besides the notifier; no Slack in it."""

    db: Database
    config: Config
    clock: Clock
    require: Require
    ratelimit: RateLimiter
    pager: paging.Pager | None = None  # escalation recipients and provider pages (None: Slack mentions only)

    def severity(self, incident: Incident) -> Severity | None:
        try:
            return self.config.severity(incident.severity)
        except NotFound:
            return None


@dataclass(frozen=True)
class Posted:
    """Where a message went (`channel`, `ts`), or why it did not (`error`)."""

    channel: str | None = None
    ts: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Channel:
    """The incident channel made (`id`, `name`), or why not (`error`)."""

    id: str | None = None
    name: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SetUp:
    """What the declarer is told besides the incident: what could not be posted or recorded."""

    announcement_error: str | None
    summary_error: str | None
    unsaved: str | None


@dataclass(frozen=True)
class Change:
    """A one-line change to tell the incident's channel: `kind` is acknowledged, severity, commander or template
    (the team's update_template failed: `before` says why)."""

    kind: str
    actor: str
    before: str | None = None


class PageNotPosted(OpsbotError):
    """The escalation (or reminder) could not be posted; the incident is due again, so the timer retries."""

    def __init__(self, ref: str, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Paging for {ref} could not be posted ({reason}); opsbot tries again.")


class PageDelayed(PageNotPosted, DependencyDown):
    """PageNotPosted because Slack did not answer (worth another attempt soon)."""


@dataclass(frozen=True)
class Escalation:
    """One level of an incident's escalation (or its `inform:` at declaration), and whom it reaches now."""

    step: Step
    policy: str
    legacy: bool  # the implicit policy of a severity's `escalate_to`: the older message
    recipients: Recipients

    @property
    def inform(self) -> bool:
        return self.step.cycle == INFORM_CYCLE


class IncidentNotifier(Protocol):
    """The Slack effects of the incident flows, in incident terms. Methods that return nothing never raise
    (a failed post must not stop its siblings: it is logged and counted), except `page` and `remind`."""

    async def announce(self, incident: Incident, *, pending_channel: str, look_first: bool = False) -> Posted:
        """Post the announcement in the incidents channel, once (`look_first`: a run that may have posted it
        already, before it was recorded, looks for it first)."""
        ...

    async def create_channel(self, incident: Incident, *, names: list[str], since: float) -> Channel:
        """Create the incident channel under the first free name of `names` (adopting one a lost answer made
        after `since`, a time.time())."""
        ...

    async def post_summary(self, incident: Incident, channel: str, look_first: bool = False) -> Posted:
        """Post the summary in the incident channel, once (`look_first` as for `announce`)."""
        ...

    async def pin(self, channel: str, ts: str) -> None: ...

    async def invite(self, channel: str, users: list[str]) -> None:
        """Invite `users` and the configured invitees."""
        ...

    async def set_topic(self, incident: Incident) -> None: ...

    async def show_announcement(self, incident: Incident, *, last_update: str | None) -> None:
        """Edit the announcement to the incident's state."""
        ...

    async def show_summary(self, incident: Incident, *, last_update: str | None) -> None:
        """Edit the pinned summary to the incident's state."""
        ...

    async def page(self, incident: Incident, severity: Severity, escalation: Escalation) -> None:
        """Post the escalation (who is notified and how) in the incident's channel, raising PageNotPosted, and
        in the incidents channel; invite the Slack users it reaches to the incident channel."""
        ...

    async def remind(self, incident: Incident, *, quiet_for: str) -> None:
        """Remind the commander to post an update; raises PageNotPosted."""
        ...

    async def status_update(self, incident: Incident, text: str) -> None:
        """The templated status update, to the incident's channel and the incidents channel."""
        ...

    async def changed(self, incident: Incident, change: Change) -> None:
        """A note in the incident's channel (and its topic, when the change shows there)."""
        ...

    async def resolved(self, incident: Incident, postmortem: str) -> None:
        """The postmortem draft in the incident's channel, and its topic."""
        ...

    async def declared(self, incident: Incident, set_up: SetUp) -> None:
        """Tell the declarer the incident is declared (and what failed)."""
        ...


def last_update(timeline: list[IncidentEvent]) -> str | None:
    return next((e.text for e in reversed(timeline) if e.kind == "update"), None)


# -- reading ---------------------------------------------------------------------------------------
async def locate(db: Database, *, ref: str | None, channel_id: str | None) -> Incident:
    """The incident named by `ref`, else the one whose channel is `channel_id` (InvalidInput if neither)."""
    async with db.session() as session:
        return await incidents.find(session, ref=ref, channel_id=channel_id)


async def lookup(db: Database, *, incident_id: int) -> Incident | None:
    """The incident, or None when there is none with that id."""
    async with db.session() as session:
        return await session.get(Incident, incident_id)


async def read(db: Database, *, incident_id: int) -> tuple[Incident, list[IncidentEvent]]:
    async with db.session() as session:
        incident = await incidents.get(session, incident_id=incident_id)
        return incident, await incidents.events(session, incident_id=incident_id)


async def open_incidents(db: Database, *, config: Config) -> list[Incident]:
    async with db.session() as session:
        return await incidents.list_open(session, config=config)


async def still_open(db: Database, *, clock: Clock, incident_id: int) -> Incident:
    """The incident, if it is open; else AlreadyDone naming who resolved it."""
    async with db.session() as session:
        incident = await incidents.get(session, incident_id=incident_id)
        await incidents.require_open(session, clock=clock, incident=incident)
    return incident


async def newer(db: Database, *, incident: Incident) -> tuple[Incident, list[IncidentEvent]] | None:
    async with db.session() as session:
        return await incidents.newer(session, incident_id=incident.id, version=incident.version)


# -- declare ---------------------------------------------------------------------------------------
async def store(db: Database, *, config: Config, clock: Clock, request: Declaration,
                dedup_key: str | None) -> tuple[Incident, bool]:
    """The declaration stored once per `dedup_key`: (incident, created)."""
    try:
        async with db.session() as session:
            return await incidents.declare(session, config=config, clock=clock, request=request,
                                           dedup_key=dedup_key)
    except IntegrityError:  # a concurrent retry of the same request won the insert
        async with db.session() as session:
            found = await incidents.by_dedup_key(session, dedup_key=dedup_key or "")
        if found is None:
            raise
        return found, False


async def declare(s: Services, notifier: IncidentNotifier, *, request: Declaration,
                  dedup_key: str | None) -> Incident:
    """Store (once per dedup_key), announce, and set up the incident channel. A second run with the same key
    (a redelivery, a double submit, the job run again) finds the incident and posts nothing — unless the
    first run stopped before the set-up was recorded (its worker was killed): then it resumes, finding what
    Slack already made before making anything."""
    await s.require(user=request.reporter_id, action="incident.declare", target=request.title[:200],
                    environment=request.environment)
    incident, created = await store(s.db, config=s.config, clock=s.clock, request=request, dedup_key=dedup_key)
    if created:
        await _set_up(s, notifier, incident)
    elif not _set_up_recorded(incident):
        log.warning("resuming the set-up of %s (%s): an earlier run stopped before recording it", incident.ref,
                    dedup_key)
        await _set_up(s, notifier, incident, resume=True)
    else:
        log.info("duplicate declaration %s ignored (%s)", dedup_key, incident.ref)
    return incident


def _set_up_recorded(incident: Incident) -> bool:
    """Whether a run recorded the announcement and the channel (made, or why not)."""
    announced = incident.announcement_ts is not None or incident.announcement_channel is not None
    return announced and (incident.channel_id is not None or incident.channel_error is not None)


async def _set_up(s: Services, notifier: IncidentNotifier, incident: Incident, *, resume: bool = False) -> None:
    """Announce and create the channel, then set it up; record what Slack made (retrying while the database
    is away), then answer the declarer once with the outcome. `resume`: an earlier run may have made some of
    it without recording it, so posts are looked for before they are made and a channel the bot created since
    the declaration is adopted."""
    settings = s.config.incidents
    names = [incidents.channel_name(settings.channel_prefix, incident.id, incident.title, attempt)
             for attempt in range(NAME_ATTEMPTS)]
    since = incident.created_at.timestamp() if resume else time.time()
    posted, made = await asyncio.gather(notifier.announce(incident, pending_channel=names[0], look_first=resume),
                                        notifier.create_channel(incident, names=names, since=since))
    # The local copy drives round trip 2; the database write runs beside it.
    incident.announcement_channel, incident.announcement_ts = posted.channel, posted.ts
    incident.channel_id, incident.channel_name, incident.channel_error = made.id, made.name, made.error

    saved = _save_set_up(s, incident, announcement_error=posted.error)
    summary: Awaitable[tuple[str | None, str | None]] = (
        _post_summary(s, notifier, incident, made.id, look_first=resume) if made.id else _nothing((None, None)))
    jobs: list[Awaitable[Any]] = []
    if incident.announcement_ts:
        jobs.append(notifier.show_announcement(incident, last_update=None))
    if made.id:
        jobs += [notifier.invite(made.id, sorted({incident.reporter_id, incident.commander_id})),
                 notifier.set_topic(incident)]
    jobs.append(_page_declared(s, notifier, incident))  # levels due at once, and `inform:`
    unsaved, (summary_error, summary_unsaved), *_ = await asyncio.gather(saved, summary, *jobs)
    if s.config.incidents.update_template and not resume:  # the first status message, from the team's template
        await post_status(s, notifier, incident, [])
    await notifier.declared(incident, SetUp(announcement_error=posted.error, summary_error=summary_error,
                                            unsaved=unsaved or summary_unsaved))
    # The announcement's buttons work as soon as it is posted: a change committed meanwhile edited the
    # messages from the database, and the edits above (from this copy) may have landed after its edits.
    latest = await newer(s.db, incident=incident)
    if latest is not None:
        await refresh(s, notifier, *latest)


async def _page_declared(s: Services, notifier: IncidentNotifier, incident: Incident) -> None:
    """What the declaration claimed: its pages sent, its levels posted. Nothing here needs opsbot's database
    to post (the set-up goes on while it is away): pages that cannot be read now are sent by the paging
    timer; a failed post is logged, not retried (the declaration's own answer must not wait for it)."""
    severity = s.severity(incident)
    steps = incidents.declared_steps(s.config, incident, severity) if severity is not None else []
    if severity is None or not steps:
        return
    if s.pager is not None:
        try:
            await paging.send(s.pager, await paging.pending(s.db, subject=incidents.subject(incident)))
        except Exception as exc:  # the timer's sweep sends them (resend_stale)
            log.warning("the pages of %s are sent later: %s", incident.ref, type(exc).__name__)
    for step, policy in steps:
        try:
            await notifier.page(incident, severity, await _escalation(s, step, policy))
        except PageNotPosted as exc:
            metrics.BACKGROUND_FAILURES.labels(name="incident.escalate").inc()
            log.warning("the immediate page of %s failed: %s", incident.ref, exc.reason)


async def _escalation(s: Services, step: Step, policy: str) -> Escalation:
    if s.pager is None:
        recipients = Recipients(mentions=step.targets)
    else:
        recipients = await expand(step.targets, config=s.config, people=s.pager.people, oncall=s.pager.oncall)
    return Escalation(step=step, policy=policy, legacy=policy.startswith(LEGACY_PREFIX), recipients=recipients)


async def _nothing(value: Any) -> Any:
    return value


async def durably(what: str, write: Callable[[], Awaitable[None]]) -> str | None:
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


async def _save_set_up(s: Services, incident: Incident, *, announcement_error: str | None) -> str | None:
    announcement = ((incident.announcement_channel, incident.announcement_ts)
                    if incident.announcement_channel and incident.announcement_ts else None)

    async def write() -> None:
        async with s.db.session() as session:
            stored = await incidents.get(session, incident_id=incident.id)
            await incidents.record_set_up(session, clock=s.clock, incident=stored, announcement=announcement,
                                          announcement_error=announcement_error, channel_id=incident.channel_id,
                                          name=incident.channel_name, error=incident.channel_error)

    what = (f"{incident.ref}: announcement {announcement}, channel {incident.channel_id} "
            f"({incident.channel_name or incident.channel_error})")
    return await durably(what, write)


async def _post_summary(s: Services, notifier: IncidentNotifier, incident: Incident,
                        channel: str, *, look_first: bool = False) -> tuple[str | None, str | None]:
    """(why the summary is missing, why it is not recorded): None, None once posted, pinned and saved."""
    posted = await notifier.post_summary(incident, channel, look_first=look_first)
    if posted.ts is None:
        log.warning("the summary of %s could not be posted: %s", incident.ref, posted.error)
        return posted.error, None
    ts = posted.ts
    incident.summary_ts = ts

    async def write() -> None:
        async with s.db.session() as session:
            (await incidents.get(session, incident_id=incident.id)).summary_ts = ts

    _, unsaved = await asyncio.gather(notifier.pin(channel, ts), durably(f"{incident.ref}: summary {ts}", write))
    return None, unsaved


# -- changes ----------------------------------------------------------------------------------------
async def post_status(s: Services, notifier: IncidentNotifier, incident: Incident,
                      timeline: list[IncidentEvent]) -> None:
    """The templated status update; when the team's template fails the bundled one goes out, and the
    incident's channel is told so the first time (claimed on the incident: once, whoever posts)."""
    text, failure = incidents.render_status(s.config, incident, timeline)
    await notifier.status_update(incident, text)
    if failure is None:
        return
    try:
        _, _, first = await incidents.apply(s.db, incident_id=incident.id, mutate=lambda session, row: (
            incidents.claim_template_notice(session, clock=s.clock, incident=row, failure=failure)))
    except Exception as exc:  # the update went out; the notice waits for the next one
        log.warning("the template notice of %s is not recorded: %s", incident.ref, type(exc).__name__)
        return
    if first:
        await notifier.changed(incident, Change("template", "opsbot", failure))


async def change(s: Services, *, actor: str, action: str, incident_id: int,
                 mutate: Mutation) -> tuple[Incident, list[IncidentEvent], Any]:
    """Check `action` is allowed for `actor` in the incident's environment, then apply `mutate` (in turn with
    other changes of the incident: `incidents.apply`)."""
    async with s.db.session() as session:
        found = await incidents.get(session, incident_id=incident_id)
    await s.require(user=actor, action=action, target=found.ref, environment=found.environment)
    return await incidents.apply(s.db, incident_id=found.id, mutate=mutate)


async def refresh(s: Services, notifier: IncidentNotifier, incident: Incident, timeline: list[IncidentEvent]) -> None:
    """Edit the announcement and the pinned summary to show the current state.

    Two changes at once edit the same messages, and their edits may land in either order. So after editing,
    a newer version in the database (a change committed meanwhile, whose edit may have landed first) means
    edit again from the newest state: the edit that lands last then always shows the last change."""
    for _ in range(REFRESH_ROUNDS):
        last = last_update(timeline)
        edits: list[Awaitable[None]] = []
        if incident.announcement_channel and incident.announcement_ts:
            edits.append(notifier.show_announcement(incident, last_update=last))
        if incident.channel_id and incident.summary_ts:
            edits.append(notifier.show_summary(incident, last_update=last))
        await asyncio.gather(*edits)
        latest = await newer(s.db, incident=incident)
        if latest is None:
            return
        incident, timeline = latest


async def update(s: Services, notifier: IncidentNotifier, *, incident_id: int, actor: str, text: str,
                 status: str | None = None, impact: str | None = None, eta: str | None = None,
                 request: str | None = None) -> None:
    """A status update; `request` (the Slack interaction) makes a second run of the same request post
    nothing new."""
    incident, timeline, posted = await change(s, actor=actor, action="incident.update", incident_id=incident_id,
                                              mutate=lambda session, i: incidents.post_update(
        session, clock=s.clock, incident=i, actor=actor, text=text, status=status, impact=impact, eta=eta,
        request=request))
    if posted is None:
        log.info("update %s of %s already posted", request, incident.ref)
        return
    await asyncio.gather(post_status(s, notifier, incident, timeline),
                         refresh(s, notifier, incident, timeline))


async def acknowledge(s: Services, notifier: IncidentNotifier, *, incident_id: int, actor: str,
                      source: str | None = None) -> None:
    """`source`: the paging provider whose acknowledgement this is (no permission check: its webhook is
    signed; it is not told again)."""
    mutate: Mutation = lambda session, i: incidents.acknowledge(session, clock=s.clock, incident=i, actor=actor)  # noqa: E731
    if source is None:
        incident, timeline, _ = await change(s, actor=actor, action="incident.update", incident_id=incident_id,
                                             mutate=mutate)
    else:
        incident, timeline, _ = await incidents.apply(s.db, incident_id=incident_id, mutate=mutate)
    await asyncio.gather(notifier.changed(incident, Change("acknowledged", actor)),
                         refresh(s, notifier, incident, timeline),
                         _propagate(s, incident, "acknowledge", actor, source))


async def _propagate(s: Services, incident: Incident, action: paging.Action, actor: str, source: str | None) -> None:
    """Tell PagerDuty, Opsgenie and webhooks that were paged for the incident (never the provider that told us)."""
    if s.pager is not None:
        await paging.propagate(s.pager, subject=incidents.subject(incident), action=action, actor=actor,
                               skip=[source] if source else [])


async def change_severity(s: Services, notifier: IncidentNotifier, *, incident_id: int, actor: str,
                          severity: str) -> bool:
    """True when the new severity pages now (an unacknowledged incident raised to a level due at once)."""
    incident, timeline, old = await change(s, actor=actor, action="incident.severity", incident_id=incident_id,
                                           mutate=lambda session, i: incidents.change_severity(
        session, config=s.config, clock=s.clock, incident=i, actor=actor, severity=severity))
    await asyncio.gather(notifier.changed(incident, Change("severity", actor, old)),
                         refresh(s, notifier, incident, timeline))
    async with s.db.session() as session:
        return bool(await incidents.due_steps(session, config=s.config, incident=incident, now=s.clock()))


async def assign(s: Services, notifier: IncidentNotifier, *, incident_id: int, actor: str, commander: str) -> None:
    incident, timeline, old = await change(s, actor=actor, action="incident.assign", incident_id=incident_id,
                                           mutate=lambda session, i: incidents.assign(
        session, clock=s.clock, incident=i, actor=actor, commander_id=commander))
    if incident.channel_id:
        await notifier.invite(incident.channel_id, [incident.commander_id])
    await asyncio.gather(notifier.changed(incident, Change("commander", actor, old)),
                         refresh(s, notifier, incident, timeline))


async def resolve(s: Services, notifier: IncidentNotifier, *, incident_id: int, actor: str, summary: str,
                  source: str | None = None) -> None:
    """`source` as for `acknowledge` (a provider's resolution: no permission check or rate limit)."""
    mutate: Mutation = lambda session, i: incidents.resolve(session, clock=s.clock, incident=i, actor=actor,  # noqa: E731
                                                            summary=summary)
    if source is None:
        await s.ratelimit.check(actor, "incident.resolve")
        incident, timeline, _ = await change(s, actor=actor, action="incident.resolve", incident_id=incident_id,
                                             mutate=mutate)
    else:
        incident, timeline, _ = await incidents.apply(s.db, incident_id=incident_id, mutate=mutate)
    await asyncio.gather(post_status(s, notifier, incident, timeline),
                         refresh(s, notifier, incident, timeline),
                         notifier.resolved(incident, incidents.postmortem(s.config, incident, timeline)),
                         _propagate(s, incident, "resolve", actor, source))


# -- escalation and reminders --------------------------------------------------------------------------
async def escalate(s: Services, notifier: IncidentNotifier, incident: Incident) -> None:
    """Fire the due levels of the incident's policy, each once. They are claimed first, in turn with the users'
    changes (an acknowledgement or another run's claim that committed meanwhile wins and nobody is paged), then
    their pages are sent and the levels posted; a failed post releases its level (PageNotPosted is raised), so
    the next run tries again (its pages went once: their keys)."""
    severity = s.severity(incident)
    if severity is None:
        return
    stored, _, claimed = await incidents.apply(s.db, incident_id=incident.id, mutate=lambda session, row: (
        incidents.claim_escalation(session, config=s.config, clock=s.clock, incident=row)))
    if s.pager is not None:
        await paging.send(s.pager, [page for c in claimed for page in c.pages])
    for index, item in enumerate(claimed):
        try:
            await notifier.page(stored, severity, await _escalation(s, item.step, item.policy))
        except PageNotPosted as exc:
            await _release(s, incident, [c.step for c in claimed[index:]], exc.reason)
            raise


async def _release(s: Services, incident: Incident, steps: list[Step], reason: str) -> None:
    async def release(session: Any, row: Incident) -> None:
        for step in steps:
            await incidents.release_escalation(session, clock=s.clock, incident=row, step=step, reason=reason)

    await incidents.apply(s.db, incident_id=incident.id, mutate=release)


async def escalate_now(s: Services, notifier: IncidentNotifier, *, incident_id: int) -> None:
    async with s.db.session() as session:
        incident = await incidents.get(session, incident_id=incident_id)
    await escalate(s, notifier, incident)


async def remind(s: Services, notifier: IncidentNotifier, incident: Incident) -> None:
    last = max(t for t in (incident.created_at, incident.last_update_at) if t)
    await notifier.remind(incident, quiet_for=incidents.age(last, s.clock()))
    await incidents.apply(s.db, incident_id=incident.id, mutate=lambda session, stored: incidents.mark_reminded(
        session, clock=s.clock, incident=stored))


async def run_timers(s: Services, notifier: IncidentNotifier) -> None:
    """Escalations and reminders that are due: everything is derived from the database and the clock."""
    now = s.clock()
    async with s.db.session() as session:
        escalations = await incidents.due_escalations(session, config=s.config, now=now)
        reminders = await incidents.due_reminders(session, config=s.config, now=now)
    await _each(s, notifier, escalate, escalations)
    await _each(s, notifier, remind, reminders)


async def run_escalations(s: Services, notifier: IncidentNotifier) -> None:
    """Only the escalations (the paging timer's share)."""
    async with s.db.session() as session:
        due = await incidents.due_escalations(session, config=s.config, now=s.clock())
    await _each(s, notifier, escalate, due)


async def _each(s: Services, notifier: IncidentNotifier,
                job: Callable[[Services, IncidentNotifier, Incident], Awaitable[None]], rows: list[Incident]) -> None:
    for incident in rows:
        try:
            await job(s, notifier, incident)
        except Exception:  # one failing incident must not stop the others
            metrics.BACKGROUND_FAILURES.labels(name=f"job:incidents.{job.__name__}").inc()
            log.exception("%s of %s failed", job.__name__, incident.ref)
