"""Kill switches and feature flags: resolve a flag to its store, read it, and flip it safely —
permitted, confirmed by the same user within minutes, verified by reading back, audited, and put on
the timeline of the incident whose channel it was run in."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from bot import audit, timeline
from bot.config import Config, Flag
from bot.config.flags import FlagStore, HttpFlagStore, PostgresFlagStore
from bot.deps import Deps
from bot.errors import Conflict, InvalidInput, NotFound, OpsbotError
from bot.models import PendingAction
from bot.providers.flags_base import FlagChange, FlagProvider, FlagState, ProviderContext
from bot.providers.flags_builtin import BuiltinFlags
from bot.providers.flags_http import HttpFlags, template_variables
from bot.providers.flags_postgres import PostgresFlags

__all__ = ["PROVIDERS", "FlagChange", "FlagState", "Outcome", "Proposal", "Row", "Target"]

# Provider classes by the name used in opsbot.yml (`provider: postgres`).
PROVIDERS: dict[str, Any] = {"postgres": PostgresFlags, "http": HttpFlags, "builtin": BuiltinFlags}
PENDING_KIND = "flag"
CONFIRM_TTL = timedelta(minutes=5)
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


async def read(deps: Deps, target: Target) -> FlagState:
    return await provider_for(deps, target).read()


async def read_all(deps: Deps, *, environment: str | None = None) -> list[Row]:
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
            return Row(target, state=await read(deps, target))
        except OpsbotError as exc:
            return Row(target, error=str(exc))

    return list(await asyncio.gather(*(one(t) for t in targets)))


# -- changing: request, confirm, apply -------------------------------------------------------

@dataclass(frozen=True)
class Proposal:
    token: str
    action: str
    target: Target
    change: FlagChange
    before: FlagState
    expires_at: datetime


@dataclass(frozen=True)
class Outcome:
    action: str
    target: Target
    change: FlagChange
    actor: str
    before: FlagState
    after: FlagState
    verified: bool  # the state read back from the store shows the requested change
    read_back: bool  # False: the store cannot be read back (http without state_url); `after` is what was sent
    incident_id: int | None = None
    channel: str | None = None

    @property
    def ok(self) -> bool:
        return self.verified or not self.read_back


async def _audit_failure(deps: Deps, *, actor: str, action: str, target: Target, change: FlagChange,
                         detail: str, before: FlagState | None = None) -> None:
    async with deps.db.session() as session:
        await audit.record(session, clock=deps.clock, actor=actor, action=action, target=target.ref,
                           outcome="failed", before=before.as_dict() if before else None,
                           after={"environment": target.environment, "requested": change.as_dict()},
                           detail=detail[:2000])


async def request_change(deps: Deps, *, actor: str, action: str, target: Target, change: FlagChange,
                         channel: str | None) -> Proposal:
    """Check permission and rate, read the current state live, and store a single-use confirmation."""
    check_change(target, change, action)
    await deps.require(user=actor, action=action, target=target.ref, environment=target.environment)
    await deps.ratelimit.check(actor, action)
    try:
        before = await read(deps, target)
    except OpsbotError as exc:  # the store (or its secret) failed: nothing was stored, nothing will change
        await _audit_failure(deps, actor=actor, action=action, target=target, change=change,
                             detail=f"could not read the current state: {exc}")
        raise
    now = deps.clock()
    token = secrets.token_urlsafe(24)
    async with deps.db.session() as session:
        session.add(PendingAction(
            token=token, kind=PENDING_KIND, actor=actor, created_at=now, expires_at=now + CONFIRM_TTL,
            payload={"action": action, "flag": target.flag, "environment": target.environment,
                     "change": change.as_dict(), "channel": channel, "before": before.as_dict()}))
    return Proposal(token, action, target, change, before, now + CONFIRM_TTL)


async def _pending(deps: Deps, token: str, user: str) -> PendingAction:
    """The still-pending confirmation behind a button, if `user` may use it; marks expired ones."""
    async with deps.db.session() as session:
        query = select(PendingAction).where(PendingAction.token == token, PendingAction.kind == PENDING_KIND)
        pending = (await session.scalars(query)).first()
        if pending is None:
            raise InvalidInput("This confirmation is not valid (it may be from another opsbot). Run the command again.")
        if pending.actor != user:
            raise InvalidInput(f"Only <@{pending.actor}>, who asked for this change, can confirm or cancel it.")
        if pending.status != "pending":
            raise handled(pending, deps.clock())
        if deps.clock() >= pending.expires_at:
            pending.status = "expired"
            expired = True
        else:
            expired = False
    if expired:
        raise InvalidInput(f"This confirmation expired after {int(CONFIRM_TTL.total_seconds() // 60)} minutes; "
                           "nothing was changed. Run the command again.")
    return pending


_DECIDED = {"done": "confirmed", "cancelled": "cancelled"}


def handled(pending: PendingAction, now: datetime) -> Conflict:
    """A confirmation that is no longer pending, naming who confirmed or cancelled it and when."""
    if pending.status in _DECIDED and pending.decided_by:
        at = pending.decided_at
        minutes = int((now - at).total_seconds() // 60) if at is not None else 0
        since = "just now" if minutes < 1 else f"{minutes}m ago"
        return Conflict(f"This change was already {_DECIDED[pending.status]} by <@{pending.decided_by}> {since}; "
                        "run the command again for a new one.")
    return Conflict(f"This request was already {pending.status}; run the command again for a new one.")


async def _claim(deps: Deps, pending: PendingAction, status: str, user: str) -> None:
    """Single use: move pending → `status` with one conditional UPDATE (the transaction's first statement,
    so SQLite takes its write lock at once and PostgreSQL re-checks the row the winner committed); a second
    click, or a replica, loses and is told who won."""
    now = deps.clock()
    async with deps.db.session() as session:
        result = await session.execute(
            update(PendingAction).where(PendingAction.id == pending.id, PendingAction.status == "pending")
            .values(status=status, decided_by=user, decided_at=now, version=PendingAction.version + 1)
            .execution_options(synchronize_session=False))
        if getattr(result, "rowcount", 0) != 1:
            winner = (await session.scalars(select(PendingAction).where(PendingAction.id == pending.id)
                                            .execution_options(populate_existing=True))).first()
            raise handled(winner or pending, now)


def _target_of(deps: Deps, payload: dict[str, Any]) -> Target:
    return resolve(deps.config, payload["flag"], payload["environment"])


async def cancel(deps: Deps, *, token: str, user: str) -> Target:
    pending = await _pending(deps, token, user)
    await _claim(deps, pending, "cancelled", user)
    return _target_of(deps, pending.payload)


async def confirm(deps: Deps, *, token: str, user: str) -> Outcome:
    """The confirm button: re-check permission, claim the confirmation, then apply the change."""
    pending = await _pending(deps, token, user)
    payload = pending.payload
    target = _target_of(deps, payload)
    await deps.require(user=user, action=payload["action"], target=target.ref, environment=target.environment,
                       fresh=True)
    await _claim(deps, pending, "done", user)
    return await apply(deps, actor=user, action=payload["action"], target=target,
                       change=FlagChange.from_dict(payload["change"]), channel=payload.get("channel"))


async def apply(deps: Deps, *, actor: str, action: str, target: Target, change: FlagChange,
                channel: str | None) -> Outcome:
    """Flip, verify the read-back, audit, and add the incident timeline entry when run in one."""
    provider = provider_for(deps, target)
    try:
        before, after = await provider.set(change, actor=actor)
    except OpsbotError as exc:
        await _audit_failure(deps, actor=actor, action=action, target=target, change=change, detail=str(exc))
        raise
    read_back = getattr(provider, "can_read", True)
    verified = read_back and change.satisfied_by(after)
    summary = describe_change(change)
    detail = None if verified else (
        getattr(provider, "read_back_error", None)
        or (f"read-back shows {after.as_dict()}, expected {change.as_dict()}" if read_back
            else "the admin API accepted the change; no state_url to read it back"))
    incident_id = None
    async with deps.db.session() as session:
        await audit.record(session, clock=deps.clock, actor=actor, action=action, target=target.ref,
                           outcome="ok" if verified or not read_back else "failed",
                           before=before.as_dict(),
                           after={**after.as_dict(), "environment": target.environment,
                                  "requested": change.as_dict()}, detail=detail)
        incident = await timeline.open_incident_in_channel(session, channel)
        if incident is not None:
            incident_id = incident.id
            await timeline.add_event(
                session, clock=deps.clock, incident_id=incident.id, actor=actor, kind=action,
                text=f"`{target.flag}` in {target.environment}: {summary}",
                data={"flag": target.flag, "environment": target.environment, "before": before.as_dict(),
                      "after": after.as_dict(), "verified": verified})
    return Outcome(action, target, change, actor, before, after, verified, read_back, incident_id, channel)
