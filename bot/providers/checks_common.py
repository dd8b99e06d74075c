"""What the health-check providers share: the outcome of one probe and readable, secret-free reasons."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bot.secrets import Scrubber

ProbeStatus = Literal["ok", "warn", "fail"]
DETAIL_LIMIT = 300


@dataclass(frozen=True)
class Probe:
    """What a provider found; the engine adds the name, kind, latency and the latency warning."""

    status: ProbeStatus
    detail: str = ""
    status_code: int | None = None


def seconds_text(seconds: float) -> str:
    """`5 s`, `0.5 s`, `1.25 s`: the way a timeout is quoted back to the user."""
    return f"{seconds:g} s"


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
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
