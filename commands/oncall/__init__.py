"""`/oncall`: who is on call now and next, overrides (permissioned, audited), the scheduled refresh of iCal
feeds and the sync of schedules' Slack user groups."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck

from bot import metrics
from bot.config import Config
from bot.deps import Deps
from bot.durations import parse_duration
from bot.errors import InvalidInput, OpsbotError
from bot.oncall import MAX_OVERRIDE, schedule_of
from bot.oncall.rotation import localize
from commands.common import ack_deferred, ephemeral, error_text, parse_id, request_key, split_args
from commands.oncall import render
from commands.router import Router

HELP = [
    ("/oncall [schedule]", "Who is on call now and next, with hand-off times in your time zone"),
    ("/oncall override <schedule> @user <4h|2d|until YYYY-MM-DD HH:MM>",
     "Put someone on call from now (the time is in the schedule's zone; at most 30 days)"),
    ("/oncall overrides [schedule]", "Current and upcoming overrides"),
    ("/oncall cancel <id>", "Cancel an override"),
]
USAGE = "Usage: `/oncall [schedule]`, `/oncall override <schedule> @user <4h|2d|until YYYY-MM-DD HH:MM>`, " \
        "`/oncall overrides [schedule]`, `/oncall cancel <id>`, `/oncall help`"
OVERRIDE_USAGE = "Usage: `/oncall override <schedule> @user <duration, e.g. 4h or 2d | until YYYY-MM-DD HH:MM>`"
FEED_JOB = "oncall.feed.{schedule}"
USERGROUP_JOB = "oncall.usergroups"
USERGROUP_INTERVAL = timedelta(minutes=1)
FEED_CHECK = timedelta(minutes=1)  # feeds are looked at every minute and fetched when due (bot.oncall.ical)
_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_HANDLE = re.compile(r"^@?([a-z0-9][a-z0-9._-]{0,79})$", re.IGNORECASE)


@dataclass(frozen=True)
class Request:
    """A parsed `/oncall` command: what to do and its validated arguments (plain JSON for the job)."""

    verb: str  # show, override, overrides, cancel, help
    args: dict[str, Any] = field(default_factory=dict)


def parse_user(word: str) -> str:
    """`<@U…|name>` (an escaped mention) → `U…`; `@name` → `@name` (looked up by the job)."""
    mention = _MENTION.match(word)
    if mention:
        return mention.group(1)
    handle = _HANDLE.match(word)
    if handle and word.startswith("@"):
        return "@" + handle.group(1).lower()
    raise InvalidInput(f"`{word[:40]}` is not a person: mention them, e.g. `@alice`. " + OVERRIDE_USAGE)


def parse_until(words: list[str], config: Config, schedule: str) -> str:
    """`until YYYY-MM-DD HH:MM` (or `…THH:MM`, or a date alone: midnight) in the schedule's zone → ISO UTC."""
    text = " ".join(words)
    try:
        wall = datetime.fromisoformat(text)
        return (wall.astimezone(UTC) if wall.tzinfo is not None else localize(wall, config.oncall[schedule].zone)) \
            .isoformat()
    except (ValueError, OverflowError):
        raise InvalidInput(f"`until {text[:40]}` is not a time: use `until YYYY-MM-DD HH:MM` "
                           "(in the schedule's time zone).") from None


def parse_length(word: str) -> float:
    try:
        length = parse_duration(word)
    except (ValueError, OverflowError):
        raise InvalidInput(f"`{word[:40]}` is not a duration (e.g. 30m, 4h, 2d). " + OVERRIDE_USAGE) from None
    if length <= timedelta(0) or length > MAX_OVERRIDE:
        raise InvalidInput(f"An override lasts more than nothing and at most {MAX_OVERRIDE.days} days.")
    return length.total_seconds()


def parse(text: str | None, config: Config) -> Request:
    """The command's words, validated against opsbot.yml (schedule names); no I/O."""
    words = split_args(text)
    verb = words[0].lower() if words else ""
    if not words:
        return Request("show", {"schedule": None})
    if verb in ("help", "-h", "--help"):
        return Request("help")
    if verb == "override":
        if len(words) < 4:
            raise InvalidInput(OVERRIDE_USAGE)
        schedule = schedule_of(config, words[1])[0]
        target = parse_user(words[2])
        if words[3].lower() == "until":
            if len(words) < 5:
                raise InvalidInput(OVERRIDE_USAGE)
            return Request("override", {"schedule": schedule, "target": target, "seconds": None,
                                        "until": parse_until(words[4:], config, schedule)})
        if len(words) != 4:
            raise InvalidInput(OVERRIDE_USAGE)
        return Request("override", {"schedule": schedule, "target": target, "seconds": parse_length(words[3]),
                                    "until": None})
    if verb == "overrides" and len(words) <= 2:
        return Request("overrides", {"schedule": schedule_of(config, words[1])[0] if len(words) == 2 else None})
    if verb == "cancel":
        if len(words) != 2:
            raise InvalidInput("Usage: `/oncall cancel <override id>` (`/oncall overrides` lists them)")
        return Request("cancel", {"override_id": parse_id(words[1].lstrip("#"), what="override")})
    if len(words) == 1:
        return Request("show", {"schedule": schedule_of(config, words[0])[0]})
    raise InvalidInput(USAGE)


JOBS = {"show": "oncall.show", "override": "oncall.override", "overrides": "oncall.overrides",
        "cancel": "oncall.cancel"}
MUTATING = {"override", "cancel"}


async def oncall_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("oncall")
    try:
        request = parse(command.get("text"), deps.config)
    except OpsbotError as exc:
        await ack(ephemeral(error_text(exc)))
        return
    if request.verb == "help":
        await ack(ephemeral(render.help_text(HELP), [{"type": "section", "text": {
            "type": "mrkdwn", "text": render.help_text(HELP)}}]))
        return
    await ack_deferred(ack, deps, JOBS[request.verb], once=request_key(command) if request.verb in MUTATING else None,
                       user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"), **request.args)


def register(app: Router) -> None:
    app.command("/oncall")(oncall_command)


def schedule(deps: Deps) -> None:
    """Each iCal feed's refresh and, when a schedule has a `usergroup:`, the user group sync every minute:
    named jobs run by the scheduler's leader. A feed is fetched every `ical.refresh`, at the first check
    when never read (a new deploy), and again a minute after a failed refresh."""
    for name, found in deps.config.oncall.items():
        if found.ical is not None:
            deps.scheduler.every(FEED_JOB.format(schedule=name), min(found.ical.refresh, FEED_CHECK),
                                 partial(deps.run_job, "oncall.refresh_feed", schedule=name))
    if any(found.usergroup for found in deps.config.oncall.values()):
        deps.scheduler.every(USERGROUP_JOB, USERGROUP_INTERVAL, partial(deps.run_job, "oncall.sync_usergroups"))
