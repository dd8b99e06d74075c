"""An alert rule's escalation policy: a firing, unacknowledged alert escalates through the same engine as
incidents (levels on the FakeClock, PagerDuty's stand-in), stopped by its Ack button; resolving resolves."""

from __future__ import annotations

from typing import Any

import pytest

from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.emulator.pagerduty import PagerDutyServer
from tests.conftest import load_test_config
from tests.test_alerts_timers import JOB as EVALUATE
from tests.test_alerts_timers import PoolEndpoint, pool, pool_config, threads
from tests.test_paging_incidents import pd

__all__ = ["pd", "pool"]  # fixtures
ESCALATE = "paging.escalate"
POLICY = {"levels": [{"notify": ["@oncall", "pagerduty:checkout"]},
                     {"notify": ["oncall:secondary"], "after": "10m"}]}


def config(url: str) -> Any:
    rule = {"name": "db_pool_usage", "source": "http_json", "query": f"{url}/internal/pool",
            "path": "pool.checked_out", "ratio_of": "pool.size", "unit": "%", "warning": "> 80",
            "critical": "> 95", "summary": "DB connections above 80% of the pool", "for": "0s",
            "headers": {"X-Token": "${POOL_TOKEN:-secret-token}"}, "escalation_policy": "db"}
    return load_test_config({
        "alerts": {"escalate_to": ["@oncall"], "rules": [rule]}, "escalation_policies": {"db": POLICY},
        "paging": {"pagerduty": {"events_url": "${PD_URL}", "services": {"checkout": {"routing_key": "${PD_KEY}"}}}}})


def escalations(bot: BotHarness) -> list[str]:
    return [t for t in threads(bot) if t.startswith("📣")]


def ack_value(bot: BotHarness) -> str:
    message = bot.messages("#alerts")[0]
    return str(next(e["value"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]
                    if e["action_id"] == "alerts.ack"))


async def test_a_firing_alert_escalates_by_its_policy_until_acknowledged(
        make_bot: Any, pool: PoolEndpoint, pd: PagerDutyServer, clock: FakeClock) -> None:
    bot = await make_bot(config=config(pool.url))
    pool.checked_out = 19  # 95%: warning
    await bot.run_job(EVALUATE)
    await bot.run_job(ESCALATE)
    [first] = escalations(bot)
    assert first.startswith("📣 <!subteam^S0ONCALL1>: `db_pool_usage` is firing (warning)")
    assert "pagerduty:checkout (PagerDuty)" in first
    [event] = pd.state.events
    assert event.action == "trigger" and event.dedup_key.startswith("opsbot-alert-db_pool_usage-")
    await bot.run_job(ESCALATE)
    assert len(escalations(bot)) == 1  # once
    clock.advance(minutes=10)
    await bot.run_job(ESCALATE)
    assert "<@U0BOB0001>" in escalations(bot)[1]  # secondary on call now
    message = bot.messages("#alerts")[0]
    await bot.click("alerts.ack", ack_value(bot), message=message, user="U0ALICE01")
    assert [e.action for e in pd.state.events] == ["trigger", "acknowledge"]


async def test_an_acknowledged_alert_does_not_escalate_and_resolving_resolves(
        make_bot: Any, pool: PoolEndpoint, pd: PagerDutyServer, clock: FakeClock) -> None:
    bot = await make_bot(config=config(pool.url))
    pool.checked_out = 19
    await bot.run_job(EVALUATE)
    await bot.click("alerts.ack", ack_value(bot), message=bot.messages("#alerts")[0], user="U0ALICE01")
    await bot.run_job(ESCALATE)
    assert escalations(bot) == [] and pd.state.events == []

    clock.advance(minutes=1)
    pool.checked_out = 1
    await bot.run_job(EVALUATE)  # resolved
    pool.checked_out = 19
    clock.advance(minutes=1)
    await bot.run_job(EVALUATE)  # fires again: unacknowledged, the policy starts over
    await bot.run_job(ESCALATE)
    assert len(escalations(bot)) == 1 and [e.action for e in pd.state.events] == ["trigger"]
    clock.advance(minutes=1)
    pool.checked_out = 1
    await bot.run_job(EVALUATE)
    assert [e.action for e in pd.state.events] == ["trigger", "resolve"]


async def test_rules_without_a_policy_keep_their_escalate_to(make_bot: Any, pool: PoolEndpoint,
                                                             clock: FakeClock) -> None:
    bot = await make_bot(config=pool_config(pool.url))
    pool.checked_out = 17
    await bot.run_job(EVALUATE)
    await bot.run_job(ESCALATE)
    assert escalations(bot) == []


async def test_an_acknowledgement_in_pagerduty_acknowledges_the_alert(
        make_bot: Any, pool: PoolEndpoint, pd: PagerDutyServer, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_WEBHOOK_SECRET", "alerts-webhook-secret")
    data = config(pool.url).model_dump(by_alias=True, mode="json", exclude_unset=True)
    data["paging"]["pagerduty"]["webhook_secret"] = "${PD_WEBHOOK_SECRET}"
    bot = await make_bot(config=load_test_config(data))
    pool.checked_out = 19
    await bot.run_job(EVALUATE)
    await bot.run_job(ESCALATE)
    [event] = pd.state.events
    response = await pd.send_webhook(f"{bot.url}/webhooks/pagerduty", "alerts-webhook-secret",
                                     "incident.acknowledged", event.dedup_key, "Alice Example")
    assert response.status_code == 202
    await bot.settle()
    assert "PagerDuty (Alice Example)" in bot.messages("#alerts")[0].all_text()
    clock.advance(minutes=10)
    await bot.run_job(ESCALATE)
    assert len(escalations(bot)) == 1  # acknowledged: level 2 never fires
    assert [e.action for e in pd.state.events] == ["trigger"]  # not sent back to PagerDuty
