"""`/page <target> <message>`: an ephemeral confirmation, then one page (PagerDuty's stand-in, real SMTP,
Slack mentions), audited and rate limited; a target nobody can reach is told what works here."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.config import Config
from bot.emulator.harness import BotHarness
from bot.emulator.mail import MailServer
from bot.emulator.pagerduty import PagerDutyServer
from bot.models import AuditEntry, Page
from tests.test_paging_incidents import mail, paging_config, pd

__all__ = ["mail", "pd"]  # fixtures


@pytest.fixture
def config(pd: PagerDutyServer, mail: MailServer) -> Config:
    return paging_config(pd, mail)


def buttons(bot: BotHarness) -> dict[str, str]:
    last = bot.slack.responses[-1]
    return {e["action_id"]: e["value"] for b in last.get("blocks") or [] if b["type"] == "actions"
            for e in b["elements"]}


async def press(bot: BotHarness, action: str, user: str = "U0ALICE01") -> None:
    await bot.click(action, buttons(bot)[action], user=user, channel="general")


async def test_page_asks_first_then_pages_pagerduty_once(bot: BotHarness, pd: PagerDutyServer) -> None:
    response = await bot.command("/page", "pagerduty:checkout Checkout error rate is climbing")
    assert response.json()["text"] == "Checking pagerduty:checkout…"
    assert pd.state.events == []  # nothing before the confirmation
    assert "📟 Page *pagerduty:checkout* with:\n> Checkout error rate is climbing" in bot.ephemeral_texts()[-1]
    token = buttons(bot)["page.confirm"]
    await press(bot, "page.confirm")
    [event] = pd.state.events
    assert (event.action, event.dedup_key) == ("trigger", "opsbot-page-1")
    assert "Paged pagerduty:checkout: pagerduty:checkout (PagerDuty)" in bot.ephemeral_texts()[-1]
    # The same confirmation again pages nobody.
    await bot.click("page.confirm", token, user="U0ALICE01", channel="general")
    assert len(pd.state.events) == 1
    assert "already sent" in bot.ephemeral_texts()[-1]
    async with bot.deps.db.session() as session:
        [page] = (await session.scalars(select(Page))).all()
        audited = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "page"))).all()
    assert (page.subject, page.status, page.requested_by) == ("manual:1", "delivered", "U0ALICE01")
    assert [(a.actor, a.target) for a in audited] == [("U0ALICE01", "pagerduty:checkout")]


async def test_cancel_pages_nobody(bot: BotHarness, mail: MailServer) -> None:
    await bot.command("/page", "email:ops@example.com Disk almost full")
    await press(bot, "page.cancel")
    assert "Cancelled: email:ops@example.com was not paged." in bot.ephemeral_texts()[-1]
    assert mail.messages == []


async def test_only_the_requester_can_confirm(bot: BotHarness, mail: MailServer) -> None:
    await bot.command("/page", "email:ops@example.com Disk almost full")
    await press(bot, "page.confirm", user="U0BOB0001")
    assert "Only <@U0ALICE01>" in bot.ephemeral_texts()[-1] and mail.messages == []


async def test_paging_a_schedule_mentions_whoever_is_on_call(bot: BotHarness) -> None:
    await bot.command("/page", "oncall:primary Can you look at the queue?", channel="general")
    await press(bot, "page.confirm")
    [message] = [m.text for m in bot.messages("general") if m.text.startswith("📟")]
    assert message == "📟 <@U0ALICE01>: page from <@U0ALICE01>: Can you look at the queue?"


async def test_a_handle_is_looked_up_in_slack(bot: BotHarness) -> None:
    await bot.command("/page", "@bob Are you around?", channel="general")
    assert "Page *<@U0BOB0001>*" in bot.ephemeral_texts()[-1]
    await bot.command("/page", "@nobody-here Are you around?", channel="general")
    assert "Nobody in Slack is @nobody-here" in bot.ephemeral_texts()[-1]


async def test_an_unreachable_target_lists_what_works(bot: BotHarness) -> None:
    response = await bot.command("/page", "opsgenie:sre Wake up")
    text = response.json()["text"]
    assert "Opsgenie is not set up" in text
    assert "oncall:primary|secondary" in text and "pagerduty:checkout" in text and "email:<address>" in text
    response = await bot.command("/page", "oncall:nights Wake up")
    assert "no schedule 'nights'" in response.json()["text"]
    response = await bot.command("/page", "oncall:primary")
    assert "Usage: `/page <target> <message>`" in response.json()["text"]


async def test_page_is_rate_limited(make_bot: Any, config: Config) -> None:
    bot = await make_bot(config=config)
    for _ in range(12):
        await bot.command("/page", "email:ops@example.com ping")
    assert any("Slow down" in t for t in bot.ephemeral_texts())
