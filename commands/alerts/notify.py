"""The Slack side of alerts: `SlackAlerts` implements bot.alerts.flows.AlertNotifier with Block Kit (render.py)
and Web API calls; `engine(deps)` is the process's alert engine delivering through it."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from bot.alerts import ALERTMANAGER, CRITICAL, AlertEngine, Change, Notice, silenced_until
from bot.alerts.flows import AlertMessage, Posted, engine_for
from bot.config.alerts import AlertRule
from bot.deps import Deps
from bot.durations import format_duration
from bot.models import AlertState
from bot.paging import Recipients
from bot.paging.escalation import Step
from bot.paging.flows import Pager
from commands.alerts.render import AlertCard, digest, escalation_text, format_value, render_alert
from commands.paging.notify import pager

log = logging.getLogger(__name__)


def engine(deps: Deps) -> AlertEngine:
    """The process's alert engine, delivering to Slack."""
    return engine_for(deps, SlackAlerts(deps))


class SlackAlerts:
    """Alert notices as Slack messages: the card in the alerts channel, notices in its thread."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def message(self, row: AlertState, change: Change, now: datetime) -> AlertMessage:
        text, blocks = render_alert(card_for(self.deps, row, change.rule, change.silenced_until, now))
        return AlertMessage(text, blocks, digest(text, blocks))

    async def reply_text(self, row: AlertState, change: Change, notice: Notice) -> str | None:
        return await _thread_text(self.deps, row, change.rule, notice, change)

    def rule_text(self, row: AlertState, change: Change, notice: Notice) -> str | None:
        if notice == Notice.ERROR:
            return (f"⚠️ Alert rule `{row.rule}` cannot be evaluated: {row.error}. "
                    "Its alerts keep their current state until it can.")
        if notice == Notice.STALE:
            waited = format_duration(change.policy.stale_after) if change.policy.stale_after else ""
            return f"⌛ Alert rule `{row.rule}` has had no data for {waited}."
        if notice == Notice.RECOVERED:
            return f"✅ `{row.rule}` has data again."
        return None

    async def post(self, *, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   thread_ts: str | None = None, broadcast: bool = False) -> Posted:
        extra: dict[str, Any] = {}
        if thread_ts is not None:
            extra = {"thread_ts": thread_ts, "reply_broadcast": broadcast}
        response = await self.deps.slack.chat_postMessage(channel=channel, text=text, blocks=blocks, **extra)
        return Posted(channel=str(response["channel"]), ts=str(response["ts"]))

    async def edit(self, *, channel: str, ts: str, message: AlertMessage) -> None:
        await self.deps.slack.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    @property
    def pager(self) -> Pager | None:
        return pager(self.deps)

    def escalation_text(self, row: AlertState, policy: str, step: Step, recipients: Recipients) -> str:
        return escalation_text(row, policy, step, recipients, now=self.deps.clock())


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
        thresholds = " · ".join(f"{name} {t}"  # a threshold shows itself in the rule's unit
                                for name, t in (("warning", rule.warning), ("critical", rule.critical)) if t)
        value = format_value(row.value, rule.unit, rule.decimals)
        runbook = str(rule.runbook) if rule.runbook and "://" in str(rule.runbook) else None  # not a runbook name
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


async def _thread_text(deps: Deps, row: Any, rule: AlertRule | None, notice: Notice, change: Change) -> str | None:
    """A notice in the alert's thread (a silenced alert's thread only hears RESOLVED: bot/alerts/flows)."""
    value = format_value(row.value, rule.unit, rule.decimals) if rule else None
    if notice == Notice.RESOLVED:
        took = format_duration(row.resolved_at - row.firing_since) if row.firing_since and row.resolved_at else ""
        return f"✅ Resolved{f' at {value}' if value else ''}" + (f" after {took}." if took else ".")
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
