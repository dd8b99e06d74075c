"""After the declaration: status updates, buttons, severity, commander, resolve, list/show/timeline/postmortem."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.emulator.harness import BotHarness
from bot.emulator.state import Message
from bot.models import AuditEntry, Incident, IncidentEvent
from tests.conftest import load_test_config


async def declare(bot: BotHarness, text: str = "open P2 Checkout is down", user: str = "U0ALICE01") -> Incident:
    await bot.command("/incident", text, user=user)
    async with bot.deps.db.session() as session:
        return (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()  # type: ignore[return-value]


async def reload(bot: BotHarness, incident: Incident) -> Incident:
    async with bot.deps.db.session() as session:
        found = await session.get(Incident, incident.id)
        assert found is not None
        return found


async def timeline_kinds(bot: BotHarness, incident: Incident) -> list[str]:
    async with bot.deps.db.session() as session:
        query = select(IncidentEvent).where(IncidentEvent.incident_id == incident.id).order_by(IncidentEvent.id)
        return [e.kind for e in (await session.scalars(query)).all()]


def announcement(bot: BotHarness) -> Message:
    return bot.messages("#incidents")[0]


def pinned(bot: BotHarness, incident: Incident) -> Message:
    return next(m for m in bot.messages(incident.channel_id or "") if m.pinned)


async def test_update_in_the_channel_renders_the_template_everywhere(bot: BotHarness) -> None:
    incident = await declare(bot)
    bot.clock.advance(minutes=7)  # type: ignore[attr-defined]
    await bot.command("/incident", "update identified Bad deploy of checkout-api", channel=incident.channel_id or "")
    incident = await reload(bot, incident)
    # An update is not an acknowledgement (issue 16): only the button, `/incident ack` or a provider's ack.
    assert incident.status == "identified" and incident.acknowledged_by is None

    posted = bot.messages(incident.channel_id or "")[-1].all_text()
    assert "🚨 *INCIDENT: Platform - Checkout is down* (INC-1)" in posted
    assert "*Status:* Identified" in posted and "*Severity:* P2 (Major feature broken)" in posted
    assert "• 09:07 UTC [Identified] Bad deploy of checkout-api — <@U0ALICE01>" in posted
    assert bot.messages("#incidents")[-1].text == bot.messages(incident.channel_id or "")[-1].text

    # The announcement and the pinned summary were edited in place to the new state.
    for message in (announcement(bot), pinned(bot, incident)):
        assert "Identified" in message.all_text() and "Bad deploy of checkout-api" in message.all_text()
    assert announcement(bot).edits == 2 and pinned(bot, incident).edits == 1
    assert await timeline_kinds(bot, incident) == ["declared", "channel", "update"]


async def test_update_anywhere_by_id_and_the_updates_list_grows(bot: BotHarness) -> None:
    incident = await declare(bot)
    await bot.command("/incident", "update INC-1 Looking at the load balancer", channel="general")
    bot.clock.advance(minutes=20)  # type: ignore[attr-defined]
    await bot.command("/incident", "update inc-1 mitigating Rolling back", channel="random")
    text = bot.messages(incident.channel_id or "")[-1].text
    assert "[Mitigating] Rolling back" in text and "Looking at the load balancer" in text
    assert text.index("Rolling back") < text.index("Looking at the load balancer")  # newest first


async def test_update_outside_an_incident_channel_explains(bot: BotHarness) -> None:
    await declare(bot)
    await bot.command("/incident", "update Still looking", channel="general")
    assert any("Run this in an incident channel" in t for t in bot.ephemeral_texts())


async def test_custom_update_template_from_config(make_bot: Any) -> None:
    config = load_test_config({"incidents": {"update_template":
                                             "{{ incident.ref }} is {{ incident.status }}: {{ updates[-1].text }}"}})
    bot = await make_bot(config=config)
    incident = await declare(bot)
    await bot.command("/incident", "update monitoring {{ 7 * 7 }} errors", channel=incident.channel_id or "")
    # User text is data, never template: it is printed as typed.
    assert bot.messages(incident.channel_id or "")[-1].text == "INC-1 is monitoring: {{ 7 * 7 }} errors"


async def test_buttons_acknowledge_post_update_and_resolve(bot: BotHarness) -> None:
    incident = await declare(bot)
    await bot.click("incident_ack", str(incident.id), user="U0BOB0001", message=announcement(bot))
    incident = await reload(bot, incident)
    assert incident.acknowledged_by == "U0BOB0001"
    assert "✋ <@U0BOB0001> acknowledged INC-1." in bot.messages(incident.channel_id or "")[-1].text
    ids = [e["action_id"] for b in announcement(bot).blocks if b["type"] == "actions" for e in b["elements"]]
    assert ids == ["incident_update_open", "incident_resolve_open"]  # no second acknowledge

    await bot.click("incident_update_open", str(incident.id), message=announcement(bot))
    view = bot.last_view()
    assert view["callback_id"] == "incident_update"
    empty = await bot.submit(view, {"message": {"message": {"type": "plain_text_input", "value": None}}})
    assert empty.json()["response_action"] == "errors"
    await bot.submit(view, {
        "status": {"status": {"type": "static_select", "selected_option": {"value": "mitigating"}}},
        "impact": {"impact": {"type": "plain_text_input", "value": "EU customers"}},
        "eta": {"eta": {"type": "plain_text_input", "value": "30 minutes"}},
        "message": {"message": {"type": "plain_text_input", "value": "Failing over to eu-west-2"}}})
    incident = await reload(bot, incident)
    assert (incident.status, incident.impact, incident.eta) == ("mitigating", "EU customers", "30 minutes")
    assert "*ETA:* 30 minutes" in bot.messages("#incidents")[-1].text

    await bot.click("incident_resolve_open", str(incident.id), message=announcement(bot))
    await bot.submit(bot.last_view(), {"summary": {"summary": {"type": "plain_text_input",
                                                               "value": "Failover done, errors gone"}}})
    incident = await reload(bot, incident)
    assert incident.status == "resolved" and incident.resolution == "Failover done, errors gone"
    assert not any(b["type"] == "actions" for b in announcement(bot).blocks)
    assert "Resolved" in announcement(bot).all_text()


async def test_second_acknowledge_changes_nothing(bot: BotHarness) -> None:
    incident = await declare(bot)
    await bot.command("/incident", "ack", channel=incident.channel_id or "", user="U0BOB0001")
    await bot.command("/incident", "ack INC-1", user="U0CAROL01")
    assert (await reload(bot, incident)).acknowledged_by == "U0BOB0001"
    assert any("already acknowledged by <@U0BOB0001>" in t for t in bot.ephemeral_texts())


async def test_severity_change_updates_topic_and_pages_when_immediate(bot: BotHarness) -> None:
    incident = await declare(bot, "open P3 Slow search")
    await bot.command("/incident", "severity p1", channel=incident.channel_id or "")
    incident = await reload(bot, incident)
    assert incident.severity == "P1"
    channel = bot.slack.channel(incident.channel_id or "")
    assert channel.topic.startswith("P1 · Investigating")
    texts = [m.text for m in channel.messages]
    assert any("changed the severity of INC-1: P3 → P1" in t for t in texts)
    assert any("<!subteam^S0VPENG01>" in t and "immediate response" in t for t in texts)
    assert "INC-1 · P1 · Slow search" in announcement(bot).all_text()
    response = await bot.command("/incident", "severity SEV0", channel=incident.channel_id or "")
    assert "Unknown severity `SEV0`" in response.json()["text"]
    assert (await reload(bot, incident)).severity == "P1"


async def test_assign_takes_an_escaped_mention(bot: BotHarness) -> None:
    incident = await declare(bot)
    await bot.command("/incident", "assign <@U0CAROL01|carol>", channel=incident.channel_id or "")
    incident = await reload(bot, incident)
    assert incident.commander_id == "U0CAROL01"
    channel = bot.slack.channel(incident.channel_id or "")
    assert "U0CAROL01" in channel.members and "Commander <@U0CAROL01>" in channel.topic
    assert "<@U0CAROL01>" in pinned(bot, incident).all_text()
    response = await bot.command("/incident", "assign carol", channel=incident.channel_id or "")
    assert "mention the new incident commander" in response.json()["text"]


async def test_resolve_posts_postmortem_and_postmortem_command_returns_it(bot: BotHarness) -> None:
    incident = await declare(bot, "open P1 Checkout is down")
    bot.clock.advance(minutes=5)  # type: ignore[attr-defined]
    await bot.command("/incident", "update identified Bad deploy", channel=incident.channel_id or "")
    bot.clock.advance(minutes=40)  # type: ignore[attr-defined]
    await bot.command("/incident", "resolve Rolled back checkout-api to v1.4.2", channel=incident.channel_id or "")
    incident = await reload(bot, incident)
    assert incident.status == "resolved"
    messages = bot.messages(incident.channel_id or "")
    draft = next(m for m in messages if m.text.startswith("📝 Postmortem draft"))
    markdown = draft.blocks[0]["text"]
    for heading in ("## Summary", "## Impact", "## Timeline (UTC)", "## Root cause", "## Resolution",
                    "## Action items"):
        assert heading in markdown
    assert "Rolled back checkout-api to v1.4.2" in markdown and "- **Duration:** 45m" in markdown
    assert "2026-01-05 09:05 UTC — update: Bad deploy" in markdown
    assert bot.slack.channel(incident.channel_id or "").topic.startswith("P1 · Resolved")

    await bot.command("/incident", "postmortem", channel=incident.channel_id or "")
    assert "# Postmortem draft: INC-1 — Checkout is down" in bot.ephemeral_texts()[-1]
    await bot.command("/incident", "update still here", channel=incident.channel_id or "")
    assert bot.ephemeral_texts()[-1].startswith(":information_source: INC-1 was already resolved by <@U0ALICE01> ")
    kinds = await timeline_kinds(bot, incident)
    assert kinds[-1] == "resolved"
    async with bot.deps.db.session() as session:
        audited = [a.action for a in (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()]
    assert audited == ["incident.declared", "incident.escalated", "incident.channel", "incident.update",
                       "incident.resolved"]


async def test_list_orders_by_severity_with_age_and_last_update(bot: BotHarness) -> None:
    await declare(bot, "open P3 Slow search")
    bot.clock.advance(minutes=10)  # type: ignore[attr-defined]
    await declare(bot, "open P1 Checkout is down")
    await declare(bot, "open P2 Emails delayed")
    await bot.command("/incident", "resolve INC-3 Queue drained")
    bot.clock.advance(minutes=5)  # type: ignore[attr-defined]
    await bot.command("/incident", "list")
    text = bot.ephemeral_texts()[-1]
    assert "Open incidents (2)" in text and "INC-3" not in text
    assert text.index("INC-2") < text.index("INC-1")
    assert "open for 15m" in text and "open for 5m" in text and "no update yet" in text


async def test_list_when_nothing_is_open(bot: BotHarness) -> None:
    await bot.command("/incident", "list")
    assert "No open incidents" in bot.ephemeral_texts()[-1]


async def test_show_and_timeline(bot: BotHarness) -> None:
    incident = await declare(bot)
    await bot.command("/incident", "update identified DNS", channel=incident.channel_id or "")
    await bot.command("/incident", "show INC-1")
    shown = bot.ephemeral_texts()[-1]
    assert "INC-1 · P2 · Checkout is down" in shown and "Identified" in shown
    await bot.command("/incident", "timeline", channel=incident.channel_id or "")
    timeline = bot.ephemeral_texts()[-1]
    assert "P2 declared: Checkout is down — <@U0ALICE01>" in timeline
    assert "Channel #inc-1-checkout-is-down created" in timeline and "DNS — <@U0ALICE01>" in timeline
    await bot.command("/incident", "show INC-99")
    assert "Unknown incident `INC-99`" in bot.ephemeral_texts()[-1]


async def test_help_lists_subcommands_and_severities(bot: BotHarness) -> None:
    response = await bot.command("/incident", "help")
    text = str(response.json()["blocks"])
    assert "/incident open <SEV> <title>" in text and "*P1* — Platform down, data loss risk" in text
    assert "/incident open <SEV> <title>" in str((await bot.command("/opsbot", "help")).json()["blocks"])


async def test_resolve_needs_permission_in_the_incident_environment(make_bot: Any) -> None:
    config = load_test_config({"permissions": {"rules": [
        {"actions": ["incident.resolve"], "environments": ["prod"], "allow": ["@oncall"]}]}})
    bot = await make_bot(config=config)
    await bot.command("/incident", "")
    from tests.test_incidents_declare import modal_values

    await bot.submit(bot.last_view(), modal_values("Checkout is down", "P2", environment="prod"))
    await bot.command("/incident", "resolve INC-1 Fixed", user="U0BOB0001")
    assert "not allowed to incident.resolve `INC-1`" in bot.ephemeral_texts()[-1]
    async with bot.deps.db.session() as session:
        incident = await session.get(Incident, 1)
        denied = (await session.scalars(select(AuditEntry).where(AuditEntry.outcome == "denied"))).all()
    assert incident is not None and incident.status == "investigating"
    assert [(d.actor, d.action, d.target) for d in denied] == [("U0BOB0001", "incident.resolve", "INC-1")]
    await bot.command("/incident", "resolve INC-1 Fixed", user="U0ALICE01")  # alice is in @oncall
    async with bot.deps.db.session() as session:
        assert (await session.get(Incident, 1)).status == "resolved"  # type: ignore[union-attr]


def test_shell_shows_the_incident_flow(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OPSBOT_CONFIG")}
    script = ("/incident open P1 Checkout down\n/incident list\n:channel inc-1-checkout-down\n"
              "/incident update identified Bad deploy of api\n/incident resolve Rolled back api\n"
              "/incident\nLogin slow\n3\nauth\n\n\n\n\n\n\n")  # the last two: communications, scribe
    result = subprocess.run([sys.executable, "-m", "bot", "shell", "--database", f"sqlite:///{tmp_path / 's.db'}"],
                            input=script, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[opsbot posted in #incidents]" in out and "== 🚨 INC-1 · P1 (Critical) · Checkout down ==" in out
    assert "[opsbot created #inc-1-checkout-down]" in out
    assert "== Open incidents (1) ==" in out
    assert "*Status:* Identified" in out and "# Postmortem draft: INC-1 — Checkout down" in out
    assert "[modal: Declare incident]" in out and "== 🚨 INC-2 · P3 (Medium) · Login slow ==" in out


async def test_retried_update_and_double_submitted_update_post_once(bot: BotHarness) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    signed = bot.requests.command("/incident", "update identified Bad deploy", channel=channel)
    await bot.post(signed)
    await bot.post(signed, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    await bot.settle()
    assert sum("Bad deploy" in m.text for m in bot.messages(channel)) == 1

    await bot.click("incident_update_open", str(incident.id), message=announcement(bot))
    values = {"message": {"message": {"type": "plain_text_input", "value": "Rolling back"}}}
    view = bot.last_view()
    await bot.submit(view, values)
    await bot.submit(view, values)
    assert await timeline_kinds(bot, incident) == ["declared", "channel", "update", "update"]


async def test_buttons_with_stale_or_garbage_values_answer_politely(bot: BotHarness) -> None:
    await declare(bot)
    for action_id, value in (("incident_ack", "999"), ("incident_ack", "not a number"),
                             ("incident_update_open", "INC-0"), ("incident_resolve_open", "")):
        answers = len(bot.ephemeral_texts())
        response = await bot.click(action_id, value, message=announcement(bot))
        assert response.status_code == 200
        assert len(bot.ephemeral_texts()) == answers + 1 and "Unknown incident" in bot.ephemeral_texts()[-1]
    await bot.click("incident_resolve_open", "1", message=announcement(bot))
    tampered = {**bot.last_view(), "private_metadata": "garbage"}
    await bot.submit(tampered, {"summary": {"summary": {"type": "plain_text_input", "value": "x"}}})
    assert "Unknown incident `INC-0`" in bot.messages("D0ALICE01")[-1].text  # a DM: views have no response_url
    async with bot.deps.db.session() as session:
        assert (await session.get(Incident, 1)).status == "investigating"  # type: ignore[union-attr]


async def test_a_resolve_modal_opened_before_an_upgrade_still_resolves(bot: BotHarness) -> None:
    incident = await declare(bot)
    await bot.click("incident_resolve_open", "1", message=announcement(bot))
    opened = bot.last_view()
    assert '"channel": "' + announcement(bot).channel + '"' in opened["private_metadata"]  # answers go there
    older = {**opened, "private_metadata": "1"}  # what earlier versions kept: the bare id
    await bot.submit(older, {"summary": {"summary": {"type": "plain_text_input", "value": "Rolled back"}}})
    assert (await reload(bot, incident)).status == "resolved"
