"""`source: postgres` — a SQL query returning one number, on its own short-lived connection."""

from __future__ import annotations

import asyncio

import psycopg

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
        try:
            async with asyncio.timeout(self.timeout + 1):
                conn = await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, connect_timeout=max(int(self.timeout), 1),
                    options=f"-c statement_timeout={statement_ms} -c default_transaction_read_only=on")
                async with conn:
                    cursor = await conn.execute(rule.query)  # type: ignore[arg-type]
                    row = await cursor.fetchone()
        except TimeoutError:
            raise MetricSourceError(f"the query did not finish within {self.timeout:g}s") from None
        except psycopg.errors.QueryCanceled:
            raise MetricSourceError(f"the query did not finish within {self.timeout:g}s") from None
        except psycopg.Error as exc:
            # The driver's first line names the failure; connection errors may echo the host, never the password.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise MetricSourceError(f"SQL error: {reason[:200]}") from None
        if row is None or len(row) == 0:
            raise MetricSourceError("the query returned no rows")
        return [Sample(as_number(row[0], "the first column"))]
