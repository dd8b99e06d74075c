"""Storage on SQLite and PostgreSQL (whichever TEST_DATABASE_URL selects): URLs, migrations, audit, UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from bot import audit
from bot.clock import FakeClock
from bot.db import MIGRATIONS, Database, normalize_url, redact
from bot.models import AuditEntry, Incident


@pytest.mark.parametrize(("raw", "driver"), [
    ("sqlite:///opsbot.db", "sqlite+aiosqlite"),
    ("postgresql://u:p@h:5432/db", "postgresql+psycopg"),
    ("postgres://u:p@h/db", "postgresql+psycopg"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
])
def test_database_urls_are_accepted_as_users_write_them(raw: str, driver: str) -> None:
    assert normalize_url(raw).drivername == driver


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        normalize_url("mysql://root@localhost/x")


def test_redact_hides_the_password() -> None:
    assert "s3cret" not in redact("postgresql://opsbot:s3cret@db:5432/opsbot")


def test_migrations_are_additive_only() -> None:
    for path in (MIGRATIONS / "versions").glob("*.py"):
        upgrade = path.read_text().split("def downgrade")[0]
        assert not re.search(r"drop_(table|column|index|constraint)|DROP\s", upgrade, re.I), path.name


async def test_migrations_create_every_table_and_are_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.upgrade()  # already at head: a no-op, not an error
        async with db.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert {"audit_log", "incidents", "incident_events", "builtin_flags", "deploys", "rollbacks",
                "alert_states", "silences", "monitor_states", "pending_actions"} <= tables
    finally:
        await db.dispose()


async def test_fresh_database_is_migrated_from_scratch(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nested' / 'fresh.db'}")
    try:
        await db.upgrade()
        assert await db.ping() is None
    finally:
        await db.dispose()


async def test_audit_entries_round_trip_with_utc_times(database_url: str) -> None:
    db = Database(database_url)
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    try:
        async with db.session() as session:
            await audit.record(session, clock=clock, actor="U0ALICE01", action="killswitch", target="checkout/prod",
                               before={"kill_switch": False}, after={"kill_switch": True})
        async with db.session() as session:
            entry = (await session.scalars(select(AuditEntry))).one()
        assert entry.at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC) and entry.at.tzinfo is not None
        assert entry.before == {"kill_switch": False} and entry.after == {"kill_switch": True}
        assert entry.outcome == "ok"
    finally:
        await db.dispose()


async def test_session_rolls_back_on_error(database_url: str) -> None:
    db = Database(database_url)
    clock = FakeClock()
    try:
        with pytest.raises(RuntimeError):
            async with db.session() as session:
                session.add(Incident(title="x", severity="P1", reporter_id="U1", commander_id="U1",
                                     created_at=clock()))
                await session.flush()
                raise RuntimeError("boom")
        async with db.session() as session:
            assert (await session.scalars(select(Incident))).all() == []
    finally:
        await db.dispose()


async def test_unreachable_database_ping_gives_a_reason_without_secrets() -> None:
    db = Database("postgresql://opsbot:hunter2@127.0.0.1:1/opsbot")
    try:
        reason = await db.ping(timeout=3)
        assert reason is not None and "unreachable" in reason
        assert "hunter2" not in reason
    finally:
        await db.dispose()
