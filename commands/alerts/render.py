"""Pure renderers for alert messages, `/alerts` and their ids: an `AlertCard` in, Block Kit out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.alerts import AUTO_ACK, CRITICAL, ERROR, FIRING, PENDING, RESOLVED, STALE
from bot.durations import format_duration
from bot.paging import Recipients
from bot.paging.escalation import Step
from commands import blocks as bk


class Action(StrEnum):
    ACK = "alerts.ack"
    SILENCE_1H = "alerts.silence_1h"
    SILENCE_4H = "alerts.silence_4h"
    INCIDENT = "alerts.open_incident"


class Block(StrEnum):
    ACTIONS = "alerts.actions"


SILENCE_BUTTONS = {Action.SILENCE_1H: 1, Action.SILENCE_4H: 4}


@dataclass(frozen=True)
class AlertCard:
    """Everything an alert message shows, as plain values."""

    id: int
    rule: str
    state: str
    level: str | None
    title: str
    value: str | None = None
    thresholds: str | None = None
    since: datetime | None = None
    resolved_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    runbook: str | None = None
    source: str = ""
    acked_by: str | None = None
    acked_at: datetime | None = None
    silenced_until: datetime | None = None
    escalated_at: datetime | None = None
    incident: dict[str, str] = field(default_factory=dict)


def format_value(value: float | None, unit: str = "", decimals: int | None = None) -> str | None:
    """The value as shown: 1250 ms, 87.3%, 0.42 — what counts as a visible change."""
    if value is None:
        return None
    if decimals is None:
        magnitude = abs(value)
        decimals = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2
    text = f"{value:.{decimals}f}"
    if decimals and "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def when(moment: datetime | None) -> str:
    """Slack's date markup: each reader sees their own time zone; the fallback is UTC."""
    if moment is None:
        return "—"
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _header(card: AlertCard) -> str:
    if card.state == RESOLVED:
        return f"✅ RESOLVED · {card.rule}"
    level = (card.level or "warning").upper()
    emoji = "🔴" if card.level == CRITICAL else "🟠"
    return f"{emoji} {level} · {card.rule}"


def render_alert(card: AlertCard) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) for the alert message; stable for equal cards (digest)."""
    fields = []
    if card.value is not None:
        fields.append(f"*Value*\n{card.value}")
    if card.thresholds:
        fields.append(f"*Threshold*\n{card.thresholds}")
    fields.append(f"*Since*\n{when(card.since)}")
    if card.state == RESOLVED:
        fields.append(f"*Resolved*\n{when(card.resolved_at)}")
    shown = {k: v for k, v in card.labels.items() if not k.startswith("annotation:")}
    if shown:
        fields.append("*Labels*\n" + " ".join(f"`{k}={v}`" for k, v in sorted(shown.items())))
    if card.source:
        fields.append(f"*Source*\n{card.source}")
    blocks = [bk.header(_header(card)), bk.section(f"*{card.title}*", fields=fields)]
    if card.runbook:
        blocks.append(bk.section(f"📖 <{card.runbook}|Runbook>"))
    notes = []
    if card.escalated_at:
        notes.append(f"⏫ Escalated to critical {when(card.escalated_at)}")
    if card.acked_at:
        who = "Auto-acknowledged" if card.acked_by == AUTO_ACK else f"Acknowledged by <@{card.acked_by}>"
        notes.append(f"✋ {who} {when(card.acked_at)}")
    if card.silenced_until and card.state == FIRING:
        notes.append(f"🔕 Silenced until {when(card.silenced_until)}")
    if card.state == RESOLVED and card.since and card.resolved_at:
        notes.append(f"Fired for {format_duration(card.resolved_at - card.since)}")
    if notes:
        blocks.append(bk.context(*notes))
    if card.state == FIRING:
        buttons = []
        if card.acked_at is None:
            buttons.append(bk.button("Acknowledge", Action.ACK, str(card.id), style="primary"))
        buttons += [bk.button("Silence 1h", Action.SILENCE_1H, str(card.id)),
                    bk.button("Silence 4h", Action.SILENCE_4H, str(card.id)),
                    bk.button("Open incident", Action.INCIDENT, incident_value(card))]
        blocks.append(bk.actions(*buttons, block_id=Block.ACTIONS))
    state = "RESOLVED" if card.state == RESOLVED else f"{(card.level or 'warning').upper()}"
    text = f"[{state}] {card.rule}: {card.title}" + (f" ({card.value})" if card.value else "")
    return text, bk.fit(blocks)


def incident_value(card: AlertCard) -> str:
    """The Open incident button's pre-fill as JSON within Slack's 2,000 characters (a cut value would not
    parse): the link goes first (the alert message's own link replaces it), then the description shrinks."""
    data = {"id": card.id, **card.incident}
    value = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if len(value) > bk.BUTTON_VALUE:
        data.pop("l", None)
        value = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if len(value) > bk.BUTTON_VALUE:
        description = str(data.get("d", ""))
        data["d"] = description[: max(len(description) - (len(value) - bk.BUTTON_VALUE) - 8, 0)]
        value = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return value


def digest(text: str, blocks: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([text, blocks], sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ListedAlert:
    rule: str
    state: str
    level: str | None
    value: str | None
    since: datetime | None
    labels: dict[str, str]
    error: str | None = None
    acked_by: str | None = None


def render_list(alerts: list[ListedAlert], silences: dict[str, datetime]) -> list[dict[str, Any]]:
    firing = [a for a in alerts if a.state == FIRING]
    pending = [a for a in alerts if a.state == PENDING]
    broken = [a for a in alerts if a.state in (ERROR, STALE)]
    blocks = [bk.header(f"Alerts: {len(firing)} firing, {len(pending)} pending")]

    def line(a: ListedAlert) -> str:
        labels = " ".join(f"`{k}={v}`" for k, v in sorted(a.labels.items()) if not k.startswith("annotation:"))
        level = f"*{a.level}* " if a.level else ""
        value = f" — {a.value}" if a.value else ""
        ack = " · ✋ acked" if a.acked_by else ""
        return f"• {level}`{a.rule}`{value} {labels} since {when(a.since)}{ack}".replace("  ", " ")

    for title, group in (("🔥 Firing", firing), ("⏳ Pending", pending)):
        if group:
            blocks.append(bk.section(f"*{title}*\n" + "\n".join(line(a) for a in group)))
    if broken:
        text = "\n".join(f"• `{a.rule}` — {'no data' if a.state == STALE else 'cannot evaluate'}"
                         + (f": {a.error}" if a.error else "") for a in broken)
        blocks.append(bk.section("*⚠️ Rules needing attention*\n" + text))
    if not firing and not pending and not broken:
        blocks.append(bk.section("All clear: nothing is firing or pending."))
    if silences:
        blocks.append(bk.context("🔕 Silenced: " + ", ".join(f"`{r}` until {when(t)}"
                                                             for r, t in sorted(silences.items()))))
    return bk.fit(blocks)


def escalation_text(row: Any, policy: str, step: Step, recipients: Recipients, *, now: datetime) -> str:
    """An escalation policy's level, in the alert's thread: who, and how each was reached."""
    who = " ".join(recipients.mentions) or "(nobody in Slack)"
    since = format_duration(now - row.firing_since) if row.firing_since else ""
    level = f"level {step.level + 1} of `{policy}`" + (f", round {step.cycle + 1}" if step.cycle else "")
    lines = [f"📣 {who}: `{row.rule}` is firing ({row.level}), not acknowledged"
             + (f" for {since}" if since and not step.first else "") + f" ({level}). Please acknowledge."]
    if recipients.how:
        lines.append("Notified: " + ", ".join(recipients.how))
    if recipients.notes:
        lines.append("Not reached: " + "; ".join(recipients.notes))
    return "\n".join(lines)
