"""Scheduled monitoring (posts once per change of state, remembers across restarts) and smoke suites."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.emulator.localserver import LocalServer
from bot.models import MonitorState
from tests.conftest import load_test_config

TARGET_STATUS: dict[str, int] = {}


async def _service(request: Request) -> Response:
    name = request.path_params["name"]
    code = TARGET_STATUS.get(name, 200)
    return JSONResponse({"status": "ok" if code == 200 else "down"}, status_code=code)


TARGET = Starlette(routes=[Route("/{name}", _service)])


@pytest.fixture
async def target() -> AsyncIterator[str]:
    TARGET_STATUS.clear()
    async with LocalServer(TARGET) as server:
        yield server.url


def config(url: str, *, smoke: list[dict[str, Any]] | None = None) -> Any:
    return load_test_config({"environments": {
        "prod": {"default": True, "monitor": "5m", "checks": [
            {"name": "api", "url": f"{url}/api"},
            {"name": "web", "url": f"{url}/web"},
        ], "smoke": smoke or []},
        "staging": {"checks": [{"name": "api", "url": f"{url}/api"}]},
    }})


async def state_of(bot: Any, environment: str) -> MonitorState | None:
    async with bot.deps.db.session() as session:
        return await session.scalar(select(MonitorState).where(MonitorState.environment == environment))


async def test_only_monitored_environments_get_a_job(make_bot: Any, target: str) -> None:
    bot = await make_bot(config=config(target))
    assert "health.monitor.prod" in bot.deps.scheduler.jobs
    assert "health.monitor.staging" not in bot.deps.scheduler.jobs
    assert bot.deps.scheduler.jobs["health.monitor.prod"].every.total_seconds() == 300


async def test_monitor_posts_once_per_change_of_state_and_survives_a_restart(make_bot: Any, target: str,
                                                                            clock: Any) -> None:
    bot = await make_bot(config=config(target))
    await bot.run_job("health.monitor.prod")
    assert bot.messages("#alerts") == []  # healthy at first sight is not news
    assert (await state_of(bot, "prod")).state == "healthy"  # type: ignore[union-attr]

    TARGET_STATUS["web"] = 503
    clock.advance(minutes=5)
    await bot.run_job("health.monitor.prod")
    (down,) = bot.messages("#alerts")
    assert "❌ *prod* is unhealthy (was healthy for 5m): web" in down.all_text()
    assert "expected 2xx got 503" in down.all_text()
    assert "*api*" not in down.all_text()  # only the failing checks

    clock.advance(minutes=5)
    await bot.run_job("health.monitor.prod")
    assert len(bot.messages("#alerts")) == 1  # still down: no repost

    # A restart (a second opsbot on the same database) remembers the state: no repost either.
    restarted = await make_bot(config=config(target))
    clock.advance(minutes=5)
    await restarted.run_job("health.monitor.prod")
    assert len(restarted.messages("#alerts")) == 1
    row = await state_of(restarted, "prod")
    assert row is not None and row.state == "unhealthy" and row.failing == ["web"]

    TARGET_STATUS["web"] = 200
    clock.advance(minutes=5)
    await restarted.run_job("health.monitor.prod")
    alerts = restarted.messages("#alerts")
    assert len(alerts) == 2
    assert "✅ *prod* recovered: all 2 checks pass (was unhealthy for 15m)" in alerts[1].all_text()
    await restarted.run_job("health.monitor.prod")
    assert len(restarted.messages("#alerts")) == 2


async def test_unhealthy_at_first_sight_is_posted(make_bot: Any, target: str) -> None:
    TARGET_STATUS["api"] = 500
    bot = await make_bot(config=config(target))
    await bot.run_job("health.monitor.prod")
    (alert,) = bot.messages("#alerts")
    assert "❌ *prod* is unhealthy: api" in alert.all_text()


async def test_a_change_that_could_not_be_posted_is_posted_on_the_next_run(make_bot: Any, target: str) -> None:
    bot = await make_bot(config=config(target))
    await bot.run_job("health.monitor.prod")
    TARGET_STATUS["api"] = 500
    bot.slack.fail("chat.postMessage", status=200, error="channel_not_found")
    await bot.run_job("health.monitor.prod")
    assert bot.messages("#alerts") == []
    assert (await state_of(bot, "prod")).state == "healthy"  # type: ignore[union-attr]
    await bot.run_job("health.monitor.prod")
    (alert,) = bot.messages("#alerts")
    assert "is unhealthy" in alert.all_text()


# -- smoke suites -------------------------------------------------------------------------------
async def test_smoke_checks_post_failures_only(make_bot: Any, target: str) -> None:
    bot = await make_bot(config=config(target, smoke=[
        {"name": "daily", "schedule": "0 6 * * *", "checks": ["web"]}]))
    job = bot.deps.scheduler.jobs["health.smoke.prod.daily"]
    assert job.cron == "0 6 * * *"
    await bot.run_job("health.smoke.prod.daily")
    assert bot.messages("#alerts") == []
    TARGET_STATUS["web"] = 500
    TARGET_STATUS["api"] = 500  # not in the suite
    await bot.run_job("health.smoke.prod.daily")
    (alert,) = bot.messages("#alerts")
    text = alert.all_text()
    assert "❌ Smoke suite *daily* on *prod* failed: 1 of 1 checks failed" in text
    assert "*web*" in text and "*api*" not in text


async def test_smoke_success_summary_when_asked(make_bot: Any, target: str) -> None:
    bot = await make_bot(config=config(target, smoke=[
        {"name": "daily", "schedule": "0 6 * * *", "report_success": True}]))
    await bot.run_job("health.smoke.prod.daily")
    (summary,) = bot.messages("#alerts")
    assert "✅ Smoke suite *daily* on *prod* passed: 2 checks passed" in summary.all_text()


async def test_smoke_command_failure_shows_the_end_of_its_output(make_bot: Any, target: str) -> None:
    script = "import sys; print('x' * 20000); print('FINAL-LINE <oops>'); sys.exit(3)"
    bot = await make_bot(config=config(target, smoke=[
        {"name": "e2e", "schedule": "30 5 * * 1-5", "command": [sys.executable, "-c", script]}]))
    await bot.run_job("health.smoke.prod.e2e")
    (alert,) = bot.messages("#alerts")
    text = alert.all_text()
    assert "failed: exit code 3" in text
    assert "FINAL-LINE &lt;oops&gt;" in text
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in alert.blocks)


async def test_smoke_command_timeout_and_success(make_bot: Any, target: str) -> None:
    bot = await make_bot(config=config(target, smoke=[
        {"name": "slow", "schedule": "0 6 * * *", "timeout": "300ms",
         "command": [sys.executable, "-c", "import time; time.sleep(30)"]},
        {"name": "fine", "schedule": "0 6 * * *", "report_success": True,
         "command": [sys.executable, "-c", "print('all good')"]},
        {"name": "missing", "schedule": "0 6 * * *", "command": ["/nonexistent/opsbot-smoke"]},
    ]))
    await bot.run_job("health.smoke.prod.slow")
    await bot.run_job("health.smoke.prod.fine")
    await bot.run_job("health.smoke.prod.missing")
    slow, fine, missing = (m.all_text() for m in bot.messages("#alerts"))
    assert "*slow* on *prod* failed: timeout after 0.3 s" in slow
    assert "*fine* on *prod* passed: exit code 0" in fine
    assert "failed: command not found: /nonexistent/opsbot-smoke" in missing
