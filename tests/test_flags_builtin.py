"""Builtin flags in opsbot's own database (SQLite or PostgreSQL, per TEST_DATABASE_URL), GET /flags,
and the live /flags table across providers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.errors import ProviderError
from bot.models import BuiltinFlag
from bot.providers.flags_builtin import BuiltinFlags
from commands.flags.ids import Action
from tests.conftest import closed_port
from tests.test_flags_support import (
    ALICE,
    BOB,
    AdminApi,
    audits,
    flag_table,
    flags_config,
    last_text,
    press,
)

BUILTIN = {
    "recommendations": {"description": "Recommendations widget", "environments": ["prod", "staging"]},
    "banner": {"kill_switch": False, "environments": {"staging": None}},
}


@pytest.fixture
async def builtin_bot(make_bot: Any) -> BotHarness:
    harness: BotHarness = await make_bot(config=flags_config(BUILTIN))
    return harness


async def get(bot: BotHarness, path: str) -> Any:
    assert bot.http is not None
    return await bot.http.get(path)


async def test_new_builtin_flags_have_defaults_and_are_served(builtin_bot: BotHarness) -> None:
    response = await get(builtin_bot, "/flags")
    assert response.status_code == 200
    flags = {(f["name"], f["environment"]): f for f in response.json()["flags"]}
    assert set(flags) == {("recommendations", "prod"), ("recommendations", "staging"), ("banner", "staging")}
    assert flags[("recommendations", "prod")] == {
        "name": "recommendations", "environment": "prod", "enabled": True, "kill_switch": False,
        "rollout_percentage": 100, "active": True, "updated_at": None, "updated_by": None}


async def test_killswitch_on_builtin_flag_is_stored_and_served(builtin_bot: BotHarness) -> None:
    bot = builtin_bot
    await bot.command("/killswitch", "recommendations on prod", user=ALICE)
    assert "*Current state:* 🟢 active · enabled · kill switch off · rollout 100%" in last_text(bot)
    await press(bot, Action.CONFIRM)
    assert "Verified by reading the flag back" in last_text(bot)
    async with bot.deps.db.session() as session:
        rows = (await session.scalars(select(BuiltinFlag))).all()
    assert [(r.name, r.environment, r.enabled, r.kill_switch, r.updated_by) for r in rows] == [
        ("recommendations", "prod", True, True, ALICE)]

    one = (await get(bot, "/flags/recommendations?environment=prod")).json()
    assert (one["kill_switch"], one["active"], one["updated_by"]) == (True, False, ALICE)
    assert one["updated_at"].startswith(bot.clock().date().isoformat())
    both = (await get(bot, "/flags/recommendations")).json()
    assert both["environments"]["prod"]["active"] is False and both["environments"]["staging"]["active"] is True
    staging = (await get(bot, "/flags?environment=staging")).json()["flags"]
    assert {f["name"] for f in staging} == {"recommendations", "banner"}
    assert all(f["active"] for f in staging)
    entry = (await audits(bot))[-1]
    assert (entry.action, entry.target, entry.outcome) == ("killswitch", "recommendations/prod", "ok")
    assert entry.before["kill_switch"] is False and entry.after["kill_switch"] is True


async def test_flag_rollout_and_disable_on_builtin(builtin_bot: BotHarness) -> None:
    bot = builtin_bot
    await bot.command("/flag", "banner rollout 20", user=BOB)  # staging: everyone
    await press(bot, Action.CONFIRM, user=BOB)
    assert "✅ Rollout set to 20%: `banner` in *staging*" in last_text(bot)
    await bot.command("/flag", "banner disable", user=BOB)
    assert "enabled: yes → *no*" in last_text(bot) and "rollout 20%" in last_text(bot)
    await press(bot, Action.CONFIRM, user=BOB)
    banner = (await get(bot, "/flags/banner?environment=staging")).json()
    assert (banner["enabled"], banner["rollout_percentage"], banner["active"]) == (False, 20, False)
    assert [(a.action, a.outcome) for a in await audits(bot)] == [("flag", "ok"), ("flag", "ok")]


async def test_flags_endpoint_404s(builtin_bot: BotHarness) -> None:
    missing = await get(builtin_bot, "/flags/nope")
    assert missing.status_code == 404 and missing.json()["flags"] == ["banner", "recommendations"]
    wrong_env = await get(builtin_bot, "/flags/banner?environment=prod")
    assert wrong_env.status_code == 404 and wrong_env.json()["environments"] == ["staging"]
    assert (await get(builtin_bot, "/flags?environment=qa")).json() == {"flags": []}


async def test_flags_endpoint_is_read_only(builtin_bot: BotHarness) -> None:
    assert builtin_bot.http is not None
    response = await builtin_bot.http.post("/flags/banner", json={"enabled": False})
    assert response.status_code == 405


async def test_flags_table_reads_every_provider_and_shows_errors_per_row(make_bot: Any, target_pg_url: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    admin = AdminApi("tok")
    monkeypatch.setenv("FLAGS_TEST_DSN", target_pg_url)
    monkeypatch.setenv("FLAGS_ADMIN_TOKEN", "tok")
    async with flag_table(target_pg_url) as table, LocalServer(admin.app) as server:
        url = f"{server.url}/api/admin/feature-flags"
        config = flags_config({
            **BUILTIN,
            "checkout": {"environments": {
                "prod": {"provider": "postgres", "dsn": "${FLAGS_TEST_DSN}", "table": table},
                "staging": {"provider": "http", "url": url, "state_url": url, "token": "${FLAGS_ADMIN_TOKEN}"}}},
            "search": {"environments": {"prod": {"provider": "postgres", "table": table,
                                                 "dsn": f"postgresql://postgres@127.0.0.1:{closed_port()}/x"}}},
        })
        bot = await make_bot(config=config)
        response = await bot.command("/flags", "", user=BOB)
        assert response.json()["text"] == "Reading flags…"
        text = last_text(bot)
        lines = {line.split(" — ")[0]: line for line in text.splitlines() if " — " in line}
        assert "enabled · kill switch off · rollout 100%" in lines["`checkout` *prod* (postgres)"]
        assert "kill switch off" in lines["`checkout` *staging* (http)"]
        assert "rollout 100%" in lines["`recommendations` *staging* (builtin)"]
        search = lines["`search` *prod* (postgres)"]
        assert "⚠️" in search and "database unreachable" in search

        await bot.command("/flags", "STAGING", user=BOB)
        staging = last_text(bot)
        assert "Feature flags in staging" in staging
        assert "*prod*" not in staging and "`checkout` *staging*" in staging
        response = await bot.command("/flags", "qa", user=BOB)
        assert "Unknown environment `qa`. Valid environments: `prod`, `staging`." in response.json()["text"]


async def test_help_lists_flag_commands(builtin_bot: BotHarness) -> None:
    help_text = str((await builtin_bot.command("/opsbot", "help")).json()["blocks"])
    for usage in ("/killswitch <flag> on|off [env]", "/flag <name> rollout <0-100> [env]", "/flags [env]"):
        assert usage in help_text


async def test_saved_change_whose_read_back_fails_is_reported_as_made(builtin_bot: BotHarness,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bot = builtin_bot
    await bot.command("/killswitch", "recommendations on prod", user=ALICE)

    async def read_fails(self: BuiltinFlags) -> Any:
        raise ProviderError("`recommendations` in prod (builtin): opsbot's database failed (OperationalError).")

    monkeypatch.setattr(BuiltinFlags, "read", read_fails)
    await press(bot, Action.CONFIRM)
    async with bot.deps.db.session() as session:
        row = (await session.scalars(select(BuiltinFlag).where(BuiltinFlag.environment == "prod"))).one()
    assert row.kill_switch is True
    assert "Read-back does not show the requested state" in last_text(bot)
    assert "Kill switch engaged (feature off)" in bot.messages("#ops")[-1].all_text()
    entry = (await audits(bot))[-1]
    assert entry.outcome == "failed" and "saved but reading it back failed" in (entry.detail or "")


async def test_slack_timing_out_on_the_ops_post_still_reports_the_change(builtin_bot: BotHarness,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Web API timeout is a TimeoutError, not a SlackApiError: the flip happened and must be told as such."""
    async def hang(_request: Any) -> JSONResponse:
        await asyncio.sleep(1.5)
        return JSONResponse({"ok": True})

    bot = builtin_bot
    await bot.command("/killswitch", "recommendations on prod", user=ALICE)
    async with LocalServer(Starlette(routes=[Route("/api/{method}", hang, methods=["POST"])])) as slow:
        monkeypatch.setattr(bot.deps, "slack", AsyncWebClient(token="xoxb-test", base_url=f"{slow.url}/api/",
                                                              timeout=1))
        await press(bot, Action.CONFIRM)
    assert "Kill switch engaged (feature off)" in last_text(bot)
    assert "Posting to" in last_text(bot) and "failed (TimeoutError)" in last_text(bot)
    assert (await audits(bot))[-1].outcome == "ok"
