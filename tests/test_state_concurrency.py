"""Two people at once, and Slack redelivering: alert ack/silence, rollback approve/reject and flag confirm
change their object once; the others are told who already did it. Real parallel signed requests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import func, select

from bot.emulator.harness import BotHarness
from bot.models import AlertState, AuditEntry, BuiltinFlag, Rollback, Silence
from commands.flags.ids import Action as FlagAction
from commands.rollback.ids import Ids
from tests.test_alerts_buttons import Metric, button, cpu_config, firing, metric  # noqa: F401 (fixture)
from tests.test_flags_support import buttons, flags_config
from tests.test_rollbacks_support import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    command_runner,
    open_modal,
    request_message,
    rollback_config,
    rollbacks_in_db,
    submit,
    thread,
)

EVE = "U0EVE0001"


async def audit_count(bot: BotHarness, action: str) -> int:
    async with bot.deps.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEntry)
                                        .where(AuditEntry.action == action, AuditEntry.outcome == "ok")) or 0)


def replies(bot: BotHarness, channel: str) -> list[str]:
    return [m.text for m in bot.messages(channel) if m.thread_ts]


def told(bot: BotHarness, user: str, text: str) -> list[str]:
    """What `user` was told privately containing `text`: ephemeral messages, and the answers sent to the
    response_urls of that user's requests."""
    owners: dict[str, str] = getattr(bot, "response_owner", {})
    mine = {token for token, who in owners.items() if who == user}
    said = [e["text"] for e in bot.slack.ephemerals if e["user"] == user]
    said += [str(r.get("text", "")) for r in bot.slack.responses if r["token"] in mine]
    return [t for t in said if text in t]


def signed_press(bot: BotHarness, action_id: str, value: str, *, user: str, message: Any = None,
                 channel: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A button press as Slack signs it, its response_url noted as `user`'s."""
    channel_id = message.channel if message else bot.slack.channel(channel or "general").id
    signed = bot.requests.block_action(action_id, value, user=user, channel=channel_id,
                                       message=message.as_dict() if message else None)
    payload = json.loads(parse_qs(signed[0].decode())["payload"][0])
    owners: dict[str, str] = getattr(bot, "response_owner", {})
    owners[payload["response_url"].rsplit("/", 1)[-1]] = user
    bot.response_owner = owners  # type: ignore[attr-defined]
    return signed


def signed_command(bot: BotHarness, command: str, text: str, *, user: str,
                   trigger_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    channel = bot.slack.channel("general")
    signed = bot.requests.command(command, text, user=user, channel=channel.id, channel_name=channel.name,
                                  trigger_id=trigger_id)
    owners: dict[str, str] = getattr(bot, "response_owner", {})
    owners[parse_qs(signed[0].decode())["response_url"][0].rsplit("/", 1)[-1]] = user
    bot.response_owner = owners  # type: ignore[attr-defined]
    return signed


async def press_at_once(bot: BotHarness, action_id: str, value: str, users: list[str], **kwargs: Any) -> None:
    presses = [signed_press(bot, action_id, value, user=u, **kwargs) for u in users]
    responses = await asyncio.gather(*(bot.post(p) for p in presses))
    assert [r.status_code for r in responses] == [200] * len(users)
    await bot.settle()


async def send_again(bot: BotHarness, signed: tuple[bytes, dict[str, str]], times: int) -> None:
    """The same signed request delivered `times` times (Slack's retries, a double submit), in parallel."""
    responses = await asyncio.gather(*(bot.post(signed, **({"X-Slack-Retry-Num": str(i)} if i else {}))
                                       for i in range(times)))
    assert [r.status_code for r in responses] == [200] * times
    await bot.settle()


# -- alerts -----------------------------------------------------------------------------------------

async def test_three_people_acknowledging_at_once_ack_it_once(make_bot: Any, metric: Metric) -> None:  # noqa: F811
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    await press_at_once(bot, "alerts.ack", button(message, "alerts.ack")["value"], [ALICE, BOB, CAROL],
                        message=message)
    assert await audit_count(bot, "alert.ack") == 1
    async with bot.deps.db.session() as session:
        row = await session.scalar(select(AlertState).where(AlertState.key == "cpu_high|"))
    assert row is not None and row.acked_by in (ALICE, BOB, CAROL)
    losers = [u for u in (ALICE, BOB, CAROL) if u != row.acked_by]
    for user in losers:
        assert told(bot, user, f"Already acknowledged by <@{row.acked_by}>"), bot.slack.ephemerals
    assert f"Acknowledged by <@{row.acked_by}>" in bot.messages("#alerts")[0].all_text()


async def test_two_people_silencing_at_once_silence_it_once(make_bot: Any, metric: Metric) -> None:  # noqa: F811
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    await press_at_once(bot, "alerts.silence_1h", button(message, "alerts.silence_1h")["value"], [ALICE, BOB],
                        message=message)
    assert await audit_count(bot, "alert.silence") == 1
    [reply] = replies(bot, "#alerts")
    winner = ALICE if "<@U0ALICE01>" in reply else BOB
    loser = BOB if winner == ALICE else ALICE
    assert told(bot, loser, f"Already silenced by <@{winner}>")
    # A longer silence is a new decision, not a duplicate: it extends the silence.
    await bot.click("alerts.silence_4h", button(message, "alerts.silence_4h")["value"], user=loser, message=message)
    assert await audit_count(bot, "alert.silence") == 2
    assert replies(bot, "#alerts")[-1] == f"🔕 Silenced for 4h by <@{loser}>."


async def test_ack_and_silence_at_once_both_take_effect(make_bot: Any, metric: Metric) -> None:  # noqa: F811
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    await asyncio.gather(
        bot.click("alerts.ack", button(message, "alerts.ack")["value"], user=ALICE, message=message, settle=False),
        bot.click("alerts.silence_1h", button(message, "alerts.silence_1h")["value"], user=BOB, message=message,
                  settle=False))
    await bot.settle()
    assert (await audit_count(bot, "alert.ack"), await audit_count(bot, "alert.silence")) == (1, 1)
    async with bot.deps.db.session() as session:
        row = await session.scalar(select(AlertState).where(AlertState.key == "cpu_high|"))
    assert row is not None and row.acked_by == ALICE and row.silenced_until is not None


async def test_a_silence_press_redelivered_nine_times_silences_once(make_bot: Any, metric: Metric) -> None:  # noqa: F811
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    signed = bot.requests.block_action("alerts.silence_1h", button(message, "alerts.silence_1h")["value"],
                                       user=BOB, channel=message.channel, message=message.as_dict())
    await send_again(bot, signed, 9)
    assert replies(bot, "#alerts") == ["🔕 Silenced for 1h by <@U0BOB0001>."]
    assert await audit_count(bot, "alert.silence") == 1


async def test_an_ack_redelivered_three_times_is_audited_once(make_bot: Any, metric: Metric) -> None:  # noqa: F811
    bot = await make_bot(config=cpu_config(metric.url))
    message = await firing(bot, metric)
    signed = bot.requests.block_action("alerts.ack", button(message, "alerts.ack")["value"], user=BOB,
                                       channel=message.channel, message=message.as_dict())
    await send_again(bot, signed, 3)
    assert await audit_count(bot, "alert.ack") == 1
    assert told(bot, BOB, "Already acknowledged") == []  # a redelivery is not a second person


async def test_silence_command_redelivered_nine_times_adds_one_silence(make_bot: Any, metric: Metric) -> None:  # noqa: F811
    bot = await make_bot(config=cpu_config(metric.url))
    signed = signed_command(bot, "/silence", "cpu_high 2h", user=BOB,
                            trigger_id="13345224609.738474920.8088930838d88f008e0")
    await send_again(bot, signed, 9)
    async with bot.deps.db.session() as session:
        silences = list(await session.scalars(select(Silence)))
    assert [(s.rule, s.created_by) for s in silences] == [("cpu_high", BOB)]
    assert await audit_count(bot, "alert.silence") == 1


async def test_silence_command_by_two_people_at_once_adds_one_silence(make_bot: Any, metric: Metric) -> None:  # noqa: F811
    bot = await make_bot(config=cpu_config(metric.url))
    await asyncio.gather(*(bot.post(signed_command(bot, "/silence", "cpu_high 2h", user=u)) for u in (ALICE, BOB)))
    await bot.settle()
    async with bot.deps.db.session() as session:
        silences = list(await session.scalars(select(Silence)))
    assert len(silences) == 1
    winner = silences[0].created_by
    loser = BOB if winner == ALICE else ALICE
    assert len(told(bot, loser, f"already silenced by <@{winner}>")) == 1
    assert len(told(bot, winner, "`cpu_high` silenced for 2h")) == 1


# -- rollbacks --------------------------------------------------------------------------------------

def two_approval_config(tmp_path: Path, approvals: int = 2) -> Any:
    runner = command_runner(tmp_path, approvals=approvals)
    return rollback_config({"api": {"environments": {"staging": runner}}})


async def pending_rollback(bot: BotHarness) -> Rollback:
    for user, name in ((DAVE, "dave"), (EVE, "eve")):
        bot.slack.add_user(user, name)
    view = await open_modal(bot, "api staging to v1", user=ALICE)
    await submit(bot, view, user=ALICE)
    [row] = await rollbacks_in_db(bot)
    assert row.status == "pending_approval"
    return row


async def test_three_approvers_at_once_on_a_two_approval_rollback(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=two_approval_config(tmp_path))
    row = await pending_rollback(bot)
    message = request_message(bot)
    await press_at_once(bot, Ids.APPROVE, str(row.id), [BOB, CAROL, DAVE], message=message)
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded" and len(row.approved_by) == 2
    assert len(set(row.approved_by)) == 2
    assert await audit_count(bot, "rollback.approve") == 2
    assert await audit_count(bot, "rollback.start") == 1
    assert thread(bot, message).count("rolling back api staging v1") == 1
    [late] = [u for u in (BOB, CAROL, DAVE) if u not in row.approved_by]
    answer = told(bot, late, "Already approved by")
    assert len(answer) == 1 and all(f"<@{u}>" in answer[0] for u in row.approved_by)
    # And later still: a fourth approver is told the same, nothing runs again.
    await bot.post(signed_press(bot, Ids.APPROVE, str(row.id), user=EVE, message=message))
    await bot.settle()
    assert told(bot, EVE, "Already approved by")
    assert await audit_count(bot, "rollback.start") == 1


async def test_two_approvers_at_once_count_as_two(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=two_approval_config(tmp_path, approvals=3))
    row = await pending_rollback(bot)
    await press_at_once(bot, Ids.APPROVE, str(row.id), [BOB, CAROL], message=request_message(bot))
    [row] = await rollbacks_in_db(bot)
    assert row.status == "pending_approval" and sorted(row.approved_by) == [BOB, CAROL]
    assert await audit_count(bot, "rollback.approve") == 2


async def test_reject_and_approve_at_once_have_one_effect(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=two_approval_config(tmp_path, approvals=1))
    row = await pending_rollback(bot)
    message = request_message(bot)
    await asyncio.gather(bot.post(signed_press(bot, Ids.APPROVE, str(row.id), user=BOB, message=message)),
                         bot.post(signed_press(bot, Ids.REJECT, str(row.id), user=CAROL, message=message)))
    await bot.settle()
    [row] = await rollbacks_in_db(bot)
    approvals, rejections = await audit_count(bot, "rollback.approve"), await audit_count(bot, "rollback.reject")
    assert approvals + rejections == 1
    if row.status == "rejected":
        assert (row.rejected_by, row.approved_by, approvals) == (CAROL, [], 0)
        assert told(bot, BOB, "Already rejected by <@U0CAROL01>")
        assert await audit_count(bot, "rollback.start") == 0
    else:
        assert (row.status, row.approved_by, row.rejected_by) == ("succeeded", [BOB], None)
        assert told(bot, CAROL, "Already approved by <@U0BOB0001>")
        assert await audit_count(bot, "rollback.start") == 1


async def test_the_rollback_form_submitted_eight_times_requests_once(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=two_approval_config(tmp_path))
    view = await open_modal(bot, "api staging to v1", user=ALICE)
    await asyncio.gather(*(submit(bot, view, user=ALICE) for _ in range(8)))
    await bot.settle()
    assert len(await rollbacks_in_db(bot)) == 1
    assert await audit_count(bot, "rollback.request") == 1
    assert len([m for m in bot.messages("#ops") if m.thread_ts is None]) == 1
    assert told(bot, ALICE, "already") == []


# -- flags ------------------------------------------------------------------------------------------

BUILTIN = {"recommendations": {"description": "Recommendations widget", "environments": ["prod", "staging"]}}


async def test_flag_confirm_pressed_twice_and_by_another_user_at_once_flips_once(make_bot: Any) -> None:
    bot = await make_bot(config=flags_config(BUILTIN))
    await bot.command("/killswitch", "recommendations on prod", user=ALICE)
    token = buttons(bot)[FlagAction.CONFIRM]
    await press_at_once(bot, FlagAction.CONFIRM, token, [ALICE, ALICE, BOB], channel="general")
    assert await audit_count(bot, "killswitch") == 1
    async with bot.deps.db.session() as session:
        rows = list(await session.scalars(select(BuiltinFlag)))
    assert [(r.kill_switch, r.updated_by) for r in rows] == [(True, ALICE)]
    assert len([m for m in bot.messages("#ops") if m.thread_ts is None]) == 1
    assert len(told(bot, ALICE, "This change was already confirmed by <@U0ALICE01>")) == 1
    assert len(told(bot, BOB, "Only <@U0ALICE01>")) == 1
