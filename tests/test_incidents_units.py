"""Pure parts of incidents: command parsing, names, safe text, templates, rendering within Block Kit limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.config import parse_config
from bot.errors import ConfigError, InvalidInput, UnknownSeverity
from bot.incidents import channel_name, parse_ref, remind_interval, status_text, template_context
from bot.models import Incident, IncidentEvent
from bot.templates import render
from commands import blocks as bk
from commands.incident import modals
from commands.incident import render as r
from commands.incident.parse import Command, parse, safe_text
from tests.conftest import load_test_config

CONFIG = load_test_config()
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("", Command("modal")),
    ("open", Command("modal")),
    ("open p2", Command("modal", severity="P2")),
    ("open P1 Checkout is down", Command("open", severity="P1", text="Checkout is down")),
    ("declare p3 Can't log in", Command("open", severity="P3", text="Can't log in")),
    ("P1 Checkout is down", Command("open", severity="P1", text="Checkout is down")),
    ("update identified Bad deploy", Command("update", status="identified", text="Bad deploy")),
    ("update INC-42 42 users affected", Command("update", ref="INC-42", text="42 users affected")),
    ("update monitoring", Command("update", status="monitoring")),
    ("update resolved All good", Command("resolve", text="All good")),
    ("severity inc-7 p4", Command("severity", ref="INC-7", severity="P4")),
    ("assign <@U0CAROL01|carol>", Command("assign", user="U0CAROL01")),
    ("assign INC-3 U0BOB0001", Command("assign", ref="INC-3", user="U0BOB0001")),
    ("resolve Rolled back", Command("resolve", text="Rolled back")),
    ("ack", Command("ack")),
    ("list", Command("list")),
    ("show INC-42", Command("show", ref="INC-42")),
    ("timeline", Command("timeline")),
    ("pm INC-1", Command("postmortem", ref="INC-1")),
    ("help", Command("help")),
])
def test_parse(text: str, expected: Command) -> None:
    assert parse(text, CONFIG) == expected


@pytest.mark.parametrize(("text", "error"), [
    ("open SEV1 Checkout", UnknownSeverity),
    ("severity P9", UnknownSeverity),
    ("frobnicate", InvalidInput),
    ("update", InvalidInput),
    ("assign bob", InvalidInput),
    ("assign U" + "A" * 40, InvalidInput),  # longer than any Slack user id (and than commander_id holds)
    ("assign <@U" + "A" * 40 + ">", InvalidInput),
    ("resolve", InvalidInput),
    ("show 42", InvalidInput),
])
def test_parse_errors(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse(text, CONFIG)


def test_unknown_severity_message_lists_valid_ones_in_order() -> None:
    with pytest.raises(UnknownSeverity, match=r"Valid severities: `P1`, `P2`, `P3`, `P4`\."):
        parse("open critical Checkout", CONFIG)


def test_broadcast_mentions_never_reach_a_channel() -> None:
    assert parse("open P1 <!channel> checkout down", CONFIG).text == "@\u2060channel checkout down"
    assert parse("update <!here|here> look", CONFIG).text == "@\u2060here look"
    assert safe_text("<!everyone> & <@U1>", raw=True) == "&lt;!everyone&gt; &amp; &lt;@U1&gt;"
    assert safe_text("ping <@U0BOB0001> and <!subteam^S1>", raw=False) == "ping <@U0BOB0001> and <!subteam^S1>"


@pytest.mark.parametrize(("title", "attempt", "expected"), [
    ("Checkout is down", 0, "inc-42-checkout-is-down"),
    ("Checkout is down", 1, "inc-42-checkout-is-down-2"),
    ("  API: 5xx > 10% !!", 0, "inc-42-api-5xx-10"),
    ("Payments &amp; refunds", 0, "inc-42-payments-refunds"),
    ("🚨🚨", 0, "inc-42"),
    ("x" * 200, 3, "inc-42-" + "x" * 71 + "-4"),
])
def test_channel_names(title: str, attempt: int, expected: str) -> None:
    name = channel_name("inc", 42, title, attempt)
    assert name == expected and len(name) <= 80


def test_parse_ref() -> None:
    assert [parse_ref(t) for t in ("INC-42", "inc42", "#7", "12", "INC-", "abc")] == [42, 42, 7, 12, None, None]


def test_remind_interval() -> None:
    assert remind_interval(CONFIG, "P1") == timedelta(minutes=15)
    assert remind_interval(CONFIG, "p2") == timedelta(minutes=30)
    assert remind_interval(CONFIG, "P3") is None and remind_interval(CONFIG, "gone") is None
    config = load_test_config({"severities": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                               "incidents": {"remind_after": "10m"}})
    assert [remind_interval(config, s) for s in "ABC"] == [timedelta(minutes=10)] * 2 + [None]


def incident(**overrides: object) -> Incident:
    values: dict[str, object] = dict(id=42, title="Checkout is down", severity="P1", status="investigating",
                                     reporter_id="U0ALICE01", commander_id="U0BOB0001", created_at=T0,
                                     service="checkout", environment="prod")
    values.update(overrides)
    return Incident(**values)


def event(kind: str, text: str, minutes: int, **data: object) -> IncidentEvent:
    return IncidentEvent(incident_id=42, at=T0 + timedelta(minutes=minutes), actor="U0ALICE01", kind=kind, text=text,
                         data=data or None)


def test_default_status_template_follows_the_runbook() -> None:
    inc = incident(status="identified", impact="All card payments", eta="30m")
    text = status_text(CONFIG, inc, [event("declared", "P1 declared", 0),
                                     event("update", "Looking", 3),
                                     event("update", "Bad deploy", 9, status="identified")])
    assert text.splitlines()[:6] == [
        "🚨 *INCIDENT: checkout - Checkout is down* (INC-42)",
        "*Status:* Identified",
        "*Severity:* P1 (Platform down, data loss risk)",
        "*Impact:* All card payments",
        "*ETA:* 30m",
        "*Commander:* <@U0BOB0001>",
    ]
    assert text.endswith("*Updates:*\n• 09:09 UTC [Identified] Bad deploy — <@U0ALICE01>\n"
                         "• 09:03 UTC Looking — <@U0ALICE01>")


def test_templates_are_sandboxed() -> None:
    context = template_context(CONFIG, incident(), [])
    with pytest.raises(ValueError, match="template failed"):
        render("{{ incident.__class__.__mro__[1].__subclasses__() }}", context, builtin=False)
    with pytest.raises(ConfigError, match=r"incidents\.update_template: template error on line 1"):
        parse_config({"severities": [{"name": "P1"}], "incidents": {"update_template": "{% if %}"}})


def test_postmortem_has_every_section() -> None:
    inc = incident(status="resolved", resolved_at=T0 + timedelta(hours=1, minutes=5), resolution="Rolled back")
    text = render("postmortem.md.j2", template_context(CONFIG, inc, [event("resolved", "Rolled back", 65)]))
    for heading in ("# Postmortem draft: INC-42", "## Summary", "## Impact", "## Timeline (UTC)", "## Root cause",
                    "## Resolution", "## Action items", "- **Duration:** 1h 5m"):
        assert heading in text


def test_announcement_stays_within_block_kit_limits() -> None:
    inc = incident(title="T" * 400, impact="i" * 5000, channel_id="C1")
    text, blocks = r.announcement(inc, CONFIG.severity("P1"), now=T0, last_update="u" * 5000)
    assert text.startswith("🚨 INC-42 · P1 · TTT")
    assert len(blocks[0]["text"]["text"]) <= bk.HEADER_TEXT
    for block in blocks:
        Block.parse(block).validate_json()  # type: ignore[union-attr]
    assert blocks[-1]["elements"][0]["action_id"] == "incident_ack"
    resolved = incident(status="resolved", resolved_at=T0, resolution="done", acknowledged_at=T0,
                        acknowledged_by="U1")
    assert not any(b["type"] == "actions" for b in r.announcement(resolved, None, now=T0)[1])


def test_long_status_updates_are_split_into_sections() -> None:
    _, blocks = r.status_update("\n".join(f"line {i} " + "x" * 90 for i in range(100)))
    assert len(blocks) > 1 and all(len(b["text"]["text"]) <= 3000 for b in blocks)
    assert "line 99" in blocks[-1]["text"]["text"]


def test_modals_are_valid_views() -> None:
    for view in (modals.declare_modal(CONFIG, user_id="U1", title="t" * 500, description="d", severity="p2",
                                      source_link="https://x.example/p1"),
                 modals.update_modal(incident()), modals.resolve_modal(incident())):
        View(**view).validate_json()


def test_parse_declare_reports_every_missing_field() -> None:
    view = {"state": {"values": {"title": {"title": {"value": ""}}, "severity": {"severity": {}}}}}
    submitted = modals.parse_declare(CONFIG, view, user_id="U1")
    assert submitted.request is None and set(submitted.errors) == {"title", "severity"}


def test_a_failing_custom_template_falls_back_to_the_default() -> None:
    config = load_test_config({"incidents": {"update_template": "{{ nope.deeper }}"}})
    text = status_text(config, incident(), [event("update", "Looking", 1)])
    assert text.startswith("🚨 *INCIDENT: checkout - Checkout is down* (INC-42)")


def test_plain_text_headers_show_what_was_typed() -> None:
    inc = incident(title="Payments &amp; refunds &lt;eu&gt;")
    _, blocks = r.announcement(inc, None, now=T0)
    assert blocks[0]["text"]["text"] == "🚨 INC-42 · P1 · Payments & refunds <eu>"
