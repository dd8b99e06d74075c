"""`actions:` — named, parameterised operations, one runner per environment.

```yaml
actions:
  restart:
    description: Restart a container
    params:
      container: {type: enum, values: [api, worker]}
    environments:
      prod: {type: command, argv: [docker, restart, "{container}"], timeout: 2m}
```

Runners reuse the rollback providers' configuration (`command`, `webhook`, `github_actions`) and add
`http` (one request, an expected status) and `sql` (one query, read-only unless `destructive: true`).
Templates hold `{name}` placeholders over the action's parameters and `{environment}`, `{action}`,
`{run_id}`, `{requested_by}`; a value that could start with "-" (a `pattern` parameter, an integer that
may be negative) never starts an argv argument, so free text cannot become an option. In `sql` queries a
placeholder is a bound parameter, never text pasted into the SQL."""

from __future__ import annotations

import re
import string
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from bot.config.base import Model, Name
from bot.config.rollbacks import _escaped_refs as escaped_refs  # `${VAR}` are not placeholders
from bot.config.rollbacks import fixed_program
from bot.config.secrets import CommandEnv, EnvRef, EnvUrl
from bot.durations import Duration

# Values opsbot itself fills in, besides the action's parameters.
BUILTINS = ("environment", "action", "run_id", "requested_by")
# Builtins that are never empty and never start with "-".
_FIXED_BUILTINS = ("environment", "action", "run_id", "requested_by")


class EnumParam(Model):
    type: Literal["enum"]
    values: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/@+][A-Za-z0-9_.:/@+-]{0,127}$")]] = Field(min_length=1)
    default: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _default_listed(self) -> EnumParam:
        if self.default is not None and self.default not in self.values:
            raise ValueError(f"default {self.default!r} is not one of {', '.join(self.values)}")
        return self


class IntegerParam(Model):
    type: Literal["integer"]
    min: int | None = None
    max: int | None = None
    default: int | None = None
    description: str = ""

    @model_validator(mode="after")
    def _range(self) -> IntegerParam:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        if self.default is not None and not self.accepts(self.default):
            raise ValueError(f"default {self.default} is outside {self.describe()}")
        return self

    def accepts(self, value: int) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        low = "…" if self.min is None else str(self.min)
        high = "…" if self.max is None else str(self.max)
        return f"{low}–{high}"

    @property
    def may_lead_with_dash(self) -> bool:
        return self.min is None or self.min < 0


class PatternParam(Model):
    """Free text matching `pattern` (the whole value, at most `max_length` characters)."""

    type: Literal["pattern"]
    pattern: str
    max_length: int = Field(default=200, ge=1, le=2000)
    default: str | None = None
    description: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class NameParam(Model):
    """A service (`rollbacks:` or a check's `services:`) or an environment named in the config."""

    type: Literal["service", "environment"]
    default: str | None = None
    description: str = ""


Param = Annotated[EnumParam | IntegerParam | PatternParam | NameParam, Field(discriminator="type")]


def _fields(template: str, allowed: set[str]) -> list[str]:
    """Placeholder names in `template`; ValueError for anything but plain `{name}` of `allowed`."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template {template!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
    names = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed or spec or conversion:
            raise ValueError(f"unknown placeholder {{{field}}} in {template!r}; use "
                             f"{', '.join(sorted(allowed)) or 'none'}")
        names.append(field)
    return names


def leads_with_free_text(template: str, free: set[str]) -> str | None:
    """The free-text placeholder that could be the first thing in the filled argument, if any."""
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        if literal:
            return None
        if field in free:
            return field
        if field is not None:
            return None
    return None


class _ActionRunner(Model):
    timeout: Duration = timedelta(minutes=5)
    # Overrides the action's `approvals` in this environment.
    approvals: int | None = Field(default=None, ge=0, le=10)

    def templates(self) -> list[str]:
        return []


class CommandAction(_ActionRunner):
    type: Literal["command"]
    argv: list[str] = Field(min_length=1)
    cwd: str | None = None
    # Its environment: PATH, HOME, LANG, LC_ALL, TZ, TMPDIR (when set) plus these; nothing else is inherited.
    env: CommandEnv = Field(default_factory=dict)

    @field_validator("argv")
    @classmethod
    def _program(cls, value: list[str]) -> list[str]:
        return fixed_program(value)

    def templates(self) -> list[str]:
        return list(self.argv)


class WebhookAction(_ActionRunner):
    """A signed JSON POST (the rollback webhook's signature): {"action", "environment", "params",
    "run_id", "requested_by", "delivery", "timestamp"}."""

    type: Literal["webhook"]
    url: EnvUrl
    secret: EnvRef
    retries: int = Field(default=3, ge=0, le=10)
    retry_backoff: Duration = timedelta(seconds=1)
    request_timeout: Duration = timedelta(seconds=10)
    poll_interval: Duration = timedelta(seconds=10)


class GithubAction(_ActionRunner):
    type: Literal["github_actions"]
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    workflow: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    ref: str = "main"
    token: EnvRef
    api_url: EnvUrl = EnvUrl("https://api.github.com/")
    # Workflow inputs: templates over the parameters (default: every parameter under its own name).
    inputs: dict[str, str] | None = None
    poll_interval: Duration = timedelta(seconds=10)
    timeout: Duration = timedelta(minutes=30)

    def templates(self) -> list[str]:
        return list((self.inputs or {}).values())


class HttpAction(_ActionRunner):
    type: Literal["http"]
    # `${VAR}` references and `{placeholders}` (URL-quoted when filled).
    url: EnvRef
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, EnvRef] = Field(default_factory=dict)
    # A JSON body; string values are templates.
    body: dict[str, Any] | None = None
    expect_status: int | list[int] = Field(default_factory=lambda: [200, 201, 202, 204])
    timeout: Duration = timedelta(seconds=30)

    @field_validator("url")
    @classmethod
    def _url(cls, value: EnvRef) -> EnvRef:
        if not value.template.startswith(("http://", "https://", "${")):
            raise ValueError("not a valid URL")
        return value

    def templates(self) -> list[str]:
        return [escaped_refs(self.url.template), *(_strings(self.body))]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


class SqlAction(_ActionRunner):
    """One query on a PostgreSQL database; `{name}` placeholders are bound parameters."""

    type: Literal["sql"]
    dsn: EnvRef
    query: str = Field(min_length=1)
    statement_timeout: Duration = timedelta(seconds=10)
    # Rows shown (the rest counted).
    max_rows: int = Field(default=20, ge=1, le=200)
    timeout: Duration = timedelta(seconds=30)

    def templates(self) -> list[str]:
        return [self.query]


Runner = Annotated[CommandAction | WebhookAction | GithubAction | HttpAction | SqlAction, Field(discriminator="type")]


class Action(Model):
    description: str = ""
    params: dict[Name, Param] = Field(default_factory=dict)
    environments: dict[str, Runner] = Field(min_length=1)
    # Approvals (besides the requester's) before it runs; per environment `approvals:` overrides it.
    approvals: int = Field(default=0, ge=0, le=10)
    # None: `sql` actions are read-only unless destructive; every other type is not.
    read_only: bool | None = None
    # Writes data (`sql`: lifts the read-only transaction); confirmation and a fresh permission check.
    destructive: bool = False

    @model_validator(mode="after")
    def _templates(self) -> Action:
        clash = [name for name in self.params if name in BUILTINS]
        if clash:
            raise ValueError(f"parameter name {clash[0]!r} is reserved ({', '.join(BUILTINS)})")
        if self.read_only and self.destructive:
            raise ValueError("an action cannot be both read_only and destructive")
        allowed = set(self.params) | set(BUILTINS)
        free = {name for name, p in self.params.items()
                if isinstance(p, PatternParam) or (isinstance(p, IntegerParam) and p.may_lead_with_dash)}
        for env, runner in self.environments.items():
            for template in runner.templates():
                try:
                    _fields(template, allowed)
                except ValueError as exc:
                    raise ValueError(f"environments.{env}: {exc}") from None
            if isinstance(runner, CommandAction):
                for arg in runner.argv:
                    name = leads_with_free_text(arg, free)
                    if name:
                        raise ValueError(f"environments.{env}.argv: {{{name}}} could start with '-' and become an "
                                         f"option; put fixed text before it in its argument, e.g. --{name}={{{name}}}")
        return self

    def is_read_only(self, environment: str) -> bool:
        if self.read_only is not None:
            return self.read_only
        runner = self.environments.get(environment)
        return isinstance(runner, SqlAction) and not self.destructive

    def approvals_in(self, environment: str) -> int:
        runner = self.environments.get(environment)
        if runner is not None and runner.approvals is not None:
            return runner.approvals
        return self.approvals


def template_fields(template: str, allowed: set[str]) -> list[str]:
    return _fields(template, allowed)
