"""`opsbot doctor` (bot/doctor.py) against the Slack emulator, a real local target and opsbot's own database:
all good, a missing scope, a missing channel, an unknown handle, an unset variable, a database behind the head,
and it never writes to a target."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import cli, doctor
from bot.config import Config
from bot.db import Database, migration_heads
from bot.doctor import Finding, Mark
from bot.emulator.harness import BOT_TOKEN, SIGNING_SECRET, BotHarness, bot_settings
from bot.emulator.localserver import LocalServer
from bot.emulator.server import EmulatorServer
from bot.emulator.state import SCOPES
from tests.conftest import load_test_config

SEEN: list[str] = []


@pytest.fixture
async def target() -> AsyncIterator[LocalServer]:
    """A target app: a health endpoint and a flag store's state; records every request's method."""
    async def health(request: Request) -> Response:
        SEEN.append(f"{request.method} {request.url.path}")
        return JSONResponse({"status": "healthy"})

    SEEN.clear()
    app = Starlette(routes=[Route("/health", health, methods=["GET", "HEAD", "POST"]),
                            Route("/flags", health, methods=["GET", "POST"])])
    async with LocalServer(app) as server:
        yield server


def _config(target: LocalServer, **overrides: Any) -> Config:
    port = int(target.url.rsplit(":", 1)[1].rstrip("/"))
    return load_test_config({
        "environments": {"prod": {"default": True, "checks": [
            {"name": "api", "url": f"{target.url}/health", "headers": {"X-Token": "${DOCTOR_API_TOKEN}"}},
            {"name": "api-post", "url": f"{target.url}/health", "method": "POST"},
            {"name": "cache", "type": "tcp", "host": "127.0.0.1", "port": port},
        ]}, "staging": {}},
        "flags": {"checkout": {"environments": {"prod": {
            "provider": "http", "url": f"{target.url}/flags", "state_url": f"{target.url}/flags"}}}},
        "paging": {"webhooks": {"ops": {"url": f"{target.url}/hook", "secret": "${DOCTOR_API_TOKEN}"}}},
        **overrides,
    })


async def _run(emulator: EmulatorServer, database_url: str, config: Config, *, url: str | None = None,
               env: dict[str, str] | None = None) -> list[Finding]:
    settings = bot_settings(database_url, emulator)
    return await doctor.run(settings=settings, config=config, config_source="tests (from the test)",
                            env={"DOCTOR_API_TOKEN": "tok-doctor-5e3a"} if env is None else env, url=url)


def _lines(findings: list[Finding], mark: Mark) -> list[str]:
    return [f.line() for f in findings if f.mark is mark]


async def test_all_good_is_all_green_and_exits_0(bot: BotHarness, target: LocalServer, database_url: str) -> None:
    findings = await _run(bot.emulator, database_url, _config(target), url=bot.url)
    text_ = doctor.render(findings)
    assert _lines(findings, Mark.FAIL) == [], text_
    assert doctor.exit_code(findings) == 0
    granted = len(doctor.manifest_scopes())
    assert set(SCOPES) == set(doctor.manifest_scopes())  # the emulated token has what the manifest asks for
    assert "✅ auth.test: bot opsbot" in text_ and f"✅ token scopes: all {granted} of manifest.yml granted" in text_
    assert "✅ channel #alerts (channels.alerts): exists, the bot is a member" in text_
    assert "✅ @handles resolve: 3 of 3" in text_  # @vp-eng, @eng-leads (twice) and @oncall
    assert "reachable, at the migration head" in text_
    assert "✅ prod: api: answers 200" in text_ and "accepts connections" in text_
    assert "✅ flag checkout in prod (http store) state_url: answers 200" in text_
    assert "✅ paging.webhooks.ops.url: 127.0.0.1:" in text_  # a TCP connect: a POST would page someone
    assert f"{bot.url}/slack/events: answers Slack's ssl_check" in text_  # http://: a warning, not a failure
    assert "tok-doctor-5e3a" not in text_ and BOT_TOKEN not in text_
    # Read-only: the health URL got a GET, the POST check and the flag store's write URL were never called.
    assert sorted(SEEN) == ["GET /flags", "GET /health"]


async def test_a_missing_scope_is_named_with_the_fix(emulator: EmulatorServer, target: LocalServer,
                                                     database_url: str) -> None:
    emulator.state.scopes = [s for s in emulator.state.scopes if s not in ("usergroups:write", "pins:write")]
    findings = await _run(emulator, database_url, _config(target))
    assert ("❌ token scopes: missing pins:write, usergroups:write — add them under OAuth & Permissions → Bot "
            "Token Scopes") in doctor.render(findings)
    assert doctor.exit_code(findings) == 1


async def test_a_missing_channel_and_a_channel_without_the_bot(emulator: EmulatorServer, target: LocalServer,
                                                               database_url: str) -> None:
    emulator.state.add_channel("ops-public").members.clear()
    config = _config(target, channels={"incidents": "#incidents", "alerts": "#alerts-prod", "ops": "#ops-public"})
    findings = await _run(emulator, database_url, config)
    fails, warns = _lines(findings, Mark.FAIL), _lines(findings, Mark.WARN)
    assert ("❌ channel #alerts-prod (channels.alerts) not found — create #alerts-prod (or fix channels.alerts), "
            "then /invite @opsbot there") in fails
    assert "⚠️ channel #ops-public (channels.ops): the bot is not a member — /invite @opsbot in #ops-public " \
        "(it can post there, but not read its history)" in warns
    assert doctor.exit_code(findings) == 1


async def test_an_unknown_handle_fails(emulator: EmulatorServer, target: LocalServer, database_url: str) -> None:
    emulator.state.usergroups = {k: g for k, g in emulator.state.usergroups.items() if g["handle"] != "vp-eng"}
    findings = await _run(emulator, database_url, _config(target))
    assert any(line.startswith("❌ @vp-eng (severities[0].escalate_to[0]) is no user or user group here")
               for line in _lines(findings, Mark.FAIL)), doctor.render(findings)


async def test_an_unset_variable_fails_and_its_target_is_not_called(emulator: EmulatorServer, target: LocalServer,
                                                                    database_url: str) -> None:
    findings = await _run(emulator, database_url, _config(target), env={})
    text_ = doctor.render(findings)
    assert "❌ environments.prod.checks[0].headers.X-Token: ${DOCTOR_API_TOKEN} is not set — export " \
        "DOCTOR_API_TOKEN=… where opsbot runs" in text_
    assert "⚠️ prod: api: not checked (a ${VAR} is not set)" in text_
    assert "GET /health" not in SEEN and doctor.exit_code(findings) == 1


async def test_a_database_behind_the_head_warns_and_an_unknown_revision_fails(
        emulator: EmulatorServer, target: LocalServer, database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        behind = await _run(emulator, database_url, _config(target))
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        ahead = await _run(emulator, database_url, _config(target))
    finally:  # on PostgreSQL the next test gets this database again (its tables truncated, not alembic_version)
        (head,) = migration_heads()
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
        await db.dispose()
    assert any(": schema revision is 0001, expected" in line and "run `opsbot db upgrade`" in line
               for line in _lines(behind, Mark.WARN)), doctor.render(behind)
    assert any("9999_from_the_future" in line and "newer than this opsbot" in line
               for line in _lines(ahead, Mark.FAIL)), doctor.render(ahead)


async def test_an_unreachable_target_and_slack_api_fail(target: LocalServer, database_url: str,
                                                        emulator: EmulatorServer) -> None:
    config = load_test_config({"environments": {"prod": {"default": True, "checks": [
        {"name": "gone", "type": "tcp", "host": "127.0.0.1", "port": 9}]}}})
    findings = await _run(emulator, database_url, config)
    assert any(line.startswith("❌ prod: gone: 127.0.0.1:9 unreachable") for line in _lines(findings, Mark.FAIL))


async def test_the_command_prints_the_lines_and_exits_1_on_a_failure(
        emulator: EmulatorServer, database_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    (tmp_path / "opsbot.yml").write_text("channels: {alerts: '#nowhere'}\nseverities: [{name: P1, response: 1h}]\n")
    monkeypatch.chdir(tmp_path)
    for name, value in {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                        "SLACK_API_URL": emulator.api_url, "DATABASE_URL": database_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPSBOT_CONFIG", raising=False)
    code = await _in_thread(lambda: cli.main(["doctor"]))
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"✅ config {tmp_path / 'opsbot.yml'} (from opsbot.yml in the working directory)" in out
    assert "❌ channel #nowhere (channels.alerts) not found" in out and "1 problem(s)" in out
    assert BOT_TOKEN not in out and SIGNING_SECRET not in out


async def _in_thread(function: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(function)
