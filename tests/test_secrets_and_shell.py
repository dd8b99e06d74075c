"""No secret in logs or /health; the shell works from piped input as a scripted demo."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.emulator.harness import BotHarness
from bot.logs import SecretFilter, scrub, secrets_of
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_scrub_masks_tokens_and_url_passwords() -> None:
    text = "token xoxb-123-456-abc and postgresql://opsbot:hunter2@db:5432/x and secret sig-s3cret"
    cleaned = scrub(text, ("sig-s3cret",))
    assert "xoxb-123" not in cleaned and "hunter2" not in cleaned and "sig-s3cret" not in cleaned
    assert "postgresql://opsbot:***@db:5432/x" in cleaned


def test_log_filter_masks_configured_secrets(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(_env_file=None, slack_signing_secret=SecretStr("very-secret-signing"),  # type: ignore[call-arg]
                        database_url=SecretStr("postgresql://u:dbpass99@h/db"))
    logger = logging.getLogger("opsbot.test.secrets")
    logger.addFilter(SecretFilter(secrets_of(settings)))
    with caplog.at_level(logging.INFO, logger="opsbot.test.secrets"):
        logger.info("connecting with %s and %s", "very-secret-signing", "dbpass99")
    assert "very-secret-signing" not in caplog.text and "dbpass99" not in caplog.text


def test_settings_repr_hides_secrets() -> None:
    settings = Settings(_env_file=None, slack_bot_token=SecretStr("xoxb-real-token"))  # type: ignore[call-arg]
    assert "xoxb-real-token" not in repr(settings) and "xoxb-real-token" not in str(settings.model_dump())


async def test_health_endpoint_shows_no_database_password(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot: BotHarness = await make_bot(settings_overrides={"database_url": "postgresql://opsbot:pw-123456@127.0.0.1:1/x"})
    assert bot.http is not None
    for path in ("/health", "/health/ready"):
        response = await bot.http.get(path)
        assert response.status_code == 503
        assert "pw-123456" not in response.text


def test_shell_runs_a_piped_script_and_exits_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OPSBOT_CONFIG")}
    script = "/opsbot help\n/opsbot whoami\n:user bob\n/opsbot whoami\n/opsbot frob\n"
    result = subprocess.run([sys.executable, "-m", "bot", "shell", "--database", f"sqlite:///{tmp_path / 's.db'}"],
                            input=script, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "examples/opsbot.yml" in out and "s.db" in out  # says which config and database it uses
    assert "== opsbot commands ==" in out
    assert "✅ `killswitch` in *prod* — allowed as oncall" in out   # alice
    assert "🚫 `killswitch` in *prod*" in out                        # bob
    assert "Unknown subcommand `frob`" in out
