"""Pure rendering of `/run`: the list of actions, the confirmation, the run's message and its output."""

from __future__ import annotations

from typing import Any

from bot import actions
from bot.actions.runners import Outcome
from bot.config import Config
from commands import blocks as bk
from commands.run.ids import Ids

Blocks = list[dict[str, Any]]
OUTPUT_LIMIT = 2800  # a section's text is at most 3,000 characters, with the code fence around it
ICONS = {"pending_confirm": "❔", "pending_approval": "⏳", "running": "🏃", "succeeded": "✅", "failed": "❌",
         "cancelled": "🚫", "rejected": "🚫", "expired": "⌛"}


def action_list(config: Config) -> tuple[str, Blocks]:
    if not config.actions:
        text = "No actions are configured (`actions:` in opsbot.yml)."
        return text, [bk.section(text)]
    lines = []
    for name, action in config.actions.items():
        kinds = ", ".join(f"{env}" for env in action.environments)
        flags = " · read-only" if all(action.is_read_only(e) for e in action.environments) else ""
        flags += " · destructive" if action.destructive else ""
        lines.append(f"• *{name}* — {action.description or '(no description)'} _({kinds}{flags})_\n"
                     f"   `{actions.usage(name, action)}`")
    text = "Actions:\n" + "\n".join(lines)
    return text, [bk.section(chunk) for chunk in _chunks(lines, header="*Actions* (`/run <action> [env] "
                                                                         "[key=value …]`)")]


def _chunks(lines: list[str], *, header: str) -> list[str]:
    out, current = [], header
    for line in lines:
        if len(current) + len(line) + 1 > bk.SECTION_TEXT:
            out.append(current)
            current = line
        else:
            current += "\n" + line
    out.append(current)
    return out[:49]


def described(run: Any) -> str:
    params = " ".join(f"{k}={v}" for k, v in (run.params or {}).items())
    return f"`{run.action}` in *{run.environment}*" + (f" with `{params}`" if params else "")


def confirmation(run: Any, *, destructive: bool, production: bool) -> tuple[str, Blocks]:
    warn = "⚠️ *Destructive.* " if destructive else ""
    where = " (production)" if production else ""
    approvals = (f"\nIt then needs {run.approvals_required} approval(s) before it runs."
                 if run.approvals_required else "")
    text = f"Run {described(run)}{where}?"
    value = str(run.id)
    confirm = bk.button("Run it", Ids.CONFIRM, value, style="danger" if destructive else "primary",
                        confirm=bk.confirm_dialog("Run this action?", f"{described(run)}{where}", "Run")
                        if destructive else None)
    return text, [bk.section(f"{warn}{text}{approvals}"),
                  bk.actions(confirm, bk.button("Cancel", Ids.CANCEL, value), block_id=Ids.ACTIONS_BLOCK)]


def card(run: Any) -> tuple[str, Blocks]:
    """The run's message where it was asked: status, approvals, the buttons while it waits for them."""
    icon = ICONS.get(run.status, "•")
    status = run.status.replace("_", " ")
    text = f"{icon} Run #{run.id}: {described(run)}, requested by <@{run.requested_by}> — *{status}*"
    lines = [text]
    if run.status == "pending_approval":
        lines.append(f"Approvals: {len(run.approved_by or [])}/{run.approvals_required}"
                     + (f" ({', '.join(f'<@{u}>' for u in run.approved_by)})" if run.approved_by else ""))
    elif run.approved_by:
        lines.append("Approved by " + ", ".join(f"<@{u}>" for u in run.approved_by))
    if run.decided_by and run.status == "rejected":
        lines.append(f"Rejected by <@{run.decided_by}>")
    if run.detail:
        lines.append(bk.cut(run.detail, 1000))
    blocks = [bk.section("\n".join(lines))]
    if run.status == "pending_approval":
        value = str(run.id)
        blocks.append(bk.actions(bk.button("Approve", Ids.APPROVE, value, style="primary"),
                                 bk.button("Reject", Ids.REJECT, value, style="danger"), block_id=Ids.ACTIONS_BLOCK))
    return text, blocks


def result(run: Any, outcome: Outcome) -> tuple[str, Blocks]:
    """The output in the thread: a code block (the end of long output), or the sql table."""
    head = f"{ICONS.get(run.status, '•')} {outcome.detail}"
    blocks = [bk.section(bk.cut(head, 1000))]
    if outcome.output:
        body = outcome.output
        if len(body) > OUTPUT_LIMIT:
            body = "…(cut)…\n" + body[-(OUTPUT_LIMIT - 10):]
        blocks.append(bk.section("```\n" + body.replace("```", "'''") + "\n```"))
    if outcome.run_url:
        blocks.append(bk.context(f"<{outcome.run_url}|Run details>"))
    return head, blocks
