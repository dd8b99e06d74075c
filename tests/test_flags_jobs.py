"""Flag changes as named jobs: a transient failure of the flag store is retried, one that keeps failing is
told to the requester, a press run again resumes without changing anything twice, and two presses on one
confirmation at once make one change (the job lock)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from bot import jobs
from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.providers.flags_base import StoreUnreachable
from bot.providers.flags_http import HttpFlags
from commands.flags.ids import Action
from commands.flags.jobs import SlackFlagNotifier
from tests.test_flags_http import TOKEN, http_store, start
from tests.test_flags_support import ALICE, AdminApi, audits, buttons, last_text, press


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "BACKOFF_BASE", 0.01)


@pytest.fixture
async def api() -> Any:
    admin = AdminApi(TOKEN)
    async with LocalServer(admin.app) as server:
        yield admin, server.url


def kill_audits(entries: list[Any], outcome: str) -> list[Any]:
    return [e for e in entries if e.action == "killswitch" and e.outcome == outcome]


async def test_an_unreachable_admin_api_at_confirm_is_retried_and_the_change_made_once(
        make_bot: Any, monkeypatch: pytest.MonkeyPatch, api: tuple[AdminApi, str]) -> None:
    admin, url = api
    bot = await start(make_bot, monkeypatch, http_store(url))
    await bot.command("/killswitch", "checkout on", user=ALICE)
    real_set, calls = HttpFlags.set, []

    async def down_once(self: HttpFlags, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnreachable("`checkout` in staging (admin API): unreachable (ConnectError).")
        return await real_set(self, *args, **kwargs)

    monkeypatch.setattr(HttpFlags, "set", down_once)
    await press(bot, Action.CONFIRM)
    assert len(calls) == 2
    assert admin.flags["checkout"]["kill_switch"] is True and len(admin.posts) == 1
    entries = await audits(bot)
    assert (len(kill_audits(entries, "ok")), len(kill_audits(entries, "failed"))) == (1, 1)
    assert len([m for m in bot.messages("#ops") if m.thread_ts is None]) == 1
    assert "Kill switch engaged" in last_text(bot) and "unreachable" not in last_text(bot)


async def test_a_confirm_that_keeps_failing_is_retried_then_told_to_the_requester(
        make_bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = AdminApi(TOKEN)
    server = await LocalServer(admin.app).start()
    bot = await start(make_bot, monkeypatch, http_store(server.url))
    await bot.command("/killswitch", "checkout on", user=ALICE)
    token = buttons(bot)[Action.CONFIRM]
    await server.stop()  # the admin API is down for good
    await press(bot, Action.CONFIRM, value=token)
    spec = jobs.REGISTRY.get("flags.confirm")
    failed = kill_audits(await audits(bot), "failed")
    assert len(failed) == spec.retries + 1  # every attempt, then the requester is told
    assert "(admin API): unreachable (ConnectError)" in last_text(bot)
    assert bot.messages("#ops") == []
    # The confirmation is used up: another press is told, and tries nothing.
    await press(bot, Action.CONFIRM, value=token)
    assert "already confirmed by <@U0ALICE01>" in last_text(bot)
    assert len(kill_audits(await audits(bot), "failed")) == spec.retries + 1


async def test_a_confirm_run_again_after_its_worker_stopped_resumes_without_a_second_change(
        make_bot: Any, monkeypatch: pytest.MonkeyPatch, api: tuple[AdminApi, str]) -> None:
    """The worker dies after the change was recorded, before it was announced: the press's job runs again
    (here: its retry) and only announces."""
    admin, url = api
    bot = await start(make_bot, monkeypatch, http_store(url))
    await bot.command("/killswitch", "checkout on", user=ALICE)
    real_announce, calls = SlackFlagNotifier.announce, []

    async def dies_once(self: SlackFlagNotifier, outcome: Any) -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("the worker went away")
        return await real_announce(self, outcome)

    monkeypatch.setattr(SlackFlagNotifier, "announce", dies_once)
    await press(bot, Action.CONFIRM)
    assert len(calls) == 2
    assert len(admin.posts) == 1 and admin.flags["checkout"]["kill_switch"] is True
    assert len(kill_audits(await audits(bot), "ok")) == 1
    assert len([m for m in bot.messages("#ops") if m.thread_ts is None]) == 1
    assert "Kill switch engaged" in last_text(bot)


class SlowAdminApi(AdminApi):
    """Takes a while to apply a change: two confirm jobs that did not wait for each other would both POST."""

    async def change(self, request: Request) -> JSONResponse:
        await asyncio.sleep(0.3)
        return await super().change(request)


async def test_two_confirm_presses_at_once_make_one_change(make_bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = SlowAdminApi(TOKEN)
    async with LocalServer(admin.app) as server:
        bot: BotHarness = await start(make_bot, monkeypatch, http_store(server.url))
        await bot.command("/killswitch", "checkout on", user=ALICE)
        token = buttons(bot)[Action.CONFIRM]
        channel = bot.slack.channel("general").id
        presses = [bot.requests.block_action(Action.CONFIRM, token, user=ALICE, channel=channel) for _ in range(2)]
        triggers = {json.loads(parse_qs(body.decode())["payload"][0])["trigger_id"] for body, _ in presses}
        assert len(triggers) == 2  # two presses, not a redelivery of one
        responses = await asyncio.gather(*(bot.post(p) for p in presses))
        assert [r.status_code for r in responses] == [200, 200]
        await bot.settle()
    assert len(admin.posts) == 1
    assert len(kill_audits(await audits(bot), "ok")) == 1
    assert len([m for m in bot.messages("#ops") if m.thread_ts is None]) == 1
    said = bot.ephemeral_texts()
    assert len([t for t in said if "already confirmed by <@U0ALICE01>" in t]) == 1
    assert len([t for t in said if "Kill switch engaged" in t]) == 1
