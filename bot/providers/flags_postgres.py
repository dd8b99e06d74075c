"""Flags in the target app's own table, as the runbooks flip them by hand:
`UPDATE feature_flags SET kill_switch = true WHERE name = 'checkout';` — but locked, parameterised,
in one transaction, with the row read before and after."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from bot.config.flags import PostgresFlagStore
from bot.errors import ProviderError
from bot.providers.flags_base import FlagChange, FlagState, ProviderContext, describe_error

# FlagChange field -> the store's column attribute.
_COLUMNS = {"enabled": "enabled_column", "kill_switch": "kill_switch_column", "rollout": "rollout_column"}


class PostgresFlags:
    def __init__(self, store: PostgresFlagStore, ctx: ProviderContext) -> None:
        self.store = store
        self.ctx = ctx
        self.key = store.key or ctx.flag
        self.timeout = store.timeout.total_seconds()

    @property
    def where(self) -> str:
        return f"`{self.ctx.flag}` in {self.ctx.environment} (postgres table {self.store.table})"

    def _table(self) -> sql.Identifier:
        return sql.Identifier(*self.store.table.split("."))

    def _fields(self) -> list[tuple[str, str]]:
        """(state field, column) for the columns this table has."""
        return [(field, column) for field, attr in _COLUMNS.items()
                if (column := getattr(self.store, attr)) is not None]

    def _select(self, *, lock: bool) -> sql.Composed:
        columns = sql.SQL(", ").join(sql.Identifier(column) for _, column in self._fields())
        query = sql.SQL("SELECT {columns} FROM {table} WHERE {name} = %s").format(
            columns=columns, table=self._table(), name=sql.Identifier(self.store.name_column))
        return query + sql.SQL(" FOR UPDATE") if lock else query

    def _state(self, row: tuple[Any, ...] | None) -> FlagState:
        if row is None:
            raise ProviderError(f"{self.where}: no row with {self.store.name_column} = '{self.key}'.")
        values = dict(zip((field for field, _ in self._fields()), row, strict=True))
        if values.get("rollout") is not None:
            values["rollout"] = int(values["rollout"])
        return FlagState(**values)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        dsn = self.store.dsn.reveal(where=f"flags.{self.ctx.flag}.environments.{self.ctx.environment}.dsn")
        statement_ms = int(self.timeout * 1000)
        return await psycopg.AsyncConnection.connect(
            dsn, connect_timeout=max(1, int(self.timeout)), options=f"-c statement_timeout={statement_ms}",
            application_name="opsbot")

    async def _run(self, work: Any) -> Any:
        """Run `work(conn)` on a fresh connection with an overall deadline; map failures to ProviderError."""
        try:
            async with asyncio.timeout(self.timeout * 2 + 1):
                conn = await self._connect()
                async with conn:
                    return await work(conn)
        except ProviderError:
            raise
        except TimeoutError:
            raise ProviderError(f"{self.where}: timed out after {self.timeout:g}s; nothing was changed.") from None
        except psycopg.errors.QueryCanceled:
            raise ProviderError(f"{self.where}: the statement timed out after {self.timeout:g}s (row locked or "
                                "database slow); nothing was changed.") from None
        except psycopg.OperationalError as exc:
            raise ProviderError(f"{self.where}: database unreachable ({_safe(exc)}); nothing was changed.") from None
        except psycopg.Error as exc:
            raise ProviderError(f"{self.where}: database error ({_safe(exc)}); nothing was changed.") from None

    async def read(self) -> FlagState:
        async def work(conn: psycopg.AsyncConnection[Any]) -> FlagState:
            cursor = await conn.execute(self._select(lock=False), (self.key,))
            return self._state(await cursor.fetchone())

        result: FlagState = await self._run(work)
        return result

    async def set(self, change: FlagChange, *, actor: str) -> tuple[FlagState, FlagState]:
        columns = dict(self._fields())
        updates = change.fields()
        missing = [field for field in updates if field not in columns]
        if missing:
            raise ProviderError(f"{self.where}: the table has no column configured for {', '.join(missing)}.")
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(columns[field])) for field in updates)
        update = sql.SQL("UPDATE {table} SET {assignments} WHERE {name} = %s").format(
            table=self._table(), assignments=assignments, name=sql.Identifier(self.store.name_column))

        async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[FlagState, FlagState]:
            async with conn.transaction():
                cursor = await conn.execute(self._select(lock=True), (self.key,))
                before = self._state(await cursor.fetchone())
                await conn.execute(update, (*updates.values(), self.key))
                cursor = await conn.execute(self._select(lock=False), (self.key,))
                after = self._state(await cursor.fetchone())
            return before, after

        result: tuple[FlagState, FlagState] = await self._run(work)
        return result


def _safe(exc: psycopg.Error) -> str:
    """SQLSTATE and libpq's primary message (which names host and port, never the password)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return f"{exc.sqlstate}: {primary}" if exc.sqlstate else primary
    return describe_error(exc)
