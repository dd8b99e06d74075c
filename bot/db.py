"""Engine, sessions, migrations and the database's health, for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.errors import DependencyDown

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Arbitrary constants for PostgreSQL advisory locks.
MIGRATION_LOCK = 7_201_001


def normalize_url(raw: str) -> URL:
    """Accept URLs as users write them: sqlite:///x.db, postgres://, postgresql://, postgresql+psycopg://."""
    url = make_url(raw.strip())
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:///path or postgresql://…")


def redact(url: URL | str) -> str:
    """The URL without its password, for logs and /health."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


class Database:
    """The async engine plus a session factory; one per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        kwargs: dict[str, object] = {"echo": echo, "pool_pre_ping": True}
        if is_sqlite(self.url):
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800, pool_timeout=10,
                          connect_args={"connect_timeout": 5})
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if is_sqlite(self.url):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    @property
    def display_url(self) -> str:
        return redact(self.url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error.

        Connection failures surface as DependencyDown with a message safe to show users."""
        with _unreachable_as_dependency_down():
            async with self.sessions() as session, session.begin():
                yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction, for one-statement work that needs no ORM unit of work (a job's
        redelivery key): committed on success, rolled back on error, failures mapped as `session`'s are."""
        with _unreachable_as_dependency_down():
            async with self.engine.begin() as connection:
                yield connection

    async def ping(self, timeout: float = 2.0) -> str | None:
        """None when healthy, else a short reason (never the URL or password)."""
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except TimeoutError:
            return f"database did not answer within {timeout:g}s"
        except Exception as exc:
            return f"database unreachable: {_short_reason(exc)}"
        return None

    async def readiness(self, timeout: float = 2.0) -> tuple[bool, str | None]:
        """(reachable, reason): reason is None when the database answers and its schema is at the migration
        head(s). One cheap query (alembic_version), so it can run on every readiness probe."""
        expected = migration_heads()
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    found = set((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
        except TimeoutError:
            return False, f"database did not answer within {timeout:g}s"
        except Exception as exc:
            if not _is_missing_table(exc):
                if _is_connection_error(exc) or isinstance(exc, OSError | ConnectionError):
                    return False, f"database unreachable: {_short_reason(exc)}"
                return True, f"schema check failed: {_short_reason(exc)}"
            found = set()  # no alembic_version table: never migrated, or recreated empty
        if found == expected:
            return True, None
        at = ", ".join(sorted(found)) or "none (no alembic_version table)"
        return True, (f"database schema revision is {at}, expected {', '.join(sorted(expected))}: "
                      "run `opsbot db upgrade`")

    async def upgrade(self) -> None:
        """Run Alembic migrations to head (on PostgreSQL under an advisory lock: replicas may race)."""
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            await conn.run_sync(run_migrations)

    async def dispose(self) -> None:
        await self.engine.dispose()


@functools.cache
def migration_heads(directory: Path = MIGRATIONS) -> frozenset[str]:
    """The head revision(s) of the migration scripts in `directory`, read once per process from each script's
    `revision` and `down_revision`. Read without Alembic's ScriptDirectory, which imports Alembic and Mako:
    a readiness probe would keep them resident in the serving process (tests/test_storage.py checks that the
    two agree)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted((directory / "versions").glob("*.py")):
        values = _revision_identifiers(script)
        if "revision" not in values:
            continue
        revisions.add(str(values["revision"]))
        down = values.get("down_revision")
        parents.update(str(d) for d in (down if isinstance(down, tuple | list) else (down,)) if d)
    return frozenset(revisions - parents)


def _revision_identifiers(script: Path) -> dict[str, object]:
    """The literal values of a script's module-level `revision` and `down_revision` (annotated or not)."""
    import ast

    values: dict[str, object] = {}
    for node in ast.parse(script.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            values[target.id] = ast.literal_eval(value)
    return values


def upgrade_in_child(url: str) -> bool:
    """Migrate to head in a forked child process that exits when done, so Alembic and Mako (a few MiB) stay
    resident in neither the serving process nor the worker forked after it. Waits for the child; a failure
    is logged (the bot still starts and /health/ready tells the operator, as an in-process migration does).
    False, having done nothing, when this process cannot fork safely: the caller migrates in-process."""
    import os

    from bot import forks

    def child() -> int:
        try:
            asyncio.run(_upgrade(url))
        except Exception as exc:
            log.error("database migration failed at start: %s", type(exc).__name__)
            return 1
        return 0

    pid = forks.fork(child, name="migration")
    if pid is None:
        return False
    os.waitpid(pid, 0)
    return True


async def _upgrade(url: str) -> None:
    db = Database(url)
    try:
        await db.upgrade()
    finally:
        await db.dispose()


def run_migrations(connection: Connection, revision: str = "heads") -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@contextmanager
def _unreachable_as_dependency_down() -> Iterator[None]:
    try:
        yield
    except (OSError, ConnectionError) as exc:
        raise DependencyDown(f"opsbot's database is unreachable ({type(exc).__name__}).") from exc
    except Exception as exc:
        if _is_connection_error(exc):
            raise DependencyDown(_down_message(exc)) from exc
        raise


def _down_message(exc: BaseException) -> str:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, PoolTimeout):
        return "opsbot's database connections are all busy; try again in a moment."
    return "opsbot's database is unreachable; try again in a moment."


def _is_connection_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, PoolTimeout):  # every pooled connection busy for pool_timeout: worth another attempt
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError) and not _is_lock_error(exc)


def _is_missing_table(exc: BaseException) -> bool:
    message = str(getattr(exc, "orig", None) or exc).lower()
    return "no such table" in message or ("relation" in message and "does not exist" in message)


def _is_lock_error(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


def _short_reason(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(getattr(exc, "orig", None) or exc).__name__
    # Drivers sometimes echo the connection string; keep only the kind of failure.
    if "password" in text_.lower() or "@" in text_:
        return name
    return f"{name}: {text_[:160]}" if text_ else name
