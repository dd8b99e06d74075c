"""A failing check says why (the target's own body), and a 429 is "rate limited", a warning, not "down".

Real local HTTP servers answer as the runbooks' apps do; `/health` goes through signed requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.emulator.localserver import LocalServer
from bot.health import check_environment
from bot.providers.checks_body import BODY_LIMIT, explain
from bot.providers.probe_client import Probes
from tests.conftest import load_test_config, local_environment

API_KEY = "Zq8mW3xR7tK2pL9v"  # a header secret of one check, echoed back by another endpoint
NGINX_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
             "</center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n")
ANSWERS: dict[str, tuple[int, Any, dict[str, str]]] = {
    "unhealthy": (503, {"status": "unhealthy", "database": "disconnected", "error": "Connection refused",
                        "version": "2.4.1", "uptime": "3h"}, {}),
    "nested": (503, {"status": "degraded", "checks": {"db": {"status": "down", "error": "timeout"},
                                                      "cache": {"status": "ok"},
                                                      "queue": {"healthy": False, "message": "no consumers"}}}, {}),
    "value": (200, {"status": "degraded", "components": [{"name": "search", "status": "failing",
                                                          "detail": "index stale"},
                                                         {"name": "auth", "status": "up"}]}, {}),
    "html": (502, NGINX_502, {}),
    "long": (500, {"error": "stack " * 300}, {}),
    "echo": (500, {"error": f"upstream refused key {API_KEY}"}, {}),
    "mention": (503, {"status": "down", "message": "<!channel> paging everyone"}, {}),
    "limited": (429, {"error": "Too many requests"}, {"Retry-After": "30"}),
    "limited-bare": (429, "slow down", {}),
    "ok": (200, {"status": "ok"}, {}),
}


async def _answer(request: Request) -> Response:
    code, body, headers = ANSWERS[request.path_params["name"]]
    if isinstance(body, str):
        return PlainTextResponse(body, status_code=code, headers=headers)
    return JSONResponse(body, status_code=code, headers=headers)


TARGET = Starlette(routes=[Route("/{name}", _answer)])


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async with LocalServer(TARGET) as server:
        yield server.url


@pytest.fixture
async def http() -> AsyncIterator[Probes]:
    async with Probes() as client:
        yield client


async def result_of(http: Probes, check: dict[str, Any]) -> Any:
    report = await check_environment("prod", local_environment(check), http=http)
    (result,) = report.results
    return result


# -- the engine -------------------------------------------------------------------------------
async def test_unexpected_status_shows_what_the_body_says(target: str, http: Probes) -> None:
    result = await result_of(http, {"name": "api", "url": f"{target}/unhealthy"})
    assert result.status == "fail" and result.detail == "expected 2xx got 503"
    assert result.body == "status=unhealthy · database=disconnected · error=Connection refused"
    assert result.explanation == ("expected 2xx got 503 · status=unhealthy · database=disconnected · "
                                  "error=Connection refused")


async def test_nested_checks_that_are_not_ok_are_named(target: str, http: Probes) -> None:
    result = await result_of(http, {"name": "api", "url": f"{target}/nested"})
    assert result.body == "status=degraded · checks.db: down (timeout) · checks.queue: healthy=false (no consumers)"
    assert "cache" not in result.body


async def test_an_unexpected_json_value_also_carries_the_body(target: str, http: Probes) -> None:
    result = await result_of(http, {"name": "api", "url": f"{target}/value", "expect_json": {"status": "ok"}})
    assert result.status == "fail" and "`status` was `degraded`" in result.detail
    assert result.body == "status=degraded · components.search: failing (index stale)"
    passing = await result_of(http, {"name": "api", "url": f"{target}/ok", "expect_json": {"status": "ok"}})
    assert passing.status == "ok" and passing.body == ""


async def test_a_body_that_is_not_json_gives_a_short_line(target: str, http: Probes) -> None:
    result = await result_of(http, {"name": "web", "url": f"{target}/html"})
    assert result.detail == "expected 2xx got 502"
    assert result.body == "502 Bad Gateway 502 Bad Gateway nginx/1.25.3"


async def test_the_explanation_is_cut_to_fit(target: str, http: Probes) -> None:
    result = await result_of(http, {"name": "api", "url": f"{target}/long"})
    assert result.body.startswith("error=stack stack") and result.body.endswith("…")
    assert len(result.body) <= BODY_LIMIT
    assert len(explain(b"x" * 5000)) == BODY_LIMIT


def test_explain_of_other_shapes() -> None:
    assert explain(b"") == ""
    assert explain(b'{"ok": false, "errors": ["disk full", "queue stuck"]}') == ("ok=false · "
                                                                               "errors=disk full, queue stuck")
    assert explain(b'{"checks": {"database": "down", "redis": "ok", "latency_ms": 12}}') == "checks.database: down"
    assert explain(b'[{"name": "db", "status": "down"}]') == "db: down"
    assert explain(b'"maintenance"') == "maintenance"


# -- 429 -----------------------------------------------------------------------------------------
async def test_429_is_rate_limited_a_warning_with_retry_after(target: str, http: Probes) -> None:
    result = await result_of(http, {"name": "api", "url": f"{target}/limited"})
    assert (result.status, result.status_code, result.rate_limited) == ("warn", 429, True)
    assert result.detail == "rate limited (429), retry after 30 s" and result.retry_after == 30
    bare = await result_of(http, {"name": "api", "url": f"{target}/limited-bare"})
    assert bare.detail == "rate limited (429)" and bare.retry_after is None
    # A check that expects the 429 gets it as an ordinary pass.
    expected = await result_of(http, {"name": "api", "url": f"{target}/limited", "expect_status": 429})
    assert expected.status == "ok" and not expected.rate_limited


def test_retry_after_as_an_http_date() -> None:
    from bot.providers.checks_common import retry_after

    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 90) == 90
    assert retry_after("soon") is None and retry_after(None) is None and retry_after("120") == 120


# -- what people see ---------------------------------------------------------------------------
def environments(url: str) -> dict[str, Any]:
    return {"prod": {"default": True, "monitor": "1m", "checks": [
        {"name": "api", "url": f"{url}/unhealthy"},
        {"name": "partner", "url": f"{url}/echo"},
        {"name": "auth", "url": f"{url}/ok", "headers": {"X-Api-Key": "${HC_PARTNER_KEY}"}},
        {"name": "billing", "url": f"{url}/mention"},
    ]}, "staging": {"monitor": "1m", "checks": [
        {"name": "api", "url": f"{url}/limited"},
        {"name": "web", "url": f"{url}/ok"},
    ]}}


@pytest.fixture
async def bot(make_bot: Any, target: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HC_PARTNER_KEY", API_KEY)
    return await make_bot(config=load_test_config({"environments": environments(target)}))


async def test_health_shows_the_body_fields_scrubbed_and_escaped(bot: Any) -> None:
    await bot.command("/health", "prod")
    text = bot.ephemeral_texts()[-1]
    assert "❌ *api* · " in text
    assert "503 · expected 2xx got 503 · status=unhealthy · database=disconnected · error=Connection refused" in text
    # The partner endpoint echoes a key that only another check sends: deps.scrubber masks it.
    assert "error=upstream refused key ***" in text and API_KEY not in text
    assert "&lt;!channel&gt; paging everyone" in text and "<!channel>" not in text


async def test_health_shows_429_as_a_warning_with_retry_after(bot: Any) -> None:
    await bot.command("/health", "staging")
    text = bot.ephemeral_texts()[-1]
    assert "⚠️ *staging* is degraded · 1 of 2 checks rate limited" in text
    assert "⚠️ *api* · " in text and "429 · rate limited (429), retry after 30 s" in text
    assert "❌" not in text


async def test_monitor_alert_says_why(bot: Any) -> None:
    await bot.run_job("health.monitor.prod")
    (alert,) = bot.messages("#alerts")
    assert "status=unhealthy · database=disconnected · error=Connection refused" in alert.all_text()
    assert API_KEY not in alert.all_text()


async def test_monitor_does_not_flap_on_429(make_bot: Any, target: str, clock: Any) -> None:
    config = load_test_config({"environments": {"prod": {"monitor": "1m", "checks": [
        {"name": "api", "url": f"{target}/flip"}, {"name": "web", "url": f"{target}/ok"}]}}})
    bot = await make_bot(config=config)
    try:
        ANSWERS["flip"] = ANSWERS["ok"]
        await bot.run_job("health.monitor.prod")
        ANSWERS["flip"] = ANSWERS["limited"]  # healthy, then rate limited: not news
        clock.advance(minutes=1)
        await bot.run_job("health.monitor.prod")
        assert bot.messages("#alerts") == []
        ANSWERS["flip"] = ANSWERS["unhealthy"]
        clock.advance(minutes=1)
        await bot.run_job("health.monitor.prod")
        (down,) = bot.messages("#alerts")
        assert "is unhealthy" in down.all_text() and "error=Connection refused" in down.all_text()
        ANSWERS["flip"] = ANSWERS["limited"]  # down, then rate limited: still down as far as we know, no recovery
        clock.advance(minutes=1)
        await bot.run_job("health.monitor.prod")
        assert len(bot.messages("#alerts")) == 1
        ANSWERS["flip"] = ANSWERS["ok"]
        clock.advance(minutes=1)
        await bot.run_job("health.monitor.prod")
        assert "recovered" in bot.messages("#alerts")[-1].all_text() and len(bot.messages("#alerts")) == 2
    finally:
        ANSWERS.pop("flip", None)
