"""/killswitch and /flag against a real feature_flags table in PostgreSQL, end to end through signed requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.models import Incident, IncidentEvent, PendingAction
from commands.flags.ids import Action
from tests.conftest import closed_port
from tests.test_flags_support import (
    ALICE,
    BOB,
    CAROL,
    audits,
    buttons,
    flag_table,
    flags_config,
    last_text,
    press,
    table_rows,
)


@pytest.fixture
async def table(target_pg_url: str) -> AsyncIterator[str]:
    async with flag_table(target_pg_url) as name:
        yield name


def pg_flags(table: str, **store: Any) -> dict[str, Any]:
    pg = {"provider": "postgres", "dsn": "${FLAGS_TEST_DSN}", "table": table, **store}
    return {
        "checkout": {"description": "New checkout flow", "environments": {"prod": pg, "staging": pg}},
        "search": {"description": "Search v2", "kill_switch": False, "environments": {"prod": pg}},
    }


@pytest.fixture
async def pgbot(make_bot: Any, table: str, target_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> BotHarness:
    monkeypatch.setenv("FLAGS_TEST_DSN", target_pg_url)
    harness: BotHarness = await make_bot(config=flags_config(pg_flags(table)))
    return harness


async def test_killswitch_confirm_flips_verifies_audits_and_posts(pgbot: BotHarness, table: str,
                                                                  target_pg_url: str) -> None:
    response = await pgbot.command("/killswitch", "checkout on prod", user=ALICE)
    assert response.status_code == 200
    assert "Reading `checkout` in prod" in response.json()["text"]
    confirmation = pgbot.slack.responses[-1]
    text = last_text(pgbot)
    assert "Engage kill switch?" in text and "*Environment:* *prod* ⚠️ production" in text
    assert "kill switch off" in text and "kill switch: off → *ON*" in text
    # Nothing changes before the confirmation.
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)
    assert set(buttons(pgbot)) == {Action.CONFIRM, Action.CANCEL}
    assert confirmation["replace_original"] is True

    await press(pgbot, Action.CONFIRM)

    assert (await table_rows(target_pg_url, table))["checkout"] == (True, True, 100)
    assert (await table_rows(target_pg_url, table))["search"] == (False, False, 10)  # only that row
    done = last_text(pgbot)
    assert "✅ Kill switch engaged (feature off): `checkout` in *prod*" in done
    assert "Verified by reading the flag back" in done
    ops = pgbot.messages("#ops")
    assert len(ops) == 1 and "`checkout` in *prod*" in ops[0].all_text() and f"<@{ALICE}>" in ops[0].all_text()
    entry = (await audits(pgbot))[-1]
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (ALICE, "killswitch", "checkout/prod", "ok")
    assert entry.before == {"enabled": True, "kill_switch": False, "rollout_percentage": 100}
    assert entry.after is not None and entry.after["kill_switch"] is True
    # Single use: a second press does nothing.
    await press(pgbot, Action.CONFIRM, value=confirmation["blocks"][3]["elements"][0]["value"])
    assert "This change was already confirmed by <@U0ALICE01>" in last_text(pgbot)
    assert len(pgbot.messages("#ops")) == 1


async def test_killswitch_off_releases(pgbot: BotHarness, table: str, target_pg_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(target_pg_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("UPDATE {} SET kill_switch = true WHERE name = 'checkout'")
                           .format(sql.Identifier(table)))
    await pgbot.command("/killswitch", "checkout off staging", user=BOB)
    assert "kill switch: ON → *off*" in last_text(pgbot)
    await press(pgbot, Action.CONFIRM, user=BOB)
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)
    assert "Kill switch released" in pgbot.messages("#ops")[-1].all_text()


async def test_cancel_changes_nothing(pgbot: BotHarness, table: str, target_pg_url: str) -> None:
    await pgbot.command("/killswitch", "checkout on", user=ALICE)  # default environment: prod
    assert "*prod*" in last_text(pgbot)
    await press(pgbot, Action.CANCEL)
    assert "Cancelled: `checkout` in prod was not changed" in last_text(pgbot)
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)
    async with pgbot.deps.db.session() as session:
        assert [p.status for p in (await session.scalars(select(PendingAction))).all()] == ["cancelled"]
    assert pgbot.messages("#ops") == []


async def test_expired_confirmation_changes_nothing(pgbot: BotHarness, table: str, target_pg_url: str,
                                                    clock: Any) -> None:
    await pgbot.command("/killswitch", "checkout on prod", user=ALICE)
    clock.advance(minutes=5, seconds=1)
    await press(pgbot, Action.CONFIRM)
    assert "expired after 5 minutes" in last_text(pgbot)
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)
    async with pgbot.deps.db.session() as session:
        assert [p.status for p in (await session.scalars(select(PendingAction))).all()] == ["expired"]


async def test_only_the_requester_can_confirm(pgbot: BotHarness, table: str, target_pg_url: str) -> None:
    await pgbot.command("/killswitch", "checkout on staging", user=BOB)
    token = buttons(pgbot)[Action.CONFIRM]
    await press(pgbot, Action.CONFIRM, user=CAROL, value=token)
    assert f"Only <@{BOB}>" in last_text(pgbot)
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)
    await press(pgbot, Action.CONFIRM, user=BOB, value=token)  # still valid for bob
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, True, 100)


async def test_forged_token_is_refused(pgbot: BotHarness, table: str, target_pg_url: str) -> None:
    await pgbot.click(Action.CONFIRM, "not-a-real-token", user=ALICE, channel="general")
    assert "not valid" in last_text(pgbot)
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)


async def test_prod_is_refused_to_non_oncall_and_audited(pgbot: BotHarness, table: str,
                                                          target_pg_url: str) -> None:
    await pgbot.command("/killswitch", "checkout on prod", user=BOB)
    text = last_text(pgbot)
    assert "You are not allowed to killswitch `checkout/prod`" in text and "oncall" in text
    assert Action.CONFIRM not in str(pgbot.slack.responses[-1])
    entry = (await audits(pgbot))[-1]
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (BOB, "killswitch", "checkout/prod", "denied")
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)
    await pgbot.command("/flag", "checkout disable prod", user=BOB)
    assert "You are not allowed to flag" in last_text(pgbot)
    assert [a.outcome for a in await audits(pgbot)] == ["denied", "denied"]


async def test_permission_is_checked_again_on_confirm(pgbot: BotHarness, table: str, target_pg_url: str) -> None:
    pgbot.deps.directory.ttl = 0  # see group changes at once
    await pgbot.command("/killswitch", "checkout on prod", user=ALICE)
    assert "Engage kill switch?" in last_text(pgbot)
    pgbot.slack.usergroups["S0ONCALL1"]["users"] = []  # alice hands over on-call before confirming
    await press(pgbot, Action.CONFIRM)
    assert "You are not allowed to killswitch `checkout/prod`" in last_text(pgbot)
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)
    assert [(a.actor, a.outcome) for a in await audits(pgbot)] == [(ALICE, "denied")]
    assert pgbot.messages("#ops") == []


@pytest.mark.parametrize(("text", "expected"), [
    ("\"x'; DROP TABLE {table}; --\" on prod", "Valid flags: `checkout`, `search`"),
    ("\"checkout' OR '1'='1\" on prod", "Valid flags: `checkout`, `search`"),
    ("checkout;DELETE on", "Unknown flag `checkout;DELETE`"),
    ("x'; DROP TABLE {table}; -- on prod", "Usage: `/killswitch"),
])
async def test_injection_in_flag_names_is_rejected_by_validation(pgbot: BotHarness, table: str,
                                                                 target_pg_url: str, text: str,
                                                                 expected: str) -> None:
    response = await pgbot.command("/killswitch", text.format(table=table), user=ALICE)
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert expected in body["text"]
    assert pgbot.slack.responses == []  # nothing ran after the ack
    assert await table_rows(target_pg_url, table) == {"checkout": (True, False, 100), "search": (False, False, 10)}


async def test_unknown_environment_lists_the_flags_environments(pgbot: BotHarness) -> None:
    response = await pgbot.command("/killswitch", "checkout on \"prod'; DROP TABLE x\"", user=ALICE)
    assert "Unknown environment" in response.json()["text"]
    assert "Valid environments: `prod`, `staging`" in response.json()["text"]
    response = await pgbot.command("/flag", "search enable staging", user=ALICE)
    assert "Valid environments: `prod`." in response.json()["text"]


async def test_flag_without_kill_switch_points_to_flag_command(pgbot: BotHarness) -> None:
    response = await pgbot.command("/killswitch", "search on prod", user=ALICE)
    assert "has no kill switch" in response.json()["text"] and "/flag search disable prod" in response.json()["text"]


async def test_rollout_and_enable(pgbot: BotHarness, table: str, target_pg_url: str) -> None:
    await pgbot.command("/flag", "search rollout 50", user=ALICE)
    assert "rollout: 10% → *50%*" in last_text(pgbot)
    await press(pgbot, Action.CONFIRM)
    assert (await table_rows(target_pg_url, table))["search"] == (False, False, 50)
    await pgbot.command("/flag", "search enable prod", user=ALICE)
    assert "enabled: no → *yes*" in last_text(pgbot)
    await press(pgbot, Action.CONFIRM)
    assert (await table_rows(target_pg_url, table))["search"] == (True, False, 50)
    entries = [a for a in await audits(pgbot) if a.action == "flag"]
    assert [(a.outcome, a.before["rollout_percentage"], a.after["rollout_percentage"]) for a in entries] == [
        ("ok", 10, 50), ("ok", 50, 50)]
    response = await pgbot.command("/flag", "search rollout 150", user=ALICE)
    assert "0 to 100" in response.json()["text"]


async def test_missing_row_is_a_clear_error(make_bot: Any, table: str, target_pg_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGS_TEST_DSN", target_pg_url)
    bot = await make_bot(config=flags_config(pg_flags(table, key="no_such_feature")))
    await bot.command("/killswitch", "checkout on prod", user=ALICE)
    assert "no row with name = 'no_such_feature'" in last_text(bot)
    assert (await audits(bot))[-1].outcome == "failed"


async def test_keys_with_quotes_are_parameterised(make_bot: Any, target_pg_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    nasty = "o'brien\"; DROP TABLE users; --"
    async with flag_table(target_pg_url, rows=[(nasty, True, False, 100), ("other", True, False, 100)]) as table:
        monkeypatch.setenv("FLAGS_TEST_DSN", target_pg_url)
        bot = await make_bot(config=flags_config(pg_flags(table, key=nasty)))
        await bot.command("/killswitch", "checkout on prod", user=ALICE)
        await press(bot, Action.CONFIRM)
        assert await table_rows(target_pg_url, table) == {nasty: (True, True, 100), "other": (True, False, 100)}


async def test_custom_table_and_column_names(make_bot: Any, target_pg_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    async with await psycopg.AsyncConnection.connect(target_pg_url, autocommit=True) as conn:
        await conn.execute("CREATE SCHEMA IF NOT EXISTS flags_custom")
        await conn.execute('CREATE TABLE IF NOT EXISTS flags_custom."Toggles" '
                           '(feature text PRIMARY KEY, is_on boolean, killed boolean)')
        await conn.execute("TRUNCATE flags_custom.\"Toggles\"")
        await conn.execute("INSERT INTO flags_custom.\"Toggles\" VALUES ('checkout', true, false)")
    try:
        monkeypatch.setenv("FLAGS_TEST_DSN", target_pg_url)
        store = {"provider": "postgres", "dsn": "${FLAGS_TEST_DSN}", "table": "flags_custom.Toggles",
                 "name_column": "feature", "enabled_column": "is_on", "kill_switch_column": "killed",
                 "rollout_column": None}
        bot = await make_bot(config=flags_config({"checkout": {"environments": {"prod": store}}}))
        response = await bot.command("/flag", "checkout rollout 20", user=ALICE)
        assert "cannot set rollout" in response.json()["text"]
        await bot.command("/killswitch", "checkout on", user=ALICE)
        await press(bot, Action.CONFIRM)
        async with await psycopg.AsyncConnection.connect(target_pg_url) as conn:
            row = await (await conn.execute('SELECT is_on, killed FROM flags_custom."Toggles"')).fetchone()
        assert row == (True, True)
    finally:
        async with await psycopg.AsyncConnection.connect(target_pg_url, autocommit=True) as conn:
            await conn.execute("DROP SCHEMA flags_custom CASCADE")


async def test_database_down_is_a_clear_error_and_audited(make_bot: Any, table: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGS_TEST_DSN", f"postgresql://postgres:pw-not-shown@127.0.0.1:{closed_port()}/app")
    bot = await make_bot(config=flags_config(pg_flags(table)))
    await bot.command("/killswitch", "checkout on prod", user=ALICE)
    text = last_text(bot)
    assert "database unreachable" in text and "nothing was changed" in text and "pw-not-shown" not in text
    assert Action.CONFIRM not in str(bot.slack.responses[-1])
    entry = (await audits(bot))[-1]
    assert (entry.action, entry.outcome) == ("killswitch", "failed") and "unreachable" in (entry.detail or "")
    assert bot.messages("#ops") == []


async def test_database_failing_between_request_and_confirm(pgbot: BotHarness, table: str,
                                                            target_pg_url: str) -> None:
    await pgbot.command("/killswitch", "checkout on prod", user=ALICE)
    async with await psycopg.AsyncConnection.connect(target_pg_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN kill_switch TO ks").format(sql.Identifier(table)))
    await press(pgbot, Action.CONFIRM)
    assert "database error" in last_text(pgbot) and "nothing was changed" in last_text(pgbot)
    entry = (await audits(pgbot))[-1]
    assert (entry.action, entry.outcome) == ("killswitch", "failed")
    assert pgbot.messages("#ops") == []
    assert (await table_rows_renamed(target_pg_url, table)) == (True, False)


async def test_locked_row_times_out_and_changes_nothing(make_bot: Any, table: str, target_pg_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGS_TEST_DSN", target_pg_url)
    bot = await make_bot(config=flags_config(pg_flags(table, timeout="500ms")))
    await bot.command("/killswitch", "checkout on staging", user=ALICE)
    async with await psycopg.AsyncConnection.connect(target_pg_url) as holder:
        await holder.execute(sql.SQL("SELECT 1 FROM {} WHERE name = 'checkout' FOR UPDATE")
                             .format(sql.Identifier(table)))
        await press(bot, Action.CONFIRM)
        await holder.rollback()
    assert "statement timed out after 0.5s" in last_text(bot) and "nothing was changed" in last_text(bot)
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, False, 100)
    assert (await audits(bot))[-1].outcome == "failed"


async def test_simultaneous_confirms_flip_once(pgbot: BotHarness, table: str, target_pg_url: str) -> None:
    await pgbot.command("/killswitch", "checkout on prod", user=ALICE)
    token = buttons(pgbot)[Action.CONFIRM]
    await asyncio.gather(*(pgbot.click(Action.CONFIRM, token, user=ALICE, channel="general", settle=False)
                           for _ in range(3)))
    await pgbot.settle()
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, True, 100)
    assert [a.outcome for a in await audits(pgbot) if a.action == "killswitch"] == ["ok"]
    assert len(pgbot.messages("#ops")) == 1
    assert sum("already" in t for t in pgbot.ephemeral_texts()) == 2


async def table_rows_renamed(dsn: str, table: str) -> tuple[bool, bool]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(sql.SQL("SELECT enabled, ks FROM {} WHERE name = 'checkout'")
                                    .format(sql.Identifier(table)))
        row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1]


async def test_killswitch_in_incident_channel_goes_on_the_timeline(pgbot: BotHarness, table: str,
                                                                    target_pg_url: str) -> None:
    channel = pgbot.slack.add_channel("inc-7-checkout-down")
    async with pgbot.deps.db.session() as session:
        incident = Incident(title="Checkout down", severity="P1", status="investigating", reporter_id=ALICE,
                            commander_id=ALICE, created_at=pgbot.clock(), channel_id=channel.id)
        session.add(incident)
    await pgbot.command("/killswitch", "checkout on prod", user=ALICE, channel=channel.id)
    await press(pgbot, Action.CONFIRM, channel=channel.id)
    assert (await table_rows(target_pg_url, table))["checkout"] == (True, True, 100)
    assert len(pgbot.messages("#ops")) == 1
    posted = pgbot.messages(channel.id)
    assert len(posted) == 1 and "Kill switch engaged" in posted[0].all_text()
    assert f"timeline of INC-{incident.id}" in posted[0].all_text()
    async with pgbot.deps.db.session() as session:
        events = (await session.scalars(select(IncidentEvent))).all()
    assert [(e.incident_id, e.kind, e.actor) for e in events] == [(incident.id, "killswitch", ALICE)]
    assert "`checkout` in prod" in events[0].text and events[0].data and events[0].data["verified"] is True


async def test_no_timeline_outside_an_open_incident(pgbot: BotHarness) -> None:
    channel = pgbot.slack.add_channel("inc-3-old")
    async with pgbot.deps.db.session() as session:
        session.add(Incident(title="Old", severity="P3", status="resolved", reporter_id=ALICE, commander_id=ALICE,
                             created_at=pgbot.clock(), channel_id=channel.id))
    await pgbot.command("/killswitch", "checkout on staging", user=ALICE, channel=channel.id)
    await press(pgbot, Action.CONFIRM, channel=channel.id)
    assert pgbot.messages(channel.id) == [] and len(pgbot.messages("#ops")) == 1
    async with pgbot.deps.db.session() as session:
        assert (await session.scalars(select(IncidentEvent))).all() == []


async def test_rate_limit_on_requests(pgbot: BotHarness) -> None:
    for _ in range(10):
        await pgbot.command("/killswitch", "checkout on staging", user=BOB)
        assert "Engage kill switch?" in last_text(pgbot)
    await pgbot.command("/killswitch", "checkout on staging", user=BOB)
    assert "Slow down" in last_text(pgbot)
    await pgbot.command("/killswitch", "checkout on staging", user=CAROL)  # per user
    assert "Engage kill switch?" in last_text(pgbot)
    pgbot.clock.advance(minutes=1)  # type: ignore[attr-defined]
    await pgbot.command("/killswitch", "checkout on staging", user=BOB)
    assert "Engage kill switch?" in last_text(pgbot)
