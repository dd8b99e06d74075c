"""Messages that do not mislead (issue 21), through the real handlers: an unknown incident lists the open
ones, `/flags` does not say a read "changed nothing", `/silence` does not offer 'immediate', an escalation
handle Slack does not know is reported instead of posted as plain text, and `/incident update` leaves
the acknowledgement to `/incident ack`."""

from __future__ import annotations

from typing import Any

import pytest

from bot.emulator.harness import BotHarness
from tests.conftest import closed_port, load_test_config

ALICE = "U0ALICE01"



async def test_an_unknown_incident_lists_the_open_ones(bot: BotHarness) -> None:
    await bot.command("/incident", "show INC-9", user=ALICE)
    assert "Unknown incident `INC-9`. Open incidents: none." in bot.ephemeral_texts()[-1]
    for title in ("Checkout down", "Search slow", "Docs typo"):
        await bot.command("/incident", f"open P3 {title}", user=ALICE)
    await bot.command("/incident", "resolve INC-2 fixed", user=ALICE)
    await bot.command("/incident", "show INC-9", user=ALICE)
    text = bot.ephemeral_texts()[-1]
    assert "Open incidents: `INC-1`, `INC-3`." in text and "none configured" not in text


async def test_flags_rows_for_an_unreachable_store_do_not_say_nothing_was_changed(
        make_bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGS_TEST_DSN", f"postgresql://postgres@127.0.0.1:{closed_port()}/app")
    store = {"provider": "postgres", "dsn": "${FLAGS_TEST_DSN}", "table": "feature_flags", "timeout": "1s"}
    bot = await make_bot(config=load_test_config({"flags": {
        "checkout": {"description": "New checkout", "environments": {"prod": store}}}}))
    await bot.command("/flags", "", user=ALICE)
    text = str(bot.slack.responses[-1]) + " ".join(bot.ephemeral_texts())
    assert "database unreachable" in text and "nothing was changed" not in text


async def test_silence_does_not_offer_immediate(bot: BotHarness) -> None:
    text = (await bot.command("/silence", "api_p95_latency soonish", user=ALICE)).text  # answered in the ack
    assert "`soonish` is not a duration" in text and "`0` ends a silence" in text and "immediate" not in text


async def test_an_escalation_to_a_persons_handle_mentions_and_invites_them(make_bot: Any) -> None:
    """`@bob` names a person (users.list), not only a user group: mentioned, invited, not "not reached"."""
    config = load_test_config()
    severities = [s.model_copy(update={"escalate_to": ["@bob"]}) if s.name == "P1" else s for s in config.severities]
    bot = await make_bot(config=config.model_copy(update={"severities": severities}))
    await bot.command("/incident", "open P1 Checkout down", user=ALICE)
    posts = "\n".join(m.text for c in bot.slack.channels.values() for m in c.messages if "📣" in m.text)
    assert "<@U0BOB0001>" in posts and "Not reached" not in posts
    channel = bot.slack.find_channel("inc-1-checkout-down")
    assert channel is not None and "U0BOB0001" in channel.members


async def test_an_escalation_handle_slack_does_not_know_is_reported_not_posted(make_bot: Any) -> None:
    config = load_test_config()
    severities = [s.model_copy(update={"escalate_to": ["@no-such-team", "@vp-eng"]}) if s.name == "P1" else s
                  for s in config.severities]
    bot = await make_bot(config=config.model_copy(update={"severities": severities}))
    await bot.command("/incident", "open P1 Checkout down", user=ALICE)
    posts = "\n".join(m.text for c in bot.slack.channels.values() for m in c.messages if "📣" in m.text)
    assert "Not reached: @no-such-team: not found in Slack" in posts
    assert "📣 @no-such-team" not in posts and "<!subteam^S0VPENG01>" in posts


async def test_an_update_does_not_acknowledge(bot: BotHarness) -> None:
    await bot.command("/incident", "open P2 Checkout down", user=ALICE)
    await bot.command("/incident", "update INC-1 identified the bad deploy", user=ALICE)
    await bot.command("/incident", "ack INC-1", user=ALICE)
    texts = " ".join(bot.ephemeral_texts()) + " ".join(str(r) for r in bot.slack.responses)
    assert "already acknowledged" not in texts
