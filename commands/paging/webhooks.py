"""`POST /webhooks/pagerduty`: PagerDuty's signed v3 webhooks. An acknowledgement or resolution made in
PagerDuty is reflected in opsbot (timeline, Slack) by a job; the answer (202) leaves at once.

Checked in this order: the body's size (413), the signature against paging.pagerduty.webhook_secret (401,
also when no secret is set up), the envelope (400), then X-Webhook-Id, recorded once (WebhookDelivery): a
delivery PagerDuty sends again is answered 202 and does nothing. Events about keys that are not opsbot's, and
event types other than acknowledged/resolved, are answered 202 and ignored. An alert's page acknowledged in
PagerDuty acknowledges the alert (a metric alert resolves by its data, not by PagerDuty)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot import bodies, idempotency
from bot.errors import ConfigError, DependencyDown, InvalidInput
from bot.paging import subject_of
from bot.paging.providers.pagerduty import parse_webhook, verify_signature

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)
MAX_BODY = 256 * 1024
JOB = "paging.pagerduty"
ALERT_JOB = "paging.pagerduty_alert"
HANDLED = ("acknowledged", "resolved")


def _secret(deps: Deps) -> str | None:
    pagerduty = deps.config.paging.pagerduty
    if pagerduty is None or pagerduty.webhook_secret is None:
        return None
    try:
        return pagerduty.webhook_secret.reveal(where="paging.pagerduty.webhook_secret")
    except ConfigError:
        log.warning("paging.pagerduty.webhook_secret names an environment variable that is not set")
        return None


def _answer(status: str, code: int = 202) -> JSONResponse:
    return JSONResponse({"status": status}, status_code=code)


async def pagerduty(request: Request, deps: Deps) -> Response:
    try:
        body = await bodies.read_body(request, limit=MAX_BODY)
    except bodies.TooLarge as exc:
        return bodies.too_large(exc)
    secret = _secret(deps)
    if secret is None or not verify_signature(secret, body, request.headers.get("x-pagerduty-signature")):
        return JSONResponse({"error": "invalid or missing X-PagerDuty-Signature"}, status_code=401)
    try:
        event = parse_webhook(body)
    except InvalidInput as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    key = event.dedup_key or ""
    subject = subject_of(key)
    incident = subject is not None and subject.startswith("incident:")
    alert = key.startswith("opsbot-alert-") and event.kind == "acknowledged"  # an alert resolves by its data
    if event.kind not in HANDLED or not (incident or alert):
        return _answer("ignored")
    delivery = (request.headers.get("x-webhook-id") or event.id)[:255]
    try:
        if not await idempotency.first_delivery(deps.db, delivery, source="pagerduty", clock=deps.clock):
            return _answer("duplicate")
    except DependencyDown:
        return JSONResponse({"error": "opsbot's database is unreachable; PagerDuty retries"}, status_code=503)
    try:
        if incident and subject is not None:
            await deps.queue.defer(JOB, {"incident_id": int(subject.partition(":")[2]), "kind": event.kind,
                                         "agent": event.agent, "url": event.url}, once=f"pagerduty:{delivery}")
        else:
            await deps.queue.defer(ALERT_JOB, {"dedup_key": key, "agent": event.agent}, once=f"pagerduty:{delivery}")
    except DependencyDown:  # not stored: forget the delivery, so PagerDuty's retry is handled
        await idempotency.forget_delivery(deps.db, delivery)
        return JSONResponse({"error": "opsbot is restarting; PagerDuty retries"}, status_code=503)
    return _answer("accepted")
