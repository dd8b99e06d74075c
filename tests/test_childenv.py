"""Configured commands never see opsbot's own secrets (their output is posted to Slack)."""

from __future__ import annotations

import sys

import pytest

from bot.childenv import child_env
from bot.config import CommandRunner
from bot.providers.rollback_base import RollbackRequest
from bot.providers.rollback_command import CommandProvider


def test_child_env_drops_opsbot_secrets_and_keeps_the_rest() -> None:
    env = child_env({"SLACK_BOT_TOKEN": "xoxb-1", "DATABASE_URL": "postgresql://u:p@h/db", "PATH": "/usr/bin",
                     "AZURE_CLIENT_ID": "needed-by-az"})
    assert env == {"PATH": "/usr/bin", "AZURE_CLIENT_ID": "needed-by-az"}


async def test_a_rollback_command_that_prints_its_environment_reveals_no_opsbot_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-must-not-leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://opsbot:db-pass-must-not-leak@db/opsbot")
    monkeypatch.setenv("TEAM_DEPLOY_HINT", "visible")
    runner = CommandRunner(provider="command", argv=[sys.executable, "-c", "import os; print(dict(os.environ))"])
    provider = CommandProvider(runner)
    request = RollbackRequest(rollback_id=1, service="api", environment="staging", version="v1",
                              previous_version="v2", reason="test", requested_by="U0ALICE01")

    async def progress(_text: str) -> None:
        return None

    outcome = await provider.run(request, progress)
    assert outcome.status == "succeeded", outcome.detail
    assert "visible" in (outcome.output or "")
    assert "must-not-leak" not in (outcome.output or "")
