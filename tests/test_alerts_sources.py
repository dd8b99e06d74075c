"""Metric sources on their own (real PostgreSQL, real HTTP) and the shipped rule pack."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.config import AlertRule
from bot.emulator.localserver import LocalServer
from bot.providers.metrics_base import MetricSourceError, Sample, fetcher
from bot.providers.metrics_http_json import HttpJsonSource
from bot.providers.metrics_postgres import PostgresSource
from bot.providers.metrics_prometheus import PrometheusSource, parse_answer
from commands.alerts import eval_job_name
from tests.conftest import load_test_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def pg_rule(dsn: str, query: str, **extra: Any) -> AlertRule:
    return AlertRule.model_validate({"name": "db_connections", "source": "postgres", "dsn": dsn, "query": query,
                                     "warning": "> 80", **extra})


async def test_postgres_source_reads_one_number(target_pg_url: str) -> None:
    with psycopg.connect(target_pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pool_stats (in_use int, size int)")
        conn.execute("TRUNCATE pool_stats")
        conn.execute("INSERT INTO pool_stats VALUES (17, 20)")
    source = PostgresSource(timeout=5)
    [sample] = await source.read(pg_rule(target_pg_url, "SELECT 100.0 * in_use / size FROM pool_stats"))
    assert sample == Sample(85.0)
    [usage] = await source.read(pg_rule(
        target_pg_url, "SELECT 100.0 * count(*) / current_setting('max_connections')::int FROM pg_stat_activity"))
    assert 0 < usage.value < 100


@pytest.mark.parametrize(("query", "reason"), [
    ("SELECT nope FROM nowhere", "SQL error"),
    ("SELECT 1 WHERE false", "no rows"),
    ("SELECT 'many'", "expected a number"),
    ("SELECT pg_sleep(3)", "did not finish within 1s"),
])
async def test_postgres_source_errors_are_typed(target_pg_url: str, query: str, reason: str) -> None:
    with pytest.raises(MetricSourceError, match=reason):
        await PostgresSource(timeout=1).read(pg_rule(target_pg_url, query))


@pytest.mark.parametrize("dsn", [
    "postgresql://app:hunter2@127.0.0.1:9/app",
    "postgresql://app:hunter2%zz@127.0.0.1:9/app",  # malformed %-encoding: libpq quotes the token
    "postgresql://app:hun@ter2@nohost.invalid:9/app",  # unescaped '@': the rest is read as the host
    "host=127.0.0.1 port=9 password=hunter2 junk",
])
async def test_postgres_source_unreachable_hides_the_password(dsn: str) -> None:
    rule = pg_rule(dsn, "SELECT 1")
    with pytest.raises(MetricSourceError) as caught:
        await PostgresSource(timeout=1).read(rule)
    assert "hunter2" not in str(caught.value) and "ter2" not in str(caught.value)


async def test_postgres_rule_fires_end_to_end(make_bot: Any, target_pg_url: str) -> None:
    with psycopg.connect(target_pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS conn_usage (pct float)")
        conn.execute("TRUNCATE conn_usage")
        conn.execute("INSERT INTO conn_usage VALUES (91.5)")
    rule = {"name": "db_connections", "source": "postgres", "dsn": target_pg_url, "unit": "%", "for": 0,
            "query": "SELECT pct FROM conn_usage", "warning": "> 80", "critical": "> 95"}
    bot = await make_bot(config=load_test_config({"alerts": {"rules": [rule]}}))
    await bot.run_job(eval_job_name(timedelta(minutes=1)))
    [message] = bot.messages("#alerts")
    assert "WARNING · db_connections" in message.all_text() and "91.5%" in message.all_text()


def test_prometheus_answers_are_parsed() -> None:
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "42.5"]}}
    assert parse_answer(scalar) == [Sample(42.5)]
    vector = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"instance": "a"}, "value": [1.0, "1"]}, {"metric": {"instance": "b"}, "value": [1.0, "NaN"]},
        {"metric": {"instance": "c"}, "value": [1.0, "+Inf"]}]}}
    assert parse_answer(vector) == [Sample(1.0, {"instance": "a"}), Sample(float("inf"), {"instance": "c"})]
    for bad in ({"status": "error", "error": "parse error"}, {"status": "success", "data": {"resultType": "matrix",
                                                                                           "result": []}}, [1]):
        with pytest.raises(MetricSourceError):
            parse_answer(bad)


async def test_http_sources_time_out_and_cap_bodies() -> None:
    import asyncio

    async def slow(_request: Request) -> Response:
        await asyncio.sleep(2)
        return JSONResponse({"v": 1})

    async def big(_request: Request) -> Response:
        return Response(b'{"v": "' + b"x" * 400_000 + b'"}', media_type="application/json")

    async def prom(request: Request) -> Response:
        return JSONResponse({"status": "success", "data": {"resultType": "scalar", "result": [
            1.0, request.headers.get("authorization", "")[-1:] or "0"]}})

    app = Starlette(routes=[Route("/slow", slow), Route("/big", big), Route("/api/v1/query", prom)])
    async with LocalServer(app) as server, fetcher() as client:
        source = HttpJsonSource(client, timeout=0.3)

        def rule(path: str) -> AlertRule:
            return AlertRule.model_validate({"name": "r", "source": "http_json", "query": server.url + path,
                                             "path": "v", "warning": "> 1"})

        with pytest.raises(MetricSourceError, match=r"did not answer within 0\.3s"):
            await source.read(rule("/slow"))
        with pytest.raises(MetricSourceError, match="larger than"):
            await source.read(rule("/big"))
        from bot.config.secrets import EnvRef

        prometheus = PrometheusSource(client, url=server.url, token=EnvRef("token-7"))
        prom_rule = AlertRule.model_validate({"name": "r", "source": "prometheus", "query": "up",
                                              "warning": "> 1"})
        assert await prometheus.read(prom_rule) == [Sample(7.0)]


def test_example_rule_pack_validates_with_the_runbook_thresholds() -> None:
    pack = yaml.safe_load((EXAMPLES / "alert-rules.yml").read_text())
    config = load_test_config({"alerts": pack["alerts"]})
    rules = {r.name: r for r in config.alerts.rules}
    expected = {"api_p95_latency": 1000, "error_rate": 1, "cpu_usage": 80, "memory_usage": 85,
                "db_connections": 80, "disk_usage": 90}
    for name, threshold in expected.items():
        warning = rules[name].warning
        assert warning is not None and warning.op == ">" and warning.value == threshold, name
    defaults = config.alerts.defaults
    assert defaults.escalate_after == timedelta(hours=4) and defaults.stale_after == timedelta(hours=3)
    assert defaults.auto_ack_after == timedelta(days=7)


def test_example_opsbot_yml_still_validates() -> None:
    from bot.config import load_config

    assert load_config(EXAMPLES / "opsbot.yml").alerts.rules


async def test_an_http_json_url_may_hold_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    async def pool(request: Request) -> Response:
        return JSONResponse({"checked_out": 7 if request.query_params.get("key") == "k-77" else 0})

    async with LocalServer(Starlette(routes=[Route("/pool", pool)])) as server, fetcher() as client:
        monkeypatch.setenv("POOL_BASE_URL", server.url)
        monkeypatch.setenv("POOL_KEY", "k-77")
        rule = AlertRule.model_validate({"name": "r", "source": "http_json", "path": "checked_out",
                                         "query": "${POOL_BASE_URL}/pool?key=${POOL_KEY}", "warning": "> 5"})
        assert await HttpJsonSource(client).read(rule) == [Sample(7.0)]
