"""Flags kept in opsbot's own database (`builtin_flags`), for teams without a flag system yet.

Apps poll them read-only at `GET /flags` and `GET /flags/<name>`. A flag with no row yet has the
defaults of a new flag: enabled, kill switch off, 100 % rollout."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.flags import BuiltinFlagStore
from bot.errors import ProviderError
from bot.models import BuiltinFlag
from bot.providers.flags_base import FlagChange, FlagState, ProviderContext, describe_error

DEFAULT = FlagState(enabled=True, kill_switch=False, rollout=100)


def row_state(row: BuiltinFlag | None) -> FlagState:
    if row is None:
        return DEFAULT
    return FlagState(enabled=row.enabled, kill_switch=row.kill_switch, rollout=row.rollout_percentage)


async def load_rows(session: AsyncSession, names: list[str] | None = None,
                    environment: str | None = None) -> dict[tuple[str, str], BuiltinFlag]:
    """Rows keyed by (name, environment), optionally limited to some names and one environment."""
    query = select(BuiltinFlag)
    if names is not None:
        query = query.where(BuiltinFlag.name.in_(names))
    if environment is not None:
        query = query.where(BuiltinFlag.environment == environment)
    return {(row.name, row.environment): row for row in (await session.scalars(query)).all()}


class BuiltinFlags:
    can_read = True
    read_back_error: str | None = None  # set by `set` when the change was saved but not read back

    def __init__(self, store: BuiltinFlagStore, ctx: ProviderContext) -> None:
        self.store = store
        self.ctx = ctx

    def _query(self, *, lock: bool) -> Select[BuiltinFlag]:
        query = select(BuiltinFlag).where(BuiltinFlag.name == self.ctx.flag,
                                          BuiltinFlag.environment == self.ctx.environment)
        return query.with_for_update() if lock else query

    async def read(self) -> FlagState:
        try:
            async with self.ctx.db.session() as session:
                return row_state((await session.scalars(self._query(lock=False))).first())
        except SQLAlchemyError as exc:
            raise ProviderError(f"`{self.ctx.flag}` in {self.ctx.environment} (builtin): "
                                f"opsbot's database failed ({describe_error(exc)}).") from None

    async def set(self, change: FlagChange, *, actor: str) -> tuple[FlagState, FlagState]:
        # Two replicas creating the same row race on the unique (name, environment): retry once, then locked.
        for attempt in range(2):
            try:
                return await self._set(change, actor=actor)
            except IntegrityError:
                if attempt:
                    raise ProviderError(f"`{self.ctx.flag}` in {self.ctx.environment} (builtin): "
                                        "concurrent update; try again.") from None
            except SQLAlchemyError as exc:
                raise ProviderError(f"`{self.ctx.flag}` in {self.ctx.environment} (builtin): "
                                    f"opsbot's database failed ({describe_error(exc)}).") from None
        raise AssertionError("unreachable")

    async def _set(self, change: FlagChange, *, actor: str) -> tuple[FlagState, FlagState]:
        async with self.ctx.db.session() as session:
            row = (await session.scalars(self._query(lock=True))).first()
            before = row_state(row)
            after = change.applied_to(before)
            if row is None:
                row = BuiltinFlag(name=self.ctx.flag, environment=self.ctx.environment)
                session.add(row)
            row.enabled = bool(after.enabled)
            row.kill_switch = bool(after.kill_switch)
            row.rollout_percentage = int(after.rollout if after.rollout is not None else 100)
            row.updated_at = self.ctx.clock()
            row.updated_by = actor[:64]
            await session.flush()
        try:
            return before, await self.read()
        except ProviderError as exc:  # committed: report it as made but unverified, not as unmade
            self.read_back_error = f"the change was saved but reading it back failed: {exc}"
            return before, FlagState()
