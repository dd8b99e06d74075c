"""`environments:` — health checks, monitoring and smoke suites."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from bot.config.base import Model, Name
from bot.config.secrets import CommandEnv, EnvRef, EnvUrl
from bot.durations import Duration


def _positive(value: timedelta | None) -> timedelta | None:
    if value is not None and value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


class _Check(Model):
    name: Name | None = None
    timeout: Duration | None = None
    latency_warn: Duration | None = None

    _timeout_positive = field_validator("timeout")(_positive)


class HttpCheck(_Check):
    type: Literal["http"] = "http"
    url: EnvUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, EnvRef] = Field(default_factory=dict)
    # A status code, a list of them, or None for "any 2xx".
    expect_status: int | list[int] | None = None
    # Dotted JSON path -> expected value, or a list of accepted values.
    expect_json: dict[str, Any] = Field(default_factory=dict)

    @field_validator("expect_status")
    @classmethod
    def _status_codes(cls, value: int | list[int] | None) -> int | list[int] | None:
        codes = value if isinstance(value, list) else [] if value is None else [value]
        if isinstance(value, list) and not value:
            raise ValueError("list at least one status code")
        for code in codes:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code")
        return value

    def label(self) -> str:
        # Credentials in a URL (https://user:pass@host) must never reach a Slack message.
        url = str(self.url)
        if self.url.username or self.url.password:
            url = url.replace(f"{self.url.username or ''}:{self.url.password or ''}@", "", 1)
            url = url.replace(f"{self.url.username or ''}@", "", 1)
        return self.name or f"{self.method} {url}"


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
    # The command's environment beyond the small base (bot/childenv.py); nothing else is inherited.
    env: CommandEnv = Field(default_factory=dict)
    timeout: Duration = timedelta(minutes=5)
    report_success: bool = False

    _timeout_positive = field_validator("timeout")(_positive)

    @model_validator(mode="after")
    def _checks_or_command(self) -> SmokeSuite:
        if self.command is not None and self.checks is not None:
            raise ValueError("a smoke suite runs either `checks` or a `command`, not both")
        if self.command is not None and (not self.command or not self.command[0].strip()):
            raise ValueError("`command` needs at least the program to run")
        if self.env and self.command is None:
            raise ValueError("`env` is for a smoke suite's `command`; checks do not use it")
        return self

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
    # Run the checks at this interval and post to the alerts channel when the state changes.
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
        suites: set[str] = set()
        for suite in self.smoke:
            if suite.name in suites:
                raise ValueError(f"two smoke suites are named {suite.name!r}")
            suites.add(suite.name)
            unknown = [name for name in suite.checks or [] if name not in seen]
            if unknown:
                raise ValueError(f"smoke suite {suite.name!r} names unknown checks: {', '.join(unknown)} "
                                 f"(checks here: {', '.join(sorted(seen)) or 'none'})")
        return self

    _timeouts_positive = field_validator("timeout", "monitor")(_positive)
