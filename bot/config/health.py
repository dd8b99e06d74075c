"""`environments:` — health checks, monitoring and smoke suites."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Field, field_validator, model_validator

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
    # The services (`rollbacks:` names) this check belongs to: a rollback of one is verified by its checks.
    services: list[str] = Field(default_factory=list)

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
        return self.name or f"{self.method} {_without_credentials(self.url)}"


def _without_credentials(url: AnyHttpUrl | EnvUrl) -> str:
    text = str(url)
    if url.username or url.password:
        text = text.replace(f"{url.username or ''}:{url.password or ''}@", "", 1)
        text = text.replace(f"{url.username or ''}@", "", 1)
    return text


class RateLimitCheck(_Check):
    """The runbook's "send 65 requests, expect 429 after 60": the limit is enforced, and not too early.

    Passes when the first 429 comes after at least `expect_429_after` successful (2xx) answers and no later
    than request `requests`. `timeout` bounds the whole run, `request_timeout` each request."""

    type: Literal["rate_limit"]
    url: EnvUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, EnvRef] = Field(default_factory=dict)
    requests: int = Field(ge=1, le=1000)
    expect_429_after: int = Field(ge=0)
    # Requests in flight at once; 1 keeps the order exact (the first 429 is at a definite request number).
    concurrency: int = Field(default=1, ge=1, le=20)
    request_timeout: Duration = timedelta(seconds=5)
    timeout: Duration | None = timedelta(seconds=60)

    _request_timeout_positive = field_validator("request_timeout")(_positive)

    @model_validator(mode="after")
    def _limit_within_requests(self) -> RateLimitCheck:
        if self.expect_429_after >= self.requests:
            raise ValueError(f"`requests` ({self.requests}) must be more than `expect_429_after` "
                             f"({self.expect_429_after}), or the 429 is never reached")
        return self

    def label(self) -> str:
        return self.name or f"rate limit {self.method} {_without_credentials(self.url)}"


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


Check = Annotated[HttpCheck | PostgresCheck | TcpCheck | RateLimitCheck, Field(discriminator="type")]


def _default_type(value: Any) -> Any:
    if isinstance(value, dict) and "type" not in value and "url" in value:
        return {**value, "type": "http"}
    return value


# Words a shell would interpret; without a shell they would reach the program as arguments.
_SHELL_WORDS = frozenset({"|", "||", "&&", "&", ";", ">", ">>", "<", "2>", "2>&1", "$(", "`"})
PATTERN_PREFIX = "re:"


def _argv(value: Any) -> Any:
    """`python scripts/smoke.py --fast` (split as a shell would, with shlex, but never run by one) or a list."""
    if not isinstance(value, str):
        return value
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot split `command` into arguments: {exc}") from None
    operators = [word for word in argv if word in _SHELL_WORDS]
    if operators:
        raise ValueError(f"`command` runs without a shell, so {operators[0]!r} would be passed to the program "
                         "as an argument; put pipelines and redirections in a script (or write `command` as a list "
                         "when the program really takes that argument)")
    return argv


class SmokeSuite(Model):
    name: Name
    # Crontab expression in UTC, e.g. "0 6 * * *"; None: run only on demand (`/health smoke <suite>`).
    schedule: str | None = None
    checks: list[str] | None = None          # names of the environment's checks; None = all
    # argv run without a shell (a list, or a string split like a shell would); exit 0 = pass
    command: list[str] | None = None
    # The command's working directory (relative to opsbot's own).
    cwd: str | None = None
    # The command's environment beyond the small base (bot/childenv.py); nothing else is inherited.
    env: CommandEnv = Field(default_factory=dict)
    # Lines the output (stdout and stderr) must contain: text found within a line, or `re:<pattern>`.
    expect_output: list[str] = Field(default_factory=list)
    timeout: Duration = timedelta(minutes=5)
    report_success: bool = False

    _timeout_positive = field_validator("timeout")(_positive)
    _command_argv = field_validator("command", mode="before")(_argv)

    @field_validator("expect_output", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("expect_output")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.strip():
                raise ValueError("an `expect_output` entry is empty")
            if item.startswith(PATTERN_PREFIX):
                try:
                    re.compile(item[len(PATTERN_PREFIX):])
                except re.error as exc:
                    raise ValueError(f"{item!r} is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _checks_or_command(self) -> SmokeSuite:
        if self.command is not None and self.checks is not None:
            raise ValueError("a smoke suite runs either `checks` or a `command`, not both")
        if self.command is not None and (not self.command or not self.command[0].strip()):
            raise ValueError("`command` needs at least the program to run")
        if self.command is None:
            for key, given in (("env", self.env), ("cwd", self.cwd), ("expect_output", self.expect_output)):
                if given:
                    raise ValueError(f"`{key}` is for a smoke suite's `command`; checks do not use it")
        return self

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from apscheduler.triggers.cron import CronTrigger

        if value is None:
            return None

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
    # How long a rollback's verification may keep retrying checks the target rate limits (429).
    verify_timeout: Duration = timedelta(minutes=2)
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

    _timeouts_positive = field_validator("timeout", "monitor", "verify_timeout")(_positive)


def smoke_warnings(environments: dict[str, Environment]) -> list[str]:
    """What `opsbot config check` can tell about smoke commands before they run: a `cwd` that is not a
    directory here, a program that is neither on PATH nor a file (relative to `cwd`)."""
    problems: list[str] = []
    for env_name, env in environments.items():
        for suite in env.smoke:
            if suite.command is None:
                continue
            where = f"environments.{env_name}.smoke.{suite.name}"
            if suite.cwd is not None and not os.path.isdir(suite.cwd):
                problems.append(f"{where}.cwd: {suite.cwd} is not a directory here")
                continue
            program = suite.command[0]
            if os.sep in program:
                path = program if os.path.isabs(program) else os.path.join(suite.cwd or ".", program)
                if not os.path.isfile(path):
                    problems.append(f"{where}.command: {program} not found")
            elif shutil.which(program) is None:
                problems.append(f"{where}.command: {program} is not on PATH")
    return problems
