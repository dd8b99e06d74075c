"""Escalation after the response time and reminders without updates, driven by the scheduler job and a FakeClock."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot import incidents
from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.incidents import flows
from bot.models import Incident
from commands.incident.notify import SlackIncidents, services
from tests.conftest import load_test_config

JOB = "incidents.timers"


async def declare(bot: BotHarness, text: str) -> Incident:
    await bot.command("/incident", text)
    async with bot.deps.db.session() as session:
        return (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()  # type: ignore[return-value]


def texts(bot: BotHarness, incident: Incident) -> list[str]:
    return [m.text for m in bot.messages(incident.channel_id or "")]


def escalations(bot: BotHarness, incident: Incident) -> list[str]:
    return [t for t in texts(bot, incident) if t.startswith("📣")]


async def test_job_is_registered_every_30_seconds(bot: BotHarness) -> None:
    job = bot.deps.scheduler.jobs[JOB]
    assert job.every is not None and job.every.total_seconds() == 30


async def test_unacknowledged_p2_escalates_once_after_its_response_time(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot, "open P2 Checkout is slow")
    assert escalations(bot, incident) == []
    clock.advance(minutes=59)
    await bot.run_job(JOB)
    assert escalations(bot, incident) == []
    clock.advance(minutes=1)
    await bot.run_job(JOB)
    [message] = escalations(bot, incident)
    assert "<!subteam^S0LEADS01>" in message and "not been acknowledged within 1h" in message
    clock.advance(minutes=30)
    await bot.run_job(JOB)
    assert len(escalations(bot, incident)) == 1  # once


async def test_acknowledged_incident_does_not_escalate(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot, "open P2 Checkout is slow")
    await bot.command("/incident", "ack", channel=incident.channel_id or "")
    clock.advance(hours=2)
    await bot.run_job(JOB)
    assert escalations(bot, incident) == []


async def test_an_acknowledgement_between_the_timers_read_and_its_page_wins(bot: BotHarness,
                                                                             clock: FakeClock) -> None:
    """The timer found the incident due, then someone acknowledged it before the page went out: nobody is
    paged and no escalation is recorded (the escalation is claimed under the incident's lock first)."""
    incident = await declare(bot, "open P2 Checkout is slow")
    clock.advance(hours=1)
    async with bot.deps.db.session() as session:
        [due] = await incidents.due_escalations(session, config=bot.deps.config, now=clock())
    await bot.command("/incident", "ack", channel=incident.channel_id or "")
    # What the timer does next with the row it read before the ack.
    await flows.escalate(services(bot.deps), SlackIncidents(bot.deps), due)
    assert escalations(bot, incident) == []
    async with bot.deps.db.session() as session:
        kinds = [e.kind for e in await incidents.events(session, incident_id=incident.id)]
    assert "escalated" not in kinds and kinds.count("acknowledged") == 1


async def test_a_failed_escalation_post_is_on_the_timeline_and_due_again(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot, "open P2 Checkout is slow")
    clock.advance(hours=1)
    bot.slack.fail("chat.postMessage", status=200, error="channel_not_found")
    await bot.run_job(JOB)
    async with bot.deps.db.session() as session:
        stored = await incidents.get(session, incident_id=incident.id)
        failed = [e.text for e in await incidents.events(session, incident_id=incident.id)
                  if e.kind == "escalation_failed"]
    assert stored.escalated_at is None
    assert failed == ["Escalation could not be posted (channel_not_found); it is retried"]


async def test_immediate_severity_pages_at_declaration_not_again(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot, "open P1 Checkout is down")
    [message] = escalations(bot, incident)
    assert "<!subteam^S0VPENG01>" in message and "immediate response" in message
    clock.advance(minutes=10)
    await bot.run_job(JOB)
    assert len(escalations(bot, incident)) == 1


async def test_reminders_follow_remind_after_and_updates_reset_them(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot, "open P1 Checkout is down")  # P1 remind_after: 15m
    clock.advance(minutes=14)
    await bot.run_job(JOB)
    assert not any(t.startswith("⏰") for t in texts(bot, incident))
    clock.advance(minutes=1)
    await bot.run_job(JOB)
    reminders = [t for t in texts(bot, incident) if t.startswith("⏰")]
    assert reminders == ["⏰ <@U0ALICE01>: no update on INC-1 for 15m. Post one with `/incident update [status] "
                         "<text>` or the *Post update* button."]
    await bot.run_job(JOB)  # not again until another interval passes
    assert sum(t.startswith("⏰") for t in texts(bot, incident)) == 1
    clock.advance(minutes=10)
    await bot.command("/incident", "update Still digging", channel=incident.channel_id or "")
    clock.advance(minutes=14)
    await bot.run_job(JOB)
    assert sum(t.startswith("⏰") for t in texts(bot, incident)) == 1
    clock.advance(minutes=1)
    await bot.run_job(JOB)
    assert sum(t.startswith("⏰") for t in texts(bot, incident)) == 2


async def test_low_severities_and_resolved_incidents_get_no_reminders(bot: BotHarness, clock: FakeClock) -> None:
    p3 = await declare(bot, "open P3 Typo on the pricing page")
    p1 = await declare(bot, "open P1 Checkout is down")
    await bot.command("/incident", "resolve INC-2 Fixed")
    clock.advance(hours=3)
    await bot.run_job(JOB)
    assert not any(t.startswith("⏰") for t in texts(bot, p3) + texts(bot, p1))


async def test_default_remind_after_applies_to_the_two_most_severe(make_bot: Any, clock: FakeClock) -> None:
    config = load_test_config({
        "severities": [{"name": "SEV1", "response": "immediate"}, {"name": "SEV2", "response": "1h"},
                       {"name": "SEV3", "response": "4h"}],
        "incidents": {"remind_after": "20m"}})
    bot = await make_bot(config=config)
    sev2 = await declare(bot, "open sev2 API slow")
    sev3 = await declare(bot, "open sev3 Docs typo")
    clock.advance(minutes=20)
    await bot.run_job(JOB)
    assert any(t.startswith("⏰") for t in texts(bot, sev2))
    assert not any(t.startswith("⏰") for t in texts(bot, sev3))


async def test_timers_survive_a_restart(make_bot: Any, clock: FakeClock) -> None:
    first = await make_bot()
    incident = await declare(first, "open P2 Checkout is slow")
    await first.stop()
    second = await make_bot()  # same database and emulator, new process state
    clock.advance(hours=1)
    await second.run_job(JOB)
    assert len(escalations(second, incident)) == 1


async def test_failed_escalation_post_is_retried_next_run(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot, "open P2 Checkout is slow")
    clock.advance(hours=1)
    bot.slack.fail("chat.postMessage", status=200, error="channel_not_found")
    await bot.run_job(JOB)
    assert escalations(bot, incident) == []
    await bot.run_job(JOB)
    assert len(escalations(bot, incident)) == 1
