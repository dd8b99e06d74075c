"""POST /webhooks/alertmanager: Alertmanager's webhook (version 4) feeding the same messages and state."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select

from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.models import AlertState
from commands.alerts import HOUSEKEEPING_JOB
from tests.conftest import load_test_config

TOKEN = "am-secret"


def group(status: str = "firing", *alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4", "groupKey": '{}:{alertname="HighErrorRate"}', "truncatedAlerts": 0, "status": status,
        "receiver": "opsbot", "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093", "alerts": list(alerts),
    }


def alert(fingerprint: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status, "fingerprint": fingerprint,
        "labels": {"alertname": "HighErrorRate", "severity": "critical", "service": "checkout", **labels},
        "annotations": {"summary": "Error rate above 1%", "runbook_url": "https://runbooks.example.com/errors"},
        "startsAt": "2026-01-05T08:55:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-05T09:10:00Z",
        "generatorURL": "http://prometheus.local:9090/graph?g0.expr=errors",
    }


async def send(bot: BotHarness, payload: Any, token: str | None = TOKEN) -> Any:
    assert bot.http is not None
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = await bot.http.post("/webhooks/alertmanager", json=payload, headers=headers)
    await bot.settle()
    return response


async def am_bot(make_bot: Any, **overrides: Any) -> BotHarness:
    config = load_test_config({"alerts": {"escalate_to": ["@oncall"]}})
    return await make_bot(config=config, settings_overrides={"alertmanager_token": TOKEN, **overrides})


async def test_firing_group_posts_each_alert_once_even_when_resent(make_bot: Any) -> None:
    bot = await am_bot(make_bot)
    payload = group("firing", alert("a1b2c3", instance="web-1"), alert("d4e5f6", instance="web-2"))
    response = await send(bot, payload)
    assert response.status_code == 200 and response.json()["changed"] == 2
    messages = bot.messages("#alerts")
    assert len(messages) == 2
    text = messages[0].all_text()
    assert "CRITICAL · HighErrorRate" in text and "Error rate above 1%" in text and "`instance=web-1`" in text
    assert "https://runbooks.example.com/errors" in text and "alertmanager" in text
    assert "2026-01-05 08:55 UTC" in text
    calls = len(bot.slack.calls)
    for _ in range(3):  # Alertmanager re-sends the group every group_interval
        assert (await send(bot, copy.deepcopy(payload))).status_code == 200
    assert len(bot.slack.calls) == calls and len(bot.messages("#alerts")) == 2


async def test_resolved_alert_edits_and_replies_in_thread(make_bot: Any) -> None:
    bot = await am_bot(make_bot)
    await send(bot, group("firing", alert("a1b2c3"), alert("d4e5f6", instance="web-2")))
    await send(bot, group("firing", alert("a1b2c3", "resolved"), alert("d4e5f6", instance="web-2")))
    parents = [m for m in bot.messages("#alerts") if not m.thread_ts]
    replies = [m for m in bot.messages("#alerts") if m.thread_ts]
    resolved = next(m for m in parents if "RESOLVED" in m.all_text())
    assert len(parents) == 2 and [r.thread_ts for r in replies] == [resolved.ts]
    assert "Resolved" in replies[0].text
    # The resolved notification sent again changes nothing; a resolved alert never seen is ignored.
    calls = len(bot.slack.calls)
    await send(bot, group("resolved", alert("a1b2c3", "resolved"), alert("zzz999", "resolved")))
    assert len(bot.slack.calls) == calls
    async with bot.deps.db.session() as session:
        keys = {r.key: r.state for r in await session.scalars(select(AlertState))}
    assert keys == {"am:a1b2c3": "resolved", "am:d4e5f6": "firing"}


async def test_alertmanager_alerts_share_buttons_and_timers(make_bot: Any, clock: FakeClock) -> None:
    bot = await am_bot(make_bot)
    await send(bot, group("firing", alert("a1b2c3", severity="warning")))
    [message] = bot.messages("#alerts")
    assert "WARNING · HighErrorRate" in message.all_text()
    clock.advance(hours=4)
    await bot.run_job(HOUSEKEEPING_JOB)
    message = bot.messages("#alerts")[0]
    assert "CRITICAL" in message.all_text()
    ack = next(e for b in message.blocks if b["type"] == "actions" for e in b["elements"]
               if e["action_id"] == "alerts.ack")
    await bot.click("alerts.ack", ack["value"], message=message, user="U0CAROL01")
    assert "Acknowledged by <@U0CAROL01>" in bot.messages("#alerts")[0].all_text()
    # A re-sent group keeps the acknowledgement and the escalation.
    calls = len(bot.slack.calls)
    await send(bot, group("firing", alert("a1b2c3", severity="warning")))
    assert len(bot.slack.calls) == calls


async def test_token_is_required(make_bot: Any) -> None:
    bot = await am_bot(make_bot)
    assert (await send(bot, group("firing", alert("x")), token=None)).status_code == 401
    assert (await send(bot, group("firing", alert("x")), token="wrong")).status_code == 401
    assert (await send(bot, {"alerts": "nope"})).status_code == 400
    assert (await send(bot, [1, 2])).status_code == 400
    for broken in ({"labels": ["severity"]}, {"annotations": "down"}, {"status": 7}):
        assert (await send(bot, group("firing", {**alert("y"), **broken}))).status_code == 400
    assert bot.messages("#alerts") == []


async def test_webhook_is_disabled_without_a_token(make_bot: Any) -> None:
    bot = await make_bot(config=load_test_config())
    response = await send(bot, group("firing", alert("x")))
    assert response.status_code == 404 and bot.messages("#alerts") == []
