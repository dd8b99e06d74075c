"""What runbooks asked of rollbacks: verification by the service's own checks, destructive targets confirmed
by name, versions from a registry command or an HTTP JSON source, and failed deploys announced with a
Roll back button. Signed requests through the harness, real local servers and scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.errors import ConfigError
from bot.rollbacks import versions
from commands.rollback.ids import Ids
from tests.test_rollbacks_support import (
    ALICE,
    command_runner,
    open_modal,
    record_deploys,
    request_message,
    rollback_config,
    rollbacks_in_db,
    script,
    submit,
    thread,
    version_choices,
)

TOKEN = "deploys-token-for-tests"


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    versions.forget()


class Targets:
    """Two services' health endpoints: the api is healthy, the web app is down."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {"api": 0, "web": 0}

    def app(self) -> Starlette:
        async def api(_request: Request) -> Response:
            self.hits["api"] += 1
            return JSONResponse({"status": "ok"})

        async def web(_request: Request) -> Response:
            self.hits["web"] += 1
            return JSONResponse({"status": "unhealthy"}, status_code=503)

        return Starlette(routes=[Route("/api/health", api), Route("/web/health", web)])


def staging(url: str, *, tag: bool = False) -> dict[str, Any]:
    checks = [{"name": "api", "url": f"{url}/api/health"}, {"name": "web", "url": f"{url}/web/health"}]
    if tag:
        checks[0]["services"] = ["api"]
        checks[1]["services"] = ["web"]
    return {"staging": {"timeout": "2s", "checks": checks}}


# -- verify: the checks of the service rolled back -------------------------------------------------

@pytest.mark.parametrize("how", ["verify_list", "services_tag"])
async def test_a_rollback_is_verified_by_its_services_checks_only(make_bot: Any, tmp_path: Path, how: str) -> None:
    targets = Targets()
    async with LocalServer(targets.app()) as server:
        runner = command_runner(tmp_path, **({"verify": ["api"]} if how == "verify_list" else {}))
        config = rollback_config({"api": {"environments": {"staging": runner}}},
                                 environments=staging(server.url, tag=how == "services_tag"))
        bot = await make_bot(config=config)
        await record_deploys(bot, "api", "staging", "v1", "v2")
        await submit(bot, await open_modal(bot, "api staging"))
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.verification) == ("succeeded", "verified")
    assert targets.hits == {"api": 1, "web": 0}  # the web app's failing check was not this rollback's business
    assert "running 1 health check(s) for *staging*" in thread(bot, request_message(bot))


async def test_without_verify_or_tags_the_whole_environment_verifies_as_before(make_bot: Any, tmp_path: Path) -> None:
    targets = Targets()
    async with LocalServer(targets.app()) as server:
        config = rollback_config({"api": {"environments": {"staging": command_runner(tmp_path)}}},
                                 environments=staging(server.url))
        bot = await make_bot(config=config)
        await record_deploys(bot, "api", "staging", "v1", "v2")
        await submit(bot, await open_modal(bot, "api staging"))
    [row] = await rollbacks_in_db(bot)
    assert row.verification == "unhealthy" and targets.hits == {"api": 1, "web": 1}


def test_verify_names_checks_of_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        rollback_config({"api": {"environments": {"staging": command_runner(tmp_path, verify=["api", "db"])}}},
                        environments=staging("http://127.0.0.1:9"))
    assert info.value.problems == ["(top level): rollbacks.api.environments.staging.verify: no check named 'db' "
                                   "in environments.staging (checks there: api, web)"]


# -- destructive: type the service's name ----------------------------------------------------------

async def test_a_destructive_rollback_needs_the_service_name_typed(make_bot: Any, tmp_path: Path) -> None:
    runner = command_runner(tmp_path, destructive=True)
    bot = await make_bot(config=rollback_config({"db-reset": {"environments": {"staging": runner}}}))
    await record_deploys(bot, "db-reset", "staging", "v1", "v2")
    view = await open_modal(bot, "db-reset staging")
    assert any(b.get("block_id") == Ids.CONFIRM_BLOCK for b in view["blocks"])
    assert "This rollback is destructive" in json.dumps(view)
    for typed in (None, "", "db", "DB-RESET"):
        response = await submit(bot, view, confirm=typed)
        assert response.json() == {"response_action": "errors", "errors": {
            Ids.CONFIRM_BLOCK: "This rollback is destructive: type the service name `db-reset` exactly to confirm it."}}
    assert await rollbacks_in_db(bot) == []
    response = await submit(bot, view, confirm=" db-reset ")
    assert response.status_code == 200 and response.text == ""
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.to_version) == ("succeeded", "v1")


async def test_a_plain_target_asks_for_no_name(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=rollback_config({"api": {"environments": {"staging": command_runner(tmp_path)}}}))
    await record_deploys(bot, "api", "staging", "v1", "v2")
    view = await open_modal(bot, "api staging")
    assert not any(b.get("block_id") == Ids.CONFIRM_BLOCK for b in view["blocks"])


# -- versions: a registry command or an HTTP JSON source --------------------------------------------

TAGS = "print('\\n'.join(['v9', 'v8', 'not a version!', 'v7', 'v9']))\n"


async def test_versions_from_a_command_are_offered_in_the_modal(make_bot: Any, tmp_path: Path) -> None:
    tags = script(tmp_path, "show_tags.py", "print(sys.argv[1], file=open(sys.argv[2], 'a'))\n" + TAGS)
    calls = tmp_path / "calls.txt"
    services = {"api": {"versions": {"command": [sys.executable, tags, "{service}-{environment}", str(calls)],
                                     "cache": "1m"},
                        "environments": {"staging": command_runner(tmp_path)}}}
    bot = await make_bot(config=rollback_config(services))
    await record_deploys(bot, "api", "staging", "v8")  # running now: not offered
    view = await open_modal(bot, "api staging")
    assert version_choices(view) == ["v9", "v7"]
    assert submit_default(view) == "v9"
    response = await submit(bot, view, version="v7")
    assert response.status_code == 200
    [row] = await rollbacks_in_db(bot)
    assert (row.from_version, row.to_version) == ("v8", "v7")
    await open_modal(bot, "api staging")  # within `cache`: the command is not run again
    assert calls.read_text().split() == ["api-staging"]


def submit_default(view: dict[str, Any]) -> str:
    block = next(b for b in view["blocks"] if b.get("block_id") == Ids.VERSION_BLOCK)
    return str(block["element"]["initial_option"]["value"])


async def test_a_typed_version_wins_over_the_choice(make_bot: Any, tmp_path: Path) -> None:
    services = {"api": {"versions": {"command": [sys.executable, script(tmp_path, "t.py", TAGS)]},
                        "environments": {"staging": command_runner(tmp_path)}}}
    bot = await make_bot(config=rollback_config(services))
    view = await open_modal(bot, "api staging")
    response = await submit(bot, view, other="not valid!")
    assert set(response.json()["errors"]) == {Ids.OTHER_VERSION_BLOCK}
    await submit(bot, view, other="v1.0.3")
    [row] = await rollbacks_in_db(bot)
    assert row.to_version == "v1.0.3"


async def test_a_failing_source_falls_back_to_the_deploy_history_with_a_note(make_bot: Any, tmp_path: Path) -> None:
    broken = script(tmp_path, "broken.py", "print('az: login required', file=sys.stderr); sys.exit(3)\n")
    services = {"api": {"versions": {"command": [sys.executable, broken]},
                        "environments": {"staging": command_runner(tmp_path)}}}
    bot = await make_bot(config=rollback_config(services))
    await record_deploys(bot, "api", "staging", "v1", "v2", "v3")
    view = await open_modal(bot, "api staging")
    assert version_choices(view) == ["v2", "v1"]
    text = json.dumps(view)
    assert "Versions from the configured source are unavailable" in text and "exited with status 3" in text
    assert "showing the deploy history" in text


async def test_a_slow_source_is_given_up_on_before_the_trigger_expires(make_bot: Any, tmp_path: Path) -> None:
    slow = script(tmp_path, "slow.py", "time.sleep(30)\n")
    services = {"api": {"versions": {"command": [sys.executable, slow], "timeout": "300ms"},
                        "environments": {"staging": command_runner(tmp_path)}}}
    bot = await make_bot(config=rollback_config(services))
    await record_deploys(bot, "api", "staging", "v1", "v2")
    view = await open_modal(bot, "api staging")
    assert "gave no answer within 0.3s" in json.dumps(view) and version_choices(view) == ["v1"]


async def test_versions_from_an_http_json_source(make_bot: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, str]] = []

    async def tags(request: Request) -> Response:
        seen.append({"path": request.url.path, "auth": request.headers.get("authorization", "")})
        if request.headers.get("authorization") != "Bearer registry-secret":
            return JSONResponse({"message": "unauthorized"}, status_code=401)
        return JSONResponse({"data": {"tags": [{"name": "2026.01.3"}, {"name": "2026.01.2"}, {"x": 1}]}})

    async with LocalServer(Starlette(routes=[Route("/v2/{repo}/tags", tags)])) as server:
        monkeypatch.setenv("REGISTRY_URL", server.url)
        monkeypatch.setenv("REGISTRY_TOKEN", "registry-secret")
        source = {"url": "${REGISTRY_URL}/v2/{service}/tags", "headers": {"Authorization": "Bearer ${REGISTRY_TOKEN}"},
                  "path": "data.tags", "field": "name"}
        services = {"api": {"versions": source, "environments": {"staging": command_runner(tmp_path)}}}
        bot = await make_bot(config=rollback_config(services))
        view = await open_modal(bot, "api staging")
        assert version_choices(view) == ["2026.01.3", "2026.01.2"]
        assert seen == [{"path": "/v2/api/tags", "auth": "Bearer registry-secret"}]
        monkeypatch.setenv("REGISTRY_TOKEN", "wrong")
        versions.forget()
        view = await open_modal(bot, "api staging")
        assert "unavailable (HTTP 401)" in json.dumps(view)
        assert "registry-secret" not in json.dumps(bot.slack.view_log)


def test_a_version_source_may_name_only_the_service_and_environment() -> None:
    with pytest.raises(ConfigError, match=r"\{service\} and \{environment\} only, not \{reason\}"):
        rollback_config({"api": {"versions": {"command": ["az", "--x={reason}"]},
                                 "environments": {"staging": {"provider": "command", "argv": ["true"]}}}})


# -- failed deploys are announced with a Roll back button --------------------------------------------

async def post_deploy(bot: BotHarness, **body: Any) -> Any:
    assert bot.http is not None
    response = await bot.http.post("/deploys", json={"service": "api", "environment": "staging", **body},
                                   headers={"Authorization": f"Bearer {TOKEN}"})
    await bot.settle()
    return response


async def test_a_failed_deploy_is_announced_with_a_roll_back_button(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=rollback_config({"api": {"environments": {"staging": command_runner(tmp_path)}}}),
                         settings_overrides={"deploys_token": TOKEN})
    assert (await post_deploy(bot, version="v1")).status_code == 201
    assert (await post_deploy(bot, version="v2")).status_code == 201
    assert bot.messages("#ops") == []  # a successful deploy is not announced
    response = await post_deploy(bot, version="v3", status="failed", commit="abc1234", deployed_by="ci@github")
    assert response.status_code == 201
    assert (await post_deploy(bot, version="v3", status="failed", commit="abc1234",
                              deployed_by="ci@github")).status_code == 200  # CI's retry: not announced again
    [announcement] = bot.messages("#ops")
    text = announcement.all_text()
    assert "Deploy failed" in text and "`v3`" in text and "abc1234" in text and "ci@github" in text
    [button] = [e for b in announcement.blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == Ids.FROM_DEPLOY and button["text"]["text"] == "Roll back"

    views = len(bot.slack.view_log)
    await bot.click(Ids.FROM_DEPLOY, button["value"], message=announcement, user=ALICE)
    assert len(bot.slack.view_log) == views + 1
    view = bot.last_view()
    assert view["callback_id"] == Ids.REQUEST and "Roll back `api` in *staging*" in json.dumps(view)
    reason = next(b for b in view["blocks"] if b.get("block_id") == Ids.REASON_BLOCK)["element"]["initial_value"]
    assert reason == "The deploy of v3 failed."
    await submit(bot, view, reason=reason)
    [row] = await rollbacks_in_db(bot)
    assert (row.service, row.environment, row.from_version, row.to_version) == ("api", "staging", "v2", "v1")
    assert row.reason == "The deploy of v3 failed."


async def test_a_failed_deploy_of_a_service_without_rollbacks_is_announced_without_a_button(
        make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=rollback_config({"api": {"environments": {"staging": command_runner(tmp_path)}}}),
                         settings_overrides={"deploys_token": TOKEN})
    await post_deploy(bot, version="v1", status="failed", service="billing")
    [announcement] = bot.messages("#ops")
    assert not [b for b in announcement.blocks if b["type"] == "actions"]
    assert "No rollback is configured for `billing`" in announcement.all_text()


async def test_a_forged_roll_back_button_opens_nothing(make_bot: Any, tmp_path: Path) -> None:
    bot = await make_bot(config=rollback_config({"api": {"environments": {"staging": command_runner(tmp_path)}}}))
    views = len(bot.slack.view_log)
    for value in ("junk{", json.dumps({"service": "nope", "environment": "staging"})):
        response = await bot.click(Ids.FROM_DEPLOY, value, channel="ops")
        assert response.status_code == 200
    assert len(bot.slack.view_log) == views


def test_config_check_warns_of_a_version_command_it_cannot_find(tmp_path: Path) -> None:
    from bot.config import check_file

    path = tmp_path / "opsbot.yml"
    path.write_text("severities: [{name: P1, response: immediate}]\n"
                    "rollbacks:\n  api:\n    versions: {command: [no-such-az, acr]}\n"
                    "    environments: {staging: {provider: command, argv: ['true']}}\n")
    assert check_file(path) == ([], ["rollbacks.api.versions.command: `no-such-az` is not on PATH here"])
