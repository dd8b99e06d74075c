"""Declaring incidents end to end: command, modal, shortcuts, dedup, channel failures and name collisions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.models import AuditEntry, Incident, IncidentEvent


async def incidents_in(bot: BotHarness) -> list[Incident]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(Incident).order_by(Incident.id))).all())


async def test_open_declares_announces_and_sets_up_the_channel(bot: BotHarness) -> None:
    response = await bot.command("/incident", "open P1 Checkout is down", user="U0ALICE01")
    assert response.status_code == 200
    assert "Declaring a P1 incident: Checkout is down" in response.json()["text"]

    [incident] = await incidents_in(bot)
    assert (incident.ref, incident.severity, incident.status) == ("INC-1", "P1", "investigating")
    assert incident.reporter_id == incident.commander_id == "U0ALICE01"

    [announcement] = [m for m in bot.messages("#incidents") if not m.thread_ts]
    # The escalation is also noted in the incidents channel, in the announcement's thread (issue 16).
    assert [m.text for m in bot.messages("#incidents") if m.thread_ts] == [
        "📣 INC-1 escalated to <!subteam^S0VPENG01> (Slack)."]
    text = announcement.all_text()
    assert "INC-1 · P1 · Checkout is down" in text
    assert f"<#{incident.channel_id}>" in text          # edited in place once the channel existed
    assert announcement.edits == 1
    actions = next(b for b in announcement.blocks if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == ["incident_ack", "incident_update_open",
                                                               "incident_resolve_open"]

    channel = bot.slack.channel("inc-1-checkout-is-down")
    assert channel.id == incident.channel_id and incident.channel_name == channel.name
    assert "U0ALICE01" in channel.members
    assert channel.topic.startswith("P1 · Investigating · Checkout is down")
    summary = next(m for m in channel.messages if m.ts == incident.summary_ts)
    assert summary.pinned and "Checkout is down" in summary.all_text()
    # P1 responds immediately: the escalation targets are paged at declaration.
    assert any("<!subteam^S0VPENG01>" in m.text for m in channel.messages)
    assert incident.escalated_at is not None
    assert any("Declared *INC-1*" in t for t in bot.ephemeral_texts())


async def test_unknown_severity_lists_valid_ones_and_creates_nothing(bot: BotHarness) -> None:
    response = await bot.command("/incident", "open SEV9 Checkout is down")
    text = response.json()["text"]
    assert "Unknown severity `SEV9`" in text and "`P1`, `P2`, `P3`, `P4`" in text
    assert response.json()["response_type"] == "ephemeral"
    assert await incidents_in(bot) == []
    assert bot.messages("#incidents") == []
    assert not any(method == "conversations.create" for method, _ in bot.slack.calls)


async def test_severity_is_case_insensitive(bot: BotHarness) -> None:
    await bot.command("/incident", "open p2 Search is slow")
    [incident] = await incidents_in(bot)
    assert incident.severity == "P2" and incident.escalated_at is None  # P2 has an hour to respond


def modal_values(title: str = "", severity: str | None = "P2", *, commander: str = "U0ALICE01",
                 service: str | None = None, environment: str | None = None, impact: str | None = None,
                 description: str | None = None) -> dict[str, dict[str, Any]]:
    def text(value: str | None) -> dict[str, Any]:
        return {"type": "plain_text_input", "value": value or None}

    def select(value: str | None) -> dict[str, Any]:
        return {"type": "static_select", "selected_option": {"value": value} if value else None}

    return {"title": {"title": text(title)}, "severity": {"severity": select(severity)},
            "service": {"service": text(service)}, "environment": {"environment": select(environment)},
            "impact": {"impact": text(impact)}, "description": {"description": text(description)},
            "commander": {"commander": {"type": "users_select", "selected_user": commander}}}


async def test_bare_command_opens_the_modal_and_submit_declares(bot: BotHarness) -> None:
    response = await bot.command("/incident", "", user="U0ALICE01")
    assert response.status_code == 200 and response.text == ""
    view = bot.last_view()
    assert view["callback_id"] == "incident_declare"
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    options = blocks["severity"]["element"]["options"]
    assert [o["value"] for o in options] == ["P1", "P2", "P3", "P4"]
    assert options[0]["description"]["text"] == "Platform down, data loss risk · respond immediately"
    assert options[1]["description"]["text"] == "Major feature broken · respond within 1h"
    assert blocks["commander"]["element"]["initial_user"] == "U0ALICE01"
    assert [o["value"] for o in blocks["environment"]["element"]["options"]] == ["prod", "staging"]

    response = await bot.submit(view, modal_values("Payments failing", "P2", commander="U0BOB0001",
                                                   service="payments", environment="prod",
                                                   impact="20% of card payments fail",
                                                   description="Since the 09:00 deploy"))
    assert response.status_code == 200 and response.text == ""
    [incident] = await incidents_in(bot)
    assert (incident.title, incident.severity, incident.commander_id) == ("Payments failing", "P2", "U0BOB0001")
    assert (incident.service, incident.environment, incident.impact) == ("payments", "prod",
                                                                          "20% of card payments fail")
    channel = bot.slack.channel("inc-1-payments-failing")
    assert {"U0ALICE01", "U0BOB0001"} <= channel.members
    summary = next(m for m in channel.messages if m.pinned)
    assert "Since the 09:00 deploy" in summary.all_text() and "20% of card payments fail" in summary.all_text()


async def test_empty_title_is_an_inline_error_and_creates_nothing(bot: BotHarness) -> None:
    await bot.command("/incident", "open")
    response = await bot.submit(bot.last_view(), modal_values("   ", "P1"))
    body = response.json()
    assert body["response_action"] == "errors" and "title" in body["errors"]
    assert await incidents_in(bot) == []


async def test_open_with_only_a_severity_preselects_it_in_the_modal(bot: BotHarness) -> None:
    await bot.command("/incident", "open p3")
    severity = next(b for b in bot.last_view()["blocks"] if b.get("block_id") == "severity")
    assert severity["element"]["initial_option"]["value"] == "P3"


async def test_message_shortcut_prefills_description_and_links_back(bot: BotHarness) -> None:
    general = bot.slack.channel("general")
    original = bot.slack.call("chat.postMessage", {"channel": general.id, "text": "checkout 500s since 09:02"})
    message = {"type": "message", "text": "checkout 500s since 09:02", "ts": original["ts"], "user": "U0BOB0001"}
    await bot.post(bot.requests.message_shortcut("incident_declare_message", message, channel=general.id))
    await bot.settle()
    view = bot.last_view()
    description = next(b for b in view["blocks"] if b.get("block_id") == "description")
    assert description["element"]["initial_value"] == "checkout 500s since 09:02"
    permalink = f"https://emulator.slack.local/archives/{general.id}/p{original['ts'].replace('.', '')}"
    assert permalink in str(view["blocks"])

    await bot.submit(view, modal_values("Checkout errors", "P2", description="checkout 500s since 09:02"))
    [incident] = await incidents_in(bot)
    assert incident.source_link == permalink
    summary = next(m for m in bot.slack.channel(incident.channel_id or "").messages if m.pinned)
    assert permalink in summary.all_text()


async def test_global_shortcut_opens_the_modal(bot: BotHarness) -> None:
    await bot.post(bot.requests.shortcut("incident_declare_global", user="U0CAROL01"))
    await bot.settle()
    view = bot.last_view()
    assert view["callback_id"] == "incident_declare"
    assert next(b for b in view["blocks"] if b.get("block_id") == "commander")["element"]["initial_user"] == \
        "U0CAROL01"


async def test_open_declare_modal_is_usable_by_other_features(bot: BotHarness) -> None:
    from commands.incident import open_declare_modal

    await open_declare_modal(bot.deps, trigger_id=bot.requests.new_trigger(), user_id="U0BOB0001",
                             title="High error rate on api", description="rule api-errors fired",
                             severity="p1", service="api", environment="staging",
                             source_link="https://grafana.example.com/d/api")
    blocks = {b.get("block_id"): b for b in bot.last_view()["blocks"]}
    assert blocks["title"]["element"]["initial_value"] == "High error rate on api"
    assert blocks["severity"]["element"]["initial_option"]["value"] == "P1"
    assert blocks["service"]["element"]["initial_value"] == "api"
    assert blocks["environment"]["element"]["initial_option"]["value"] == "staging"
    await bot.submit(bot.last_view(), modal_values("High error rate on api", "P1", environment="staging"))
    [incident] = await incidents_in(bot)
    assert incident.source_link == "https://grafana.example.com/d/api"


async def test_slack_retry_of_the_command_creates_one_incident(bot: BotHarness) -> None:
    signed = bot.requests.command("/incident", "open P2 Checkout is down", channel=bot.slack.channel("general").id)
    first, retry = await bot.post(signed), await bot.post(signed, **{"X-Slack-Retry-Num": "1",
                                                                     "X-Slack-Retry-Reason": "http_timeout"})
    await bot.settle()
    assert first.status_code == retry.status_code == 200
    assert len(await incidents_in(bot)) == 1
    assert len(bot.messages("#incidents")) == 1
    assert sum(1 for method, _ in bot.slack.calls if method == "conversations.create") == 1


async def test_concurrent_double_submit_creates_one_incident(bot: BotHarness) -> None:
    import asyncio

    await bot.command("/incident", "")
    view, values = bot.last_view(), modal_values("Login broken", "P3")
    await asyncio.gather(bot.submit(view, values, settle=False), bot.submit(view, values, settle=False))
    await bot.settle()
    assert [i.title for i in await incidents_in(bot)] == ["Login broken"]
    assert len(bot.messages("#incidents")) == 1


async def test_channel_creation_failure_still_declares_and_says_so(bot: BotHarness) -> None:
    bot.slack.fail("conversations.create", status=200, error="restricted_action")
    await bot.command("/incident", "open P1 Checkout is down")
    [incident] = await incidents_in(bot)
    assert incident.channel_id is None and incident.channel_error == "restricted_action"
    [announcement, escalation] = bot.messages("#incidents")
    assert "Could not be created (restricted_action)" in announcement.all_text()
    assert "<!subteam^S0VPENG01>" in escalation.text  # paged where the incident lives: #incidents
    assert any("no channel: restricted_action" in t for t in bot.ephemeral_texts())
    async with bot.deps.db.session() as session:
        kinds = [e.kind for e in (await session.scalars(select(IncidentEvent))).all()]
    assert kinds == ["declared", "escalated", "channel"]


async def test_taken_channel_name_gets_a_suffix(bot: BotHarness) -> None:
    bot.slack.add_channel("inc-1-checkout-is-down")
    await bot.command("/incident", "open P3 Checkout is down")
    [incident] = await incidents_in(bot)
    assert incident.channel_name == "inc-1-checkout-is-down-2"
    assert bot.slack.channel("inc-1-checkout-is-down-2").id == incident.channel_id


async def test_long_titles_make_valid_channel_names(bot: BotHarness) -> None:
    await bot.command("/incident", "open P4 " + "Ünïcode & émoji 🚨 title that goes on " * 5)
    [incident] = await incidents_in(bot)
    assert incident.channel_name is not None and len(incident.channel_name) <= 80
    assert incident.channel_name.startswith("inc-1-unicode-emoji-title-that-goes-on-unicode")


async def test_declare_refused_without_permission(make_bot: Any) -> None:
    from tests.conftest import load_test_config

    config = load_test_config({"permissions": {"rules": [
        {"actions": ["incident.*"], "environments": ["*"], "allow": ["U0BOB0001"]}]}})
    bot = await make_bot(config=config)
    await bot.command("/incident", "open P1 Checkout is down", user="U0ALICE01")
    assert await incidents_in(bot) == []
    assert any("not allowed to incident.declare" in t for t in bot.ephemeral_texts())
    async with bot.deps.db.session() as session:
        denied = (await session.scalars(select(AuditEntry).where(AuditEntry.outcome == "denied"))).all()
    assert [(d.actor, d.action) for d in denied] == [("U0ALICE01", "incident.declare")]


async def test_retried_bare_command_opens_one_modal_quietly(bot: BotHarness) -> None:
    signed = bot.requests.command("/incident", "", channel=bot.slack.channel("general").id)
    await bot.post(signed)
    await bot.post(signed, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    await bot.settle()
    assert [entry["method"] for entry in bot.slack.view_log] == ["views.open"]
    assert bot.ephemeral_texts() == []


async def test_configured_invitees_join_every_incident_channel(make_bot: Any) -> None:
    from tests.conftest import load_test_config

    bot = await make_bot(config=load_test_config({"incidents": {"invite": ["@eng-leads", "U0BOB0001"]}}))
    await bot.command("/incident", "open P3 Docs search broken", user="U0ALICE01")
    members = bot.slack.channel("inc-1-docs-search-broken").members
    assert {"U0ALICE01", "U0BOB0001", "U0CAROL01"} <= members  # carol via the @eng-leads user group


async def test_failing_group_lookup_still_invites_reporter_and_commander(make_bot: Any) -> None:
    from tests.conftest import load_test_config

    bot = await make_bot(config=load_test_config({"incidents": {"invite": ["@eng-leads", "U0BOB0001"]}}))
    bot.slack.fail("usergroups.list", status=200, error="missing_scope", count=5)
    await bot.command("/incident", "open P3 Docs search broken", user="U0ALICE01")
    members = bot.slack.channel("inc-1-docs-search-broken").members
    assert {"U0ALICE01", "U0BOB0001"} <= members
    assert not any("Slack refused" in t for t in bot.ephemeral_texts())
