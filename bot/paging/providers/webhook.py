"""`webhook:<name>` — a JSON POST signed like rollback webhooks.

Body: {"event": "trigger"|"acknowledge"|"resolve", "subject", "dedup_key", "title", "severity", "urgent",
"text", "link", "details", "delivery", "timestamp"}. Headers: X-Opsbot-Timestamp (unix seconds, also in the
body), X-Opsbot-Delivery (the same for every attempt at one page: deduplicate on it), X-Opsbot-Signature
`sha256=<hex HMAC-SHA256(secret, raw body)>` (bot.providers.rollback_webhook.verify_signature checks one).
Any 2xx delivers; 408/429/5xx and no answer are retried; other statuses refuse the page."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

import httpx

from bot.config.paging import PagingWebhook
from bot.paging.providers import _http
from bot.paging.providers.base import Delivery, Notice, PageRejected, Provider
from bot.providers.rollback_webhook import signature

_DELIVERIES = uuid.UUID("6f1b8a52-16a4-4d1e-9d6c-0b5d3f6e1a16")


def delivery_id(name: str, notice: Notice) -> str:
    """Stable per webhook, dedup key and action: a retried page carries the same X-Opsbot-Delivery."""
    return str(uuid.uuid5(_DELIVERIES, f"{name}\n{notice.dedup_key}\n{notice.action}"))


def payload(notice: Notice, delivery: str, timestamp: int) -> bytes:
    return json.dumps({
        "event": notice.action, "subject": notice.subject, "dedup_key": notice.dedup_key, "title": notice.title,
        "severity": notice.severity, "urgent": notice.urgent, "text": notice.text, "link": notice.link,
        "details": notice.details, "delivery": delivery, "timestamp": timestamp,
    }, separators=(",", ":")).encode()


def url_secrets(target: str) -> list[str]:
    """The URL and the parts of it that may be tokens (query values, a password, long path segments), masked
    in error texts: a receiver's error page may echo any of them."""
    parts = urlsplit(target)
    found = [target, *(value for _key, value in parse_qsl(parts.query)), parts.password or ""]
    found += [segment for segment in parts.path.split("/") if len(segment) >= 12]
    return [f for f in found if len(f) >= 6]


class WebhookProvider(Provider):
    kind = "webhook"

    def __init__(self, webhooks: Mapping[str, PagingWebhook], http: httpx.AsyncClient,
                 environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.webhooks = webhooks
        self.http = http
        self.environ = os.environ if environ is None else environ
        self.clock = clock

    async def send(self, name: str, notice: Notice) -> Delivery:
        hook = self.webhooks.get(name)
        if hook is None:
            known = ", ".join(f"`{w}`" for w in self.webhooks) or "(none configured)"
            raise PageRejected(f"No webhook `{name}` in paging.webhooks (known: {known}).")
        target = _http.configured(lambda: hook.url.reveal(self.environ, where=f"paging.webhooks.{name}.url"))
        secret = _http.configured(lambda: hook.secret.reveal(self.environ, where=f"paging.webhooks.{name}.secret"))
        if not target.startswith(("http://", "https://")):
            raise PageRejected(f"paging.webhooks.{name}.url is not an http(s) URL.")
        delivery = delivery_id(name, notice)
        timestamp = int(self.clock())
        body = payload(notice, delivery, timestamp)
        headers = {"X-Opsbot-Timestamp": str(timestamp), "X-Opsbot-Delivery": delivery,
                   "X-Opsbot-Signature": signature(secret, body)}
        # The URL itself may carry a token: it is a secret too, kept out of every message.
        response = await _http.post(self.http, target, what=f"Webhook {name}", timeout=hook.timeout,
                                    secrets=[secret, *url_secrets(target)], content=body, headers=headers)
        _http.log.info("Webhook %s accepted %s %s (HTTP %s)", name, notice.action, notice.dedup_key,
                       response.status_code)
        return Delivery(delivery, f"Webhook {name}: HTTP {response.status_code}")
