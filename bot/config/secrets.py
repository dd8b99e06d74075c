"""`${ENV_VAR}` references in opsbot.yml, resolved when used so secrets never sit in the config object."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, AnyHttpUrl, GetCoreSchemaHandler, ValidationError
from pydantic_core import core_schema

from bot.errors import ConfigError

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class EnvRef:
    """A config string that may contain `${VAR}` or `${VAR:-default}`; masked in repr and logs."""

    __slots__ = ("template",)

    def __init__(self, template: str) -> None:
        self.template = template

    def references(self) -> list[str]:
        return [m.group(1) for m in REF.finditer(self.template)]

    def missing(self, env: Mapping[str, str] | None = None) -> list[str]:
        env = os.environ if env is None else env
        return [m.group(1) for m in REF.finditer(self.template) if m.group(1) not in env and m.group(2) is None]

    def reveal(self, env: Mapping[str, str] | None = None, *, where: str = "") -> str:
        """The resolved value. Raises ConfigError naming the variable (never its value)."""
        env = os.environ if env is None else env
        missing = self.missing(env)
        if missing:
            place = f"{where}: " if where else ""
            raise ConfigError([f"{place}environment variable {missing[0]} is not set"])

        def sub(match: re.Match[str]) -> str:
            return env.get(match.group(1), match.group(2) or "")

        return REF.sub(sub, self.template)

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


class EnvUrl(EnvRef):
    """An http(s) URL that may hold `${VAR}` references, validated as a URL once they are substituted.

    A literal URL is checked (and normalised, as pydantic's AnyHttpUrl writes it) when the config loads; a
    URL with references is checked at load when its variables are set, by `opsbot config check`, and again
    by `reveal()` where it is used. `str()` is the URL as written (references unexpanded, never a value),
    so labels and logs stay free of secrets; callers that make requests use `reveal()`."""

    __slots__ = ()

    def reveal(self, env: Mapping[str, str] | None = None, *, where: str = "") -> str:
        """The substituted URL, normalised; ConfigError naming the variables (never their values)."""
        value = super().reveal(env, where=where)
        if not self.references():
            return value
        problem = _url_problem(value)
        if problem:
            place = f"{where}: " if where else ""
            raise ConfigError([f"{place}{problem} once {', '.join('${' + r + '}' for r in self.references())} "
                               "is substituted"])
        return str(AnyHttpUrl(value))

    def problem(self, env: Mapping[str, str] | None = None) -> str | None:
        """Why this URL is not valid with `env`'s values, or None (also None while a variable is unset)."""
        if self.missing(env):
            return None
        try:
            self.reveal(env)
        except ConfigError as exc:
            return exc.problems[0]
        return None

    @property
    def username(self) -> str | None:
        return urlsplit(self.template).username

    @property
    def password(self) -> str | None:
        return urlsplit(self.template).password

    def __repr__(self) -> str:
        # Scheme and host only: a path or query may hold a token (a webhook URL often is a secret).
        parts = urlsplit(self.template)
        host = parts.hostname or ""
        return f"EnvUrl({parts.scheme}://{host}/…)" if parts.scheme and host else "EnvUrl(***)"

    def __str__(self) -> str:
        return self.template

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def build(value: Any, info: core_schema.ValidationInfo) -> EnvUrl:
            if isinstance(value, EnvUrl):
                return value
            if not isinstance(value, str):
                raise ValueError("expected a URL (http:// or https://; ${VAR} may stand for any part)")
            ref = cls(value.strip())
            if not ref.references():
                problem = _url_problem(ref.template)
                if problem:
                    raise ValueError(problem)
                return cls(str(AnyHttpUrl(ref.template)))
            env = (info.context or {}).get("env") if isinstance(info.context, dict) else None
            problem = ref.problem(env)
            if problem:
                raise ValueError(problem)
            return ref

        return core_schema.with_info_plain_validator_function(
            build, serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.template)
        )


def _url_problem(value: str) -> str | None:
    try:
        AnyHttpUrl(value)
    except ValidationError:
        return "not a valid URL"
    return None


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, '_')")
    return value


# `env:` of a configured command: the variables it gets besides the small base (bot/childenv.py).
# Values are `${VAR}` references or literals, resolved when the command runs.
CommandEnv = dict[Annotated[str, AfterValidator(_env_name)], EnvRef]
