"""Acknowledge, silence and open-incident buttons on the alert message; `/silence` and `/alerts`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.models import AlertState, AuditEntry, Silence
from commands.alerts import eval_job_name
from tests.conftest import load_test_config

JOB = eval_job_name(timedelta(minutes=1))


class Metric:
    def __init__(self) -> None:
        self.value: float = 0
        self.app = Starlette(routes=[Route("/m", lambda _r: JSONResponse({"cpu": {"used": self.value}}))])


@pytest.fixture
async def metric() -> Any:
    m = Metric()
    async with LocalServer(m.app) as server:
        m.url = server.url  # type: ignore[attr-defined]
        yield m


def cpu_config(url: str, permissions: dict[str, Any] | None = None) -> Any:
    rule = {"name": "cpu_high", "source": "http_json", "query": f"{url}/m", "path": "cpu.used", "unit": "%",
            "warning": "> 80", "critical": "> 95", "for": "0s", "labels": {"service": "api", "env": "prod"},
            "summary": "CPU above 80%"}
    overrides: dict[str, Any] = {"alerts": {"rules": [rule]}}
    if permissions:
        overrides["permissions"] = permissions
    return load_test_config(overrides)


def button(message: Any, action_id: str) -> dict[str, Any]:
    for block in message.blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return element
    raise AssertionError(f"no {action_id} button")


async def firing(bot: BotHarness, metric: Metric, value: float = 90) -> Any:
    metric.value = value
    await bot.run_job(JOB)
    return [m for m in bot.messages("#alerts") if not m.thread_ts][-1]


async def test_acknowledge_shows_who_and_when_and_is_audited(make_bot: Any, metric: Metric) -> None:
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    await bot.click("alerts.ack", button(message, "alerts.ack")["value"], message=message, user="U0BOB0001")
    message = bot.messages("#alerts")[0]
    assert "✋ Acknowledged by <@U0BOB0001>" in message.all_text() and "2026-01-05 09:00 UTC" in message.all_text()
    with pytest.raises(AssertionError):
        button(message, "alerts.ack")
    async with bot.deps.db.session() as session:
        row = await session.scalar(select(AlertState).where(AlertState.key == "cpu_high|"))
        audit = await session.scalar(select(AuditEntry).where(AuditEntry.action == "alert.ack"))
    assert row is not None and row.acked_by == "U0BOB0001"
    assert audit is not None and audit.actor == "U0BOB0001" and audit.target == "cpu_high|"


async def test_silence_button_mutes_reminders_and_reposts(make_bot: Any, metric: Metric, clock: FakeClock) -> None:
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    await bot.click("alerts.silence_1h", button(message, "alerts.silence_1h")["value"], message=message)
    parent = bot.messages("#alerts")[0]
    assert "🔕 Silenced until" in parent.all_text()
    assert [m.text for m in bot.messages("#alerts") if m.thread_ts] == ["🔕 Silenced for 1h by <@U0ALICE01>."]
    # Resolved and firing again inside the silence: nothing is posted.
    metric.value = 10
    await bot.run_job(JOB)
    clock.advance(minutes=5)
    metric.value = 91
    await bot.run_job(JOB)
    assert len([m for m in bot.messages("#alerts") if not m.thread_ts]) == 1
    # The silence is on that alert (its series): once it ends, the firing alert is posted.
    clock.advance(hours=1)
    await bot.run_job(JOB)
    assert len([m for m in bot.messages("#alerts") if not m.thread_ts]) == 2


async def test_silence_command_mutes_a_rule_until_it_expires(make_bot: Any, metric: Metric,
                                                             clock: FakeClock) -> None:
    bot = await make_bot(config=cpu_config(metric.url))
    await bot.command("/silence", "cpu_high 2h", user="U0BOB0001")
    assert "`cpu_high` silenced for 2h" in bot.ephemeral_texts()[-1]
    metric.value = 97
    await bot.run_job(JOB)
    assert bot.messages("#alerts") == []
    await bot.command("/alerts")
    listing = bot.ephemeral_texts()[-1]
    assert "Firing" in listing and "cpu_high" in listing and "Silenced: `cpu_high`" in listing
    clock.advance(hours=2, minutes=1)
    await bot.run_job(JOB)
    [message] = bot.messages("#alerts")
    assert "CRITICAL · cpu_high" in message.all_text()
    async with bot.deps.db.session() as session:
        silence = await session.scalar(select(Silence))
    assert silence is not None and silence.created_by == "U0BOB0001" and silence.rule == "cpu_high"


@pytest.mark.parametrize(("text", "answer"), [
    ("", "Usage: `/silence <rule> <duration>`"),
    ("cpu_high soon", "not a duration"),
    ("cpu_high 90d", "at most 30d"),
    ("cpu_high 99999999999d", "at most 30d"),
    ("cpu_high 99999999999999999999", "at most 30d"),
    ("nope 1h", "Unknown alert rule `nope`. Valid alert rules: `cpu_high`"),
])
async def test_silence_command_explains_mistakes(make_bot: Any, metric: Metric, text: str, answer: str) -> None:
    bot = await make_bot(config=cpu_config(metric.url))
    response = await bot.command("/silence", text)
    shown = response.text + "\n".join(bot.ephemeral_texts())
    assert answer in shown


async def test_buttons_and_silence_need_permission(make_bot: Any, metric: Metric) -> None:
    permissions = {"groups": {"oncall": ["@oncall"]},
                   "rules": [{"actions": ["alert.ack", "alert.silence"], "allow": ["oncall"]}]}
    bot = await make_bot(config=cpu_config(metric.url, permissions))
    message = await firing(bot, metric)
    await bot.click("alerts.ack", button(message, "alerts.ack")["value"], message=message, user="U0BOB0001")
    await bot.click("alerts.silence_4h", button(message, "alerts.silence_4h")["value"], message=message,
                    user="U0BOB0001")
    await bot.command("/silence", "cpu_high 1h", user="U0BOB0001")
    refusals = [t for t in bot.ephemeral_texts() if "not allowed" in t]
    assert len(refusals) == 3
    assert sum("alert.ack `cpu_high`" in t for t in refusals) == 1
    assert sum("alert.silence `cpu_high`" in t for t in refusals) == 2
    assert "Acknowledged" not in bot.messages("#alerts")[0].all_text()
    async with bot.deps.db.session() as session:
        denied = list(await session.scalars(select(AuditEntry).where(AuditEntry.outcome == "denied")))
        assert await session.scalar(select(Silence)) is None
    assert len(denied) == 3
    # Alice is in @oncall.
    await bot.click("alerts.ack", button(message, "alerts.ack")["value"], message=message, user="U0ALICE01")
    assert "Acknowledged by <@U0ALICE01>" in bot.messages("#alerts")[0].all_text()


async def test_alerts_lists_nothing_when_all_is_well(make_bot: Any, metric: Metric) -> None:
    bot = await make_bot(config=cpu_config(metric.url))
    metric.value = 10
    await bot.run_job(JOB)
    await bot.command("/alerts")
    assert "All clear" in bot.ephemeral_texts()[-1]


async def test_open_incident_prefills_the_incident_modal(make_bot: Any, metric: Metric) -> None:
    pytest.importorskip("commands.incident", reason="the incident feature is not in this checkout")
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric, 97)
    await bot.click("alerts.open_incident", button(message, "alerts.open_incident")["value"], message=message)
    view = bot.last_view()
    elements = {b.get("block_id"): b.get("element", {}) for b in view["blocks"] if b["type"] == "input"}
    initial = {k: e.get("initial_value") or (e.get("initial_option") or {}).get("value") for k, e in elements.items()}
    assert "cpu_high: CPU above 80%" in initial.values()
    assert "P2" in initial.values()  # critical alerts suggest P2
    assert "api" in initial.values() and "prod" in initial.values()
    description = next(v for v in initial.values() if v and "Threshold" in v)
    assert "97%" in description and "critical > 95%" in description
    link = f"{message.channel}/p{message.ts.replace('.', '')}"
    assert link in str(view)


@pytest.mark.parametrize("value", ["", "0", "-1", "99999999999999999999", "x", "[1]", '{"t": 5}', "7"])
async def test_forged_button_values_are_ignored(make_bot: Any, metric: Metric, value: str) -> None:
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    before = message.all_text()
    for action_id in ("alerts.ack", "alerts.silence_1h", "alerts.silence_4h"):
        response = await bot.click(action_id, value, message=message)
        assert response.status_code == 200
    assert bot.messages("#alerts")[0].all_text() == before
    assert all("Something went wrong" not in t for t in bot.ephemeral_texts())


async def test_permission_uses_the_env_label_set_on_the_rule(make_bot: Any, metric: Metric) -> None:
    # cpu_high carries `env: prod` in its config labels (http_json series have no labels of their own).
    permissions = {"groups": {"oncall": ["@oncall"]},
                   "rules": [{"actions": ["alert.*"], "environments": ["staging"], "allow": ["everyone"]},
                             {"actions": ["alert.*"], "environments": ["prod"], "allow": ["oncall"]}]}
    bot = await make_bot(config=cpu_config(metric.url, permissions))
    message = await firing(bot, metric)
    await bot.click("alerts.ack", button(message, "alerts.ack")["value"], message=message, user="U0BOB0001")
    await bot.command("/silence", "cpu_high 1h", user="U0BOB0001")
    refusals = [t for t in bot.ephemeral_texts() if "not allowed" in t]
    assert len(refusals) == 2 and all(" in prod" in t for t in refusals)
    assert "Acknowledged" not in bot.messages("#alerts")[0].all_text()
    async with bot.deps.db.session() as session:
        assert await session.scalar(select(Silence)) is None


async def test_a_press_whose_job_fails_for_good_tells_the_presser(make_bot: Any, metric: Metric) -> None:
    """The Acknowledge press is acked and queued; its job finds the alert gone (pruned meanwhile), which no
    retry would change: the presser is told why in the channel, and nothing is audited."""
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    async with bot.deps.db.session() as session:
        await session.execute(delete(AlertState))
    response = await bot.click("alerts.ack", button(message, "alerts.ack")["value"], message=message,
                               user="U0BOB0001")
    assert response.status_code == 200
    told = [e["text"] for e in bot.slack.ephemerals if e["user"] == "U0BOB0001"]
    assert told == [":warning: That alert no longer exists."]
    async with bot.deps.db.session() as session:
        assert await session.scalar(select(AuditEntry).where(AuditEntry.action == "alert.ack")) is None


async def test_two_presses_at_once_on_one_alert_make_one_change(make_bot: Any, metric: Metric) -> None:
    """Two people press Silence 1h at the same moment: the jobs take turns on the alert's lock, so one silence
    is made, audited and announced once, and the second presser is told who was first."""
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    value = button(message, "alerts.silence_1h")["value"]
    responses = await asyncio.gather(*(bot.click("alerts.silence_1h", value, message=message, user=user,
                                                 settle=False) for user in ("U0ALICE01", "U0BOB0001")))
    assert [r.status_code for r in responses] == [200, 200]
    await bot.settle()
    async with bot.deps.db.session() as session:
        audits = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "alert.silence")))
    [audit] = audits
    winner = audit.actor
    loser = "U0BOB0001" if winner == "U0ALICE01" else "U0ALICE01"
    assert [m.text for m in bot.messages("#alerts") if m.thread_ts] == [f"🔕 Silenced for 1h by <@{winner}>."]
    told = [e["text"] for e in bot.slack.ephemerals if e["user"] == loser]
    assert len(told) == 1 and f"Already silenced by <@{winner}>" in told[0]
    assert not any(e["user"] == winner for e in bot.slack.ephemerals)
