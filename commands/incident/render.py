"""Pure Block Kit for incidents: models and plain values in, (fallback text, blocks) out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.config import Severity
from bot.incidents import RESOLVED, age, describe_response
from bot.incidents.flows import Change, Escalation
from bot.models import Incident, IncidentEvent
from commands import blocks as bk
from commands.incident.ids import ACTIONS_BLOCK, Action
from commands.incident.parse import unescape

Blocks = list[dict[str, Any]]
STATUS_EMOJI = {"investigating": "🔍", "identified": "🎯", "mitigating": "🛠️", "monitoring": "👀", "resolved": "✅"}
KIND_EMOJI = {"declared": "🚨", "acknowledged": "✋", "update": "📝", "severity": "🔺", "commander": "🧑‍✈️",
              "resolved": "✅", "escalated": "📣", "escalation_failed": "⚠️", "reminder": "⏰",
              "channel": "#️⃣", "paged": "📟"}


def _when(at: datetime | None) -> str:
    return at.strftime("%H:%M UTC") if at else "—"


def title_line(incident: Incident, severity: Severity | None = None) -> str:
    """mrkdwn (Slack-escaped); headers are plain_text, which shows entities as typed: unescape for those.
    With its `severity` the level shows its label: `INC-1 · P1 (Critical) · Checkout down`."""
    return f"{incident.ref} · {shown(incident, severity)} · {incident.title}"


def shown(incident: Incident, severity: Severity | None) -> str:
    """The incident's severity with its label (`P1 (Critical)`) when the config still knows it."""
    return severity.shown if severity is not None and severity.name == incident.severity else incident.severity


def channel_field(incident: Incident, pending_name: str | None = None) -> str:
    if incident.channel_id:
        return f"<#{incident.channel_id}>"
    if incident.channel_error:
        return f":warning: Could not be created ({incident.channel_error}); updates are posted here."
    return f"Creating #{pending_name}…" if pending_name else "—"


def facts(incident: Incident, severity: Severity | None, *, pending_channel: str | None = None) -> list[str]:
    level = f"*Severity*\n{shown(incident, severity)}" + (
        f" — {severity.description}" if severity and severity.description else "")
    status = f"*Status*\n{STATUS_EMOJI.get(incident.status, '')} {incident.status.capitalize()}"
    if incident.acknowledged_at:
        acked = f"*Acknowledged*\n<@{incident.acknowledged_by}> at {_when(incident.acknowledged_at)}"
    else:
        respond = f" (respond {describe_response(severity)})" if severity else ""
        acked = f"*Acknowledged*\nNot yet{respond}"
    fields = [level, status, f"*Commander*\n<@{incident.commander_id}>", f"*Reporter*\n<@{incident.reporter_id}>",
              f"*Channel*\n{channel_field(incident, pending_channel)}", acked]
    if incident.service or incident.environment:
        fields.append(f"*Service*\n{incident.service or '—'} ({incident.environment or 'any environment'})")
    if incident.impact:
        fields.append(f"*Impact*\n{bk.cut(incident.impact, 500)}")
    if incident.eta:
        fields.append(f"*ETA*\n{incident.eta}")
    return fields


def buttons(incident: Incident) -> Blocks:
    if incident.status == RESOLVED:
        return []
    value = str(incident.id)
    elements = []
    if incident.acknowledged_at is None:
        elements.append(bk.button("Acknowledge", Action.ACKNOWLEDGE, value, style="primary"))
    elements.append(bk.button("Post update", Action.POST_UPDATE, value))
    elements.append(bk.button("Resolve", Action.RESOLVE, value, style="danger"))
    return [bk.actions(*elements, block_id=ACTIONS_BLOCK)]


def _footer(incident: Incident, now: datetime, last_update: str | None) -> Blocks:
    if incident.status == RESOLVED:
        return [bk.section(f"✅ *Resolved* at {_when(incident.resolved_at)} after "
                           f"{age(incident.created_at, incident.resolved_at or now)}: "
                           f"{bk.cut(incident.resolution or '', 2500)}")]
    parts = [f"Declared {_when(incident.created_at)} ({age(incident.created_at, now)} ago)"]
    if last_update:
        parts.append(f"last update {_when(incident.last_update_at)}: {bk.cut(last_update, 300)}")
    return [bk.context(" · ".join(parts))]


def announcement(incident: Incident, severity: Severity | None, *, now: datetime, last_update: str | None = None,
                 pending_channel: str | None = None) -> tuple[str, Blocks]:
    """The message in the incidents channel; edited in place on every change."""
    text = f"🚨 {title_line(incident, severity)}"
    blocks = [bk.header(f"🚨 {unescape(title_line(incident, severity))}"),
              bk.fields_section(facts(incident, severity, pending_channel=pending_channel)),
              *_footer(incident, now, last_update), *buttons(incident)]
    return text, blocks


def summary(incident: Incident, severity: Severity | None, *, now: datetime,
            last_update: str | None = None) -> tuple[str, Blocks]:
    """The pinned summary in the incident channel: the announcement plus the description and source."""
    text = f"📌 {title_line(incident, severity)}"
    blocks = [bk.header(f"📌 {unescape(title_line(incident, severity))}"),
              bk.fields_section(facts(incident, severity))]
    if incident.description:
        blocks.append(bk.section(f"*Description*\n{bk.cut(incident.description, 2800)}"))
    if incident.source_link:
        blocks.append(bk.context(f"Declared from <{incident.source_link}|this message>"))
    blocks += [*_footer(incident, now, last_update), *buttons(incident)]
    return text, blocks


def topic(incident: Incident) -> str:
    status = incident.status.capitalize()
    return bk.cut(f"{incident.severity} · {status} · {incident.title} · Commander <@{incident.commander_id}>", 250)


def markdown_sections(text: str) -> Blocks:
    """Long mrkdwn cut into sections of at most 3,000 characters, on line breaks where possible."""
    chunks, current = [], ""
    for line in text.splitlines():
        while len(line) > bk.SECTION_TEXT:
            chunks.append(line[: bk.SECTION_TEXT])
            line = line[bk.SECTION_TEXT:]
        if len(current) + len(line) + 1 > bk.SECTION_TEXT:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return bk.fit([bk.section(c) for c in chunks])


def status_update(text: str) -> tuple[str, Blocks]:
    return bk.cut(text, 3000), markdown_sections(text)


def postmortem(markdown: str) -> tuple[str, Blocks]:
    return bk.cut(markdown, 3000), [{"type": "markdown", "text": bk.cut(markdown, 12000)}]


def note(text: str) -> tuple[str, Blocks]:
    return text, [bk.section(text)]


def change_line(incident: Incident, change: Change) -> str:
    """The note a change leaves in the incident's channel."""
    if change.kind == "acknowledged":
        return f"✋ {_who(change.actor)} acknowledged {incident.ref}."
    if change.kind == "template":  # flows.post_status: the team's update_template failed (told once)
        return (f":warning: `incidents.update_template` failed ({bk.cut(change.before or '', 500)}), so this "
                f"update of {incident.ref} used opsbot's bundled template. Fix it and run `opsbot config check`.")
    if change.kind == "severity":
        return f"🔺 <@{change.actor}> changed the severity of {incident.ref}: {change.before} → {incident.severity}."
    return (f"🧑‍✈️ <@{incident.commander_id}> is now the incident commander of {incident.ref} "
            f"(was <@{change.before}>, changed by <@{change.actor}>).")


def _who(actor: str) -> str:
    """A Slack user id as a mention; a provider's name (`PagerDuty (Jane)`) as is."""
    return f"<@{actor}>" if actor[:1] in "UW" and actor.isalnum() else actor


def already_done(text: str) -> tuple[str, Blocks]:
    """The answer to a change someone made first (`INC-3 was already resolved by <@U…> 2m ago.`): news, not an
    error."""
    return note(f":information_source: {text}")


def escalation(incident: Incident, severity: Severity, step: Escalation, *, now: datetime) -> str:
    """The escalation post: who, why, and how each was reached (Slack, on-call, PagerDuty, e-mail…)."""
    reached = step.recipients
    who = " ".join(reached.mentions) or "(nobody in Slack)"
    commander = f"Commander: <@{incident.commander_id}>."
    if step.inform:
        text = (f"📣 {who}: for your information, {incident.ref} is {severity.name} "
                f"({severity.description or 'declared'}): {incident.title}. {commander}")
    elif step.legacy and severity.immediate:
        text = (f"📣 {who}: {incident.ref} is {severity.name} ({severity.description or 'highest severity'}), "
                f"which needs an immediate response. {commander}")
    elif step.legacy:
        text = (f"📣 {who}: {incident.ref} ({severity.name}) has not been acknowledged within "
                f"{describe_response(severity).removeprefix('within ')}. Please respond. {commander}")
    else:
        level = f"level {step.step.level + 1} of `{step.policy}`" + (f", round {step.step.cycle + 1}"
                                                                     if step.step.cycle else "")
        why = ("needs a response" if step.step.first
               else f"has not been acknowledged for {age(incident.created_at, now)}")
        text = f"📣 {who}: {incident.ref} ({severity.name}) {why} ({level}). Please acknowledge. {commander}"
    lines = [text]
    if reached.how and (reached.pages or any("(oncall:" in h for h in reached.how)):
        lines.append("Notified: " + ", ".join(reached.how))
    if reached.notes:
        lines.append("Not reached: " + "; ".join(reached.notes))
    return "\n".join(lines)


def escalation_note(incident: Incident, step: Escalation) -> str:
    """The incidents channel's line about an escalation in an incident channel."""
    how = ", ".join(step.recipients.how) or "nobody"
    verb = "informed" if step.inform else "escalated to"
    return f"📣 {incident.ref} {verb} {how}."


def declared(incident: Incident, *, announced_in: str, announcement_error: str | None = None,
             summary_error: str | None = None, unsaved: str | None = None) -> str:
    """The one answer a declarer gets once everything is done: the channel, and whatever finally failed."""
    ref = incident.ref
    where = f"<#{incident.channel_id}>" if incident.channel_id else f"(no channel: {incident.channel_error})"
    lines = [f"Declared *{ref}* ({incident.severity}) {where}"]
    if announcement_error:
        lines.append(f":warning: The announcement in {announced_in} could not be posted ({announcement_error}); "
                     "tell people there yourself.")
    if summary_error:
        lines.append(f":warning: The summary could not be posted in the incident channel ({summary_error}).")
    if unsaved:
        lines.append(f":warning: opsbot could not record {ref}'s Slack channel and messages ({unsaved}): "
                     f"name it in commands (`/incident update {ref} …`), and do not declare it again.")
    return "\n".join(lines)


def reminder(incident: Incident, *, quiet_for: str, owner: str | None = None) -> str:
    return (f"⏰ <@{owner or incident.commander_id}>: no update on {incident.ref} for {quiet_for}. "
            f"Post one with `/incident update [status] <text>` or the *Post update* button.")


def incident_list(rows: list[Incident], *, now: datetime, severities: Sequence[Severity] = ()) -> tuple[str, Blocks]:
    if not rows:
        return "No open incidents.", [bk.section("✅ No open incidents.")]
    blocks: Blocks = [bk.header(f"Open incidents ({len(rows)})")]
    levels = {s.name: s for s in severities}
    for incident in rows:
        where = f"<#{incident.channel_id}>" if incident.channel_id else "no channel"
        last = (f"last update {age(incident.last_update_at, now)} ago" if incident.last_update_at
                else "no update yet")
        blocks.append(bk.section(
            f"*{incident.ref}* · *{shown(incident, levels.get(incident.severity))}* · {bk.cut(incident.title, 200)}\n"
            f"{STATUS_EMOJI.get(incident.status, '')} {incident.status.capitalize()} · open for "
            f"{age(incident.created_at, now)} · {last} · commander <@{incident.commander_id}> · {where}"))
    return f"{len(rows)} open incident(s)", bk.fit(blocks)


def show(incident: Incident, severity: Severity | None, *, now: datetime, timeline: list[IncidentEvent]) -> tuple[
        str, Blocks]:
    last = next((e.text for e in reversed(timeline) if e.kind == "update"), None)
    _, blocks = summary(incident, severity, now=now, last_update=last)
    return title_line(incident), [b for b in blocks if b.get("type") != "actions"]


def timeline(incident: Incident, events: list[IncidentEvent]) -> tuple[str, Blocks]:
    lines = [f"`{e.at.strftime('%m-%d %H:%M')}` {KIND_EMOJI.get(e.kind, '•')} {e.text}"
             + (f" — <@{e.actor}>" if e.actor and e.actor != "opsbot" else "") for e in events]
    return f"Timeline of {incident.ref}", [bk.header(f"Timeline · {unescape(title_line(incident))}"),
                                           *markdown_sections("\n".join(lines) or "No events yet.")][:50]


HELP = [
    ("/incident open <SEV> <title> [key=value…]", "Declare an incident now, e.g. `/incident open P1 Checkout is "
     "down service=checkout impact=\"EU card payments fail\" eta=30m` (keys: service, environment, impact, eta, "
     "description, commander=@user)"),
    ("/incident", "Declare with a form (severity, service, impact, commander…)"),
    ("/incident update [status] <text>", "Post a status update (in the incident channel, or `update INC-42 …`)"),
    ("/incident ack", "Acknowledge the incident"),
    ("/incident severity <SEV>", "Change the severity"),
    ("/incident assign @user", "Hand over the incident commander role"),
    ("/incident resolve <summary>", "Resolve, and get a postmortem draft"),
    ("/incident list", "Open incidents, most severe first"),
    ("/incident show INC-42", "One incident's current state"),
    ("/incident timeline", "Everything that happened, with times and people"),
    ("/incident postmortem", "The postmortem draft (Markdown)"),
]


def help_blocks(severities: list[Severity]) -> Blocks:
    lines = "\n".join(f"`{usage}` — {text}" for usage, text in HELP)
    levels = "\n".join(f"*{s.shown}* — {s.description or 'no description'} (respond {describe_response(s)})"
                       for s in severities)
    return [bk.header("Incident commands"), bk.section(lines), bk.section(f"*Severities*\n{levels}"),
            bk.context("Statuses: investigating → identified → mitigating → monitoring → resolved")]
