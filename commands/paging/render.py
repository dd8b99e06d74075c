"""Pure Block Kit for `/page`: plain values in, (fallback text, blocks) out."""

from __future__ import annotations

from typing import Any

from bot.paging.flows import Manual
from commands import blocks as bk
from commands.paging.ids import Action

Blocks = list[dict[str, Any]]
USAGE = "Usage: `/page <target> <message>`, e.g. `/page oncall:primary Checkout is down, please look`."


def confirmation(target: str, message: str, token: str) -> tuple[str, Blocks]:
    text = f"Page {target}?"
    quoted = "\n".join(f"> {line}" for line in message.splitlines()) or ">"
    return text, [bk.section(f"📟 Page *{target}* with:\n{quoted}"),
                  bk.actions(bk.button("Page now", Action.CONFIRM, token, style="primary"),
                             bk.button("Cancel", Action.CANCEL, token))]


def paged(manual: Manual) -> tuple[str, Blocks]:
    reached = manual.recipients
    lines = [f"📟 Paged {manual.target}: " + (", ".join(reached.how) or "nobody")]
    if reached.pages:
        lines.append("Delivery is tracked: a page that finally fails is reported to you.")
    if reached.notes:
        lines.append("Not reached: " + "; ".join(reached.notes))
    text = "\n".join(lines)
    return text, [bk.section(text)]


def slack_page(manual: Manual, user: str) -> str:
    """What the Slack recipients of a `/page` see, where it was asked."""
    return f"📟 {' '.join(manual.recipients.mentions)}: page from <@{user}>: {manual.message}"


def cancelled(target: str) -> tuple[str, Blocks]:
    text = f"Cancelled: {target} was not paged."
    return text, [bk.section(text)]


def unreachable(reason: str, forms: str) -> str:
    return f"{reason}\nYou can page: {forms}.\n{USAGE}"
