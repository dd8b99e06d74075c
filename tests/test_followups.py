"""Follow-ups through signed requests: `/incident followup …`, the postmortem's *Add follow-up* modal, issues in
the GitHub and Jira stand-ins (real local servers), retries and the channel told, the tracker poll and the
weekly overdue DM, on SQLite and PostgreSQL with the FakeClock."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from bot import jobs
from bot.clock import FakeClock
from bot.emulator.github_issues import GitHubIssues
from bot.emulator.harness import BotHarness
from bot.emulator.jira import Jira
from bot.emulator.localserver import LocalServer
from bot.errors import InvalidInput
from bot.followups.dates import parse_due
from bot.models import FollowUp, Incident
from commands.followups.ids import Action, Field
from tests.conftest import load_test_config

GH_TOKEN, JIRA_TOKEN = "ghp-test-token", "jira-test-token"
BOB = "U0BOB0001"


@pytest.fixture
async def github(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[GitHubIssues, str]]:
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    monkeypatch.setattr(jobs, "BACKOFF_BASE", 0.01)
    fake = GitHubIssues(repo="acme/ops", token=GH_TOKEN)
    async with LocalServer(fake.app()) as server:
        yield fake, server.url


@pytest.fixture
async def jira(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Jira, str]]:
    monkeypatch.setenv("JIRA_TOKEN", JIRA_TOKEN)
    fake = Jira(email="bot@acme.test", token=JIRA_TOKEN, project="OPS")
    async with LocalServer(fake.app()) as server:
        yield fake, server.url


def github_config(url: str) -> Any:
    return load_test_config({"incidents": {"tracker": {"github": {
        "repo": "acme/ops", "token": "${GH_TOKEN}", "labels": ["follow-up"], "api_url": url}}}})


async def declare(bot: BotHarness) -> Incident:
    await bot.command("/incident", "open P2 Checkout is slow")
    async with bot.deps.db.session() as session:
        return (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()  # type: ignore[return-value]


async def rows(bot: BotHarness) -> list[FollowUp]:
    async with bot.deps.db.session() as session:
        return list(await session.scalars(select(FollowUp).order_by(FollowUp.id)))


def said(bot: BotHarness, incident: Incident) -> list[str]:
    return [m.text for m in bot.messages(incident.channel_id or "")]


def test_due_dates_read_as_people_type_them() -> None:
    monday = date(2026, 1, 5)
    assert parse_due(["2026-02-01"], today=monday) == date(2026, 2, 1)
    assert parse_due(["tomorrow"], today=monday) == date(2026, 1, 6)
    assert parse_due(["in", "3d"], today=monday) == date(2026, 1, 8)
    assert parse_due(["fri"], today=monday) == date(2026, 1, 9)
    assert parse_due(["mon"], today=monday) == date(2026, 1, 12)
    with pytest.raises(InvalidInput):
        parse_due(["someday"], today=monday)


async def test_followup_is_filed_in_github_with_its_link_listed(make_bot: Any, github: tuple[GitHubIssues, str],
                                                                 clock: FakeClock) -> None:
    fake, url = github
    bot = await make_bot(config=github_config(url))
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", f"followup Add a retry budget to checkout <@{BOB}> due in 3d", channel=channel)
    [row] = await rows(bot)
    assert (row.text, row.owner_id, row.status) == ("Add a retry budget to checkout", BOB, "open")
    assert row.due is not None and row.due.date() == date(2026, 1, 9)  # end of Thu 8th
    assert (row.tracker, row.tracker_key, row.tracker_url) == ("github", "1", "https://github.com/acme/ops/issues/1")
    [issue] = fake.issues.values()
    assert issue["title"] == "Add a retry budget to checkout" and issue["labels"] == [{"name": "follow-up"}]
    assert "INC-1" in issue["body"]
    assert any("https://github.com/acme/ops/issues/1" in t for t in said(bot, incident))
    await bot.command("/incident", "followups", channel=channel)
    listing = bot.ephemeral_texts()[-1] if bot.ephemeral_texts() else ""
    assert "Follow-ups of INC-1" in listing or any("#1" in t for t in bot.ephemeral_texts())
    assert GH_TOKEN not in " ".join(said(bot, incident))


async def test_followup_is_filed_in_jira(make_bot: Any, jira: tuple[Jira, str]) -> None:
    fake, url = jira
    config = load_test_config({"incidents": {"tracker": {"jira": {
        "url": url, "email": "bot@acme.test", "token": "${JIRA_TOKEN}", "project": "OPS", "issue_type": "Task"}}}})
    bot = await make_bot(config=config)
    incident = await declare(bot)
    await bot.command("/incident", "followup Alert on queue depth", channel=incident.channel_id or "")
    [row] = await rows(bot)
    assert (row.tracker, row.tracker_key, row.tracker_url) == ("jira", "OPS-1", f"{url}/browse/OPS-1")
    fields = fake.issues["OPS-1"]["fields"]
    assert fields["summary"] == "Alert on queue depth" and fields["issuetype"] == {"name": "Task"}
    assert fields["description"]["type"] == "doc"
    fake.transition("OPS-1", "done")
    await bot.run_job("followups.poll")
    [row] = await rows(bot)
    assert (row.status, row.done_by, row.tracker_state) == ("done", "tracker", "done")


async def test_tracker_down_is_retried(make_bot: Any, github: tuple[GitHubIssues, str]) -> None:
    fake, url = github
    bot = await make_bot(config=github_config(url))
    incident = await declare(bot)
    fake.fail_next = 1  # one 503, then the issue is made
    await bot.command("/incident", "followup Write the runbook", channel=incident.channel_id or "")
    [row] = await rows(bot)
    assert row.tracker_key == "1" and row.tracker_attempts == 1
    assert [m for m, _p, _b in fake.requests].count("POST") == 2


async def test_tracker_down_for_good_is_told_in_the_channel(make_bot: Any, github: tuple[GitHubIssues, str]) -> None:
    if not os.environ.get("TEST_DATABASE_URL", "sqlite").startswith("sqlite"):
        pytest.skip("procrastinate's worker process waits at least 1 s between attempts (7 s in all)")
    fake, url = github
    bot = await make_bot(config=github_config(url))
    incident = await declare(bot)
    fake.fail_next = 100
    await bot.command("/incident", "followup Write the runbook", channel=incident.channel_id or "")
    [row] = await rows(bot)
    assert row.tracker_key is None and row.tracker_attempts == 4
    told = [t for t in said(bot, incident) if "could not be filed" in t]
    assert len(told) == 1 and "503" in told[0] and GH_TOKEN not in told[0]


async def test_a_refusal_is_told_at_once(make_bot: Any, github: tuple[GitHubIssues, str]) -> None:
    fake, url = github
    fake.token = "another-token"  # opsbot's token is refused: 401, not retried
    bot = await make_bot(config=github_config(url))
    incident = await declare(bot)
    await bot.command("/incident", "followup Write the runbook", channel=incident.channel_id or "")
    [told] = [t for t in said(bot, incident) if "could not be filed" in t]
    assert "401 Bad credentials" in told and GH_TOKEN not in told
    assert [m for m, _p, _b in fake.requests].count("POST") == 1


async def test_closing_in_github_is_reflected_after_the_poll(make_bot: Any, github: tuple[GitHubIssues, str]) -> None:
    fake, url = github
    bot = await make_bot(config=github_config(url))
    assert bot.deps.scheduler.jobs["followups.poll"].every is not None
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", "followup Add a retry budget", channel=channel)
    await bot.run_job("followups.poll")
    assert (await rows(bot))[0].status == "open"
    fake.close(1)
    await bot.run_job("followups.poll")
    [row] = await rows(bot)
    assert (row.status, row.done_by) == ("done", "tracker")
    assert any("closed in the tracker" in t for t in said(bot, incident))
    await bot.run_job("followups.poll")  # told once
    assert sum("closed in the tracker" in t for t in said(bot, incident)) == 1


async def test_done_and_reassign(bot: BotHarness) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", "followup Fix dashboards", channel=channel)
    await bot.command("/incident", f"followup assign 1 <@{BOB}>", channel=channel)
    assert (await rows(bot))[0].owner_id == BOB
    await bot.command("/incident", "followup done 1", channel=channel)
    [row] = await rows(bot)
    assert (row.status, row.done_by, row.tracker) == ("done", "U0ALICE01", None)
    assert any("done by <@U0ALICE01>" in t for t in said(bot, incident))


async def test_overdue_followups_are_reminded_once_a_week(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot)
    await bot.command("/incident", f"followup Fix dashboards <@{BOB}> due tomorrow",
                      channel=incident.channel_id or "")

    def dms() -> list[str]:
        return [m.text for m in bot.messages(BOB) if "was due" in m.text]

    await bot.run_job("followups.remind")
    assert dms() == []  # not due yet
    clock.advance(days=2)
    await bot.run_job("followups.remind")
    assert len(dms()) == 1 and "Fix dashboards" in dms()[0]
    clock.advance(days=3)
    await bot.run_job("followups.remind")
    assert len(dms()) == 1  # once a week
    clock.advance(days=4)
    await bot.run_job("followups.remind")
    assert len(dms()) == 2


async def test_postmortem_button_adds_a_followup(bot: BotHarness) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", "resolve Rolled back api", channel=channel)
    [postmortem] = [m for m in bot.messages(channel) if m.text.startswith("📝 Postmortem")]
    assert "## Follow-ups" in postmortem.all_text() and "## Roles" in postmortem.all_text()
    await bot.click(Action.ADD_FOLLOWUP, incident.ref, message=postmortem)
    view = bot.last_view()
    await bot.submit(view, {Field.TEXT: {Field.TEXT: {"type": "plain_text_input", "value": "Load-test checkout"}},
                            Field.OWNER: {Field.OWNER: {"type": "users_select", "selected_user": BOB}},
                            Field.DUE: {Field.DUE: {"type": "datepicker", "selected_date": "2026-01-20"}}})
    [row] = await rows(bot)
    assert (row.text, row.owner_id, row.incident_id) == ("Load-test checkout", BOB, incident.id)
    assert row.due is not None and row.due.date() == date(2026, 1, 21)


async def test_an_unowned_overdue_followup_reminds_the_scribe(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", "role scribe <@U0CAROL01>", channel=channel)
    await bot.command("/incident", "followup Fix dashboards due 2026-01-05", channel=channel)
    clock.advance(days=1)
    await bot.run_job("followups.remind")
    [dm] = [m.text for m in bot.messages("U0CAROL01") if "was due" in m.text]
    assert dm.startswith("⏰ An unowned follow-up #1 of INC-1 was due 2026-01-05")


async def test_postmortem_command_lists_followups_with_links(make_bot: Any,
                                                             github: tuple[GitHubIssues, str]) -> None:
    _fake, url = github
    bot = await make_bot(config=github_config(url))
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", f"followup Add a retry budget <@{BOB}>", channel=channel)
    await bot.command("/incident", "postmortem", channel=channel)
    text = " ".join(bot.ephemeral_texts())
    assert "## Follow-ups" in text and "<https://github.com/acme/ops/issues/1|1>" in text
