"""`${ENV_VAR}` references in opsbot.yml, resolved when used so secrets never sit in the config object."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, GetCoreSchemaHandler
from pydantic_core import core_schema

from bot.errors import ConfigError

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class EnvRef:
    """A config string that may contain `${VAR}` or `${VAR:-default}`; masked in repr and logs."""

    __slots__ = ("template",)

    def __init__(self, template: str) -> None:
        self.template = template

    def references(self) -> list[str]:
        return [m.group(1) for m in _REF.finditer(self.template)]

    def missing(self, env: Mapping[str, str] | None = None) -> list[str]:
        env = os.environ if env is None else env
        return [m.group(1) for m in _REF.finditer(self.template) if m.group(1) not in env and m.group(2) is None]

    def reveal(self, env: Mapping[str, str] | None = None, *, where: str = "") -> str:
        """The resolved value. Raises ConfigError naming the variable (never its value)."""
        env = os.environ if env is None else env
        missing = self.missing(env)
        if missing:
            place = f"{where}: " if where else ""
            raise ConfigError([f"{place}environment variable {missing[0]} is not set"])

        def sub(match: re.Match[str]) -> str:
            return env.get(match.group(1), match.group(2) or "")

        return _REF.sub(sub, self.template)

    def __repr__(self) -> str:
        refs = self.references()
        return f"EnvRef({', '.join('${' + r + '}' for r in refs)})" if refs else "EnvRef(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnvRef) and other.template == self.template

    def __hash__(self) -> int:
        return hash(self.template)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def build(value: Any) -> EnvRef:
            if isinstance(value, EnvRef):
                return value
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                return cls(str(value))
            raise ValueError("expected a string (use ${VAR} to read a secret from the environment)")

        return core_schema.no_info_plain_validator_function(
            build, serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.template)
        )


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, '_')")
    return value


# `env:` of a configured command: the variables it gets besides the small base (bot/childenv.py).
# Values are `${VAR}` references or literals, resolved when the command runs.
CommandEnv = dict[Annotated[str, AfterValidator(_env_name)], EnvRef]
