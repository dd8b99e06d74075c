"""No secret in logs or /health; the shell works from piped input as a scripted demo."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot import logs
from bot.emulator.harness import BotHarness
from bot.logs import scrub
from bot.secrets import Scrubber
from bot.settings import Settings
from tests.conftest import load_test_config

ROOT = Path(__file__).resolve().parents[1]


def test_scrub_masks_tokens_and_url_passwords() -> None:
    text = "token xoxb-123-456-abc and postgresql://opsbot:hunter2@db:5432/x and secret sig-s3cret"
    cleaned = scrub(text, ("sig-s3cret",))
    assert "xoxb-123" not in cleaned and "hunter2" not in cleaned and "sig-s3cret" not in cleaned
    assert "postgresql://opsbot:***@db:5432/x" in cleaned


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """logs.configure rewires the root logger and the exception hooks; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks


def test_log_exception_masks_secrets_in_the_whole_traceback(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            restored_logging: None) -> None:
    monkeypatch.setenv("ADMIN_API_TOKEN", "adm-7f3c9e1b5d2a")
    settings = Settings(_env_file=None, slack_signing_secret=SecretStr("very-secret-signing"),  # type: ignore[call-arg]
                        slack_bot_token=SecretStr("xoxb-1111-2222-abcdef"),
                        database_url=SecretStr("postgresql://opsbot:dbpass99@db:5432/opsbot"),
                        log_level="DEBUG")  # tracebacks are printed at DEBUG only
    config = load_test_config({"environments": {"prod": {"checks": [
        {"name": "admin", "url": "http://127.0.0.1:9/", "headers": {"X-Token": "${ADMIN_API_TOKEN}"}}]}}})
    logs.configure(settings, config)
    logger = logging.getLogger("opsbot.test.secrets")

    def connect() -> None:
        raise ConnectionError("cannot reach postgresql://opsbot:dbpass99@db:5432/opsbot")

    try:
        try:
            try:
                connect()
            except ConnectionError:
                raise KeyError("admin said no to adm-7f3c9e1b5d2a")  # noqa: B904 - the implicit __context__ is the point
        except KeyError as exc:  # __context__ above, __cause__ below
            raise RuntimeError("Slack refused xoxb-1111-2222-abcdef (signing very-secret-signing)") from exc
    except RuntimeError:
        logger.exception("posting failed for %s", "xoxb-1111-2222-abcdef")
    logger.warning("where are we", stack_info=True)
    logging.getLogger("uvicorn.error").error("uvicorn saw dbpass99")
    err = capsys.readouterr().err
    assert "During handling of the above exception" in err and "The above exception was the direct cause" in err
    assert "postgresql://opsbot:***@db:5432/opsbot" in err and "Stack (most recent call last)" in err
    for secret in ("dbpass99", "xoxb-1111", "very-secret-signing", "adm-7f3c9e1b5d2a"):
        assert secret not in err, secret


def test_scrubber_masks_settings_and_config_values_and_token_shapes() -> None:
    settings = Settings(_env_file=None, slack_bot_token=SecretStr("xoxb-real-token"),  # type: ignore[call-arg]
                        deploys_token=SecretStr("deploys-tok-1"), database_url=SecretStr("sqlite:///opsbot.db"))
    config = load_test_config({"environments": {"prod": {"checks": [
        {"type": "postgres", "dsn": "${TARGET_DSN}"}]}}})
    scrubber = Scrubber.of(settings=settings, config=config,
                           environ={"TARGET_DSN": "postgresql://app:tgt-pw-42@h/app", "OTHER": "not-referenced"})
    text = scrubber("deploys-tok-1 postgresql://app:tgt-pw-42@h/app PGPASSWORD=tgt-pw-42 not-referenced "
                    "sqlite:///opsbot.db ghp_abcdefghijklmnopqrstuvwxyz0123456789")
    assert text == "*** *** PGPASSWORD=*** not-referenced sqlite:///opsbot.db gh*_***"


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


def test_an_uncaught_exception_leaves_through_the_scrubbing_handler(tmp_path: Path) -> None:
    code = ("from pydantic import SecretStr\n"
            "from bot import logs\n"
            "from bot.settings import Settings\n"
            "logs.configure(Settings(_env_file=None, database_url=SecretStr('postgresql://u:pw-uncaught@h/db')))\n"
            "raise RuntimeError('gave up on postgresql://u:pw-uncaught@h/db with xoxb-9-9-uncaught')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1
    assert "CRITICAL opsbot: uncaught exception" in result.stderr and "RuntimeError" in result.stderr
    assert "pw-uncaught" not in result.stderr and "xoxb-9-9" not in result.stderr


def test_health_check_details_are_scrubbed_like_everything_else() -> None:
    """checks_common.scrub masks through bot.secrets: a header secret echoed URL-encoded by a target's error,
    and a token-shaped string nobody configured, never reach a check's detail."""
    from bot.providers.checks_common import scrub

    detail = scrub("401 for token=tk%2BVb9%2FQe3 from xoxb-1234-abcd\n  again", ["tk+Vb9/Qe3"])
    assert "Vb9" not in detail and "xoxb-1234" not in detail and "\n" not in detail
