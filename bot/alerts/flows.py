"""What alerts do end to end: deliver the engine's notices, and people's verbs (acknowledge, silence, the
listing). Slack is reached only through an `AlertNotifier`, which commands/alerts implements with Block Kit
rendering and Web API calls; nothing here knows a payload.

A verb opens its own transactions (the conditional writes in bot/alerts), then shows the alert as the
database has it now (`resync`): posting and editing are decided from the fresh row, so running a verb's job
again after a crash edits to the same message instead of repeating it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot import metrics
from bot.alerts import (
    ALERTMANAGER,
    FIRING,
    AlertEngine,
    Change,
    Notice,
    active_alerts,
    active_silences,
    policy_for,
    silenced_until,
)
from bot.alerts import acknowledge as acknowledge_row
from bot.alerts import silence as silence_row
from bot.alerts import silence_rule as add_rule_silence
from bot.config.alerts import AlertRule, AlertSettings
from bot.db import Database
from bot.errors import InvalidInput
from bot.models import AlertState, EscalationStep
from bot.paging import Recipients, expand
from bot.paging import flows as paging
from bot.paging.escalation import Step, due_steps, for_rule
from bot.paging.flows import Pager

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.deps import Deps

log = logging.getLogger(__name__)
SLACK_CONCURRENCY = 20


@dataclass(frozen=True)
class AlertMessage:
    """An alert's message as it should look now; `digest` tells whether a posted one needs an edit."""

    text: str
    blocks: list[dict[str, Any]]
    digest: str


@dataclass(frozen=True)
class Posted:
    channel: str
    ts: str


class AlertNotifier(Protocol):
    """The chat effects alerts need, in alert terms (commands/alerts.notify.SlackAlerts)."""

    def message(self, row: AlertState, change: Change, now: datetime) -> AlertMessage:
        """The alert's message (card, buttons) for `row` as it is now."""

    async def reply_text(self, row: AlertState, change: Change, notice: Notice) -> str | None:
        """What `notice` says in the alert's thread (None: nothing)."""

    def rule_text(self, row: AlertState, change: Change, notice: Notice) -> str | None:
        """What `notice` on a rule's own row (its source failing, stale, recovered) says."""

    async def post(self, *, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   thread_ts: str | None = None, broadcast: bool = False) -> Posted: ...

    async def edit(self, *, channel: str, ts: str, message: AlertMessage) -> None: ...

    @property
    def pager(self) -> Pager | None:
        """Escalation policies' recipients and provider pages (None: none)."""

    def escalation_text(self, row: AlertState, policy: str, step: Step, recipients: Recipients) -> str:
        """An escalation level's reply in the alert's thread."""


def engine_for(deps: Deps, notifier: AlertNotifier) -> AlertEngine:
    """The process's alert engine (one per Deps: the scheduled cycles, the webhook and the verbs share its lock);
    `notifier` is used when it is first made."""
    engine: AlertEngine | None = getattr(deps, "_alert_engine", None)
    if engine is None:
        settings, default_channel = deps.config.alerts, deps.config.channels.alerts

        async def send(changes: list[Change]) -> None:
            await deliver(deps.db, clock=deps.clock, notifier=notifier, changes=changes, channel=default_channel)
            resolved = [c.row for c in changes if Notice.RESOLVED in c.notices]
            if resolved and notifier.pager is not None:
                for row in resolved:  # PagerDuty, Opsgenie and webhooks paged by its policy are told
                    await paging.propagate(notifier.pager, subject=subject(row), action="resolve", actor="opsbot")

        engine = AlertEngine(db=deps.db, clock=deps.clock, settings=settings, deliver=send)
        deps._alert_engine = engine  # type: ignore[attr-defined]
    return engine


def channel_for(row: Any, rule: AlertRule | None, default: str) -> str:
    return str(row.channel or (rule.channel if rule and rule.channel else default))


# -- delivery: post once, edit on a visible change, reply in the thread ---------------------------
async def deliver(db: Database, *, clock: Clock, notifier: AlertNotifier, changes: list[Change],
                  channel: str) -> None:
    """Send what `changes` call for (`channel` unless the row or rule has its own); rows are re-read first
    (a click may have acknowledged one meanwhile). One failing alert is logged and counted, the rest go on."""
    ids = [c.row.id for c in changes]
    async with db.session() as session:
        fresh = {r.id: r for r in await session.scalars(select(AlertState).where(AlertState.id.in_(ids)))}
    gate = asyncio.Semaphore(SLACK_CONCURRENCY)
    now = clock()

    async def one(change: Change) -> tuple[int, dict[str, Any]] | None:
        row = fresh.get(change.row.id, change.row)
        where = channel_for(row, change.rule, channel)
        async with gate:
            try:
                if row.key.startswith("rule:"):
                    values = await _rule_notices(notifier, row, change, where)
                else:
                    values = await _alert_notices(notifier, row, change, now, where)
            except Exception as exc:
                metrics.BACKGROUND_FAILURES.labels(name="alerts.deliver").inc()
                log.warning("delivering alert %s failed: %s", row.key, exc)
                return None
        return (row.id, values) if values else None

    results = [r for r in await asyncio.gather(*(one(c) for c in changes)) if r]
    if results:
        async with db.session() as session:
            for row_id, values in results:
                await session.execute(update(AlertState).where(AlertState.id == row_id).values(**values))


async def _alert_notices(notifier: AlertNotifier, row: Any, change: Change, now: datetime,
                         channel: str) -> dict[str, Any]:
    silenced = silenced_until(row, change.silenced_until, now)
    message = notifier.message(row, change, now)
    values: dict[str, Any] = {}
    if row.message_ts is None:
        if row.state != FIRING or silenced:
            return values  # silenced alerts are not posted; resolved ones that never posted say nothing
        posted = await notifier.post(channel=channel, text=message.text, blocks=message.blocks)
        row.message_ts, row.channel = posted.ts, posted.channel
        return {"message_ts": posted.ts, "channel": posted.channel, "digest": message.digest}
    if message.digest != row.digest:
        await notifier.edit(channel=channel, ts=row.message_ts, message=message)
        values["digest"] = message.digest
    for notice in change.notices:
        if silenced is not None and notice != Notice.RESOLVED:
            continue  # a silenced alert's thread only hears that it resolved
        reply = await notifier.reply_text(row, change, notice)
        if reply:
            await notifier.post(channel=channel, thread_ts=row.message_ts, text=reply,
                                broadcast=notice == Notice.ESCALATED)
    return values


async def _rule_notices(notifier: AlertNotifier, row: Any, change: Change, channel: str) -> dict[str, Any]:
    """The rule's own row: its source failing, going stale, or answering again."""
    values: dict[str, Any] = {}
    for notice in change.notices:
        text = notifier.rule_text(row, change, notice)
        if text is None:
            continue
        if notice == Notice.RECOVERED:
            if row.message_ts:
                await notifier.post(channel=channel, thread_ts=row.message_ts, text=text)
            continue
        posted = await notifier.post(channel=channel, text=text)
        row.message_ts = posted.ts
        values.update(message_ts=posted.ts, channel=posted.channel)
    return values


# -- people's verbs -------------------------------------------------------------------------------
def labels_environment(labels: dict[str, Any]) -> str | None:
    env = labels.get("env") or labels.get("environment")
    return str(env) if env else None


def alert_environment(settings: AlertSettings, row: AlertState) -> str | None:
    """The environment of an alert as its message shows it: the rule's config labels, then the series'."""
    rule = next((r for r in settings.rules if r.name == row.rule), None)
    configured = rule.labels if rule is not None and row.source != ALERTMANAGER else {}
    return labels_environment({**configured, **(row.labels or {})})


async def load(db: Database, alert_id: int) -> AlertState:
    async with db.session() as session:
        row = await session.get(AlertState, alert_id)
    if row is None:
        raise InvalidInput("That alert no longer exists.")
    return row


async def resync(deps: Deps, notifier: AlertNotifier, row: AlertState) -> None:
    """Show `row`'s alert as the database has it now (post, or edit when what it shows changed)."""
    engine = engine_for(deps, notifier)
    rule = engine.rules.get(row.rule) if row.source != ALERTMANAGER else None
    async with deps.db.session() as session:
        rule_silence = (await active_silences(session, deps.clock())).get(row.rule)
    change = Change(row, [Notice.SYNC], policy_for(rule, deps.config.alerts), rule, rule_silence)
    async with engine.lock:
        await engine.deliver([change])


async def acknowledge(deps: Deps, notifier: AlertNotifier, *, alert_id: int, user: str) -> AlertState:
    """`user` acknowledges the alert (permission checked, audited); Conflict names whoever did first."""
    row = await load(deps.db, alert_id)
    await deps.require(user=user, action="alert.ack", target=row.rule,
                       environment=alert_environment(deps.config.alerts, row))
    row = await acknowledge_row(deps.db, clock=deps.clock, row_id=alert_id, user=user)
    await resync(deps, notifier, row)
    if notifier.pager is not None:
        await paging.propagate(notifier.pager, subject=subject(row), action="acknowledge", actor=user)
    return row


async def silence(deps: Deps, notifier: AlertNotifier, *, alert_id: int, user: str,
                  duration: timedelta) -> AlertState:
    """`user` silences the alert for `duration` (permission checked, audited); the message then says so."""
    row = await load(deps.db, alert_id)
    await deps.require(user=user, action="alert.silence", target=row.rule,
                       environment=alert_environment(deps.config.alerts, row))
    row = await silence_row(deps.db, clock=deps.clock, row_id=alert_id, user=user, duration=duration)
    await resync(deps, notifier, row)
    return row


async def silence_rule(deps: Deps, *, rule: str, duration: timedelta, user: str) -> datetime | None:
    """`/silence <rule> <duration>` (permission checked in the rule's environment): until when; None when `0`
    ended the silence."""
    labels = next((r.labels for r in deps.config.alerts.rules if r.name == rule), {})
    await deps.require(user=user, action="alert.silence", target=rule, environment=labels_environment(labels))
    configured: Iterable[str] = [*(r.name for r in deps.config.alerts.rules),
                                 *(h.name for h in deps.config.heartbeats)]  # heartbeats are silenced by name
    return await add_rule_silence(deps.db, clock=deps.clock, rule=rule, duration=duration, user=user,
                                  configured=configured)


async def overview(db: Database, *, clock: Clock) -> tuple[list[AlertState], dict[str, datetime]]:
    """What `/alerts` shows: the active alerts (most severe first) and the active rule silences."""
    async with db.session() as session:
        rows = await active_alerts(session)
        silences = await active_silences(session, clock())
    return rows, silences


# -- escalation policies of alert rules (bot/paging) --------------------------------------------------
def subject(row: Any) -> str:
    """The escalation subject of one alert (a rule's series): `alert:<row id>`."""
    return f"alert:{row.id}"


def alert_dedup_key(row: Any) -> str:
    """The provider-side key of one firing: opsbot-alert-<rule>-<fired-at epoch>."""
    since = int(row.firing_since.timestamp()) if row.firing_since else 0
    return f"opsbot-alert-{row.rule}-{since}"[:255]


async def escalate(deps: Deps, notifier: AlertNotifier) -> int:
    """Fire the due levels of the rules' escalation policies for firing, unacknowledged, unsilenced alerts,
    each once (the step's unique row); returns the levels fired. A new firing starts its policy over."""
    pager = notifier.pager
    rules = {r.name: r for r in deps.config.alerts.rules if r.escalation_policy}
    if pager is None or not rules:
        return 0
    now = deps.clock()
    async with deps.db.session() as session:
        rows = list((await session.scalars(select(AlertState).where(
            AlertState.state == FIRING, AlertState.acked_at.is_(None), AlertState.rule.in_(list(rules)),
            AlertState.source != ALERTMANAGER))).all())
        silences = await active_silences(session, now)
    count = 0
    for row in rows:
        resolved = for_rule(deps.config, rules[row.rule])
        if resolved is None or row.firing_since is None or silenced_until(row, silences.get(row.rule), now):
            continue
        try:
            count += await _escalate_one(deps, pager, notifier, row, resolved.name, resolved.policy, now)
        except Exception:  # one failing alert must not stop the others
            metrics.BACKGROUND_FAILURES.labels(name="alerts.escalate").inc()
            log.exception("escalating alert %s failed", row.key)
    return count


async def _escalate_one(deps: Deps, pager: Pager, notifier: AlertNotifier, row: AlertState, name: str,
                        policy: Any, now: datetime) -> int:
    key = subject(row)
    async with deps.db.session() as session:
        steps = (await session.scalars(select(EscalationStep).where(EscalationStep.subject == key))).all()
        if any(s.fired_at < row.firing_since for s in steps if row.firing_since):  # an earlier firing's steps
            await paging.forget(session, subject=key)
            steps = []
        done = {(s.cycle, s.level) for s in steps}
    fired = 0
    for step in due_steps(policy, row.firing_since, now, done, acknowledged=False):  # type: ignore[arg-type]
        try:
            async with deps.db.session() as session:
                pages = await paging.claim(session, config=deps.config, clock=deps.clock, subject=key, policy=name,
                                           step=step, requested_by="opsbot", dedup=alert_dedup_key(row),
                                           message=f"Alert {row.rule} is firing ({row.level}): "
                                                   f"{row.summary or row.rule}")
                page_ids = [p.id for p in pages]
        except IntegrityError:  # another run claimed it first
            continue
        fired += 1
        await paging.send(pager, page_ids)
        recipients = await expand(step.targets, config=deps.config, people=pager.people, oncall=pager.oncall)
        if row.channel and row.message_ts:
            try:
                await notifier.post(channel=row.channel, thread_ts=row.message_ts, broadcast=True,
                                    text=notifier.escalation_text(row, name, step, recipients))
            except Exception as exc:
                log.warning("posting the escalation of alert %s failed: %s", row.key, type(exc).__name__)
    return fired


async def by_dedup_key(db: Database, key: str) -> AlertState | None:
    """The alert row whose firing `alert_dedup_key` is `key` (a PagerDuty webhook names only the key)."""
    rest = key.removeprefix("opsbot-alert-")
    rule, _, since = rest.rpartition("-")
    if rest == key or not rule or not since.isdecimal():
        return None
    async with db.session() as session:
        rows = (await session.scalars(select(AlertState).where(AlertState.rule == rule))).all()
    return next((r for r in rows if r.firing_since and int(r.firing_since.timestamp()) == int(since)), None)


async def acknowledge_from_provider(deps: Deps, notifier: AlertNotifier, *, alert_id: int, actor: str,
                                    source: str) -> AlertState:
    """A paging provider's acknowledgement (its webhook is signed: no permission check), audited as `actor`;
    the other providers are told."""
    row = await acknowledge_row(deps.db, clock=deps.clock, row_id=alert_id, user=actor[:64])
    await resync(deps, notifier, row)
    if notifier.pager is not None:
        await paging.propagate(notifier.pager, subject=subject(row), action="acknowledge", actor=actor,
                               skip=[source])
    return row
