"""`/health` end to end: signed slash commands in, the ack and the replaced response out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.emulator.localserver import LocalServer
from tests.conftest import closed_port, load_test_config


async def _ok(_request: Request) -> Response:
    return JSONResponse({"status": "healthy", "checks": {"database": "ok"}})


async def _sick(_request: Request) -> Response:
    return JSONResponse({"status": "unhealthy", "checks": {"database": "down"}})


async def _hang(request: Request) -> Response:
    # Hangs until the test ends (the fixture releases it so the server can stop cleanly).
    await request.app.state.release.wait()
    return PlainTextResponse("late")


async def _counted(request: Request) -> Response:
    request.app.state.hits += 1
    return JSONResponse({"status": "healthy" if request.app.state.healthy else "unhealthy"})


async def _open(_request: Request) -> Response:
    return PlainTextResponse("<b>admin</b>")


TARGET = Starlette(routes=[Route("/ok", _ok), Route("/sick", _sick), Route("/hang", _hang),
                           Route("/admin", _open), Route("/counted", _counted)])


@pytest.fixture
async def target() -> AsyncIterator[str]:
    TARGET.state.release = asyncio.Event()
    TARGET.state.hits, TARGET.state.healthy = 0, True
    async with LocalServer(TARGET) as server:
        yield server.url
        TARGET.state.release.set()



def environments(url: str) -> dict[str, Any]:
    return {
        # The hanging check waits this long; the others must answer within it on a loaded machine (300 ms
        # was seen to time the `api` check out during the full suite).
        "prod": {"default": True, "timeout": "1s", "checks": [
            {"name": "api", "url": f"{url}/ok", "expect_json": {"status": ["healthy", "ok"]}},
            {"name": "payments", "url": f"{url}/sick", "expect_json": {"checks.database": "ok"}},
            {"name": "auth-guard", "url": f"{url}/admin", "expect_status": 401},
            {"name": "search", "url": f"{url}/hang"},
            {"name": "redis", "type": "tcp", "host": "127.0.0.1", "port": closed_port()},
            {"name": "web", "url": f"{url}/ok"},
        ]},
        "staging": {"checks": [{"name": "api", "url": f"{url}/ok"}]},
    }


@pytest.fixture
async def bot(make_bot: Any, target: str) -> Any:
    return await make_bot(config=load_test_config({"environments": environments(target)}))


async def test_health_acks_at_once_then_replaces_with_the_result(bot: Any) -> None:
    response = await bot.command("/health", "prod")
    assert response.status_code == 200
    ack = response.json()
    assert ack == {"response_type": "ephemeral", "text": "Checking prod: 6 checks…"}
    (final,) = bot.slack.responses
    assert final["replace_original"] is True and final["response_type"] == "ephemeral"
    text = bot.ephemeral_texts()[-1]
    assert "❌ *prod* is unhealthy · 4 of 6 checks failing" in text
    assert "`checks.database` was `down`" in text
    assert "expected 401 got 200" in text
    assert "timeout after 1 s" in text
    assert "❌ *redis*" in text and "connection refused" in text
    assert "✅ *api*" in text and "✅ *web*" in text
    # Failures are listed before the checks that pass.
    assert text.index("❌ *payments*") < text.index("✅ *api*")


async def test_bare_health_checks_the_default_environment(bot: Any) -> None:
    response = await bot.command("/health", "")
    assert response.json()["text"] == "Checking prod: 6 checks…"
    assert "*prod* is unhealthy" in bot.ephemeral_texts()[-1]


async def test_healthy_environment(bot: Any) -> None:
    response = await bot.command("/health", "STAGING")
    assert response.json()["text"] == "Checking staging: 1 check…"
    text = bot.ephemeral_texts()[-1]
    assert "✅ *staging* is healthy · 1 check passes" in text
    assert "✅ *api* · " in text and " · 200" in text


async def test_unknown_environment_lists_the_valid_ones_without_running_anything(bot: Any) -> None:
    calls = len(bot.slack.calls)
    response = await bot.command("/health", "qa")
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "Unknown environment `qa`" in body["text"] and "`prod`, `staging`" in body["text"]
    assert bot.slack.responses == [] and len(bot.slack.calls) == calls


async def test_health_all_checks_every_environment(bot: Any) -> None:
    response = await bot.command("/health", "all")
    assert response.json()["text"] == "Checking 2 environments: 7 checks…"
    (final,) = bot.slack.responses
    text = bot.ephemeral_texts()[-1]
    assert "*prod* is unhealthy" in text and "*staging* is healthy" in text
    assert "prod is unhealthy" in final["text"] and "staging is healthy" in final["text"]


async def test_target_text_is_escaped_for_slack(make_bot: Any, target: str) -> None:
    config = load_test_config({"environments": {"prod": {"checks": [
        {"name": "admin", "url": f"{target}/ok", "expect_json": {"status": "<!channel>"}}]}}})
    other = await make_bot(config=config)
    await other.command("/health", "prod")
    text = other.ephemeral_texts()[-1]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


async def test_no_environments_configured(make_bot: Any) -> None:
    other = await make_bot(config=load_test_config({"environments": {}}))
    response = await other.command("/health", "")
    assert "No environments are configured" in response.json()["text"]


def _counted_env(url: str) -> Any:
    return load_test_config({"environments": {"shop": {"checks": [
        {"name": "api", "url": f"{url}/counted", "expect_json": {"status": "healthy"}}]}}})


async def test_queued_requests_share_one_round_of_checks_and_a_later_request_sees_the_change(
        make_bot: Any, target: str) -> None:
    """Twelve `/health shop` jobs asked a minute ago (a queue drained after a burst or a restart) are answered
    by one round of checks, which started after every one of them was asked; a request made after the
    target changed gets a round of its own and sees the change."""
    bot = await make_bot(config=_counted_env(target))
    asked = time.time() - 60
    urls = [bot.requests.response_url() for _ in range(12)]
    for url in urls:
        await bot.deps.queue.defer("health.check", {"user": "U0ALICE01", "channel": None, "response_url": url,
                                                    "environments": ["shop"], "requested_at": asked})
    await bot.settle()
    assert TARGET.state.hits == 1
    assert len(bot.slack.responses) == 12
    assert all("*shop* is healthy" in text for text in bot.ephemeral_texts())
    TARGET.state.healthy = False
    await bot.command("/health", "shop")
    assert TARGET.state.hits == 2 and "*shop* is unhealthy" in bot.ephemeral_texts()[-1]
    await bot.command("/health", "shop")  # and the next one reads again: a finished round is not a cache
    assert TARGET.state.hits == 3


async def test_requests_arriving_together_are_each_answered_and_share_what_they_can(
        make_bot: Any, target: str) -> None:
    bot = await make_bot(config=_counted_env(target))
    await asyncio.gather(*(bot.command("/health", "shop", user=f"U0USER{n:04d}", settle=False) for n in range(8)))
    await bot.settle()
    assert len(bot.slack.responses) == 8 and 1 <= TARGET.state.hits <= 8
    assert all("*shop* is healthy" in text for text in bot.ephemeral_texts())
