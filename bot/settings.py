"""Process settings: environment variables and an optional `.env` file.

Built once at start-up and passed around; nothing below this module reads `os.environ`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE = "sqlite:///opsbot.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr = Field(default=SecretStr("xoxb-local-emulator"))
    slack_signing_secret: SecretStr = Field(default=SecretStr("local-signing-secret"))
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

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()
