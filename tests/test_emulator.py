"""The Slack Web API emulator answers like Slack, through the same slack_sdk client opsbot uses."""

from __future__ import annotations

import time

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.emulator.server import EmulatorServer
from bot.emulator.signing import SlackRequests, sign
from bot.settings import Settings
from bot.slack import make_client


@pytest.fixture
def client(emulator: EmulatorServer) -> AsyncWebClient:
    settings = Settings(_env_file=None, slack_api_url=emulator.api_url, slack_bot_token="xoxb-t")  # type: ignore[call-arg]
    return make_client(settings)


async def test_post_update_and_read_back(client: AsyncWebClient, emulator: EmulatorServer) -> None:
    auth = await client.auth_test()
    assert auth["user_id"].startswith("U") and auth["bot_id"].startswith("B")
    posted = await client.chat_postMessage(channel="#incidents", text="hello")
    assert posted["channel"].startswith("C") and "." in posted["ts"]
    await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="edited")
    [message] = emulator.state.messages("incidents")
    assert message.text == "edited" and message.edits == 1


async def test_channel_names_follow_slack_rules(client: AsyncWebClient) -> None:
    created = await client.conversations_create(name="inc-1-checkout-down")
    assert created["channel"]["name"] == "inc-1-checkout-down"
    for name, error in [("inc-1-checkout-down", "name_taken"), ("Bad Name", "invalid_name_specials"),
                        ("x" * 81, "invalid_name_maxlength")]:
        with pytest.raises(SlackApiError) as info:
            await client.conversations_create(name=name)
        assert info.value.response["error"] == error


async def test_block_kit_limits_are_enforced(client: AsyncWebClient) -> None:
    too_many = [{"type": "divider"}] * 51
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="#general", text="x", blocks=too_many)
    assert info.value.response["error"] == "invalid_blocks"
    long_header = [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="#general", text="x", blocks=long_header)


async def test_trigger_ids_are_single_use(client: AsyncWebClient) -> None:
    view = {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": []}
    await client.views_open(trigger_id="1.2.abc", view=view)
    with pytest.raises(SlackApiError) as info:
        await client.views_open(trigger_id="1.2.abc", view=view)
    assert info.value.response["error"] == "exchanged_trigger_id"


async def test_rate_limit_is_retried_after_retry_after(client: AsyncWebClient, emulator: EmulatorServer) -> None:
    emulator.state.fail("chat.postMessage", status=429, retry_after=0, count=2)
    response = await client.chat_postMessage(channel="#alerts", text="after two 429s")
    assert response["ok"] and len(emulator.state.messages("alerts")) == 1


async def test_server_errors_are_retried_only_for_idempotent_methods(
        client: AsyncWebClient, emulator: EmulatorServer) -> None:
    posted = await client.chat_postMessage(channel="#alerts", text="x")
    emulator.state.fail("chat.update", status=500, count=1)
    await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="y")  # retried, succeeds
    emulator.state.fail("chat.postMessage", status=500, count=1)
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="#alerts", text="not posted twice")
    assert [m.text for m in emulator.state.messages("alerts")] == ["y"]


async def test_missing_token_is_not_authed(emulator: EmulatorServer) -> None:
    bare = AsyncWebClient(base_url=emulator.api_url)
    with pytest.raises(SlackApiError) as info:
        await bare.auth_test()
    assert info.value.response["error"] == "not_authed"


async def test_usergroups(client: AsyncWebClient) -> None:
    groups = await client.usergroups_list()
    oncall = next(g for g in groups["usergroups"] if g["handle"] == "oncall")
    members = await client.usergroups_users_list(usergroup=oncall["id"])
    assert members["users"] == ["U0ALICE01"]


def test_signatures_verify_with_slack_sdk() -> None:
    body, headers = SlackRequests("s3cret").command("/incident", "open P1 Checkout down")
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    stale = sign("s3cret", body, int(time.time()) - 301)
    assert not verifier.is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])


async def test_direct_messages_land_in_one_conversation_per_user(client: AsyncWebClient,
                                                                 emulator: EmulatorServer) -> None:
    await client.chat_postMessage(channel="U0BOB0001", text="first")
    await client.chat_postMessage(channel="U0BOB0001", text="second")
    assert [m.text for m in emulator.state.messages("U0BOB0001")] == ["first", "second"]
