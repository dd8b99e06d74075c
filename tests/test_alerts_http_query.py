"""`source: http_query`: method, params, body templates, `${VAR}` headers, a JMESPath to the number; and the
README's recipes (tests/test_alerts_http_query_recipes.yml) against local servers answering Sentry's,
Application Insights' and Datadog's documented response shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.clock import FakeClock
from bot.config import AlertRule, missing_env
from bot.config.secrets import EnvRef
from bot.emulator.localserver import LocalServer
from bot.errors import ConfigError
from bot.providers.metrics_base import MetricSourceError, Sample, fetcher
from bot.providers.metrics_http_query import HttpQuerySource, iso_duration
from commands.alerts import eval_job_name
from tests.conftest import load_test_config

RECIPES = Path(__file__).with_name("test_alerts_http_query_recipes.yml")
BASES = ("https://sentry.io", "https://api.applicationinsights.io", "https://api.datadoghq.com")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def recipes(base: str) -> list[dict[str, Any]]:
    """The recipes as the README prints them, pointed at `base` instead of the vendors' hosts."""
    text = RECIPES.read_text()
    for vendor in BASES:
        text = text.replace(vendor, base)
    rules: list[dict[str, Any]] = yaml.safe_load(text)["alerts"]["rules"]
    return rules


class Vendors:
    """One local server standing in for the three APIs; each checks what a real one would refuse."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.sentry_groups: list[dict[str, Any]] = []
        self.insights_rows: list[list[Any]] = [[3, 120]]
        self.datadog_points: list[list[Any]] = []
        self.app = Starlette(routes=[
            Route("/api/0/organizations/{org}/stats_v2/", self.sentry),
            Route("/v1/apps/{app}/query", self.insights, methods=["POST"]),
            Route("/api/v1/query", self.datadog),
        ])

    def _seen(self, request: Request, body: bytes = b"") -> None:
        self.requests.append({"path": request.url.path, "method": request.method, "headers": dict(request.headers),
                              "params": dict(request.query_params.multi_items()), "body": body})

    async def sentry(self, request: Request) -> Response:
        self._seen(request)
        if request.headers.get("authorization") != "Bearer sntrys_token":
            return JSONResponse({"detail": "Invalid token"}, status_code=401)
        q = request.query_params
        if q.get("field") != "sum(quantity)" or not q.getlist("groupBy") or not (q.get("statsPeriod") or
                                                                                    q.get("start")):
            return JSONResponse({"detail": "field, groupBy and a period are required"}, status_code=400)
        return JSONResponse({"start": "2026-03-02T09:00:00Z", "end": "2026-03-02T10:00:00Z",
                             "intervals": ["2026-03-02T09:00:00Z"], "groups": self.sentry_groups})

    async def insights(self, request: Request) -> Response:
        body = await request.body()
        self._seen(request, body)
        if request.headers.get("x-api-key") != "ai-key" or request.headers.get("content-type") != "application/json":
            return JSONResponse({"error": {"code": "InvalidAuthenticationTokenAudience", "message": "no"}},
                                status_code=403)
        query = json.loads(body)
        if "requests" not in query.get("query", ""):
            return JSONResponse({"error": {"code": "BadArgumentError", "message": "bad query"}}, status_code=400)
        return JSONResponse({"tables": [{"name": "PrimaryResult", "columns": [
            {"name": "failed", "type": "long"}, {"name": "total", "type": "long"}], "rows": self.insights_rows}]})

    async def datadog(self, request: Request) -> Response:
        self._seen(request)
        q = request.query_params
        if request.headers.get("dd-api-key") != "dd-api" or request.headers.get("dd-application-key") != "dd-app":
            return JSONResponse({"errors": ["Forbidden"]}, status_code=403)
        start, end = int(q["from"]), int(q["to"])
        return JSONResponse({
            "status": "ok", "res_type": "time_series", "query": q["query"], "from_date": start * 1000,
            "to_date": end * 1000, "group_by": [], "message": "", "error": None,
            "series": [{"metric": "trace.http.request.duration.by.service.95p", "display_name": "p95",
                        "expression": q["query"], "scope": "service:checkout", "tag_set": [], "aggr": "avg",
                        "interval": 20, "length": len(self.datadog_points), "start": start * 1000, "end": end * 1000,
                        "query_index": 0, "unit": [{"family": "time", "name": "second"}, None],
                        "pointlist": self.datadog_points}] if self.datadog_points else []})


@pytest.fixture
async def vendors(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {"SENTRY_ORG": "acme", "SENTRY_PROJECT_ID": "42", "SENTRY_TOKEN": "sntrys_token",
                        "APPINSIGHTS_APP_ID": "app-1", "APPINSIGHTS_API_KEY": "ai-key", "DD_API_KEY": "dd-api",
                        "DD_APP_KEY": "dd-app"}.items():
        monkeypatch.setenv(name, value)
    server = Vendors()
    async with LocalServer(server.app) as local:
        server.url = local.url  # type: ignore[attr-defined]
        yield server


def rules_by_name(base: str) -> dict[str, AlertRule]:
    return {r["name"]: AlertRule.model_validate(r) for r in recipes(base)}


async def test_the_recipes_validate_as_printed() -> None:
    config = load_test_config(yaml.safe_load(RECIPES.read_text()))
    rules = {r.name: r for r in config.alerts.rules}
    assert str(rules["api_failure_rate"].warning) == "> 2%"
    assert str(rules["checkout_p95"].warning) == "> 0.8 s" and str(rules["checkout_p95"].critical) == "> 2 s"


async def test_sentry_recipe_counts_accepted_errors(vendors: Vendors) -> None:
    rule = rules_by_name(vendors.url)["sentry_errors"]  # type: ignore[attr-defined]
    vendors.sentry_groups = [{"by": {"outcome": "accepted"}, "totals": {"sum(quantity)": 231},
                              "series": {"sum(quantity)": [231]}}]
    async with fetcher() as client:
        assert await HttpQuerySource(client, clock=FakeClock(NOW)).read(rule) == [Sample(231.0)]
    [seen] = vendors.requests
    assert seen["path"] == "/api/0/organizations/acme/stats_v2/" and seen["params"]["project"] == "42"
    assert seen["params"]["category"] == "error" and seen["params"]["outcome"] == "accepted"
    vendors.sentry_groups = []  # no accepted errors at all: sum([]) is 0
    async with fetcher() as client:
        assert await HttpQuerySource(client).read(rule) == [Sample(0.0)]


async def test_application_insights_recipe_computes_the_failure_share(vendors: Vendors) -> None:
    rule = rules_by_name(vendors.url)["api_failure_rate"]  # type: ignore[attr-defined]
    async with fetcher() as client:
        [sample] = await HttpQuerySource(client, clock=FakeClock(NOW)).read(rule)
    assert sample.value == pytest.approx(2.5)
    [seen] = vendors.requests
    assert seen["method"] == "POST" and seen["path"] == "/v1/apps/app-1/query"
    body = json.loads(seen["body"])
    assert body["timespan"] == "PT5M" and body["query"].startswith("requests | where timestamp > ago(5m)")
    vendors.insights_rows = [[0, 0]]  # no traffic: max(total, 1) keeps it at 0%, not a division error
    async with fetcher() as client:
        assert await HttpQuerySource(client).read(rule) == [Sample(0.0)]


async def test_datadog_recipe_takes_the_newest_point(vendors: Vendors) -> None:
    rule = rules_by_name(vendors.url)["checkout_p95"]  # type: ignore[attr-defined]
    vendors.datadog_points = [[1772445300000, 0.41], [1772445320000, 0.93], [1772445340000, None]]
    async with fetcher() as client:
        assert await HttpQuerySource(client, clock=FakeClock(NOW)).read(rule) == [Sample(0.93)]
    [seen] = vendors.requests
    now = int(NOW.timestamp())
    assert seen["params"]["from"] == str(now - 300) and seen["params"]["to"] == str(now)
    assert seen["params"]["query"] == "avg:trace.http.request.duration.by.service.95p{service:checkout}"
    vendors.datadog_points = []
    async with fetcher() as client:
        with pytest.raises(MetricSourceError, match="selects nothing"):
            await HttpQuerySource(client).read(rule)


async def test_recipes_fire_end_to_end_with_units(make_bot: Any, vendors: Vendors, clock: FakeClock) -> None:
    vendors.sentry_groups = [{"by": {"outcome": "accepted"}, "totals": {"sum(quantity)": 250}}]
    vendors.insights_rows = [[9, 300]]
    vendors.datadog_points = [[1, 1.2]]
    bot = await make_bot(config=load_test_config({"alerts": {"rules": [
        {**r, "for": "0s", "interval": "1m"} for r in recipes(vendors.url)]}}))  # type: ignore[attr-defined]
    await bot.run_job(eval_job_name(timedelta(minutes=1)))
    texts = {m.text.split(":")[0]: m.all_text() for m in bot.messages("#alerts") if not m.thread_ts}
    assert "250 errors/h" in texts["[CRITICAL] sentry_errors"]
    assert "3%" in texts["[WARNING] api_failure_rate"] and "warning > 2% · critical > 5%" in texts[
        "[WARNING] api_failure_rate"]
    assert "1.2 s" in texts["[WARNING] checkout_p95"] and "warning > 0.8 s · critical > 2 s" in texts[
        "[WARNING] checkout_p95"]
    vendors.requests.clear()
    vendors.datadog_points = [[1, 0.3]]
    await bot.run_job(eval_job_name(timedelta(minutes=1)))
    assert any("Resolved" in m.text for m in bot.messages("#alerts") if m.thread_ts)


async def test_a_refused_request_is_a_source_error_without_secrets(make_bot: Any, vendors: Vendors,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_API_KEY", "wrong-key-1234")
    rule = rules_by_name(vendors.url)["checkout_p95"]  # type: ignore[attr-defined]
    async with fetcher() as client:
        with pytest.raises(MetricSourceError) as caught:
            await HttpQuerySource(client).read(rule)
    assert "HTTP 403" in str(caught.value) and "wrong-key" not in str(caught.value)


def base_rule(**extra: Any) -> dict[str, Any]:
    return {"name": "q", "source": "http_query", "query": "http://127.0.0.1:9/q", "path": "v", "warning": "> 1",
            **extra}


@pytest.mark.parametrize(("extra", "says"), [
    ({"path": "series[0"}, "path: not a JMESPath expression"),
    ({"params": {"from": "{since_epch}"}}, "params.from: unknown placeholder {since_epch}"),
    ({"body": {"q": ["{nw}"]}}, "body.q: unknown placeholder {nw}"),
    ({"query": "http://x/{when}"}, "query: unknown placeholder {when}"),
    ({"ratio_of": "total"}, "ratio_of: write the ratio in `value`"),
    ({"source": "http_json", "method": "POST"}, "method, params and body are for source http_query"),
])
def test_config_errors_name_the_field(extra: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_test_config({"alerts": {"rules": [base_rule(**extra)]}})
    assert any(says in p for p in info.value.problems), info.value.problems


async def test_templates_braces_text_bodies_and_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUERY_TOKEN", "tok-9")
    seen: list[tuple[str, bytes, dict[str, str]]] = []

    async def echo(request: Request) -> Response:
        seen.append((request.method, await request.body(), dict(request.headers)))
        return JSONResponse({"data": {"result": [{"v": 4}, {"v": 6}]}})

    app = Starlette(routes=[Route("/q", echo, methods=["GET", "POST"])])
    async with LocalServer(app) as server, fetcher() as client:
        rule = AlertRule.model_validate(base_rule(
            query=f"{server.url}/q", method="POST", path="sum(data.result[].v)",
            body="from {since} to {now} {{literal}} dynamic({{\"a\": 1}}) {*} ${QUERY_TOKEN}",
            headers={"Authorization": "Bearer ${QUERY_TOKEN}"}, window="1h"))
        assert await HttpQuerySource(client, clock=FakeClock(NOW)).read(rule) == [Sample(10.0)]
    method, body, headers = seen[0]
    assert method == "POST" and headers["authorization"] == "Bearer tok-9"
    assert headers["content-type"].startswith("text/plain")
    assert body.decode() == ("from 2026-03-02T09:00:00Z to 2026-03-02T10:00:00Z {literal} dynamic({\"a\": 1}) {*} "
                             "tok-9")


def test_iso_durations() -> None:
    assert [iso_duration(timedelta(**k)) for k in ({"minutes": 5}, {"hours": 1, "minutes": 30}, {"days": 1},
                                                   {"seconds": 90}, {"seconds": 0})] == [
        "PT5M", "PT1H30M", "P1D", "PT1M30S", "PT0S"]


def test_config_check_reports_unset_variables_in_params_headers_and_body() -> None:
    config = load_test_config(yaml.safe_load(RECIPES.read_text()))
    missing = missing_env(config, env={})
    assert "alerts.rules[0].params.project: environment variable SENTRY_PROJECT_ID is not set" in missing
    assert "alerts.rules[1].headers.x-api-key: environment variable APPINSIGHTS_API_KEY is not set" in missing
    rule = AlertRule.model_validate(base_rule(source="http_query", body={"q": ["${BODY_SECRET}"]}))
    assert isinstance(rule.body, dict) and rule.body["q"] == [EnvRef("${BODY_SECRET}")]
