"""The emulator's HTTP layer (bot/emulator/server.py): form-encoded Web API calls as slack_sdk's sync WebClient
sends them, the token's scopes in `x-oauth-scopes`, and the read-only state page and JSON."""

from __future__ import annotations

import asyncio

import httpx
from slack_sdk import WebClient

from bot.emulator.harness import BOT_TOKEN
from bot.emulator.server import EmulatorServer


async def test_the_sync_web_client_creates_a_channel_and_posts_with_form_bodies(emulator: EmulatorServer) -> None:
    def calls() -> tuple[str, str]:
        client = WebClient(token=BOT_TOKEN, base_url=emulator.api_url)
        created = client.conversations_create(name="inc-7-sync-client")
        channel = created["channel"]["id"]
        posted = client.chat_postMessage(channel=channel, text="posted & encoded = fine")
        return channel, posted["ts"]

    channel, ts = await asyncio.to_thread(calls)
    assert emulator.state.channel("inc-7-sync-client").id == channel
    assert [m.text for m in emulator.state.messages(channel)] == ["posted & encoded = fine"]
    assert emulator.state.messages(channel)[0].ts == ts


async def test_a_form_body_is_parsed_like_slack_does(emulator: EmulatorServer) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(emulator.api_url + "chat.postMessage",
                                 data={"token": BOT_TOKEN, "channel": "#general", "text": "a+b %20 c"})
        bad = await http.post(emulator.api_url + "auth.test", content=b"token=\xff\xfe",
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200 and answer.json()["ok"] is True
    assert emulator.state.messages("general")[-1].text == "a+b %20 c"
    assert bad.status_code == 200 and bad.json() == {"ok": False, "error": "invalid_form_data"}


async def test_the_token_scopes_header_is_what_the_test_grants(emulator: EmulatorServer) -> None:
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {BOT_TOKEN}"}) as http:
        full = await http.post(emulator.api_url + "auth.test")
        emulator.state.scopes = ["commands", "chat:write"]
        narrow = await http.post(emulator.api_url + "auth.test")
    assert "usergroups:write" in full.headers["x-oauth-scopes"].split(",")
    assert narrow.headers["x-oauth-scopes"] == "commands,chat:write"


async def test_the_state_page_and_json_show_channels_and_messages(emulator: EmulatorServer) -> None:
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {BOT_TOKEN}"}) as http:
        await http.post(emulator.api_url + "chat.postMessage",
                        json={"channel": "#incidents", "text": "INC-1 <script>alert(1)</script> declared"})
        state = (await http.get(emulator.base_url + "/_state.json")).json()
        page = await http.get(emulator.base_url + "/")
    incidents = next(c for c in state["channels"] if c["name"] == "incidents")
    assert incidents["message_count"] == 1
    assert incidents["messages"][0]["text"] == "INC-1 <script>alert(1)</script> declared"
    assert {c["name"] for c in state["channels"]} >= {"general", "alerts", "ops"}
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "#incidents" in page.text and "INC-1 &lt;script&gt;alert(1)&lt;/script&gt; declared" in page.text
    assert "<script>" not in page.text
