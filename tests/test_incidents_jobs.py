"""The incident verbs as named jobs: a job that fails for good tells its requester, and two changes of one
incident take turns on the queue (the incident's lock), not only on the database row."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import REGISTRY
from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.models import Incident, IncidentEvent
from tests.test_alerts_replicas import eventually
from tests.test_incidents_concurrency import announcement, declare, summary_values
from tests.test_incidents_lifecycle import reload

WINNER, LOSER = "U0PRESS001", "U0PRESS002"


async def kinds(bot: BotHarness, incident: Incident) -> list[str]:
    async with bot.deps.db.session() as session:
        query = select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id).order_by(IncidentEvent.id)
        return list((await session.scalars(query)).all())


async def test_a_page_slack_keeps_refusing_ends_with_the_requester_told(bot: BotHarness) -> None:
    incident = await declare(bot, "open P3 Slow search")
    # Raised to P1 (pages at once): every chat.postMessage fails, on every attempt of the page's job.
    bot.slack.fail("chat.postMessage", status=200, error="internal_error", count=50)
    response = await bot.command("/incident", "severity INC-1 P1", settle=False)
    assert response.status_code == 200
    await bot.settle(timeout=30)

    # Told through the command's response_url (which does not go through the failing Web API).
    told = [str(r.get("text")) for r in bot.slack.responses]
    assert told == [":warning: Paging for INC-1 could not be posted (internal_error); opsbot tries again."]
    stored = await reload(bot, incident)
    assert stored.severity == "P1" and stored.escalated_at is None  # due again: the timer tries once more
    timeline = await kinds(bot, incident)
    assert timeline.count("severity") == 1  # retrying the page never changed the severity again
    assert timeline.count("escalation_failed") == 3  # the first attempt and its two retries
    assert timeline.count("escalated") == 3  # each claimed before it was posted, and released


async def test_two_resolve_submissions_take_turns_on_the_incidents_lock(bot: BotHarness) -> None:
    incident = await declare(bot)
    views = []
    for user in (WINNER, LOSER):
        await bot.click("incident_resolve_open", str(incident.id), user=user, message=announcement(bot))
        views.append(bot.last_view())
    # The first resolve to run stops at its first post; meanwhile the other must not have started.
    gate = bot.slack.hold("chat.postMessage")
    await asyncio.gather(*(bot.submit(view, summary_values(f"Fixed by {user}"), user=user, settle=False)
                           for view, user in zip(views, (WINNER, LOSER), strict=True)))

    async def one_running_one_waiting() -> bool:
        stats = await bot.deps.queue.stats()
        return bot.slack.held == ["chat.postMessage"] and (stats.running, stats.waiting) == (1, 1)

    await eventually(one_running_one_waiting, "the first resolve held in Slack, the second queued behind it")
    assert (await kinds(bot, incident)).count("resolved") == 1
    assert bot.slack.ephemerals == []  # the second has not even read the incident yet
    gate.set()
    await bot.settle()

    assert (await kinds(bot, incident)).count("resolved") == 1
    winner = (await reload(bot, incident)).resolution
    first, second = (WINNER, LOSER) if winner == f"Fixed by {WINNER}" else (LOSER, WINNER)
    told = [e["text"] for e in bot.slack.ephemerals]
    assert told == [f":information_source: INC-1 was already resolved by <@{first}> just now."]
    assert [e["user"] for e in bot.slack.ephemerals] == [second]


async def test_a_declaration_whose_run_stopped_before_recording_its_set_up_resumes_without_repeating(
        bot: BotHarness) -> None:
    """A worker killed mid-declaration: the incident is stored and Slack has the announcement and the channel,
    but nothing of them is recorded. The job's next run finds them instead of making them again."""
    args = {"user": "U0ALICE01", "channel": None, "response_url": None, "dedup_key": "trigger:resume-1",
            "declaration": {"title": "Checkout is down", "severity": "P2", "reporter_id": "U0ALICE01",
                            "commander_id": "U0ALICE01"}}
    # Slack makes the channel but its answer never comes back: the run is stuck there when it is stopped.
    bot.slack.fail("conversations.create", status=200, delay=60, applied=True)
    first = asyncio.create_task(bot.deps.run_job("incident.declare", **args))
    await eventually(lambda: bot.messages("#incidents") and bot.slack.faults == [],
                     "the announcement posted and the channel made")
    first.cancel()  # the worker dies here
    with contextlib.suppress(asyncio.CancelledError):
        await first
    async with bot.deps.db.session() as session:
        [stored] = (await session.scalars(select(Incident))).all()
    assert stored.announcement_ts is None and stored.channel_id is None  # nothing of it was recorded

    await bot.deps.run_job("incident.declare", **args)  # the same job, run again on another worker
    await bot.settle()
    async with bot.deps.db.session() as session:
        [stored] = (await session.scalars(select(Incident))).all()
    assert len(bot.messages("#incidents")) == 1  # the announcement it had posted, found, not posted again
    assert stored.announcement_ts == bot.messages("#incidents")[0].ts
    channels = [c for c in bot.slack.channels.values() if c.name.startswith("inc-")]
    assert len(channels) == 1 and stored.channel_id == channels[0].id  # the channel adopted
    assert stored.summary_ts is not None and len(bot.messages(channels[0].name)) >= 1


async def test_queued_lists_share_a_read_but_a_list_asked_after_a_declaration_shows_it(bot: BotHarness) -> None:
    await declare(bot, "open P2 Checkout errors")
    asked, started = time.time() - 60, reads_made()
    for _ in range(4):  # asked a minute ago, still queued: one read that started after them answers all four
        await bot.deps.queue.defer("incident.read", {"user": "U0ALICE01", "channel": None,
                                                     "response_url": bot.requests.response_url(), "verb": "list",
                                                     "ref": None, "requested_at": asked})
    await bot.settle()
    assert reads_made() == started + 1 and len(bot.slack.responses) == 4
    assert all("Checkout errors" in text for text in bot.ephemeral_texts())
    await declare(bot, "open P3 Search slow")
    await bot.command("/incident", "list")
    assert "Search slow" in bot.ephemeral_texts()[-1] and "Checkout errors" in bot.ephemeral_texts()[-1]


def reads_made() -> float:
    return REGISTRY.get_sample_value("opsbot_reads_total", {"what": "incidents", "outcome": "read"}) or 0.0
