"""Thresholds with units (`> 2s`, `> 1000ms`, `> 80%`, `> 1.5GiB`), converted to the rule's unit and shown in it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.alerts.units import convert, unit_of
from bot.config import AlertRule
from bot.emulator.localserver import LocalServer
from bot.errors import ConfigError
from commands.alerts import eval_job_name
from tests.conftest import load_test_config

JOB = eval_job_name(timedelta(minutes=1))


def rule(unit: str, **thresholds: Any) -> AlertRule:
    return AlertRule.model_validate({"name": "latency", "source": "http_json", "query": "http://127.0.0.1:9/m",
                                     "path": "v", "unit": unit, **thresholds})


@pytest.mark.parametrize(("unit", "written", "value", "shown"), [
    ("ms", "> 2s", 2000, "> 2000 ms"),
    ("ms", "> 1000ms", 1000, "> 1000 ms"),
    ("ms", ">= 1.5 m", 90000, ">= 90000 ms"),
    ("s", "> 2s", 2, "> 2 s"),
    ("s", "> 250ms", 0.25, "> 0.25 s"),
    ("h", "> 30m", 0.5, "> 0.5 h"),
    ("%", "> 80%", 80, "> 80%"),
    ("%", "> 80", 80, "> 80%"),
    ("MB", "> 1.5GB", 1500, "> 1500 MB"),
    ("MiB", "> 1GiB", 1024, "> 1024 MiB"),
    ("B", "> 2KiB", 2048, "> 2048 B"),
    ("", "> 80%", 80, "> 80"),  # as on main: a unitless rule keeps the number
    ("", "< 5", 5, "< 5"),
    ("req/s", "> 50 req/s", 50, "> 50 req/s"),
    ("connections", "> 90", 90, "> 90 connections"),
])
def test_thresholds_convert_into_the_rules_unit(unit: str, written: str, value: float, shown: str) -> None:
    threshold = rule(unit, warning=written).warning
    assert threshold is not None
    assert threshold.value == pytest.approx(value) and str(threshold) == shown


def test_thresholds_valid_on_main_keep_their_meaning() -> None:
    for written, op, value in (("> 1000", ">", 1000), (" >= 0.5 ", ">=", 0.5), ("<-3", "<", -3), (95, ">", 95),
                               ("< 5 %", "<", 5)):
        threshold = rule("", critical=written).critical
        assert threshold is not None and (threshold.op, threshold.value) == (op, value)
    above = rule("ms", warning={"above": 1200}).warning
    assert above is not None and (above.op, above.value, str(above)) == (">", 1200, "> 1200 ms")


@pytest.mark.parametrize(("unit", "written", "says"), [
    ("%", "> 2s", "warning: 's' is a time but the rule's unit '%' is a percentage"),
    ("ms", "> 80%", "warning: '%' is a percentage but the rule's unit 'ms' is a time"),
    ("ms", "> 2GB", "is a size in bytes but the rule's unit 'ms' is a time"),
    ("", "> 2s", "is a time but the rule's unit '(none)' is a plain count"),
    ("ms", "> 2 parsecs", "warning: unknown unit 'parsecs'"),
])
def test_a_unit_that_cannot_convert_is_a_config_error_naming_the_field(unit: str, written: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_test_config({"alerts": {"rules": [{"name": "latency", "source": "http_json", "query": "http://x/m",
                                                "path": "v", "unit": unit, "warning": written}]}})
    assert any("alerts.rules[0]: " in p and says in p for p in info.value.problems), info.value.problems


def test_units_know_their_dimensions() -> None:
    assert unit_of("seconds").symbol == "s" and unit_of("kib").symbol == "KiB" and unit_of("x/s").dimension == "count"
    assert convert(3, "h", "m", where="w") == 180 and convert(5, "", "ms", where="w") == 5


async def test_a_seconds_threshold_on_a_milliseconds_rule_fires_and_shows_the_unit(make_bot: Any) -> None:
    latency = {"p95": 2600.0}
    app = Starlette(routes=[Route("/m", lambda _r: JSONResponse(latency))])
    async with LocalServer(app) as server:
        config = load_test_config({"alerts": {"rules": [{
            "name": "api_p95", "source": "http_json", "query": f"{server.url}/m", "path": "p95", "unit": "ms",
            "for": "0s", "warning": "> 2s", "critical": "> 5000ms"}]}})
        bot = await make_bot(config=config)
        await bot.run_job(JOB)
        [message] = bot.messages("#alerts")
        text = message.all_text()
        assert "WARNING · api_p95" in text and "2600 ms" in text
        assert "warning > 2000 ms · critical > 5000 ms" in text
        latency["p95"] = 1900.0  # below 2 s: resolves
        await bot.run_job(JOB)
        assert any("Resolved" in m.text for m in bot.messages("#alerts") if m.thread_ts)
