"""App Home through signed events and button presses: published on app_home_opened with every section,
republished by `home.refresh` when what it shows changes (debounced: at most once per user per 10 s)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.emulator.state import _texts
from bot.models import AlertState, BuiltinFlag, Incident, IncidentRole, Rollback


async def _seed(bot: BotHarness, clock: FakeClock) -> int:
    """A firing alert, an engaged built-in kill switch and a rollback Carol asked for (one approval needed)."""
    now = clock()
    async with bot.deps.db.session() as session:
        session.add(AlertState(key="checkout-p95|", rule="checkout-p95", source="prometheus", labels={},
                               state="firing", level="critical", firing_since=now - timedelta(minutes=3),
                               channel=bot.slack.channel("alerts").id, summary="p95 1.8 s > 1 s"))
        session.add(BuiltinFlag(name="new-checkout", environment="prod", enabled=False, kill_switch=True,
                                rollout_percentage=100, updated_at=now, updated_by="U0BOB0001"))
        rollback = Rollback(service="api", environment="prod", from_version="v42", to_version="v41",
                            reason="p95 regression after v42", requested_by="U0CAROL01", status="pending_approval",
                            approvals_required=1, approved_by=[], active_key="api/prod",
                            channel=bot.slack.channel("ops").id, created_at=now)
        session.add(rollback)
        await session.flush()
        return rollback.id


async def _open_home(bot: BotHarness, user: str, event_id: str | None = None) -> None:
    event = {"type": "app_home_opened", "user": user, "channel": "D0HOME001", "tab": "home",
             "event_ts": bot.slack.new_ts()}
    response = await bot.post(bot.requests.event(event, event_id=event_id))
    assert response.status_code == 200
    await bot.settle()


def _published(bot: BotHarness, user: str) -> list[dict[str, Any]]:
    return [entry["view"] for entry in bot.slack.publish_log if entry["user_id"] == user]


def _buttons(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(b["accessory"]["action_id"], b["accessory"].get("value", "")) for b in view["blocks"]
            if b.get("accessory", {}).get("type") == "button"]


async def test_home_shows_every_section_with_buttons_that_act(bot: BotHarness, clock: FakeClock) -> None:
    rollback_id = await _seed(bot, clock)
    await _open_home(bot, "U0ALICE01")
    (view,) = _published(bot, "U0ALICE01")
    text = "\n".join(_texts(view["blocks"]))
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    for heading in ("Open incidents (0)", "Firing alerts (1)", "Kill switches engaged (1)",
                    "Rollbacks waiting for your approval (1)", "On call"):
        assert heading in text
    assert "checkout-p95" in text and "`new-checkout/prod`" in text and "*api* (prod) to `v41`" in text
    assert "*primary*\n<@U0ALICE01>" in text  # week 1 of the rotation
    assert ("rollback.approve", str(rollback_id)) in _buttons(view)
    assert ("alerts.ack", str(await _alert_id(bot))) in _buttons(view)
    await _open_home(bot, "U0CAROL01")  # Carol asked for the rollback: nothing to approve for her
    assert "Rollbacks waiting for your approval (0)" in "\n".join(_texts(_published(bot, "U0CAROL01")[0]["blocks"]))

    await bot.click("rollback.approve", str(rollback_id), user="U0ALICE01", view=view)
    async with bot.deps.db.session() as session:
        row = await session.get(Rollback, rollback_id)
        assert row is not None and "U0ALICE01" in row.approved_by


async def _alert_id(bot: BotHarness) -> int:
    async with bot.deps.db.session() as session:
        return (await session.scalars(select(AlertState.id))).one()


async def test_home_is_republished_when_an_incident_opens_debounced(bot: BotHarness, clock: FakeClock) -> None:
    await _open_home(bot, "U0ALICE01", event_id="EvHOME0001")
    await _open_home(bot, "U0ALICE01", event_id="EvHOME0001")  # a redelivery: nothing again
    await _open_home(bot, "U0ALICE01")  # opened again, nothing changed: the view Slack has is current
    assert len(_published(bot, "U0ALICE01")) == 1

    await bot.command("/incident", "open P1 Checkout is down", user="U0ALICE01")
    await bot.run_job("home.refresh")
    assert len(_published(bot, "U0ALICE01")) == 1  # within 10 s of the last publish: waits

    clock.advance(seconds=10)
    await bot.run_job("home.refresh")
    views = _published(bot, "U0ALICE01")
    assert len(views) == 2
    text = "\n".join(_texts(views[-1]["blocks"]))
    assert "Open incidents (1)" in text and "INC-1" in text and "*you: commander*" in text
    async with bot.deps.db.session() as session:
        incident = (await session.scalars(select(Incident))).one()
    assert f"<#{incident.channel_id}>" in text
    assert ("incident_ack", str(incident.id)) in _buttons(views[-1])

    clock.advance(seconds=30)
    await bot.run_job("home.refresh")  # nothing changed: not published again
    assert len(_published(bot, "U0ALICE01")) == 2

    await bot.click("incident_ack", str(incident.id), user="U0BOB0001", view=views[-1])  # from Bob's Home
    async with bot.deps.db.session() as session:
        acked = await session.get(Incident, incident.id)
        assert acked is not None and acked.acknowledged_by == "U0BOB0001"
    clock.advance(seconds=10)
    await bot.run_job("home.refresh")
    views = _published(bot, "U0ALICE01")
    assert len(views) == 3 and ("incident_ack", str(incident.id)) not in _buttons(views[-1])


async def test_messages_tab_and_unknown_users_publish_nothing(bot: BotHarness) -> None:
    event = {"type": "app_home_opened", "user": "U0ALICE01", "channel": "D0HOME001", "tab": "messages",
             "event_ts": bot.slack.new_ts()}
    await bot.post(bot.requests.event(event))
    await bot.settle()
    await _open_home(bot, "U0NOBODY1")  # Slack refuses it (invalid user): the refresh goes on for the others
    await bot.run_job("home.refresh")
    assert bot.slack.publish_log == []


async def test_home_names_your_roles_in_each_incident(bot: BotHarness, clock: FakeClock) -> None:
    await bot.command("/incident", "open P2 Search is slow", user="U0ALICE01")
    async with bot.deps.db.session() as session:
        incident = (await session.scalars(select(Incident))).one()
        session.add(IncidentRole(incident_id=incident.id, role="scribe", user_id="U0BOB0001",
                                 assigned_by="U0ALICE01", assigned_at=clock()))
    await _open_home(bot, "U0BOB0001")
    await _open_home(bot, "U0CAROL01")
    assert "*you: scribe*" in "\n".join(_texts(_published(bot, "U0BOB0001")[-1]["blocks"]))
    assert "*you:" not in "\n".join(_texts(_published(bot, "U0CAROL01")[-1]["blocks"]))
