"""Declaring incidents end to end: command, modal, shortcuts, dedup, channel failures and name collisions."""

from __future__ import annotations

from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.models import Incident


async def incidents_in(bot: BotHarness) -> list[Incident]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(Incident).order_by(Incident.id))).all())


async def test_open_declares_announces_and_sets_up_the_channel(bot: BotHarness) -> None:
    response = await bot.command("/incident", "open P1 Checkout is down", user="U0ALICE01")
    assert response.status_code == 200
    assert "Declaring a P1 incident: Checkout is down" in response.json()["text"]

    [incident] = await incidents_in(bot)
    assert (incident.ref, incident.severity, incident.status) == ("INC-1", "P1", "investigating")
    assert incident.reporter_id == incident.commander_id == "U0ALICE01"

    [announcement] = bot.messages("#incidents")
    text = announcement.all_text()
    assert "INC-1 · P1 · Checkout is down" in text
    assert f"<#{incident.channel_id}>" in text          # edited in place once the channel existed
    assert announcement.edits == 1
    actions = next(b for b in announcement.blocks if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == ["incident_ack", "incident_update_open",
                                                               "incident_resolve_open"]

    channel = bot.slack.channel("inc-1-checkout-is-down")
    assert channel.id == incident.channel_id and incident.channel_name == channel.name
    assert "U0ALICE01" in channel.members
    assert channel.topic.startswith("P1 · Investigating · Checkout is down")
    summary = next(m for m in channel.messages if m.ts == incident.summary_ts)
    assert summary.pinned and "Checkout is down" in summary.all_text()
    # P1 responds immediately: the escalation targets are paged at declaration.
    assert any("<!subteam^S0VPENG01>" in m.text for m in channel.messages)
    assert incident.escalated_at is not None
    assert any("Declared *INC-1*" in t for t in bot.ephemeral_texts())
