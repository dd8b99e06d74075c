"""POST /deploys (bearer token), /deploys listing, and the default rollback target from history."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot import deploys
from bot.clock import FakeClock
from bot.config import Config
from bot.emulator.harness import BotHarness
from tests.test_rollbacks_support import (
    audit_actions,
    command_runner,
    deploys_in_db,
    open_modal,
    request_rollback,
    rollback_config,
)

TOKEN = "deploys-token-for-tests"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    runner = command_runner(tmp_path)
    return rollback_config({"api": {"environments": {"prod": runner, "staging": runner}}})


@pytest.fixture
async def bot(make_bot: Any, config: Config) -> BotHarness:
    return await make_bot(config=config, settings_overrides={"deploys_token": TOKEN})


async def post(bot: BotHarness, body: Any, token: str | None = TOKEN, key: str | None = None) -> Any:
    assert bot.http is not None
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await bot.http.post("/deploys", json=body, headers=headers)


def deploy(version: str, at: str, **extra: Any) -> dict[str, Any]:
    return {"service": "api", "environment": "prod", "version": version, "commit": "abc123" + version[-1],
            "deployed_by": "ci@github", "deployed_at": at, **extra}


async def test_post_deploys_needs_the_bearer_token(bot: BotHarness) -> None:
    body = deploy("v1", "2026-01-05T08:00:00Z")
    missing = await post(bot, body, token=None)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert (await post(bot, body, token="wrong")).status_code == 401
    assert await deploys_in_db(bot) == []
    created = await post(bot, body)
    assert created.status_code == 201
    assert created.json()["version"] == "v1" and created.json()["deployed_at"].startswith("2026-01-05T08:00:00")
    [row] = await deploys_in_db(bot)
    assert (row.service, row.environment, row.version, row.commit, row.source) == ("api", "prod", "v1", "abc1231", "ci")
    assert ("ci@github", "deploy.record", "ok") in await audit_actions(bot)


@pytest.mark.parametrize("token", [None, "", "  "])
async def test_post_deploys_is_off_without_a_configured_token(make_bot: Any, config: Config,
                                                              token: str | None) -> None:
    """Unset or empty (`DEPLOYS_TOKEN=`): the endpoint is off and says why, never on with an empty token."""
    plain = await make_bot(config=config, settings_overrides={} if token is None else {"deploys_token": token})
    assert plain.http is not None
    response = await plain.http.post("/deploys", json=deploy("v1", "2026-01-05T08:00:00Z"),
                                     headers={"Authorization": "Bearer anything"})
    assert response.status_code == 404 and "DEPLOYS_TOKEN" in response.json()["error"]


@pytest.mark.parametrize(("body", "field"), [
    ({"service": "api", "environment": "prod"}, "version"),
    (deploy("v1 ; reboot", "2026-01-05T08:00:00Z"), "version"),
    (deploy("v1", "yesterday"), "deployed_at"),
    (deploy("v1", "2026-01-05T08:00:00Z", status="maybe"), "status"),
    (deploy("v1", "2026-01-05T08:00:00Z", extra="x"), "extra"),
    (deploy("v1", "2026-01-05T08:00:00Z", environment="qa"), "environment"),
    ([1, 2], ""),
])
async def test_post_deploys_validates_the_body(bot: BotHarness, body: Any, field: str) -> None:
    response = await post(bot, body)
    assert response.status_code == 422
    assert field in [p["field"] for p in response.json()["problems"]]
    assert await deploys_in_db(bot) == []


async def test_post_deploys_refuses_non_json(bot: BotHarness) -> None:
    assert bot.http is not None
    response = await bot.http.post("/deploys", content=b"not json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422


async def test_rollback_defaults_to_the_previous_successful_version(bot: BotHarness) -> None:
    await post(bot, deploy("v1", "2026-01-05T06:00:00Z"))
    await post(bot, deploy("v2", "2026-01-05T07:00:00Z"))
    await post(bot, deploy("v3", "2026-01-05T07:30:00Z", status="failed"))  # never ran: not a target
    await post(bot, deploy("v4", "2026-01-05T08:00:00Z"))
    await post(bot, deploy("v4", "2026-01-05T08:10:00Z"))  # a redeploy of the same version
    view = await open_modal(bot, "api prod")
    assert "*Current version:* `v4`" in view["blocks"][0]["text"]["text"]
    version_block = next(b for b in view["blocks"] if b.get("block_id") == "rollback_version")
    assert version_block["element"]["initial_value"] == "v2"


async def test_after_a_rollback_the_next_default_skips_the_abandoned_version(bot: BotHarness) -> None:
    await post(bot, deploy("v1", "2026-01-05T06:00:00Z", environment="staging"))
    await post(bot, deploy("v2", "2026-01-05T07:00:00Z", environment="staging"))
    await post(bot, deploy("v3", "2026-01-05T08:00:00Z", environment="staging"))
    await request_rollback(bot, "api staging")  # v3 -> v2, no approval needed in staging
    async with bot.deps.db.session() as session:
        versions = await deploys.versions(session, service="api", environment="staging")
    assert versions == deploys.Versions(current="v2", previous="v1")  # not back to the bad v3


async def test_deploys_command_lists_history(bot: BotHarness) -> None:
    await post(bot, deploy("v1", "2026-01-05T06:00:00Z"))
    await post(bot, deploy("v2", "2026-01-05T07:00:00Z", status="failed"))
    await post(bot, deploy("v9", "2026-01-05T07:00:00Z", environment="staging"))
    await bot.command("/deploys", "api prod")
    listing = bot.ephemeral_texts()[-1]
    assert "Deploys of api in prod" in listing
    assert listing.index("`v2`") < listing.index("`v1`") and ":x: failed" in listing and "v9" not in listing
    await bot.command("/deploys", "api")
    assert "*staging*" in bot.ephemeral_texts()[-1] and "`v9`" in bot.ephemeral_texts()[-1]
    await bot.command("/deploys", "billing")
    assert "No deploys recorded for `billing`" in bot.ephemeral_texts()[-1]
    response = await bot.command("/deploys", "api qa")
    assert "Valid environments: `prod`, `staging`" in response.json()["text"]


# -- retries are idempotent ---------------------------------------------------------------------

async def recorded(bot: BotHarness) -> int:
    return [action for _, action, _ in await audit_actions(bot)].count("deploy.record")


async def test_a_replayed_idempotency_key_returns_the_original_answer(bot: BotHarness, clock: FakeClock) -> None:
    body = {"service": "api", "environment": "PROD", "version": "v7", "commit": "abc1237"}  # no time of its own
    first = await post(bot, body, key="ci-run-4711-deploy")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    clock.advance(minutes=30)  # long after the retry window: the key decides
    again = await post(bot, {**body, "environment": "prod"}, key="ci-run-4711-deploy")
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await deploys_in_db(bot)) == 1 and await recorded(bot) == 1

    other = await post(bot, {**body, "version": "v8"}, key="ci-run-4711-deploy")
    assert other.status_code == 422 and "different body" in other.json()["error"]
    assert len(await deploys_in_db(bot)) == 1
    assert (await post(bot, body, key="")).status_code == 422
    assert (await post(bot, {**body, "version": "v8"}, key="ci-run-4712-deploy")).status_code == 201


async def test_a_retry_without_a_key_is_the_same_deploy_by_its_natural_key(bot: BotHarness) -> None:
    timed = deploy("v1", "2026-01-05T08:00:00Z")
    first = await post(bot, timed)
    again = await post(bot, dict(reversed(list(timed.items()))))  # the same deploy, keys in another order
    assert first.status_code == 201 and again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert (await post(bot, deploy("v1", "2026-01-05T09:00:00Z"))).status_code == 201  # a redeploy later on
    assert (await post(bot, {**timed, "status": "failed"})).status_code == 201  # a different outcome
    assert len(await deploys_in_db(bot)) == 3 and await recorded(bot) == 3


async def test_a_retry_of_a_body_without_its_own_time(bot: BotHarness, clock: FakeClock) -> None:
    body = {"service": "api", "environment": "prod", "version": "v2", "commit": "abc1232"}
    first = await post(bot, body)
    clock.advance(seconds=30)
    again = await post(bot, body)
    assert (again.status_code, again.json()) == (200, first.json())
    assert len(await deploys_in_db(bot)) == 1
    await post(bot, {**body, "version": "v3"})  # something else deployed in between: v2 again is a deploy
    assert (await post(bot, body)).status_code == 201
    clock.advance(minutes=11)  # past the retry window: the same body is a new deploy of the same version
    assert (await post(bot, body)).status_code == 201
    assert [d.version for d in await deploys_in_db(bot)] == ["v2", "v3", "v2", "v2"]


@pytest.mark.parametrize("key", ["ci-run-99", None])
async def test_parallel_retries_store_one_deploy(bot: BotHarness, key: str | None) -> None:
    body = {"service": "api", "environment": "prod", "version": "v5", "commit": "abc1235"}
    answers = await asyncio.gather(*(post(bot, body, key=key) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200 if key is None else 201] * 5 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(await deploys_in_db(bot)) == 1 and await recorded(bot) == 1
