"""Which flag a user means (the flag, its environment, its store) and reading flags live from their stores."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.config import Config, Flag
from bot.config.flags import FlagStore, HttpFlagStore, PostgresFlagStore
from bot.db import Database
from bot.errors import DependencyDown, InvalidInput, NotFound, OpsbotError
from bot.models import BuiltinFlag
from bot.providers.flags_base import FlagChange, FlagProvider, FlagState, ProviderContext
from bot.providers.flags_builtin import BuiltinFlags, load_rows
from bot.providers.flags_http import HttpFlags, template_variables
from bot.providers.flags_postgres import PostgresFlags

if TYPE_CHECKING:
    from bot.deps import Deps

# Provider classes by the name used in opsbot.yml (`provider: postgres`).
PROVIDERS: dict[str, Any] = {"postgres": PostgresFlags, "http": HttpFlags, "builtin": BuiltinFlags}
ACTIONS = ("killswitch", "flag")


@dataclass(frozen=True)
class Target:
    """One flag in one environment, with the store that holds it."""

    flag: str
    environment: str
    store: FlagStore
    config: Flag

    @property
    def ref(self) -> str:
        return f"{self.flag}/{self.environment}"

    @property
    def provider_name(self) -> str:
        return self.store.provider


def flag_names(config: Config) -> list[str]:
    return list(config.flags)


def environment_names(config: Config) -> list[str]:
    """Every environment a flag can live in, in config order."""
    names = list(config.environments)
    for flag in config.flags.values():
        names += [env for env in flag.environments if env not in names]
    return names


def find_flag(config: Config, name: str) -> tuple[str, Flag]:
    for key, flag in config.flags.items():
        if key.lower() == name.lower():
            return key, flag
    raise NotFound("flag", name, flag_names(config))


def resolve(config: Config, name: str, environment: str | None = None) -> Target:
    """The flag and environment named by a user (case-insensitive); NotFound lists the valid ones.

    No environment means the config's default environment, or the flag's only one."""
    key, flag = find_flag(config, name)
    envs = list(flag.environments)
    if not environment:
        default = config.default_environment
        if default in flag.environments:
            environment = default
        elif len(envs) == 1:
            environment = envs[0]
        else:
            raise InvalidInput(f"Say which environment: `{key}` is in {', '.join(f'`{e}`' for e in envs)}.")
    for env in envs:
        if env.lower() == environment.lower():
            return Target(key, env, flag.environments[env], flag)
    raise NotFound("environment", environment, envs)


def supported_fields(store: FlagStore) -> frozenset[str]:
    """The FlagChange fields a store can set (worked out once per configured store: this runs on the ack)."""
    known = _SUPPORTED.get(id(store))
    if known is None or known[0] is not store:
        known = _SUPPORTED[id(store)] = (store, frozenset(_supported_fields(store)))
    return known[1]


_SUPPORTED: dict[int, tuple[FlagStore, frozenset[str]]] = {}  # the store is kept so its id is never reused


def _supported_fields(store: FlagStore) -> set[str]:
    if isinstance(store, PostgresFlagStore):
        columns = {"enabled": store.enabled_column, "kill_switch": store.kill_switch_column,
                   "rollout": store.rollout_column}
        return {field for field, column in columns.items() if column}
    if isinstance(store, HttpFlagStore):
        return template_variables(store.body) & {"enabled", "kill_switch", "rollout"}
    return {"enabled", "kill_switch", "rollout"}


def check_change(target: Target, change: FlagChange, action: str) -> None:
    """Pure validation before anything is read or stored: can this store make this change?"""
    if action == "killswitch" and not target.config.kill_switch:
        raise InvalidInput(f"`{target.flag}` has no kill switch (`kill_switch: false` in opsbot.yml); "
                           f"use `/flag {target.flag} disable {target.environment}`.")
    missing = set(change.fields()) - supported_fields(target.store)
    if missing:
        what = ", ".join(sorted(missing)).replace("kill_switch", "kill switch")
        raise InvalidInput(f"`{target.flag}` in {target.environment} ({target.provider_name}) cannot set {what}.")


def provider_for(deps: Deps, target: Target) -> FlagProvider:
    ctx = ProviderContext(db=deps.db, http=deps.http, clock=deps.clock, flag=target.flag,
                          environment=target.environment)
    provider: FlagProvider = PROVIDERS[target.provider_name](target.store, ctx)
    return provider


def describe_change(change: FlagChange) -> str:
    parts = []
    if change.kill_switch is not None:
        parts.append("kill switch " + ("ENGAGED (feature off)" if change.kill_switch else "released"))
    if change.enabled is not None:
        parts.append("enabled" if change.enabled else "disabled")
    if change.rollout is not None:
        parts.append(f"rollout {change.rollout}%")
    return ", ".join(parts)


# -- reading ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    target: Target
    state: FlagState | None = None
    error: str | None = None


async def read(deps: Deps, target: Target, *, asked_at: float | None = None) -> FlagState:
    """The flag's state, read live: by a read of its own, or (with `asked_at`, a request's time) by one of the
    same flag that started after the request was made (bot/shared_reads.py)."""
    return await deps.reads.read(("flag", target.ref), provider_for(deps, target).read, asked_at=asked_at)


async def read_all(deps: Deps, *, environment: str | None = None, asked_at: float | None = None) -> list[Row]:
    """Every configured flag (in one environment, or all), read live from the stores concurrently."""
    env_filter = None
    if environment:
        valid = environment_names(deps.config)
        env_filter = next((e for e in valid if e.lower() == environment.lower()), None)
        if env_filter is None:
            raise NotFound("environment", environment, valid)
    targets = [Target(name, env, store, flag) for name, flag in deps.config.flags.items()
               for env, store in flag.environments.items() if env_filter in (None, env)]

    async def one(target: Target) -> Row:
        try:
            return Row(target, state=await read(deps, target, asked_at=asked_at))
        except OpsbotError as exc:  # a read: the change path's "nothing was changed" would mislead here
            return Row(target, error=str(exc).replace("; nothing was changed.", "."))

    return list(await asyncio.gather(*(one(t) for t in targets)))


async def builtin_rows(db: Database, names: list[str], environment: str | None) -> dict[tuple[str, str], BuiltinFlag]:
    """The stored rows of builtin flags (for GET /flags); DependencyDown when opsbot's database fails."""
    try:
        async with db.session() as session:
            return await load_rows(session, names, environment)
    except DependencyDown:
        raise
    except Exception as exc:  # the database answered with an error: the endpoint is unavailable
        raise DependencyDown(f"opsbot's database failed ({type(exc).__name__}).") from exc

