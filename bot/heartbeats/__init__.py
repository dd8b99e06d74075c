"""Heartbeats (dead man's switches) of scheduled jobs. No Slack here.

A job pings `POST /heartbeats/<name>` when it has run (a `fail` status, or `/fail`, when it failed). The
`heartbeats` row keeps the last ping; the alert is an `alert_states` row (key `heartbeat:<name>`, source
`heartbeat`) that goes through the alert engine's delivery: one message, Acknowledge/Silence buttons,
reminders and auto-acknowledgement from `alerts.defaults`, resolved in its thread by the next good ping.

    waiting ─no ping within every + grace─> firing (late) ─good ping─> resolved
    waiting ─fail ping─> firing (failed) ─good ping─> resolved
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.alerts import (
    FIRING,
    AlertEngine,
    Change,
    View,
    _hold_rows,  # the engine's lock discipline: write lock first on SQLite
    _locked,  # FOR UPDATE in key order on PostgreSQL
    active_silences,
    alertmanager_update,
    policy_for,
)
from bot.config.heartbeats import Heartbeat as HeartbeatConfig
from bot.db import Database
from bot.durations import format_duration
from bot.models import AlertState, Heartbeat

SOURCE = "heartbeat"
MAX_MESSAGE = 300
OK, FAIL = "ok", "fail"


def alert_key(name: str) -> str:
    return f"heartbeat:{name}"


def token_matches(heartbeat: HeartbeatConfig, given: str) -> bool:
    """Constant-time comparison with the configured token (ConfigError, naming the variable, when unset)."""
    expected = heartbeat.token.reveal(where=f"heartbeats.{heartbeat.name}.token")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Ping:
    name: str
    status: str  # ok | fail
    message: str | None
    at: datetime


def _clock_text(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def late_summary(heartbeat: HeartbeatConfig, row: Any) -> str:
    what = heartbeat.summary or heartbeat.name
    last = f"last ping {_clock_text(row.last_ping_at)}" if row.last_ping_at else "never pinged"
    return (f"{what}: heartbeat `{heartbeat.name}` is late ({last}; expected every "
            f"{format_duration(heartbeat.every)} + {format_duration(heartbeat.grace)} grace)")


def failed_summary(heartbeat: HeartbeatConfig, message: str | None) -> str:
    what = heartbeat.summary or heartbeat.name
    return f"{what}: heartbeat `{heartbeat.name}` reported a failure" + (f": {message}" if message else "")


async def record_ping(db: Database, ping: Ping) -> Any:
    """Store the ping (an update, or the first row); returns the row as stored."""
    values = {"last_ping_at": ping.at, "since": ping.at, "last_status": ping.status,
              "last_message": ping.message, "pings": Heartbeat.pings + 1}
    for _ in range(2):
        async with db.session() as session:
            done = await session.execute(update(Heartbeat).where(Heartbeat.name == ping.name).values(**values)
                                         .execution_options(synchronize_session=False))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                try:
                    async with session.begin_nested():
                        session.add(Heartbeat(name=ping.name, since=ping.at, last_ping_at=ping.at, pings=1,
                                              last_status=ping.status, last_message=ping.message))
                except IntegrityError:
                    continue  # a concurrent first ping inserted it: update it instead
            return (await session.scalars(select(Heartbeat).where(Heartbeat.name == ping.name)
                                          .execution_options(populate_existing=True))).one()
    raise RuntimeError("heartbeat row could not be written")  # pragma: no cover - two lost races in a row


async def _alert(engine: AlertEngine, heartbeat: HeartbeatConfig, *, firing: bool, summary: str | None,
                 now: datetime) -> list[Change]:
    """Move the heartbeat's alert (fire, update, resolve) and deliver what changed, under the engine's lock."""
    key = alert_key(heartbeat.name)
    async with engine.lock:
        changes: list[Change] = []
        async with engine.db.session() as session:
            await _hold_rows(session)
            row = (await session.scalars(_locked(select(AlertState).where(AlertState.key == key)))).first()
            if row is None:
                if not firing:
                    return []
                labels = {"annotation:runbook": str(heartbeat.runbook)} if heartbeat.runbook else {}
                row = AlertState(key=key, rule=heartbeat.name, source=SOURCE, labels=labels, state="ok",
                                 channel=heartbeat.channel)
                session.add(row)
            if firing and summary and row.summary != summary:
                row.summary = summary
            view = View.of(row)
            notices = alertmanager_update(view, firing=firing, level=heartbeat.level, starts_at=None, now=now)
            view.apply_to(row)
            await session.flush()
            if notices:
                silences = await active_silences(session, now)
                changes.append(Change(row, notices, policy_for(None, engine.settings), None,
                                      silences.get(heartbeat.name)))
        if changes:
            await engine.deliver(changes)
        return changes


async def ping(engine: AlertEngine, heartbeat: HeartbeatConfig, received: Ping) -> list[Change]:
    """A ping: stored, then a failure fires the alert and a good ping resolves it."""
    await record_ping(engine.db, received)
    if received.status == FAIL:
        return await _alert(engine, heartbeat, firing=True, summary=failed_summary(heartbeat, received.message),
                            now=received.at)
    return await _alert(engine, heartbeat, firing=False, summary=None, now=received.at)


async def check(engine: AlertEngine, heartbeats: list[HeartbeatConfig]) -> list[str]:
    """Fire the alerts of heartbeats that are late (no ping within every + grace); returns their names.
    A heartbeat never pinged waits from when opsbot first knew it (its row is made here)."""
    now = engine.clock()
    late: list[str] = []
    async with engine.db.session() as session:
        rows = {r.name: r for r in await session.scalars(select(Heartbeat))}
    for heartbeat in heartbeats:
        if heartbeat.name not in rows:
            try:
                async with engine.db.session() as session:  # a transaction that only writes (SQLite)
                    row = Heartbeat(name=heartbeat.name, since=now, pings=0)
                    session.add(row)
                rows[heartbeat.name] = row
            except IntegrityError:  # its first ping came in meanwhile: checked next time
                continue
    for heartbeat in heartbeats:
        known = rows.get(heartbeat.name)
        if known is None or now < known.since + heartbeat.every + heartbeat.grace:
            continue
        late.append(heartbeat.name)
        await _alert(engine, heartbeat, firing=True, summary=late_summary(heartbeat, known), now=now)
    return late


async def firing_rows(db: Database, names: list[str]) -> list[AlertState]:
    """The heartbeats' firing, unacknowledged alerts (for their escalation policies)."""
    async with db.session() as session:
        return list((await session.scalars(select(AlertState).where(
            AlertState.source == SOURCE, AlertState.state == FIRING, AlertState.acked_at.is_(None),
            AlertState.rule.in_(names)))).all())
