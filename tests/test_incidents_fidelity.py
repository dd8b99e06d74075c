"""Incidents as runbooks write them (issue 17): the one-line form's key=value fields, the first status message
from the team's template at declaration, severity labels, and a failing template said so in the channel."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.models import Incident, IncidentEvent
from commands.incident.parse import parse, split_fields
from tests.conftest import load_test_config

SEVERITIES = [
    {"name": "P1", "label": "Critical", "description": "Complete outage", "response": "immediate"},
    {"name": "P2", "label": "High", "description": "Major feature broken", "response": "1h"},
    {"name": "P3", "description": "Minor feature impacted", "response": "4h"},
]
ENVIRONMENTS = {"prod": {"default": True, "checks": [
    {"name": "checkout", "url": "http://127.0.0.1:9/health", "services": ["checkout"]},
    {"name": "search", "url": "http://127.0.0.1:9/search", "services": ["search"]}]}, "staging": {}}
# The runbook's communication template, as a team writes it.
RUNBOOK_TEMPLATE = """🚨 INCIDENT: {{ incident.service }} - {{ incident.title }}
Status: {{ incident.status | capitalize }}
Severity: {{ severity.shown }}
Impact: {{ incident.impact or "Being assessed" }}
ETA: {{ incident.eta or "Unknown" }}
Commander: <@{{ incident.commander_id }}>
Updates:
{% for update in updates %}
- [{{ update.at | hhmm }}] {{ update.text }}
{% endfor %}"""


def fidelity_config(**incidents: Any) -> Any:
    return load_test_config({"severities": SEVERITIES, "environments": ENVIRONMENTS,
                             **({"incidents": incidents} if incidents else {})})


async def latest(bot: BotHarness) -> Incident:
    async with bot.deps.db.session() as session:
        found = (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()
        assert found is not None
        return found


async def kinds(bot: BotHarness, incident: Incident) -> list[str]:
    async with bot.deps.db.session() as session:
        query = select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id).order_by(IncidentEvent.id)
        return list((await session.scalars(query)).all())


async def test_one_line_form_sets_what_the_template_shows(make_bot: Any) -> None:
    bot = await make_bot(config=fidelity_config(update_template=RUNBOOK_TEMPLATE))
    await bot.command("/incident", 'open P1 Checkout down service=checkout impact=“EU card payments fail” eta=30m '
                      "env=PROD commander=<@U0BOB0001|bob>", user="U0ALICE01")
    incident = await latest(bot)
    assert (incident.title, incident.service, incident.environment) == ("Checkout down", "checkout", "prod")
    assert (incident.impact, incident.eta, incident.commander_id) == ("EU card payments fail", "30m", "U0BOB0001")
    assert incident.reporter_id == "U0ALICE01"
    summary = next(m for m in bot.messages(incident.channel_id or "") if m.pinned).all_text()
    assert "EU card payments fail" in summary and "30m" in summary and "checkout (prod)" in summary

    # The first status message comes from the team's template, in both channels, at declaration.
    first = "\n".join(["🚨 INCIDENT: checkout - Checkout down", "Status: Investigating", "Severity: P1 (Critical)",
                       "Impact: EU card payments fail", "ETA: 30m", "Commander: <@U0BOB0001>", "Updates:",
                       "- [09:00] Initial alert received"])
    assert [m.text for m in bot.messages(incident.channel_id or "") if m.text.startswith("🚨 INCIDENT")] == [first]
    assert [m.text for m in bot.messages("#incidents") if m.text.startswith("🚨 INCIDENT")] == [first]

    bot.clock.advance(minutes=7)  # type: ignore[attr-defined]
    await bot.command("/incident", "update identified Bad deploy", channel=incident.channel_id or "")
    text = bot.messages(incident.channel_id or "")[-1].text
    assert "- [09:00] Initial alert received\n- [09:07] Bad deploy" in text and "Status: Identified" in text


async def test_the_declarations_description_is_the_first_update(make_bot: Any) -> None:
    bot = await make_bot(config=fidelity_config(update_template=RUNBOOK_TEMPLATE))
    await bot.command("/incident", 'P2 Search slow service=search description="p99 at 4s since 08:50"')
    incident = await latest(bot)
    assert incident.description == "p99 at 4s since 08:50"
    assert bot.messages("#incidents")[-1].text.endswith("- [09:00] p99 at 4s since 08:50")


async def test_no_template_configured_posts_no_first_status(make_bot: Any) -> None:
    bot = await make_bot(config=fidelity_config())
    await bot.command("/incident", "open P2 Search slow impact=some")
    incident = await latest(bot)
    assert not any("INCIDENT" in m.text for m in bot.messages(incident.channel_id or ""))
    assert incident.impact == "some"


async def test_unknown_key_environment_and_service_list_the_valid_ones(make_bot: Any) -> None:
    bot = await make_bot(config=fidelity_config())
    answers = []
    for text in ("open P1 Down servce=checkout", "open P1 Down env=qa", "open P1 Down service=billing",
                 'open P1 Down impact="never closed', "open P1 Down commander=bob"):
        answers.append((await bot.command("/incident", text)).json()["text"])
    assert "Unknown field `servce=`" in answers[0]
    assert "`service=`, `environment=`, `impact=`, `eta=`, `description=`, `commander=`" in answers[0]
    assert "Unknown environment `qa`. Valid environments: `prod`, `staging`." in answers[1]
    assert "Unknown service `billing`. Valid services: `checkout`, `search`." in answers[2]
    assert "no closing quote" in answers[3]
    assert "commander=@jane" in answers[4]
    async with bot.deps.db.session() as session:
        assert (await session.scalars(select(Incident))).first() is None  # nothing was declared


async def test_labels_show_beside_the_severity(make_bot: Any) -> None:
    bot = await make_bot(config=fidelity_config())
    await bot.command("/incident", "open P2 Search slow")
    incident = await latest(bot)
    announcement = bot.messages("#incidents")[0].all_text()
    assert "INC-1 · P2 (High) · Search slow" in announcement and "P2 (High) — Major feature broken" in announcement
    await bot.command("/incident", "update Looking", channel=incident.channel_id or "")
    assert "*Severity:* P2 (High) — Major feature broken" in bot.messages(incident.channel_id or "")[-1].text

    await bot.command("/incident", "open P3 Typo")  # no label: as before
    assert "INC-2 · P3 · Typo" in bot.messages("#incidents")[-1].all_text()

    await bot.command("/incident", "list")
    listed = bot.ephemeral_texts()[-1]
    assert "*INC-1* · *P2 (High)*" in listed and "*INC-2* · *P3*" in listed

    await bot.command("/incident", "resolve Scaled search", channel=incident.channel_id or "")
    postmortem = next(m for m in bot.messages(incident.channel_id or "") if "Postmortem draft" in m.text)
    assert "**Severity:** P2 (High)" in postmortem.all_text()

    await bot.command("/incident", "")
    options = next(b for b in bot.last_view()["blocks"] if b.get("block_id") == "severity")["element"]["options"]
    assert [o["text"]["text"] for o in options] == ["P1 (Critical)", "P2 (High)", "P3"]


async def test_a_failing_template_uses_the_bundled_one_and_says_so_once(make_bot: Any) -> None:
    broken = "{{ incident.ref }}: {{ incident.servce }}"  # a misspelt field
    bot = await make_bot(config=fidelity_config(update_template=broken))
    await bot.command("/incident", "open P2 Search slow")
    incident = await latest(bot)
    await bot.command("/incident", "update Still slow", channel=incident.channel_id or "")
    channel = [m.text for m in bot.messages(incident.channel_id or "")]
    # Declaration and update both went out from the bundled template…
    assert sum(t.startswith("🚨 *INCIDENT: Search slow") or t.startswith("🚨 *INCIDENT: Platform - Search slow")
               for t in channel) == 2
    # …and the incident channel was told once why, naming the field.
    notices = [t for t in channel if "incidents.update_template" in t]
    assert len(notices) == 1
    assert "incident.servce is not defined" in notices[0] and "bundled template" in notices[0]
    assert not any("incidents.update_template" in m.text for m in bot.messages("#incidents"))
    assert (await kinds(bot, incident)).count("template_failed") == 1


def test_quoted_values_keep_apostrophes_and_smart_quotes() -> None:
    config = fidelity_config()
    command = parse("open P1 EU pay impact=‘EU can’t pay’ eta='in 30 min' description=“isolation ‘not’ verified”",
                    config)
    assert command.text == "EU pay"
    assert command.fields == {"impact": "EU can’t pay", "eta": "in 30 min", "description": "isolation ‘not’ verified"}
    assert split_fields('x key="two  words" y') == (["x", "y"], [("key", "two  words")])


async def test_fields_without_a_title_are_refused_not_dropped(make_bot: Any) -> None:
    bot = await make_bot(config=fidelity_config())
    answer = (await bot.command("/incident", "open P1 service=checkout")).json()["text"]
    assert "Give the incident a title" in answer and "service=checkout" in answer
    assert bot.slack.view_log == []
