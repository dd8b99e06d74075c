"""📌 on a message in an incident channel: on the timeline and in the postmortem; unpinned: gone from both;
a redelivered event does nothing twice. Through signed events to /slack/events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.emulator.state import Message
from bot.models import Incident, IncidentEvent


async def _incident_channel(bot: BotHarness) -> tuple[int, str]:
    await bot.command("/incident", "open P2 Checkout is down")
    async with bot.deps.db.session() as session:
        incident = (await session.scalars(select(Incident))).one()
    assert incident.channel_id
    return incident.id, incident.channel_id


def _say(bot: BotHarness, channel: str, text: str, user: str = "U0BOB0001") -> Message:
    message = Message(channel=channel, ts=bot.slack.new_ts(), text=text, user=user)
    bot.slack.channel(channel).messages.append(message)
    return message


async def _react(bot: BotHarness, kind: str, message: Message, *, user: str = "U0CAROL01",
                 reaction: str = "pushpin", event_id: str | None = None) -> None:
    event: dict[str, Any] = {"type": kind, "user": user, "reaction": reaction, "item_user": message.user,
                             "item": {"type": "message", "channel": message.channel, "ts": message.ts},
                             "event_ts": bot.slack.new_ts()}
    response = await bot.post(bot.requests.event(event, event_id=event_id))
    assert response.status_code == 200
    await bot.settle()


async def _pins(bot: BotHarness, incident_id: int) -> list[IncidentEvent]:
    async with bot.deps.db.session() as session:
        rows = await session.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == incident_id,
                                                                 IncidentEvent.kind == "pinned"))
        return list(rows.all())


async def _postmortem(bot: BotHarness, channel: str) -> str:
    before = len(bot.ephemeral_texts())
    await bot.command("/incident", "postmortem", channel=channel)
    return "\n".join(bot.ephemeral_texts()[before:])


async def test_pushpin_puts_the_message_on_the_timeline_and_in_the_postmortem(bot: BotHarness) -> None:
    incident_id, channel = await _incident_channel(bot)
    message = _say(bot, channel, "DB primary is at 100% CPU since 09:02")
    await _react(bot, "reaction_added", message)
    (pinned,) = await _pins(bot, incident_id)
    permalink = f"https://emulator.slack.local/archives/{channel}/p{message.ts.replace('.', '')}"
    assert pinned.actor == "U0CAROL01"
    assert pinned.data is not None and pinned.data["author"] == "U0BOB0001" and pinned.data["permalink"] == permalink
    assert "DB primary is at 100% CPU since 09:02" in pinned.text and "<@U0BOB0001>" in pinned.text
    postmortem = await _postmortem(bot, channel)
    section = postmortem.split("Pinned messages", 1)[1]
    assert "DB primary is at 100% CPU since 09:02" in section and permalink in section

    await _react(bot, "reaction_removed", message)
    assert await _pins(bot, incident_id) == []
    postmortem = await _postmortem(bot, channel)
    assert "DB primary" not in postmortem and "React with :pushpin:" in postmortem


async def test_a_redelivered_pin_event_is_handled_once(bot: BotHarness) -> None:
    incident_id, channel = await _incident_channel(bot)
    message = _say(bot, channel, "rolled back api to v41")
    await _react(bot, "reaction_added", message, event_id="EvPIN0001")
    reads = [m for m, _ in bot.slack.calls].count("conversations.replies")
    await _react(bot, "reaction_added", message, event_id="EvPIN0001")  # Slack's retry: same event_id
    assert len(await _pins(bot, incident_id)) == 1
    assert [m for m, _ in bot.slack.calls].count("conversations.replies") == reads  # nothing done again
    await _react(bot, "reaction_added", message, user="U0ALICE01")  # a second person: still one entry
    (pinned,) = await _pins(bot, incident_id)
    assert pinned.data is not None and pinned.data["by"] == ["U0CAROL01", "U0ALICE01"]
    await _react(bot, "reaction_removed", message, user="U0CAROL01")  # Alice still pins it
    assert len(await _pins(bot, incident_id)) == 1


async def test_other_reactions_and_channels_are_ignored(bot: BotHarness) -> None:
    incident_id, channel = await _incident_channel(bot)
    await _react(bot, "reaction_added", _say(bot, channel, "eyes on it"), reaction="eyes")
    await _react(bot, "reaction_added", _say(bot, bot.slack.channel("random").id, "lunch?"))
    assert await _pins(bot, incident_id) == []
    assert "conversations.replies" not in [m for m, _ in bot.slack.calls]
