"""Due dates as people type them: `2026-03-01`, `today`, `tomorrow`, `in 3d` / `in 2w`, `fri` (the next Friday)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from bot.errors import InvalidInput

_IN = re.compile(r"^(\d{1,3})([dw])$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
USAGE = "a due date is YYYY-MM-DD, `today`, `tomorrow`, `in 3d`, `in 2w` or a weekday (`fri`)"


def parse_due(words: list[str], *, today: date) -> date:
    """The date `words` name (relative to `today`); InvalidInput otherwise."""
    text = " ".join(words).strip().lower()
    if text == "today":
        return today
    if text == "tomorrow":
        return today + timedelta(days=1)
    if text.startswith("in "):
        match = _IN.match(text[3:].replace(" ", ""))
        if match:
            count = int(match.group(1))
            return today + timedelta(days=count * (7 if match.group(2) == "w" else 1))
    if text[:3] in WEEKDAYS and (len(text) == 3 or text.startswith(("monday", "tuesday", "wednesday", "thursday",
                                                                       "friday", "saturday", "sunday"))):
        ahead = (WEEKDAYS.index(text[:3]) - today.weekday()) % 7
        return today + timedelta(days=ahead or 7)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"`{' '.join(words)}`: {USAGE}.") from None


def end_of(day: date) -> datetime:
    """A due day as the instant it is over (UTC): a follow-up due today is overdue tomorrow."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def due_day(due: datetime) -> date:
    return (due - timedelta(seconds=1)).date()
