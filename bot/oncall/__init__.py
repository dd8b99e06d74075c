"""On-call schedules (domain, no Slack types): who is on call now and next, and `/oncall override`.

A schedule comes from opsbot.yml (`oncall:` rotations in layers, bot/oncall/rotation.py) or from an iCal
feed (bot/oncall/ical.py, read from its cached copy here: no network call). Overrides are windows in the
config and rows in `oncall_overrides`; a later one wins over an earlier one and every one over the layers.
People are named as the config or feed names them (U…, @handle, e-mail); `current` turns them into Slack
user ids through a `resolve` callable the Slack side provides."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.clock import Clock
from bot.config import Config
from bot.config.oncall import Schedule
from bot.db import Database
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import OncallOverride
from bot.oncall import ical
from bot.oncall.ical import FeedState
from bot.oncall.rotation import HORIZON, OverrideWindow, Shift, next_handoff, on_call

__all__ = ["MAX_OVERRIDE", "OverrideInfo", "Resolve", "Shift", "Status", "add_override", "cancel_override",
           "current", "list_overrides", "schedule_of", "status"]
log = logging.getLogger(__name__)
MAX_OVERRIDE = timedelta(days=30)
Resolve = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class OverrideInfo:
    id: int
    schedule: str
    user: str
    start: datetime
    end: datetime
    created_by: str
    cancelled_at: datetime | None = None


@dataclass(frozen=True)
class Status:
    """One schedule now: who is on call (usually one shift), the next hand-off, and its feed's state."""

    name: str
    schedule: Schedule
    at: datetime
    now: list[Shift]
    next: Shift | None
    feed: FeedState | None = None  # iCal schedules only (None: never fetched)

    @property
    def stale(self) -> bool:
        """An iCal schedule whose cached copy is missing, old, or whose last refresh failed."""
        if self.schedule.ical is None:
            return False
        return self.feed is None or self.feed.stale(self.at, self.schedule.ical.refresh)


def schedule_of(config: Config, name: str) -> tuple[str, Schedule]:
    """The configured schedule `name` (any case), or NotFound listing the valid ones."""
    for key, schedule in config.oncall.items():
        if key.lower() == name.strip().lower():
            return key, schedule
    raise NotFound("schedule", name, sorted(config.oncall))


def _info(row: OncallOverride) -> OverrideInfo:
    return OverrideInfo(row.id, row.schedule, row.user_id, row.starts_at, row.ends_at, row.created_by,
                        row.cancelled_at)


async def _windows(session: AsyncSession, schedule: str, start: datetime, end: datetime) -> list[OverrideWindow]:
    """The schedule's live database overrides overlapping [start, end), oldest first."""
    query = (select(OncallOverride).where(OncallOverride.schedule == schedule, OncallOverride.cancelled_at.is_(None),
                                          OncallOverride.ends_at > start, OncallOverride.starts_at < end)
             .order_by(OncallOverride.id))
    return [OverrideWindow(r.user_id, r.starts_at, r.ends_at, r.id) for r in (await session.scalars(query)).all()]


async def _state(db: Database, name: str, schedule: Schedule, at: datetime) -> tuple[
        list[OverrideWindow], list[Shift] | None, FeedState | None]:
    async with db.session() as session:
        windows = await _windows(session, name, at - HORIZON, at + HORIZON)
    if schedule.ical is None:
        return windows, None, None
    feed = await ical.cached(db, name)
    base: list[Shift] = []
    if feed is not None and feed.body:
        try:
            base = ical.parse_shifts(feed.body, start=at - HORIZON, end=at + HORIZON, zone=schedule.zone,
                                     people=schedule.ical.people)
        except ical.FeedError as exc:  # stored copies were parsed once already: only a library change gets here
            log.warning("the cached feed of schedule %s cannot be read: %s", name, exc)
    return windows, base, feed


async def status(db: Database, config: Config, clock: Clock, schedule: str) -> Status:
    name, found = schedule_of(config, schedule)
    at = clock()
    windows, base, feed = await _state(db, name, found, at)
    return Status(name, found, at, on_call(found, at, windows, base=base),
                  next_handoff(found, at, windows, base=base), feed)


async def current(db: Database, config: Config, clock: Clock, schedule: str, *,
                  resolve: Resolve | None = None) -> list[str]:
    """The Slack user ids on call in `schedule` now (empty: nobody). Handles and e-mail addresses are
    turned into ids by `resolve`; without one, or when it finds nobody, they are left out (logged)."""
    found = await status(db, config, clock, schedule)
    out: list[str] = []
    for shift in found.now:
        user: str | None = shift.user
        if not (shift.user.startswith(("U", "W")) and shift.user.isalnum()):
            user = await resolve(shift.user) if resolve is not None else None
            if user is None:
                log.warning("schedule %s: no Slack user found for an on-call entry", found.name)
        if user and user not in out:
            out.append(user)
    return out


async def add_override(db: Database, config: Config, clock: Clock, *, schedule: str, user: str, end: datetime,
                       actor: str, start: datetime | None = None) -> OverrideInfo:
    """`user` takes `schedule` from `start` (now) until `end`, at most MAX_OVERRIDE; audited."""
    name, _ = schedule_of(config, schedule)
    now = clock()
    start = start or now
    if end <= now:
        raise InvalidInput("That override would already be over.")
    if end <= start:
        raise InvalidInput("An override must end after it starts.")
    if end - start > MAX_OVERRIDE:
        raise InvalidInput(f"An override lasts at most {MAX_OVERRIDE.days} days.")
    if not (user.startswith(("U", "W")) and user.isalnum()):
        raise InvalidInput("Name the person as a Slack mention, e.g. `@alice`.")
    async with db.session() as session:
        row = OncallOverride(schedule=name, user_id=user, starts_at=start, ends_at=end, created_by=actor,
                             created_at=now)
        session.add(row)
        await session.flush()
        await audit.record(session, clock=clock, actor=actor, action="oncall.override", target=f"oncall:{name}",
                           after={"id": row.id, "user": user, "start": start.isoformat(), "end": end.isoformat()})
        return _info(row)


async def list_overrides(db: Database, config: Config, clock: Clock, *,
                         schedule: str | None = None) -> list[OverrideInfo]:
    """Overrides not yet over and not cancelled, soonest first."""
    name = schedule_of(config, schedule)[0] if schedule is not None else None
    query = (select(OncallOverride).where(OncallOverride.cancelled_at.is_(None), OncallOverride.ends_at > clock())
             .order_by(OncallOverride.starts_at, OncallOverride.id))
    if name is not None:
        query = query.where(OncallOverride.schedule == name)
    async with db.session() as session:
        return [_info(r) for r in (await session.scalars(query)).all() if r.schedule in config.oncall]


async def cancel_override(db: Database, config: Config, clock: Clock, *, override_id: int,
                          actor: str) -> OverrideInfo:
    """Cancel an override that is not over yet; audited. The conditional write goes first (one winner)."""
    now = clock()
    async with db.session() as session:
        result = await session.execute(
            update(OncallOverride).where(OncallOverride.id == override_id, OncallOverride.cancelled_at.is_(None),
                                         OncallOverride.ends_at > now).values(cancelled_at=now))
        row = await session.get(OncallOverride, override_id)
        if row is None or row.schedule not in config.oncall:
            raise InvalidInput(f"There is no override #{override_id}.")
        if getattr(result, "rowcount", 0) != 1:
            raise Conflict(f"Override #{override_id} is already cancelled or over.")
        await audit.record(session, clock=clock, actor=actor, action="oncall.override.cancel",
                           target=f"oncall:{row.schedule}",
                           before={"id": row.id, "user": row.user_id, "start": row.starts_at.isoformat(),
                                   "end": row.ends_at.isoformat()})
        return _info(row)
