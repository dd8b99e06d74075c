"""One POST to a paging provider's HTTP API, its answer sorted into delivered, transient or refused."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import httpx

from bot.durations import format_duration
from bot.errors import ConfigError, DependencyDown
from bot.paging.providers.base import PageRejected, Throttled
from bot.secrets import scrub

log = logging.getLogger("opsbot.paging")
T = TypeVar("T")

# Refusals are final; anything else that is not a 2xx may work later (408 and 5xx) or is a redirect (final).
TRANSIENT = {408, 425, 429}


async def post(http: httpx.AsyncClient, url: str, *, what: str, timeout: timedelta, secrets: Iterable[str],
               content: bytes | None = None, body: Any = None, headers: Mapping[str, str] | None = None,
               params: Mapping[str, str] | None = None) -> httpx.Response:
    """POST and return a 2xx answer. Raises DependencyDown (no answer, 408/429/5xx; Throttled for 429) or
    PageRejected (any other status); messages name `what`, never the URL (it may hold a token) nor a secret."""
    if content is None:
        content = json.dumps(body, separators=(",", ":")).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    try:
        response = await http.post(url, content=content, headers=sent, params=params,
                                   timeout=timeout.total_seconds())
    except httpx.TimeoutException:
        raise DependencyDown(f"{what} did not answer within {format_duration(timeout)}.") from None
    except httpx.HTTPError as exc:
        raise DependencyDown(f"{what} is unreachable ({type(exc).__name__}).") from None
    if 200 <= response.status_code < 300:
        return response
    reason = scrub(error_reason(response), [s for s in secrets if s])
    status = f"HTTP {response.status_code}" + (f": {reason}" if reason else "")
    if response.status_code == 429:
        retry_after = _retry_after(response)
        wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
        raise Throttled(f"{what} is rate limiting opsbot ({status}{wait}).", retry_after)
    if response.status_code >= 500 or response.status_code in TRANSIENT:
        raise DependencyDown(f"{what} failed ({status}).")
    raise PageRejected(f"{what} refused the page ({status}).")


def error_reason(response: httpx.Response) -> str:
    """A short reason from an error answer: PagerDuty's `errors`, Opsgenie's `message`, or the text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts = [str(data["message"])] if isinstance(data.get("message"), str) else []
        errors = data.get("errors")
        if isinstance(errors, list):
            parts += [str(e) for e in errors[:3]]
        elif isinstance(errors, dict):
            parts += [f"{k}: {v}" for k, v in list(errors.items())[:3]]
        if parts:
            return _short("; ".join(parts))
    return _short(" ".join(response.text.split()))


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def configured(value: Callable[[], T]) -> T:
    """`value()` (a `${VAR}` resolved); a missing or wrong variable refuses the page (final), naming the
    variable, never its value."""
    try:
        return value()
    except ConfigError as exc:
        raise PageRejected(f"Cannot page: {'; '.join(exc.problems)}.") from None


def json_answer(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
