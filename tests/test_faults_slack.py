"""Slack's Web API misbehaving during the busiest flow (declaring an incident): 429s, 5xx, timeouts."""

from __future__ import annotations

from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.models import Incident
from tests.test_alerts_replicas import eventually


async def incidents_in_db(bot: BotHarness) -> list[Incident]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(Incident))).all())


async def test_rate_limited_announcement_is_retried_and_posted_once(bot: BotHarness) -> None:
    bot.slack.fail("chat.postMessage", status=429, retry_after=0, count=2)
    await bot.command("/incident", "open P2 Search is slow")
    announcements = [m for m in bot.messages("incidents") if "Search is slow" in m.all_text()]
    assert len(announcements) == 1
    assert len(await incidents_in_db(bot)) == 1


async def test_server_error_on_post_is_not_retried_blindly_and_state_stays_consistent(bot: BotHarness) -> None:
    bot.slack.fail("chat.postMessage", status=500, count=1)
    await bot.command("/incident", "open P2 Search is slow")
    [incident] = await incidents_in_db(bot)  # the incident exists whatever Slack did
    assert incident.title == "Search is slow"
    # The announcement failed once and was not blindly re-posted: at most one copy anywhere.
    assert sum("Search is slow" in m.all_text() for m in bot.messages("incidents")) <= 1


async def test_a_hanging_web_api_call_times_out_without_blocking_the_rest(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot: BotHarness = await make_bot(settings_overrides={"slack_timeout": 1})
    # setTopic would succeed, but only after 3 s, every time it is asked (however often a loaded machine makes
    # opsbot ask again: a set-up job retried after another call's 1 s timeout asks again).
    bot.slack.fail("conversations.setTopic", status=200, delay=3, count=100)
    response = await bot.command("/incident", "open P2 Payments timeout", settle=False)
    assert response.status_code == 200
    await bot.settle(timeout=30)
    [incident] = await incidents_in_db(bot)
    assert incident.channel_id is not None
    channel = bot.slack.channel(incident.channel_id)
    assert channel.topic == ""
    # opsbot hung up at its 1 s SLACK_TIMEOUT: the emulator found the client gone when its answer was ready.
    await eventually(lambda: "conversations.setTopic" in bot.slack.abandoned, "the emulator's late answer")
    assert "U0ALICE01" in channel.members  # the invite, pin and summary did not wait for it
    assert any(m.pinned for m in channel.messages)
    # Acks never waited for Slack: a command sent while the call hangs answers at once.
    assert (await bot.command("/opsbot", "help")).status_code == 200


async def test_a_timed_out_invite_is_asked_again_and_the_declarer_gets_in(make_bot) -> None:  # type: ignore[no-untyped-def]
    # A loaded host once took SLACK_TIMEOUT just to connect; the invite was lost and the declarer left out.
    bot: BotHarness = await make_bot(settings_overrides={"slack_timeout": 1})
    bot.slack.fail("conversations.invite", status=200, delay=2, count=1)
    await bot.command("/incident", "open P2 Payments timeout", settle=False)
    await bot.settle(timeout=30)
    [incident] = await incidents_in_db(bot)
    assert "U0ALICE01" in bot.slack.channel(incident.channel_id or "").members
    await eventually(lambda: "conversations.invite" in bot.slack.abandoned, "the emulator's late answer")


def test_only_calls_that_cannot_undo_anything_are_repeated_after_a_timeout() -> None:
    from bot.slack import IDEMPOTENT, REPEATABLE_AFTER_TIMEOUT

    assert {"conversations.invite", "pins.add", "conversations.history"} <= set(REPEATABLE_AFTER_TIMEOUT)
    # An edit that lands late could overwrite a newer one; a post or a channel could be made twice.
    edits = {"chat.update", "views.update", "conversations.setTopic", "conversations.setPurpose"}
    assert edits <= set(IDEMPOTENT) and not edits & set(REPEATABLE_AFTER_TIMEOUT)
    assert not {"chat.postMessage", "conversations.create"} & set(REPEATABLE_AFTER_TIMEOUT)
