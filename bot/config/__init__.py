"""The runbook config, `opsbot.yml`: one validated model for the whole team's operations."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from bot.config import files, incidents, targets
from bot.config.actions import Action
from bot.config.alerts import AlertRule, AlertSettings, Threshold
from bot.config.base import Model, Name
from bot.config.escalation import EscalationLevel, EscalationPolicy
from bot.config.flags import BuiltinFlagStore, Flag, HttpFlagStore, PostgresFlagStore
from bot.config.health import Environment, HttpCheck, PostgresCheck, SmokeSuite, TcpCheck
from bot.config.heartbeats import Heartbeat
from bot.config.heartbeats import problems as heartbeat_problems
from bot.config.incidents import IncidentSettings, Severity
from bot.config.oncall import Schedule
from bot.config.paging import Paging
from bot.config.permissions import PermissionRule, Permissions
from bot.config.rollbacks import (
    CommandRunner,
    CommandVersions,
    GithubActionsRunner,
    RollbackSettings,
    RollbackTarget,
    WebhookRunner,
)
from bot.config.runbooks import Runbook
from bot.config.runbooks import problems as runbook_problems
from bot.config.secrets import EnvRef, EnvUrl
from bot.config.status_page import StatusPage
from bot.errors import ConfigError, NotFound, UnknownSeverity

__all__ = [
    "AlertRule", "AlertSettings", "BuiltinFlagStore", "Channels", "CommandRunner", "Config", "EnvRef",
    "EnvUrl", "Environment", "EscalationLevel", "EscalationPolicy", "Flag", "GithubActionsRunner", "HttpCheck",
    "HttpFlagStore", "IncidentSettings", "Paging", "PermissionRule", "Permissions", "PostgresCheck",
    "PostgresFlagStore", "RollbackSettings", "RollbackTarget", "Schedule", "Severity", "SmokeSuite", "TcpCheck",
    "Threshold", "WebhookRunner", "check_file", "load_config",
]

# The default config: bot/data/opsbot.yml is a link to examples/opsbot.yml in a checkout (resolved to it, the
# documented path) and a copy of it in a wheel (pyproject package-data), so installed opsbot finds it too.
EXAMPLE_CONFIG = (Path(__file__).resolve().parents[1] / "data" / "opsbot.yml").resolve()
PRODUCTION_NAMES = {"prod", "production", "live"}


class Channels(Model):
    alerts: str = "#alerts"
    incidents: str = "#incidents"
    # Kill switch flips, rollback approvals and progress; defaults to the incidents channel.
    ops: str | None = None

    @property
    def ops_channel(self) -> str:
        return self.ops or self.incidents


class Config(Model):
    name: str = "opsbot"
    channels: Channels = Field(default_factory=Channels)
    severities: list[Severity] = Field(min_length=1)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    environments: dict[str, Environment] = Field(default_factory=dict)
    flags: dict[str, Flag] = Field(default_factory=dict)
    rollback: RollbackSettings = Field(default_factory=RollbackSettings)
    rollbacks: dict[str, RollbackTarget] = Field(default_factory=dict)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    heartbeats: list[Heartbeat] = Field(default_factory=list)
    permissions: Permissions = Field(default_factory=Permissions)
    oncall: dict[Name, Schedule] = Field(default_factory=dict)
    escalation_policies: dict[Name, EscalationPolicy] = Field(default_factory=dict)
    paging: Paging = Field(default_factory=Paging)
    actions: dict[Name, Action] = Field(default_factory=dict)
    runbooks: dict[Name, Runbook] = Field(default_factory=dict)
    status_page: StatusPage | None = None

    @field_validator("severities")
    @classmethod
    def _unique_severities(cls, value: list[Severity]) -> list[Severity]:
        names = [s.name.lower() for s in value]
        if len(set(names)) != len(names):
            raise ValueError("severity names must be unique (case-insensitive)")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        defaults = [name for name, env in self.environments.items() if env.default]
        if len(defaults) > 1:
            raise ValueError(f"only one environment may be `default: true` (found {', '.join(defaults)})")
        envs = set(self.environments)
        problems = []
        for flag_name, flag in self.flags.items():
            problems += [f"flags.{flag_name}.environments.{e}: no such environment" for e in flag.environments
                         if envs and e not in envs]
        for service, target in self.rollbacks.items():
            problems += [f"rollbacks.{service}.environments.{e}: no such environment"
                         for e in target.environments if envs and e not in envs]
            for e, runner in target.environments.items():
                if isinstance(runner.verify, list):
                    checks = [c.label() for c in self.environments[e].checks] if e in self.environments else []
                    problems += [f"rollbacks.{service}.environments.{e}.verify: no check named {name!r} in "
                                 f"environments.{e} (checks there: {', '.join(checks) or 'none'})"
                                 for name in runner.verify if name not in checks]
        problems += targets.problems(self) + runbook_problems(self) + heartbeat_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- lookups used by every feature -------------------------------------------------------
    def severity(self, name: str) -> Severity:
        """Case-insensitive lookup; UnknownSeverity lists the valid names in order."""
        for severity in self.severities:
            if severity.name.lower() == name.strip().lower():
                return severity
        raise UnknownSeverity(name, [s.name for s in self.severities])

    def severity_rank(self, name: str) -> int:
        """0 is the most severe (the first listed)."""
        lowered = [s.name.lower() for s in self.severities]
        return lowered.index(name.lower()) if name.lower() in lowered else len(lowered)

    def environment(self, name: str | None) -> tuple[str, Environment]:
        if not self.environments:
            raise NotFound("environment", name or "", [])
        if name is None or name == "":
            name = self.default_environment
        for key, env in self.environments.items():
            if key.lower() == name.lower():
                return key, env
        raise NotFound("environment", name, list(self.environments))

    @property
    def default_environment(self) -> str:
        for key, env in self.environments.items():
            if env.default:
                return key
        return next(iter(self.environments), "")

    def is_production(self, environment: str) -> bool:
        env = self.environments.get(environment)
        if env is not None and env.production is not None:
            return env.production
        return environment.lower() in PRODUCTION_NAMES


_UNION_TAGS = {"http", "postgres", "tcp", "builtin", "github_actions", "webhook", "command"}


def _is_union_tag(loc: tuple[Any, ...], i: int) -> bool:
    """pydantic puts the discriminator value in the path (checks[2].http.url); users never wrote it."""
    part = loc[i]
    if part not in _UNION_TAGS or i == 0:
        return False
    if loc[i - 1] == "versions" and part in ("command", "http"):
        return True
    return isinstance(loc[i - 1], int) or (i >= 2 and loc[i - 2] == "environments" and loc[0] != "environments")


def _loc(loc: tuple[Any, ...]) -> str:
    """('environments', 'prod', 'checks', 2, 'http', 'url') -> 'environments.prod.checks[2].url'."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_union_tag(loc, i) or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _message(error: ErrorDetails) -> str:
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if error["type"] == "url_parsing" or error["type"].startswith("url_"):
        return "not a valid URL"
    if error["type"] == "extra_forbidden":
        return "unknown field (check the spelling)"
    if error["type"] == "missing":
        return "required field is missing"
    return msg


def format_errors(exc: ValidationError, origin: Callable[[tuple[Any, ...]], str | None] | None = None) -> list[str]:
    """`path: problem`, with `(in FILE)` for what an included file wrote."""
    out = []
    for e in exc.errors():
        file = origin(tuple(e["loc"])) if origin is not None else None
        out.append(f"{_loc(e['loc'])}: {_message(e)}" + (f" (in {file})" if file else ""))
    return out


def parse_config(data: Any, *, source: str = "opsbot.yml", env: Mapping[str, str] | None = None,
                 origin: Callable[[tuple[Any, ...]], str | None] | None = None) -> Config:
    """Validate parsed YAML. `env` (default os.environ) is what `${VAR}` URLs are checked with."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(["(top level): expected a mapping of sections"], source)
    # `x-…` keys hold YAML anchors; opsbot never reads them (also when the YAML was parsed by the caller).
    sections = {key: value for key, value in data.items() if not (isinstance(key, str) and key.startswith("x-"))}
    try:
        return Config.model_validate(sections, context={"env": env})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origin), source) from None


def _load(path: Path | str | None, env: Mapping[str, str] | None) -> tuple[Config | None, list[str], list[str]]:
    """(config or None, errors, warnings): the file with its includes, renamed keys moved, validated."""
    file = Path(path) if path else EXAMPLE_CONFIG
    try:
        loaded = files.read(file)
    except ConfigError as exc:
        return None, exc.problems, []
    try:
        warnings = files.renamed(loaded.data)
    except ConfigError as exc:
        return None, exc.problems, []
    try:
        return parse_config(loaded.data, source=str(file), env=env, origin=loaded.origin), [], warnings
    except ConfigError as exc:
        return None, exc.problems, warnings + _raw_missing_env(loaded.data, env)


def load_config(path: Path | str | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate opsbot.yml (with its includes); None means the bundled example config."""
    config, errors, _warnings = _load(path, env)
    if config is None:
        raise ConfigError(errors, str(Path(path) if path else EXAMPLE_CONFIG))
    return config


def _raw_missing_env(data: Any, env: Mapping[str, str] | None, path: str = "") -> list[str]:
    """missing_env for a config that did not validate: every `${VAR}` string in the YAML itself."""
    if isinstance(data, str):
        return [f"{path}: environment variable {var} is not set" for var in EnvRef(data).missing(env)]
    if isinstance(data, dict):
        return [p for key, item in data.items() for p in _raw_missing_env(item, env, f"{path}.{key}" if path
                                                                           else str(key))]
    if isinstance(data, list):
        return [p for i, item in enumerate(data) for p in _raw_missing_env(item, env, f"{path}[{i}]")]
    return []


def env_refs(config: Config) -> list[tuple[str, EnvRef]]:
    """(YAML path, reference) for every `${VAR}` string in the config, in file order."""
    found: list[tuple[str, EnvRef]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, EnvRef):
            found.append((path, value))
        elif isinstance(value, Model):
            for key in type(value).model_fields:
                walk(getattr(value, key), f"{path}.{key}" if path else key)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    walk(config, "")
    return found


def missing_env(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """`path: VAR` for every ${VAR} reference that the environment does not define."""
    return [f"{path}: environment variable {var} is not set"
            for path, ref in env_refs(config) for var in ref.missing(env)]


def referenced_env(config: Config) -> list[str]:
    """The names of every environment variable the config reads: their values are secrets to scrub."""
    return list(dict.fromkeys(name for _path, ref in env_refs(config) for name in ref.references()))


def check_file(path: Path | str | None, env: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(errors, warnings) for `opsbot config check`: both, even when there are errors."""
    config, errors, warnings = _load(path, env)
    if config is None:
        return errors, warnings
    incident_errors, incident_warnings = incidents.check(config)  # update_template rendered, severities' response
    return incident_errors, (warnings + missing_env(config, env) + targets.warnings(config) + _source_warnings(config)
                             + incident_warnings)


def _source_warnings(config: Config) -> list[str]:
    """A version source's program that this machine cannot run (the modal would fall back every time)."""
    found = []
    for service, target in config.rollbacks.items():
        source = target.versions
        if isinstance(source, CommandVersions):
            program = source.command[0]
            if not (shutil.which(program) or (os.sep in program and Path(program).is_file())):
                found.append(f"rollbacks.{service}.versions.command: `{program}` is not on PATH here")
    return found
