"""Block Kit for `/oncall` (pure). Times are Slack date tokens, so each reader sees them in their own time
zone; the fallback text (old clients, notifications) is in the schedule's zone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.oncall import OverrideInfo, Status
from bot.oncall.rotation import OVERRIDE
from commands import blocks as bk
from commands.blocks import Block

SHOWN_SCHEDULES = 20  # two blocks each at most: within the 50 a message may have
SHOWN_OVERRIDES = 40


def when(at: datetime, zone: ZoneInfo) -> str:
    """`<!date^EPOCH^{date_short_pretty} {time}|Mon 05 Jan 10:00 CET>`."""
    local = at.astimezone(zone)
    fallback = f"{local:%a %d %b %Y %H:%M} {local.tzname()}"
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _person(user: str, names: Mapping[str, str]) -> str:
    return names.get(user) or (f"<@{user}>" if user.startswith(("U", "W")) and user.isalnum() else user)


def status_lines(status: Status, names: Mapping[str, str]) -> list[str]:
    zone = status.schedule.zone
    if status.now:
        now = ", ".join(_person(s.user, names) + (" _(override)_" if s.layer == OVERRIDE else "")
                        for s in status.now)
        until = min(s.end for s in status.now)
        lines = [f"*Now:* {now} until {when(until, zone)}"]
    else:
        lines = ["*Now:* nobody"]
    if status.next is not None:
        lines.append(f"*Next:* {_person(status.next.user, names)} from {when(status.next.start, zone)}")
    return lines


def stale_note(status: Status) -> str | None:
    """Why an iCal schedule's answer may be out of date (never the feed's URL: it is a secret)."""
    if not status.stale or status.schedule.ical is None:
        return None
    feed = status.feed
    if feed is None or feed.fetched_at is None:
        reason = f": {feed.error}" if feed is not None and feed.error else ""
        return f":warning: The iCal feed has not been read yet{reason}."
    copy = f"last good copy from {when(feed.fetched_at, status.schedule.zone)}"
    if feed.error:
        return f":warning: The iCal feed is stale ({copy}); the last refresh failed: {feed.error}."
    return f":warning: The iCal feed is stale ({copy})."


def schedule_block(status: Status, names: Mapping[str, str]) -> list[Block]:
    title = f"*{status.name}*" + (f" — {status.schedule.description}" if status.schedule.description else "")
    out = [bk.section("\n".join([title, *status_lines(status, names)]))]
    note = stale_note(status)
    if note:
        out.append(bk.context(note))
    return out


def statuses(found: Sequence[Status], names: Mapping[str, str]) -> list[Block]:
    if not found:
        return [bk.section("No on-call schedules are configured (`oncall:` in opsbot.yml).")]
    out: list[Block] = [bk.header("On call" if len(found) > 1 else f"On call: {found[0].name}")]
    for status in found[:SHOWN_SCHEDULES]:
        out += schedule_block(status, names)
    if len(found) > SHOWN_SCHEDULES:
        out.append(bk.context(f"…and {len(found) - SHOWN_SCHEDULES} more: `/oncall <schedule>`."))
    out.append(bk.context("Times are shown in your time zone. `/oncall help` for overrides."))
    return out[: bk.MAX_MESSAGE_BLOCKS]


def override_line(info: OverrideInfo, zone: ZoneInfo) -> str:
    return (f"`#{info.id}` *{info.schedule}*: <@{info.user}> from {when(info.start, zone)} "
            f"until {when(info.end, zone)} (set by <@{info.created_by}>)")


def overrides(found: Sequence[OverrideInfo], zones: Mapping[str, ZoneInfo], schedule: str | None) -> list[Block]:
    where = f" for *{schedule}*" if schedule else ""
    if not found:
        return [bk.section(f"No current or upcoming overrides{where}.")]
    lines = [override_line(info, zones[info.schedule]) for info in found[:SHOWN_OVERRIDES]]
    out = [bk.section(f"Overrides{where}:\n" + "\n".join(lines))]
    if len(found) > SHOWN_OVERRIDES:
        out.append(bk.context(f"…and {len(found) - SHOWN_OVERRIDES} more."))
    out.append(bk.context("Cancel one with `/oncall cancel <id>`."))
    return out


def override_set(info: OverrideInfo, zone: ZoneInfo) -> str:
    return (f":calendar: Override `#{info.id}`: <@{info.user}> is on call for *{info.schedule}* from "
            f"{when(info.start, zone)} until {when(info.end, zone)}.")


def override_announcement(info: OverrideInfo, zone: ZoneInfo, actor: str) -> str:
    return f"<@{actor}> set an on-call override. " + override_set(info, zone)


def cancel_announcement(info: OverrideInfo, zone: ZoneInfo, actor: str) -> str:
    return (f"<@{actor}> cancelled on-call override `#{info.id}` (<@{info.user}> for *{info.schedule}* until "
            f"{when(info.end, zone)}).")


def help_text(usage: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"`{u}` — {d}" for u, d in usage)
