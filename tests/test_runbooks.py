"""Runbook checklists through signed requests: posted in an incident channel, Done / Skip / Run edited in
place, each step on the timeline and in the postmortem; a health check step against a real local server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.config import Config
from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.emulator.state import Message
from bot.errors import ConfigError
from bot.models import ActionRun, Incident, IncidentEvent, RunbookRun
from tests.conftest import load_test_config
from tests.test_actions import PERMISSIONS

ALICE, BOB = "U0ALICE01", "U0BOB0001"


def config(tmp_path: Path, health_url: str = "http://127.0.0.1:9/health", **extra: Any) -> Config:
    marker = tmp_path / "restarted"
    argv = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x'); print('restarted')", "{container}"]
    return load_test_config({
        "permissions": PERMISSIONS,
        "environments": {"prod": {"default": True, "checks": [{"type": "http", "name": "api", "url": health_url}]},
                         "staging": {}},
        "actions": {"restart": {"description": "Restart a container",
                                "params": {"container": {"type": "enum", "values": ["api", "worker"]}},
                                "environments": {"staging": {"type": "command", "argv": argv}}}},
        "runbooks": {"api-down": {
            "title": "API is down", "symptoms": ["5xx above 5%", "p95 > 1000ms"],
            "steps": ["Open the API dashboard",
                      {"check": "api", "text": "Is the API answering?"},
                      {"action": "restart", "environment": "staging", "params": {"container": "api"}},
                      "Tell the status page"]}},
        **extra})


async def incident_channel(bot: BotHarness, name: str = "inc-9-api") -> int:
    channel = bot.slack.add_channel(name)
    async with bot.deps.db.session() as session:
        incident = Incident(title="API down", severity="P1", reporter_id=ALICE, commander_id=ALICE,
                            channel_id=channel.id, created_at=bot.clock())
        session.add(incident)
        await session.flush()
        return incident.id


def checklist(bot: BotHarness, channel: str = "inc-9-api") -> Message:
    [message] = [m for m in bot.messages(channel) if m.thread_ts is None and m.text.startswith("📖")]
    return message


def step_button(message: Message, step: int, action: str) -> str:
    block = next(b for b in message.blocks if b.get("block_id") == f"runbook_step_{step}_buttons")
    return str(next(e["value"] for e in block["elements"] if e["action_id"] == action))


def step_line(message: Message, step: int) -> str:
    block = next(b for b in message.blocks if b.get("block_id") == f"runbook_step_{step}")
    return str(block["text"]["text"])


def declare_values(title: str, severity: str, *, service: str | None = None) -> dict[str, dict[str, Any]]:
    """The declare modal's fields, as Slack submits them."""
    def text(value: str | None) -> dict[str, Any]:
        return {"type": "plain_text_input", "value": value or None}

    return {"title": {"title": text(title)},
            "severity": {"severity": {"type": "static_select", "selected_option": {"value": severity}}},
            "service": {"service": text(service)},
            "environment": {"environment": {"type": "static_select", "selected_option": {"value": "prod"}}},
            "impact": {"impact": text(None)}, "description": {"description": text(None)},
            "commander": {"commander": {"type": "users_select", "selected_user": ALICE}}}


async def events(bot: BotHarness, incident_id: int) -> list[IncidentEvent]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == incident_id)
                                           .order_by(IncidentEvent.id))).all())


async def test_runbook_alone_lists_runbooks_and_an_unknown_name_lists_the_valid_ones(
        make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=config(tmp_path))
    assert "*api-down* — API is down (4 steps)" in (await bot.command("/runbook", "")).json()["text"]
    text = (await bot.command("/runbook", "db-down")).json()["text"]
    assert "Unknown runbook `db-down`. Valid runbooks: `api-down`." in text


async def test_the_checklist_is_posted_once_and_done_skip_edit_it_in_place(make_bot: Any, tmp_path: Path) -> None:
    from bot.incidents import postmortem

    bot = await make_bot(config=config(tmp_path))
    incident_id = await incident_channel(bot)
    await bot.command("/runbook", "api-down", channel="inc-9-api")
    message = checklist(bot)
    assert "5xx above 5%" in message.all_text() and "0/4 steps done" in message.text
    assert step_line(message, 0) == "⬜ *1.* Open the API dashboard"
    run_ids = [e["action_id"] for b in message.blocks if b.get("block_id") == "runbook_step_2_buttons"
               for e in b["elements"]]
    assert run_ids == ["runbook.run", "runbook.done", "runbook.skip"]  # Run only for executable steps
    await bot.click("runbook.done", step_button(message, 0, "runbook.done"), user=BOB, message=message)
    await bot.click("runbook.skip", step_button(message, 3, "runbook.skip"), user=ALICE, message=message)
    message = checklist(bot)
    assert message.edits == 2
    assert step_line(message, 0).startswith("✅ *1.* Open the API dashboard\n_done by <@U0BOB0001> at 09:00 UTC_")
    assert step_line(message, 3).startswith("⏭️ *4.* Tell the status page\n_skipped by <@U0ALICE01>")
    assert "2/4 steps done" in message.text
    assert not any(b.get("block_id") == "runbook_step_0_buttons" for b in message.blocks)
    # Asked again: the same checklist, nothing new posted.
    await bot.command("/runbook", "api-down", channel="inc-9-api")
    assert checklist(bot).ts == message.ts
    assert "already posted" in bot.ephemeral_texts()[-1]
    timeline = await events(bot, incident_id)
    assert [e.text for e in timeline] == ["Runbook api-down (API is down) posted",
                                          "api-down step 1 done: Open the API dashboard",
                                          "api-down step 4 skipped: Tell the status page"]
    async with bot.deps.db.session() as session:
        incident = await session.get(Incident, incident_id)
    assert incident is not None
    draft = postmortem(bot.deps.config, incident, timeline)
    assert "runbook: api-down step 1 done: Open the API dashboard (<@U0BOB0001>)" in draft


async def test_a_second_press_on_a_done_step_says_who_did_it(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=config(tmp_path))
    await incident_channel(bot)
    await bot.command("/runbook", "api-down", channel="inc-9-api")
    message = checklist(bot)
    value = step_button(message, 0, "runbook.done")
    await bot.click("runbook.done", value, user=BOB, message=message)
    await bot.click("runbook.skip", value, user=ALICE, message=message)
    message = checklist(bot)
    assert step_line(message, 0).startswith("⏭️")  # skip after done is a change of mind, recorded
    await bot.click("runbook.skip", value, user=BOB, message=message)
    assert "Step 1 is already skipped (by <@U0ALICE01>)." in bot.ephemeral_texts()[-1] + \
        "".join(e["text"] for e in bot.slack.ephemerals)


async def test_run_on_an_action_step_confirms_then_marks_the_step_done(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=config(tmp_path))
    incident_id = await incident_channel(bot)
    await bot.command("/runbook", "api-down", channel="inc-9-api")
    message = checklist(bot)
    await bot.click("runbook.run", step_button(message, 2, "runbook.run"), user=ALICE, message=message)
    assert not (tmp_path / "restarted").exists()  # not before the confirmation
    asked = bot.slack.ephemerals[-1]
    assert asked["user"] == ALICE and "Run `restart` in *staging* with `container=api`?" in asked["text"]
    assert step_line(checklist(bot), 2).startswith("🏃 *3.*")
    confirm = next(e["value"] for b in asked["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == "run.confirm")
    await bot.click("run.confirm", confirm, user=ALICE, channel="inc-9-api")
    assert (tmp_path / "restarted").exists()
    message = checklist(bot)
    assert step_line(message, 2).startswith("✅ *3.* Run `restart` in staging `container=api`\n_done by <@U0ALICE01>")
    async with bot.deps.db.session() as session:
        [run] = (await session.scalars(select(ActionRun))).all()
        [row] = (await session.scalars(select(RunbookRun))).all()
    assert (run.status, run.runbook_run_id, run.step, run.incident_id) == ("succeeded", row.id, 2, incident_id)
    texts = [e.text for e in await events(bot, incident_id)]
    assert "api-down step 3 started: Run `restart` in staging `container=api` — run #1" in texts
    assert any(t.startswith("Run #1: restart in staging (container=api) succeeded") for t in texts)


class Health:
    def __init__(self) -> None:
        self.ok = False

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            if self.ok:
                return JSONResponse({"status": "ok"})
            return JSONResponse({"status": "down", "reason": "db pool exhausted"}, status_code=503)

        return Starlette(routes=[Route("/health", health)])


async def test_run_on_a_check_step_runs_it_and_records_the_result(make_bot: Any, tmp_path: Path) -> None:
    health = Health()
    async with LocalServer(health.app()) as server:
        bot = await make_bot(config=config(tmp_path, f"{server.url}/health"))
        incident_id = await incident_channel(bot)
        await bot.command("/runbook", "api-down", channel="inc-9-api")
        message = checklist(bot)
        await bot.click("runbook.run", step_button(message, 1, "runbook.run"), user=BOB, message=message)
        message = checklist(bot)
        assert step_line(message, 1).startswith("❌ *2.*") and "db pool exhausted" in step_line(message, 1)
        health.ok = True
        await bot.click("runbook.run", step_button(message, 1, "runbook.run"), user=BOB, message=message)
    message = checklist(bot)
    assert step_line(message, 1).startswith("✅ *2.* Is the API answering? — Health check `api`")
    replies = [m.text for m in bot.messages("inc-9-api") if m.thread_ts == message.ts]
    assert replies[0].startswith("Step 2: FAIL api (prod") and replies[1].startswith("Step 2: OK api (prod")
    kinds = [(e.kind, e.text.split(":")[0]) for e in await events(bot, incident_id)]
    assert ("runbook", "api-down step 2 failed") in kinds and ("runbook", "api-down step 2 done") in kinds


def test_steps_must_reference_what_exists_and_alert_rules_may_name_a_runbook(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runbooks.x.steps\[0\].action: no action named 'nope'"):
        load_test_config({"runbooks": {"x": {"title": "X", "steps": [{"action": "nope"}]}}})
    with pytest.raises(ConfigError, match="a step references one thing"):
        load_test_config({"runbooks": {"x": {"title": "X", "steps": [{"check": "a", "rollback": "b"}]}}})
    rule = {"name": "api-errors", "source": "http_json", "query": "http://127.0.0.1:9/m", "path": "x",
            "critical": "> 5"}
    with_link = load_test_config({"alerts": {"rules": [{**rule, "runbook": "https://wiki.example/api"}]}})
    assert str(with_link.alerts.rules[0].runbook) == "https://wiki.example/api"
    named = config(tmp_path, alerts={"rules": [{**rule, "runbook": "api-down"}]})
    from bot.config.runbooks import for_alert

    assert for_alert(named, "api-errors") == "api-down"
    with pytest.raises(ConfigError, match="'db-down' is neither a URL nor a runbook name"):
        config(tmp_path, alerts={"rules": [{**rule, "runbook": "db-down"}]})


async def test_incident_runbook_posts_the_checklist_too(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=config(tmp_path))
    await incident_channel(bot)
    response = await bot.command("/incident", "runbook api-down", channel="inc-9-api")
    assert response.json()["text"] == "Posting the `api-down` checklist (API is down)…"
    assert "0/4 steps done" in checklist(bot).text


async def test_an_incident_opened_from_an_alert_gets_its_rules_runbook(make_bot: Any, tmp_path: Path) -> None:
    from tests.test_alerts_buttons import Metric, button, firing

    metric = Metric()
    async with LocalServer(metric.app) as server:
        rule = {"name": "cpu_high", "source": "http_json", "query": f"{server.url}/m", "path": "cpu.used",
                "critical": "> 95", "for": "0s", "labels": {"service": "api", "env": "prod"}, "runbook": "api-down"}
        bot = await make_bot(config=config(tmp_path, alerts={"rules": [rule]}))
        message = await firing(bot, metric, 97)
        await bot.click("alerts.open_incident", button(message, "alerts.open_incident")["value"], message=message)
        await bot.submit(bot.last_view(), declare_values("CPU on fire", "P2", service="api"))
    async with bot.deps.db.session() as session:
        [incident] = (await session.scalars(select(Incident))).all()
        [row] = (await session.scalars(select(RunbookRun))).all()
    assert (row.runbook, row.incident_id, row.started_by) == ("api-down", incident.id, "opsbot")
    channel = next(c.name for c in bot.slack.channels.values() if c.id == incident.channel_id)
    assert "0/4 steps done" in checklist(bot, channel).text


async def test_an_incident_without_a_runbook_gets_none(make_bot: Any, tmp_path: Path) -> None:

    bot = await make_bot(config=config(tmp_path))
    await bot.command("/incident", "")
    await bot.submit(bot.last_view(), declare_values("Billing slow", "P3", service="billing"))
    async with bot.deps.db.session() as session:
        assert (await session.scalars(select(RunbookRun))).all() == []


async def test_run_on_kill_switch_and_rollback_steps_uses_their_own_confirmation(make_bot: Any, tmp_path: Path) -> None:
    base = config(tmp_path)
    steps = [{"killswitch": "new-checkout", "environment": "prod"}, {"rollback": "api", "environment": "staging"}]
    bot = await make_bot(config=config(tmp_path, flags={"new-checkout": {"environments": ["prod"]}},
                                       rollbacks={"api": {"environments": {"staging": {
                                           "provider": "command", "argv": ["true"]}}}},
                                       runbooks={**{k: v.model_dump(exclude_defaults=True)
                                                    for k, v in base.runbooks.items()},
                                                 "checkout": {"title": "Checkout broken", "steps": steps}}))
    await incident_channel(bot)
    await bot.command("/runbook", "checkout", channel="inc-9-api")
    message = checklist(bot)
    await bot.click("runbook.run", step_button(message, 0, "runbook.run"), user=ALICE, message=message)
    asked = bot.slack.ephemerals[-1]
    assert asked["user"] == ALICE and "new-checkout" in asked["text"]  # the /killswitch confirmation, not done yet
    assert any(e["action_id"] == "flags.confirm" for b in asked["blocks"] if b["type"] == "actions"
               for e in b["elements"])
    await bot.click("runbook.run", step_button(message, 1, "runbook.run"), user=ALICE, message=message)
    assert bot.last_view()["callback_id"] == "rollback.request"  # the /rollback modal
    assert step_line(checklist(bot), 0).startswith("⬜")  # marked Done by hand once confirmed
