"""`paging:` — the providers that reach people outside Slack: PagerDuty, Opsgenie, e-mail, webhooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import AnyHttpUrl, Field

from bot.config.base import Model, Name
from bot.config.secrets import EnvRef
from bot.durations import Duration


class PagerDutyService(Model):
    """One PagerDuty service, reached through an Events API v2 integration key."""

    routing_key: EnvRef
    # PagerDuty's payload.severity for pages from each opsbot severity name (default: by rank).
    severity: dict[str, Literal["critical", "error", "warning", "info"]] = Field(default_factory=dict)


class PagerDuty(Model):
    events_url: AnyHttpUrl = AnyHttpUrl("https://events.pagerduty.com")
    services: dict[Name, PagerDutyService] = Field(default_factory=dict)
    # The signing secret of PagerDuty's v3 webhook subscription to POST /webhooks/pagerduty.
    webhook_secret: EnvRef | None = None
    timeout: Duration = timedelta(seconds=10)


class Opsgenie(Model):
    api_url: AnyHttpUrl = AnyHttpUrl("https://api.opsgenie.com")
    api_key: EnvRef
    # `opsgenie:<team>` targets: the teams opsbot may page (Opsgenie team names).
    teams: list[str] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)


class Email(Model):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    # starttls: upgrade a plain connection (587); tls: TLS from the first byte (465); none: local relays only.
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: EnvRef | None = None
    password: EnvRef | None = None
    from_: str = Field(alias="from")
    timeout: Duration = timedelta(seconds=10)


class PagingWebhook(Model):
    """`webhook:<name>`: a JSON POST signed like rollback webhooks (X-Opsbot-Signature)."""

    url: EnvRef
    secret: EnvRef
    timeout: Duration = timedelta(seconds=10)


class Paging(Model):
    pagerduty: PagerDuty | None = None
    opsgenie: Opsgenie | None = None
    email: Email | None = None
    webhooks: dict[Name, PagingWebhook] = Field(default_factory=dict)
    # A page that fails is retried this many times (with backoff) before the incident channel is told.
    retries: int = Field(default=5, ge=0, le=20)
