"""`environments:` — health checks, monitoring and smoke suites."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Field, field_validator, model_validator

from bot.config.base import Model, Name
from bot.config.secrets import EnvRef
from bot.durations import Duration


class _Check(Model):
    name: Name | None = None
    timeout: Duration | None = None
    latency_warn: Duration | None = None


class HttpCheck(_Check):
    type: Literal["http"] = "http"
    url: AnyHttpUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, EnvRef] = Field(default_factory=dict)
    # A status code, a list of them, or None for "any 2xx".
    expect_status: int | list[int] | None = None
    # Dotted JSON path -> expected value, or a list of accepted values.
    expect_json: dict[str, Any] = Field(default_factory=dict)

    def label(self) -> str:
        return self.name or f"{self.method} {self.url}"


class PostgresCheck(_Check):
    type: Literal["postgres"]
    dsn: EnvRef
    # Report degraded when connections in use exceed this share of max_connections.
    connections_warn_percent: float = 80.0

    def label(self) -> str:
        return self.name or "postgres"


class TcpCheck(_Check):
    type: Literal["tcp"]
    host: str
    port: int = Field(ge=1, le=65535)

    def label(self) -> str:
        return self.name or f"tcp {self.host}:{self.port}"


Check = Annotated[HttpCheck | PostgresCheck | TcpCheck, Field(discriminator="type")]


def _default_type(value: Any) -> Any:
    if isinstance(value, dict) and "type" not in value and "url" in value:
        return {**value, "type": "http"}
    return value


class SmokeSuite(Model):
    name: Name
    # Crontab expression in UTC, e.g. "0 6 * * *".
    schedule: str
    checks: list[str] | None = None          # names of the environment's checks; None = all
    command: list[str] | None = None         # argv run without a shell; exit 0 = pass
    timeout: Duration = timedelta(minutes=5)
    report_success: bool = False

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a valid crontab expression: {exc}") from None
        return value


class Environment(Model):
    default: bool = False
    production: bool | None = None
    timeout: Duration = timedelta(seconds=5)
    latency_warn: Duration = timedelta(seconds=1)
    monitor: Duration | None = None
    checks: list[Check] = Field(default_factory=list)
    smoke: list[SmokeSuite] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _http_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("checks"), list):
            data = {**data, "checks": [_default_type(c) for c in data["checks"]]}
        return data

    @model_validator(mode="after")
    def _unique_check_names(self) -> Environment:
        seen: set[str] = set()
        for check in self.checks:
            label = check.label()
            if label in seen:
                raise ValueError(f"two checks are named {label!r}; give them distinct names")
            seen.add(label)
        return self
