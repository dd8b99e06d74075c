"""Fixtures: a fresh database per test (SQLite file or a private PostgreSQL database), the emulator,
and a running opsbot driven through signed HTTP requests.

The backend comes from TEST_DATABASE_URL (default: SQLite). `scripts/test` runs the suite on both."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.clock import FakeClock
from bot.config import Config, parse_config
from bot.config.health import Environment
from bot.db import run_migrations
from bot.emulator.harness import BotHarness, running_bot
from bot.emulator.server import EmulatorServer
from tests.tcpproxy import TcpProxy

TESTS = Path(__file__).resolve().parent
PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKEND_URL = os.environ.get("TEST_DATABASE_URL", "sqlite")


# Sockets behind closed_port(): bound, never listening, open while the test process lives.
_HELD: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port that refuses connections and stays refused: its socket is bound and never listens, and
    is kept open, so no server started meanwhile (another test process's included) can take the port. A port
    bound and released at once was taken by a server of a concurrent test, which answered 404."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return int(sock.getsockname()[1])


# Fixtures that hand a test the pass's database (or PostgreSQL itself): a test that takes one is not
# backend-independent.
DATABASE_FIXTURES = frozenset({"database_url", "_database_template", "pg_via_proxy", "_fault_database",
                               "target_pg_url"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass leaves out the tests marked `backend_independent` (the shell, the demo and `opsbot
    init` run on an SQLite database of their own, or on none): the SQLite pass runs them, and running them
    again would test nothing new. A marked test that takes a database fixture is refused."""
    independent = [item for item in items if item.get_closest_marker("backend_independent")]
    misplaced = [item.nodeid for item in independent
                 if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if misplaced:
        raise pytest.UsageError(f"marked backend_independent but takes a database fixture: {misplaced}")
    if BACKEND_URL == "sqlite" or not independent:
        return
    config.hook.pytest_deselected(items=independent)
    items[:] = [item for item in items if not item.get_closest_marker("backend_independent")]


def _pg_create_database(prefix: str) -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        # The server acknowledges a commit before its WAL reaches the disk (1.2–1.7 ms less per commit on this
        # host's disk). Nothing opsbot or a test sees changes: a committed row is visible at once either way,
        # and no test crashes PostgreSQL itself (the durability tests kill opsbot's processes).
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return str(make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False))


def _pg_drop_database(url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sync_url(url: str) -> str:
    parsed = make_url(url)
    driver = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _migrate(url: str) -> None:
    engine = create_engine(_sync_url(url))
    with engine.begin() as conn:
        run_migrations(conn)
    engine.dispose()


@pytest.fixture(scope="session")
def _database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Migrated once per session: a SQLite file to copy, or a private PostgreSQL database to truncate."""
    if BACKEND_URL == "sqlite":
        path = tmp_path_factory.mktemp("db") / "template.db"
        _migrate(f"sqlite:///{path}")
        yield f"sqlite:///{path}"
    else:
        url = _pg_create_database("opsbot_test")
        _migrate(url)
        yield url
        _pg_drop_database(url)


@pytest.fixture
def database_url(_database_template: str, tmp_path: Path) -> str:
    """A clean, migrated opsbot database for one test."""
    if _database_template.startswith("sqlite"):
        target = tmp_path / "opsbot.db"
        shutil.copy(make_url(_database_template).database or "", target)
        return f"sqlite:///{target}"
    _empty_pg(_database_template)
    return _database_template


def _empty_pg(url: str) -> None:
    """Every row of opsbot's tables deleted and every sequence back at 1: what TRUNCATE … RESTART IDENTITY
    does, without its cost. TRUNCATE gives each of the ~130 tables, indexes and sequences a new file, and
    each DROP DATABASE's forced checkpoint then fsyncs every file made since the last: 0.6–0.8 s per test and
    16 s checkpoints on a loaded run, against 45 ms for these deletes of a few rows."""
    engine = create_engine(_sync_url(url))
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
        sequences = [r[0] for r in conn.execute(text(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"))]
        conn.execute(text("SET LOCAL session_replication_role = replica"))  # no foreign-key or job triggers
        for table in tables:
            conn.execute(text(f'DELETE FROM "{table}"'))
        for sequence in sequences:
            conn.execute(text("SELECT setval(:name, 1, false)"), {"name": f'"{sequence}"'})
    engine.dispose()


@pytest.fixture
async def pg_via_proxy(_fault_database: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A private, migrated, empty PostgreSQL database reached through a TCP proxy the test can cut and restore
    (SQLite cannot be cut, so these tests use PostgreSQL in both passes)."""
    url = _fault_database
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:  # what an earlier test left connected is gone
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                     (make_url(url).database,))
    _empty_pg(url)
    parsed = make_url(url)
    proxy = await TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432).start()
    yield parsed.set(port=proxy.port).render_as_string(hide_password=False), proxy
    await proxy.cut()


@pytest.fixture(scope="session")
def _fault_database() -> Iterator[str]:
    """pg_via_proxy's database: made once per test process and emptied for each test (one made and dropped
    per test cost a forced checkpoint each)."""
    url = _pg_create_database("opsbot_fault")
    _migrate(url)
    yield url
    _pg_drop_database(url)


@pytest.fixture(scope="session")
def target_pg_url() -> Iterator[str]:
    """A PostgreSQL database standing in for a target app's own database (flags, health, metrics)."""
    url = _pg_create_database("opsbot_target")
    yield url
    _pg_drop_database(url)


def local_environment(*checks: dict[str, Any], **settings: Any) -> Environment:
    """A health environment of `checks` against local servers, `latency_warn: 30s` unless given (a loaded CI
    host has taken a local check past the 1 s default; a test about latency sets its own)."""
    return Environment.model_validate({"checks": list(checks), "latency_warn": "30s", **settings})


def load_test_config(overrides: dict[str, Any] | None = None) -> Config:
    data = yaml.safe_load((TESTS / "opsbot.test.yml").read_text())
    for key, value in (overrides or {}).items():
        data[key] = value
    for environment in (data.get("environments") or {}).values():  # as local_environment does
        if isinstance(environment, dict):
            environment.setdefault("latency_warn", "30s")
    return parse_config(data, source="tests/opsbot.test.yml")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorServer]:
    server = await EmulatorServer().start()
    yield server
    await server.stop()


@pytest.fixture
def config() -> Config:
    """Override in a test module (or use `make_bot(config=…)`) for a feature-specific config."""
    return load_test_config()


@pytest.fixture
async def make_bot(database_url: str, emulator: EmulatorServer, clock: FakeClock):  # type: ignore[no-untyped-def]
    """`await make_bot(config=…, settings_overrides=…)` starts an opsbot; all are stopped after the test."""
    stack: list[Any] = []

    async def factory(config: Config | None = None, **kwargs: Any) -> BotHarness:
        manager = running_bot(config or load_test_config(), database_url, clock=clock, emulator=emulator,
                              **kwargs)
        harness = await manager.__aenter__()
        stack.append(manager)
        return harness

    yield factory
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)


@pytest.fixture
async def bot(make_bot: Any, config: Config) -> BotHarness:
    return await make_bot(config=config)
