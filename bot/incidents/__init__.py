"""Incidents: declare, acknowledge, update, change severity or commander, resolve, and the timers.

Keyword-only verbs on an AsyncSession; no Slack types. What the verbs do end to end (their transactions,
and telling people through a notifier) is in `bot.incidents.flows`. Every change is a timeline entry (and an audit
entry) through `bot.timeline.add_event`, in the caller's transaction.

Changes of one incident take turns: `apply` runs a verb in a transaction whose first write is the incident's
version bump (`lock`), so a second change waits for the first to commit, then reads what it did, and the
verb's own checks (already resolved, already acknowledged, already that severity) raise `AlreadyDone` naming
who did it and when. A lock rather than compare-and-set with retries because it holds as is on both
backends: PostgreSQL's UPDATE takes the row lock, and on SQLite a transaction whose first statement writes
waits for the write lock (busy_timeout) instead of failing as a read upgraded after another commit would."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.config import Config, Severity
from bot.db import Database
from bot.durations import format_duration
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import Incident, IncidentEvent
from bot.paging import escalation
from bot.paging import flows as paging_flows
from bot.paging.escalation import Step
from bot.templates import render
from bot.timeline import OPEN, add_event

log = logging.getLogger(__name__)
STATUSES = ("investigating", "identified", "mitigating", "monitoring", "resolved")
RESOLVED = "resolved"
MAX_TITLE = 200
CHANNEL_MAX = 80
_REF = re.compile(r"^(?:inc-?|#)?(\d{1,9})$", re.IGNORECASE)
_SLUG = re.compile(r"[^a-z0-9]+")


# -- pure helpers ---------------------------------------------------------------------------
def parse_ref(text: str) -> int | None:
    """`INC-42`, `inc-42`, `#42` or `42` → 42; anything else → None."""
    match = _REF.match(text.strip())
    return int(match.group(1)) if match else None


def parse_status(text: str) -> str | None:
    lowered = text.strip().lower()
    return lowered if lowered in STATUSES else None


def channel_name(prefix: str, incident_id: int, title: str, attempt: int = 0) -> str:
    """`inc-42-checkout-is-down`: lowercase, ≤ 80 characters; `attempt` > 0 adds `-2`, `-3`… for collisions."""
    title = re.sub(r"&(?:amp|lt|gt);", " ", title)  # Slack-escaped &, <, >
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()  # é → e
    slug = _SLUG.sub("-", ascii_title.lower()).strip("-")
    suffix = f"-{attempt + 1}" if attempt else ""
    base = f"{prefix}-{incident_id}" + (f"-{slug}" if slug else "")
    return base[: CHANNEL_MAX - len(suffix)].rstrip("-_") + suffix


def remind_interval(config: Config, severity: str) -> timedelta | None:
    """The severity's `remind_after`, else `incidents.remind_after` for the two most severe levels."""
    try:
        level = config.severity(severity)
    except NotFound:
        return None
    if level.remind_after is not None:
        return level.remind_after if level.remind_after > timedelta(0) else None
    return config.incidents.remind_after if config.severity_rank(severity) < 2 else None


def describe_response(severity: Severity) -> str:
    return "immediately" if severity.immediate else f"within {format_duration(severity.response)}"


def age(since: datetime, now: datetime) -> str:
    """`<1m`, `5m`, `1h 30m`, `2d 4h`: how long ago, for people."""
    elapsed = max(now - since, timedelta(0))
    return "<1m" if elapsed < timedelta(minutes=1) else format_duration(elapsed)


class AlreadyDone(Conflict):
    """Someone else made this change first (a second press changes nothing): who, and when."""

    def __init__(self, ref: str, done: str, *, actor: str, at: datetime, now: datetime) -> None:
        self.ref, self.done, self.actor, self.at = ref, done, actor, at
        who = "opsbot" if actor == "opsbot" else f"<@{actor}>"
        when = "just now" if now - at < timedelta(minutes=1) else f"{age(at, now)} ago"
        super().__init__(f"{ref} was already {done} by {who} {when}.")


# -- declaring ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Declaration:
    """What a user asked for, from a command, a modal or another feature."""

    title: str
    severity: str
    reporter_id: str
    commander_id: str | None = None
    service: str | None = None
    environment: str | None = None
    impact: str | None = None
    description: str | None = None
    source_link: str | None = None
    eta: str | None = None


async def by_dedup_key(session: AsyncSession, *, dedup_key: str) -> Incident | None:
    return (await session.scalars(select(Incident).where(Incident.dedup_key == dedup_key))).first()


async def declare(session: AsyncSession, *, config: Config, clock: Clock, request: Declaration,
                  dedup_key: str | None) -> tuple[Incident, bool]:
    """Store a new incident; (incident, created). A known `dedup_key` returns the earlier one instead.

    Two concurrent declarations with one key: the loser's flush raises IntegrityError (unique key);
    callers retry with `by_dedup_key` in a new session."""
    if dedup_key:
        existing = await by_dedup_key(session, dedup_key=dedup_key)
        if existing is not None:
            return existing, False
    title = " ".join(request.title.split())
    if not title:
        raise InvalidInput("An incident needs a title, e.g. `/incident open P1 Checkout is down`.")
    level = config.severity(request.severity)
    severity = level.name
    now = clock()
    incident = Incident(
        title=title[:MAX_TITLE], severity=severity, status=STATUSES[0], service=_clean(request.service, 255),
        environment=_clean(request.environment, 64), impact=_clean(request.impact),
        eta=_clean(request.eta, 255),
        description=_clean(request.description), reporter_id=request.reporter_id,
        commander_id=request.commander_id or request.reporter_id, source_link=_clean(request.source_link, 1024),
        dedup_key=dedup_key, created_at=now,
    )
    session.add(incident)
    await session.flush()
    await add_event(session, clock=clock, incident_id=incident.id, actor=request.reporter_id, kind="declared",
                    text=f"{severity} declared: {incident.title}",
                    data={"severity": severity, "commander": incident.commander_id})
    # Levels due at once (an immediate severity, a policy's first level) and `inform:` are claimed here,
    # atomically with the incident: the timer job must not page again. The set-up sends them.
    await claim_escalation(session, config=config, clock=clock, incident=incident)
    if level.inform:
        await paging_flows.claim(session, config=config, clock=clock, subject=subject(incident),
                                 policy=escalation.INFORM, step=Step(escalation.INFORM_CYCLE, 0, tuple(level.inform),
                                                                     now),
                                 requested_by=request.reporter_id, message=_page_text(incident, level))
        await add_event(session, clock=clock, incident_id=incident.id, actor="opsbot", kind="escalated",
                        text=f"Informed {', '.join(level.inform)} (declared {severity})",
                        data={"targets": level.inform, "policy": escalation.INFORM, "cycle": escalation.INFORM_CYCLE,
                              "level": 0})
    return incident, True


def _clean(value: str | None, limit: int | None = None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    return value[:limit] if limit else value


# -- lookups -------------------------------------------------------------------------------------
async def get(session: AsyncSession, *, incident_id: int) -> Incident:
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise await unknown(session, incident_id)
    return incident


async def unknown(session: AsyncSession, incident_id: int) -> NotFound:
    """No incident has this number: the error names the open ones (a resolved one is still found by its id)."""
    query = select(Incident.id).where(Incident.status.in_(OPEN)).order_by(Incident.id).limit(20)
    refs = [f"INC-{number}" for number in (await session.scalars(query)).all()]
    return NotFound("incident", f"INC-{incident_id}", refs, label="Open incidents", none="none")


async def find(session: AsyncSession, *, ref: str | None, channel_id: str | None) -> Incident:
    """The incident named by `ref`, else the one whose dedicated channel is `channel_id` (latest first)."""
    if ref:
        number = parse_ref(ref)
        if number is None:
            raise InvalidInput(f"`{ref}` is not an incident id (use e.g. `INC-42`).")
        return await get(session, incident_id=number)
    if channel_id:
        query = select(Incident).where(Incident.channel_id == channel_id).order_by(Incident.id.desc()).limit(1)
        found = (await session.scalars(query)).first()
        if found is not None:
            return found
    raise InvalidInput("Run this in an incident channel, or name the incident (e.g. `INC-42`).")


async def list_open(session: AsyncSession, *, config: Config) -> list[Incident]:
    """Open incidents, most severe first, then oldest first."""
    rows = list((await session.scalars(select(Incident).where(Incident.status.in_(OPEN)))).all())
    return sorted(rows, key=lambda i: (config.severity_rank(i.severity), i.created_at, i.id))


async def events(session: AsyncSession, *, incident_id: int) -> list[IncidentEvent]:
    query = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id)
    return list((await session.scalars(query.order_by(IncidentEvent.at, IncidentEvent.id))).all())


async def last_event(session: AsyncSession, *, incident_id: int, kinds: tuple[str, ...]) -> IncidentEvent | None:
    query = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind.in_(kinds))
    return (await session.scalars(query.order_by(IncidentEvent.id.desc()).limit(1))).first()


async def _done_by(session: AsyncSession, incident: Incident, done: str, kinds: tuple[str, ...],
                   now: datetime) -> AlreadyDone:
    event = await last_event(session, incident_id=incident.id, kinds=kinds)
    actor, at = (event.actor, event.at) if event is not None else ("opsbot", incident.created_at)
    return AlreadyDone(incident.ref, done, actor=actor, at=at, now=now)


async def require_open(session: AsyncSession, *, clock: Clock, incident: Incident) -> None:
    """AlreadyDone (naming who resolved it) unless the incident is open."""
    if incident.status not in OPEN:
        raise await _done_by(session, incident, RESOLVED, ("resolved",), clock())


# -- taking turns --------------------------------------------------------------------------------
Mutation = Callable[[AsyncSession, Incident], Awaitable[Any]]


async def lock(session: AsyncSession, *, incident_id: int) -> Incident:
    """Bump the incident's version as this transaction's first write, then read it.

    The bump holds the row (PostgreSQL) or the database's write lock (SQLite) until commit: a concurrent
    change waits here and then reads the committed result, never a state from before it."""
    bumped = await session.execute(update(Incident).where(Incident.id == incident_id)
                                   .values(version=Incident.version + 1)
                                   .execution_options(synchronize_session=False))
    if bumped.rowcount == 0:  # type: ignore[attr-defined]
        raise await unknown(session, incident_id)
    incident = await session.get(Incident, incident_id, populate_existing=True)
    assert incident is not None
    return incident


async def apply(db: Database, *, incident_id: int, mutate: Mutation) -> tuple[Incident, list[IncidentEvent], Any]:
    """Run `mutate` on the locked incident in one transaction: (incident, timeline, what mutate returned)."""
    async with db.session() as session:
        incident = await lock(session, incident_id=incident_id)
        result = await mutate(session, incident)
        timeline = await events(session, incident_id=incident_id)
    return incident, timeline, result


async def newer(session: AsyncSession, *, incident_id: int,
                version: int) -> tuple[Incident, list[IncidentEvent]] | None:
    """The incident and its timeline when a change after `version` committed, else None."""
    current = await session.scalar(select(Incident.version).where(Incident.id == incident_id))
    if current is None or current == version:
        return None
    return await get(session, incident_id=incident_id), await events(session, incident_id=incident_id)


# -- changes ---------------------------------------------------------------------------------------
async def acknowledge(session: AsyncSession, *, clock: Clock, incident: Incident, actor: str) -> None:
    """AlreadyDone when it was acknowledged already. Only an explicit acknowledgement (the button, `/incident
    ack`, a paging provider's) stops the escalation; posting an update does not."""
    await require_open(session, clock=clock, incident=incident)
    if incident.acknowledged_at is not None:
        raise AlreadyDone(incident.ref, "acknowledged", actor=incident.acknowledged_by or "opsbot",
                          at=incident.acknowledged_at, now=clock())
    incident.acknowledged_at, incident.acknowledged_by = clock(), actor[:32]
    await add_event(session, clock=clock, incident_id=incident.id, actor=actor[:64], kind="acknowledged",
                    text="Acknowledged")


async def post_update(session: AsyncSession, *, clock: Clock, incident: Incident, actor: str, text: str,
                      status: str | None = None, impact: str | None = None,
                      eta: str | None = None, request: str | None = None) -> IncidentEvent | None:
    """A status update; `status`, `impact` and `eta` change the incident when given. Not for resolving.

    `request` names the Slack interaction: when an update of that request is on the timeline already (its
    job ran again after a crash), nothing changes and None is returned."""
    await require_open(session, clock=clock, incident=incident)
    if request and await _posted_by(session, incident_id=incident.id, request=request):
        return None
    text = text.strip()
    if status is not None and parse_status(status) is None:
        raise InvalidInput(f"Unknown status `{status}`. Valid statuses: {', '.join(STATUSES)}.")
    if status == RESOLVED:
        raise InvalidInput("Use `/incident resolve <summary>` to resolve.")
    if not text and status is None and impact is None and eta is None:
        raise InvalidInput("An update needs some text, e.g. `/incident update identified Bad deploy of api`.")
    before = {"status": incident.status, "impact": incident.impact, "eta": incident.eta}
    if status:
        incident.status = status
    if impact is not None:
        incident.impact = _clean(impact)
    if eta is not None:
        incident.eta = _clean(eta, 255)
    now = clock()
    incident.last_update_at = now
    return await add_event(session, clock=clock, incident_id=incident.id, actor=actor, kind="update",
                           text=text or f"Status: {incident.status}",
                           data={"status": status, "impact": impact, "eta": eta, "before": before,
                                 **({"request": request} if request else {})})


async def _posted_by(session: AsyncSession, *, incident_id: int, request: str) -> bool:
    query = select(IncidentEvent.data).where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == "update")
    return any(isinstance(data, dict) and data.get("request") == request for data in (await session.scalars(query)))


async def change_severity(session: AsyncSession, *, config: Config, clock: Clock, incident: Incident,
                          actor: str, severity: str) -> str:
    """Returns the previous severity. An unacknowledged incident may escalate again, to the new level's
    targets, once the new level's response time (counted from the declaration) has passed."""
    await require_open(session, clock=clock, incident=incident)
    new = config.severity(severity).name
    old = incident.severity
    if new == old:
        raise await _done_by(session, incident, f"set to {new}", ("declared", "severity"), clock())
    incident.severity = new
    if incident.acknowledged_at is None:  # the new severity's escalation starts over (counted from declaration)
        incident.escalated_at = None
        await paging_flows.forget(session, subject=subject(incident))
    await add_event(session, clock=clock, incident_id=incident.id, actor=actor, kind="severity",
                    text=f"Severity {old} → {new}", data={"from": old, "to": new})
    return old


async def assign(session: AsyncSession, *, clock: Clock, incident: Incident, actor: str, commander_id: str) -> str:
    """Make `commander_id` the incident commander; returns the previous one."""
    await require_open(session, clock=clock, incident=incident)
    old = incident.commander_id
    if commander_id == old:
        raise await _done_by(session, incident, f"assigned to <@{old}>", ("declared", "commander"), clock())
    incident.commander_id = commander_id
    await add_event(session, clock=clock, incident_id=incident.id, actor=actor, kind="commander",
                    text=f"Commander <@{old}> → <@{commander_id}>", data={"from": old, "to": commander_id})
    return old


async def resolve(session: AsyncSession, *, clock: Clock, incident: Incident, actor: str, summary: str) -> None:
    await require_open(session, clock=clock, incident=incident)
    summary = summary.strip()
    if not summary:
        raise InvalidInput("Say how it was resolved: `/incident resolve Rolled back api to v1.4.2`.")
    now = clock()
    incident.status, incident.resolved_at, incident.resolution = RESOLVED, now, summary
    incident.last_update_at = now
    await add_event(session, clock=clock, incident_id=incident.id, actor=actor, kind="resolved", text=summary,
                    data={"duration": age(incident.created_at, now)})


async def record_channel(session: AsyncSession, *, clock: Clock, incident: Incident, channel_id: str | None,
                         name: str | None, error: str | None) -> None:
    incident.channel_id, incident.channel_name, incident.channel_error = channel_id, name, error
    text = f"Channel #{name} created" if channel_id else f"Channel could not be created ({error})"
    await add_event(session, clock=clock, incident_id=incident.id, actor="opsbot", kind="channel", text=text,
                    data={"channel": channel_id, "name": name, "error": error})


async def record_set_up(session: AsyncSession, *, clock: Clock, incident: Incident,
                        announcement: tuple[str, str] | None, announcement_error: str | None,
                        channel_id: str | None, name: str | None, error: str | None) -> None:
    """What Slack made for a new incident: the announcement (channel, ts) and the incident channel, or why
    not. Safe to repeat (a write retried after its commit's answer was lost adds no second timeline entry)."""
    incident.announcement_channel, incident.announcement_ts = announcement or (None, None)
    kinds = set((await session.scalars(select(IncidentEvent.kind).where(
        IncidentEvent.incident_id == incident.id, IncidentEvent.kind.in_(("channel", "announcement"))))).all())
    if "channel" in kinds:
        incident.channel_id, incident.channel_name, incident.channel_error = channel_id, name, error
    else:
        await record_channel(session, clock=clock, incident=incident, channel_id=channel_id, name=name, error=error)
    if announcement_error and "announcement" not in kinds:
        await add_event(session, clock=clock, incident_id=incident.id, actor="opsbot", kind="announcement",
                        text=f"Announcement could not be posted ({announcement_error})",
                        data={"error": announcement_error})


# -- timers -------------------------------------------------------------------------------------
def subject(incident: Incident) -> str:
    """The escalation subject of an incident (EscalationStep, Page)."""
    return f"incident:{incident.id}"


@dataclass(frozen=True)
class Claimed:
    """A step claimed for an incident: what to post, and the pages to send once committed."""

    step: Step
    policy: str
    legacy: bool
    pages: list[int]


def policy_of(config: Config, incident: Incident) -> escalation.Resolved | None:
    try:
        level = config.severity(incident.severity)
    except NotFound:
        return None
    return escalation.for_severity(config, level)


def declared_steps(config: Config, incident: Incident, level: Severity) -> list[tuple[Step, str]]:
    """What `declare` claimed, without the database: the levels due at once, and `inform:`."""
    found: list[tuple[Step, str]] = []
    resolved = escalation.for_severity(config, level)
    if resolved is not None:
        found += [(step, resolved.name) for step in escalation.due_steps(
            resolved.policy, incident.created_at, incident.created_at, set(), acknowledged=False)]
    if level.inform:
        found.append((Step(escalation.INFORM_CYCLE, 0, tuple(level.inform), incident.created_at), escalation.INFORM))
    return found


async def due_steps(session: AsyncSession, *, config: Config, incident: Incident, now: datetime) -> list[Step]:
    """The levels of the incident's policy due now (none once acknowledged or resolved)."""
    resolved = policy_of(config, incident)
    if resolved is None or incident.status not in OPEN:
        return []
    done = await paging_flows.fired(session, subject=subject(incident))
    return escalation.due_steps(resolved.policy, incident.created_at, now, done,
                                acknowledged=incident.acknowledged_at is not None)


async def due_escalations(session: AsyncSession, *, config: Config, now: datetime) -> list[Incident]:
    """Open, unacknowledged incidents with a level of their policy due."""
    query = select(Incident).where(Incident.status.in_(OPEN), Incident.acknowledged_at.is_(None))
    return [incident for incident in (await session.scalars(query)).all()
            if await due_steps(session, config=config, incident=incident, now=now)]


def _page_text(incident: Incident, level: Severity) -> str:
    return (f"{incident.ref} ({level.name}): {incident.title}\n{level.description}".strip()
            + f"\nCommander: {incident.commander_id}")


async def claim_escalation(session: AsyncSession, *, config: Config, clock: Clock, incident: Incident) -> list[Claimed]:
    """Record the due levels before they are posted, on the locked incident: nothing (no record) when an
    acknowledgement, a resolution or another run's claim committed first, so nobody is paged for nothing."""
    resolved = policy_of(config, incident)
    steps = await due_steps(session, config=config, incident=incident, now=clock())
    if resolved is None or not steps:
        return []
    level = config.severity(incident.severity)
    claimed = []
    for step in steps:
        pages = await paging_flows.claim(session, config=config, clock=clock, subject=subject(incident),
                                         policy=resolved.name, step=step, requested_by="opsbot",
                                         message=_page_text(incident, level))
        claimed.append(Claimed(step, resolved.name, resolved.legacy, [p.id for p in pages]))
        await mark_escalated(session, clock=clock, incident=incident, targets=list(step.targets),
                             why=_why(resolved, step, level), step=step, policy=resolved.name)
    return claimed


def _why(resolved: escalation.Resolved, step: Step, level: Severity) -> str:
    if resolved.legacy:
        return "immediate response" if level.immediate else "not acknowledged within the response time"
    where = f"level {step.level + 1} of {resolved.name}" + (f", round {step.cycle + 1}" if step.cycle else "")
    return where if step.first else f"{where}: not acknowledged"


async def mark_escalated(session: AsyncSession, *, clock: Clock, incident: Incident, targets: list[str], why: str,
                         step: Step, policy: str) -> None:
    incident.escalated_at = incident.escalated_at or clock()
    await add_event(session, clock=clock, incident_id=incident.id, actor="opsbot", kind="escalated",
                    text=f"Escalated to {', '.join(targets)} ({why})",
                    data={"targets": targets, "policy": policy, "cycle": step.cycle, "level": step.level})


async def release_escalation(session: AsyncSession, *, clock: Clock, incident: Incident, step: Step,
                             reason: str) -> None:
    """The escalation's post failed: the level is due again (the timer retries), and the timeline says so."""
    await paging_flows.release(session, subject=subject(incident), step=step)
    if not await paging_flows.fired(session, subject=subject(incident)):
        incident.escalated_at = None
    await add_event(session, clock=clock, incident_id=incident.id, actor="opsbot", kind="escalation_failed",
                    text=f"Escalation could not be posted ({reason}); it is retried")


async def due_reminders(session: AsyncSession, *, config: Config, now: datetime) -> list[Incident]:
    """Open incidents whose severity reminds, with no update (or reminder) for that interval."""
    due = []
    for incident in (await session.scalars(select(Incident).where(Incident.status.in_(OPEN)))).all():
        interval = remind_interval(config, incident.severity)
        if interval is None:
            continue
        last = max(t for t in (incident.created_at, incident.last_update_at, incident.last_reminder_at) if t)
        if now - last >= interval:
            due.append(incident)
    return due


async def mark_reminded(session: AsyncSession, *, clock: Clock, incident: Incident) -> None:
    incident.last_reminder_at = clock()
    await add_event(session, clock=clock, incident_id=incident.id, actor="opsbot", kind="reminder",
                    text="Reminded the commander to post an update")


# -- text from templates -----------------------------------------------------------------------------
def template_context(config: Config, incident: Incident, timeline: list[IncidentEvent]) -> dict[str, Any]:
    """What templates see: plain values only (the sandbox never gets ORM objects or the config)."""
    try:
        level = config.severity(incident.severity)
        severity = {"name": level.name, "label": level.label, "shown": level.shown, "description": level.description,
                    "response": describe_response(level)}
    except NotFound:
        severity = {"name": incident.severity, "label": "", "shown": incident.severity, "description": "",
                    "response": ""}
    fields = ("id", "title", "severity", "status", "service", "environment", "impact", "description", "eta",
              "reporter_id", "commander_id", "source_link", "channel_id", "channel_name", "created_at",
              "acknowledged_at", "acknowledged_by", "resolved_at", "resolution")
    data = {name: getattr(incident, name) for name in fields}
    data["ref"] = incident.ref
    updates = [{"at": e.at, "actor": e.actor if e.actor != "opsbot" else None, "text": e.text,
                "status": RESOLVED if e.kind == "resolved" else (e.data or {}).get("status")}
               for e in timeline if e.kind in ("update", "resolved")]
    if config.incidents.update_template:  # the first status message, posted from it at declaration
        updates.insert(0, {"at": incident.created_at, "actor": None, "text": initial_update(incident),
                           "status": STATUSES[0]})
    entries = [{"at": e.at, "actor": e.actor if e.actor != "opsbot" else None, "kind": e.kind, "text": e.text}
               for e in timeline if e.kind != TEMPLATE_FAILED]
    end = incident.resolved_at
    return {"incident": data, "severity": severity, "updates": updates, "events": entries,
            "duration": age(incident.created_at, end) if end else None}


INITIAL_UPDATE = "Initial alert received"
TEMPLATE_FAILED = "template_failed"  # the timeline entry that says the team's template failed (told once)


def initial_update(incident: Incident) -> str:
    """The first status message's text: the declaration's description (its first line), else the runbook's
    "Initial alert received"."""
    first = (incident.description or "").strip().splitlines()
    return first[0][:300] if first else INITIAL_UPDATE


def render_status(config: Config, incident: Incident, timeline: list[IncidentEvent]) -> tuple[str, str | None]:
    """The status update message from `incidents.update_template` (else the bundled template), and why the
    team's template failed when it did (the bundled one was used: an update must still go out)."""
    context = template_context(config, incident, timeline)
    custom = config.incidents.update_template
    failure = None
    if custom:
        try:
            return render(custom, context, builtin=False), None
        except ValueError as exc:
            failure = str(exc).removeprefix("template failed: ")
            log.warning("incidents.update_template failed (%s); using the default template", failure)
    return render("status_update.md.j2", context), failure


def status_text(config: Config, incident: Incident, timeline: list[IncidentEvent]) -> str:
    """The status update message, from `incidents.update_template` or the bundled template."""
    return render_status(config, incident, timeline)[0]


async def claim_template_notice(session: AsyncSession, *, clock: Clock, incident: Incident, failure: str) -> bool:
    """True the first time the team's template failed for this incident (on the locked incident): the
    incident channel is told once, not on every update."""
    if await last_event(session, incident_id=incident.id, kinds=(TEMPLATE_FAILED,)) is not None:
        return False
    await add_event(session, clock=clock, incident_id=incident.id, actor="opsbot", kind=TEMPLATE_FAILED,
                    text=f"incidents.update_template failed ({failure[:300]}); the bundled template was used")
    return True


def postmortem(config: Config, incident: Incident, timeline: list[IncidentEvent]) -> str:
    return render("postmortem.md.j2", template_context(config, incident, timeline))
