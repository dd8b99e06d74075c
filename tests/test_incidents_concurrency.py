"""Two people at once: parallel presses on one incident change it once and tell the others who was first;
different updates are serialised; a redelivered or double-submitted request does nothing the second time.

Every request is a real signed HTTP request; the presses of one test are sent together (`asyncio.gather`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from bot.db import Database
from bot.emulator.harness import BotHarness
from bot.emulator.server import EmulatorServer
from bot.emulator.state import Message
from bot.models import AuditEntry, Incident, IncidentEvent
from tests.test_alerts_replicas import eventually
from tests.test_incidents_lifecycle import reload
from tests.test_worker import Served, served

__all__ = ["served"]  # the `opsbot serve` fixture, used here too

USERS = [f"U0PRESS{n:03d}" for n in range(1, 6)]
REDELIVERIES = 9


async def declare(bot: BotHarness, text: str = "open P2 Checkout is down") -> Incident:
    for user in USERS:
        bot.slack.add_user(user, user.lower())
    await bot.command("/incident", text)
    bot.slack.responses.clear()  # the "Declared INC-1" answer
    async with bot.deps.db.session() as session:
        return (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()  # type: ignore[return-value]


async def timeline(bot: BotHarness, incident: Incident) -> list[IncidentEvent]:
    async with bot.deps.db.session() as session:
        query = select(IncidentEvent).where(IncidentEvent.incident_id == incident.id).order_by(IncidentEvent.id)
        return list((await session.scalars(query)).all())


async def counts(bot: BotHarness, incident: Incident) -> dict[str, int]:
    """Timeline events and audit rows by kind, and every message opsbot has posted in the two channels."""
    async with bot.deps.db.session() as session:
        audited = (await session.scalars(select(AuditEntry).where(AuditEntry.target == incident.ref))).all()
    events = Counter(e.kind for e in await timeline(bot, incident))
    audit = Counter(a.action for a in audited)
    out = {f"event.{k}": v for k, v in events.items()} | {f"audit.{k}": v for k, v in audit.items()}
    out["messages"] = len(posted(bot, incident))
    out["postmortems"] = sum(m.text.startswith("📝 Postmortem draft") for m in posted(bot, incident))
    return out


def changes(before: dict[str, int], after: dict[str, int], kind: str) -> dict[str, int]:
    """What a batch of requests added: `kind` events and audit rows, postmortem drafts, messages."""
    def added(key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    return {"events": added(f"event.{kind}"), "audit": added(f"audit.incident.{kind}"),
            "postmortems": added("postmortems"), "posts": added("messages")}


def posted(bot: BotHarness, incident: Incident) -> list[Message]:
    return bot.messages(incident.channel_id or "") + bot.messages("#incidents")


def announcement(bot: BotHarness) -> Message:
    return bot.messages("#incidents")[0]


def pinned(bot: BotHarness, incident: Incident) -> Message:
    return next(m for m in bot.messages(incident.channel_id or "") if m.pinned)


def answers(bot: BotHarness, needle: str) -> list[str]:
    return [t for t in bot.ephemeral_texts() if needle in t]


def winner_of(events: list[IncidentEvent], kind: str) -> str:
    [event] = [e for e in events if e.kind == kind]
    return event.actor


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def summary_values(text: str) -> dict[str, dict[str, Any]]:
    return {"summary": {"summary": {"type": "plain_text_input", "value": text}}}


def update_values(status: str, text: str) -> dict[str, dict[str, Any]]:
    return {"status": {"status": {"type": "static_select", "selected_option": {"value": status}}},
            "impact": {"impact": {"type": "plain_text_input", "value": None}},
            "eta": {"eta": {"type": "plain_text_input", "value": None}},
            "message": {"message": {"type": "plain_text_input", "value": text}}}


async def open_modal(bot: BotHarness, action: str, incident: Incident, user: str) -> dict[str, Any]:
    await bot.click(action, str(incident.id), user=user, message=announcement(bot))
    return bot.last_view()


# -- five people at once ---------------------------------------------------------------------------------
async def test_five_resolve_modals_submitted_at_once_resolve_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    views = [await open_modal(bot, "incident_resolve_open", incident, user) for user in USERS]
    before = await counts(bot, incident)
    await asyncio.gather(*(bot.submit(view, summary_values(f"Fixed by {user}"), user=user, settle=False)
                           for view, user in zip(views, USERS, strict=True)))
    await bot.settle()

    after, events = await counts(bot, incident), await timeline(bot, incident)
    # The status update in the channel and in #incidents, and the postmortem draft: 3 posts.
    assert changes(before, after, "resolved") == {"events": 1, "audit": 1, "postmortems": 1, "posts": 3}
    winner = winner_of(events, "resolved")
    assert (await reload(bot, incident)).resolution == f"Fixed by {winner}"
    for user in USERS:  # the others are told, ephemerally where they pressed, who was first
        told = [e["text"] for e in bot.slack.ephemerals if e["user"] == user and "already resolved" in e["text"]]
        assert len(told) == (0 if user == winner else 1)
        assert all(t.startswith(":information_source: INC-1 was already resolved by <@" + winner + "> ")
                   for t in told)


async def test_five_acknowledge_presses_at_once_acknowledge_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    before = await counts(bot, incident)
    await asyncio.gather(*(bot.click("incident_ack", str(incident.id), user=user, message=announcement(bot),
                                     settle=False) for user in USERS))
    await bot.settle()

    after, events = await counts(bot, incident), await timeline(bot, incident)
    # One "✋ … acknowledged" note.
    assert changes(before, after, "acknowledged") == {"events": 1, "audit": 1, "postmortems": 0, "posts": 1}
    winner = winner_of(events, "acknowledged")
    assert (await reload(bot, incident)).acknowledged_by == winner
    assert len(answers(bot, f":information_source: INC-1 was already acknowledged by <@{winner}> just now")) == 4


async def test_five_resolve_commands_at_once_resolve_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    before = await counts(bot, incident)
    await asyncio.gather(*(bot.command("/incident", f"resolve INC-1 Fixed by {user}", user=user, settle=False)
                           for user in USERS))
    await bot.settle()

    after, events = await counts(bot, incident), await timeline(bot, incident)
    assert changes(before, after, "resolved") == {"events": 1, "audit": 1, "postmortems": 1, "posts": 3}
    winner = winner_of(events, "resolved")
    assert len(answers(bot, f"INC-1 was already resolved by <@{winner}> just now")) == 4


async def test_five_severity_changes_to_one_level_at_once_change_and_page_once(bot: BotHarness) -> None:
    incident = await declare(bot, "open P3 Slow search")
    bot.clock.advance(minutes=2)  # type: ignore[attr-defined]
    before = await counts(bot, incident)
    await asyncio.gather(*(bot.command("/incident", "severity INC-1 P1", user=user, settle=False) for user in USERS))
    await bot.settle()

    after, events = await counts(bot, incident), await timeline(bot, incident)
    # The severity note and the page (P1 pages immediately, also noted in #incidents: issue 16): once.
    assert changes(before, after, "severity") == {"events": 1, "audit": 1, "postmortems": 0, "posts": 3}
    assert after.get("event.escalated", 0) == 1
    winner = winner_of(events, "severity")
    assert len(answers(bot, f"INC-1 was already set to P1 by <@{winner}> just now")) == 4


async def test_five_assigns_of_one_commander_at_once_assign_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    before = await counts(bot, incident)
    await asyncio.gather(*(bot.command("/incident", "assign INC-1 <@U0CAROL01>", user=user, settle=False)
                           for user in USERS))
    await bot.settle()
    after, events = await counts(bot, incident), await timeline(bot, incident)
    assert changes(before, after, "commander") == {"events": 1, "audit": 1, "postmortems": 0, "posts": 1}
    winner = winner_of(events, "commander")
    assert len(answers(bot, f"INC-1 was already assigned to <@U0CAROL01> by <@{winner}> just now")) == 4


async def test_two_different_updates_at_once_both_land_in_order(bot: BotHarness) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await asyncio.gather(bot.command("/incident", "update identified Bad deploy", user=USERS[0], channel=channel,
                                     settle=False),
                         bot.command("/incident", "update mitigating Rolling back", user=USERS[1],
                                     channel=channel, settle=False))
    await bot.settle()

    updates = [e for e in await timeline(bot, incident) if e.kind == "update"]
    assert len(updates) == 2
    first, second = updates
    # Serialised: the second one saw the first one's status, and the incident ends in the second one's.
    assert (second.data or {})["before"]["status"] == (first.data or {})["status"]
    assert (await reload(bot, incident)).status == (second.data or {})["status"]
    statuses = [m for m in posted(bot, incident) if m.text.startswith("🚨 *INCIDENT")]
    assert len(statuses) == 4  # each update to both channels
    assert not any(":warning:" in t for t in bot.ephemeral_texts())


async def test_an_edit_held_up_in_slack_does_not_overwrite_a_later_update(bot: BotHarness) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    # The first update's two edits (announcement, pinned summary) hang in Slack while a second update
    # runs from start to end: when they land, they must not leave the first update's state on display.
    bot.slack.fail("chat.update", status=200, delay=2.0, count=2)
    first = asyncio.create_task(bot.command("/incident", "update identified Bad deploy", user=USERS[0],
                                            channel=channel, settle=False))
    await until(lambda: not bot.slack.faults)
    await bot.command("/incident", "update mitigating Rolling back now", user=USERS[1], channel=channel)
    await first
    await bot.settle()

    for message in (announcement(bot), pinned(bot, incident)):
        shown = message.all_text()
        assert "Mitigating" in shown and "Rolling back now" in shown, shown
        assert "Identified" not in shown


async def test_the_timer_job_and_five_acknowledges_at_once_take_turns(bot: BotHarness,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    incident = await declare(bot)
    bot.clock.advance(hours=1)  # type: ignore[attr-defined]  # P2: due for escalation now
    await asyncio.gather(bot.run_job("incidents.timers"),
                         *(bot.click("incident_ack", str(incident.id), user=user, message=announcement(bot),
                                     settle=False) for user in USERS))
    await bot.settle()
    kinds = Counter(e.kind for e in await timeline(bot, incident))
    assert kinds["acknowledged"] == 1 and kinds["escalated"] <= 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    stored = await reload(bot, incident)
    assert stored.acknowledged_by in USERS and (stored.escalated_at is None) == (kinds["escalated"] == 0)


# -- the same request twice -----------------------------------------------------------------------------
async def send_again(bot: BotHarness, signed: tuple[bytes, dict[str, str]]) -> None:
    """The request, and 9 redeliveries of it (Slack's retries, a double click) arriving together."""
    retries = [bot.post(signed, **{"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
               for n in range(1, REDELIVERIES + 1)]
    responses = await asyncio.gather(bot.post(signed), *retries)
    assert all(r.status_code == 200 for r in responses)
    await bot.settle()


async def test_a_redelivered_acknowledge_press_acknowledges_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    before = await counts(bot, incident)
    await send_again(bot, bot.requests.block_action("incident_ack", str(incident.id), user=USERS[0],
                                                    channel=announcement(bot).channel,
                                                    message=announcement(bot).as_dict()))
    after = await counts(bot, incident)
    assert changes(before, after, "acknowledged") == {"events": 1, "audit": 1, "postmortems": 0, "posts": 1}
    assert bot.ephemeral_texts() == []  # a redelivery is not a second press: nobody is told anything


async def test_a_redelivered_resolve_submission_resolves_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    view = await open_modal(bot, "incident_resolve_open", incident, USERS[0])
    before = await counts(bot, incident)
    await send_again(bot, bot.requests.view_submission(view, summary_values("Rolled back"), user=USERS[0]))
    after = await counts(bot, incident)
    assert changes(before, after, "resolved") == {"events": 1, "audit": 1, "postmortems": 1, "posts": 3}
    assert bot.slack.ephemerals == []


async def test_a_redelivered_update_submission_posts_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    view = await open_modal(bot, "incident_update_open", incident, USERS[0])
    before = await counts(bot, incident)
    await send_again(bot, bot.requests.view_submission(view, update_values("identified", "Bad deploy"),
                                                       user=USERS[0]))
    after = await counts(bot, incident)
    assert changes(before, after, "update") == {"events": 1, "audit": 1, "postmortems": 0, "posts": 2}
    assert bot.slack.ephemerals == []


async def test_a_redelivered_resolve_command_resolves_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    before = await counts(bot, incident)
    await send_again(bot, bot.requests.command("/incident", "resolve INC-1 Rolled back", user=USERS[0],
                                               channel=bot.slack.channel("general").id))
    after = await counts(bot, incident)
    assert changes(before, after, "resolved") == {"events": 1, "audit": 1, "postmortems": 1, "posts": 3}
    assert answers(bot, "already") == []


async def test_a_redelivered_modal_button_opens_one_modal_without_an_error(bot: BotHarness) -> None:
    incident = await declare(bot)
    for action in ("incident_update_open", "incident_resolve_open"):
        opened = len(bot.slack.view_log)
        await send_again(bot, bot.requests.block_action(action, str(incident.id), user=USERS[0],
                                                        channel=announcement(bot).channel,
                                                        message=announcement(bot).as_dict()))
        assert len(bot.slack.view_log) - opened == 1
    assert bot.ephemeral_texts() == []


# -- as deployed: `opsbot serve`, its worker running the jobs the web process enqueued ---------------------
async def test_five_presses_at_once_against_opsbot_serve(served: Served, emulator: EmulatorServer,
                                                         database_url: str) -> None:
    state = emulator.state
    for user in USERS:
        state.add_user(user, user.lower())
    assert (await served.command("/incident", "open P2 Checkout is down")).status_code == 200
    await eventually(lambda: len(state.messages("#incidents")) == 1 and state.messages("#incidents")[0].edits,
                     "the announcement")
    message = state.messages("#incidents")[0]

    async def press(signed: tuple[bytes, dict[str, str]]) -> int:
        return (await served.http.post("/slack/events", content=signed[0], headers=signed[1])).status_code

    general = state.channel("general")
    acks = [served.requests.block_action("incident_ack", "1", user=user, channel=message.channel,
                                         message=message.as_dict()) for user in USERS]
    resolves = [served.requests.command("/incident", f"resolve INC-1 Fixed by {user}", user=user,
                                        channel=general.id, channel_name=general.name) for user in USERS]
    for round_, batch in enumerate((acks, resolves), start=1):
        assert await asyncio.gather(*(press(signed) for signed in batch)) == [200] * len(USERS)
        await eventually(lambda n=4 * round_: _told_already(state) >= n, "the four answers")
        await eventually(lambda: _idle(served), "the worker to finish")

    db = Database(database_url)
    try:
        async with db.session() as session:
            kinds = Counter((await session.scalars(select(IncidentEvent.kind))).all())
            audited = Counter((await session.scalars(select(AuditEntry.action))).all())
    finally:
        await db.dispose()
    assert (kinds["acknowledged"], audited["incident.acknowledged"]) == (1, 1)
    assert (kinds["resolved"], audited["incident.resolved"]) == (1, 1)
    channel_posts = [m.text for ch in state.channels.values() for m in ch.messages]
    assert sum(t.startswith("📝 Postmortem draft") for t in channel_posts) == 1
    told = [str(r.get("text")) for r in state.responses]
    assert sum("was already acknowledged by" in t for t in told) == 4
    assert sum("was already resolved by" in t for t in told) == 4


def _told_already(state: Any) -> int:
    """Answers naming who was first (the declaration's own answer is not one)."""
    return sum("was already" in str(r.get("text")) for r in state.responses)


async def _idle(served: Served) -> bool:
    jobs = await served.jobs()
    return jobs["waiting"] == 0 and jobs["running"] == 0


# -- a change while the declaration is still setting up -------------------------------------------------
async def test_an_ack_while_the_channel_is_being_created_stays_on_the_announcement_and_summary(
        bot: BotHarness) -> None:
    """The announcement's Acknowledge button works as soon as it is posted, while conversations.create is
    still running. The declaration's own edits (channel link, summary) are rendered from its copy of the
    incident: they must not be the last word, showing it unacknowledged."""
    gate = bot.slack.hold("conversations.create")
    general = bot.slack.channel("general")
    await bot.post(bot.requests.command("/incident", "open P2 Checkout is down", channel=general.id,
                                        channel_name=general.name))
    await eventually(lambda: bot.slack.held == ["conversations.create"] and bool(bot.messages("#incidents")),
                     "the announcement, with the channel still being created")
    await bot.click("incident_ack", "1", user="U0BOB0001", message=announcement(bot), settle=False)

    async def acked() -> bool:
        async with bot.deps.db.session() as session:
            incident = (await session.scalars(select(Incident))).first()
        return incident is not None and incident.acknowledged_at is not None and announcement(bot).edits >= 1

    await eventually(acked, "the acknowledgement and its edit of the announcement")
    gate.set()
    await bot.settle()

    async with bot.deps.db.session() as session:
        [incident] = (await session.scalars(select(Incident))).all()
    assert incident.acknowledged_by == "U0BOB0001" and incident.channel_id
    shown = announcement(bot).all_text()
    assert "<@U0BOB0001> at" in shown and f"<#{incident.channel_id}>" in shown
    assert "<@U0BOB0001> at" in pinned(bot, incident).all_text()
