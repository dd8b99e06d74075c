"""`paging:` — the providers that reach people outside Slack: PagerDuty, Opsgenie, e-mail, webhooks.

Addresses (`events_url`, `api_url`, `host`, `port`) may be `${VAR}` references like secrets, so one config
serves production and the shell's stand-ins (`${OPSBOT_PAGERDUTY_URL:-https://events.pagerduty.com}`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from bot.config.base import Model, Name
from bot.config.secrets import EnvRef, EnvUrl
from bot.durations import Duration
from bot.errors import ConfigError


def url(ref: EnvUrl, env: Mapping[str, str] | None = None, *, where: str) -> str:
    """The resolved URL without a trailing slash; ConfigError (naming `where`, never the value) when unusable."""
    return ref.reveal(env, where=where).rstrip("/")


class PagerDutyService(Model):
    """One PagerDuty service, reached through an Events API v2 integration key."""

    routing_key: EnvRef
    # PagerDuty's payload.severity for pages from each opsbot severity name (default: by rank).
    severity: dict[str, Literal["critical", "error", "warning", "info"]] = Field(default_factory=dict)


class PagerDuty(Model):
    events_url: EnvUrl = EnvUrl("https://events.pagerduty.com")
    services: dict[Name, PagerDutyService] = Field(default_factory=dict)
    # The signing secret of PagerDuty's v3 webhook subscription to POST /webhooks/pagerduty.
    webhook_secret: EnvRef | None = None
    timeout: Duration = timedelta(seconds=10)


class Opsgenie(Model):
    api_url: EnvUrl = EnvUrl("https://api.opsgenie.com")  # EU accounts: https://api.eu.opsgenie.com
    api_key: EnvRef
    # `opsgenie:<team>` targets: the teams opsbot may page (Opsgenie team names).
    teams: list[str] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)


def _port(value: int | EnvRef) -> int | EnvRef:
    if isinstance(value, int) and not 1 <= value <= 65535:
        raise ValueError("a port is 1-65535")
    if isinstance(value, EnvRef) and not value.references():
        return _port(_port_number(value.template, ""))
    return value


def _port_number(text: str, where: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise (ConfigError([f"{where}: not a port number (1-65535)"]) if where else ValueError(
            "a port is 1-65535")) from None
    return number


class Email(Model):
    host: EnvRef
    port: Annotated[int | EnvRef, AfterValidator(_port)] = 587
    # starttls: upgrade a plain connection (587); tls: TLS from the first byte (465); none: local relays only.
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: EnvRef | None = None
    password: EnvRef | None = None
    from_: str = Field(alias="from")
    # A PEM file of the CA (or the self-signed certificate) to trust for the relay's TLS; default: the system's.
    ca_file: str | None = None
    timeout: Duration = timedelta(seconds=10)

    def address(self, env: Mapping[str, str] | None = None) -> tuple[str, int]:
        """(host, port) resolved; ConfigError naming the field when a variable is missing or wrong."""
        host = self.host.reveal(env, where="paging.email.host").strip()
        if not host:
            raise ConfigError(["paging.email.host: empty"])
        port = self.port if isinstance(self.port, int) else _port_number(
            self.port.reveal(env, where="paging.email.port").strip(), "paging.email.port")
        return host, port


class PagingWebhook(Model):
    """`webhook:<name>`: a JSON POST signed like rollback webhooks (X-Opsbot-Signature)."""

    url: EnvUrl  # often a secret itself (a token in the path or query): ${OPS_WEBHOOK_URL}
    secret: EnvRef
    timeout: Duration = timedelta(seconds=10)


class Paging(Model):
    pagerduty: PagerDuty | None = None
    opsgenie: Opsgenie | None = None
    email: Email | None = None
    webhooks: dict[Name, PagingWebhook] = Field(default_factory=dict)
    # A page that fails is retried this many times (with backoff) before the incident channel is told.
    retries: int = Field(default=5, ge=0, le=20)
