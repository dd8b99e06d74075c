"""POST /webhooks/pagerduty: PagerDuty's signed v3 webhooks, sent by the PagerDuty stand-in to a running
opsbot: an acknowledgement or resolution in PagerDuty is reflected on the timeline and in Slack."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.config import Config
from bot.emulator.harness import BotHarness
from bot.emulator.mail import MailServer
from bot.emulator.pagerduty import PagerDutyServer
from bot.models import IncidentEvent, WebhookDelivery
from tests.conftest import load_test_config
from tests.test_paging_incidents import WEBHOOK_SECRET, declare, mail, paging_config, pd, timeline

__all__ = ["mail", "pd"]  # fixtures


@pytest.fixture
def config(pd: PagerDutyServer, mail: MailServer) -> Config:
    return paging_config(pd, mail)


def hook(bot: BotHarness) -> str:
    return f"{bot.url}/webhooks/pagerduty"


async def test_an_acknowledgement_in_pagerduty_acknowledges_the_incident(bot: BotHarness,
                                                                        pd: PagerDutyServer) -> None:
    incident = await declare(bot)
    response = await pd.send_webhook(hook(bot), WEBHOOK_SECRET, "incident.acknowledged", "opsbot-incident-1",
                                      "Alice Example")
    assert response.status_code == 202
    await bot.settle()
    assert await timeline(bot, incident, "acknowledged") == ["Acknowledged"]
    async with bot.deps.db.session() as session:
        actor = await session.scalar(select(IncidentEvent.actor).where(IncidentEvent.kind == "acknowledged"))
    assert actor == "PagerDuty (Alice Example)"
    assert any(m.text == "✋ PagerDuty (Alice Example) acknowledged INC-1."
               for m in bot.messages(incident.channel_id or ""))
    assert [e.action for e in pd.state.events] == ["trigger"]  # not sent back to PagerDuty


async def test_a_resolution_in_pagerduty_resolves_it_and_a_replayed_delivery_does_nothing(
        bot: BotHarness, pd: PagerDutyServer) -> None:
    incident = await declare(bot)
    for _ in range(2):
        response = await pd.send_webhook(hook(bot), WEBHOOK_SECRET, "incident.resolved", "opsbot-incident-1",
                                          "Bob Baker", webhook_id="delivery-1")
        assert response.status_code == 202
        await bot.settle()
    assert response.json() == {"status": "duplicate"}
    [resolved] = await timeline(bot, incident, "resolved")
    assert resolved.startswith("Resolved in PagerDuty by Bob Baker")
    async with bot.deps.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


async def test_a_wrong_or_missing_signature_is_refused(bot: BotHarness, pd: PagerDutyServer) -> None:
    incident = await declare(bot)
    wrong = await pd.send_webhook(hook(bot), "another-secret", "incident.acknowledged", "opsbot-incident-1")
    forged = await pd.send_webhook(hook(bot), WEBHOOK_SECRET, "incident.acknowledged", "opsbot-incident-1",
                                   signature="")
    assert (wrong.status_code, forged.status_code) == (401, 401)
    await bot.settle()
    assert await timeline(bot, incident, "acknowledged") == []


async def test_without_a_webhook_secret_every_delivery_is_refused(make_bot: Any, pd: PagerDutyServer) -> None:
    bot = await make_bot(config=load_test_config({"paging": {"pagerduty": {
        "events_url": "${PD_URL}", "services": {"checkout": {"routing_key": "${PD_KEY}"}}}}}))
    response = await pd.send_webhook(hook(bot), WEBHOOK_SECRET, "incident.acknowledged", "opsbot-incident-1")
    assert response.status_code == 401


async def test_unknown_keys_and_other_events_are_accepted_and_ignored(bot: BotHarness, pd: PagerDutyServer) -> None:
    incident = await declare(bot)
    other = await pd.send_webhook(hook(bot), WEBHOOK_SECRET, "incident.acknowledged", "someone-elses-key")
    triggered = await pd.send_webhook(hook(bot), WEBHOOK_SECRET, "incident.triggered", "opsbot-incident-1")
    assert (other.status_code, triggered.status_code) == (202, 202)
    assert other.json() == {"status": "ignored"}
    await bot.settle()
    assert await timeline(bot, incident, "acknowledged") == []


async def test_a_body_that_is_not_a_webhook_is_a_400_and_a_huge_one_a_413(bot: BotHarness) -> None:
    from bot.emulator.pagerduty import sign

    async with httpx.AsyncClient() as http:
        body = b'{"hello": 1}'
        bad = await http.post(hook(bot), content=body, headers={"X-PagerDuty-Signature": sign(WEBHOOK_SECRET, body)})
        huge = await http.post(hook(bot), content=b"x" * (300 * 1024))
    assert (bad.status_code, huge.status_code) == (400, 413)
