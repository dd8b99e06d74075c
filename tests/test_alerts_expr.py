"""Computed values and thresholds over one JSON answer: `checked_out >= pool_size + max_overflow`, no eval."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.alerts.expr import ExpressionError, parse
from bot.emulator.localserver import LocalServer
from bot.errors import ConfigError
from bot.models import AlertState
from commands.alerts import eval_job_name
from tests.conftest import load_test_config

JOB = eval_job_name(timedelta(minutes=1))
ANSWER = {"pool": {"checked_out": 12, "size": 10, "max_overflow": 5}, "servers": [{"load": 0.75}], "zero": 0}


def lookup(path: str) -> float:
    node: Any = ANSWER
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return float(node)


@pytest.mark.parametrize(("text", "value"), [
    ("pool.checked_out", 12), ("pool.checked_out / pool.size * 100", 120), ("pool.size + pool.max_overflow", 15),
    ("(pool.checked_out - 2) % 4", 2), ("-pool.size + 1", -9), ("max(pool.size, 11, 3)", 11),
    ("min(pool.checked_out, pool.size)", 10), ("abs(0 - servers[0].load)", 0.75), ("2.5 * 2", 5),
])
def test_expressions_compute_over_the_answer(text: str, value: float) -> None:
    expression = parse(text)
    assert expression.evaluate(lookup) == pytest.approx(value)


def test_names_are_the_dotted_paths_read() -> None:
    assert parse("pool.checked_out / max(pool.size, 1) + servers[0].load").names == (
        "pool.checked_out", "pool.size", "servers.0.load")


@pytest.mark.parametrize(("text", "says"), [
    ("__import__('os').system('id')", "the only functions are min"),
    ("pool.size ** 100", "only + - * / % are allowed"),
    ("open('x')", "the only functions are min"),
    ("pool.size if 1 else 2", "is not allowed"),
    ("lambda: 1", "is not allowed"),
    ("pool.size < 3", "is not allowed"),
    ("'text'", "only numbers are allowed"),
    ("True + 1", "only numbers are allowed"),
    ("max(*pool)", "the only functions are min"),
    ("abs(1, 2)", "abs takes one argument"),
    ("pool[pool.size]", "is not allowed"),
    ("1 +", "cannot parse"),
    ("", "empty expression"),
    ("1" * 400 + "+" + "1" * 200, "longer than 500"),
])
def test_anything_else_is_refused(text: str, says: str) -> None:
    with pytest.raises(ExpressionError, match=says.replace("*", r"\*").replace("+", r"\+")):
        parse(text)


def test_computing_fails_cleanly() -> None:
    with pytest.raises(ExpressionError, match="division by zero"):
        parse("pool.size / zero").evaluate(lookup)
    with pytest.raises(ExpressionError, match="not a finite number"):
        parse("1e299 * 1e299 * 1e299").evaluate(lookup)


def test_config_load_names_the_bad_field() -> None:
    base = {"name": "pool", "source": "http_json", "query": "http://x/p"}
    cases = [({"value": "checked_out ** 2", "warning": "> 1"}, "value: `checked_out ** 2`: only + - * / %"),
             ({"path": "a", "critical": ">= size +"}, "not a threshold: '>= size +'"),
             ({"path": "a", "ratio_of": "b", "value": "a", "warning": "> 1"}, "value: write the ratio"),
             ({"source": "postgres", "dsn": "x", "query": "SELECT 1", "critical": ">= size + 1"},
              "critical: a computed threshold needs a JSON answer"),
             ({"warning": "> 1"}, "need `path` (to the number) or `value`")]
    for extra, says in cases:
        with pytest.raises(ConfigError) as info:
            load_test_config({"alerts": {"rules": [{**base, **extra}]}})
        assert any(says in p for p in info.value.problems), (says, info.value.problems)


async def test_pool_exhaustion_fires_on_a_computed_threshold(make_bot: Any) -> None:
    """The runbook: page when checked_out >= pool_size + max_overflow, all from one /internal/pool answer."""
    pool = {"checked_out": 10, "pool_size": 10, "max_overflow": 5}
    app = Starlette(routes=[Route("/internal/pool", lambda _r: JSONResponse(pool))])
    async with LocalServer(app) as server:
        config = load_test_config({"alerts": {"rules": [
            {"name": "db_pool_exhausted", "source": "http_json", "query": f"{server.url}/internal/pool",
             "value": "checked_out", "critical": ">= pool_size + max_overflow", "warning": ">= pool_size",
             "unit": "connections", "for": "0s"},
            {"name": "db_pool_usage", "source": "http_json", "query": f"{server.url}/internal/pool",
             "value": "checked_out / (pool_size + max_overflow) * 100", "unit": "%", "warning": "> 80%",
             "for": "0s"}]}})
        bot = await make_bot(config=config)
        await bot.run_job(JOB)
        [warning] = bot.messages("#alerts")
        assert "WARNING · db_pool_exhausted" in warning.all_text() and "10 connections" in warning.all_text()
        assert "critical >= pool_size + max_overflow" in warning.all_text()
        pool["checked_out"] = 15
        await bot.run_job(JOB)
        texts = [m.all_text() for m in bot.messages("#alerts") if not m.thread_ts]
        assert any("CRITICAL · db_pool_exhausted" in t for t in texts)
        assert any("WARNING · db_pool_usage" in t and "100%" in t for t in texts)
        pool["pool_size"] = 20  # the pool grew: the same checked_out is no longer a breach
        await bot.run_job(JOB)
        async with bot.app.deps.db.session() as session:
            from sqlalchemy import select

            row = (await session.scalars(select(AlertState).where(AlertState.rule == "db_pool_exhausted",
                                                                  ~AlertState.key.startswith("rule:")))).one()
        assert row.state == "resolved"


async def test_a_name_missing_from_the_answer_is_a_source_error(make_bot: Any) -> None:
    app = Starlette(routes=[Route("/p", lambda _r: JSONResponse({"checked_out": 3, "pool_size": 0}))])
    async with LocalServer(app) as server:
        config = load_test_config({"alerts": {"rules": [
            {"name": "pool_pct", "source": "http_json", "query": f"{server.url}/p", "for": "0s",
             "value": "checked_out / pool_size * 100", "critical": ">= max_overflow"}]}})
        bot = await make_bot(config=config)
        await bot.run_job(JOB)
        [message] = bot.messages("#alerts")
        assert "cannot be evaluated" in message.text and "division by zero" in message.text
