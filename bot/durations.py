"""Human durations as runbooks write them: `500ms`, `5m`, `1 h`, `< 4 h`, `90s`, `7d`, `immediate`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_IMMEDIATE = {"immediate", "immediately", "now", "0"}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse a duration; bare numbers are seconds. Raises ValueError with a readable message."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or 7d")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=text)
    raw = str(text).strip().lower()
    cleaned = raw.lstrip("<≤ ").strip()
    if cleaned in _IMMEDIATE:
        return timedelta(0)
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return timedelta(seconds=float(cleaned))
    pos, total = 0, 0.0
    compact = cleaned.replace(" ", "")
    for match in _PART.finditer(compact):
        if match.start() != pos or match.group(2) not in _UNITS:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(compact):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h, 7d or 'immediate')")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """Compact form for messages: `0s`, `45s`, `5m`, `1h 30m`, `2d 4h`."""
    exact = value.total_seconds()
    if 0 < exact < 1:
        return f"{round(exact * 1000)}ms"
    seconds = int(exact)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2])


def _validate(value: Any) -> timedelta:
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
]
