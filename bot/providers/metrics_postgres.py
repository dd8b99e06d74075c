"""`source: postgres` — a SQL query returning one number, on its own short-lived connection."""

from __future__ import annotations

import asyncio
import re

import psycopg
import psycopg.conninfo

from bot.config.alerts import AlertRule
from bot.providers.metrics_base import MetricSourceError, Sample, as_number


class PostgresSource:
    """Connects per read (rules run every minute or so), with connect and statement timeouts."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.timeout = timeout

    async def read(self, rule: AlertRule) -> list[Sample]:
        if rule.dsn is None:
            raise MetricSourceError("no dsn configured")
        dsn = rule.dsn.reveal(where=f"alerts.{rule.name}.dsn")
        statement_ms = max(int(self.timeout * 1000), 1)
        connected = False
        try:
            async with asyncio.timeout(self.timeout + 1):
                conn = await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, connect_timeout=max(int(self.timeout), 1),
                    options=f"-c statement_timeout={statement_ms} -c default_transaction_read_only=on")
                connected = True
                async with conn:
                    cursor = await conn.execute(rule.query)
                    row = await cursor.fetchone()
        except TimeoutError:
            raise MetricSourceError(f"the query did not finish within {self.timeout:g}s") from None
        except psycopg.errors.QueryCanceled:
            raise MetricSourceError(f"the query did not finish within {self.timeout:g}s") from None
        except psycopg.Error as exc:
            # The driver's first line names the failure. Before the connection exists it may quote the dsn
            # (a malformed one: `invalid percent-encoded token: "<password>"`), and this text goes to Slack.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if not connected and (isinstance(exc, psycopg.ProgrammingError) or _quotes_secret(reason, dsn)):
                reason = f"cannot connect ({type(exc).__name__}; check the dsn's syntax and %-encoding)"
            raise MetricSourceError(f"SQL error: {reason[:200]}") from None
        if row is None or len(row) == 0:
            raise MetricSourceError("the query returned no rows")
        return [Sample(as_number(row[0], "the first column"))]


def _password(dsn: str) -> str | None:
    try:
        return psycopg.conninfo.conninfo_to_dict(dsn).get("password") or None  # type: ignore[return-value]
    except psycopg.Error:  # malformed: take what sits where a password would
        match = re.search(r"://[^:/@]*:(.*)@", dsn) or re.search(r"password\s*=\s*(\S+)", dsn)
        return match.group(1) if match else None


def _quotes_secret(reason: str, dsn: str) -> bool:
    """Whether a connection error may show part of the password (or a host that swallowed part of it)."""
    password = _password(dsn)
    if not password:
        return False
    if "@" in reason:  # an unescaped '@' in the password: libpq read the rest as the host
        return True
    return any(password[i:i + 3] in reason for i in range(max(len(password) - 2, 1)))
