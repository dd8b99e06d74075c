"""`/oncall` end to end: signed slash commands, the emulator's Web API, the database, the FakeClock."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.models import AuditEntry, OncallOverride, UsergroupSync
from bot.oncall import current
from tests.conftest import load_test_config

# The FakeClock starts Mon 2026-01-05 09:00 UTC: alice has primary until Mon 12 Jan 09:00 Berlin (08:00 UTC).
HANDOFF = int(datetime(2026, 1, 12, 8, tzinfo=UTC).timestamp())
GUARDED = {"groups": {"oncall": ["@oncall"]},
           "rules": [{"actions": ["oncall.override"], "allow": ["oncall"]}]}  # @oncall = alice in the emulator


PRIMARY = {"time_zone": "Europe/Berlin", "members": ["U0ALICE01", "U0BOB0001"], "rotation": "1w",
           "start": "2026-01-05 09:00"}  # as in tests/opsbot.test.yml


async def audits(bot: Any, action: str) -> list[AuditEntry]:
    async with bot.deps.db.session() as session:
        return list(await session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                          .order_by(AuditEntry.id)))


async def overrides(bot: Any) -> list[OncallOverride]:
    async with bot.deps.db.session() as session:
        return list(await session.scalars(select(OncallOverride).order_by(OncallOverride.id)))


async def test_oncall_shows_every_schedule_now_and_next_with_date_tokens(bot: Any) -> None:
    await bot.command("/oncall")
    text = bot.ephemeral_texts()[-1]
    assert "*primary* — Primary on-call" in text and "*secondary*" in text
    assert f"*Now:* <@U0ALICE01> until <!date^{HANDOFF}^{{date_short_pretty}} {{time}}|Mon 12 Jan 2026 09:00 CET>" \
        in text
    assert f"*Next:* <@U0BOB0001> from <!date^{HANDOFF}^" in text
    # secondary: business hours (bob on Monday) until 17:00 Berlin, then carol's nights layer
    assert "*Now:* <@U0BOB0001> until <!date^" in text and "|Mon 05 Jan 2026 17:00 CET>" in text
    assert "*Next:* <@U0CAROL01> from" in text


async def test_oncall_for_one_schedule_follows_the_clock(bot: Any, clock: FakeClock) -> None:
    clock.advance(days=7)  # Mon 12 Jan 09:00 UTC: bob's week
    await bot.command("/oncall", "Primary")
    text = bot.ephemeral_texts()[-1]
    assert "On call: primary" in text and "*Now:* <@U0BOB0001>" in text and "*Next:* <@U0ALICE01>" in text
    assert "secondary" not in text


async def test_unknown_schedule_lists_the_valid_ones_without_a_job(bot: Any) -> None:
    calls = len(bot.slack.calls)
    response = await bot.command("/oncall", "tertiary")
    assert response.json()["text"] == ":warning: Unknown schedule `tertiary`. Valid schedules: `primary`, `secondary`."
    response = await bot.command("/oncall", "override nope <@U0BOB0001|bob> 4h")
    assert "Valid schedules: `primary`, `secondary`" in response.json()["text"]
    assert len(bot.slack.calls) == calls and bot.slack.responses == []


async def test_help_and_bad_syntax_answer_in_the_ack(bot: Any) -> None:
    assert "/oncall override <schedule> @user" in (await bot.command("/oncall", "help")).json()["text"]
    for text, expected in [("override primary <@U0BOB0001|bob>", "Usage: `/oncall override"),
                           ("override primary <@U0BOB0001|bob> 31d", "at most 30 days"),
                           ("override primary <@U0BOB0001|bob> soon", "`soon` is not a duration"),
                           ("override primary <@U0BOB0001|bob> 999999999999999999999", "is not a duration"),
                           ("override primary <@U0BOB0001|bob> until 0001-01-01 00:00", "is not a time"),
                           ("override primary <@U0BOB0001|bob> until tomorrow", "is not a time"),
                           ("override primary bob 4h", "is not a person"),
                           ("cancel abc", "not a valid override id")]:
        assert expected in (await bot.command("/oncall", text)).json()["text"], text
    assert await overrides(bot) == []


async def test_override_is_denied_without_permission_and_the_denial_is_audited(make_bot: Any) -> None:
    bot = await make_bot(config=load_test_config({"permissions": GUARDED}))
    await bot.command("/oncall", "override primary <@U0BOB0001|bob> 4h", user="U0BOB0001")
    assert "You are not allowed to oncall.override `oncall:primary`" in bot.ephemeral_texts()[-1]
    (denied,) = await audits(bot, "oncall.override")
    assert (denied.actor, denied.outcome, denied.target) == ("U0BOB0001", "denied", "oncall:primary")
    assert await overrides(bot) == [] and bot.messages("#ops") == []


async def test_override_allowed_is_stored_audited_announced_and_wins(make_bot: Any, clock: FakeClock) -> None:
    bot = await make_bot(config=load_test_config({"permissions": GUARDED}))
    await bot.command("/oncall", "override primary <@U0CAROL01|carol> 4h", user="U0ALICE01")
    (row,) = await overrides(bot)
    assert (row.schedule, row.user_id, row.created_by) == ("primary", "U0CAROL01", "U0ALICE01")
    assert (row.starts_at, row.ends_at) == (clock(), datetime(2026, 1, 5, 13, tzinfo=UTC))
    (entry,) = await audits(bot, "oncall.override")
    assert entry.outcome == "ok" and entry.after == {"id": row.id, "user": "U0CAROL01",
                                                     "start": "2026-01-05T09:00:00+00:00",
                                                     "end": "2026-01-05T13:00:00+00:00"}
    assert f"Override `#{row.id}`: <@U0CAROL01> is on call for *primary*" in bot.ephemeral_texts()[-1]
    (post,) = bot.messages("#ops")
    assert "<@U0ALICE01> set an on-call override" in post.text and "|Mon 05 Jan 2026 14:00 CET>" in post.text

    assert await current(bot.deps.db, bot.deps.config, clock, "primary") == ["U0CAROL01"]
    await bot.command("/oncall", "primary")
    text = bot.ephemeral_texts()[-1]
    assert "*Now:* <@U0CAROL01> _(override)_ until" in text and "*Next:* <@U0ALICE01> from" in text
    clock.advance(hours=4)
    assert await current(bot.deps.db, bot.deps.config, clock, "primary") == ["U0ALICE01"]


async def test_override_until_is_in_the_schedule_zone_and_a_handle_is_looked_up(bot: Any) -> None:
    await bot.command("/oncall", "override primary @bob until 2026-01-06 18:00")
    (row,) = await overrides(bot)
    assert row.user_id == "U0BOB0001" and row.ends_at == datetime(2026, 1, 6, 17, tzinfo=UTC)  # 18:00 CET
    await bot.command("/oncall", "override primary @nobody-here 2h")
    assert "There is no Slack user `@nobody-here`" in bot.ephemeral_texts()[-1]
    await bot.command("/oncall", "override primary @bob until 2026-01-01 10:00")
    assert "would already be over" in bot.ephemeral_texts()[-1]
    assert len(await overrides(bot)) == 1


async def test_overrides_are_listed_and_cancelled_with_an_audit_entry(bot: Any, clock: FakeClock) -> None:
    await bot.command("/oncall", "override primary <@U0BOB0001|bob> 2d")
    await bot.command("/oncall", "override secondary <@U0CAROL01|carol> 1h")
    await bot.command("/oncall", "overrides")
    text = bot.ephemeral_texts()[-1]
    assert "`#1` *primary*: <@U0BOB0001>" in text and "`#2` *secondary*: <@U0CAROL01>" in text
    await bot.command("/oncall", "overrides secondary")
    assert "`#1`" not in bot.ephemeral_texts()[-1] and "`#2`" in bot.ephemeral_texts()[-1]

    await bot.command("/oncall", "cancel 1", user="U0CAROL01")
    assert "Cancelled override `#1`." in bot.ephemeral_texts()[-1]
    assert "<@U0CAROL01> cancelled on-call override `#1`" in bot.messages("#ops")[-1].text
    (cancel,) = await audits(bot, "oncall.override.cancel")
    assert cancel.actor == "U0CAROL01" and cancel.before is not None and cancel.before["user"] == "U0BOB0001"
    assert await current(bot.deps.db, bot.deps.config, clock, "primary") == ["U0ALICE01"]
    await bot.command("/oncall", "cancel 1")
    assert "already cancelled or over" in bot.ephemeral_texts()[-1]
    await bot.command("/oncall", "cancel 99")
    assert "There is no override #99" in bot.ephemeral_texts()[-1]
    clock.advance(hours=2)
    await bot.command("/oncall", "overrides")
    assert "No current or upcoming overrides." in bot.ephemeral_texts()[-1]


async def test_overrides_are_rate_limited(bot: Any) -> None:
    for _ in range(10):
        await bot.command("/oncall", "override primary <@U0BOB0001|bob> 1h")
    await bot.command("/oncall", "override primary <@U0BOB0001|bob> 1h")
    assert "Slow down" in bot.ephemeral_texts()[-1]
    assert len(await overrides(bot)) == 10


async def test_people_named_by_email_are_resolved_through_slack(make_bot: Any, clock: FakeClock) -> None:
    config = load_test_config({"oncall": {"mail": {"members": ["carol@example.com", "ghost@example.com"],
                                                   "rotation": "1d", "start": "2026-01-05 00:00"}}})
    bot = await make_bot(config=config)
    await bot.command("/oncall", "mail")
    assert "*Now:* <@U0CAROL01> until" in bot.ephemeral_texts()[-1]
    assert "*Next:* ghost@example.com from" in bot.ephemeral_texts()[-1]  # unknown to Slack: shown as text
    assert ("users.lookupByEmail", {"email": "carol@example.com"}) in [
        (m, {k: v for k, v in a.items() if k == "email"}) for m, a in bot.slack.calls]


def _updates(bot: Any) -> list[dict[str, Any]]:
    return [args for method, args in bot.slack.calls if method == "usergroups.users.update"]


@pytest.fixture
def synced_config() -> Any:
    return load_test_config({"oncall": {
        "primary": {**PRIMARY, "usergroup": "@oncall"},
        "weekend": {"members": ["U0CAROL01"], "start": "2026-01-01 00:00", "usergroup": "S0CTO0001",
                    "restrictions": [{"days": ["sat", "sun"]}]}}})


async def test_usergroup_sync_updates_only_when_the_on_call_set_changes(
        make_bot: Any, clock: FakeClock, synced_config: Any, caplog: pytest.LogCaptureFixture) -> None:
    bot = await make_bot(config=synced_config)
    caplog.set_level(logging.INFO, logger="bot.oncall.usergroups")
    await bot.run_job("oncall.usergroups")
    assert [(u["usergroup"], u["users"]) for u in _updates(bot)] == [("S0ONCALL1", "U0ALICE01")]
    assert bot.slack.usergroups["S0ONCALL1"]["users"] == ["U0ALICE01"]
    assert bot.slack.usergroups["S0CTO0001"]["users"] == []  # weekday: nobody on the weekend schedule
    assert "nobody is on call; S0CTO0001 is left unchanged" in caplog.text
    await bot.run_job("oncall.usergroups")
    assert len(_updates(bot)) == 1  # nothing changed: Slack is not called

    clock.advance(days=5)  # Sat 10 Jan: carol on the weekend schedule; alice's week still
    await bot.run_job("oncall.usergroups")
    assert [(u["usergroup"], u["users"]) for u in _updates(bot)][1:] == [("S0CTO0001", "U0CAROL01")]
    clock.advance(days=2)  # Mon 12 Jan 09:00 UTC: bob
    await bot.run_job("oncall.usergroups")
    assert bot.slack.usergroups["S0ONCALL1"]["users"] == ["U0BOB0001"]
    assert bot.slack.usergroups["S0CTO0001"]["users"] == ["U0CAROL01"]  # nobody now: left as it was
    async with bot.deps.db.session() as session:
        row = await session.get(UsergroupSync, "primary")
        assert row is not None and (row.usergroup_id, row.users) == ("S0ONCALL1", ["U0BOB0001"])


async def test_usergroup_sync_failure_is_logged_once_and_retried(
        make_bot: Any, clock: FakeClock, synced_config: Any, caplog: pytest.LogCaptureFixture) -> None:
    bot = await make_bot(config=synced_config)
    caplog.set_level(logging.INFO, logger="bot.oncall.usergroups")
    bot.slack.fail("usergroups.users.update", status=200, error="permission_denied", count=2)
    await bot.run_job("oncall.usergroups")
    await bot.run_job("oncall.usergroups")
    assert caplog.text.count("usergroups.users.update failed (permission_denied)") == 1
    assert bot.slack.usergroups["S0ONCALL1"]["users"] == ["U0ALICE01"]  # the emulator's start: unchanged
    async with bot.deps.db.session() as session:
        assert await session.get(UsergroupSync, "primary") is None
    clock.advance(days=7)
    await bot.run_job("oncall.usergroups")  # the next minute: it works
    assert bot.slack.usergroups["S0ONCALL1"]["users"] == ["U0BOB0001"]
    assert "works again" in caplog.text
    assert len(_updates(bot)) == 1  # the refused calls never reached the method


def test_rendering_many_schedules_stays_within_block_kit_limits() -> None:
    from bot.oncall import Status
    from bot.oncall.rotation import on_call
    from commands.oncall import render

    config = load_test_config({"oncall": {f"team-{i:02d}": PRIMARY for i in range(30)}})
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    found = [Status(name, s, at, on_call(s, at), None) for name, s in config.oncall.items()]
    blocks = render.statuses(found, {})
    assert len(blocks) <= 50 and "…and 10 more" in str(blocks)
    assert render.when(at, config.oncall["team-00"].zone) == \
        f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|Mon 05 Jan 2026 10:00 CET>"
