"""The check engine against real local HTTP servers, the real PostgreSQL and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bot.config.health import Environment
from bot.emulator.localserver import LocalServer
from bot.health import check_environment
from bot.providers.checks_http import MAX_BODY
from bot.providers.probe_client import Probes
from tests.conftest import closed_port, local_environment


async def _status(request: Request) -> Response:
    return PlainTextResponse("ok", status_code=int(request.path_params["code"]))


async def _json(request: Request) -> Response:
    return JSONResponse({"status": request.query_params.get("status", "healthy"), "database": "connected",
                         "checks": {"database": request.query_params.get("db", "ok")}, "ok": True,
                         "version": 42})


async def _sleep(request: Request) -> Response:
    # Returns early when the test ends, so a "hanging" request never outlives its server.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(request.app.state.release.wait(), float(request.path_params["seconds"]))
    return PlainTextResponse("late")


async def _bad_json(_request: Request) -> Response:
    return PlainTextResponse("<html>not json</html>", media_type="application/json")


async def _huge(_request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        block = b" " * 65536
        for _ in range(64):  # 4 MiB of whitespace: valid JSON padding, but too much to read
            yield block

    return StreamingResponse(chunks(), media_type="application/json")


async def _echo_auth(request: Request) -> Response:
    if request.headers.get("authorization") != "Bearer s3cret-token":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    return JSONResponse({"status": "ok"})


TARGET = Starlette(routes=[
    Route("/status/{code:int}", _status),
    Route("/json", _json),
    Route("/sleep/{seconds}", _sleep),
    Route("/bad-json", _bad_json),
    Route("/huge", _huge),
    Route("/auth", _echo_auth),
])


@pytest.fixture
async def target() -> AsyncIterator[str]:
    TARGET.state.release = asyncio.Event()
    async with LocalServer(TARGET) as server:
        yield server.url
        TARGET.state.release.set()


@pytest.fixture
async def http() -> AsyncIterator[Probes]:
    async with Probes() as client:
        yield client



env = local_environment


async def one(environment: Environment, http: Probes) -> Any:
    report = await check_environment("test", environment, http=http)
    assert len(report.results) == 1
    return report.results[0]


async def test_fast_endpoint_is_healthy(target: str, http: Probes) -> None:
    report = await check_environment("prod", env({"name": "api", "url": f"{target}/status/200"}), http=http)
    assert report.environment == "prod" and report.status == "healthy"
    (result,) = report.results
    assert (result.name, result.kind, result.status, result.status_code) == ("api", "http", "ok", 200)
    assert result.latency_ms > 0


async def test_non_2xx_fails_by_default(target: str, http: Probes) -> None:
    result = await one(env({"name": "api", "url": f"{target}/status/503"}), http)
    assert result.status == "fail" and result.status_code == 503
    assert result.detail == "expected 2xx got 503"


async def test_expected_401_auth_guard(target: str, http: Probes) -> None:
    guard = await one(env({"name": "guard", "url": f"{target}/status/401", "expect_status": 401}), http)
    assert guard.status == "ok"
    open_door = await one(env({"name": "guard", "url": f"{target}/status/200", "expect_status": 401}), http)
    assert open_door.status == "fail" and open_door.detail == "expected 401 got 200"
    listed = await one(env({"name": "g", "url": f"{target}/status/204", "expect_status": [200, 204]}), http)
    assert listed.status == "ok"


async def test_json_expectations_with_dotted_paths_and_accepted_values(target: str,
                                                                       http: Probes) -> None:
    expect = {"status": ["healthy", "ok"], "database": "connected", "checks.database": "ok", "ok": True,
              "version": 42}
    good = await one(env({"name": "api", "url": f"{target}/json", "expect_json": expect}), http)
    assert good.status == "ok", good.detail
    bad = await one(env({"name": "api", "url": f"{target}/json?status=unhealthy&db=down",
                         "expect_json": expect}), http)
    assert bad.status == "fail"
    assert "`status` was `unhealthy`" in bad.detail
    assert "`checks.database` was `down`" in bad.detail
    missing = await one(env({"name": "api", "url": f"{target}/json", "expect_json": {"checks.cache": "ok"}}), http)
    assert missing.status == "fail" and missing.detail == "`checks.cache` missing"


async def test_bad_json_is_a_failure_with_a_reason(target: str, http: Probes) -> None:
    result = await one(env({"name": "api", "url": f"{target}/bad-json", "expect_json": {"status": "ok"}}), http)
    assert result.status == "fail" and result.detail == "response is not valid JSON"
    assert result.status_code == 200


async def test_huge_body_is_capped_not_read_whole(target: str, http: Probes) -> None:
    result = await one(env({"name": "api", "url": f"{target}/huge", "expect_json": {"status": "ok"}}), http)
    assert result.status == "fail"
    assert f"larger than {MAX_BODY // 1024 // 1024} MiB" in result.detail
    # Without JSON expectations the status code is enough, and the capped read still succeeds.
    plain = await one(env({"name": "api", "url": f"{target}/huge"}), http)
    assert plain.status == "ok"


async def test_hanging_endpoint_times_out_with_the_configured_timeout(target: str,
                                                                      http: Probes) -> None:
    result = await one(env({"name": "api", "url": f"{target}/sleep/30", "timeout": "300ms"}), http)
    assert result.status == "fail" and result.detail == "timeout after 0.3 s"
    default = await one(env({"name": "api", "url": f"{target}/sleep/30"}, timeout="400ms"), http)
    assert default.detail == "timeout after 0.4 s"


async def test_slow_endpoint_is_a_warning_and_degrades(target: str, http: Probes) -> None:
    report = await check_environment("prod", env({"name": "slow", "url": f"{target}/sleep/0.2",
                                                  "latency_warn": "50ms"},
                                                 {"name": "fast", "url": f"{target}/status/200"}), http=http)
    assert report.status == "degraded"
    slow = report.results[0]
    assert slow.status == "warn" and slow.status_code == 200 and "slow: over 0.05 s" in slow.detail


async def test_connection_refused(http: Probes) -> None:
    result = await one(env({"name": "api", "url": f"http://127.0.0.1:{closed_port()}/health"}), http)
    assert result.status == "fail" and result.detail == "connection refused"


class ForwardProxy:
    """An HTTP forward proxy as far as a check needs one: records each request line and its headers, answers
    every request itself."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        self.seen.append((head[0], headers))
        body = b'{"status": "ok"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()


async def test_checks_go_through_the_environments_proxy_unless_no_proxy_names_the_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As httpx did (and curl does): HTTP_PROXY is used, NO_PROXY bypasses it; the proxy sees opsbot's agent."""
    proxy = ForwardProxy()
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    check = {"name": "api", "url": "http://status.internal.example/health", "expect_json": {"status": "ok"}}
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with Probes() as http:
            result = await one(env(check), http)
        assert result.status == "ok", result.detail
        [(line, headers)] = proxy.seen
        assert line == "GET http://status.internal.example/health HTTP/1.1" and headers["user-agent"] == "opsbot"
        monkeypatch.setenv("NO_PROXY", "internal.example")
        async with Probes() as http:
            bypassed = await one(env(check), http)
        assert bypassed.status == "fail" and bypassed.detail == "cannot resolve host" and len(proxy.seen) == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_header_secrets_are_sent_and_a_missing_variable_fails_clearly(
        target: str, http: Probes, monkeypatch: pytest.MonkeyPatch) -> None:
    check = {"name": "auth", "url": f"{target}/auth", "headers": {"Authorization": "Bearer ${HC_TOKEN}"}}
    monkeypatch.delenv("HC_TOKEN", raising=False)
    missing = await one(env(check), http)
    assert missing.status == "fail" and "HC_TOKEN is not set" in missing.detail
    monkeypatch.setenv("HC_TOKEN", "s3cret-token")
    sent = await one(env(check), http)
    assert sent.status == "ok", sent.detail
    monkeypatch.setenv("HC_TOKEN", "wrong")
    refused = await one(env(check), http)
    assert refused.detail == "expected 2xx got 401" and "wrong" not in refused.detail


async def test_one_failure_does_not_hide_the_others(target: str, http: Probes) -> None:
    report = await check_environment("prod", env(
        {"name": "a", "url": f"{target}/status/200"},
        {"name": "b", "url": f"{target}/status/500"},
        {"name": "c", "url": f"http://127.0.0.1:{closed_port()}/"},
    ), http=http)
    assert report.status == "unhealthy"
    assert [r.status for r in report.results] == ["ok", "fail", "fail"]
    assert [r.name for r in report.failing] == ["b", "c"]


async def test_checks_run_concurrently(target: str, http: Probes) -> None:
    checks = [{"name": f"slow-{i}", "url": f"{target}/sleep/0.5", "latency_warn": "5s"} for i in range(10)]
    started = time.monotonic()
    report = await check_environment("prod", env(*checks), http=http)
    elapsed = time.monotonic() - started
    assert report.status == "healthy"
    # Sequentially this takes 5 s; concurrently about 0.5 s.
    assert elapsed < 3.0


async def test_only_runs_the_named_subset(target: str, http: Probes) -> None:
    environment = env({"name": "a", "url": f"{target}/status/200"}, {"name": "b", "url": f"{target}/status/500"})
    report = await check_environment("prod", environment, http=http, only=["a"])
    assert [r.name for r in report.results] == ["a"] and report.status == "healthy"


# -- tcp --------------------------------------------------------------------------------------
async def test_tcp_open_and_closed_ports(target: str, http: Probes) -> None:
    port = int(target.rsplit(":", 1)[1])
    report = await check_environment("prod", env(
        {"name": "open", "type": "tcp", "host": "127.0.0.1", "port": port},
        {"name": "closed", "type": "tcp", "host": "127.0.0.1", "port": closed_port()},
    ), http=http)
    open_, closed = report.results
    assert open_.status == "ok" and open_.kind == "tcp"
    assert closed.status == "fail" and closed.detail == "connection refused"


# -- postgres ---------------------------------------------------------------------------------
async def test_postgres_reports_connections_in_use(target_pg_url: str, http: Probes,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HC_PG_DSN", target_pg_url)
    result = await one(env({"name": "db", "type": "postgres", "dsn": "${HC_PG_DSN}"}), http)
    assert result.status == "ok", result.detail
    assert result.kind == "postgres" and result.detail.startswith("connections ")
    with psycopg.connect(target_pg_url) as conn:
        maximum = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
    assert f"/{maximum} (" in result.detail


async def test_postgres_warns_above_the_connection_threshold(target_pg_url: str, http: Probes,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HC_PG_DSN", target_pg_url)
    result = await one(env({"name": "db", "type": "postgres", "dsn": "${HC_PG_DSN}",
                            "connections_warn_percent": 0}), http)
    assert result.status == "warn" and "above 0%" in result.detail


async def test_postgres_unreachable_never_shows_the_password(http: Probes,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HC_PG_DSN", f"postgresql://app:hunter2-pw@127.0.0.1:{closed_port()}/app")
    result = await one(env({"name": "db", "type": "postgres", "dsn": "${HC_PG_DSN}"}), http)
    assert result.status == "fail" and result.detail == "connection refused"
    assert "hunter2" not in result.detail


async def test_postgres_wrong_password_and_missing_dsn(target_pg_url: str, http: Probes,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HC_PG_DSN", raising=False)
    missing = await one(env({"name": "db", "type": "postgres", "dsn": "${HC_PG_DSN}"}), http)
    assert missing.status == "fail" and "HC_PG_DSN is not set" in missing.detail
    bad_db = target_pg_url.rsplit("/", 1)[0] + "/no_such_database_hc"
    monkeypatch.setenv("HC_PG_DSN", bad_db.replace("postgres@", "postgres:pw-XYZZY@"))
    result = await one(env({"name": "db", "type": "postgres", "dsn": "${HC_PG_DSN}"}), http)
    assert result.status == "fail" and "no_such_database_hc" in result.detail
    assert "XYZZY" not in result.detail


async def test_postgres_that_never_answers_times_out(http: Probes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port that accepts connections and then says nothing (a hung server or a black-holing proxy)."""
    release = asyncio.Event()

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        monkeypatch.setenv("HC_PG_DSN", f"postgresql://app:pw-SILENT@127.0.0.1:{port}/app")
        result = await one(env({"name": "db", "type": "postgres", "dsn": "${HC_PG_DSN}", "timeout": "500ms"}), http)
        assert result.status == "fail" and result.detail == "timeout after 0.5 s"
    finally:
        release.set()
        server.close()
        await server.wait_closed()
