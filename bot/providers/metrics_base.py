"""What every metric source shares: the Protocol, the sample type, the typed error, capped reads."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from bot.config.alerts import AlertRule
from bot.errors import ProviderError

MAX_BODY = 1024 * 1024  # a metrics answer larger than this is an error, not something to parse


class MetricSourceError(ProviderError):
    """A source could not produce a value (timeout, HTTP error, bad JSON, SQL error)."""


@dataclass(frozen=True)
class Sample:
    """One value of one series; `labels` identify the series (empty for single-value sources)."""

    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


class MetricSource(Protocol):
    async def read(self, rule: AlertRule) -> list[Sample]: ...


def as_number(raw: object, where: str) -> float:
    """A finite float from JSON/SQL values (numbers or numeric strings); MetricSourceError otherwise."""
    if isinstance(raw, bool) or raw is None:
        raise MetricSourceError(f"{where}: expected a number, got {raw!r}"[:200])
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MetricSourceError(f"{where}: expected a number, got {str(raw)[:60]!r}") from None
    if math.isnan(value):
        raise MetricSourceError(f"{where}: value is NaN")
    return value


async def get_capped(client: httpx.AsyncClient, url: str, *, params: Mapping[str, str] | None = None,
                     headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                     limit: int = MAX_BODY) -> bytes:
    """GET `url` and return the body, refusing non-2xx answers and bodies over `limit` bytes."""
    try:
        async with client.stream("GET", url, params=params, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                raise MetricSourceError(f"HTTP {response.status_code} from {_host(url)}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise MetricSourceError(f"answer from {_host(url)} is larger than {limit} bytes")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise MetricSourceError(f"answer from {_host(url)} is larger than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException:
        raise MetricSourceError(f"{_host(url)} did not answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise MetricSourceError(f"cannot reach {_host(url)} ({type(exc).__name__})") from None


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or "the source"
    except Exception:
        return "the source"
