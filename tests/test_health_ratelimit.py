"""`type: rate_limit` checks against a real local server that enforces a limit (the runbook's "send 65
requests, expect 429 after 60"), in the engine and through `/health`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.config.health import Environment
from bot.emulator.localserver import LocalServer
from bot.health import check_environment
from bot.providers.probe_client import Probes
from tests.conftest import closed_port, load_test_config

SEEN: dict[str, int] = {}
IN_FLIGHT = {"now": 0, "most": 0}


async def _limited(request: Request) -> Response:
    """Allows `limit` requests per `bucket`, then answers 429 with Retry-After."""
    bucket, limit = request.path_params["bucket"], int(request.path_params["limit"])
    if request.headers.get("x-api-key") != request.query_params.get("key", request.headers.get("x-api-key")):
        return JSONResponse({"error": "bad key"}, status_code=401)
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    try:
        await asyncio.sleep(0.001)
        SEEN[bucket] = SEEN.get(bucket, 0) + 1
        if SEEN[bucket] > limit:
            return JSONResponse({"error": "rate limited"}, status_code=429, headers={"Retry-After": "60"})
        return JSONResponse({"ok": True})
    finally:
        IN_FLIGHT["now"] -= 1


async def _broken(_request: Request) -> Response:
    return JSONResponse({"status": "error", "error": "db down"}, status_code=500)


async def _slow(request: Request) -> Response:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(request.app.state.release.wait(), 30)
    return JSONResponse({"ok": True})


TARGET = Starlette(routes=[Route("/limit/{bucket}/{limit:int}", _limited), Route("/broken", _broken),
                           Route("/slow", _slow)])


@pytest.fixture
async def target() -> AsyncIterator[str]:
    SEEN.clear()
    IN_FLIGHT.update(now=0, most=0)
    TARGET.state.release = asyncio.Event()
    async with LocalServer(TARGET) as server:
        yield server.url
        TARGET.state.release.set()


@pytest.fixture
async def http() -> AsyncIterator[Probes]:
    async with Probes() as client:
        yield client


def rate_check(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "login-limit", "type": "rate_limit", "url": url, "requests": 65, "expect_429_after": 60,
            **extra}


async def one(http: Probes, check: dict[str, Any]) -> Any:
    report = await check_environment("prod", Environment.model_validate({"checks": [check]}), http=http)
    (result,) = report.results
    return result


async def test_limit_enforced_at_60_passes(target: str, http: Probes) -> None:
    result = await one(http, rate_check(f"{target}/limit/a/60"))
    assert result.status == "ok", result.detail
    assert result.kind == "rate_limit" and result.status_code == 429
    assert result.detail == "429 after 60 requests as expected (limit 60) (Retry-After 60 s)"
    assert SEEN["a"] == 61  # stops at the first 429


async def test_limit_reached_too_early_fails(target: str, http: Probes) -> None:
    result = await one(http, rate_check(f"{target}/limit/b/12"))
    assert result.status == "fail"
    assert result.detail == "429 after 12 requests, expected after 60 (Retry-After 60 s)"
    assert SEEN["b"] == 13


async def test_no_limit_at_all_fails(target: str, http: Probes) -> None:
    result = await one(http, rate_check(f"{target}/limit/c/1000"))
    assert result.status == "fail" and result.detail == "no 429 in 65 requests, expected one after 60"
    assert SEEN["c"] == 65


async def test_a_later_limit_within_requests_passes(target: str, http: Probes) -> None:
    result = await one(http, rate_check(f"{target}/limit/d/63"))
    assert result.status == "ok" and result.detail.startswith("429 after 63 requests as expected")


async def test_concurrency_is_bounded(target: str, http: Probes) -> None:
    result = await one(http, rate_check(f"{target}/limit/e/60", concurrency=4))
    assert result.status == "ok", result.detail
    assert 1 < IN_FLIGHT["most"] <= 4
    assert SEEN["e"] <= 64  # at most the requests already in flight after the first 429


async def test_other_errors_fail_with_the_answer(target: str, http: Probes,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    broken = await one(http, rate_check(f"{target}/broken"))
    assert broken.status == "fail" and broken.status_code == 500
    assert broken.detail == "request 1 got 500 (expected 2xx, or 429 when limited)"
    assert broken.body == "status=error · error=db down"
    refused = await one(http, rate_check(f"http://127.0.0.1:{closed_port()}/x"))
    assert refused.status == "fail" and refused.detail == "request 1: connection refused"
    monkeypatch.setenv("HC_RL_KEY", "k-123456")
    keyed = await one(http, rate_check(f"{target}/limit/f/60?key=k-123456", headers={"X-Api-Key": "${HC_RL_KEY}"}))
    assert keyed.status == "ok", keyed.detail


async def test_request_timeout_and_total_cap(target: str, http: Probes) -> None:
    per_request = await one(http, rate_check(f"{target}/slow", request_timeout="200ms"))
    assert per_request.status == "fail" and per_request.detail == "request 1 timed out after 0.2 s"
    total = await one(http, rate_check(f"{target}/slow", timeout="300ms"))
    assert total.status == "fail" and total.detail == "timeout after 0.3 s"


def test_config_refuses_a_limit_that_cannot_be_reached() -> None:
    with pytest.raises(ValidationError, match="must be more than `expect_429_after`"):
        Environment.model_validate({"checks": [rate_check("http://x.test/", requests=60)]})
    with pytest.raises(ValidationError):
        Environment.model_validate({"checks": [rate_check("http://x.test/", concurrency=50)]})
    check = Environment.model_validate({"checks": [{"type": "rate_limit", "url": "http://x.test/api",
                                                    "requests": 5, "expect_429_after": 3}]}).checks[0]
    assert check.label() == "rate limit GET http://x.test/api"


async def test_health_runs_it_and_the_monitor_does_not(make_bot: Any, target: str) -> None:
    config = load_test_config({"environments": {"prod": {"default": True, "monitor": "1m", "checks": [
        rate_check(f"{target}/limit/g/12"), {"name": "api", "url": f"{target}/limit/h/1000"}]}}})
    bot = await make_bot(config=config)
    await bot.run_job("health.monitor.prod")
    assert "g" not in SEEN and bot.messages("#alerts") == []  # spending the target's budget every minute: no
    response = await bot.command("/health", "prod")
    assert response.json()["text"] == "Checking prod: 2 checks…"
    text = bot.ephemeral_texts()[-1]
    assert "❌ *login-limit* · " in text and "429 after 12 requests, expected after 60" in text
    assert SEEN["g"] == 13
