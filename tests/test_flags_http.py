"""/killswitch and /flag against a real local admin API (bearer token, JSON body template, state URL)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from commands.flags.ids import Action
from tests.conftest import closed_port
from tests.test_flags_support import ALICE, AdminApi, audits, flags_config, last_text, press

TOKEN = "admin-s3cret-token"


@pytest.fixture
async def api() -> AsyncIterator[tuple[AdminApi, str]]:
    admin = AdminApi(TOKEN)
    async with LocalServer(admin.app) as server:
        yield admin, server.url


def http_store(url: str, *, state: bool = True, **extra: Any) -> dict[str, Any]:
    store = {"provider": "http", "url": f"{url}/api/admin/feature-flags", "token": "${FLAGS_ADMIN_TOKEN}", **extra}
    if state:
        store["state_url"] = f"{url}/api/admin/feature-flags"
    return store


async def start(make_bot: Any, monkeypatch: pytest.MonkeyPatch, store: dict[str, Any],
                token: str = TOKEN, **flag: Any) -> BotHarness:
    monkeypatch.setenv("FLAGS_ADMIN_TOKEN", token)
    harness: BotHarness = await make_bot(config=flags_config({"checkout": {"environments": {"staging": store},
                                                                           **flag}}))
    return harness


async def test_killswitch_through_admin_api_with_read_back(make_bot: Any, monkeypatch: pytest.MonkeyPatch,
                                                           api: tuple[AdminApi, str]) -> None:
    admin, url = api
    bot = await start(make_bot, monkeypatch, http_store(url))
    await bot.command("/killswitch", "checkout on", user=ALICE)  # the flag's only environment
    assert "*Environment:* *staging* (http)" in last_text(bot)
    assert "kill switch: off → *ON*" in last_text(bot)
    assert admin.posts == []
    await press(bot, Action.CONFIRM)
    [post] = admin.posts
    assert post["method"] == "POST"
    assert post["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert post["json"] == {"name": "checkout", "enabled": True, "kill_switch": True}  # JSON types, not strings
    assert admin.flags["checkout"]["kill_switch"] is True
    assert "Verified by reading the flag back" in last_text(bot)
    assert "Kill switch engaged (feature off)" in bot.messages("#ops")[-1].all_text()
    entry = (await audits(bot))[-1]
    assert (entry.outcome, entry.before["kill_switch"], entry.after["kill_switch"]) == ("ok", False, True)


async def test_custom_body_template_and_method(make_bot: Any, monkeypatch: pytest.MonkeyPatch,
                                               api: tuple[AdminApi, str]) -> None:
    admin, url = api
    body = {"name": "{{ name }}", "rollout_percentage": "{{ rollout }}", "enabled": "{{ enabled }}",
            "audit": {"env": "{{ environment }}", "note": "rollout {{ rollout }}% for {{ name }}"}}
    bot = await start(make_bot, monkeypatch, http_store(url, method="PUT", body=body, key="checkout"))
    response = await bot.command("/killswitch", "checkout on", user=ALICE)
    assert "cannot set kill switch" in response.json()["text"]
    await bot.command("/flag", "checkout rollout 35", user=ALICE)
    await press(bot, Action.CONFIRM)
    [post] = admin.posts
    assert post["method"] == "PUT"
    assert post["json"] == {"name": "checkout", "rollout_percentage": 35, "enabled": True,
                            "audit": {"env": "staging", "note": "rollout 35% for checkout"}}
    assert "rollout 100%" in last_text(bot) and "rollout 35%" in last_text(bot)


async def test_without_state_url_unknown_fields_are_left_out(make_bot: Any, monkeypatch: pytest.MonkeyPatch,
                                                             api: tuple[AdminApi, str]) -> None:
    admin, url = api
    bot = await start(make_bot, monkeypatch, http_store(url, state=False))
    await bot.command("/killswitch", "checkout on", user=ALICE)
    assert "unknown (the store cannot be read)" in last_text(bot) and "kill switch: ? → *ON*" in last_text(bot)
    await press(bot, Action.CONFIRM)
    assert [p["json"] for p in admin.posts] == [{"name": "checkout", "kill_switch": True}]
    assert "no `state_url`" in last_text(bot)
    assert (await audits(bot))[-1].outcome == "ok"
    assert admin.flags["checkout"]["kill_switch"] is True


async def test_admin_api_500_on_change_is_audited_and_not_announced(make_bot: Any, monkeypatch: pytest.MonkeyPatch,
                                                                   api: tuple[AdminApi, str]) -> None:
    admin, url = api
    admin.fail_post = 500
    bot = await start(make_bot, monkeypatch, http_store(url))
    await bot.command("/killswitch", "checkout on", user=ALICE)
    await press(bot, Action.CONFIRM)
    text = last_text(bot)
    assert "POST answered HTTP 500 Internal Server Error" in text and TOKEN not in text
    entry = (await audits(bot))[-1]
    assert (entry.action, entry.outcome) == ("killswitch", "failed") and "HTTP 500" in (entry.detail or "")
    assert TOKEN not in str(entry.detail)
    assert bot.messages("#ops") == []
    assert admin.flags["checkout"]["kill_switch"] is False


async def test_wrong_token_is_a_clear_error_without_the_token(make_bot: Any, monkeypatch: pytest.MonkeyPatch,
                                                              api: tuple[AdminApi, str]) -> None:
    _, url = api
    bot = await start(make_bot, monkeypatch, http_store(url), token="wrong-token-value")
    await bot.command("/killswitch", "checkout on", user=ALICE)
    text = last_text(bot)
    assert "HTTP 401" in text and "wrong-token-value" not in text
    assert (await audits(bot))[-1].outcome == "failed"


async def test_missing_token_variable_names_the_variable(make_bot: Any, monkeypatch: pytest.MonkeyPatch,
                                                         api: tuple[AdminApi, str]) -> None:
    admin, url = api
    bot = await start(make_bot, monkeypatch, http_store(url))
    monkeypatch.delenv("FLAGS_ADMIN_TOKEN")
    await bot.command("/killswitch", "checkout on", user=ALICE)
    assert "FLAGS_ADMIN_TOKEN is not set" in last_text(bot)
    assert admin.requests == []


async def test_admin_api_down_is_a_clear_error(make_bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = await start(make_bot, monkeypatch, http_store(f"http://127.0.0.1:{closed_port()}"))
    await bot.command("/killswitch", "checkout on", user=ALICE)
    assert "(admin API): unreachable (ConnectError)" in last_text(bot)
    assert Action.CONFIRM not in str(bot.slack.responses[-1])
    entry = (await audits(bot))[-1]
    assert (entry.outcome, entry.target) == ("failed", "checkout/staging")


async def test_admin_api_down_at_confirm_without_state_url(make_bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = AdminApi(TOKEN)
    server = await LocalServer(admin.app).start()
    bot = await start(make_bot, monkeypatch, http_store(server.url, state=False))
    await bot.command("/killswitch", "checkout on", user=ALICE)
    await server.stop()
    await press(bot, Action.CONFIRM)
    assert "unreachable" in last_text(bot)
    assert (await audits(bot))[-1].outcome == "failed"
    assert bot.messages("#ops") == []


async def test_admin_api_timeout_is_a_clear_error(make_bot: Any, monkeypatch: pytest.MonkeyPatch,
                                                  api: tuple[AdminApi, str]) -> None:
    admin, url = api
    admin.hang_post = True
    bot = await start(make_bot, monkeypatch, http_store(url, timeout="300ms"))
    await bot.command("/killswitch", "checkout on", user=ALICE)
    try:
        await press(bot, Action.CONFIRM)
    finally:
        admin.release.set()
    assert "(admin API): no answer within 0.3s" in last_text(bot)
    assert (await audits(bot))[-1].outcome == "failed"
    assert admin.flags["checkout"]["kill_switch"] is False and bot.messages("#ops") == []


class BreaksAfterChange(AdminApi):
    """Applies the change, then fails every later GET: the change is made but cannot be read back."""

    async def change(self, request: Any) -> Any:
        response = await super().change(request)
        self.fail_get = 500
        return response


async def test_read_back_failure_after_the_change_is_not_reported_as_unchanged(
        make_bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = BreaksAfterChange(TOKEN)
    async with LocalServer(admin.app) as server:
        bot = await start(make_bot, monkeypatch, http_store(server.url))
        await bot.command("/killswitch", "checkout on", user=ALICE)
        await press(bot, Action.CONFIRM)
    assert admin.flags["checkout"]["kill_switch"] is True
    assert "Read-back does not show the requested state" in last_text(bot)
    assert "Kill switch engaged (feature off)" in bot.messages("#ops")[-1].all_text()
    entry = (await audits(bot))[-1]
    assert entry.outcome == "failed"
    assert "accepted the change but reading it back failed" in (entry.detail or "")
    assert entry.after["requested"] == {"kill_switch": True}


async def test_queued_proposals_share_a_read_that_started_after_they_were_asked(
        make_bot: Any, monkeypatch: pytest.MonkeyPatch, api: tuple[AdminApi, str]) -> None:
    """Five `/killswitch checkout on` asked a minute ago and still queued read the flag once; each gets its
    own confirmation. After a confirmed change, a new request reads again and shows the new state."""
    admin, url = api
    bot = await start(make_bot, monkeypatch, http_store(url))
    asked = time.time() - 60
    for _ in range(5):
        await bot.deps.queue.defer("flags.propose", {
            "user": ALICE, "channel": None, "response_url": bot.requests.response_url(), "action": "killswitch",
            "flag": "checkout", "environment": "staging", "change": {"kill_switch": True},
            "requested_at": asked})
    await bot.settle()
    reads = [r for r in admin.requests if r["method"] == "GET"]
    assert len(reads) == 1 and len(bot.slack.responses) == 5
    assert all("kill switch: off → *ON*" in text for text in bot.ephemeral_texts())
    await press(bot, Action.CONFIRM)
    assert admin.flags["checkout"]["kill_switch"] is True
    await bot.command("/killswitch", "checkout off", user=ALICE)
    assert "kill switch: ON → *off*" in last_text(bot)
