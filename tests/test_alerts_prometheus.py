"""Prometheus rules against a real local fake Prometheus: firing, dedup, edits, resolve, errors, restart."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.models import AlertState
from commands.alerts import eval_job_name
from tests.conftest import load_test_config

JOB = eval_job_name(__import__("datetime").timedelta(minutes=1))
MUTATING = ("chat.postMessage", "chat.update")


class FakePrometheus:
    """Answers /api/v1/query with the vector the test sets; `fail` makes it misbehave."""

    def __init__(self) -> None:
        self.series: list[tuple[dict[str, str], str]] = []
        self.fail: str | None = None
        self.queries: list[str] = []
        self.app = Starlette(routes=[Route("/api/v1/query", self.query, methods=["GET", "POST"])])

    def set(self, value: float | str, **labels: str) -> None:
        self.series = [(labels, str(value))]

    async def query(self, request: Request) -> Response:
        self.queries.append(request.query_params.get("query", ""))
        if self.fail == "500":
            return JSONResponse({"status": "error", "error": "boom"}, status_code=500)
        if self.fail == "json":
            return Response("<html>not json</html>", media_type="text/html")
        if self.fail == "huge":
            return Response(b"[" + b"1," * 700_000 + b"1]", media_type="application/json")
        result = [{"metric": labels, "value": [1767603600.0, value]} for labels, value in self.series]
        return JSONResponse({"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.fixture
async def prom() -> Any:
    fake = FakePrometheus()
    async with LocalServer(fake.app) as server:
        fake.url = server.url  # type: ignore[attr-defined]
        yield fake


def alert_config(url: str, **rule: Any) -> Any:
    base = {"name": "api_p95_latency", "source": "prometheus",
            "query": 'histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[5m])) by (le)) * 1000',
            "warning": "> 1000", "critical": "> 2000", "unit": "ms", "for": "0s",
            "runbook": "https://runbooks.example.com/api-latency", "labels": {"service": "api"},
            "summary": "API p95 latency"}
    base.update(rule)
    return load_test_config({"alerts": {"prometheus": {"url": url}, "escalate_to": ["@oncall"],
                                        "defaults": {"repeat_every": "4h"}, "rules": [base]}})


def mutations(bot: BotHarness) -> list[tuple[str, dict[str, Any]]]:
    return [c for c in bot.slack.calls if c[0] in MUTATING]


async def test_firing_alert_is_posted_once_with_details_and_buttons(make_bot: Any, prom: FakePrometheus) -> None:
    bot = await make_bot(config=alert_config(prom.url))
    prom.set(1250, instance="api-1")
    await bot.run_job(JOB)
    posted = bot.messages("#alerts")
    assert len(posted) == 1
    text = posted[0].all_text()
    assert "WARNING · api_p95_latency" in text and "API p95 latency" in text
    assert "1250 ms" in text and "warning > 1000" in text and "critical > 2000" in text
    assert "`instance=api-1`" in text and "`service=api`" in text
    assert "https://runbooks.example.com/api-latency" in text
    assert "Since" in text
    buttons = [e["text"]["text"] for b in posted[0].blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["Acknowledge", "Silence 1h", "Silence 4h", "Open incident"]
    assert "histogram_quantile" in prom.queries[-1]

    # Unchanged, and changed only below the displayed precision: no Slack call at all.
    calls = len(bot.slack.calls)
    await bot.run_job(JOB)
    prom.set(1250.3, instance="api-1")
    await bot.run_job(JOB)
    assert len(bot.slack.calls) == calls

    # A visible change edits the same message.
    prom.set(2400, instance="api-1")
    await bot.run_job(JOB)
    assert [c[0] for c in bot.slack.calls[calls:]] == ["chat.update"]
    message = bot.messages("#alerts")[0]
    assert "CRITICAL · api_p95_latency" in message.all_text() and "2400 ms" in message.all_text()
    assert len(bot.messages("#alerts")) == 1


async def test_resolving_edits_the_message_and_replies_in_its_thread(make_bot: Any, prom: FakePrometheus) -> None:
    bot = await make_bot(config=alert_config(prom.url))
    prom.set(1500)
    await bot.run_job(JOB)
    prom.set(300)
    await bot.run_job(JOB)
    parent, reply = bot.messages("#alerts")
    assert "RESOLVED · api_p95_latency" in parent.all_text() and parent.edits == 1
    assert not [b for b in parent.blocks if b["type"] == "actions"]
    assert reply.thread_ts == parent.ts and "Resolved at 300 ms" in reply.text
    calls = len(bot.slack.calls)
    await bot.run_job(JOB)
    assert len(bot.slack.calls) == calls
    # Breaching again is a new alert, a new message.
    prom.set(1500)
    await bot.run_job(JOB)
    assert len([m for m in bot.messages("#alerts") if not m.thread_ts]) == 2


async def test_for_keeps_a_breach_pending_until_it_has_held(make_bot: Any, prom: FakePrometheus,
                                                              clock: FakeClock) -> None:
    bot = await make_bot(config=alert_config(prom.url, **{"for": "5m"}))
    prom.set(1500)
    await bot.run_job(JOB)
    clock.advance(minutes=4)
    await bot.run_job(JOB)
    assert bot.messages("#alerts") == []
    await bot.command("/alerts")
    assert "Pending" in bot.ephemeral_texts()[-1] and "api_p95_latency" in bot.ephemeral_texts()[-1]
    # A dip below the threshold starts the clock again.
    prom.set(900)
    await bot.run_job(JOB)
    prom.set(1500)
    clock.advance(minutes=2)
    await bot.run_job(JOB)
    clock.advance(minutes=4)
    await bot.run_job(JOB)
    assert bot.messages("#alerts") == []
    clock.advance(minutes=1)
    await bot.run_job(JOB)
    assert len(bot.messages("#alerts")) == 1
    await bot.command("/alerts")
    assert "Firing" in bot.ephemeral_texts()[-1]


async def test_each_series_is_its_own_alert(make_bot: Any, prom: FakePrometheus) -> None:
    bot = await make_bot(config=alert_config(prom.url))
    prom.series = [({"instance": "a"}, "1500"), ({"instance": "b"}, "2500"), ({"instance": "c"}, "10")]
    await bot.run_job(JOB)
    texts = sorted(m.all_text() for m in bot.messages("#alerts"))
    assert len(texts) == 2
    assert "`instance=a`" in texts[1] and "WARNING" in texts[1]
    assert "`instance=b`" in texts[0] and "CRITICAL" in texts[0]


async def test_a_vanished_series_keeps_firing_and_says_once_that_data_stopped(
        make_bot: Any, prom: FakePrometheus, clock: FakeClock) -> None:
    bot = await make_bot(config=alert_config(prom.url, **{"for": "2m"}))
    prom.series = [({"instance": "a"}, "1500"), ({"instance": "b"}, "1500")]
    await bot.run_job(JOB)
    clock.advance(minutes=2)
    prom.series = [({"instance": "a"}, "1500")]  # b was pending: it ends quietly
    await bot.run_job(JOB)
    [alert] = bot.messages("#alerts")
    assert "`instance=a`" in alert.all_text()
    prom.series = [({"instance": "c"}, "10")]  # a vanished from a good answer: not a resolve
    clock.advance(hours=2, minutes=59)
    await bot.run_job(JOB)
    assert "RESOLVED" not in bot.messages("#alerts")[0].all_text()
    assert [m for m in bot.messages("#alerts") if m.thread_ts] == []
    clock.advance(minutes=2)
    await bot.run_job(JOB)
    await bot.run_job(JOB)
    replies = [m.text for m in bot.messages("#alerts") if m.thread_ts]
    assert len(replies) == 1 and "No data for this series for 3h" in replies[0]
    prom.series = [({"instance": "a"}, "100")]
    await bot.run_job(JOB)
    assert "RESOLVED" in bot.messages("#alerts")[0].all_text()
    async with bot.deps.db.session() as session:
        states = {r.key: r.state for r in await session.scalars(select(AlertState))}
    assert states["api_p95_latency|instance=b"] == "ok"


@pytest.mark.parametrize("fault", ["500", "json", "huge", "down"])
async def test_source_error_is_reported_once_and_never_resolves(make_bot: Any, prom: FakePrometheus,
                                                                 fault: str) -> None:
    bot = await make_bot(config=alert_config(prom.url if fault != "down" else "http://127.0.0.1:9"))
    if fault == "down":
        # No Prometheus at all: the rule is in error from the start, and nothing fires.
        await bot.run_job(JOB)
        await bot.run_job(JOB)
        [message] = bot.messages("#alerts")
        assert "cannot be evaluated" in message.text
        return
    prom.set(1500)
    await bot.run_job(JOB)
    prom.fail = fault
    await bot.run_job(JOB)
    await bot.run_job(JOB)
    alert, error = bot.messages("#alerts")
    assert "cannot be evaluated" in error.text and "api_p95_latency" in error.text
    assert "WARNING" in alert.all_text() and "RESOLVED" not in alert.all_text()
    async with bot.deps.db.session() as session:
        states = {r.key: r.state for r in await session.scalars(select(AlertState))}
    assert states == {"rule:api_p95_latency": "error", "api_p95_latency|": "firing"}
    # Recovery is said once, in the error's thread; the alert then resolves normally.
    prom.fail = None
    prom.set(100)
    await bot.run_job(JOB)
    replies = [m for m in bot.messages("#alerts") if m.thread_ts]
    assert [m.thread_ts for m in replies] == [error.ts, alert.ts]
    assert "has data again" in replies[0].text and "Resolved" in replies[1].text


async def test_restart_does_not_repost_and_keeps_the_acknowledgement(make_bot: Any, prom: FakePrometheus) -> None:
    config = alert_config(prom.url)
    first = await make_bot(config=config)
    prom.set(1500)
    await first.run_job(JOB)
    [message] = first.messages("#alerts")
    await first.click("alerts.ack", str(_row_id(message)), message=message, user="U0BOB0001")
    assert "Acknowledged by <@U0BOB0001>" in first.messages("#alerts")[0].all_text()
    await first.stop()

    second = await make_bot(config=config)
    calls = len(second.slack.calls)
    await second.run_job(JOB)
    assert [c for c in second.slack.calls[calls:] if c[0] in MUTATING] == []
    prom.set(1700)
    await second.run_job(JOB)
    [message] = second.messages("#alerts")
    assert "1700 ms" in message.all_text() and "Acknowledged by <@U0BOB0001>" in message.all_text()


def _row_id(message: Any) -> int:
    for block in message.blocks:
        if block["type"] == "actions":
            return int(block["elements"][-2]["value"])
    raise AssertionError("no buttons")
