"""`flags:` — feature flags and kill switches, each with a provider per environment."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import Field, field_validator

from bot.config.base import Model
from bot.config.secrets import EnvRef, EnvUrl
from bot.durations import Duration

SQL_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
TABLE_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
BODY_VARIABLES = ("name", "enabled", "kill_switch", "rollout", "environment")


def _check_template(value: Any, path: str = "body") -> None:
    """Syntax and variables of every string in an http store's body template, at load time."""
    if isinstance(value, str):
        try:
            parsed = ImmutableSandboxedEnvironment().parse(value)
        except TemplateSyntaxError as exc:
            raise ValueError(f"{path}: template error: {exc.message}") from None
        unknown = sorted(meta.find_undeclared_variables(parsed) - set(BODY_VARIABLES))
        if unknown:
            raise ValueError(f"{path}: unknown template variable {', '.join(unknown)}; "
                             f"use {', '.join(BODY_VARIABLES)}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_template(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_template(item, f"{path}[{i}]")


class PostgresFlagStore(Model):
    provider: Literal["postgres"]
    dsn: EnvRef
    # `table` or `schema.table`; each part is quoted with psycopg.sql.Identifier.
    table: str = Field(default="feature_flags", pattern=TABLE_IDENT)
    name_column: str = Field(default="name", pattern=SQL_IDENT)
    enabled_column: str = Field(default="enabled", pattern=SQL_IDENT)
    kill_switch_column: str | None = Field(default="kill_switch", pattern=SQL_IDENT)
    rollout_column: str | None = Field(default="rollout_percentage", pattern=SQL_IDENT)
    # Row name in the target table when it differs from the flag's name in opsbot.
    key: str | None = None
    timeout: Duration = timedelta(seconds=5)


class HttpFlagStore(Model):
    provider: Literal["http"]
    url: EnvUrl
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    token: EnvRef | None = None
    # JSON body; string values are Jinja2 templates over name, enabled, kill_switch, rollout, environment.
    body: dict[str, Any] = Field(
        default_factory=lambda: {"name": "{{ name }}", "enabled": "{{ enabled }}", "kill_switch": "{{ kill_switch }}"}
    )
    # GET answering the flag's current state (the flag object, a list of them, or an object by name).
    state_url: EnvUrl | None = None
    key: str | None = None
    timeout: Duration = timedelta(seconds=5)

    @field_validator("body")
    @classmethod
    def _valid_template(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_template(value)
        return value


class BuiltinFlagStore(Model):
    provider: Literal["builtin"] = "builtin"


FlagStore = Annotated[PostgresFlagStore | HttpFlagStore | BuiltinFlagStore, Field(discriminator="provider")]


class Flag(Model):
    description: str = ""
    # True: /killswitch may engage it (kill_switch=true means the feature is switched OFF).
    kill_switch: bool = True
    environments: dict[str, FlagStore]

    @field_validator("environments", mode="before")
    @classmethod
    def _builtin_default(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {env: {"provider": "builtin"} for env in value}
        if isinstance(value, dict):
            return {k: ({"provider": "builtin"} if v is None else v) for k, v in value.items()}
        return value
