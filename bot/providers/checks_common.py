"""What the health-check providers share: the outcome of one probe and readable, secret-free reasons."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from bot.config.secrets import EnvRef
from bot.secrets import Scrubber

ProbeStatus = Literal["ok", "warn", "fail"]
DETAIL_LIMIT = 300


@dataclass(frozen=True)
class Probe:
    """What a provider found; the engine adds the name, kind, latency and the latency warning.

    `body` is what the target's answer says about itself (bot/providers/checks_body.py), shown after the
    detail; `rate_limited` marks a 429, a warning that is not news about the target's health."""

    status: ProbeStatus
    detail: str = ""
    status_code: int | None = None
    body: str = ""
    rate_limited: bool = False
    retry_after: float | None = None  # seconds, from the 429's Retry-After


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date; None when absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return float(max(0, round(when.timestamp() - (time.time() if now is None else now))))


def rate_limited_text(seconds: float | None) -> str:
    """`rate limited (429)` or `rate limited (429), retry after 30 s`."""
    return "rate limited (429)" + (f", retry after {seconds_text(seconds)}" if seconds is not None else "")


def seconds_text(seconds: float) -> str:
    """`5 s`, `0.5 s`, `1.25 s`: the way a timeout is quoted back to the user."""
    return f"{seconds:g} s"


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        wrapped = getattr(current, "os_error", None)  # aiohttp's connection errors carry the OSError here
        if isinstance(wrapped, BaseException) and id(wrapped) not in seen:
            seen.add(id(wrapped))
            yield wrapped  # before its wrapper, which copies its errno but not its type (socket.gaierror)
        yield current
        current = current.__cause__ or current.__context__


def os_reason(exc: BaseException) -> str | None:
    """A short reason for a network failure anywhere in the exception chain, or None if there is none."""
    for item in _chain(exc):
        if isinstance(item, ConnectionRefusedError) or getattr(item, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return "cannot resolve host"
        if isinstance(item, ConnectionResetError):
            return "connection reset"
        if isinstance(item, OSError) and item.strerror:
            return item.strerror.lower()
    return None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` scrubbed as opsbot scrubs everything (bot/secrets.py: each value, also URL- or JSON-encoded, and
    token- and password-shaped strings), on one line and cut to a readable length."""
    text = " ".join(Scrubber(s for s in secrets if len(s) >= 3)(text).split())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def target_url(url: object) -> str:
    """The URL to request: a `${VAR}` URL substituted now (ConfigError names an unset variable), else as is."""
    return url.reveal(where="url") if isinstance(url, EnvRef) else str(url)
