"""`rollbacks:` — per service and environment, a provider and an approval count."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field

from bot.config.base import Model
from bot.config.secrets import EnvRef
from bot.durations import Duration


class _Runner(Model):
    # None: 2 for production environments, 0 otherwise.
    approvals: int | None = Field(default=None, ge=0, le=10)
    timeout: Duration = timedelta(minutes=30)
    verify: bool = True


class GithubActionsRunner(_Runner):
    provider: Literal["github_actions"]
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    workflow: str
    ref: str = "main"
    token: EnvRef
    api_url: AnyHttpUrl = AnyHttpUrl("https://api.github.com")
    # Extra workflow inputs; values are templates over service, environment, version, reason.
    inputs: dict[str, str] = Field(default_factory=dict)
    poll_interval: Duration = timedelta(seconds=10)


class WebhookRunner(_Runner):
    provider: Literal["webhook"]
    url: AnyHttpUrl
    secret: EnvRef
    status_url: AnyHttpUrl | None = None
    retries: int = Field(default=3, ge=0, le=10)
    request_timeout: Duration = timedelta(seconds=10)
    poll_interval: Duration = timedelta(seconds=10)


class CommandRunner(_Runner):
    provider: Literal["command"]
    # argv, no shell; placeholders {service} {environment} {version} {previous_version} {reason}.
    argv: list[str] = Field(min_length=1)
    cwd: str | None = None


Runner = Annotated[GithubActionsRunner | WebhookRunner | CommandRunner, Field(discriminator="provider")]


class RollbackTarget(Model):
    environments: dict[str, Runner]


class RollbackSettings(Model):
    approval_timeout: Duration = timedelta(minutes=30)
