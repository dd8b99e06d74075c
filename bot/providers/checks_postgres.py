"""`type: postgres` checks: connect, `SELECT 1`, and connections in use against `max_connections`."""

from __future__ import annotations

import math

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bot.config.health import PostgresCheck
from bot.errors import ConfigError
from bot.providers.checks_common import Probe, scrub

_USAGE = """
SELECT 1,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       current_setting('max_connections')::int
"""


async def probe_postgres(check: PostgresCheck, *, timeout: float) -> Probe:
    try:
        dsn = check.dsn.reveal(where="dsn")
    except ConfigError as exc:
        return Probe("fail", exc.problems[0])
    secrets = [dsn, *_passwords(dsn)]
    try:
        # libpq counts connect_timeout in whole seconds (at least 2); the engine's timeout is the real bound.
        async with await psycopg.AsyncConnection.connect(
                dsn, connect_timeout=max(2, math.ceil(timeout)), autocommit=True,
                application_name="opsbot-health") as conn:
            row = await (await conn.execute(_USAGE)).fetchone()
    except psycopg.Error as exc:
        return Probe("fail", _reason(exc, secrets))
    if row is None or row[0] != 1:
        return Probe("fail", "SELECT 1 did not return 1")
    in_use, maximum = int(row[1]), int(row[2])
    percent = 100.0 * in_use / maximum if maximum else 0.0
    usage = f"connections {in_use}/{maximum} ({percent:.0f}%)"
    if percent > check.connections_warn_percent:
        return Probe("warn", f"{usage}, above {check.connections_warn_percent:g}%")
    return Probe("ok", usage)


def _passwords(dsn: str) -> list[str]:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return []
    return [str(password)] if password else []


def _reason(exc: psycopg.Error, secrets: list[str]) -> str:
    message = str(exc).strip()
    lowered = message.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "timeout expired" in lowered:
        return "connection timed out"
    if "password authentication failed" in lowered:
        return "password authentication failed"
    if "does not exist" in lowered and "database" in lowered:
        return scrub(message.splitlines()[-1].split("FATAL:")[-1], secrets)
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return "cannot resolve host"
    # The last line of libpq's message says what went wrong; the first repeats the address.
    lines = [line for line in message.splitlines() if line.strip()]
    return scrub(lines[-1] if lines else type(exc).__name__, secrets)
