"""Text between the terminal and Slack's formats, as pure functions.

Typed → Slack: what Slack does to a slash command's text (`escape_command`): `&`, `<`, `>` become entities,
and for the commands whose manifest entry says `should_escape: true`, `@bob` becomes `<@U…|bob>`, `@oncall`
`<!subteam^S…|@oncall>`, `#ops` `<#C…|ops>`, `@here` `<!here>`.

Slack → terminal (`render`): `<@U…>` → @name, `<#C…>` → #name, `<!subteam^S…>` → @handle, `<url|text>` →
text (url), `<!date^…>` → the local date and time, `:warning:` → ⚠️, entities back to characters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

# manifest.yml's slash commands with `should_escape: true` (tests/test_shell_markup.py checks they agree).
ESCAPED_COMMANDS = frozenset({"/incident", "/oncall", "/page"})

# Every shortcode opsbot's own messages use, and the common ones people type; others are left as typed.
EMOJI = {
    "warning": "⚠️", "white_check_mark": "✅", "heavy_check_mark": "✔️", "x": "❌", "no_entry": "⛔",
    "no_entry_sign": "🚫", "hourglass": "⌛", "hourglass_flowing_sand": "⏳", "arrows_counterclockwise": "🔄",
    "rewind": "⏪", "memory": "📝", "information_source": "ℹ️", "calendar": "📆", "rotating_light": "🚨",
    "fire": "🔥", "red_circle": "🔴", "large_orange_circle": "🟠", "large_yellow_circle": "🟡",
    "large_green_circle": "🟢", "white_circle": "⚪", "bell": "🔔", "no_bell": "🔕", "mega": "📣",
    "loudspeaker": "📢", "pager": "📟", "pushpin": "📌", "mag": "🔍", "eyes": "👀", "raised_hand": "✋",
    "wave": "👋", "tada": "🎉", "rocket": "🚀", "construction": "🚧", "bulb": "💡", "lock": "🔒",
    "unlock": "🔓", "link": "🔗", "clock1": "🕐", "stopwatch": "⏱️", "chart_with_upwards_trend": "📈",
    "chart_with_downwards_trend": "📉", "thumbsup": "👍", "+1": "👍", "thumbsdown": "👎", "-1": "👎",
    "heart": "❤️", "question": "❓", "exclamation": "❗", "sos": "🆘", "robot_face": "🤖", "gear": "⚙️",
    "satellite_antenna": "📡", "satellite": "🛰️", "scroll": "📜", "clipboard": "📋", "traffic_light": "🚥",
}


@dataclass
class Names:
    """What the workspace calls its ids: users (id → name), channels (id → name), groups (id → handle)."""

    users: dict[str, str] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)

    def user_id(self, name: str) -> str | None:
        return next((uid for uid, n in self.users.items() if n.lower() == name.lower()), None)

    def group_id(self, handle: str) -> str | None:
        return next((gid for gid, h in self.groups.items() if h.lower() == handle.lower()), None)

    def channel_id(self, name: str) -> str | None:
        return next((cid for cid, n in self.channels.items() if n == name.lower()), None)


_TYPED_MENTION = re.compile(r"(?<![\w<@#|&/])([@#])([A-Za-z0-9][\w.-]*[A-Za-z0-9_]|[A-Za-z0-9])")
_BROADCASTS = ("here", "channel", "everyone")


def escape_command(command: str, text: str, names: Names) -> str:
    """A slash command's text as Slack sends it to the app."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if command.lower() not in ESCAPED_COMMANDS:
        return text

    def convert(match: re.Match[str]) -> str:
        sigil, name = match.group(1), match.group(2)
        if sigil == "#":
            channel = names.channel_id(name)
            return f"<#{channel}|{name.lower()}>" if channel else match.group(0)
        if name.lower() in _BROADCASTS:
            return f"<!{name.lower()}>"
        user = names.user_id(name)
        if user:
            return f"<@{user}|{names.users[user]}>"
        group = names.group_id(name)
        if group:
            return f"<!subteam^{group}|@{names.groups[group]}>"
        return match.group(0)  # Slack leaves a name it does not know as typed

    return _TYPED_MENTION.sub(convert, text)


# -- Slack → terminal ------------------------------------------------------------------------------------
_DATE = re.compile(r"<!date\^(-?\d+)\^([^^|>]*)(?:\^[^|>]*)?(?:\|([^>]*))?>")
_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#([CDG][A-Z0-9]+)(?:\|([^>]*))?>")
_GROUP = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|@?([^>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]+))?>")
_SHORTCODE = re.compile(r"(?<![\w:]):([a-z0-9_+-]+):(?![\w:])")


def format_date(epoch: int, template: str, *, now: datetime, zone: tzinfo | None) -> str:
    """Slack's `<!date^…>` tokens in the reader's zone (`zone` None: the machine's local zone)."""
    at = datetime.fromtimestamp(epoch, UTC).astimezone(zone)
    today = now.astimezone(zone).date()

    def pretty(long: bool) -> str:
        days = (at.date() - today).days
        if days in (-1, 0, 1):
            return {-1: "yesterday", 0: "today", 1: "tomorrow"}[days]
        return at.strftime("%B %-d, %Y" if long else "%b %-d, %Y")

    def ago() -> str:
        seconds = int((now - at).total_seconds())
        future, seconds = seconds < 0, abs(seconds)
        for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
            if seconds >= size:
                amount = seconds // size
                words = f"{amount} {unit}{'s' if amount != 1 else ''}"
                return f"in {words}" if future else f"{words} ago"
        return "in a few seconds" if future else "a few seconds ago"

    tokens = {
        "date_num": at.strftime("%Y-%m-%d"), "date": at.strftime("%B %-d, %Y"),
        "date_short": at.strftime("%b %-d, %Y"), "date_long": at.strftime("%A, %B %-d, %Y"),
        "date_pretty": pretty(True), "date_short_pretty": pretty(False),
        "date_long_pretty": pretty(True) if abs((at.date() - today).days) <= 1 else at.strftime("%A, %B %-d, %Y"),
        "time": at.strftime("%H:%M"), "time_secs": at.strftime("%H:%M:%S"), "ago": ago(),
    }
    return re.sub(r"\{(\w+)\}", lambda m: tokens.get(m.group(1), m.group(0)), template)


def render(text: str, names: Names, *, now: datetime | None = None, zone: tzinfo | None = None) -> str:
    """Slack mrkdwn markup as a person reads it in a terminal (bold and code marks are left as they are)."""
    moment = now or datetime.now(UTC)

    def date(match: re.Match[str]) -> str:
        try:
            return format_date(int(match.group(1)), match.group(2), now=moment, zone=zone)
        except (ValueError, OverflowError, OSError):
            return match.group(3) or match.group(0)

    def user(match: re.Match[str]) -> str:
        return "@" + (names.users.get(match.group(1)) or match.group(2) or match.group(1))

    def channel(match: re.Match[str]) -> str:
        return "#" + (names.channels.get(match.group(1)) or match.group(2) or match.group(1))

    def group(match: re.Match[str]) -> str:
        return "@" + (names.groups.get(match.group(1)) or match.group(2) or match.group(1))

    def link(match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        if url.startswith("mailto:"):
            return label or url.removeprefix("mailto:")
        return f"{label} ({url})" if label and label != url else url

    text = _DATE.sub(date, text)
    text = _USER.sub(user, text)
    text = _CHANNEL.sub(channel, text)
    text = _GROUP.sub(group, text)
    text = _SPECIAL.sub(r"@\1", text)
    text = _LINK.sub(link, text)
    text = _SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

