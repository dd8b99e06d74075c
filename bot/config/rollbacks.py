"""`rollbacks:` — per service and environment, a provider and an approval count."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, field_validator

from bot.config.base import Model
from bot.config.secrets import REF, CommandEnv, EnvRef, EnvUrl
from bot.durations import Duration
from bot.errors import ConfigError

# A version as CI and registries write it (tags, SHAs, image refs); never starts with "-" so it
# cannot turn into a command-line option.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")
# What templates (workflow inputs, webhook-free argv) may refer to: values opsbot has validated.
PLACEHOLDERS = ("service", "environment", "version", "previous_version", "reason", "rollback_id", "requested_by")


def template_fields(template: str) -> list[str]:
    """The placeholder names in `template`; ValueError for anything but plain `{name}` of PLACEHOLDERS.

    str.format would also accept `{x.attr}`, `{x[0]}` and format specs; none of that is allowed."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template {template!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
    names = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            raise ValueError(f"unknown placeholder {{{field}}} in {template!r}; use {', '.join(PLACEHOLDERS)}")
        names.append(field)
    return names


def fill_template(template: str, values: dict[str, str]) -> str:
    """Substitute validated values; the template was checked by template_fields at config load."""
    template_fields(template)
    return template.format_map({name: values.get(name, "") for name in PLACEHOLDERS})


def _escaped_refs(template: str, env: Mapping[str, str] | None = None, *, reveal: bool = False) -> str:
    """`template` with each `${VAR}` made literal for str.format: as written, or (reveal) its value."""
    out, pos = "", 0
    for match in REF.finditer(template):
        text = EnvRef(match.group(0)).reveal(env) if reveal else match.group(0)
        out += template[pos:match.start()] + text.replace("{", "{{").replace("}", "}}")
        pos = match.end()
    return out + template[pos:]


def fill_url(template: str, values: dict[str, str], env: Mapping[str, str] | None = None, *, where: str) -> str:
    """A URL template with `${VAR}` references and `{placeholders}`: the variables are substituted first
    (so a typed reason can never name one), then the placeholders; ConfigError when it is not a URL."""
    try:
        url = fill_template(_escaped_refs(template, env, reveal=True), values)
    except ConfigError as exc:
        raise ConfigError([f"{where}: {exc.problems[0]}"]) from None
    if not url.startswith(("http://", "https://")):
        raise ConfigError([f"{where}: not a valid URL once its variables are substituted"])
    return url


# What the github_actions provider sends as workflow inputs unless `inputs:` drops them (`name: null`).
DEFAULT_INPUTS = ("service", "environment", "version", "reason")


class _Runner(Model):
    # None: 2 for production environments, 0 otherwise.
    approvals: int | None = Field(default=None, ge=0, le=10)
    # The whole provider run (dispatch, wait, poll); a command is killed when it runs longer.
    timeout: Duration = timedelta(minutes=30)
    # After a successful rollback: true runs the health checks tagged with the service (`services:` on a
    # check), or all of the environment's checks when none is tagged; a list names the checks to run.
    verify: bool | Annotated[list[str], Field(min_length=1)] = True
    # A rollback that destroys data (a database reset): the modal also asks to type the service's name.
    destructive: bool = False


class GithubActionsRunner(_Runner):
    provider: Literal["github_actions"]
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    workflow: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    ref: str = "main"
    token: EnvRef
    api_url: EnvUrl = EnvUrl("https://api.github.com/")
    # The workflow's inputs. opsbot sends service, environment, version and reason unless told otherwise:
    # a key here sets (or renames, e.g. `app: "{service}"`) an input from a template over the placeholders,
    # and `null` drops one of those four (a workflow refuses inputs it does not declare with a 422).
    inputs: dict[str, str | None] = Field(default_factory=dict)
    poll_interval: Duration = timedelta(seconds=10)

    @field_validator("inputs")
    @classmethod
    def _templates(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for name, template in value.items():
            if template is None:
                if name not in DEFAULT_INPUTS:
                    raise ValueError(f"`{name}: null` drops nothing: opsbot only sends {', '.join(DEFAULT_INPUTS)} "
                                     "by itself")
            else:
                template_fields(template)
        if len(value) > 10 + len(DEFAULT_INPUTS):
            raise ValueError("GitHub accepts at most 10 workflow inputs")
        return value

    def workflow_inputs(self, values: dict[str, str]) -> dict[str, str]:
        """The dispatch's `inputs`: the defaults, then the configured ones (templates filled, nulls dropped)."""
        inputs = {name: values.get(name, "") for name in DEFAULT_INPUTS}
        for name, template in self.inputs.items():
            if template is None:
                inputs.pop(name, None)
            else:
                inputs[name] = fill_template(template, values)
        return inputs


class WebhookRunner(_Runner):
    provider: Literal["webhook"]
    url: EnvUrl
    secret: EnvRef
    # Optional: polled with GET until it reports a terminal status; may use {rollback_id}.
    status_url: str | None = None
    retries: int = Field(default=3, ge=0, le=10)
    retry_backoff: Duration = timedelta(seconds=1)
    request_timeout: Duration = timedelta(seconds=10)
    poll_interval: Duration = timedelta(seconds=10)

    @field_validator("status_url")
    @classmethod
    def _status_url(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(_escaped_refs(value))
            if not value.startswith(("http://", "https://", "${")):
                raise ValueError("not a valid URL")
        return value


class CommandRunner(_Runner):
    provider: Literal["command"]
    # argv, no shell; placeholders {service} {environment} {version} {previous_version} {reason} {rollback_id}.
    argv: list[str] = Field(min_length=1)
    cwd: str | None = None
    # Its environment: PATH, HOME, LANG, LC_ALL, TZ, TMPDIR (when set) plus these; nothing else is inherited.
    env: CommandEnv = Field(default_factory=dict)

    @field_validator("argv")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        fixed_program(value)
        for arg in value:
            template_fields(arg)
            # Free text at the start of an argument could begin with "-" and become an option.
            if _reason_leads(arg):
                raise ValueError("pass the reason after fixed text in its argument, e.g. --reason={reason}")
        return value


def fixed_program(argv: list[str]) -> list[str]:
    """The program a command runs is written in the config, never filled in (rollbacks and actions)."""
    if "{" in argv[0]:
        raise ValueError("the program (argv[0]) cannot be a placeholder")
    return argv


# Placeholders that are never empty and never start with "-" (config names, validated versions, ids).
_FIXED_START = ("service", "environment", "version", "rollback_id", "requested_by")


def _reason_leads(template: str) -> bool:
    """True when `{reason}` could be the first thing in the filled argument (nothing fixed before it)."""
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        if literal.strip():
            return False
        if field == "reason":
            return True
        if field in _FIXED_START:
            return False
    return False


Runner = Annotated[GithubActionsRunner | WebhookRunner | CommandRunner, Field(discriminator="provider")]


# What a version source's command or URL may name: the service and the environment.
SOURCE_PLACEHOLDERS = ("service", "environment")


def _source_template(template: str) -> str:
    unknown = [name for name in template_fields(_escaped_refs(template)) if name not in SOURCE_PLACEHOLDERS]
    if unknown:
        raise ValueError(f"a version source may use {{service}} and {{environment}} only, not {{{unknown[0]}}}")
    return template


class _VersionSource(Model):
    # The modal opens within 3 s of the command (Slack's trigger): a slower source is given up on.
    timeout: Duration = Field(default=timedelta(seconds=2), le=timedelta(seconds=2.5))
    # Answers are kept this long per service and environment, so opening the modal again is instant.
    cache: Duration = timedelta(minutes=1)
    limit: int = Field(default=10, ge=1, le=50)

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value


class CommandVersions(_VersionSource):
    """A command (argv, no shell) printing one version per line, newest first (e.g. a registry's tags)."""

    command: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: CommandEnv = Field(default_factory=dict)

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if "{" in value[0]:
            raise ValueError("the program (command[0]) cannot be a placeholder")
        return [_source_template(arg) for arg in value]


class HttpVersions(_VersionSource):
    """A GET answering JSON: `path` (dotted, empty for the top level) leads to a list of versions, or of
    objects whose `field` is the version."""

    url: str
    headers: dict[str, EnvRef] = Field(default_factory=dict)
    path: str = ""
    field: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _source_template(value)
        if not value.startswith(("http://", "https://", "${")):
            raise ValueError("not a valid URL")
        return value


def _source_kind(value: object) -> str | None:
    if isinstance(value, dict):
        return "command" if "command" in value else "http"
    return "command" if isinstance(value, CommandVersions) else "http"


VersionSource = Annotated[
    Annotated[CommandVersions, Tag("command")] | Annotated[HttpVersions, Tag("http")],
    Discriminator(_source_kind),
]


class RollbackTarget(Model):
    environments: dict[str, Runner]
    # Where the modal's version choices come from besides the deploy history (POST /deploys).
    versions: VersionSource | None = None


class RollbackSettings(Model):
    approval_timeout: Duration = timedelta(minutes=30)
