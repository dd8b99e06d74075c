"""Incident roles through signed requests: `/incident role`, handovers on the timeline, the new holder
invited, the roles modal, and status update reminders sent to communications (FakeClock)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot import incidents
from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.models import Incident, IncidentRole
from commands.followups.ids import Action, role_field

BOB, CAROL = "U0BOB0001", "U0CAROL01"


async def declare(bot: BotHarness, text: str = "open P2 Checkout is slow") -> Incident:
    await bot.command("/incident", text)
    async with bot.deps.db.session() as session:
        return (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()  # type: ignore[return-value]


async def timeline(bot: BotHarness, incident: Incident) -> list[tuple[str, str]]:
    async with bot.deps.db.session() as session:
        return [(e.kind, e.text) for e in await incidents.events(session, incident_id=incident.id)]


async def test_role_assignment_and_handover_are_on_the_timeline(bot: BotHarness) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", f"role communications <@{BOB}>", channel=channel)
    await bot.command("/incident", f"role Communications <@{CAROL}>", channel=channel)
    roles = [t for k, t in await timeline(bot, incident) if k == "role"]
    assert roles == [f"<@{BOB}> is now communications", f"<@{CAROL}> is now communications (handed over by <@{BOB}>)"]
    async with bot.deps.db.session() as session:
        [row] = list(await session.scalars(select(IncidentRole)))
    assert (row.role, row.user_id, row.assigned_by) == ("communications", CAROL, "U0ALICE01")
    assert CAROL in bot.slack.channels[channel].members
    assert any("is now *communications*" in m.text for m in bot.messages(channel))
    await bot.command("/incident", "roles", channel=channel)
    assert any(f"*Communications*: <@{CAROL}>" in t for t in bot.ephemeral_texts())


async def test_commander_role_is_the_incident_commander(bot: BotHarness) -> None:
    incident = await declare(bot)
    await bot.command("/incident", f"role commander <@{BOB}>", channel=incident.channel_id or "")
    async with bot.deps.db.session() as session:
        assert (await session.get(Incident, incident.id)).commander_id == BOB  # type: ignore[union-attr]


async def test_unknown_role_lists_the_roles(bot: BotHarness) -> None:
    incident = await declare(bot)
    response = await bot.command("/incident", f"role janitor <@{BOB}>", channel=incident.channel_id or "")
    assert "commander" in response.text and "communications" in response.text and "scribe" in response.text


async def test_status_update_reminders_go_to_communications(bot: BotHarness, clock: FakeClock) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    clock.advance(minutes=31)
    await bot.run_job("incidents.timers")
    first = [m.text for m in bot.messages(channel) if m.text.startswith("⏰")]
    assert first and first[-1].startswith("⏰ <@U0ALICE01>")  # nobody holds communications: the commander
    await bot.command("/incident", f"role communications <@{BOB}>", channel=channel)
    clock.advance(minutes=31)
    await bot.run_job("incidents.timers")
    reminders = [m.text for m in bot.messages(channel) if m.text.startswith("⏰")]
    assert len(reminders) == len(first) + 1 and reminders[-1].startswith(f"⏰ <@{BOB}>")


async def test_roles_modal_from_the_postmortem(bot: BotHarness) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", f"role scribe <@{CAROL}>", channel=channel)
    await bot.command("/incident", "resolve Rolled back", channel=channel)
    [postmortem] = [m for m in bot.messages(channel) if m.text.startswith("📝 Postmortem")]
    assert f"*Scribe*: <@{CAROL}>" in postmortem.all_text()
    await bot.click(Action.PICK_ROLES, incident.ref, message=postmortem)
    view: dict[str, Any] = bot.last_view()
    field = role_field("communications")
    await bot.submit(view, {field: {field: {"type": "users_select", "selected_user": BOB}}})
    roles = [t for k, t in await timeline(bot, incident) if k == "role"]
    assert roles[-1] == f"<@{BOB}> is now communications"


async def test_roles_picked_in_the_declare_modal_are_given(bot: BotHarness) -> None:
    from tests.test_incidents_declare import modal_values

    await bot.command("/incident", "open")
    view = bot.last_view()
    ids = [b.get("block_id") for b in view["blocks"]]
    assert role_field("communications") in ids and role_field("scribe") in ids
    values = modal_values("Payments failing", "P2")
    values[role_field("communications")] = {role_field("communications"): {"type": "users_select",
                                                                           "selected_user": BOB}}
    await bot.submit(view, values)
    incident = await declare_done(bot)
    roles = [t for k, t in await timeline(bot, incident) if k == "role"]
    assert roles == [f"<@{BOB}> is now communications"]
    assert BOB in bot.slack.channels[incident.channel_id or ""].members


async def declare_done(bot: BotHarness) -> Incident:
    async with bot.deps.db.session() as session:
        return (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()  # type: ignore[return-value]


async def test_summary_shows_roles_and_a_roles_button(bot: BotHarness) -> None:
    incident = await declare(bot)
    channel = incident.channel_id or ""
    await bot.command("/incident", f"role scribe <@{CAROL}>", channel=channel)
    incident = await declare_done(bot)
    summary = next(m for m in bot.messages(channel) if m.ts == incident.summary_ts)
    assert f"*Scribe*: <@{CAROL}>" in summary.all_text() and "*Communications*: _unassigned_" in summary.all_text()
    buttons = [e["action_id"] for b in summary.blocks if b["type"] == "actions" for e in b["elements"]]
    assert Action.PICK_ROLES in buttons
    await bot.click(Action.PICK_ROLES, incident.ref, message=summary)
    view = bot.last_view()
    initial = {b["block_id"]: b["element"].get("initial_user") for b in view["blocks"] if b["type"] == "input"}
    assert initial[role_field("scribe")] == CAROL and initial[role_field("commander")] == "U0ALICE01"
