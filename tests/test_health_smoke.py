"""Smoke suites as runbooks write them: `python scripts/smoke_test_e2e.py` in the app's directory, with the
app's DATABASE_URL through `env:`, and the lines its output must show; `/health smoke <suite> [env]`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.config.health import SmokeSuite
from tests.conftest import load_test_config

DB_PASSWORD = "pw-Tenant-7Qz"
APP_DB = f"postgresql://app:{DB_PASSWORD}@127.0.0.1:5432/app"
# The runbook's script: reads DATABASE_URL, must not see opsbot's own secrets, prints its verdicts.
SCRIPT = '''
import os, sys
url = os.environ.get("DATABASE_URL")
if not url:
    print("DATABASE_URL is not set"); sys.exit(1)
leaked = [k for k in os.environ if k.startswith("SLACK_") or k == "OPSBOT_SECRET_CANARY"]
print("connecting to", url)
print("leaked:", leaked or "none")
print("3 tenants checked")
if os.environ.get("SMOKE_MODE") != "broken":
    print("\\u2713 Tenant isolation verified!")
'''


def app_dir(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "smoke_test_e2e.py").write_text(SCRIPT)
    return root


def suite(root: Path, **extra: Any) -> dict[str, Any]:
    # The runbook says `python scripts/smoke_test_e2e.py`; this interpreter stands in for `python`.
    return {"name": "e2e", "command": f"{shlex.quote(sys.executable)} scripts/smoke_test_e2e.py",
            "cwd": str(root), "env": {"DATABASE_URL": "${APP_DATABASE_URL}"}, "report_success": True,
            "expect_output": ["✓ Tenant isolation verified!", r"re:^\d+ tenants checked$"], **extra}


def config(root: Path, *suites: dict[str, Any]) -> Any:
    return load_test_config({"environments": {
        "prod": {"default": True, "checks": [], "smoke": list(suites)},
        "staging": {"checks": [], "smoke": [{**suite(root), "env": {"DATABASE_URL": "${APP_DATABASE_URL}",
                                                                    "SMOKE_MODE": "broken"}}]},
    }})


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", APP_DB)
    monkeypatch.setenv("OPSBOT_SECRET_CANARY", "canary-value-123")


async def test_runbook_suite_passes_with_cwd_env_and_expected_output(make_bot: Any, tmp_path: Path,
                                                                     app_env: None) -> None:
    root = app_dir(tmp_path)
    bot = await make_bot(config=config(root, {**suite(root), "schedule": "0 6 * * *"}))
    await bot.run_job("health.smoke.prod.e2e")
    (summary,) = bot.messages("#alerts")
    assert "✅ Smoke suite *e2e* on *prod* passed: exit code 0" in summary.all_text()


async def test_missing_expected_line_fails_and_the_output_is_scrubbed(make_bot: Any, tmp_path: Path,
                                                                      app_env: None) -> None:
    root = app_dir(tmp_path)
    bot = await make_bot(config=config(root, {**suite(root), "schedule": "0 6 * * *",
                                              "env": {"DATABASE_URL": "${APP_DATABASE_URL}",
                                                      "SMOKE_MODE": "broken"}}))
    await bot.run_job("health.smoke.prod.e2e")
    (alert,) = bot.messages("#alerts")
    text = alert.all_text()
    assert "failed: exit code 0 but the output lacks `✓ Tenant isolation verified!`" in text
    assert "leaked: none" in text  # neither Slack tokens nor unrelated variables reach the child
    assert "connecting to ***" in text and DB_PASSWORD not in text  # the value of a ${VAR} opsbot.yml names


async def test_a_wrong_cwd_fails_clearly(make_bot: Any, tmp_path: Path, app_env: None) -> None:
    bot = await make_bot(config=config(app_dir(tmp_path), {**suite(tmp_path / "nowhere"), "schedule": "0 6 * * *"}))
    await bot.run_job("health.smoke.prod.e2e")
    (alert,) = bot.messages("#alerts")
    assert f"failed: working directory not found: {tmp_path / 'nowhere'}" in alert.all_text()


async def test_health_smoke_runs_a_suite_now(make_bot: Any, tmp_path: Path, app_env: None) -> None:
    root = app_dir(tmp_path)
    bot = await make_bot(config=config(root, suite(root)))
    assert not any(name.startswith("health.smoke.") for name in bot.deps.scheduler.jobs)  # no schedule: on demand
    response = await bot.command("/health", "smoke e2e")
    assert response.json() == {"response_type": "ephemeral", "text": "Running smoke suite e2e on prod…"}
    (final,) = bot.slack.responses
    assert final["replace_original"] is True
    assert "✅ Smoke suite *e2e* on *prod* passed: exit code 0" in bot.ephemeral_texts()[-1]
    await bot.command("/health", "smoke E2E staging")
    text = bot.ephemeral_texts()[-1]
    assert "❌ Smoke suite *e2e* on *staging* failed: exit code 0 but the output lacks" in text
    assert bot.messages("#alerts") == []  # an on-demand run answers the person who asked


async def test_health_smoke_unknown_suite_lists_the_valid_ones(make_bot: Any, tmp_path: Path, app_env: None) -> None:
    root = app_dir(tmp_path)
    bot = await make_bot(config=config(root, suite(root), {**suite(root), "name": "nightly"}))
    calls = len(bot.slack.calls)
    body = (await bot.command("/health", "smoke nope")).json()
    assert "Unknown smoke suite `nope`" in body["text"] and "`e2e`, `nightly`" in body["text"]
    assert "`e2e`, `nightly`" in (await bot.command("/health", "smoke")).json()["text"]
    assert "Unknown environment `qa`" in (await bot.command("/health", "smoke e2e qa")).json()["text"]
    later = [method for method, _ in bot.slack.calls[calls:] if method != "auth.test"]  # start-up's, whenever
    assert bot.slack.responses == [] and later == []


def test_command_strings_are_split_without_a_shell() -> None:
    parsed = SmokeSuite.model_validate({"name": "e2e", "command": "python scripts/smoke.py --tenant 'acme corp'"})
    assert parsed.command == ["python", "scripts/smoke.py", "--tenant", "acme corp"]
    for bad, why in [("python a.py && echo ok", "without a shell"), ("python 'a.py", "cannot split"),
                     ("pytest | tee log", "without a shell")]:
        with pytest.raises(ValidationError, match=why):
            SmokeSuite.model_validate({"name": "e2e", "command": bad})
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        SmokeSuite.model_validate({"name": "e2e", "command": ["true"], "expect_output": ["re:("]})
    with pytest.raises(ValidationError, match="`cwd` is for a smoke suite's `command`"):
        SmokeSuite.model_validate({"name": "e2e", "cwd": "/srv/app"})
    assert SmokeSuite.model_validate({"name": "e2e", "command": ["true"], "expect_output": "done"}).expect_output == [
        "done"]
