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


async def test_message_metadata_is_kept_and_shown_with_include_all_metadata(
        client: AsyncWebClient, emulator: EmulatorServer) -> None:
    metadata = {"event_type": "opsbot_incident", "event_payload": {"incident_id": 7, "role": "announcement"}}
    posted = await client.chat_postMessage(channel="#incidents", text="x", metadata=metadata)
    await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="edited")  # keeps the metadata
    plain = await client.conversations_history(channel=posted["channel"])
    assert "metadata" not in plain["messages"][0]
    full = await client.conversations_history(channel=posted["channel"], include_all_metadata=True)
    assert full["messages"][0]["metadata"] == metadata and full["messages"][0]["text"] == "edited"
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="#incidents", text="x", metadata={"event_type": "no payload"})
    assert info.value.response["error"] == "invalid_metadata_format"


async def test_history_and_list_page_with_cursors(client: AsyncWebClient, emulator: EmulatorServer) -> None:
    for n in range(5):
        await client.chat_postMessage(channel="#ops", text=f"m{n}")
    channel = emulator.state.channel("ops").id
    seen, cursor = [], None
    while True:
        page = await client.conversations_history(channel=channel, limit=2, cursor=cursor)
        seen += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert seen == ["m4", "m3", "m2", "m1", "m0"]  # newest first

    created = (await client.conversations_create(name="inc-9-x", is_private=True))["channel"]
    emulator.state.add_channel("old-archived", is_archived=True)
    names, cursor = [], None
    while True:
        page = await client.conversations_list(types="public_channel", limit=3, cursor=cursor)
        names += [c["name"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert names == ["general", "incidents", "alerts", "ops", "random", "old-archived"]
    private = (await client.conversations_list(types="private_channel", exclude_archived=True))["channels"]
    assert [(c["name"], c["creator"]) for c in private] == [("inc-9-x", created["creator"])]
    assert created["creator"] == (await client.auth_test())["user_id"]  # the bot made it; the others not
    with pytest.raises(SlackApiError) as info:
        await client.conversations_list(types="nonsense")
    assert info.value.response["error"] == "invalid_types"


async def test_a_call_slack_applied_can_answer_500_or_too_late(emulator: EmulatorServer) -> None:
    settings = Settings(_env_file=None, slack_api_url=emulator.api_url, slack_bot_token="xoxb-t",  # type: ignore[call-arg]
                        slack_timeout=1)
    slow = make_client(settings)
    emulator.state.fail("chat.postMessage", status=500, applied=True)
    with pytest.raises(SlackApiError):
        await slow.chat_postMessage(channel="#alerts", text="made, then 500")
    emulator.state.fail("conversations.create", status=200, delay=1.5, applied=True)
    with pytest.raises(TimeoutError):
        await slow.conversations_create(name="made-then-late")
    assert [m.text for m in emulator.state.messages("alerts")] == ["made, then 500"]
    assert emulator.state.find_channel("made-then-late") is not None


async def test_coming_back_before_retry_after_is_rate_limited_again(emulator: EmulatorServer) -> None:
    impatient = AsyncWebClient(base_url=emulator.api_url, token="xoxb-t")  # no retry handlers
    emulator.state.fail("chat.postMessage", status=429, retry_after=30)
    for _ in range(2):
        with pytest.raises(SlackApiError) as info:
            await impatient.chat_postMessage(channel="#alerts", text="x")
        assert info.value.response.status_code == 429
    assert emulator.state.early_retries == ["chat.postMessage"]
    assert emulator.state.messages("alerts") == []
