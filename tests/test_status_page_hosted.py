"""The hosted mirror: public updates and component statuses on an Atlassian Statuspage (a local stand-in
answering the REST API's documented shapes), retried when it fails, and the incident channel told at last."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot import jobs
from bot.emulator.harness import BotHarness
from bot.emulator.statuspage import StatuspageServer
from bot.models import StatuspageIncident
from tests.test_status_page_support import declare, monitor, page_config, running_target

KEY = "sp-secret-key-0123456789"


@pytest.fixture
async def statuspage(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StatuspageServer]:
    monkeypatch.setenv("STATUSPAGE_API_KEY", KEY)
    monkeypatch.setattr(jobs, "BACKOFF_BASE", 0.01)
    async with StatuspageServer(page_id="pg1", api_key=KEY, components={"cmp-api": "API", "cmp-co": "Checkout"}) as sp:
        yield sp


def hosted(sp: StatuspageServer) -> dict[str, Any]:
    return {"page_id": "pg1", "api_key": "${STATUSPAGE_API_KEY}", "api_url": sp.url,
            "components": {"API": "cmp-api", "Checkout": "cmp-co"}}


async def link(bot: BotHarness, incident_id: int) -> StatuspageIncident | None:
    async with bot.deps.db.session() as session:
        return await session.scalar(select(StatuspageIncident).where(StatuspageIncident.incident_id == incident_id))


async def test_public_updates_and_the_resolution_are_mirrored(make_bot: Any, statuspage: StatuspageServer) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, hosted=hosted(statuspage)))
        incident = await declare(bot, "INTERNAL payments", "P2", service="checkout")
        await bot.command("/incident", "publish Card payments fail for some customers.",
                          channel=incident.channel_id or "")
        await bot.command("/incident", "publish monitoring A fix is out.", channel=incident.channel_id or "")
        [mirrored] = statuspage.state.incidents.values()
        assert mirrored["name"] == "Service disruption: Checkout" and mirrored["status"] == "monitoring"
        assert [(u["status"], u["body"]) for u in mirrored["incident_updates"]] == [
            ("monitoring", "A fix is out."), ("investigating", "Card payments fail for some customers.")]
        assert statuspage.state.components["cmp-co"]["status"] == "partial_outage"
        assert statuspage.state.components["cmp-api"]["status"] == "operational"

        await bot.command("/incident", "resolve Fixed", channel=incident.channel_id or "")
        await monitor(bot)  # the resolution's public message, then its push
        await monitor(bot)  # nothing is sent twice
    assert mirrored["status"] == "resolved" and len(mirrored["incident_updates"]) == 3
    assert mirrored["incident_updates"][0]["body"] == "This incident has been resolved."
    assert statuspage.state.components["cmp-co"]["status"] == "operational"
    methods = [(m, p.rsplit("/", 2)[-2]) for m, p, _b in statuspage.state.requests]
    assert sorted(methods) == [("PATCH", "components"), ("PATCH", "incidents"), ("PATCH", "incidents"),
                               ("POST", "pg1")]  # one incident, two updates, Checkout back to operational
    assert all("INTERNAL" not in str(b) for _m, _p, b in statuspage.state.requests)
    row = await link(bot, incident.id)
    assert row is not None and row.external_id == mirrored["id"] and row.attempts == 0 and row.error is None


async def test_component_states_follow_the_monitors(make_bot: Any, statuspage: StatuspageServer) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, hosted=hosted(statuspage)))
        await monitor(bot)
        target.down("api")
        bot.clock.advance(minutes=1)
        await monitor(bot)
        assert statuspage.state.components["cmp-api"]["status"] == "major_outage"
        target.up()
        bot.clock.advance(minutes=1)
        await monitor(bot)
    assert statuspage.state.components["cmp-api"]["status"] == "operational"
    paths = [p for m, p, _b in statuspage.state.requests if m == "PATCH"]
    # The first sync records every component (all operational: sent once), then only changes.
    assert paths.count("/v1/pages/pg1/components/cmp-api") == 3


async def test_a_transient_failure_is_retried(make_bot: Any, statuspage: StatuspageServer) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, hosted=hosted(statuspage)))
        incident = await declare(bot, "Payments", "P2", service="checkout")
        statuspage.state.fail(1, status=503)
        await bot.command("/incident", "publish Looking into it.", channel=incident.channel_id or "")
    assert len(statuspage.state.incidents) == 1
    assert not any("did not take" in m.text for m in bot.messages(incident.channel_id or ""))


async def test_after_the_last_attempt_the_incident_channel_is_told(make_bot: Any,
                                                                    statuspage: StatuspageServer) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, hosted=hosted(statuspage)))
        incident = await declare(bot, "Payments", "P2", service="checkout")
        statuspage.state.fail(10, status=503)
        await bot.command("/incident", "publish Looking into it.", channel=incident.channel_id or "")
        told = [m.text for m in bot.messages(incident.channel_id or "") if "did not take" in m.text]
        assert told == [":warning: The hosted status page (Statuspage) did not take INC-1's public update: "
                        "Statuspage answered 503. opsbot's own page has it; publish again to retry."]
        assert len(told) == 1 and KEY not in told[0]
        assert statuspage.state.incidents == {}
        row = await link(bot, incident.id)
        assert row is not None and row.external_id is None and row.error == "Statuspage answered 503"
        # The built-in page has it all along; the next sync pushes what is still missing.
        statuspage.state._faults.clear()
        await bot.run_job("statuspage.sync")
    assert len(statuspage.state.incidents) == 1


async def test_a_refusal_is_final_and_never_shows_the_key(make_bot: Any, statuspage: StatuspageServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATUSPAGE_API_KEY", "wrong-key-9876543210")
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, hosted=hosted(statuspage)))
        incident = await declare(bot, "Payments", "P2", service="checkout")
        await bot.command("/incident", "publish Looking into it.", channel=incident.channel_id or "")
    [told] = [m.text for m in bot.messages(incident.channel_id or "") if "did not take" in m.text]
    assert "401 Could not authenticate" in told and "wrong-key" not in told
    assert statuspage.state.requests == []  # refused before anything was accepted
