"""A silenced alert is not escalated, auto-acknowledged or reminded behind the team's back (its thread is quiet
while it is silenced); once the silence ends, what is due happens and is said in the thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.models import AlertState
from commands.alerts import HOUSEKEEPING_JOB, eval_job_name
from tests.conftest import load_test_config

JOB = eval_job_name(timedelta(minutes=1))


def config(url: str, **defaults: str) -> Any:
    rule = {"name": "queue_depth", "source": "http_json", "query": f"{url}/m", "path": "depth", "for": "0s",
            "warning": "> 100", "critical": "> 1000"}
    return load_test_config({"alerts": {"escalate_to": ["U0CAROL01"], "rules": [rule], "defaults": {
        "escalate_after": "1h", "auto_ack_after": "30d", "repeat_every": "30d", **defaults}}})


def threads(bot: BotHarness) -> list[str]:
    return [m.text for m in bot.messages("#alerts") if m.thread_ts]


async def row(bot: BotHarness) -> Any:
    async with bot.app.deps.db.session() as session:
        return (await session.scalars(select(AlertState).where(~AlertState.key.startswith("rule:")))).one()


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/m", lambda _r: JSONResponse({"depth": 150}))])
    async with LocalServer(app) as server:
        yield server.url


async def firing(make_bot: Any, url: str, **defaults: str) -> tuple[BotHarness, Any]:
    bot = await make_bot(config=config(url, **defaults))
    await bot.run_job(JOB)
    return bot, bot.messages("#alerts")[0]


async def test_a_silenced_warning_is_not_escalated_until_the_silence_ends(make_bot: Any, url: str,
                                                                       clock: FakeClock) -> None:
    bot, message = await firing(make_bot, url)
    await bot.click("alerts.silence_4h", str((await row(bot)).id), message=message)
    clock.advance(hours=2)  # escalate_after (1h) passed while silenced
    await bot.run_job(HOUSEKEEPING_JOB)
    await bot.run_job(JOB)
    silenced = await row(bot)
    assert silenced.level == "warning" and silenced.escalated_at is None
    assert [t for t in threads(bot) if "raised" in t] == []
    clock.advance(hours=2, minutes=1)  # the silence is over: escalated now, and the thread says so
    await bot.run_job(HOUSEKEEPING_JOB)
    assert (await row(bot)).level == "critical"
    [escalation] = [t for t in threads(bot) if "raised to *critical*" in t]
    assert "<@U0CAROL01>" in escalation


async def test_a_rule_silence_holds_back_auto_acknowledgement(make_bot: Any, url: str, clock: FakeClock) -> None:
    bot, _message = await firing(make_bot, url, auto_ack_after="3h", escalate_after="30d")
    await bot.command("/silence", "queue_depth 6h", user="U0ALICE01")
    clock.advance(hours=4)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert (await row(bot)).acked_at is None
    assert not any("Auto-acknowledged" in t for t in threads(bot))
    clock.advance(hours=2, minutes=1)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert (await row(bot)).acked_by == "opsbot (auto)"
    assert any("Auto-acknowledged" in t for t in threads(bot))


async def test_reminders_wait_for_the_silence_to_end(make_bot: Any, url: str, clock: FakeClock) -> None:
    """A reminder due while silenced is neither sent nor counted as sent: it comes as soon as the silence ends."""
    bot, message = await firing(make_bot, url, repeat_every="40m", escalate_after="30d")
    await bot.click("alerts.silence_1h", str((await row(bot)).id), message=message)
    clock.advance(minutes=41)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert not any("Still firing" in t for t in threads(bot))
    clock.advance(minutes=20)
    await bot.run_job(HOUSEKEEPING_JOB)
    assert any("Still firing" in t for t in threads(bot))
