"""Incidents escalating through a policy with the real parts: signed Slack requests, the PagerDuty stand-in,
a real SMTP server, on-call schedules, and the FakeClock for the levels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.config import Config
from bot.emulator.harness import BotHarness
from bot.emulator.mail import MailServer
from bot.emulator.pagerduty import PagerDutyServer
from bot.models import EscalationStep, Incident, IncidentEvent, Page
from tests.conftest import load_test_config

ROUTING_KEY = "R0UTINGKEY0123456789ABCDEFGHIJKL"
WEBHOOK_SECRET = "pd-webhook-signing-secret"
JOB = "paging.escalate"
POLICY = {"levels": [
    {"notify": ["oncall:primary", "pagerduty:checkout"], "after": "0m"},
    {"notify": ["oncall:secondary", "@eng-leads", "email:leads@example.com"], "after": "15m"},
    {"notify": ["@vp-eng"], "after": "1h"}]}


@pytest.fixture
async def pd(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PagerDutyServer]:
    async with PagerDutyServer() as server:
        monkeypatch.setenv("PD_URL", server.url)
        monkeypatch.setenv("PD_KEY", ROUTING_KEY)
        monkeypatch.setenv("PD_WEBHOOK_SECRET", WEBHOOK_SECRET)
        yield server


@pytest.fixture
def mail() -> Iterator[MailServer]:
    with MailServer() as server:
        yield server


def paging_config(pd: PagerDutyServer, mail: MailServer, **severity: Any) -> Config:
    return load_test_config({
        "escalation_policies": {"critical": POLICY},
        "severities": [
            {"name": "P1", "description": "Platform down", "response": "immediate", "escalation_policy": "critical",
             "remind_after": "0s", **severity},
            {"name": "P2", "description": "Major feature broken", "response": "1h", "escalate_to": ["@eng-leads"]}],
        "paging": {"retries": 3,
                   "pagerduty": {"events_url": "${PD_URL}", "webhook_secret": "${PD_WEBHOOK_SECRET}",
                                 "services": {"checkout": {"routing_key": "${PD_KEY}"}}},
                   "email": {"host": "127.0.0.1", "port": mail.port, "security": "none",
                             "from": "opsbot@example.com"}}})


@pytest.fixture
def config(pd: PagerDutyServer, mail: MailServer) -> Config:
    return paging_config(pd, mail)


async def declare(bot: BotHarness, text: str = "open P1 Checkout is down") -> Incident:
    await bot.command("/incident", text)
    async with bot.deps.db.session() as session:
        return (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()  # type: ignore[return-value]


def escalations(bot: BotHarness, incident: Incident) -> list[str]:
    return [m.text for m in bot.messages(incident.channel_id or "") if m.text.startswith("📣")]


async def steps(bot: BotHarness) -> list[tuple[int, int]]:
    async with bot.deps.db.session() as session:
        rows = (await session.scalars(select(EscalationStep).order_by(EscalationStep.id))).all()
        return [(r.cycle, r.level) for r in rows]


async def pages(bot: BotHarness) -> list[Page]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(Page).order_by(Page.id))).all())


async def timeline(bot: BotHarness, incident: Incident, kind: str) -> list[str]:
    async with bot.deps.db.session() as session:
        query = select(IncidentEvent.text).where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == kind)
        return list((await session.scalars(query.order_by(IncidentEvent.id))).all())


async def test_p1_policy_fires_level_one_at_once_level_two_after_15m_and_stops_on_ack(
        bot: BotHarness, clock: FakeClock, pd: PagerDutyServer, mail: MailServer) -> None:
    incident = await declare(bot)
    # Level 1 at once: whoever is on call in `primary` (Alice) and PagerDuty's checkout service.
    [first] = escalations(bot, incident)
    assert first.startswith("📣 <@U0ALICE01>: INC-1 (P1) needs a response (level 1 of `critical`)")
    assert "Notified: <@U0ALICE01> (oncall:primary), pagerduty:checkout (PagerDuty)" in first
    [event] = pd.state.events
    assert (event.action, event.dedup_key, event.routing_key) == ("trigger", "opsbot-incident-1", ROUTING_KEY)
    assert event.summary.startswith("INC-1 · P1 · Checkout is down")
    assert await timeline(bot, incident, "paged") == ["Paged pagerduty:checkout"]
    # Noted in the incidents channel too (in the announcement's thread).
    assert any(m.thread_ts and "INC-1 escalated to <@U0ALICE01> (oncall:primary)" in m.text
               for m in bot.messages("#incidents"))

    # An update is not an acknowledgement: level 2 still fires after 15 minutes.
    clock.advance(minutes=5)
    await bot.command("/incident", "update identified Bad deploy", channel=incident.channel_id or "")
    clock.advance(minutes=9)
    await bot.run_job(JOB)
    assert len(escalations(bot, incident)) == 1
    clock.advance(minutes=1)
    await bot.run_job(JOB)
    second = escalations(bot, incident)[1]
    assert "<@U0BOB0001>" in second and "<!subteam^S0LEADS01>" in second and "(level 2 of `critical`)" in second
    assert "email:leads@example.com (e-mail)" in second
    [received] = mail.messages
    assert received.to == "leads@example.com" and "INC-1" in received.subject
    # The people reached are in the incident channel: Bob (secondary) and Carol (eng-leads' member).
    assert {"U0BOB0001", "U0CAROL01"} <= set(bot.slack.channel(incident.channel_id or "").members)

    # Acknowledged: level 3 never fires, and PagerDuty hears of it.
    await bot.command("/incident", "ack", user="U0BOB0001", channel=incident.channel_id or "")
    clock.advance(hours=2)
    await bot.run_job(JOB)
    assert len(escalations(bot, incident)) == 2
    assert await steps(bot) == [(0, 0), (0, 1)]
    assert [e.action for e in pd.state.events] == ["trigger", "acknowledge"]
    assert pd.state.alert("opsbot-incident-1").status == "acknowledged"  # type: ignore[union-attr]


async def test_a_policy_firing_across_a_restart_fires_each_level_once(
        make_bot: Any, clock: FakeClock, config: Config, pd: PagerDutyServer) -> None:
    first = await make_bot(config=config)
    incident = await declare(first)
    clock.advance(minutes=15)
    await first.run_job(JOB)
    await first.stop()
    second = await make_bot(config=config)  # same database: what fired is remembered
    await second.run_job(JOB)
    clock.advance(minutes=45)
    await second.run_job(JOB)
    await second.run_job(JOB)
    assert await steps(second) == [(0, 0), (0, 1), (0, 2)]
    assert len(escalations(second, incident)) == 3
    assert [e.action for e in pd.state.events] == ["trigger"]  # PagerDuty paged once, by level 1


async def test_a_page_that_fails_twice_then_succeeds_is_delivered_once(bot: BotHarness, pd: PagerDutyServer) -> None:
    pd.state.fail(2, status=500)
    incident = await declare(bot)
    [page] = await pages(bot)
    assert (page.status, page.attempts, page.provider, page.target) == ("delivered", 3, "pagerduty",
                                                                         "pagerduty:checkout")
    assert [e.action for e in pd.state.events] == ["trigger"]
    assert await timeline(bot, incident, "paged") == ["Paged pagerduty:checkout"]


async def test_a_page_that_keeps_failing_is_told_in_the_incident_channel(bot: BotHarness, pd: PagerDutyServer) -> None:
    pd.state.fail(10, status=503)
    incident = await declare(bot)
    [page] = await pages(bot)
    assert (page.status, page.attempts) == ("failed", 4)  # 1 + paging.retries
    assert pd.state.events == []
    told = [m.text for m in bot.messages(incident.channel_id or "") if m.text.startswith("⚠️ Paging")]
    assert len(told) == 1 and "pagerduty:checkout" in told[0] and "after 4 attempts" in told[0]
    assert ROUTING_KEY not in told[0]
    [paged] = await timeline(bot, incident, "paged")
    assert paged.startswith("Paged pagerduty:checkout: failed after 4 attempts")


async def test_inform_targets_are_told_at_declaration_whether_or_not_anyone_acknowledges(
        make_bot: Any, pd: PagerDutyServer, mail: MailServer, clock: FakeClock) -> None:
    bot = await make_bot(config=paging_config(pd, mail, inform=["@vp-eng", "email:cto@example.com"]))
    incident = await declare(bot)
    informed = [t for t in escalations(bot, incident) if "for your information" in t]
    assert len(informed) == 1 and "<!subteam^S0VPENG01>" in informed[0]
    assert [m.to for m in mail.messages] == ["cto@example.com"]
    await bot.command("/incident", "ack", channel=incident.channel_id or "")
    clock.advance(hours=1)
    await bot.run_job(JOB)
    assert len(mail.messages) == 1  # once, at declaration
    assert await timeline(bot, incident, "escalated") == [
        "Escalated to oncall:primary, pagerduty:checkout (level 1 of critical)",
        "Informed @vp-eng, email:cto@example.com (declared P1)"]


async def test_resolving_resolves_the_pagerduty_incident(bot: BotHarness, pd: PagerDutyServer) -> None:
    incident = await declare(bot)
    await bot.command("/incident", "resolve Rolled back", channel=incident.channel_id or "")
    assert [e.action for e in pd.state.events] == ["trigger", "resolve"]
    assert pd.state.alert("opsbot-incident-1").status == "resolved"  # type: ignore[union-attr]


async def test_legacy_escalate_to_still_escalates_once_after_the_response_time(bot: BotHarness,
                                                                                clock: FakeClock) -> None:
    incident = await declare(bot, "open P2 Search is slow")
    clock.advance(minutes=60)
    await bot.run_job(JOB)
    await bot.run_job("incidents.timers")  # both timers: still once
    [message] = escalations(bot, incident)
    assert "<!subteam^S0LEADS01>" in message and "not been acknowledged within 1h" in message
    assert "U0CAROL01" in bot.slack.channel(incident.channel_id or "").members  # eng-leads' member invited


async def test_opsgenie_and_lost_page_jobs(make_bot: Any, pd: PagerDutyServer, mail: MailServer,
                                           monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """An Opsgenie team in a policy is created, then acknowledged by alias; a page whose job was lost (stored,
    never attempted) is sent by the timer a few minutes later, once."""
    from bot.emulator.opsgenie import OpsgenieServer

    async with OpsgenieServer(api_key="og-test-key") as og:
        monkeypatch.setenv("OG_URL", og.url)
        monkeypatch.setenv("OG_KEY", "og-test-key")
        config = paging_config(pd, mail)
        data = config.model_dump(by_alias=True, mode="json", exclude_unset=True)
        data["paging"]["opsgenie"] = {"api_url": "${OG_URL}", "api_key": "${OG_KEY}", "teams": ["sre"]}
        data["escalation_policies"]["critical"]["levels"][0]["notify"].append("opsgenie:sre")
        bot = await make_bot(config=load_test_config(data))
        incident = await declare(bot)
        [alert] = og.state.alerts.values()
        assert alert.alias == "opsbot-incident-1" and alert.responders == [{"type": "team", "name": "sre"}]
        await bot.command("/incident", "ack", channel=incident.channel_id or "")
        assert alert.acknowledged

        # A page stored without its job (as if the process died right after the commit).
        async with bot.deps.db.session() as session:
            session.add(Page(key="incident:1/lost", subject="incident:1", target="pagerduty:checkout",
                             provider="pagerduty", action="trigger", dedup_key="opsbot-incident-1", status="pending",
                             attempts=0, requested_by="opsbot", message="lost", created_at=clock()))
        await bot.run_job(JOB)
        assert [e.action for e in pd.state.events] == ["trigger", "acknowledge"]  # not yet: it may be queued
        clock.advance(minutes=3)
        await bot.run_job(JOB)
        await bot.run_job(JOB)
        assert [e.action for e in pd.state.events] == ["trigger", "acknowledge", "trigger"]
