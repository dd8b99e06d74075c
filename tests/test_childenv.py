"""Configured commands get an explicit environment (a small base plus their `env:`), and nothing they
print reaches Slack or the database with a secret in it."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.childenv import BASE, child_env
from bot.config import CommandRunner, EnvRef, missing_env, referenced_env
from bot.errors import ConfigError
from bot.models import Base
from tests.conftest import load_test_config
from tests.test_rollbacks_support import (
    BOB,
    everything_said,
    record_deploys,
    request_message,
    request_rollback,
    rollbacks_in_db,
    script,
    thread,
)

# Secrets in opsbot's own environment, referenced by the config (a GitHub token, an admin API token, a
# target database URL with its password) and one handed to the command on purpose through `env:`.
GITHUB = "ghp_" + "Q7xK2m9PzR4tV8wY1bN6cJ3hL5sD0fGaE2uI"
ADMIN = "adm-7f3c9e1b5d2a"
DB_PASSWORD = "db-S3cret-pw"
DB_URL = f"postgresql://app:{DB_PASSWORD}@db.internal:5432/app"
DEPLOY_KEY = "dk-4e8a1c9f6b"
SECRETS = (GITHUB, ADMIN, DB_PASSWORD, DEPLOY_KEY)

PRINT_ENV = (
    "for key in sorted(os.environ): print(f'{key}={os.environ[key]}')\n"
    "key = os.environ.get('DEPLOY_KEY', '')\n"
    "print('DEPLOY_KEY sha256', __import__('hashlib').sha256(key.encode()).hexdigest())\n"
)


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB)
    monkeypatch.setenv("ADMIN_API_TOKEN", ADMIN)
    monkeypatch.setenv("OPS_DB_URL", DB_URL)
    monkeypatch.setenv("DEPLOY_KEY", DEPLOY_KEY)
    monkeypatch.setenv("UNRELATED_SETTING", "inherited-by-nobody")


def config_with_commands(tmp_path: Path, *, rollback_exit: int = 0, smoke_exit: int = 1) -> Any:
    rollback = script(tmp_path, "rollback.py", PRINT_ENV + f"sys.exit({rollback_exit})\n")
    smoke = script(tmp_path, "smoke.py", PRINT_ENV + f"sys.exit({smoke_exit})\n")
    return load_test_config({
        "environments": {
            "prod": {"default": True, "checks": [
                {"name": "admin", "url": "http://127.0.0.1:9/admin",
                 "headers": {"Authorization": "Bearer ${ADMIN_API_TOKEN}"}},
                {"name": "db", "type": "postgres", "dsn": "${OPS_DB_URL}"},
            ]},
            "staging": {"smoke": [{"name": "e2e", "schedule": "0 6 * * *", "command": [sys.executable, smoke],
                                   "env": {"SMOKE_TARGET": "https://staging.example", "DATABASE_URL": "${OPS_DB_URL}",
                                           "DEPLOY_KEY": "${DEPLOY_KEY}"}}]},
        },
        "rollbacks": {
            "api": {"environments": {"staging": {"provider": "command", "argv": [sys.executable, rollback],
                                                 "env": {"DEPLOY_REGION": "eu-west-1",
                                                         "DEPLOY_KEY": "${DEPLOY_KEY}"}}}},
            "web": {"environments": {"prod": {"provider": "github_actions", "repo": "acme/web",
                                              "workflow": "rollback.yml", "token": "${GITHUB_TOKEN}"}}},
        },
    })


async def everything_stored(bot: Any) -> str:
    """Every row of every opsbot table, as text."""
    out = []
    async with bot.deps.db.session() as session:
        for table in Base.metadata.sorted_tables:
            out += [repr(tuple(row)) for row in (await session.execute(select(table))).all()]
    return "\n".join(out)


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


# -- the environment itself --------------------------------------------------------------------

def test_child_env_is_the_base_plus_the_configured_variables_and_nothing_else() -> None:
    parent = {"PATH": "/usr/bin", "HOME": "/home/opsbot", "LANG": "C.UTF-8", "SLACK_BOT_TOKEN": "xoxb-1",
              "DATABASE_URL": "postgresql://u:p@h/db", "GITHUB_TOKEN": GITHUB, "DEPLOY_KEY": DEPLOY_KEY}
    env = child_env({"KEY": EnvRef("${DEPLOY_KEY}"), "REGION": EnvRef("eu-${ZONE:-west}-1")}, environ=parent)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/opsbot", "LANG": "C.UTF-8", "KEY": DEPLOY_KEY,
                   "REGION": "eu-west-1"}
    assert set(BASE) == {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}


def test_an_unset_variable_in_env_names_it_and_never_a_value() -> None:
    with pytest.raises(ConfigError, match=r"smoke\.env\.KEY: environment variable DEPLOY_KEY is not set"):
        child_env({"KEY": EnvRef("${DEPLOY_KEY}")}, environ={"PATH": "/bin"}, where="smoke.env")


def test_env_keys_are_validated_and_checked_for_unset_variables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an environment variable name"):
        load_test_config({"rollbacks": {"api": {"environments": {"staging": {
            "provider": "command", "argv": ["/bin/true"], "env": {"BAD-NAME": "x"}}}}}})
    with pytest.raises(ConfigError, match="`env` is for a smoke suite's `command`"):
        load_test_config({"environments": {"staging": {"smoke": [
            {"name": "x", "schedule": "0 6 * * *", "env": {"A": "b"}}]}}})
    config = config_with_commands(tmp_path)
    warnings = missing_env(config, {})
    assert "rollbacks.api.environments.staging.env.DEPLOY_KEY: environment variable DEPLOY_KEY is not set" in warnings
    assert "environments.staging.smoke[0].env.DATABASE_URL: environment variable OPS_DB_URL is not set" in warnings
    assert referenced_env(config) == ["ADMIN_API_TOKEN", "OPS_DB_URL", "DEPLOY_KEY", "GITHUB_TOKEN"]
    assert CommandRunner(provider="command", argv=["/bin/true"]).env == {}  # existing configs stay valid


# -- through signed requests -------------------------------------------------------------------

async def test_a_rollback_command_printing_its_environment_reveals_no_secret(
        make_bot: Any, tmp_path: Path, secrets_in_env: None) -> None:
    bot = await make_bot(config=config_with_commands(tmp_path))
    await record_deploys(bot, "api", "staging", "v1", "v2")
    await request_rollback(bot, "api staging", user=BOB)

    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded", row.output
    replies = thread(bot, request_message(bot))
    assert "DEPLOY_REGION=eu-west-1" in replies              # a literal from `env:`
    assert "DEPLOY_KEY=***" in replies                       # a ${VAR} from `env:`: there, but masked
    assert hashlib.sha256(DEPLOY_KEY.encode()).hexdigest() in replies
    assert "GITHUB_TOKEN" not in replies and "ADMIN_API_TOKEN" not in replies and "UNRELATED_SETTING" not in replies
    assert "SLACK_BOT_TOKEN" not in replies and "PATH=" in replies
    assert leaked(everything_said(bot)) == []
    assert leaked(await everything_stored(bot)) == [] and "DEPLOY_KEY=***" in (row.output or "")


async def test_a_smoke_command_printing_its_environment_reveals_no_secret(
        make_bot: Any, tmp_path: Path, secrets_in_env: None) -> None:
    bot = await make_bot(config=config_with_commands(tmp_path))
    await bot.run_job("health.smoke.staging.e2e")

    (alert,) = bot.messages("#alerts")
    text = alert.all_text()
    assert "failed: exit code 1" in text
    assert "SMOKE_TARGET=https://staging.example" in text
    assert "DATABASE_URL=***" in text and "DEPLOY_KEY=***" in text
    assert hashlib.sha256(DEPLOY_KEY.encode()).hexdigest() in text
    assert "GITHUB_TOKEN" not in text and "UNRELATED_SETTING" not in text
    assert leaked(everything_said(bot)) == [] and leaked(await everything_stored(bot)) == []


async def test_output_cut_to_the_limit_never_shows_half_a_secret(
        make_bot: Any, tmp_path: Path, secrets_in_env: None) -> None:
    # The secret straddles the point where long output is cut: scrubbing comes first.
    body = ("print('x' * 30000, end='')\n"
            "for _ in range(3000): print(os.environ['DEPLOY_KEY'], end='')\n")
    config = load_test_config({"rollbacks": {"api": {"environments": {"staging": {
        "provider": "command", "argv": [sys.executable, script(tmp_path, "long.py", body)],
        "env": {"DEPLOY_KEY": "${DEPLOY_KEY}"}}}}}})
    bot = await make_bot(config=config)
    await record_deploys(bot, "api", "staging", "v1", "v2")
    await request_rollback(bot, "api staging", user=BOB)
    [row] = await rollbacks_in_db(bot)
    assert row.output and "***" in row.output
    assert not any(DEPLOY_KEY[i:] in row.output[:40] for i in range(1, len(DEPLOY_KEY) - 3))


async def test_long_multibyte_output_never_shows_the_tail_of_a_secret(
        make_bot: Any, tmp_path: Path, secrets_in_env: None) -> None:
    # The reader keeps the end of chatty output by bytes, the cut afterwards is by characters: with 3-byte
    # characters the byte cut lands inside the secret and the character cut never happens.
    from bot.providers.rollback_command import KEPT_BYTES

    count = (KEPT_BYTES - 10) // 3  # the bytes kept start 10 characters before the secret's end
    body = ("sys.stdout.write(os.environ['DEPLOY_KEY']); sys.stdout.flush()\n"
            f"sys.stdout.buffer.write(('\\u65e5' * {count}).encode()); sys.stdout.flush()\n")
    config = load_test_config({"rollbacks": {"api": {"environments": {"staging": {
        "provider": "command", "argv": [sys.executable, script(tmp_path, "cjk.py", body)],
        "env": {"DEPLOY_KEY": "${DEPLOY_KEY}"}}}}}})
    bot = await make_bot(config=config)
    await record_deploys(bot, "api", "staging", "v1", "v2")
    await request_rollback(bot, "api staging", user=BOB)
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded" and row.output
    tails = [DEPLOY_KEY[i:] for i in range(1, len(DEPLOY_KEY) - 3)]
    assert not any(tail in row.output for tail in tails)
    assert not any(tail in everything_said(bot) for tail in tails)


async def test_a_url_encoded_secret_in_command_output_is_masked(
        make_bot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Base64-ish tokens hold '+', '/' and '='; a command that prints a URL (curl -v, a client's error) shows
    # them percent-encoded.
    secret = "tk+Vb9/Qe3Lm7=="
    monkeypatch.setenv("HOOK_TOKEN", secret)
    body = ("from urllib.parse import quote, quote_plus\n"
            "t = os.environ['HOOK_TOKEN']\n"
            "print('GET https://hooks.example/deploy?token=' + quote(t, safe=''))\n"
            "print('form: token=' + quote_plus(t))\n")
    config = load_test_config({"rollbacks": {"api": {"environments": {"staging": {
        "provider": "command", "argv": [sys.executable, script(tmp_path, "curl.py", body)],
        "env": {"HOOK_TOKEN": "${HOOK_TOKEN}"}}}}}})
    bot = await make_bot(config=config)
    await record_deploys(bot, "api", "staging", "v1", "v2")
    await request_rollback(bot, "api staging", user=BOB)
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded" and row.output and "token=***" in row.output
    from urllib.parse import quote, quote_plus
    for form in (secret, quote(secret, safe=""), quote_plus(secret)):
        assert form not in everything_said(bot) and form not in await everything_stored(bot)
