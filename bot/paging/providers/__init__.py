"""What a page says and what every paging provider does with it.

`build(paging, http)` makes one provider per configured kind: `pagerduty`, `opsgenie`, `email`, `webhook`.
Each `send(name, notice)` raises DependencyDown (retry later) or PageRejected (final), never with a secret."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from bot.config.paging import Paging
from bot.paging.providers.base import Delivery, Notice, PageRejected, Provider, Throttled
from bot.paging.providers.email import EmailProvider
from bot.paging.providers.opsgenie import OpsgenieProvider
from bot.paging.providers.pagerduty import PagerDutyProvider
from bot.paging.providers.webhook import WebhookProvider

__all__ = ["Delivery", "Notice", "PageRejected", "Provider", "Throttled", "build"]


def build(paging: Paging, http: httpx.AsyncClient, environ: Mapping[str, str] | None = None) -> dict[str, Provider]:
    """The configured providers keyed by kind (the prefix of their targets: `pagerduty:checkout`)."""
    providers: dict[str, Provider] = {}
    if paging.pagerduty is not None:
        providers["pagerduty"] = PagerDutyProvider(paging.pagerduty, http, environ)
    if paging.opsgenie is not None:
        providers["opsgenie"] = OpsgenieProvider(paging.opsgenie, http, environ)
    if paging.email is not None:
        providers["email"] = EmailProvider(paging.email, environ)
    if paging.webhooks:
        providers["webhook"] = WebhookProvider(paging.webhooks, http, environ)
    return providers
