"""What every flag store speaks: a flag's state, a requested change, and the provider Protocol.

Providers are bound to one flag in one environment (the `flags.<name>.environments.<env>` entry of
opsbot.yml) and registered in `bot.flags.PROVIDERS` by the name used there (`postgres`, `http`, `builtin`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from bot.clock import Clock
from bot.db import Database
from bot.errors import DependencyDown, ProviderError


@dataclass(frozen=True)
class FlagState:
    """A flag as its store reports it. None: the store does not keep (or does not report) that field."""

    enabled: bool | None = None
    kill_switch: bool | None = None
    rollout: int | None = None

    @property
    def known(self) -> bool:
        return any(v is not None for v in (self.enabled, self.kill_switch, self.rollout))

    @property
    def active(self) -> bool | None:
        """Whether the feature is on for anyone: enabled and not killed (None when unknown)."""
        if self.kill_switch:
            return False
        return self.enabled

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "kill_switch": self.kill_switch, "rollout_percentage": self.rollout}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FlagState:
        data = data or {}
        return cls(enabled=data.get("enabled"), kill_switch=data.get("kill_switch"),
                   rollout=data.get("rollout_percentage"))


@dataclass(frozen=True)
class FlagChange:
    """The fields to set; None leaves a field as it is."""

    enabled: bool | None = None
    kill_switch: bool | None = None
    rollout: int | None = None

    def fields(self) -> dict[str, bool | int]:
        return {k: v for k, v in (("enabled", self.enabled), ("kill_switch", self.kill_switch),
                                  ("rollout", self.rollout)) if v is not None}

    def applied_to(self, state: FlagState) -> FlagState:
        return replace(state,
                       enabled=state.enabled if self.enabled is None else self.enabled,
                       kill_switch=state.kill_switch if self.kill_switch is None else self.kill_switch,
                       rollout=state.rollout if self.rollout is None else self.rollout)

    def satisfied_by(self, state: FlagState) -> bool:
        return all(getattr(state, k) == v for k, v in self.fields().items())

    def as_dict(self) -> dict[str, Any]:
        return self.fields()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlagChange:
        return cls(enabled=data.get("enabled"), kill_switch=data.get("kill_switch"), rollout=data.get("rollout"))


@dataclass(frozen=True)
class ProviderContext:
    """What a provider may use: opsbot's database (builtin), the shared HTTP client, the clock."""

    db: Database
    http: Any  # httpx.AsyncClient
    clock: Clock
    flag: str  # the flag's name in opsbot.yml
    environment: str


class FlagProvider(Protocol):
    """One flag in one environment of one store."""

    async def read(self) -> FlagState:
        """The current state; raises ProviderError when the store cannot be read or has no such flag."""
        ...

    async def set(self, change: FlagChange, *, actor: str) -> tuple[FlagState, FlagState]:
        """Apply `change` as one unit; returns (before, after), `after` read back from the store.

        Raises ProviderError with nothing changed when the store fails before the write."""
        ...


class StoreUnreachable(ProviderError, DependencyDown):
    """The store did not answer (connection refused, timeout): worth another attempt (bot.jobs.is_transient),
    and safe, since a change sets values rather than toggling them."""


def describe_error(exc: BaseException) -> str:
    """A short, secret-free reason for a failure (exception class and first line, no DSNs or tokens)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
