"""`/run`: actions through signed requests, against a real script, HTTP server, the rollback tests' webhook
receiver and GitHub stand-in, and a real PostgreSQL target database."""

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
from bot.models import ActionRun, AuditEntry, Incident, IncidentEvent
from tests.conftest import load_test_config
from tests.test_rollbacks_support import GITHUB_TOKEN, WEBHOOK_SECRET, FakeGitHub, WebhookReceiver

ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"  # alice is @oncall
SECRET = "s3cret-token-value-42"
PERMISSIONS = {"groups": {"oncall": ["@oncall"]},
               "rules": [{"environments": ["staging"], "allow": ["everyone"]},
                         {"actions": ["action:*"], "environments": ["prod"], "allow": ["oncall", BOB]}]}


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTION_TEST_SECRET", SECRET)
    monkeypatch.setenv("ACTION_TEST_GH_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("ACTION_TEST_HOOK_SECRET", WEBHOOK_SECRET)


def script(tmp_path: Path, body: str = "print('restarting', *sys.argv[1:])\n") -> str:
    path = tmp_path / "restart.py"
    path.write_text("import os, sys\n" + body)
    return str(path)


def config_with(actions: dict[str, Any], **extra: Any) -> Config:
    return load_test_config({"actions": actions, "permissions": PERMISSIONS, **extra})


def restart_action(tmp_path: Path, body: str | None = None, **extra: Any) -> dict[str, Any]:
    argv = [sys.executable, script(tmp_path, *([body] if body else [])), "{container}", "--replicas={replicas}"]
    return {"description": "Restart a container", "params": {
        "container": {"type": "enum", "values": ["api", "worker"]},
        "replicas": {"type": "integer", "min": 1, "max": 5, "default": 1}},
        "environments": {"prod": {"type": "command", "argv": argv, "env": {"TOKEN": "${ACTION_TEST_SECRET}"}},
                         "staging": {"type": "command", "argv": argv}}, **extra}


def ephemeral_buttons(bot: BotHarness) -> dict[str, str]:
    last = bot.slack.responses[-1]
    return {e["action_id"]: e["value"] for b in last.get("blocks") or [] if b["type"] == "actions"
            for e in b["elements"]}


def top(bot: BotHarness, channel: str = "general") -> list[Message]:
    return [m for m in bot.messages(channel) if m.thread_ts is None and m.text.startswith(("❔", "⏳", "🏃", "✅",
                                                                                            "❌", "🚫", "⌛"))]


def thread(bot: BotHarness, message: Message) -> str:
    return "\n".join(m.all_text() for m in bot.messages(message.channel) if m.thread_ts == message.ts)


async def runs(bot: BotHarness) -> list[ActionRun]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(ActionRun).order_by(ActionRun.id))).all())


async def confirm(bot: BotHarness, user: str = ALICE) -> None:
    await bot.click("run.confirm", ephemeral_buttons(bot)["run.confirm"], user=user, channel="general")


# -- listing and validation ------------------------------------------------------------------


async def test_run_alone_lists_actions_with_descriptions_and_usage(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=config_with({"restart": restart_action(tmp_path)}))
    response = await bot.command("/run", "")
    text = response.json()["text"]
    assert "*restart* — Restart a container" in text
    assert "/run restart [prod|staging] container=api|worker [replicas=<1–5>]" in text


@pytest.mark.parametrize(("text", "expected"), [
    ("restart prod container=db", "`db` is not a valid container. Valid values: `api`, `worker`."),
    ("restart prod container=api replicas=9", "`9` is not a valid replicas: a whole number in 1–5."),
    ("restart prod", "`restart` needs `container=api|worker`"),
    ("restart qa container=api", "Unknown environment `qa`. Valid environments: `prod`, `staging`."),
    ("restart prod container=api colour=red", "`colour` is not a parameter of `restart`"),
    ("reboot", "Unknown action `reboot`. Valid actions: `restart`."),
])
async def test_invalid_parameters_are_refused_in_the_ack_with_the_valid_values(
        make_bot: Any, tmp_path: Path, text: str, expected: str) -> None:
    bot = await make_bot(config=config_with({"restart": restart_action(tmp_path)}))
    response = await bot.command("/run", text)
    assert expected in response.json()["text"]
    assert await runs(bot) == []


def test_free_text_cannot_become_an_option() -> None:
    action = {"params": {"name": {"type": "pattern", "pattern": "^[a-z-]+$"}},
              "environments": {"prod": {"type": "command", "argv": ["kubectl", "delete", "pod", "{name}"]}}}
    with pytest.raises(ConfigError, match="could start with '-' and become an option"):
        config_with({"kill-pod": action})
    action["environments"]["prod"]["argv"] = ["kubectl", "delete", "pod", "--name={name}"]
    assert config_with({"kill-pod": action}).actions["kill-pod"]


def test_service_and_environment_parameters_name_the_config() -> None:
    from bot import actions

    config = load_test_config({"actions": {"where": {
        "params": {"env": {"type": "environment"}},
        "environments": {"prod": {"type": "command", "argv": ["echo", "{env}"]}}}}})
    assert actions.validate(config, action="where", environment=None, params={"env": "STAGING"}).params == {
        "env": "staging"}
    with pytest.raises(Exception, match="Valid environments: `prod`, `staging`"):
        actions.validate(config, action="where", environment=None, params={"env": "qa"})


# -- command: confirmation, output, permission ----------------------------------------------


async def test_a_command_action_is_confirmed_then_runs_with_its_output_in_a_thread(
        make_bot: Any, tmp_path: Path) -> None:
    body = "print('restarting', *sys.argv[1:]); print('token is', os.environ['TOKEN'])\n"
    bot = await make_bot(config=config_with({"restart": restart_action(tmp_path, body)}))
    response = await bot.command("/run", "restart prod container=api replicas=2")
    assert response.json()["text"] == "Preparing `restart` in prod with `container=api replicas=2`…"
    assert "Run `restart` in *prod* with `container=api replicas=2` (production)?" in bot.ephemeral_texts()[-1]
    [run] = await runs(bot)
    assert run.status == "pending_confirm"
    await confirm(bot)
    [run] = await runs(bot)
    assert run.status == "succeeded", run.detail
    [card] = top(bot)
    assert card.text.startswith("✅ Run #1: `restart` in *prod*") and card.edits >= 1  # edited in place
    replies = thread(bot, card)
    assert "restarting api --replicas=2" in replies
    assert SECRET not in replies and "token is ***" in replies  # scrubbed
    assert SECRET not in (run.output or "")
    async with bot.deps.db.session() as session:
        audited = [(a.action, a.outcome) for a in (await session.scalars(select(AuditEntry))).all()]
    assert ("action:restart.confirm", "ok") in audited and ("action:restart.finish", "ok") in audited


async def test_cancel_runs_nothing_and_only_the_requester_confirms(make_bot: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bot = await make_bot(config=config_with({"restart": restart_action(
        tmp_path, f"open({str(marker)!r}, 'w').write('x')\n")}))
    await bot.command("/run", "restart staging container=api")
    buttons = ephemeral_buttons(bot)
    await confirm(bot, user=BOB)
    assert "Only <@U0ALICE01>" in bot.ephemeral_texts()[-1]
    await bot.click("run.cancel", buttons["run.cancel"], user=ALICE, channel="general")
    assert "Cancelled: `restart` in *staging*" in bot.ephemeral_texts()[-1]
    [run] = await runs(bot)
    assert run.status == "cancelled" and not marker.exists()


async def test_a_destructive_action_needs_permission_and_confirmation(make_bot: Any, tmp_path: Path) -> None:
    marker = tmp_path / "flushed"
    action = restart_action(tmp_path, f"open({str(marker)!r}, 'w').write('x')\n", destructive=True)
    bot = await make_bot(config=config_with({"flush": action}))
    await bot.command("/run", "flush prod container=api", user=CAROL)  # not @oncall
    assert "You are not allowed to action:flush `flush/prod`" in bot.ephemeral_texts()[-1]
    assert await runs(bot) == []
    await bot.command("/run", "flush prod container=api", user=ALICE)
    blocks = bot.slack.responses[-1]["blocks"]
    assert "Destructive" in blocks[0]["text"]["text"]
    assert blocks[1]["elements"][0]["style"] == "danger" and "confirm" in blocks[1]["elements"][0]
    assert not marker.exists()
    await confirm(bot)
    assert marker.exists()


async def test_read_only_actions_run_without_confirmation(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=config_with({"status": {
        "read_only": True, "environments": {"staging": {"type": "command", "argv": [sys.executable, "-c",
                                                                                    "print('all good')"]}}}}))
    await bot.command("/run", "status")
    [run] = await runs(bot)
    assert run.status == "succeeded" and run.environment == "staging"
    assert "all good" in thread(bot, top(bot)[0])


async def test_approvals_are_asked_on_the_run_message(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=config_with({"restart": restart_action(tmp_path, approvals=1)}))
    await bot.command("/run", "restart prod container=worker")
    await confirm(bot)
    [card] = top(bot)
    assert "*pending approval*" in card.text and "Approvals: 0/1" in card.all_text()
    value = next(e["value"] for b in card.blocks if b["type"] == "actions" for e in b["elements"])
    await bot.click("run.approve", value, user=ALICE, message=card)  # the requester cannot approve
    assert "someone else has to approve it" in bot.ephemeral_texts()[-1]
    await bot.click("run.approve", value, user=BOB, message=card)
    [run] = await runs(bot)
    assert run.status == "succeeded" and run.approved_by == [BOB]
    assert "restarting worker" in thread(bot, top(bot)[0])


# -- the other runners ---------------------------------------------------------------------


class Target:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        async def scale(request: Request) -> Response:
            self.requests.append({"path": request.url.path, "auth": request.headers.get("authorization"),
                                  "body": await request.json()})
            return JSONResponse({"scaled": True, "echo": request.headers.get("authorization")},
                                status_code=self.status)

        return Starlette(routes=[Route("/scale/{service}", scale, methods=["POST"])])


@pytest.mark.parametrize(("status", "outcome"), [(202, "succeeded"), (500, "failed")])
async def test_an_http_action_checks_the_expected_status(make_bot: Any, status: int, outcome: str) -> None:
    target = Target(status)
    async with LocalServer(target.app()) as server:
        bot = await make_bot(config=config_with({"scale": {
            "read_only": True,
            "params": {"service": {"type": "enum", "values": ["api"]}, "n": {"type": "integer", "min": 1, "max": 9}},
            "environments": {"staging": {"type": "http", "url": f"{server.url}/scale/{{service}}",
                                         "headers": {"Authorization": "Bearer ${ACTION_TEST_SECRET}"},
                                         "body": {"replicas": "{n}"}, "expect_status": 202}}}}))
        await bot.command("/run", "scale service=api n=3")
    [run] = await runs(bot)
    assert run.status == outcome
    assert target.requests == [{"path": "/scale/api", "auth": f"Bearer {SECRET}", "body": {"replicas": "3"}}]
    said = thread(bot, top(bot)[0])
    assert SECRET not in said and "Bearer ***" in said


async def test_a_webhook_action_is_signed(make_bot: Any) -> None:
    receiver = WebhookReceiver()
    async with LocalServer(receiver.app()) as server:
        bot = await make_bot(config=config_with({"purge-cache": {
            "params": {"region": {"type": "enum", "values": ["eu", "us"]}},
            "environments": {"staging": {"type": "webhook", "url": f"{server.url}/hooks/rollback",
                                         "secret": "${ACTION_TEST_HOOK_SECRET}", "retry_backoff": "10ms"}}}}))
        await bot.command("/run", "purge-cache region=eu")
        await confirm(bot)
    [run] = await runs(bot)
    assert run.status == "succeeded" and receiver.bad_signatures == 0
    [body] = receiver.accepted
    assert (body["action"], body["environment"], body["params"], body["run_id"]) == (
        "purge-cache", "staging", {"region": "eu"}, 1)


async def test_a_github_actions_action_dispatches_and_follows_the_run(make_bot: Any) -> None:
    github = FakeGitHub()
    async with LocalServer(github.app()) as server:
        bot = await make_bot(config=config_with({"scale-up": {
            "params": {"replicas": {"type": "integer", "min": 1, "max": 10}},
            "environments": {"staging": {"type": "github_actions", "repo": "acme/api", "workflow": "scale.yml",
                                         "token": "${ACTION_TEST_GH_TOKEN}", "api_url": server.url,
                                         "poll_interval": "10ms", "timeout": "10s",
                                         "inputs": {"count": "{replicas}", "who": "{requested_by}"}}}}}))
        await bot.command("/run", "scale-up replicas=4")
        await confirm(bot)
    [run] = await runs(bot)
    assert run.status == "succeeded", run.detail
    [dispatch] = github.dispatches
    assert dispatch["inputs"] == {"count": "4", "who": ALICE}
    assert "succeeded" in thread(bot, top(bot)[0])


# -- sql ------------------------------------------------------------------------------------------


def sql_action(url: str, query: str, **extra: Any) -> dict[str, Any]:
    return {"description": "Connections by state", "params": {"state": {"type": "pattern",
                                                                         "pattern": "^[a-z ]{1,20}$",
                                                                         "default": "idle"}},
            "environments": {"staging": {"type": "sql", "dsn": "${ACTION_TEST_PG}", "query": query}}, **extra}


@pytest.fixture
def pg(target_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import psycopg

    with psycopg.connect(target_pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS jobs")
        conn.execute("CREATE TABLE jobs (id int, name text, state text)")
        conn.execute("INSERT INTO jobs VALUES (1, 'backup', 'idle'), (2, 'reindex', 'idle'), (3, 'vacuum', 'busy'),"
                     " (10, 'report', 'idle')")
    monkeypatch.setenv("ACTION_TEST_PG", target_pg_url)
    return target_pg_url


async def test_a_read_only_sql_action_answers_a_table(make_bot: Any, pg: str) -> None:
    bot = await make_bot(config=config_with({"jobs": sql_action(
        pg, "SELECT id, name FROM jobs WHERE state = {state} ORDER BY id")}))
    await bot.command("/run", "jobs state=idle")  # read-only: no confirmation
    [run] = await runs(bot)
    assert (run.status, run.detail) == ("succeeded", "3 row(s)")
    said = thread(bot, top(bot)[0])
    assert "```\nid  name\n--  -------\n 1  backup\n 2  reindex\n10  report\n```" in said


async def test_a_read_only_sql_action_refuses_a_write(make_bot: Any, pg: str) -> None:
    import psycopg

    bot = await make_bot(config=config_with({"reset": sql_action(pg, "UPDATE jobs SET state = {state}")}))
    await bot.command("/run", "reset state=busy")
    [run] = await runs(bot)
    assert run.status == "failed" and "read-only" in (run.detail or "")
    with psycopg.connect(pg) as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'busy'").fetchone() == (1,)


async def test_a_destructive_sql_action_writes_after_confirmation(make_bot: Any, pg: str) -> None:
    import psycopg

    bot = await make_bot(config=config_with({"reset": sql_action(pg, "UPDATE jobs SET state = {state}",
                                                                 destructive=True)}))
    await bot.command("/run", "reset state=busy")
    with psycopg.connect(pg) as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'busy'").fetchone() == (1,)
    await confirm(bot)
    [run] = await runs(bot)
    assert (run.status, run.detail) == ("succeeded", "UPDATE 4 (4 row(s))")
    with psycopg.connect(pg) as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'busy'").fetchone() == (4,)


async def test_sql_rows_are_capped_and_a_slow_query_times_out(make_bot: Any, pg: str) -> None:
    bot = await make_bot(config=config_with({
        "many": sql_action(pg, "SELECT g FROM generate_series(1, 50) g WHERE {state} = {state}", read_only=True),
        "slow": {"read_only": True, "environments": {"staging": {
            "type": "sql", "dsn": "${ACTION_TEST_PG}", "query": "SELECT pg_sleep(5)", "statement_timeout": "100ms"}}}}))
    await bot.command("/run", "many")
    await bot.command("/run", "slow")
    many, slow = await runs(bot)
    assert many.detail == "20 row(s), 30 more not shown" and "… 30 more row(s)" in (many.output or "")
    assert slow.status == "failed" and "statement timeout" in (slow.detail or "")


# -- incidents -------------------------------------------------------------------------------


async def test_a_run_from_an_incident_channel_goes_on_the_timeline_and_the_postmortem(
        make_bot: Any, tmp_path: Path) -> None:
    from bot.incidents import postmortem

    bot = await make_bot(config=config_with({"restart": restart_action(tmp_path)}))
    channel = bot.slack.add_channel("inc-3-api")
    async with bot.deps.db.session() as session:
        incident = Incident(title="API down", severity="P1", reporter_id=ALICE, commander_id=ALICE,
                            channel_id=channel.id, created_at=bot.clock())
        session.add(incident)
        await session.flush()
        incident_id = incident.id
    await bot.command("/run", "restart staging container=api", channel="inc-3-api")
    await confirm(bot)
    async with bot.deps.db.session() as session:
        events = list((await session.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == incident_id)
                                             .order_by(IncidentEvent.id))).all())
        incident = await session.get(Incident, incident_id)
    assert [e.kind for e in events] == ["action", "action"]
    assert events[0].text == "Run #1: restart in staging (container=api replicas=1) requested"
    assert events[1].text.startswith("Run #1: restart in staging (container=api replicas=1) succeeded: ")
    assert incident is not None
    draft = postmortem(bot.deps.config, incident, events)
    assert "— action: Run #1: restart in staging (container=api replicas=1) succeeded" in draft
    assert top(bot, "inc-3-api")  # the run's message is in the incident channel


async def test_runs_count_against_the_per_user_rate_limit(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=config_with({"restart": restart_action(tmp_path)}))
    for _ in range(10):
        await bot.command("/run", "restart staging container=api")
    await bot.command("/run", "restart staging container=api")
    assert "Slow down: at most 10 `action` requests per 60s" in bot.ephemeral_texts()[-1]
    assert len(await runs(bot)) == 10


async def test_unanswered_confirmations_and_approvals_expire(make_bot: Any, tmp_path: Path, clock: Any) -> None:
    bot = await make_bot(config=config_with({"restart": restart_action(tmp_path, approvals=1)}))
    await bot.command("/run", "restart prod container=api")
    buttons = ephemeral_buttons(bot)
    await bot.command("/run", "restart prod container=worker")
    await confirm(bot)
    clock.advance(minutes=31)
    await bot.run_job("actions.expire")
    first, second = await runs(bot)
    assert (first.status, first.detail) == ("expired", "Not confirmed in time.")
    assert (second.status, second.detail) == ("expired", "Not approved in time.")
    [card] = top(bot)
    assert card.text.startswith("⌛ Run #2") and not any(b["type"] == "actions" for b in card.blocks)
    await bot.click("run.confirm", buttons["run.confirm"], user=ALICE, channel="general")
    assert "is already expired" in bot.ephemeral_texts()[-1]


async def test_a_refusing_webhook_fails_the_run_saying_so(make_bot: Any) -> None:
    receiver = WebhookReceiver(status=403)
    async with LocalServer(receiver.app()) as server:
        bot = await make_bot(config=config_with({"purge-cache": {
            "read_only": True,
            "environments": {"staging": {"type": "webhook", "url": f"{server.url}/hooks/rollback",
                                         "secret": "${ACTION_TEST_HOOK_SECRET}"}}}}))
        await bot.command("/run", "purge-cache")
    [run] = await runs(bot)
    assert (run.status, run.detail) == ("failed", "The action's webhook refused the request (HTTP 403: refused).")
    assert WEBHOOK_SECRET not in thread(bot, top(bot)[0])


async def test_a_sql_action_that_is_not_read_only_still_cannot_write_unless_destructive(
        make_bot: Any, pg: str) -> None:
    bot = await make_bot(config=config_with({"reset": sql_action(pg, "UPDATE jobs SET state = {state}",
                                                                 read_only=False)}))
    await bot.command("/run", "reset state=busy")
    await confirm(bot)  # not read-only: confirmed first
    [run] = await runs(bot)
    assert run.status == "failed" and "read-only" in (run.detail or "")
