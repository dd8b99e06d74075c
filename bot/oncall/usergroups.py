"""Keep a schedule's Slack user group (`usergroup:`) set to whoever is on call (run every minute by the
scheduler's leader). The group is set only when the on-call set changed since opsbot last set it
(`usergroup_syncs`); a failure is logged once per streak and tried again on the next run; when nobody is
on call the group is left as it is (Slack cannot empty a group)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from bot.clock import Clock
from bot.config import Config
from bot.db import Database
from bot.errors import OpsbotError
from bot.models import UsergroupSync
from bot.oncall import Resolve, current

log = logging.getLogger(__name__)
_reported: dict[str, str] = {}  # schedule → the problem last logged (one log line per streak)


class UsergroupDirectory(Protocol):
    async def group_id(self, ref: str) -> str | None:
        """The id of a group given as `@handle` or `S…` (None: no such group)."""
        ...

    async def set_members(self, group_id: str, users: list[str]) -> None:
        """Replace the group's members; raises OpsbotError (its message safe to log) on a refusal."""
        ...


@dataclass(frozen=True)
class Synced:
    schedule: str
    group: str | None
    users: list[str]
    changed: bool
    problem: str | None = None


def _report(schedule: str, problem: str | None) -> None:
    if problem is None:
        if _reported.pop(schedule, None) is not None:
            log.info("user group sync of schedule %s works again", schedule)
        return
    if _reported.get(schedule) != problem:
        log.warning("user group sync of schedule %s: %s", schedule, problem)
        _reported[schedule] = problem


async def sync_one(db: Database, config: Config, clock: Clock, *, schedule: str, groups: UsergroupDirectory,
                   resolve: Resolve) -> Synced:
    ref = config.oncall[schedule].usergroup or ""
    group = ref if ref.startswith("S") else await groups.group_id(ref)
    if group is None:
        return Synced(schedule, None, [], False, f"there is no user group {ref}")
    users = sorted(await current(db, config, clock, schedule, resolve=resolve))
    if not users:
        return Synced(schedule, group, [], False, f"nobody is on call; {ref} is left unchanged")
    async with db.session() as session:
        row = await session.get(UsergroupSync, schedule)
        if row is not None and row.usergroup_id == group and sorted(row.users) == users:
            return Synced(schedule, group, users, False)
    await groups.set_members(group, users)
    async with db.session() as session:
        row = await session.get(UsergroupSync, schedule, with_for_update=True)
        if row is None:
            session.add(UsergroupSync(schedule=schedule, usergroup_id=group, users=users, synced_at=clock()))
        else:
            row.usergroup_id, row.users, row.synced_at = group, users, clock()
    return Synced(schedule, group, users, True)


async def sync(db: Database, config: Config, clock: Clock, *, groups: UsergroupDirectory,
               resolve: Resolve) -> list[Synced]:
    """Every schedule with a `usergroup:`; one failing schedule does not stop the others."""
    out = []
    for name, schedule in config.oncall.items():
        if not schedule.usergroup:
            continue
        try:
            result = await sync_one(db, config, clock, schedule=name, groups=groups, resolve=resolve)
        except OpsbotError as exc:
            result = Synced(name, None, [], False, str(exc))
        except Exception as exc:
            result = Synced(name, None, [], False, f"failed ({type(exc).__name__})")
        _report(name, result.problem)
        out.append(result)
    return out
