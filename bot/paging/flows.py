"""Escalation steps and pages, stored once and delivered one job each. No Slack types.

- A due step is claimed by inserting its EscalationStep row (unique per subject, round and level) in the
  caller's transaction: the incident's (or alert's) lock makes the read of what fired and the insert one
  turn, so a step fires once across retries, restarts and replicas. Its provider targets become Page rows
  in the same transaction (unique `key`), then one `paging.deliver` job each is deferred.
- `deliver` sends one page through its provider: transient failures (no answer, 5xx, 429) are retried with
  backoff up to `paging.retries` times, a refusal is final; every attempt is counted on the row, the outcome
  is audited (and on the incident's timeline), and a final failure is told through the notifier.
- `propagate` tells the providers that know an open page (PagerDuty, Opsgenie, webhooks) that its subject
  was acknowledged or resolved: one more Page row and job per delivered trigger."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.clock import Clock
from bot.config import Config
from bot.config.targets import Target
from bot.db import Database
from bot.errors import Conflict, InvalidInput, OpsbotError
from bot.jobs import is_transient
from bot.models import AlertState, EscalationStep, Incident, Page, PendingAction
from bot.paging import STATEFUL, OncallLookup, People, Recipients, dedup_key, expand, provider_targets
from bot.paging.escalation import Step
from bot.paging.providers.base import Action, Notice, PageRejected, Provider, Throttled
from bot.timeline import add_event

log = logging.getLogger(__name__)
DELIVER_JOB = "paging.deliver"
FIRST_BACKOFF, MAX_BACKOFF = 0.2, 30.0  # seconds between a page's attempts (doubled each time)
ERROR_MAX = 500
Defer = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class PageNotifier(Protocol):
    async def page_failed(self, page: Page, notice: Notice) -> None:
        """A page failed for good: say so where its subject lives (the incident channel, #alerts, a DM)."""
        ...


@dataclass(frozen=True)
class Pager:
    """What escalation and delivery use besides a notifier; no Slack in it."""

    db: Database
    config: Config
    clock: Clock
    people: People
    oncall: OncallLookup
    defer: Defer
    scrub: Callable[[str], str] = str


# -- steps -------------------------------------------------------------------------------------------
async def fired(session: AsyncSession, *, subject: str) -> set[tuple[int, int]]:
    rows = await session.execute(select(EscalationStep.cycle, EscalationStep.level)
                                 .where(EscalationStep.subject == subject))
    return {(cycle, level) for cycle, level in rows.all()}


async def claim(session: AsyncSession, *, config: Config, clock: Clock, subject: str, policy: str, step: Step,
                requested_by: str, message: str, dedup: str | None = None) -> list[Page]:
    """Record `step` as fired, and its provider pages; the caller holds the subject's lock and checked that
    the step has not fired (`fired`). Returns the new pages (deliver them once the transaction commits)."""
    session.add(EscalationStep(subject=subject, policy=policy, cycle=step.cycle, level=step.level,
                               fired_at=clock(), targets=list(step.targets)))
    await session.flush()
    return await add_pages(session, config=config, clock=clock, subject=subject, step=f"{step.cycle}.{step.level}",
                           targets=provider_targets(config, step.targets), action="trigger",
                           requested_by=requested_by, message=message, dedup=dedup)


async def release(session: AsyncSession, *, subject: str, step: Step) -> None:
    """The step's Slack post failed: it is due again (its pages stay: their keys make them go once)."""
    await session.execute(delete(EscalationStep).where(EscalationStep.subject == subject,
                                                       EscalationStep.cycle == step.cycle,
                                                       EscalationStep.level == step.level))


async def forget(session: AsyncSession, *, subject: str) -> None:
    """Start the subject's escalation over (an incident's new severity, an alert firing again); the `inform`
    step at declaration stays."""
    await session.execute(delete(EscalationStep).where(EscalationStep.subject == subject,
                                                       EscalationStep.cycle >= 0))


async def add_pages(session: AsyncSession, *, config: Config, clock: Clock, subject: str, step: str,
                    targets: Sequence[Target], action: Action, requested_by: str, message: str,
                    dedup: str | None = None) -> list[Page]:
    """One Page per target, unless one with its key exists (a run repeated): the new ones. `dedup`: the
    provider-side key (default: the subject's, `dedup_key`)."""
    keys = {f"{subject}/{step}/{target}/{action}"[:255]: target for target in targets}
    if not keys:
        return []
    known = set((await session.scalars(select(Page.key).where(Page.key.in_(list(keys))))).all())
    pages = [Page(key=key, subject=subject, target=str(target), provider=target.kind, action=action,
                  dedup_key=dedup or dedup_key(subject), status="pending", attempts=0, requested_by=requested_by[:64],
                  message=message, created_at=clock())
             for key, target in keys.items() if key not in known]
    session.add_all(pages)
    await session.flush()
    return pages


async def send(pager: Pager, pages: Iterable[Page | int]) -> None:
    """Defer one delivery job per page (each page once: a second job finds it delivered)."""
    for page in pages:
        page_id = page if isinstance(page, int) else page.id
        await pager.defer(DELIVER_JOB, {"page_id": page_id})


async def pending(db: Database, *, subject: str) -> list[int]:
    """Pages of `subject` not delivered yet (a set-up resumed after a crash sends them)."""
    async with db.session() as session:
        query = select(Page.id).where(Page.subject == subject, Page.status == "pending", Page.attempts == 0)
        return list((await session.scalars(query)).all())


async def resend_stale(pager: Pager, *, older_than: timedelta) -> int:
    """Pages never attempted `older_than` after they were stored (their job was lost between the commit and
    the defer: the process died): deferred again. A job still waiting makes the copy a no-op (its key)."""
    async with pager.db.session() as session:
        query = select(Page.id).where(Page.status == "pending", Page.attempts == 0,
                                      Page.created_at < pager.clock() - older_than)
        ids = list((await session.scalars(query)).all())
    await send(pager, ids)
    return len(ids)


async def propagate(pager: Pager, *, subject: str, action: Action, actor: str, skip: Iterable[str] = ()) -> int:
    """Acknowledge or resolve, at every stateful provider that got a trigger for `subject`; `skip`: providers
    that told us (PagerDuty's own acknowledgement is not sent back to it). Returns the pages deferred."""
    skipped = set(skip)
    async with pager.db.session() as session:
        query = select(Page).where(Page.subject == subject, Page.action == "trigger",
                                   Page.status.in_(("delivered", "pending")), Page.provider.in_(STATEFUL))
        triggers = [p for p in (await session.scalars(query)).all() if p.provider not in skipped]
        done = "acknowledged" if action == "acknowledge" else "resolved"
        pages: list[Page] = []
        for key in dict.fromkeys(p.dedup_key or dedup_key(subject) for p in triggers):
            targets = list({p.target: _target(p) for p in triggers if (p.dedup_key or dedup_key(subject)) == key}
                           .values())
            pages += await add_pages(session, config=pager.config, clock=pager.clock, subject=subject,
                                     step=f"{action}:{key}", targets=targets, action=action, requested_by=actor,
                                     message=f"{done.capitalize()} by {actor} in opsbot", dedup=key)
    await send(pager, pages)
    return len(pages)


def _target(page: Page) -> Target:
    kind, _, name = page.target.partition(":")
    return Target(page.provider, name if kind == page.provider else page.target)  # type: ignore[arg-type]


# -- delivery ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    status: str  # delivered | failed | skipped
    attempts: int
    error: str | None = None


async def notice_for(session: AsyncSession, config: Config, page: Page) -> Notice:
    """What a page says, from its subject as stored now."""
    kind, _, rest = page.subject.partition(":")
    title, severity, urgent, link = page.subject, "page", True, None
    details: dict[str, str] = {"subject": page.subject}
    if kind == "incident" and rest.isdecimal():
        incident = await session.get(Incident, int(rest))
        if incident is not None:
            title = f"{incident.ref} · {incident.severity} · {incident.title}"
            severity = incident.severity
            urgent = config.severity_rank(incident.severity) == 0
            link = f"https://slack.com/app_redirect?channel={incident.channel_id}" if incident.channel_id else None
            details.update({"incident": incident.ref, "status": incident.status,
                            "commander": incident.commander_id})
    elif kind == "alert" and rest.isdecimal():
        row = await session.get(AlertState, int(rest))
        severity = row.level if row is not None and row.level else "critical"
        urgent = severity == "critical"
        name = row.rule if row is not None else rest
        title = f"Alert {name} ({severity})" + (f": {row.summary}" if row is not None and row.summary else "")
        details["rule"] = name
    elif kind == "manual":
        title = f"Page from opsbot: {page.message.splitlines()[0][:100] if page.message else rest}"
        severity = "manual"
    return Notice(subject=page.subject, dedup_key=page.dedup_key or dedup_key(page.subject),
                  action=page.action, title=title, severity=severity, urgent=urgent,  # type: ignore[arg-type]
                  text=page.message, link=link, details=details)


async def deliver(pager: Pager, notifier: PageNotifier, providers: Mapping[str, Provider], *,
                  page_id: int) -> Outcome:
    """Send page `page_id` until it is delivered, refused, or out of attempts (1 + paging.retries)."""
    retries = pager.config.paging.retries
    delay = FIRST_BACKOFF
    while True:
        async with pager.db.session() as session:
            page = await session.get(Page, page_id)
            if page is None or page.status != "pending":
                return Outcome("skipped", page.attempts if page else 0)
            notice = await notice_for(session, pager.config, page)
            provider = providers.get(page.provider)
            name = _target(page).name
        error: str | None = None
        final = False
        reference = None
        wait: float | None = None
        try:
            if provider is None:
                raise PageRejected(f"{page.provider} is not set up (paging.{page.provider})")
            reference = (await provider.send(name, notice)).reference
        except PageRejected as exc:
            error, final = pager.scrub(str(exc)), True
        except Throttled as exc:  # 429: wait as long as the provider asked (within reason)
            error, wait = pager.scrub(str(exc)), exc.retry_after
        except Exception as exc:
            error = pager.scrub(str(exc) if isinstance(exc, OpsbotError) else type(exc).__name__)
            if not is_transient(exc):
                log.exception("page %s to %s failed", page_id, page.target)
                final = True
        outcome = await _record(pager, page_id, error=error, final=final, reference=reference, retries=retries)
        if outcome.status == "pending":
            log.warning("page %s to %s failed (attempt %s): %s; retrying in %.2fs", page_id, page.target,
                        outcome.attempts, error, delay)
            await asyncio.sleep(min(max(delay, wait or 0.0), MAX_BACKOFF))
            delay = min(delay * 2, MAX_BACKOFF)
            continue
        if outcome.status == "failed":
            await notifier.page_failed(await _reload(pager, page_id), notice)
        return outcome


async def _record(pager: Pager, page_id: int, *, error: str | None, final: bool, reference: str | None,
                  retries: int) -> Outcome:
    async with pager.db.session() as session:
        # The write first (SQLite: a read before it could meet "database is locked"; PostgreSQL: the row lock).
        await session.execute(update(Page).where(Page.id == page_id).values(attempts=Page.attempts + 1)
                              .execution_options(synchronize_session=False))
        page = await session.get(Page, page_id, populate_existing=True)
        assert page is not None
        if error is None:
            page.status, page.reference, page.delivered_at, page.error = "delivered", reference, pager.clock(), None
        else:
            page.error = error[:ERROR_MAX]
            if final or page.attempts > retries:
                page.status = "failed"
        if page.status != "pending":
            await _audit(session, pager, page)
        return Outcome(page.status, page.attempts, page.error)


async def _audit(session: AsyncSession, pager: Pager, page: Page) -> None:
    """The outcome on the audit log, and on the incident's timeline (`paged`)."""
    ok = page.status == "delivered"
    verb = {"trigger": "Paged", "acknowledge": "Sent the acknowledgement to",
            "resolve": "Sent the resolution to"}.get(page.action, "Paged")
    text = (f"{verb} {page.target}" if ok else
            f"{verb} {page.target}: failed after {page.attempts} attempt{'s' * (page.attempts > 1)} ({page.error})")
    data = {"page": page.id, "target": page.target, "action": page.action, "status": page.status,
            "attempts": page.attempts, "error": page.error, "reference": page.reference}
    kind, _, rest = page.subject.partition(":")
    if kind == "incident" and rest.isdecimal():
        await add_event(session, clock=pager.clock, incident_id=int(rest), actor="opsbot", kind="paged", text=text,
                        data=data)
    else:
        await audit.record(session, clock=pager.clock, actor=page.requested_by, action=f"page.{page.action}",
                           target=page.subject, outcome="ok" if ok else "failed", after=data, detail=page.error)


async def _reload(pager: Pager, page_id: int) -> Page:
    async with pager.db.session() as session:
        page = await session.get(Page, page_id)
        assert page is not None
        return page


# -- /page: by hand, confirmed --------------------------------------------------------------------------
MANUAL_KIND = "page"
CONFIRM_TTL_MINUTES = 10


@dataclass(frozen=True)
class Manual:
    """A confirmed `/page`: its subject, whom it reached and how."""

    subject: str
    target: str
    message: str
    recipients: Recipients
    pages: list[int]


async def propose(pager: Pager, *, token: str, actor: str, target: str, message: str, channel: str | None) -> None:
    """Store the single-use confirmation of a `/page` (checked and rate limited by the caller)."""
    now = pager.clock()
    async with pager.db.session() as session:
        session.add(PendingAction(token=token, kind=MANUAL_KIND, actor=actor, created_at=now,
                                  expires_at=now + timedelta(minutes=CONFIRM_TTL_MINUTES),
                                  payload={"target": target, "message": message, "channel": channel}))


async def decide(pager: Pager, *, token: str, user: str, status: str, request: str | None) -> PendingAction:
    """Claim the confirmation for `status` (done or cancelled) with a conditional write; the same press run
    again (`request`) finds its own claim. InvalidInput/Conflict say why not."""
    now = pager.clock()
    async with pager.db.session() as session:
        result = await session.execute(
            update(PendingAction).where(PendingAction.token == token, PendingAction.kind == MANUAL_KIND,
                                        PendingAction.actor == user, PendingAction.status == "pending",
                                        PendingAction.expires_at > now)
            .values(status=status, decided_by=user, decided_at=now, version=PendingAction.version + 1)
            .execution_options(synchronize_session=False))
        found = (await session.scalars(select(PendingAction).where(PendingAction.token == token,
                                                                   PendingAction.kind == MANUAL_KIND)
                                       .execution_options(populate_existing=True))).first()
        claimed = getattr(result, "rowcount", 0) == 1
        if claimed and request:
            found.payload = {**found.payload, "request": request}  # type: ignore[union-attr]
    if found is None:
        raise InvalidInput("This confirmation is not valid (it may be from another opsbot). Run `/page` again.")
    if claimed or (found.status == status and request and found.payload.get("request") == request):
        return found
    if found.actor != user:
        raise InvalidInput(f"Only <@{found.actor}>, who asked for this page, can confirm or cancel it.")
    if found.status == "pending":
        raise InvalidInput(f"This confirmation expired after {CONFIRM_TTL_MINUTES} minutes; nobody was paged. "
                           "Run `/page` again.")
    verb = {"done": "sent", "cancelled": "cancelled"}.get(found.status, found.status)
    raise Conflict(f"This page was already {verb}; run `/page` again for a new one.")


async def page_by_hand(pager: Pager, *, pending: PendingAction, user: str) -> Manual:
    """Send a confirmed `/page` once (its step row and page keys): subject `manual:<id>`, audited."""
    target, message = str(pending.payload["target"]), str(pending.payload["message"])
    subject = f"manual:{pending.id}"
    step = Step(0, 0, (target,), pager.clock())
    async with pager.db.session() as session:
        if (0, 0) in await fired(session, subject=subject):
            page_ids = list((await session.scalars(select(Page.id).where(Page.subject == subject))).all())
        else:
            pages = await claim(session, config=pager.config, clock=pager.clock, subject=subject, policy="manual",
                                step=step, requested_by=user, message=message)
            page_ids = [p.id for p in pages]
            await audit.record(session, clock=pager.clock, actor=user, action="page", target=target,
                               after={"subject": subject, "message": message[:500]})
    await send(pager, page_ids)
    recipients = await expand([target], config=pager.config, people=pager.people, oncall=pager.oncall)
    return Manual(subject, target, message, recipients, page_ids)
