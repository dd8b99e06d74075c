"""Process settings: environment variables and an optional `.env` file.

Built once at start-up and passed around; nothing below this module reads `os.environ`. Slack's
credentials have no defaults: `opsbot serve` and `opsbot socket` refuse to start without them
(`credential_problems`); the shell, the emulator harness and the tests pass their own values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE = "sqlite:///opsbot.db"


@dataclass(frozen=True)
class Credential:
    variable: str
    what: str
    where: str  # where the Slack app's settings show it


SIGNING_SECRET = Credential("SLACK_SIGNING_SECRET", "the app's Signing Secret",
                            "Basic Information → App Credentials → Signing Secret")
BOT_TOKEN = Credential("SLACK_BOT_TOKEN", "the bot token (xoxb-…)",
                       "OAuth & Permissions → Bot User OAuth Token")
APP_TOKEN = Credential("SLACK_APP_TOKEN", "an app-level token (xapp-…) with connections:write",
                       "Basic Information → App-Level Tokens")
# Values that were once defaults or ship in this repository's shell: anyone can sign requests with them.
PUBLIC_PLACEHOLDERS = frozenset({"local-signing-secret", "xoxb-local-emulator", "shell-signing-secret", "xoxb-shell"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    database_url: SecretStr = Field(default=SecretStr(DEFAULT_SQLITE))
    opsbot_config: Path | None = None
    port: int = 3000
    host: str = "0.0.0.0"
    log_level: str = "INFO"
    # Bearer tokens for the machine-to-machine endpoints (POST /deploys, POST /webhooks/alertmanager).
    deploys_token: SecretStr | None = None
    alertmanager_token: SecretStr | None = None
    # Seconds before a Web API call is abandoned (then retried by the retry handlers where safe).
    slack_timeout: int = 10
    # Scheduler leadership: run rules and timers on this replica (leader election still applies).
    scheduler_enabled: bool = True
    # Seconds between a follower's attempts to take the leader lock (how fast a dead leader is replaced).
    scheduler_lock_interval: float = Field(default=5.0, gt=0)
    # `opsbot serve`: run background work and the scheduler in a worker process beside the acking one.
    worker_process: bool = True
    # CPU priority of that worker below the acking process (0 = the same; 19 = the lowest: it yields to acks).
    worker_nice: int = Field(default=19, ge=0, le=19)
    # Seconds a stopping worker gets before it exits anyway (set it below the platform's SIGKILL grace period).
    worker_stop_timeout: float = Field(default=30.0, gt=0)
    # Seconds between probes of opsbot's own database for the opsbot_database_up gauge (GET /metrics).
    db_probe_interval: float = Field(default=15.0, gt=0)

    @field_validator("deploys_token", "alertmanager_token", "slack_app_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`DEPLOYS_TOKEN=` (empty) means unset: the endpoint stays off, not on with a token nobody can send."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @property
    def bot_token(self) -> str:
        return _required(self.slack_bot_token, BOT_TOKEN)

    @property
    def signing_secret(self) -> str:
        return _required(self.slack_signing_secret, SIGNING_SECRET)

    def credential_problems(self, *, socket_mode: bool = False) -> list[str]:
        """Why this process cannot talk to Slack safely: one line per missing or placeholder credential."""
        wanted = [(SIGNING_SECRET, self.slack_signing_secret), (BOT_TOKEN, self.slack_bot_token)]
        if socket_mode:
            wanted.append((APP_TOKEN, self.slack_app_token))
        problems = []
        for credential, value in wanted:
            secret = value.get_secret_value().strip() if value is not None else ""
            if not secret:
                problems.append(f"{credential.variable} is not set: {credential.what}, "
                                f"from the Slack app's {credential.where}")
            elif secret in PUBLIC_PLACEHOLDERS:
                problems.append(f"{credential.variable} is a public placeholder ({secret}): set {credential.what}, "
                                f"from the Slack app's {credential.where}")
        return problems


def _required(value: SecretStr | None, credential: Credential) -> str:
    """A credential the process cannot run without (serve/socket refuse to start before this is reached)."""
    if value is None:
        raise RuntimeError(f"{credential.variable} is not set")
    return value.get_secret_value()
