"""The App Home view: pure, `bot.home.Home` in, a `type: home` view out (≤ 100 blocks).

Nothing in it changes by itself (ages are Slack's `<!date^…^{ago}|…>`, drawn by the client), so the same
state gives the same view and the refresh job republishes only when something shown changed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from bot.home import FiringAlert, Home, OpenIncident, PendingRollback
from commands import blocks as bk
from commands.alerts.render import Action as AlertAction
from commands.incident.ids import Action as IncidentAction
from commands.rollback.ids import Ids as RollbackIds

MAX_BLOCKS = 100
MAX_ITEMS = 15  # per list: five lists and their headers stay under 100 blocks
CALLBACK_ID = "opsbot_home"


def ago(at: datetime | None) -> str:
    """Slack renders `{ago}` in the reader's client ("5 minutes ago"): the view itself stays the same."""
    if at is None:
        return "—"
    return f"<!date^{int(at.timestamp())}^{{ago}}|{at:%Y-%m-%d %H:%M} UTC>"


def channel_link(channel: str | None) -> str:
    return f"<#{channel}>" if channel else "_no channel_"


def person(who: str) -> str:
    """A schedule or Slack user: `<@U…>` for ids, as written otherwise (an @handle or an address)."""
    return f"<@{who}>" if who[:1] in "UW" and who.isalnum() else who


def _more(count: int, shown: int, what: str) -> list[dict[str, Any]]:
    return [bk.context(f"_…and {count - shown} more {what}._")] if count > shown else []


def _incident(item: OpenIncident) -> dict[str, Any]:
    roles = f" · *you: {', '.join(item.your_roles)}*" if item.your_roles else ""
    text = (f"*{item.severity} {item.ref}* {bk.cut(item.title, 200)}\n"
            f"{channel_link(item.channel_id)} · {item.status} · declared {ago(item.created_at)} · "
            f"commander <@{item.commander_id}>{roles}")
    accessory = (bk.button("Acknowledge", IncidentAction.ACKNOWLEDGE, str(item.id), style="primary")
                 if not item.acknowledged else None)
    return bk.section(text, accessory=accessory)


def _alert(item: FiringAlert) -> dict[str, Any]:
    level = "🔴" if item.level == "critical" else "🟠"
    acked = f" · acked by <@{item.acked_by}>" if item.acked_by and item.acked_by[:1] in "UW" else (
        " · acked" if item.acked_by else "")
    summary = f"\n{bk.cut(item.summary, 300)}" if item.summary else ""
    text = f"{level} *{item.rule}* firing since {ago(item.since)} in {channel_link(item.channel)}{acked}{summary}"
    accessory = bk.button("Acknowledge", AlertAction.ACK, str(item.id)) if not item.acked_by else None
    return bk.section(text, accessory=accessory)


def _rollback(item: PendingRollback) -> dict[str, Any]:
    version = f" to `{item.to_version}`" if item.to_version else ""
    text = (f"*{item.service}* ({item.environment}){version}, asked by <@{item.requested_by}> in "
            f"{channel_link(item.channel)} · approvals {item.approvals}\n_{bk.cut(item.reason, 300)}_")
    return bk.section(text, accessory=bk.button("Approve", RollbackIds.APPROVE, str(item.id), style="primary"))


def home_view(home: Home) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [bk.header("opsbot")]

    blocks += [bk.header(f"Open incidents ({len(home.incidents)})")]
    blocks += [_incident(i) for i in home.incidents[:MAX_ITEMS]] or [bk.context("No open incidents. :tada:")]
    blocks += _more(len(home.incidents), MAX_ITEMS, "open incidents (`/incident list`)")

    blocks += [bk.divider(), bk.header(f"Firing alerts ({len(home.alerts)})")]
    blocks += [_alert(a) for a in home.alerts[:MAX_ITEMS]] or [bk.context("Nothing is firing.")]
    blocks += _more(len(home.alerts), MAX_ITEMS, "alerts (`/alerts`)")

    blocks += [bk.divider(), bk.header(f"Kill switches engaged ({len(home.kill_switches)})")]
    if home.kill_switches:
        lines = [f"• `{k.target}` by {person(k.by)} {ago(k.at)}" for k in home.kill_switches[:40]]
        blocks.append(bk.section("\n".join(lines)))
        blocks += _more(len(home.kill_switches), 40, "kill switches")
    else:
        blocks.append(bk.context("No kill switch is engaged."))

    blocks += [bk.divider(), bk.header(f"Rollbacks waiting for your approval ({len(home.rollbacks)})")]
    blocks += [_rollback(r) for r in home.rollbacks[:MAX_ITEMS]] or [bk.context("None waiting for you.")]
    blocks += _more(len(home.rollbacks), MAX_ITEMS, "rollbacks")

    blocks += [bk.divider(), bk.header("On call")]
    if home.oncall:
        fields = [f"*{o.schedule}*\n" + (o.error or (", ".join(person(p) for p in o.people) or "nobody"))
                  for o in home.oncall]
        blocks += [bk.fields_section(fields[i:i + 10]) for i in range(0, len(fields), 10)]
    else:
        blocks.append(bk.context("No on-call schedules are configured (`oncall:` in opsbot.yml)."))
    return {"type": "home", "callback_id": CALLBACK_ID, "blocks": bk.fit(blocks, MAX_BLOCKS)}


def digest(view: dict[str, Any]) -> str:
    """What the view shows, as 64 hex characters: equal views, equal digests."""
    return hashlib.sha256(json.dumps(view, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
