"""Pure renderers for kill switches and flags: plain values in, Block Kit out."""

from __future__ import annotations

from typing import Any

from bot.flags import CONFIRM_TTL, Outcome, Proposal, Row
from bot.providers.flags_base import FlagChange, FlagState
from commands import blocks as bk
from commands.flags.ids import Action

Blocks = list[dict[str, Any]]
_LABELS = {"enabled": "enabled", "kill_switch": "kill switch", "rollout": "rollout"}


def value_text(field: str, value: Any) -> str:
    if value is None:
        return "?"
    if field == "rollout":
        return f"{value}%"
    if field == "kill_switch":
        return "ON" if value else "off"
    return "yes" if value else "no"


def state_text(state: FlagState | None) -> str:
    if state is None or not state.known:
        return "unknown (the store cannot be read)"
    parts = []
    if state.active is not None:
        parts.append("🟢 active" if state.active else "🔴 inactive")
    if state.enabled is not None:
        parts.append("enabled" if state.enabled else "disabled")
    if state.kill_switch is not None:
        parts.append("kill switch ON" if state.kill_switch else "kill switch off")
    if state.rollout is not None:
        parts.append(f"rollout {state.rollout}%")
    return " · ".join(parts)


def change_lines(change: FlagChange, before: FlagState) -> str:
    lines = []
    for field, new in change.fields().items():
        old = getattr(before, field)
        same = " _(already so)_" if old == new else ""
        lines.append(f"{_LABELS[field]}: {value_text(field, old)} → *{value_text(field, new)}*{same}")
    return "\n".join(lines)


def title(action: str, change: FlagChange) -> str:
    if action == "killswitch":
        return "Engage kill switch" if change.kill_switch else "Release kill switch"
    if change.rollout is not None:
        return "Change rollout"
    return "Enable flag" if change.enabled else "Disable flag"


def _dangerous(change: FlagChange) -> bool:
    return bool(change.kill_switch) or change.enabled is False or change.rollout == 0


def confirmation(proposal: Proposal, *, production: bool) -> Blocks:
    target = proposal.target
    description = f" — {target.config.description}" if target.config.description else ""
    env = f"*{target.environment}*" + (" ⚠️ production" if production else "")
    minutes = int(CONFIRM_TTL.total_seconds() // 60)
    return [
        bk.header(f"{title(proposal.action, proposal.change)}?"),
        bk.section(f"*Flag:* `{target.flag}`{description}\n*Environment:* {env} ({target.provider_name})\n"
                   f"*Current state:* {state_text(proposal.before)}"),
        bk.section(f"*Will change:*\n{change_lines(proposal.change, proposal.before)}"),
        bk.actions(
            bk.button("Confirm", Action.CONFIRM, proposal.token,
                      style="danger" if _dangerous(proposal.change) else "primary"),
            bk.button("Cancel", Action.CANCEL, proposal.token),
            block_id="flags_confirm"),
        bk.context(f"Only you can confirm; expires in {minutes} minutes."),
    ]


def done_title(action: str, change: FlagChange) -> str:
    if action == "killswitch":
        return "Kill switch engaged (feature off)" if change.kill_switch else "Kill switch released"
    if change.rollout is not None:
        return f"Rollout set to {change.rollout}%"
    return "Flag enabled" if change.enabled else "Flag disabled"


def outcome_text(outcome: Outcome) -> str:
    target = outcome.target
    mark = "✅" if outcome.verified else ("☑️" if not outcome.read_back else "⚠️")
    return (f"{mark} {done_title(outcome.action, outcome.change)}: `{target.flag}` in *{target.environment}* "
            f"by <@{outcome.actor}>")


def outcome(outcome: Outcome) -> Blocks:
    if outcome.verified:
        check = "Verified by reading the flag back."
    elif not outcome.read_back:
        check = "Accepted by the admin API; it has no `state_url`, so opsbot could not read it back."
    else:
        check = "*Read-back does not show the requested state* — check the store by hand."
    out = [
        bk.section(outcome_text(outcome)),
        bk.section(f"*Before:* {state_text(outcome.before)}\n*After:* {state_text(outcome.after)}"),
        bk.context(check),
    ]
    if outcome.incident_id is not None:
        out.append(bk.context(f"Added to the timeline of INC-{outcome.incident_id}."))
    return out


def states_table(rows: list[Row], environment: str | None) -> Blocks:
    where = f" in {environment}" if environment else ""
    if not rows:
        return [bk.section(f"No flags configured{where}. Add them under `flags:` in opsbot.yml.")]
    lines = []
    for row in rows:
        target = row.target
        prefix = f"`{target.flag}` *{target.environment}* ({target.provider_name})"
        shown = f"⚠️ {row.error}" if row.error else state_text(row.state)
        lines.append(f"{prefix} — {shown}")
    out: Blocks = [bk.header(f"Feature flags{where}")]
    chunk: list[str] = []
    for line in lines:
        line = bk.cut(line, 1000)
        if sum(len(x) + 1 for x in chunk) + len(line) > bk.SECTION_TEXT - 10:
            out.append(bk.section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    out.append(bk.section("\n".join(chunk)))
    out.append(bk.context("Read live from each store. `/killswitch <flag> on|off [env]`, "
                          "`/flag <name> enable|disable|rollout <0-100> [env]`"))
    return bk.fit(out)
