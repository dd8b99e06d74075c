"""The `environments:` section: what a runbook author may write and the errors a typo gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from bot.errors import ConfigError
from tests.conftest import load_test_config


def environments(**envs: Any) -> Any:
    return load_test_config({"environments": envs})


def problems(**envs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        environments(**envs)
    return "; ".join(info.value.problems)


def test_checks_are_http_by_default_with_per_environment_defaults() -> None:
    config = environments(prod={"timeout": "2s", "latency_warn": "300ms", "monitor": "5m", "checks": [
        {"name": "api", "url": "https://api.example.com/health", "expect_status": [200, 204]},
        {"name": "db", "type": "postgres", "dsn": "${APP_DSN}"},
        {"name": "redis", "type": "tcp", "host": "redis.internal", "port": 6379, "timeout": "1s"},
    ]})
    env = config.environments["prod"]
    assert [c.type for c in env.checks] == ["http", "postgres", "tcp"]
    assert env.timeout.total_seconds() == 2 and env.monitor is not None and env.monitor.total_seconds() == 300
    assert env.checks[2].timeout is not None and env.checks[2].timeout.total_seconds() == 1


def test_unnamed_checks_get_a_label_without_url_credentials() -> None:
    config = environments(prod={"checks": [{"url": "https://svc:hunter2@api.example.com/health"},
                                           {"type": "tcp", "host": "redis.internal", "port": 6379}]})
    http, tcp = config.environments["prod"].checks
    assert http.label() == "GET https://api.example.com/health"
    assert tcp.label() == "tcp redis.internal:6379"


@pytest.mark.parametrize(("env", "expected"), [
    ({"checks": [{"url": "https://a.example.com/", "expect_status": 999}]}, "999 is not an HTTP status code"),
    ({"checks": [{"url": "https://a.example.com/", "timeout": "0s"}]}, "must be longer than 0s"),
    ({"monitor": "0s"}, "must be longer than 0s"),
    ({"checks": [{"url": "https://a.example.com/"}, {"url": "https://a.example.com/"}]}, "two checks are named"),
    ({"checks": [{"url": "not a url"}]}, "not a valid URL"),
    ({"checks": [{"type": "tcp", "host": "h", "port": 70000}]}, "port"),
    ({"checks": [{"name": "api", "url": "https://a.example.com/", "expect_jsn": {}}]}, "unknown field"),
])
def test_invalid_checks_are_reported(env: dict[str, Any], expected: str) -> None:
    assert expected in problems(prod=env)


def test_smoke_suites_name_existing_checks_and_run_checks_or_a_command() -> None:
    api = {"name": "api", "url": "https://a.example.com/"}
    assert "names unknown checks: web (checks here: api)" in problems(prod={"checks": [api], "smoke": [
        {"name": "daily", "schedule": "0 6 * * *", "checks": ["web"]}]})
    assert "either `checks` or a `command`" in problems(prod={"checks": [api], "smoke": [
        {"name": "daily", "schedule": "0 6 * * *", "checks": ["api"], "command": ["true"]}]})
    assert "not a valid crontab" in problems(prod={"checks": [api], "smoke": [
        {"name": "daily", "schedule": "every morning"}]})
    assert "two smoke suites are named" in problems(prod={"checks": [api], "smoke": [
        {"name": "daily", "schedule": "0 6 * * *"}, {"name": "daily", "schedule": "0 7 * * *"}]})
    ok = environments(prod={"checks": [api], "smoke": [
        {"name": "daily", "schedule": "0 6 * * *", "checks": ["api"], "report_success": True},
        {"name": "e2e", "schedule": "30 5 * * 1-5", "command": ["./smoke.sh", "--env", "prod"], "timeout": "10m"}]})
    daily, e2e = ok.environments["prod"].smoke
    assert daily.checks == ["api"] and daily.report_success
    assert e2e.command == ["./smoke.sh", "--env", "prod"] and e2e.timeout.total_seconds() == 600


def test_example_config_environments_are_valid() -> None:
    config = load_config(None)
    prod = config.environments["prod"]
    assert config.default_environment == "prod"
    assert prod.monitor is not None and prod.smoke
    assert {c.type for c in prod.checks} == {"http", "postgres", "tcp", "rate_limit"}


def test_smoke_warnings_name_a_missing_cwd_or_program(tmp_path: Path) -> None:
    from bot.config.health import Environment, smoke_warnings

    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "smoke.sh").write_text("#!/bin/sh\n")
    env = Environment.model_validate({"smoke": [
        {"name": "fine", "command": "scripts/smoke.sh", "cwd": str(tmp_path)},
        {"name": "away", "command": "python x.py", "cwd": str(tmp_path / "gone")},
        {"name": "typo", "command": "pythn-nope-3 x.py"},
        {"name": "rel", "command": "./scripts/missing.sh", "cwd": str(tmp_path)},
    ]})
    assert smoke_warnings({"prod": env}) == [
        f"environments.prod.smoke.away.cwd: {tmp_path / 'gone'} is not a directory here",
        "environments.prod.smoke.typo.command: pythn-nope-3 is not on PATH",
        "environments.prod.smoke.rel.command: ./scripts/missing.sh not found",
    ]
