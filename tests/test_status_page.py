"""The built-in status page: GET /status, /status.json and the Atom feed over real HTTP, fed by the monitor
and by public updates published through signed Slack requests (`/incident publish`, the update modal)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.models import ComponentState, IncidentEvent, PublicUpdate
from tests.conftest import load_test_config
from tests.test_status_page_support import declare, monitor, page_config, running_target

ATOM = "{http://www.w3.org/2005/Atom}"


def states(page: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in page["components"]}


async def get_page(bot: BotHarness) -> tuple[str, dict[str, Any], ET.Element]:
    assert bot.http is not None
    html, js, feed = (await bot.http.get("/status"), await bot.http.get("/status.json"),
                      await bot.http.get("/status/feed.atom"))
    assert html.status_code == js.status_code == feed.status_code == 200
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert feed.headers["content-type"] == "application/atom+xml; charset=utf-8"
    return html.text, js.json(), ET.fromstring(feed.content)


async def test_all_operational(make_bot: Any) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url))
        await monitor(bot)
        html, page, feed = await get_page(bot)
    assert page["status"] == {"indicator": "operational", "description": "All systems operational"}
    assert states(page) == {"API": "operational", "Checkout": "operational", "Website": "operational"}
    assert 'id="overall" data-state="operational">All systems operational<' in html
    assert html.count('data-state="operational"') == 4 and "<script" not in html
    assert "No incidents in the last 90 days." in html
    assert [e for e in feed.iter(f"{ATOM}entry")] == []
    assert len(page["components"][0]["days"]) == 90 and page["components"][0]["days"][-1]["uptime"] == 100.0
    assert page["components"][0]["days"][0]["status"] is None  # before the history began: no data


async def test_a_partial_outage_with_an_incident_and_two_public_updates(make_bot: Any) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url))
        await monitor(bot)
        target.down("checkout-db")  # one of Checkout's two checks
        bot.clock.advance(minutes=1)
        await monitor(bot)
        _html, page, _feed = await get_page(bot)
        assert states(page)["Checkout"] == "partial_outage" and page["incidents"] == []

        incident = await declare(bot, "Payments failing", "P1", service="checkout")
        await bot.command("/incident", "publish We are investigating failed card payments.",
                          channel=incident.channel_id or "")
        bot.clock.advance(minutes=10)
        await bot.command("/incident", f"publish {incident.ref} identified A fix is being rolled out.")
        html, page, feed = await get_page(bot)

    assert states(page) == {"API": "operational", "Checkout": "major_outage", "Website": "operational"}  # P1
    [shown] = page["incidents"]
    assert shown["name"] == "Service disruption: Checkout" and shown["status"] == "identified"
    assert [(u["status"], u["text"]) for u in shown["updates"]] == [
        ("identified", "A fix is being rolled out."), ("investigating", "We are investigating failed card payments.")]
    assert html.index("A fix is being rolled out.") < html.index("We are investigating failed card payments.")
    assert page["status"]["indicator"] == "major_outage"
    assert [e.findtext(f"{ATOM}title") for e in feed.iter(f"{ATOM}entry")] == [
        "Service disruption: Checkout: identified", "Service disruption: Checkout: investigating"]
    # The incident's channel is told each time; the requester gets an answer.
    notes = [m.all_text() for m in bot.messages(incident.channel_id or "") if "status page" in m.all_text()]
    assert len(notes) == 2 and "A fix is being rolled out." in notes[1]
    assert any("Published INC-1 to the status page as *identified*" in t for t in bot.ephemeral_texts())
    async with bot.deps.db.session() as session:
        history = (await session.scalars(select(ComponentState).where(ComponentState.component == "Checkout")
                                         .order_by(ComponentState.id))).all()
        events = (await session.scalars(select(IncidentEvent).where(IncidentEvent.kind == "published")
                                        .order_by(IncidentEvent.id))).all()
    assert [h.state for h in history] == ["operational", "partial_outage", "major_outage"]
    assert [e.text for e in events] == ["Status page (investigating): We are investigating failed card payments.",
                                        "Status page (identified): A fix is being rolled out."]


async def test_a_lower_severity_incident_overrides_the_monitors(make_bot: Any) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, incident_states={"P3": "degraded_performance"}))
        await monitor(bot)
        incident = await declare(bot, "Slow API", "P3", service="api")
        await bot.command("/incident", "publish Some requests are slow.", channel=incident.channel_id or "")
        _html, page, _feed = await get_page(bot)
    assert states(page)["API"] == "degraded_performance" and page["status"]["indicator"] == "degraded_performance"


async def test_nothing_internal_reaches_the_page(make_bot: Any) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url))
        await monitor(bot)
        incident = await declare(bot, "INTERNALTITLE db-primary-7 failover", "P2", service="checkout")
        channel = incident.channel_id or ""
        await bot.command("/incident", "update identified INTERNALUPDATE replica lag on db-primary-7",
                          channel=channel)
        check_url = f"{target.url}/checkout-db"
        await bot.command("/incident", f"publish <@U0ALICE01> <!here> see <#{channel}|{incident.channel_name}> and "
                                       f"<{check_url}|the dashboard> {target.url}/api #{incident.channel_name} "
                                       "<!subteam^S0ONCALL|@oncall> U0BOB0001 Payments fail for some customers; "
                                       "details on <https://example.com/help|our help page>.", channel=channel)
        html, page, feed = await get_page(bot)
        raw = [html, str(page), ET.tostring(feed, encoding="unicode")]
        async with bot.deps.db.session() as session:
            [stored] = (await session.scalars(select(PublicUpdate))).all()
    internal = ["U0ALICE01", "U0BOB0001", "S0ONCALL", "@oncall", channel, incident.channel_name or "?", "INTERNAL",
                "db-primary-7", target.url.split("//")[1], "the dashboard", "!here", "@here"]
    for text in raw:
        for secret in internal:
            assert secret not in text, (secret, text[:200])
    assert stored.text == ("see and Payments fail for some customers; details on our help page "
                           "(https://example.com/help).")
    assert "Payments fail for some customers" in html and stored.author == "U0ALICE01"


async def test_the_update_modal_publishes_its_own_public_message(make_bot: Any) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url))
        incident = await declare(bot, "Checkout errors", "P2", service="checkout")
        announcement = bot.messages("#incidents")[0]
        await bot.click("incident_update_open", str(incident.id), message=announcement)
        view = bot.last_view()
        blocks = {b.get("block_id"): b for b in view["blocks"]}
        assert blocks["status_page_publish"]["element"]["type"] == "checkboxes"
        assert blocks["status_page_message"]["element"]["initial_value"] == \
            "We are investigating an issue affecting Checkout."
        values = {"message": {"message": {"type": "plain_text_input", "value": "INTERNAL rollback of cart-svc"}},
                  "status": {"status": {"type": "static_select", "selected_option": {"value": "identified"}}},
                  "status_page_publish": {"status_page_publish": {
                      "type": "checkboxes", "selected_options": [{"value": "publish"}]}},
                  "status_page_message": {"status_page_message": {
                      "type": "plain_text_input", "value": "We found the cause and are fixing it."}}}
        await bot.submit(view, values)
        # Ticked without a message: the modal says so and nothing is posted.
        await bot.click("incident_update_open", str(incident.id), message=announcement)
        empty = {**values, "status_page_message": {"status_page_message": {"type": "plain_text_input",
                                                                           "value": None}}}
        refused = await bot.submit(bot.last_view(), empty)
        # Not ticked: an internal update only.
        await bot.click("incident_update_open", str(incident.id), message=announcement)
        await bot.submit(bot.last_view(), {k: v for k, v in values.items() if k != "status_page_publish"})
        html, page, _feed = await get_page(bot)
    assert refused.json()["errors"] == {"status_page_message": "Write the message customers will read (or untick "
                                                               "“Publish”)."}
    [shown] = page["incidents"]
    assert [(u["status"], u["text"]) for u in shown["updates"]] == [
        ("identified", "We found the cause and are fixing it.")]
    assert "INTERNAL" not in html and "cart-svc" not in html
    assert any("INTERNAL rollback of cart-svc" in m.all_text() for m in bot.messages(incident.channel_id or ""))


async def test_resolving_publishes_and_the_incident_moves_to_history(make_bot: Any) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, publish_on_declare=True))
        target.down("api")
        await monitor(bot)
        incident = await declare(bot, "API down", "P1", service="api")
        await bot.run_job("statuspage.sync")  # the declaration's message (publish_on_declare)
        _html, page, _feed = await get_page(bot)
        assert page["incidents"][0]["updates"][0]["text"] == "We are investigating an issue affecting API."
        target.up()
        bot.clock.advance(minutes=20)
        await bot.command("/incident", "resolve Rolled back api", channel=incident.channel_id or "")
        await monitor(bot)
        await monitor(bot)  # a second run publishes nothing twice
        bot.clock.advance(minutes=20)
        html, page, feed = await get_page(bot)
    assert page["incidents"] == [] and states(page)["API"] == "operational"
    [past] = page["history"]
    assert past["status"] == "resolved" and past["resolved_at"] is not None
    assert [u["text"] for u in past["updates"]] == ["This incident has been resolved.",
                                                    "We are investigating an issue affecting API."]
    assert "Past incidents" in html and "This incident has been resolved." in html
    assert len(list(feed.iter(f"{ATOM}entry"))) == 2
    api = next(c for c in page["components"] if c["name"] == "API")
    assert api["days"][-1] == {"date": "2026-01-05", "status": "major_outage", "uptime": 50.0}  # 20 of 40 min


async def test_caching_headers_and_no_third_party_assets(make_bot: Any) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, cache_seconds=60))
        assert bot.http is not None
        first = await bot.http.get("/status")
        again = await bot.http.get("/status", headers={"If-None-Match": first.headers["etag"]})
    assert first.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=60"
    assert first.headers["content-security-policy"].startswith("default-src 'none'")
    assert again.status_code == 304 and again.content == b""
    assert "http" not in first.text.split("<body>")[0].replace('content="width', "")  # no external link in <head>
    for marker in ("<script", "src=", "@import", "url("):
        assert marker not in first.text


async def test_without_a_status_page_the_routes_answer_404_and_publish_says_why(make_bot: Any) -> None:
    bot = await make_bot(config=load_test_config())
    assert bot.http is not None
    assert (await bot.http.get("/status")).status_code == 404
    assert (await bot.http.get("/status.json")).status_code == 404
    answer = await bot.command("/incident", "publish INC-1 Hello")
    assert "No status page is configured" in answer.json()["text"]


async def test_publish_usage_and_unknown_incident(make_bot: Any) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url))
        answer = await bot.command("/incident", "publish")
        assert "Usage: `/incident publish" in answer.json()["text"]
        await bot.command("/incident", "publish INC-42 Hello")
        assert "INC-42" in bot.ephemeral_texts()[-1]
        await bot.command("/incident", "publish Hello")  # not in an incident channel
        assert bot.ephemeral_texts()[-1].startswith(":warning:")
        async with bot.deps.db.session() as session:
            assert (await session.scalars(select(PublicUpdate))).all() == []
