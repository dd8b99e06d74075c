"""Pure renderers of roles and follow-ups: lines, lists, the postmortem's section and the modals."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.config import Config
from bot.followups.dates import due_day
from bot.incidents import roles
from bot.models import FollowUp, Incident
from commands import blocks as bk
from commands.followups.ids import Action, Callback, Field, role_field

Blocks = list[dict[str, Any]]


def link(row: FollowUp) -> str:
    if row.tracker_url:
        return f"<{row.tracker_url}|{row.tracker_key}>"
    if row.tracker and row.tracker_error:
        return "_not filed_"
    return "_filing…_" if row.tracker else ""


def line(row: FollowUp, *, now: datetime) -> str:
    mark = "✅" if row.status == "done" else ("⏰" if row.due and row.due <= now else "▫️")
    parts = [f"{mark} *#{row.id}* {row.text}"]
    parts.append(f"<@{row.owner_id}>" if row.owner_id else "_no owner_")
    if row.due:
        parts.append(f"due {due_day(row.due).isoformat()}")
    if row.status == "done":
        parts.append("done" + (" in the tracker" if row.done_by == "tracker" else ""))
    issue = link(row)
    if issue:
        parts.append(issue)
    return " · ".join(parts)


def followup_list(incident: Incident, rows: list[FollowUp], *, now: datetime) -> tuple[str, Blocks]:
    if not rows:
        text = f"{incident.ref} has no follow-ups. Add one with `/incident followup <text> [@owner] [due <date>]`."
        return text, [bk.section(text)]
    text = f"Follow-ups of {incident.ref}"
    return text, [bk.section(f"*{text}*"), *(bk.section(line(r, now=now)) for r in rows[:45])]


def created(row: FollowUp, incident: Incident) -> str:
    owner = f" for <@{row.owner_id}>" if row.owner_id else ""
    due = f", due {due_day(row.due).isoformat()}" if row.due else ""
    return f"📌 Follow-up #{row.id} of {incident.ref}{owner}{due}: {row.text}"


def postmortem_section(config: Config, held: dict[str, str], rows: list[FollowUp], *, now: datetime) -> str:
    """Markdown appended to the postmortem: who held which role, and the follow-ups with their links."""
    out = ["", "## Roles", *(f"- {ln}" for ln in roles.lines(config, held)), "", "## Follow-ups"]
    out += [f"- {line(r, now=now)}" for r in rows] or ["- none yet (use *Add follow-up* or `/incident followup`)"]
    return "\n".join(out)


def postmortem_buttons(incident: Incident) -> Blocks:
    return [bk.actions(bk.button("Add follow-up", Action.ADD_FOLLOWUP, incident.ref, style="primary"),
                       bk.button("Roles", Action.PICK_ROLES, incident.ref))]


def followup_modal(incident: Incident, channel: str | None) -> dict[str, Any]:
    return bk.modal("Add follow-up", [
        bk.section(f"*{incident.ref}* {incident.title}"),
        bk.text_input(Field.TEXT, Field.TEXT, "What needs doing", multiline=True, max_length=500),
        bk.user_input(Field.OWNER, Field.OWNER, "Owner", optional=True),
        {"type": "input", "block_id": Field.DUE, "label": bk.plain("Due"), "optional": True,
         "element": {"type": "datepicker", "action_id": Field.DUE}},
    ], callback_id=Callback.ADD_FOLLOWUP, submit="Add",
        private_metadata=json.dumps({"incident_id": incident.id, "channel": channel}))


def roles_modal(config: Config, incident: Incident, held: dict[str, str], channel: str | None) -> dict[str, Any]:
    inputs = [bk.user_input(role_field(r.name), role_field(r.name), r.name.capitalize() +
                            (f" — {r.description}" if r.description else ""), initial=held.get(r.name),
                            optional=r.name != roles.COMMANDER) for r in config.incidents.roles]
    return bk.modal("Incident roles", [bk.section(f"*{incident.ref}* {incident.title}"), *inputs],
                    callback_id=Callback.ROLES, submit="Save",
                    private_metadata=json.dumps({"incident_id": incident.id, "channel": channel}))


HELP = [
    ("/incident role <role> @user", "Give an incident role (commander, communications, scribe…) to someone"),
    ("/incident roles", "Who holds which role in this incident"),
    ("/incident followup <text> [@owner] [due <date>]", "Add a follow-up (filed in the tracker); due: "
                                                        "YYYY-MM-DD, tomorrow, in 3d, fri"),
    ("/incident followups", "List this incident's follow-ups with their tracker links"),
    ("/incident followup done <id> | assign <id> @user", "Complete or reassign a follow-up"),
]


def escape(text: str) -> str:
    """Modal text (raw) as mrkdwn, broadcast mentions defused."""
    from commands.incident.parse import safe_text

    return safe_text(text, raw=True)


def with_roles(config: Config, held: dict[str, str], incident: Incident, blocks: Blocks) -> Blocks:
    """The incident summary with its roles (a context line) and a *Roles* button beside its actions."""
    from commands.incident.ids import ACTIONS_BLOCK

    line = bk.context("🎭 " + " · ".join(roles.lines(config, held)))
    out = list(blocks)
    index = next((i for i, b in enumerate(out) if b.get("block_id") == ACTIONS_BLOCK), None)
    if index is None:
        return [*out, line]
    row = dict(out[index])
    row["elements"] = [*row.get("elements", []), bk.button("Roles", Action.PICK_ROLES, incident.ref)]
    return [*out[:index], line, row, *out[index + 1:]]


def role_inputs(config: Config) -> Blocks:
    """Optional user pickers for the roles besides the commander (the declare modal)."""
    return [bk.user_input(role_field(r.name), role_field(r.name), r.name.capitalize(), optional=True)
            for r in config.incidents.roles if r.name != roles.COMMANDER]
