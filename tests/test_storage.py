"""Storage on SQLite and PostgreSQL (whichever TEST_DATABASE_URL selects): URLs, migrations, audit, UTC."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from bot import audit
from bot.clock import FakeClock
from bot.db import MIGRATIONS, Database, migration_heads, normalize_url, redact, run_migrations
from bot.emulator.harness import BotHarness
from bot.emulator.server import EmulatorServer
from bot.models import AuditEntry, Base, Incident
from tests.conftest import BACKEND_URL, PG_ADMIN, _migrate, _pg_create_database, _pg_drop_database, _sync_url
from tests.tcpproxy import TcpProxy
from tests.test_alerts_replicas import eventually
from tests.test_worker import Served


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


def test_migration_heads_agree_with_alembic(tmp_path: Path) -> None:
    """migration_heads reads the scripts without Alembic; Alembic's own answer is the reference, on this
    repository's scripts and on a branched history (two heads, then their merge)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    def alembic_heads(directory: Path) -> frozenset[str]:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(directory))
        return frozenset(ScriptDirectory.from_config(cfg).get_heads())

    assert migration_heads() == alembic_heads(MIGRATIONS) == {"0011_incident_roles_followups"}
    branched = tmp_path / "migrations"
    (branched / "versions").mkdir(parents=True)
    scripts = {"a": 'revision = "a"\ndown_revision = None\n',
               "b": 'revision: str = "b"\ndown_revision: str | None = "a"\n',
               "c": '"""c"""\nrevision = "c"\ndown_revision = "a"\nbranch_labels = None\n'}
    for name, body in scripts.items():
        (branched / "versions" / f"{name}.py").write_text(body)
    assert migration_heads(branched) == alembic_heads(branched) == {"b", "c"}
    (branched / "versions" / "d.py").write_text('revision = "d"\ndown_revision = ("b", "c")\n')
    migration_heads.cache_clear()
    assert migration_heads(branched) == alembic_heads(branched) == {"d"}


def _upgrade_in_child(url: str) -> tuple[list[str], str]:
    """bot.db.upgrade_in_child in a new interpreter: what it printed (its answer and the Alembic or Mako
    modules left in the calling process) and its standard error."""
    code = ("import logging, sys\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "from bot.db import upgrade_in_child\n"
            f"answer = upgrade_in_child({url!r})\n"
            "print(answer, sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent, check=True)
    return done.stdout.strip().split(maxsplit=1), done.stderr


def test_the_start_up_migration_runs_in_a_child_process(tmp_path: Path) -> None:
    """`opsbot serve` migrates in a child that exits (Alembic stays resident in neither the web process nor
    the worker forked after it): the database is at the head afterwards, the caller never imported Alembic,
    and a database that cannot be reached is logged without its password while the caller goes on."""
    if BACKEND_URL.startswith("postgres"):
        url = _pg_create_database("opsbot_child_migrate")
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    try:
        (answer, modules), _stderr = _upgrade_in_child(url)
        assert (answer, modules) == ("True", "[]")
        engine = create_engine(_sync_url(url))
        with engine.connect() as conn:
            assert set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars()) == migration_heads()
        engine.dispose()
    finally:
        if BACKEND_URL.startswith("postgres"):
            _pg_drop_database(url)
    (answer, modules), stderr = _upgrade_in_child("postgresql://opsbot:s3cret@127.0.0.1:1/opsbot")
    assert (answer, modules) == ("True", "[]")
    assert "database migration failed at start: OperationalError" in stderr and "s3cret" not in stderr


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


BACKEND_IS_PG = BACKEND_URL != "sqlite"


# -- readiness includes the schema ------------------------------------------------------------------

@pytest.fixture
def own_database_url(database_url: str) -> Iterator[str]:
    """A migrated database this test may drop (SQLite: the per-test copy; PostgreSQL: a private database)."""
    if database_url.startswith("sqlite"):
        yield database_url
        return
    url = _pg_create_database("opsbot_ready")
    _migrate(url)
    yield url
    _pg_drop_database(url)


def recreate_empty(url: str) -> None:
    """The database comes back empty under the running bot (a restore gone wrong, a new volume)."""
    if url.startswith("sqlite"):
        engine = create_engine(_sync_url(url))
        with engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE alembic_version"))
        engine.dispose()
        return
    _pg_drop_database(url)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{make_url(url).database}"')


def set_revision(url: str, revision: str) -> None:
    engine = create_engine(_sync_url(url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


async def test_ready_needs_the_schema_at_the_migration_head(make_bot: Any, own_database_url: str) -> None:
    bot: BotHarness = await make_bot(settings_overrides={"database_url": own_database_url})
    assert bot.http is not None
    [head] = migration_heads()
    assert head == "0011_incident_roles_followups"
    assert (await bot.http.get("/health/ready")).status_code == 200

    set_revision(own_database_url, "0004_state_versions")  # code newer than the schema
    behind = await bot.http.get("/health/ready")
    assert behind.status_code == 503
    assert behind.json()["reason"] == ("database schema revision is 0004_state_versions, expected "
                                       "0011_incident_roles_followups: run `opsbot db upgrade`")
    set_revision(own_database_url, head)
    assert (await bot.http.get("/health/ready")).status_code == 200

    recreate_empty(own_database_url)
    empty = await bot.http.get("/health/ready")
    assert empty.status_code == 503
    assert ("revision is none (no alembic_version table), expected 0011_incident_roles_followups"
            in empty.json()["reason"])
    health = (await bot.http.get("/health")).json()
    assert health["database"]["status"] == "schema" and "opsbot db upgrade" in health["database"]["reason"]
    assert b"opsbot_database_up 1.0" in (await bot.http.get("/metrics")).content  # reachable, just empty

    await bot.deps.db.upgrade()  # what `opsbot db upgrade` (or a restart) does
    assert (await bot.http.get("/health/ready")).status_code == 200


# -- opsbot_database_up is probed from start ---------------------------------------------------------

def database_up(metrics_text: str) -> float | None:
    found = re.findall(r"^opsbot_database_up ([0-9.e+]+)$", metrics_text, re.M)
    return float(found[0]) if found else None


async def metric(bot: BotHarness) -> float | None:
    assert bot.http is not None
    return database_up((await bot.http.get("/metrics")).text)


async def test_database_gauge_is_right_before_any_readiness_probe(bot: BotHarness) -> None:
    assert await metric(bot) == 1.0  # /health/ready was never called


async def test_database_gauge_follows_the_database(pg_via_proxy: tuple[str, TcpProxy], make_bot: Any) -> None:
    url, proxy = pg_via_proxy
    bot: BotHarness = await make_bot(settings_overrides={"database_url": url, "db_probe_interval": 0.2})
    assert await metric(bot) == 1.0
    await proxy.cut()
    await eventually(lambda: _is(bot, 0.0), "opsbot_database_up 0 after the database went away")
    await proxy.restore()
    await eventually(lambda: _is(bot, 1.0), "opsbot_database_up 1 once it is back")


async def _is(bot: BotHarness, value: float) -> bool:
    return await metric(bot) == value


async def test_database_gauge_in_multiprocess_mode(emulator: EmulatorServer, database_url: str,
                                                   tmp_path: Path) -> None:
    server = Served(emulator, database_url, tmp_path)
    try:
        await server.start()
        text_ = (await server.http.get("/metrics")).text
        assert database_up(text_) == 1.0, text_[-2000:]
    finally:
        await server.stop()


VERSIONED = ("incidents", "alert_states", "rollbacks", "pending_actions")  # a `version` column from 0003/0004
ALTERED = (*VERSIONED, "deploys", "processed_requests")


def _filler(column: dict[str, Any]) -> Any:
    kind = str(column["type"]).upper()
    if "INT" in kind:
        return 1
    if "BOOL" in kind:
        return False
    if "TIMESTAMP" in kind or "DATETIME" in kind:
        return datetime(2026, 1, 1, tzinfo=UTC)
    if "JSON" in kind:
        return "{}"
    return "x"


def test_upgrading_from_the_previous_release_keeps_every_row(tmp_path: Path) -> None:
    """A database at 0002_alerts (the schema on main before this release) with a row in every table the new
    migrations alter: upgraded to head, every row is still there with its values, new columns at defaults."""
    url = _pg_create_database("opsbot_upgrade") if BACKEND_IS_PG else f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(_sync_url(url))
    try:
        with engine.begin() as conn:
            run_migrations(conn, "0002_alerts")
        before: dict[str, dict[str, Any]] = {}
        with engine.begin() as conn:
            inspector = inspect(conn)
            for table in ALTERED:
                row = {c["name"]: _filler(c) for c in inspector.get_columns(table)
                       if not c["nullable"] and c.get("autoincrement") is not True}
                if "id" in row and "INT" in str(next(c["type"] for c in inspector.get_columns(table)
                                                    if c["name"] == "id")).upper():
                    row["id"] = 7
                names = ", ".join(f'"{n}"' for n in row)
                conn.execute(text(f'INSERT INTO {table} ({names}) VALUES ({", ".join(":" + n for n in row)})'),
                             row)
                before[table] = row
        with engine.begin() as conn:
            run_migrations(conn)
        with engine.connect() as conn:
            for table, row in before.items():
                stored = conn.execute(text(f"SELECT * FROM {table}")).mappings().all()
                assert len(stored) == 1, table
                for name, value in row.items():
                    got = stored[0][name]
                    if isinstance(value, datetime):
                        assert str(got)[:10] == "2026-01-01", (table, name, got)
                    elif name not in ("hits",):
                        assert str(got) == str(value) or got == value, (table, name, got, value)
                if table in VERSIONED:
                    assert stored[0]["version"] == 0, table
    finally:
        engine.dispose()
        if BACKEND_IS_PG:
            _pg_drop_database(url)
