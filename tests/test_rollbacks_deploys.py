"""POST /deploys (bearer token), /deploys listing, and the default rollback target from history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot import deploys
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


async def post(bot: BotHarness, body: Any, token: str | None = TOKEN) -> Any:
    assert bot.http is not None
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
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


async def test_post_deploys_is_off_without_a_configured_token(make_bot: Any, config: Config) -> None:
    plain = await make_bot(config=config)
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
