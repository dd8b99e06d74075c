"""Threshold alerts: the state machine, rule evaluation and Alertmanager ingestion. No Slack here.

Each rule and series (or Alertmanager fingerprint) has one `alert_states` row. The transition
functions below are pure: they take a `View` of that row, a value or a time, and return the
notices to send; callers persist the view and hand the notices to a notifier (bot/alerts/flows.py,
which reaches Slack through the `AlertNotifier` that commands/alerts implements).

    ok ─breach─> pending ─held for `for`─> firing ─no breach─> resolved ─breach─> pending …

A source error never changes a series' state: the rule's own row (key `rule:<name>`) goes to
`error`, reported once, and to `stale` when no data arrived for `stale_after`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit, metrics
from bot.clock import Clock, as_utc
from bot.config.alerts import AlertRule, AlertSettings, Threshold
from bot.db import Database
from bot.errors import ConfigError, Conflict, InvalidInput, NotFound
from bot.models import AlertState, Silence
from bot.providers.metrics_base import Fetcher, MetricSource, MetricSourceError, Sample, fetcher
from bot.providers.metrics_http_json import HttpJsonSource
from bot.providers.metrics_http_query import HttpQuerySource
from bot.providers.metrics_postgres import PostgresSource
from bot.providers.metrics_prometheus import PrometheusSource

log = logging.getLogger(__name__)

OK, PENDING, FIRING, RESOLVED, ERROR, STALE = "ok", "pending", "firing", "resolved", "error", "stale"
WARNING, CRITICAL = "warning", "critical"
AUTO_ACK = "opsbot (auto)"
ALERTMANAGER = "alertmanager"


class Notice(StrEnum):
    SYNC = "sync"            # the alert message should show the current state (post it if not yet posted)
    RESOLVED = "resolved"    # edit + reply in the thread
    REMIND = "remind"        # still firing, unacknowledged: reply in the thread
    ESCALATED = "escalated"  # warning raised to critical: mention the escalation targets
    AUTO_ACKED = "auto_acked"
    ERROR = "error"          # rule row: the source fails (reported once)
    STALE = "stale"          # rule row: no data for stale_after
    RECOVERED = "recovered"  # rule row: the source answers again


@dataclass(frozen=True)
class Policy:
    warning: Threshold | None = None
    critical: Threshold | None = None
    for_: timedelta = timedelta(0)
    escalate_after: timedelta | None = None
    auto_ack_after: timedelta | None = None
    repeat_every: timedelta | None = None
    stale_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()


def policy_for(rule: AlertRule | None, settings: AlertSettings) -> Policy:
    """The rule's timers, falling back to `alerts.defaults`; None gives the Alertmanager policy."""
    d = settings.defaults
    if rule is None:
        return Policy(escalate_after=d.escalate_after, auto_ack_after=d.auto_ack_after,
                      repeat_every=None, escalate_to=tuple(settings.escalate_to))
    return Policy(
        warning=rule.warning, critical=rule.critical,
        for_=rule.for_ if rule.for_ is not None else d.for_,
        escalate_after=rule.escalate_after or d.escalate_after,
        auto_ack_after=rule.auto_ack_after or d.auto_ack_after,
        repeat_every=rule.repeat_every or d.repeat_every,
        stale_after=rule.stale_after or d.stale_after,
        # A rule with an escalation policy is escalated by it (bot/paging), not by a mention of escalate_to.
        escalate_to=() if rule.escalation_policy else tuple(rule.escalate_to or settings.escalate_to),
    )


@dataclass
class View:
    """The mutable part of an `alert_states` row, as plain values."""

    state: str = OK
    level: str | None = None
    value: float | None = None
    error: str | None = None
    pending_since: datetime | None = None
    firing_since: datetime | None = None
    resolved_at: datetime | None = None
    last_eval_at: datetime | None = None
    last_data_at: datetime | None = None
    last_notified_at: datetime | None = None
    message_ts: str | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    escalated_at: datetime | None = None
    digest: str | None = None
    silenced_until: datetime | None = None  # read only: the alert's own silence (tick)

    @classmethod
    def of(cls, row: Any) -> View:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    def apply_to(self, row: Any) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if getattr(row, f.name) != value:
                setattr(row, f.name, value)


def with_thresholds(policy: Policy, computed: Mapping[str, float]) -> Policy:
    """The policy of one read: computed thresholds (`>= pool_size + max_overflow`) take this read's numbers."""
    if not computed:
        return policy
    warning, critical = policy.warning, policy.critical
    return dataclasses.replace(
        policy, warning=warning.resolved(computed["warning"]) if warning and "warning" in computed else warning,
        critical=critical.resolved(computed["critical"]) if critical and "critical" in computed else critical)


def level_of(value: float, policy: Policy) -> str | None:
    if policy.critical is not None and policy.critical.breached(value):
        return CRITICAL
    if policy.warning is not None and policy.warning.breached(value):
        return WARNING
    return None


def _fire(v: View, level: str, now: datetime, since: datetime | None = None) -> list[Notice]:
    v.state, v.level = FIRING, level
    v.firing_since, v.resolved_at, v.last_notified_at = since or now, None, now
    v.acked_by = v.acked_at = v.escalated_at = None
    v.message_ts = v.digest = None  # a new firing is a new message
    return [Notice.SYNC]


def observe(v: View, value: float, policy: Policy, now: datetime) -> list[Notice]:
    """A fresh value for one series. A healthy series that stays healthy changes nothing (no write)."""
    level = level_of(value, policy)
    if level is None and v.state in (OK, RESOLVED):
        return []
    v.value, v.last_eval_at, v.last_data_at = value, now, now
    v.error = None
    if v.state == FIRING:
        if level is None:
            v.state, v.resolved_at = RESOLVED, now
            v.pending_since = None
            return [Notice.RESOLVED]
        v.level = CRITICAL if v.escalated_at is not None else level
        return [Notice.SYNC]
    if level is None:  # pending, and the breach ended before `for` was reached
        v.state, v.pending_since, v.level = OK, None, None
        return []
    if v.state != PENDING or v.pending_since is None:
        v.state, v.pending_since = PENDING, now
    v.level = level
    if now - v.pending_since >= policy.for_:
        return _fire(v, level, now)
    return []


def missing(v: View, policy: Policy, now: datetime) -> list[Notice]:
    """A series absent from a successful read: pending ends quietly; firing says once that data stopped."""
    if v.state == PENDING:
        v.state, v.pending_since, v.level = OK, None, None
        return []
    if (v.state == FIRING and v.error is None and policy.stale_after and v.last_data_at is not None
            and now - v.last_data_at >= policy.stale_after):
        v.error = "no data"
        return [Notice.STALE]
    return []


def tick(v: View, policy: Policy, now: datetime, silenced: datetime | None = None) -> list[Notice]:
    """The passing of time on a firing alert: auto-acknowledge, escalate, remind. Not while it is silenced (the
    alert's button or `/silence` on its rule, `silenced`): its thread would not say so, so nothing happens behind
    the team's back; once the silence ends, what is due happens and is said in the thread."""
    if v.state != FIRING or v.acked_at is not None or v.firing_since is None:
        return []
    if any(until is not None and until > now for until in (v.silenced_until, silenced)):
        return []
    age = now - v.firing_since
    if policy.auto_ack_after and age >= policy.auto_ack_after:
        v.acked_by, v.acked_at = AUTO_ACK, now
        return [Notice.AUTO_ACKED]
    if (v.level == WARNING and v.escalated_at is None and policy.escalate_after
            and age >= policy.escalate_after):
        v.level, v.escalated_at, v.last_notified_at = CRITICAL, now, now
        return [Notice.ESCALATED]
    if policy.repeat_every and now - (v.last_notified_at or v.firing_since) >= policy.repeat_every:
        v.last_notified_at = now
        return [Notice.REMIND]
    return []


def _observed(v: View, value: float, policy: Policy, now: datetime,
              silenced: datetime | None = None) -> list[Notice]:
    """A fresh value for one series, then the passing of time."""
    return observe(v, value, policy, now) + tick(v, policy, now, silenced)


def _missed(v: View, policy: Policy, now: datetime, silenced: datetime | None = None) -> list[Notice]:
    """A series absent from a successful read, then the passing of time."""
    return missing(v, policy, now) + tick(v, policy, now, silenced)


def rule_read(v: View, *, error: str | None, has_data: bool, policy: Policy, now: datetime) -> list[Notice]:
    """The outcome of one read for the rule's own row: error once, staleness once, recovery once.

    `last_data_at` is refreshed only once it is a tenth of `stale_after` old, so a steady rule causes
    no database write per evaluation (a staleness notice may come up to 10% early)."""
    if v.last_data_at is None:
        v.last_data_at = v.last_eval_at = now  # staleness counts from the first evaluation
    out: list[Notice] = []
    if error is not None:
        v.error = error
        if v.state == OK:
            v.state = ERROR
            out.append(Notice.ERROR)
    else:
        v.error = None
        refresh = policy.stale_after / 10 if policy.stale_after else timedelta(0)
        if has_data and now - v.last_data_at >= refresh:
            v.last_data_at = now
        if v.state == ERROR or (v.state == STALE and has_data):
            v.state = OK
            out.append(Notice.RECOVERED)
    if (v.state != STALE and policy.stale_after and now - v.last_data_at >= policy.stale_after):
        v.state = STALE
        out.append(Notice.STALE)
    return out


def alertmanager_update(v: View, *, firing: bool, level: str, starts_at: datetime | None,
                        now: datetime) -> list[Notice]:
    """One alert of an Alertmanager group: re-sent groups map to no change or a no-op SYNC."""
    v.last_eval_at = v.last_data_at = now
    if firing:
        if v.state != FIRING:
            return _fire(v, level, now, since=starts_at)
        v.level = CRITICAL if v.escalated_at is not None else level
        return [Notice.SYNC]
    if v.state == FIRING:
        v.state, v.resolved_at = RESOLVED, now
        return [Notice.RESOLVED]
    return []


# -- keys --------------------------------------------------------------------------------
def series_key(rule: str, labels: Mapping[str, str]) -> str:
    text = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    key = f"{rule}|{text}"
    if len(key) <= 255:
        return key
    return f"{rule}|#{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def rule_key(rule: str) -> str:
    return f"rule:{rule}"


def am_key(fingerprint: str) -> str:
    return f"am:{fingerprint}"[:255]


# -- evaluation ----------------------------------------------------------------------------
@dataclass
class Change:
    """A row whose notices must reach Slack (the row is detached, refreshed from the database)."""

    row: Any
    notices: list[Notice]
    policy: Policy
    rule: AlertRule | None
    silenced_until: datetime | None = None


@dataclass
class Reading:
    rule: AlertRule
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None


# Sends what changes call for (bot/alerts/flows.deliver, bound to a notifier).
Deliver = Callable[[list[Change]], Awaitable[None]]


def make_sources(settings: AlertSettings, fetcher: Fetcher, clock: Clock | None = None) -> dict[str, MetricSource]:
    """The metric sources by the name used in opsbot.yml (`source:`), reading through `fetcher`."""
    timeout = settings.defaults.timeout.total_seconds()
    sources: dict[str, MetricSource] = {
        "http_json": HttpJsonSource(fetcher, timeout=timeout),
        "http_query": HttpQuerySource(fetcher, timeout=timeout, clock=clock),
        "postgres": PostgresSource(timeout=timeout),
    }
    if settings.prometheus is not None:
        sources["prometheus"] = PrometheusSource(
            fetcher, url=settings.prometheus.url, token=settings.prometheus.token,
            timeout=settings.prometheus.timeout.total_seconds())
    return sources


class AlertEngine:
    """Evaluates rules and applies Alertmanager payloads; one per process, used by the scheduler leader."""

    def __init__(self, *, db: Database, clock: Clock, settings: AlertSettings, deliver: Deliver) -> None:
        self.db, self.clock, self.settings = db, clock, settings
        self.deliver = deliver
        self.rules = {r.name: r for r in settings.rules}
        # Transitions and their Slack delivery run one at a time: two jobs never remind twice.
        self.lock = asyncio.Lock()

    async def read(self, sources: Mapping[str, MetricSource], rule: AlertRule) -> Reading:
        try:
            samples = await sources[rule.source].read(rule)
            metrics.ALERT_EVALUATIONS.labels(outcome="ok").inc()
            return Reading(rule, samples)
        except (MetricSourceError, ConfigError) as exc:  # ConfigError: an unset ${VAR}, named in the message
            metrics.ALERT_EVALUATIONS.labels(outcome="source_error").inc()
            return Reading(rule, error=str(exc))
        except Exception as exc:  # a bug or an unexpected failure in one rule: counted, the others go on
            metrics.ALERT_EVALUATIONS.labels(outcome="failed").inc()
            log.exception("alert rule %s failed", rule.name)
            return Reading(rule, error=f"unexpected {type(exc).__name__} (logged)")

    async def evaluate(self, rules: Iterable[AlertRule]) -> list[Change]:
        """Read every rule (bounded concurrency), apply the transitions, send the notices."""
        rules = list(rules)
        gate = asyncio.Semaphore(self.settings.concurrency)

        async with fetcher(connections=self.settings.concurrency) as session:
            sources = make_sources(self.settings, session, self.clock)

            async def bounded(rule: AlertRule) -> Reading:
                async with gate:
                    return await self.read(sources, rule)

            readings = await asyncio.gather(*(bounded(r) for r in rules))
        async with self.lock:
            changes = await self._apply(readings)
            if changes:
                await self.deliver(changes)
        return changes

    async def _apply(self, readings: list[Reading]) -> list[Change]:
        now = self.clock()
        names = [r.rule.name for r in readings]
        changes: list[Change] = []
        async with self.db.session() as session:
            await _hold_rows(session)
            # Streamed in partitions: hydrating thousands of rows at once would stall slash commands.
            query = _locked(select(AlertState).where(AlertState.rule.in_(names), AlertState.source != ALERTMANAGER)
                            .execution_options(yield_per=250))
            rows = {}
            async for row in await session.stream_scalars(query):
                rows[row.key] = row
            by_rule: dict[str, list[Any]] = {}
            for row in rows.values():
                if not row.key.startswith("rule:"):
                    by_rule.setdefault(row.rule, []).append(row)
            silences = await active_silences(session, now)
            for i, reading in enumerate(readings):
                if i % 100 == 99:
                    await asyncio.sleep(0)  # let slash commands in between (the loop is shared)
                rule = reading.rule
                policy = policy_for(rule, self.settings)
                silenced = silences.get(rule.name)
                touched: set[str] = set()
                own = rows.get(rule_key(rule.name)) or _new_row(session, rule_key(rule.name), rule, {})
                self._step(changes, own, policy, rule, silenced, functools.partial(
                    rule_read, error=reading.error, has_data=bool(reading.samples), policy=policy, now=now))
                for sample in reading.samples:
                    key = series_key(rule.name, sample.labels)
                    touched.add(key)
                    row = rows.get(key) or _new_row(session, key, rule, dict(sample.labels))
                    rows[key] = row
                    read_policy = with_thresholds(policy, sample.thresholds)
                    self._step(changes, row, read_policy, rule, silenced, functools.partial(
                        _observed, value=sample.value, policy=read_policy, now=now, silenced=silenced))
                for row in by_rule.get(rule.name, []):
                    if row.key in touched:
                        continue
                    # Not in the answer (or the source failed): time still passes; a series that vanished
                    # from a good answer is no data for that series, never a resolve.
                    gone = (functools.partial(_missed, policy=policy, now=now, silenced=silenced)
                            if reading.error is None else functools.partial(tick, policy=policy, now=now,
                                                                            silenced=silenced))
                    self._step(changes, row, policy, rule, silenced, gone)
        return changes

    @staticmethod
    def _step(changes: list[Change], row: Any, policy: Policy, rule: AlertRule | None,
              silenced: datetime | None, transition: Callable[[View], list[Notice]]) -> None:
        view = View.of(row)
        notices = transition(view)
        view.apply_to(row)
        if notices:
            changes.append(Change(row, notices, policy, rule, silenced))

    async def housekeeping(self) -> list[Change]:
        """Escalation, auto-acknowledgement and reminders for every firing alert (Alertmanager's too)."""
        async with self.lock:
            now = self.clock()
            changes: list[Change] = []
            async with self.db.session() as session:
                await _hold_rows(session)
                silences = await active_silences(session, now)
                for row in await session.scalars(_locked(select(AlertState).where(AlertState.state == FIRING))):
                    rule = self.rules.get(row.rule) if row.source != ALERTMANAGER else None
                    policy = policy_for(rule, self.settings)
                    self._step(changes, row, policy, rule, silences.get(row.rule),
                               functools.partial(tick, policy=policy, now=now, silenced=silences.get(row.rule)))
            if changes:
                await self.deliver(changes)
            return changes

    async def alertmanager(self, payload: Mapping[str, Any]) -> list[Change]:
        """Apply an Alertmanager webhook (version 4). Raises ValueError on a malformed payload."""
        alerts = payload.get("alerts")
        if not isinstance(alerts, list):
            raise ValueError("`alerts` must be a list")
        parsed = [_parse_am_alert(a, payload) for a in alerts]
        async with self.lock:
            now = self.clock()
            changes: list[Change] = []
            async with self.db.session() as session:
                await _hold_rows(session)
                keys = [p["key"] for p in parsed]
                rows = {row.key: row for row in await session.scalars(
                    _locked(select(AlertState).where(AlertState.key.in_(keys))))}
                silences = await active_silences(session, now)
                policy = policy_for(None, self.settings)
                for alert in parsed:
                    row = rows.get(alert["key"])
                    if row is None:
                        if not alert["firing"]:
                            continue  # resolved before we ever saw it fire: nothing to say
                        row = AlertState(key=alert["key"], rule=alert["rule"], source=ALERTMANAGER,
                                         labels=alert["labels"], state=OK)
                        session.add(row)
                        rows[alert["key"]] = row
                    row.labels, row.summary = alert["labels"], alert["summary"]
                    self._step(changes, row, policy, None, silences.get(row.rule),
                               functools.partial(alertmanager_update, firing=alert["firing"], level=alert["level"],
                                                 starts_at=alert["starts_at"], now=now))
                await session.flush()
            if changes:
                await self.deliver(changes)
            return changes


def _new_row(session: AsyncSession, key: str, rule: AlertRule, labels: dict[str, str]) -> Any:
    row = AlertState(key=key, rule=rule.name, source=rule.source, labels=labels, state=OK)
    session.add(row)
    return row


async def active_silences(session: AsyncSession, now: datetime) -> dict[str, datetime]:
    """Rule name -> the latest `until` of its active `/silence`s."""
    out: dict[str, datetime] = {}
    for silence in await session.scalars(select(Silence).where(Silence.until > now)):
        if silence.rule not in out or silence.until > out[silence.rule]:
            out[silence.rule] = silence.until
    return out


def silenced_until(row: Any, rule_silence: datetime | None, now: datetime) -> datetime | None:
    """When the alert's silence ends (button on the alert or `/silence` on its rule), if it is silenced."""
    candidates = [t for t in (row.silenced_until, rule_silence) if t is not None and t > now]
    return max(candidates) if candidates else None


def _parse_am_alert(alert: Any, group: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(alert, dict):
        raise ValueError("every alert must be an object")
    for name in ("labels", "annotations"):
        if not isinstance(alert.get(name) or {}, dict):
            raise ValueError(f"`{name}` must be an object")
    labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (alert.get("annotations") or {}).items()}
    fingerprint = str(alert.get("fingerprint") or "")
    if not fingerprint:  # older Alertmanagers: the fingerprint is a hash of the label set
        fingerprint = hashlib.sha256(series_key("", labels).encode()).hexdigest()[:16]
    status = str(alert.get("status") or group.get("status") or "firing")
    if status not in ("firing", "resolved"):
        raise ValueError(f"unknown alert status {status!r}")
    severity = labels.get("severity", "").lower()
    summary = annotations.get("summary") or annotations.get("description") or annotations.get("message")
    return {
        "key": am_key(fingerprint), "rule": (labels.get("alertname") or "alertmanager")[:128],
        "labels": {**labels, **{f"annotation:{k}": v for k, v in annotations.items() if k != "summary"},
                   **({"annotation:generator_url": str(alert["generatorURL"])} if alert.get("generatorURL") else {})},
        "summary": summary, "firing": status == "firing",
        "level": CRITICAL if severity in ("critical", "page", "error") else WARNING,
        "starts_at": _parse_time(alert.get("startsAt")),
    }


def _parse_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw or raw.startswith("0001-"):
        return None
    text = raw.replace("Z", "+00:00")
    if "." in text:  # Go writes nanoseconds; Python takes microseconds
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return as_utc(parsed)


# -- queries for /alerts and /silence ------------------------------------------------------
async def active_alerts(session: AsyncSession) -> list[Any]:
    """Firing and pending alerts, plus rules in error or stale, most severe first."""
    rows = list(await session.scalars(select(AlertState).where(
        AlertState.state.in_((FIRING, PENDING, ERROR, STALE)))))
    order = {FIRING: 0, ERROR: 1, STALE: 2, PENDING: 3}
    return sorted(rows, key=lambda r: (order[r.state], r.level != CRITICAL, r.rule, r.key))


async def known_rule(session: AsyncSession, name: str) -> bool:
    found = await session.scalar(select(AlertState.id).where(AlertState.rule == name).limit(1))
    return found is not None


async def add_silence(session: AsyncSession, *, rule: str, until: datetime, user: str, now: datetime) -> Any:
    silence = Silence(rule=rule, until=until, created_by=user, created_at=now)
    session.add(silence)
    await session.flush()
    return silence


# -- people acting on an alert: acknowledge, silence ------------------------------------------
# Two people pressing at once make one change; the others are told who was first (Conflict). Every verb
# starts its writing transaction with the write itself, so SQLite never upgrades a read to a write (which
# fails with "database is locked" once another writer committed) and PostgreSQL re-checks the condition
# on the row the other transaction committed.
SAME_SILENCE = timedelta(minutes=1)  # silences are shown to the minute: ending within one is the same silence
CAS_ATTEMPTS = 8


def who(actor: str | None) -> str:
    """A Slack mention for user ids, the name otherwise (`opsbot (auto)`)."""
    if not actor:
        return "someone"
    return f"<@{actor}>" if actor[:1] in "UW" and actor.isalnum() else actor


def ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "earlier"
    minutes = int((now - at).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    return f"{minutes}m ago" if minutes < 120 else f"{minutes // 60}h ago"


def _clock_time(at: datetime) -> str:
    return as_utc(at).strftime("%H:%M UTC")  # type: ignore[union-attr]


async def _fresh(session: AsyncSession, row_id: int) -> Any:
    row = (await session.scalars(select(AlertState).where(AlertState.id == row_id)
                                 .execution_options(populate_existing=True))).first()
    if row is None:
        raise InvalidInput("That alert no longer exists.")
    return row


async def acknowledge(db: Database, *, clock: Clock, row_id: int, user: str) -> Any:
    """`user` acknowledges a firing alert; Conflict names whoever did first (or says it stopped firing)."""
    now = clock()
    async with db.session() as session:
        won = await session.execute(
            update(AlertState).where(AlertState.id == row_id, AlertState.state == FIRING,
                                     AlertState.acked_at.is_(None))
            .values(acked_by=user, acked_at=now, version=AlertState.version + 1)
            .execution_options(synchronize_session=False))
        row = await _fresh(session, row_id)
        if won.rowcount != 1:  # type: ignore[attr-defined]
            if row.acked_at is not None:
                raise Conflict(f"Already acknowledged by {who(row.acked_by)} {ago(row.acked_at, now)}.")
            raise Conflict(f"`{row.rule}` is {row.state} now: there is nothing to acknowledge.")
        await audit.record(session, clock=clock, actor=user, action="alert.ack", target=row.key)
    return row


async def silence(db: Database, *, clock: Clock, row_id: int, user: str, duration: timedelta) -> Any:
    """Silence one alert for `duration`, or longer if it already is. Compare-and-set on `version`: a
    concurrent ack only makes it try again; a concurrent silence as long as this one is reported."""
    for _ in range(CAS_ATTEMPTS):
        now = clock()
        async with db.session() as session:
            row = await _fresh(session, row_id)
        until = now + duration
        current = row.silenced_until if row.silenced_until and row.silenced_until > now else None
        if current is not None and current >= until - SAME_SILENCE:
            raise Conflict(f"Already silenced by {who(row.silenced_by)} {ago(row.silenced_at, now)} "
                           f"(until {_clock_time(current)}).")
        async with db.session() as session:
            won = await session.execute(
                update(AlertState).where(AlertState.id == row_id, AlertState.version == row.version)
                .values(silenced_until=until, silenced_by=user, silenced_at=now, version=row.version + 1)
                .execution_options(synchronize_session=False))
            if won.rowcount != 1:  # type: ignore[attr-defined]
                continue  # changed since we read it: decide again on what it is now
            await audit.record(session, clock=clock, actor=user, action="alert.silence", target=row.key,
                               before={"silenced_until": current.isoformat() if current else None},
                               after={"silenced_until": until.isoformat()})
            return await _fresh(session, row_id)
    raise Conflict("That alert is being changed by several people at once; try again.")


def _locked(query: Any) -> Any:
    """The engine's read of the rows it will change, locked (PostgreSQL) in one order everywhere (no deadlock
    between a cycle, the housekeeping and an Alertmanager intake): a person's Acknowledge or Silence, a
    conditional write on one row, waits for the engine's commit, and the engine never decides from a row a
    person changed after it read it."""
    return query.order_by(AlertState.key).with_for_update()


async def _hold_rows(session: AsyncSession) -> None:
    """On SQLite, row locks do not exist: the engine's transaction takes the write lock before it reads (a write
    that changes nothing), so a person's change lands before its read or after its commit, never in between."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(update(AlertState).where(text("0 = 1")).values(rule=AlertState.rule)
                              .execution_options(synchronize_session=False))


async def _serialise(session: AsyncSession, name: str) -> None:
    """Hold a lock named `name` until the transaction ends: an advisory lock on PostgreSQL, the write lock
    on SQLite (a write that changes nothing takes it; it must be the transaction's first statement)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        await session.execute(update(Silence).where(text("0 = 1")).values(rule=Silence.rule)
                              .execution_options(synchronize_session=False))


async def silence_rule(db: Database, *, clock: Clock, rule: str, duration: timedelta, user: str,
                       configured: Iterable[str]) -> datetime | None:
    """`/silence <rule> <duration>`: the rule's alerts stay quiet until the returned time (None: `0` ended
    the silence). One at a time per rule; a silence that already lasts as long is reported, not repeated."""
    configured = sorted(configured)
    async with db.session() as session:
        await _serialise(session, f"silence:{rule}")
        if rule not in configured and not await known_rule(session, rule):
            raise NotFound("alert rule", rule, configured)
        now = clock()
        if duration <= timedelta(0):
            await session.execute(update(Silence).where(Silence.rule == rule, Silence.until > now).values(until=now))
            await audit.record(session, clock=clock, actor=user, action="alert.unsilence", target=rule)
            return None
        until = now + duration
        longest = (await session.scalars(select(Silence).where(Silence.rule == rule, Silence.until > now)
                                         .order_by(Silence.until.desc()).limit(1))).first()
        if longest is not None and longest.until >= until - SAME_SILENCE:
            raise Conflict(f"`{rule}` is already silenced by {who(longest.created_by)} "
                           f"{ago(longest.created_at, now)}, until {_clock_time(longest.until)}.")
        await add_silence(session, rule=rule, until=until, user=user, now=now)
        await audit.record(session, clock=clock, actor=user, action="alert.silence", target=rule,
                           after={"until": until.isoformat()})
    return until
