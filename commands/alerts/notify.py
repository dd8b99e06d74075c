"""Turning the engine's notices into Slack messages: post once, edit on a visible change, reply in the thread."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from bot import metrics
from bot.alerts import (
    ALERTMANAGER,
    CRITICAL,
    FIRING,
    AlertEngine,
    Change,
    Notice,
    silenced_until,
)
from bot.config.alerts import AlertRule
from bot.deps import Deps
from bot.durations import format_duration
from bot.models import AlertState
from commands.alerts.render import AlertCard, digest, format_value, render_alert

log = logging.getLogger(__name__)
SLACK_CONCURRENCY = 20


def engine_for(deps: Deps) -> AlertEngine:
    """The process's alert engine (one per Deps: the scheduler job and the webhook share its lock)."""
    engine: AlertEngine | None = getattr(deps, "_alert_engine", None)
    if engine is None:
        settings = deps.config.alerts

        async def notifier(changes: list[Change]) -> None:
            await deliver(deps, changes)

        engine = AlertEngine(db=deps.db, clock=deps.clock, settings=settings, notifier=notifier)
        deps._alert_engine = engine  # type: ignore[attr-defined]
    return engine


def channel_for(deps: Deps, row: Any, rule: AlertRule | None) -> str:
    return row.channel or (rule.channel if rule and rule.channel else deps.config.channels.alerts)


def _severity(deps: Deps, level: str | None) -> str | None:
    names = [s.name for s in deps.config.severities]
    if not names:
        return None
    # critical alerts suggest the second most severe level (P2), warnings the third (P3).
    return names[min(1 if level == CRITICAL else 2, len(names) - 1)]


def card_for(deps: Deps, row: Any, rule: AlertRule | None, rule_silence: datetime | None,
             now: datetime) -> AlertCard:
    labels = dict(row.labels or {})
    annotations = {k.removeprefix("annotation:"): v for k, v in labels.items() if k.startswith("annotation:")}
    if rule is not None:
        labels = {**rule.labels, **labels}
        title = rule.summary or rule.name
        thresholds = " · ".join(f"{name} {t}{rule.unit if rule.unit == '%' else ''}"
                                for name, t in (("warning", rule.warning), ("critical", rule.critical)) if t)
        value = format_value(row.value, rule.unit, rule.decimals)
        runbook = str(rule.runbook) if rule.runbook else None
        source: str = rule.source
        link = runbook
        if rule.source == "prometheus" and deps.config.alerts.prometheus is not None:
            from urllib.parse import quote

            base = str(deps.config.alerts.prometheus.url).rstrip("/")
            link = f"{base}/graph?g0.expr={quote(rule.query)}&g0.tab=0"
    else:
        title = row.summary or annotations.get("description") or row.rule
        thresholds, value = None, None
        runbook = annotations.get("runbook_url") or annotations.get("runbook")
        source = ALERTMANAGER if row.source == ALERTMANAGER else row.source
        link = annotations.get("generator_url") or runbook
    shown = {k: v for k, v in labels.items() if not k.startswith("annotation:") and k != "alertname"}
    description = "\n".join(x for x in (
        f"{title}" + (f" — {value}" if value else ""), f"Threshold: {thresholds}" if thresholds else "",
        " ".join(f"{k}={v}" for k, v in sorted(shown.items())), f"Source: {link}" if link else "") if x)
    incident = {k: v for k, v in {
        "t": f"{row.rule}: {title}"[:150], "d": description[:600], "s": _severity(deps, row.level) or "",
        "svc": shown.get("service") or shown.get("job") or "",
        "env": shown.get("env") or shown.get("environment") or "", "l": link or "",
    }.items() if v}
    return AlertCard(
        id=row.id, rule=row.rule, state=row.state, level=row.level, title=title, value=value,
        thresholds=thresholds, since=row.firing_since, resolved_at=row.resolved_at, labels=shown,
        runbook=runbook, source=source, acked_by=row.acked_by, acked_at=row.acked_at,
        silenced_until=silenced_until(row, rule_silence, now), escalated_at=row.escalated_at, incident=incident,
    )


async def deliver(deps: Deps, changes: list[Change]) -> None:
    """Send what `changes` call for; rows are re-read first (a click may have acknowledged one meanwhile)."""
    ids = [c.row.id for c in changes]
    async with deps.db.session() as session:
        fresh = {r.id: r for r in await session.scalars(select(AlertState).where(AlertState.id.in_(ids)))}
    gate = asyncio.Semaphore(SLACK_CONCURRENCY)
    now = deps.clock()

    async def one(change: Change) -> tuple[int, dict[str, Any]] | None:
        row = fresh.get(change.row.id, change.row)
        async with gate:
            try:
                if row.key.startswith("rule:"):
                    values = await _rule_notices(deps, row, change)
                else:
                    values = await _alert_notices(deps, row, change, now)
            except Exception as exc:
                metrics.BACKGROUND_FAILURES.labels(name="alerts.deliver").inc()
                log.warning("delivering alert %s failed: %s", row.key, exc)
                return None
        return (row.id, values) if values else None

    results = [r for r in await asyncio.gather(*(one(c) for c in changes)) if r]
    if results:
        async with deps.db.session() as session:
            for row_id, values in results:
                await session.execute(update(AlertState).where(AlertState.id == row_id).values(**values))


async def _alert_notices(deps: Deps, row: Any, change: Change, now: datetime) -> dict[str, Any]:
    rule = change.rule
    silenced = silenced_until(row, change.silenced_until, now)
    text, blocks = render_alert(card_for(deps, row, rule, change.silenced_until, now))
    shown = digest(text, blocks)
    values: dict[str, Any] = {}
    channel = channel_for(deps, row, rule)
    fresh_post = False
    if row.message_ts is None:
        if row.state != FIRING or silenced:
            return values  # silenced alerts are not posted; resolved ones that never posted say nothing
        response = await deps.slack.chat_postMessage(channel=channel, text=text, blocks=blocks)
        row.message_ts, row.channel = response["ts"], response["channel"]
        values.update(message_ts=row.message_ts, channel=row.channel, digest=shown)
        fresh_post = True
    elif shown != row.digest:
        await deps.slack.chat_update(channel=channel, ts=row.message_ts, text=text, blocks=blocks)
        values["digest"] = shown
    if fresh_post:
        return values
    for notice in change.notices:
        reply = await _thread_text(deps, row, rule, notice, change, silenced is not None)
        if reply:
            await deps.slack.chat_postMessage(channel=channel, thread_ts=row.message_ts, text=reply,
                                              reply_broadcast=notice == Notice.ESCALATED)
    return values


async def _thread_text(deps: Deps, row: Any, rule: AlertRule | None, notice: Notice, change: Change,
                       silenced: bool) -> str | None:
    value = format_value(row.value, rule.unit, rule.decimals) if rule else None
    if notice == Notice.RESOLVED:
        took = format_duration(row.resolved_at - row.firing_since) if row.firing_since and row.resolved_at else ""
        return f"✅ Resolved{f' at {value}' if value else ''}" + (f" after {took}." if took else ".")
    if silenced:
        return None
    if notice == Notice.REMIND:
        since = format_duration(deps.clock() - row.firing_since) if row.firing_since else ""
        return f"🔁 Still firing ({value or row.level}) for {since}, not acknowledged."
    if notice == Notice.ESCALATED:
        targets = [await deps.directory.mention(t) for t in change.policy.escalate_to]
        waited = format_duration(change.policy.escalate_after) if change.policy.escalate_after else ""
        return (f"⏫ Not acknowledged for {waited}: raised to *critical*. "
                + (" ".join(targets) if targets else "")).strip()
    if notice == Notice.STALE:
        waited = format_duration(change.policy.stale_after) if change.policy.stale_after else ""
        return f"⌛ No data for this series for {waited}; it stays firing until data says otherwise."
    if notice == Notice.AUTO_ACKED:
        waited = format_duration(change.policy.auto_ack_after) if change.policy.auto_ack_after else ""
        return f"✋ Auto-acknowledged: nobody acknowledged it in {waited}."
    return None


async def _rule_notices(deps: Deps, row: Any, change: Change) -> dict[str, Any]:
    """The rule's own row: its source failing, going stale, or answering again."""
    channel = channel_for(deps, row, change.rule)
    values: dict[str, Any] = {}
    for notice in change.notices:
        if notice == Notice.ERROR:
            text = (f"⚠️ Alert rule `{row.rule}` cannot be evaluated: {row.error}. "
                    "Its alerts keep their current state until it can.")
        elif notice == Notice.STALE:
            waited = format_duration(change.policy.stale_after) if change.policy.stale_after else ""
            text = f"⌛ Alert rule `{row.rule}` has had no data for {waited}."
        elif notice == Notice.RECOVERED and row.message_ts:
            await deps.slack.chat_postMessage(channel=channel, thread_ts=row.message_ts,
                                              text=f"✅ `{row.rule}` has data again.")
            continue
        else:
            continue
        response = await deps.slack.chat_postMessage(channel=channel, text=text)
        row.message_ts = response["ts"]
        values.update(message_ts=response["ts"], channel=response["channel"])
    return values
