"""Heartbeats (dead man's switches): `POST /heartbeats/<name>` over real HTTP to opsbot, lateness on the FakeClock,
the alert through the alert engine (one message, Acknowledge, Silence, resolved in its thread)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.errors import ConfigError
from bot.models import AlertState, Heartbeat
from commands.heartbeats import CHECK_JOB, parse_body
from tests.conftest import load_test_config

TOKEN = "hb-secret-7f3a"


def config(**extra: Any) -> Any:
    cleanup = {"name": "retention_cleanup", "every": "1d", "grace": "2h", "token": "${CLEANUP_HEARTBEAT_TOKEN}",
               "summary": "Nightly retention cleanup", "runbook": "https://runbooks.example.com/retention", **extra}
    return load_test_config({"heartbeats": [cleanup]})


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEANUP_HEARTBEAT_TOKEN", TOKEN)


def cards(bot: BotHarness) -> list[Any]:
    return [m for m in bot.messages("#alerts") if not m.thread_ts]


def threads(bot: BotHarness) -> list[str]:
    return [m.text for m in bot.messages("#alerts") if m.thread_ts]


async def alert(bot: BotHarness) -> Any:
    async with bot.app.deps.db.session() as session:
        return (await session.scalars(select(AlertState).where(AlertState.key == "heartbeat:retention_cleanup"))
                ).first()


async def beat(bot: BotHarness, path: str = "", **kwargs: Any) -> Any:
    kwargs.setdefault("headers", {"Authorization": f"Bearer {TOKEN}"})
    return await bot.http.post(f"/heartbeats/retention_cleanup{path}", **kwargs)


async def test_a_late_heartbeat_fires_and_the_next_ping_resolves_it(make_bot: Any, clock: FakeClock) -> None:
    bot = await make_bot(config=config())
    answer = await beat(bot)
    assert answer.status_code == 200 and answer.json() == {"heartbeat": "retention_cleanup", "status": "ok",
                                                           "alert": "ok"}
    clock.advance(hours=25, minutes=59)  # every 1d + grace 2h not yet over
    await bot.run_job(CHECK_JOB)
    assert cards(bot) == []
    clock.advance(minutes=1)
    await bot.run_job(CHECK_JOB)
    [card] = cards(bot)
    text = card.all_text()
    assert "CRITICAL · retention_cleanup" in text and "heartbeat `retention_cleanup` is late" in text
    assert "last ping 2026-01-05 09:00 UTC" in text and "expected every 1d + 2h grace" in text
    assert "Runbook" in text and "Acknowledge" in text
    await bot.run_job(CHECK_JOB)  # still late: the same message, no second post
    assert len(cards(bot)) == 1 and threads(bot) == []
    answer = await beat(bot, params={"token": TOKEN}, headers={})  # ?token= works too
    assert answer.json()["alert"] == "resolved"
    assert any("Resolved" in t for t in threads(bot)) and "RESOLVED" in cards(bot)[0].all_text()
    async with bot.app.deps.db.session() as session:
        row = (await session.scalars(select(Heartbeat))).one()
    assert row.pings == 2 and row.last_status == "ok"


async def test_a_never_pinged_heartbeat_waits_from_when_opsbot_first_knew_it(make_bot: Any, clock: FakeClock) -> None:
    bot = await make_bot(config=config(every="1h", grace="10m"))
    await bot.run_job(CHECK_JOB)
    clock.advance(hours=1, minutes=9)
    await bot.run_job(CHECK_JOB)
    assert cards(bot) == []
    clock.advance(minutes=1)
    await bot.run_job(CHECK_JOB)
    assert "never pinged" in cards(bot)[0].all_text()


async def test_a_reported_failure_fires_at_once_with_its_message(make_bot: Any, clock: FakeClock) -> None:
    bot = await make_bot(config=config())
    answer = await beat(bot, json={"status": "fail", "message": f"DELETE timed out (token {TOKEN})"})
    assert answer.json()["alert"] == "firing"
    [card] = cards(bot)
    assert "reported a failure: DELETE timed out" in card.all_text() and TOKEN not in card.all_text()
    clock.advance(minutes=5)
    await beat(bot, "/fail", content=b"exit status 3")  # again, via /fail with a text body: the card is edited
    assert len(cards(bot)) == 1 and "exit status 3" in cards(bot)[0].all_text()
    await beat(bot, json={"status": "ok"})
    assert (await alert(bot)).state == "resolved"


async def test_the_alert_buttons_work_on_a_heartbeat(make_bot: Any, clock: FakeClock) -> None:
    bot = await make_bot(config=config())
    await beat(bot, "/fail")
    card = cards(bot)[0]
    row = await alert(bot)
    await bot.click("alerts.ack", str(row.id), message=card, user="U0ALICE01")
    assert (await alert(bot)).acked_by == "U0ALICE01"
    assert "Acknowledged by <@U0ALICE01>" in bot.messages("#alerts")[0].all_text()


async def test_refusals(make_bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = await make_bot(config=config())
    assert (await beat(bot, headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (await beat(bot, headers={})).status_code == 401
    assert (await bot.http.post("/heartbeats/nope", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 404
    assert (await beat(bot, json={"status": "maybe"})).status_code == 400
    assert (await beat(bot, content=b"x" * 20_000)).status_code == 413
    assert (await bot.http.get("/heartbeats/retention_cleanup")).status_code == 405
    monkeypatch.delenv("CLEANUP_HEARTBEAT_TOKEN")
    unset = await beat(bot)
    assert unset.status_code == 503 and "CLEANUP_HEARTBEAT_TOKEN is not set" in unset.json()["error"]
    assert cards(bot) == []


async def test_a_silenced_heartbeat_is_quiet_and_a_policy_escalates_it(make_bot: Any, clock: FakeClock) -> None:
    cfg = load_test_config({
        "heartbeats": [{"name": "retention_cleanup", "period": "1h", "grace": "0s",
                        "token": "${CLEANUP_HEARTBEAT_TOKEN}", "escalation_policy": "jobs", "channel": "#ops"}],
        "escalation_policies": {"jobs": {"levels": [{"notify": ["@oncall"]}]}}})
    bot = await make_bot(config=cfg)
    await bot.command("/silence", "retention_cleanup 2h")  # before it ever fired: the rule is configured
    await beat(bot, "/fail")
    assert [m for m in bot.messages("#ops") if not m.thread_ts] == []  # silenced: not posted
    await bot.run_job(CHECK_JOB)
    assert not any(t.startswith("📣") for t in (m.text for m in bot.messages("#ops")))
    clock.advance(hours=2, minutes=1)
    await bot.run_job(CHECK_JOB)  # silence over: posted in its channel, then escalated by its policy
    [card] = [m for m in bot.messages("#ops") if not m.thread_ts]
    assert "retention_cleanup" in card.all_text()
    [page] = [m.text for m in bot.messages("#ops") if m.thread_ts and m.text.startswith("📣")]
    assert "<!subteam^S0ONCALL1>" in page


def test_config_errors() -> None:
    cases = [({"every": "0s"}, "every: must be longer than 0s"),
             ({"escalation_policy": "nope"}, "heartbeats[0].escalation_policy: no policy named 'nope'"),
             ({"every": "1h", "period": "1h"}, "write `every` or `period`, not both"),
             ({"tokn": "x"}, "tokn")]
    for extra, says in cases:
        with pytest.raises(ConfigError) as info:
            config(**extra)
        assert any(says in p for p in info.value.problems), (says, info.value.problems)
    with pytest.raises(ConfigError) as clash:
        load_test_config({"heartbeats": [{"name": "r", "every": "1h", "token": "t"}], "alerts": {"rules": [
            {"name": "r", "source": "http_json", "query": "http://x/", "path": "v", "warning": "> 1"}]}})
    assert any("is also an alert rule's name" in p for p in clash.value.problems)


def test_bodies() -> None:
    assert parse_body(b"", failed=False) == ("ok", None)
    assert parse_body(b'{"status": "failed", "message": "boom"}', failed=False) == ("fail", "boom")
    assert parse_body(b'{"status": "ok"}', failed=True) == ("fail", None)
    assert parse_body(b"rows deleted: 1200", failed=False) == ("ok", "rows deleted: 1200")
    with pytest.raises(ValueError, match="unknown status"):
        parse_body(b'{"status": "meh"}', failed=False)
