"""`flags:` — feature flags and kill switches, each with a provider per environment."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Field, field_validator

from bot.config.base import Model
from bot.config.secrets import EnvRef
from bot.durations import Duration

SQL_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class PostgresFlagStore(Model):
    provider: Literal["postgres"]
    dsn: EnvRef
    table: str = Field(default="feature_flags", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
    name_column: str = Field(default="name", pattern=SQL_IDENT)
    enabled_column: str = Field(default="enabled", pattern=SQL_IDENT)
    kill_switch_column: str | None = Field(default="kill_switch", pattern=SQL_IDENT)
    rollout_column: str | None = Field(default="rollout_percentage", pattern=SQL_IDENT)
    # Row name in the target table when it differs from the flag's name in opsbot.
    key: str | None = None
    timeout: Duration = timedelta(seconds=5)


class HttpFlagStore(Model):
    provider: Literal["http"]
    url: AnyHttpUrl
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    token: EnvRef | None = None
    # JSON body; string values are Jinja2 templates over name, enabled, kill_switch, rollout, environment.
    body: dict[str, Any] = Field(
        default_factory=lambda: {"name": "{{ name }}", "enabled": "{{ enabled }}", "kill_switch": "{{ kill_switch }}"}
    )
    state_url: AnyHttpUrl | None = None
    key: str | None = None
    timeout: Duration = timedelta(seconds=5)


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
