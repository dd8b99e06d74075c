"""http_json rules and the passing of time: escalation, reminders, auto-acknowledgement, staleness."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.models import AlertState
from commands.alerts import HOUSEKEEPING_JOB, eval_job_name
from tests.conftest import load_test_config

JOB = eval_job_name(timedelta(minutes=1))


class PoolEndpoint:
    """An app's /internal/pool answering `{"pool": {"checked_out": n, "size": 20}}`."""

    def __init__(self) -> None:
        self.checked_out: Any = 5
        self.size: Any = 20
        self.status = 200
        self.headers: list[str] = []
        self.app = Starlette(routes=[Route("/internal/pool", self.pool)])

    async def pool(self, request: Request) -> Response:
        self.headers.append(request.headers.get("x-token", ""))
        if self.status != 200:
            return Response("down", status_code=self.status)
        return JSONResponse({"pool": {"checked_out": self.checked_out, "size": self.size},
                             "servers": [{"load": 0.5}]})


@pytest.fixture
async def pool() -> Any:
    endpoint = PoolEndpoint()
    async with LocalServer(endpoint.app) as server:
        endpoint.url = server.url  # type: ignore[attr-defined]
        yield endpoint


def pool_config(url: str, **rule: Any) -> Any:
    base = {"name": "db_pool_usage", "source": "http_json", "query": f"{url}/internal/pool",
            "path": "pool.checked_out", "ratio_of": "pool.size", "unit": "%", "warning": "> 80",
            "critical": "> 95", "summary": "DB connections above 80% of the pool", "for": "0s",
            "headers": {"X-Token": "${POOL_TOKEN:-secret-token}"}}
    base.update(rule)
    return load_test_config({"alerts": {"escalate_to": ["@oncall", "U0CAROL01"], "rules": [base],
                                        "defaults": {"repeat_every": "1h", "escalate_after": "4h",
                                                     "stale_after": "3h", "auto_ack_after": "7d"}}})


def threads(bot: BotHarness) -> list[str]:
    return [m.text for m in bot.messages("#alerts") if m.thread_ts]


async def test_ratio_is_a_percentage_with_headers_sent(make_bot: Any, pool: PoolEndpoint) -> None:
    bot = await make_bot(config=pool_config(pool.url))
    pool.checked_out = 17
    await bot.run_job(JOB)
    [message] = bot.messages("#alerts")
    assert "85%" in message.all_text() and "WARNING · db_pool_usage" in message.all_text()
    assert "warning > 80%" in message.all_text()
    assert pool.headers[-1] == "secret-token"


async def test_unacknowledged_warning_escalates_to_critical_and_mentions_targets(
        make_bot: Any, pool: PoolEndpoint, clock: FakeClock) -> None:
    bot = await make_bot(config=pool_config(pool.url))
    pool.checked_out = 17
    await bot.run_job(JOB)
    clock.advance(hours=3, minutes=59)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert "CRITICAL" not in bot.messages("#alerts")[0].all_text()
    clock.advance(minutes=1)
    await bot.run_job(HOUSEKEEPING_JOB)
    parent = bot.messages("#alerts")[0]
    assert "CRITICAL · db_pool_usage" in parent.all_text() and "Escalated to critical" in parent.all_text()
    [escalation] = [t for t in threads(bot) if "raised to *critical*" in t]
    assert "<!subteam^S0ONCALL1>" in escalation and "<@U0CAROL01>" in escalation
    # The value still says warning, but the escalation sticks while it fires, and happens once.
    await bot.run_job(JOB)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert "CRITICAL" in bot.messages("#alerts")[0].all_text()
    assert len([t for t in threads(bot) if "raised" in t]) == 1


async def test_acknowledged_warning_does_not_escalate(make_bot: Any, pool: PoolEndpoint, clock: FakeClock) -> None:
    bot = await make_bot(config=pool_config(pool.url))
    pool.checked_out = 17
    await bot.run_job(JOB)
    message = bot.messages("#alerts")[0]
    row_id = next(e["value"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "alerts.ack")
    await bot.click("alerts.ack", row_id, message=message)
    clock.advance(hours=5)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert "CRITICAL" not in bot.messages("#alerts")[0].all_text()
    assert threads(bot) == []


async def test_reminder_repeats_while_firing_unacknowledged(make_bot: Any, pool: PoolEndpoint,
                                                           clock: FakeClock) -> None:
    bot = await make_bot(config=pool_config(pool.url, critical="> 50", escalate_after="30d", auto_ack_after="30d"))
    pool.checked_out = 19
    await bot.run_job(JOB)
    clock.advance(minutes=59)
    await bot.run_job(JOB)
    assert threads(bot) == []
    clock.advance(minutes=1)
    await bot.run_job(JOB)
    clock.advance(minutes=1)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert len(threads(bot)) == 1 and "Still firing" in threads(bot)[0]
    clock.advance(hours=1)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert len(threads(bot)) == 2


async def test_auto_acknowledged_after_a_week(make_bot: Any, pool: PoolEndpoint, clock: FakeClock) -> None:
    bot = await make_bot(config=pool_config(pool.url, critical="> 50", repeat_every="30d"))
    pool.checked_out = 19
    await bot.run_job(JOB)
    clock.advance(days=6, hours=23)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert "Auto-acknowledged" not in bot.messages("#alerts")[0].all_text()
    clock.advance(hours=1)
    await bot.run_job(HOUSEKEEPING_JOB)
    parent = bot.messages("#alerts")[0]
    assert "✋ Auto-acknowledged" in parent.all_text()
    assert "Acknowledge" not in [e["text"]["text"] for b in parent.blocks if b["type"] == "actions"
                                 for e in b["elements"]]
    assert any("Auto-acknowledged" in t for t in threads(bot))


async def test_no_data_for_stale_after_raises_one_staleness_alert(make_bot: Any, pool: PoolEndpoint,
                                                                  clock: FakeClock) -> None:
    bot = await make_bot(config=pool_config(pool.url))
    await bot.run_job(JOB)
    pool.status = 503
    await bot.run_job(JOB)
    [error] = bot.messages("#alerts")
    assert "cannot be evaluated" in error.text and "HTTP 503" in error.text
    clock.advance(hours=2, minutes=59)
    await bot.run_job(JOB)
    assert len(bot.messages("#alerts")) == 1
    clock.advance(minutes=1)
    await bot.run_job(JOB)
    clock.advance(minutes=1)
    await bot.run_job(JOB)
    stale = [m for m in bot.messages("#alerts") if "no data" in m.text]
    assert len(stale) == 1 and "3h" in stale[0].text
    await bot.command("/alerts")
    assert "no data" in bot.ephemeral_texts()[-1]
    pool.status = 200
    await bot.run_job(JOB)
    assert [m.text for m in bot.messages("#alerts") if m.thread_ts] == ["✅ `db_pool_usage` has data again."]


@pytest.mark.parametrize(("checked_out", "size", "reason"), [
    ("many", 20, "expected a number"), (5, 0, "is 0"), (None, 20, "expected a number")])
async def test_bad_values_are_source_errors(make_bot: Any, pool: PoolEndpoint, checked_out: Any, size: Any,
                                            reason: str) -> None:
    bot = await make_bot(config=pool_config(pool.url))
    pool.checked_out, pool.size = checked_out, size
    await bot.run_job(JOB)
    [message] = bot.messages("#alerts")
    assert "cannot be evaluated" in message.text and reason in message.text


async def test_missing_path_is_a_source_error(make_bot: Any, pool: PoolEndpoint) -> None:
    bot = await make_bot(config=pool_config(pool.url, path="pool.in_use"))
    await bot.run_job(JOB)
    assert "'pool.in_use' not found" in bot.messages("#alerts")[0].text


async def test_unset_secret_is_a_rule_error_naming_the_variable(make_bot: Any, pool: PoolEndpoint) -> None:
    bot = await make_bot(config=pool_config(pool.url, headers={"X-Token": "${OPSBOT_TEST_UNSET_POOL_TOKEN}"}))
    await bot.run_job(JOB)
    [message] = bot.messages("#alerts")
    assert "cannot be evaluated" in message.text and "OPSBOT_TEST_UNSET_POOL_TOKEN is not set" in message.text


async def _blocked_on_a_lock(bot: BotHarness) -> None:
    """Until the engine's transaction waits for the row (PostgreSQL shows it; SQLite's busy wait cannot be
    seen, so there a short pause lets it reach the write lock)."""
    if bot.deps.db.is_sqlite:
        await asyncio.sleep(0.5)
        return
    for _ in range(200):
        async with bot.deps.db.engine.connect() as conn:
            waiting = await conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                             " AND datname = current_database()"))
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the housekeeping job never waited for the acknowledgement's row lock")


async def test_an_acknowledgement_committing_during_housekeeping_is_not_overwritten(
        make_bot: Any, pool: PoolEndpoint, clock: FakeClock) -> None:
    """A person acknowledges while the housekeeping job is about to auto-acknowledge the same alert: the engine
    waits for the person's write and then sees it, so the acknowledgement stays theirs and nobody is told
    'Auto-acknowledged' (before: the engine's copy, read first, overwrote it)."""
    bot = await make_bot(config=pool_config(pool.url, critical="> 50", repeat_every="30d"))
    pool.checked_out = 19
    await bot.run_job(JOB)
    clock.advance(days=7)
    async with bot.deps.db.session() as session:
        [row_id] = (await session.scalars(select(AlertState.id).where(AlertState.state == "firing"))).all()
    async with bot.deps.db.session() as session:  # alerts.acknowledge's conditional write, held open
        await session.execute(update(AlertState).where(AlertState.id == row_id)
                              .values(acked_by="U0ALICE01", acked_at=clock(), version=AlertState.version + 1))
        housekeeping = asyncio.create_task(bot.run_job(HOUSEKEEPING_JOB))
        await _blocked_on_a_lock(bot)
    await housekeeping
    async with bot.deps.db.session() as session:
        stored = await session.get(AlertState, row_id)
    assert stored is not None and stored.acked_by == "U0ALICE01"
    assert "Auto-acknowledged" not in bot.messages("#alerts")[0].all_text()
    assert not any("Auto-acknowledged" in t for t in threads(bot))
