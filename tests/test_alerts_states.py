"""The pure transition functions, and Slack failures during delivery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.alerts import (
    AUTO_ACK,
    CRITICAL,
    FIRING,
    OK,
    PENDING,
    RESOLVED,
    WARNING,
    Notice,
    Policy,
    View,
    observe,
    rule_read,
    series_key,
    tick,
)
from bot.config.alerts import Threshold
from bot.emulator.localserver import LocalServer
from commands.alerts import eval_job_name
from commands.alerts.render import AlertCard, format_value, render_alert
from tests.conftest import load_test_config

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
POLICY = Policy(warning=Threshold.model_validate("> 80"), critical=Threshold.model_validate(">= 95"),
                for_=timedelta(minutes=5), escalate_after=timedelta(hours=4), auto_ack_after=timedelta(days=7),
                repeat_every=timedelta(hours=1), stale_after=timedelta(hours=3))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_breach_must_hold_for_before_firing() -> None:
    v = View()
    assert observe(v, 85, POLICY, at(0)) == [] and v.state == PENDING and v.level == WARNING
    assert observe(v, 96, POLICY, at(4)) == [] and v.state == PENDING and v.level == CRITICAL
    assert observe(v, 96, POLICY, at(5)) == [Notice.SYNC]
    assert v.state == FIRING and v.level == CRITICAL and v.firing_since == at(5) and v.pending_since == at(0)
    assert observe(v, 85, POLICY, at(6)) == [Notice.SYNC] and v.level == WARNING
    assert observe(v, 10, POLICY, at(7)) == [Notice.RESOLVED] and v.state == RESOLVED and v.resolved_at == at(7)
    assert observe(v, 10, POLICY, at(8)) == [] and v.state == RESOLVED


def test_below_thresholds_work_too() -> None:
    policy = Policy(warning=Threshold.model_validate("< 5"), critical=Threshold.model_validate({"below": 1}))
    v = View()
    assert observe(v, 0.5, policy, at(0)) == [Notice.SYNC] and v.level == CRITICAL
    assert observe(v, 7, policy, at(1)) == [Notice.RESOLVED]


def test_healthy_series_changes_nothing() -> None:
    v = View()
    before = View(**vars(v))
    assert observe(v, 10, POLICY, at(0)) == [] and v == before


def test_timers_in_order_escalate_remind_auto_ack() -> None:
    v = View()
    observe(v, 85, Policy(**{**vars(POLICY), "for_": timedelta(0)}), at(0))
    assert tick(v, POLICY, at(59)) == []
    assert tick(v, POLICY, at(60)) == [Notice.REMIND]
    assert tick(v, POLICY, at(119)) == []
    assert tick(v, POLICY, at(240)) == [Notice.ESCALATED] and v.level == CRITICAL and v.escalated_at == at(240)
    assert observe(v, 85, POLICY, at(241)) == [Notice.SYNC] and v.level == CRITICAL  # escalation sticks
    assert tick(v, POLICY, at(300)) == [Notice.REMIND]
    assert tick(v, POLICY, at(7 * 24 * 60)) == [Notice.AUTO_ACKED] and v.acked_by == AUTO_ACK
    assert tick(v, POLICY, at(8 * 24 * 60)) == []


def test_rule_row_reports_error_staleness_and_recovery_once() -> None:
    v = View()
    assert rule_read(v, error=None, has_data=True, policy=POLICY, now=at(0)) == [] and v.state == OK
    assert rule_read(v, error="timeout", has_data=False, policy=POLICY, now=at(1)) == [Notice.ERROR]
    assert rule_read(v, error="HTTP 500", has_data=False, policy=POLICY, now=at(2)) == []
    assert rule_read(v, error="timeout", has_data=False, policy=POLICY, now=at(180)) == [Notice.STALE]
    assert rule_read(v, error="timeout", has_data=False, policy=POLICY, now=at(240)) == []
    assert rule_read(v, error=None, has_data=True, policy=POLICY, now=at(241)) == [Notice.RECOVERED]
    assert v.state == OK and v.last_data_at == at(241)


def test_series_keys_are_stable_and_bounded() -> None:
    assert series_key("cpu", {"b": "2", "a": "1"}) == series_key("cpu", {"a": "1", "b": "2"}) == "cpu|a=1,b=2"
    long = series_key("cpu", {"pod": "x" * 400})
    assert len(long) <= 255 and long.startswith("cpu|#")


@pytest.mark.parametrize(("value", "unit", "decimals", "shown"), [
    (1250.3, "ms", None, "1250 ms"), (87.34, "%", None, "87.3%"), (0.4237, "", None, "0.42"),
    (12.0, "%", None, "12%"), (1.23456, "%", 3, "1.235%"), (-0.001, "", None, "0")])
def test_values_are_shown_at_their_precision(value: float, unit: str, decimals: int | None, shown: str) -> None:
    assert format_value(value, unit, decimals) == shown


async def test_failed_post_is_retried_at_the_next_evaluation(make_bot: Any) -> None:
    app = Starlette(routes=[Route("/m", lambda _r: JSONResponse({"v": 99}))])
    async with LocalServer(app) as server:
        rule = {"name": "disk", "source": "http_json", "query": f"{server.url}/m", "path": "v", "warning": "> 90",
                "for": 0}
        bot = await make_bot(config=load_test_config({"alerts": {"rules": [rule]}}))
        job = eval_job_name(timedelta(minutes=1))
        bot.slack.fail("chat.postMessage", status=500)
        await bot.run_job(job)
        assert bot.messages("#alerts") == []
        await bot.run_job(job)
        assert len(bot.messages("#alerts")) == 1
        await bot.run_job(job)
        assert len(bot.messages("#alerts")) == 1


def test_open_incident_button_value_stays_valid_json_within_slack_limits() -> None:
    # A long PromQL graph link and non-ASCII text (escaped by JSON) must not push the value past 2,000
    # characters: Slack would refuse the message, and a cut value would no longer be JSON (an empty form).
    link = "http://prometheus.local:9090/graph?g0.expr=" + "sum%28rate%28http_requests_total%5B5m%5D%29%29" * 40
    card = AlertCard(id=7, rule="api_errors", state=FIRING, level=CRITICAL, title="Fehlerquote über 1 %",
                     incident={"t": "api_errors: Fehlerquote über 1 %", "d": "ü" * 600, "s": "P2", "svc": "api",
                               "l": link})
    _, blocks = render_alert(card)
    value = next(e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == "alerts.open_incident")
    data = json.loads(value)
    assert len(value) <= 2000
    assert data["t"] == "api_errors: Fehlerquote über 1 %" and data["s"] == "P2" and data["svc"] == "api"
