"""`pagerduty:<service>` — PagerDuty Events API v2, and PagerDuty's signed v3 webhooks coming back.

Events: `POST {events_url}/v2/enqueue` with the service's integration key as `routing_key` in the body.
A trigger opens (or adds to) the alert whose `dedup_key` is the subject's; acknowledge and resolve name the
same key, so PagerDuty follows opsbot's state. 202 = accepted; 400 = invalid event (final); 429 and 5xx =
try again later.

Webhooks (v3): one event per POST, `X-PagerDuty-Signature: v1=<hex HMAC-SHA256(secret, raw body)>`, several
`v1=` values while a secret is being rotated; `X-Webhook-Id` is the same on PagerDuty's retries."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from bot.config.paging import PagerDuty, url
from bot.errors import InvalidInput
from bot.paging.providers import _http
from bot.paging.providers.base import Delivery, Notice, PageRejected, Provider, rank

SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_LIMIT = 1024


def severity(notice: Notice, mapping: Mapping[str, str]) -> str:
    """PagerDuty's payload.severity: the service's map, else critical when urgent, else error for the two
    most severe levels and warning below them (error when opsbot cannot tell)."""
    if notice.severity in mapping:
        return mapping[notice.severity]
    if notice.urgent:
        return "critical"
    if notice.severity.lower() in SEVERITIES:
        return notice.severity.lower()
    level = rank(notice)
    return "warning" if level is not None and level >= 2 else "error"


def event(routing_key: str, notice: Notice, level: str) -> dict[str, Any]:
    """The Events API v2 body for `notice`."""
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": notice.action, "dedup_key": notice.dedup_key}
    if notice.action != "trigger":
        return body
    summary = " ".join(notice.title.split()) or notice.subject
    details = {"severity": notice.severity, **notice.details}
    if notice.text:
        details["text"] = notice.text
    if notice.link:
        details["slack"] = notice.link
    body["payload"] = {
        "summary": summary if len(summary) <= SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 1] + "…",
        "source": "opsbot", "severity": level, "class": notice.subject.partition(":")[0] or "opsbot",
        "custom_details": details,
    }
    body["client"] = "opsbot"
    if notice.link:
        body["client_url"] = notice.link
        body["links"] = [{"href": notice.link, "text": "Slack channel"}]
    return body


class PagerDutyProvider(Provider):
    kind = "pagerduty"

    def __init__(self, config: PagerDuty, http: httpx.AsyncClient, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.http = http
        self.environ = os.environ if environ is None else environ

    async def send(self, name: str, notice: Notice) -> Delivery:
        service = self.config.services.get(name)
        if service is None:
            known = ", ".join(f"`{s}`" for s in self.config.services) or "(none configured)"
            raise PageRejected(f"No PagerDuty service `{name}` in paging.pagerduty.services (known: {known}).")
        where = f"paging.pagerduty.services.{name}.routing_key"
        key = _http.configured(lambda: service.routing_key.reveal(self.environ, where=where))
        base = _http.configured(lambda: url(self.config.events_url, self.environ, where="paging.pagerduty.events_url"))
        body = event(key, notice, severity(notice, service.severity))
        response = await _http.post(self.http, f"{base}/v2/enqueue", what=f"PagerDuty (service {name})",
                                    timeout=self.config.timeout, secrets=[key], body=body)
        answer = _http.json_answer(response)
        dedup_key = str(answer.get("dedup_key") or notice.dedup_key)
        _http.log.info("PagerDuty accepted %s %s for service %s", notice.action, dedup_key, name)
        return Delivery(dedup_key, f"PagerDuty: {answer.get('message') or 'accepted'} ({notice.action})")


# -- v3 webhooks -----------------------------------------------------------------------------------------

def sign(secret: str, body: bytes) -> str:
    """One `v1=` signature of `body` as PagerDuty writes it."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Whether any `v1=` value of X-PagerDuty-Signature is the HMAC of the raw body (constant-time compare)."""
    if not secret or not header:
        return False
    expected = sign(secret, body)
    matched = False
    for part in header.split(","):
        candidate = part.strip()
        if candidate.startswith("v1="):
            matched |= hmac.compare_digest(expected, "v1=" + candidate[3:].lower())
    return matched


@dataclass(frozen=True)
class PagerDutyEvent:
    id: str
    kind: str  # "acknowledged", "resolved", "triggered", … (event_type without "incident."), else event_type
    event_type: str
    dedup_key: str | None  # data.incident_key: opsbot's dedup_key for incidents opened through Events v2
    agent: str | None  # who did it in PagerDuty (agent.summary), None for PagerDuty itself
    occurred_at: datetime | None
    incident: str | None = None  # PagerDuty's incident id
    url: str | None = None  # the incident's page in PagerDuty


def parse_webhook(body: bytes) -> PagerDutyEvent:
    """The event in a v3 webhook envelope `{"event": {…}}`; InvalidInput when it is not one."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("Not a PagerDuty webhook: the body is not JSON.") from None
    item = envelope.get("event") if isinstance(envelope, dict) else None
    if not isinstance(item, dict) or not isinstance(item.get("event_type"), str) or not item.get("id"):
        raise InvalidInput("Not a PagerDuty v3 webhook: expected {\"event\": {\"id\", \"event_type\", …}}.")
    event_type: str = item["event_type"]
    data = item.get("data")
    incident: dict[str, Any] = data if isinstance(data, dict) and data.get("type") == "incident" else {}
    agent = item.get("agent")
    return PagerDutyEvent(
        id=str(item["id"]),
        kind=event_type.removeprefix("incident.") if event_type.startswith("incident.") else event_type,
        event_type=event_type,
        dedup_key=_text(incident.get("incident_key")),
        agent=_text(agent.get("summary")) if isinstance(agent, dict) else None,
        occurred_at=_time(item.get("occurred_at")),
        incident=_text(incident.get("id")),
        url=_text(incident.get("html_url")),
    )


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
