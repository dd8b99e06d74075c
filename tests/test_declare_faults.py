"""Declaring while Slack's Web API fails: what Slack made is found and recorded, never made twice, and the
declarer is told what finally failed. Driven through signed `/incident open …` requests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.emulator.state import BOT_USER, Message
from bot.models import Incident, IncidentEvent
from tests.test_alerts_replicas import eventually


async def the_incident(bot: BotHarness) -> Incident:
    async with bot.deps.db.session() as session:
        [incident] = (await session.scalars(select(Incident))).all()
    return incident


def by_role(bot: BotHarness, channel: str, role: str) -> list[Message]:
    """opsbot's messages in `channel` whose Slack metadata gives them `role` (announcement / summary)."""
    return [m for m in bot.messages(channel)
            if (m.metadata or {}).get("event_payload", {}).get("role") == role]


def incident_channels(bot: BotHarness) -> list[str]:
    return [c.name for c in bot.slack.channels.values() if c.name.startswith("inc-")]


async def slow_bot(make_bot: Any) -> BotHarness:
    """SLACK_TIMEOUT=1: a call the emulator answers after 2 s has timed out on opsbot's side."""
    bot: BotHarness = await make_bot(settings_overrides={"slack_timeout": 1})
    return bot


# -- the announcement ---------------------------------------------------------------------------------
async def test_announcement_500_is_retried_and_posted_once(bot: BotHarness) -> None:
    bot.slack.fail("chat.postMessage", status=500, count=1)
    await bot.command("/incident", "open P2 Search is slow")
    [announcement] = by_role(bot, "incidents", "announcement")
    incident = await the_incident(bot)
    assert incident.announcement_ts == announcement.ts
    assert f"<#{incident.channel_id}>" in announcement.all_text()  # and edited like any other
    [answer] = bot.ephemeral_texts()
    assert "Declared *INC-1*" in answer and ":warning:" not in answer


async def test_announcement_500_after_slack_posted_is_found_not_posted_again(bot: BotHarness) -> None:
    bot.slack.fail("chat.postMessage", status=500, count=1, applied=True)
    await bot.command("/incident", "open P2 Search is slow")
    [announcement] = by_role(bot, "incidents", "announcement")
    assert len(bot.messages("incidents")) == 1
    assert (await the_incident(bot)).announcement_ts == announcement.ts
    assert announcement.edits == 1  # the channel link went into the one that exists


async def test_repeated_429_waits_for_retry_after_and_posts_once(bot: BotHarness) -> None:
    # Four 429s outlast slack_sdk's own three retries; opsbot waits Retry-After once more and posts.
    bot.slack.fail("chat.postMessage", status=429, retry_after=1, count=4)
    response = await bot.command("/incident", "open P2 Search is slow", settle=False)
    assert response.status_code == 200
    await bot.settle(timeout=30)
    [announcement] = by_role(bot, "incidents", "announcement")
    assert (await the_incident(bot)).announcement_ts == announcement.ts
    assert bot.slack.early_retries == []  # never came back before Retry-After had passed
    [answer] = bot.ephemeral_texts()
    assert ":warning:" not in answer


async def test_announcement_channel_not_found_is_final_and_reported(bot: BotHarness) -> None:
    bot.slack.fail("chat.postMessage", status=200, error="channel_not_found", count=1)
    await bot.command("/incident", "open P2 Search is slow")
    assert bot.messages("incidents") == []
    posts = [m for m, _ in bot.slack.calls if m == "chat.postMessage"]
    assert len(posts) == 1  # the summary; the refused announcement was not asked again
    [answer] = bot.ephemeral_texts()
    assert "Declared *INC-1*" in answer
    assert "announcement in #incidents could not be posted (channel_not_found)" in answer
    incident = await the_incident(bot)
    assert incident.announcement_ts is None and incident.channel_id is not None
    async with bot.deps.db.session() as session:
        events = (await session.scalars(select(IncidentEvent).where(IncidentEvent.kind == "announcement"))).all()
    assert [e.text for e in events] == ["Announcement could not be posted (channel_not_found)"]


async def test_timed_out_posts_that_slack_made_are_recorded_and_edited_later(make_bot: Any) -> None:
    bot = await slow_bot(make_bot)
    # Both posts (the announcement, then the summary) are made, but their answers come after the timeout.
    bot.slack.fail("chat.postMessage", status=200, delay=2, applied=True, count=2)
    await bot.command("/incident", "open P2 Search is slow", settle=False)
    await bot.settle(timeout=30)
    incident = await the_incident(bot)
    [announcement] = by_role(bot, "incidents", "announcement")
    [summary] = by_role(bot, incident.channel_id or "", "summary")
    assert (incident.announcement_ts, incident.summary_ts) == (announcement.ts, summary.ts)
    assert summary.pinned
    # Slack's answers, when they finally left, found no one waiting.
    await eventually(lambda: len(bot.slack.abandoned) == 2, "the emulator's late answers")

    await bot.command("/incident", "update INC-1 identified Bad index on search", settle=False)
    await bot.settle(timeout=30)
    assert len(by_role(bot, "incidents", "announcement")) == 1  # edited, not posted again
    assert "Bad index on search" in announcement.all_text() and announcement.edits == 2
    assert "Bad index on search" in summary.all_text()


# -- the incident channel -------------------------------------------------------------------------------
async def test_timed_out_channel_creation_leaves_no_orphan(make_bot: Any) -> None:
    bot = await slow_bot(make_bot)
    bot.slack.fail("conversations.create", status=200, delay=2, applied=True)
    await bot.command("/incident", "open P2 Checkout is down", settle=False)
    await bot.settle(timeout=30)
    assert incident_channels(bot) == ["inc-1-checkout-is-down"]
    channel = bot.slack.channel("inc-1-checkout-is-down")
    incident = await the_incident(bot)
    assert (incident.channel_id, incident.channel_name) == (channel.id, channel.name)
    assert "U0ALICE01" in channel.members and any(m.pinned for m in channel.messages)
    [answer] = bot.ephemeral_texts()
    assert f"<#{channel.id}>" in answer
    await eventually(lambda: bot.slack.abandoned == ["conversations.create"], "the emulator's late answer")


async def test_channel_creation_500_after_slack_made_it_adopts_it(bot: BotHarness) -> None:
    bot.slack.fail("conversations.create", status=500, applied=True)
    await bot.command("/incident", "open P2 Checkout is down")
    assert incident_channels(bot) == ["inc-1-checkout-is-down"]
    assert (await the_incident(bot)).channel_id == bot.slack.channel("inc-1-checkout-is-down").id


async def test_channel_creation_500_before_slack_made_it_asks_again(bot: BotHarness) -> None:
    bot.slack.fail("conversations.create", status=500)
    await bot.command("/incident", "open P2 Checkout is down")
    assert incident_channels(bot) == ["inc-1-checkout-is-down"]
    assert (await the_incident(bot)).channel_id == bot.slack.channel("inc-1-checkout-is-down").id


async def test_an_archived_channel_the_bot_made_before_is_not_adopted(bot: BotHarness) -> None:
    old = bot.slack.add_channel("inc-1-checkout-is-down", creator=BOT_USER, is_archived=True)
    await bot.command("/incident", "open P2 Checkout is down")
    incident = await the_incident(bot)
    assert incident.channel_id != old.id and incident.channel_name == "inc-1-checkout-is-down-2"


def test_the_answer_names_what_finally_failed() -> None:
    from commands.incident import render

    incident = Incident(id=3, title="Search is slow", severity="P2", channel_error="restricted_action")
    text = render.declared(incident, announced_in="#incidents", announcement_error="HTTP 500",
                           summary_error=None, unsaved="database unreachable for 10 min")
    assert text == (
        "Declared *INC-3* (P2) (no channel: restricted_action)\n"
        ":warning: The announcement in #incidents could not be posted (HTTP 500); tell people there yourself.\n"
        ":warning: opsbot could not record INC-3's Slack channel and messages (database unreachable for 10 min): "
        "name it in commands (`/incident update INC-3 …`), and do not declare it again.")


async def test_a_failing_history_lookup_after_a_lost_post_looks_again_rather_than_posting_twice(
        bot: BotHarness) -> None:
    # Slack posted the announcement but answered 500; the lookup then fails too (500s beyond slack_sdk's own
    # two retries, then a 429): a transient failure says nothing about the post, so look again, don't post.
    bot.slack.fail("chat.postMessage", status=500, count=1, applied=True)
    bot.slack.fail("conversations.history", status=500, count=3)
    bot.slack.fail("conversations.history", status=429, retry_after=1, count=4)
    await bot.command("/incident", "open P2 Search is slow", settle=False)
    await bot.settle(timeout=30)
    [announcement] = by_role(bot, "incidents", "announcement")
    assert len(bot.messages("incidents")) == 1
    assert (await the_incident(bot)).announcement_ts == announcement.ts
