"""A PagerDuty stand-in on loopback: Events API v2 (`POST /v2/enqueue`) with its documented answers, and
v3 webhooks sent back to opsbot the way PagerDuty signs them.

    async with PagerDutyServer() as pd:
        pd.url                                  # paging.pagerduty.events_url
        pd.state.events / pd.state.alerts       # what arrived; one alert per dedup key, with its status
        pd.state.fail(2, status=500)            # the next two calls fail
        await pd.send_webhook(url, secret, "incident.acknowledged", "opsbot-incident-1", "Alice")

Answers: 202 `{"status":"success","message":"Event processed","dedup_key":…}`; 400 `{"status":"invalid
event","message":"Event object is invalid","errors":[…]}`; 429 / 5xx when told to fail. As PagerDuty does,
an acknowledge or resolve for a key with no open alert (or from another routing key) is accepted and dropped."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.emulator.localserver import LocalServer

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class Event:
    action: str
    dedup_key: str
    summary: str
    routing_key: str
    body: dict[str, Any]
    dropped: bool = False  # an acknowledge/resolve that matched no open alert


@dataclass
class Alert:
    dedup_key: str
    routing_key: str
    summary: str
    severity: str
    status: str = "triggered"  # triggered | acknowledged | resolved
    number: int = 0
    events: list[Event] = field(default_factory=list)


@dataclass
class PagerDutyState:
    events: list[Event] = field(default_factory=list)  # accepted events (202), in order
    alerts: dict[str, Alert] = field(default_factory=dict)  # the latest alert per dedup key
    requests: int = 0  # every POST /v2/enqueue, failed ones included
    _faults: list[tuple[int, float | None]] = field(default_factory=list)

    def fail(self, times: int = 1, *, status: int = 500, retry_after: float | None = None) -> None:
        """The next `times` calls answer `status` (500, 502, 503, 429 with Retry-After…)."""
        self._faults += [(status, retry_after)] * times

    def alert(self, dedup_key: str) -> Alert | None:
        return self.alerts.get(dedup_key)

    def take_fault(self) -> tuple[int, float | None] | None:
        return self._faults.pop(0) if self._faults else None

    def apply(self, body: dict[str, Any]) -> Event:
        action, key, routing = body["event_action"], str(body.get("dedup_key") or uuid.uuid4().hex), body["routing_key"]
        current = self.alerts.get(key)
        open_alert = current if current and current.status != "resolved" and current.routing_key == routing else None
        if action == "trigger":
            payload = body["payload"]
            if open_alert is None:
                open_alert = Alert(key, routing, payload["summary"], payload["severity"], number=len(self.alerts) + 1)
                self.alerts[key] = open_alert
            event = Event(action, key, payload["summary"], routing, body)
        else:
            event = Event(action, key, open_alert.summary if open_alert else "", routing, body,
                          dropped=open_alert is None)
            if open_alert is not None:
                open_alert.status = "acknowledged" if action == "acknowledge" else "resolved"
        if open_alert is not None:
            open_alert.events.append(event)
        self.events.append(event)
        return event


def problems(body: Any) -> list[str]:
    """What PagerDuty would say is wrong with an event (empty = valid)."""
    if not isinstance(body, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup_key = body.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank (required to acknowledge or resolve)")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing (required for trigger)"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors.append("'payload.summary' is missing or blank")
        elif len(summary) > 1024:
            errors.append("'payload.summary' is longer than 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"].strip():
            errors.append("'payload.source' is missing or blank")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict | str | list):
            errors.append("'payload.custom_details' must be an object")
        for link in body.get("links") or []:
            if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                errors.append("'links' entries need an 'href'")
    return errors


def build_app(state: PagerDutyState) -> Starlette:
    async def enqueue(request: Request) -> JSONResponse:
        state.requests += 1
        fault = state.take_fault()
        if fault is not None:
            status, retry_after = fault
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            message = "Too Many Requests" if status == 429 else "Internal Server Error"
            return JSONResponse({"status": "error", "message": message, "errors": [message]}, status_code=status,
                                headers=headers)
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        errors = problems(body) if body is not None else ["Event object is not valid JSON"]
        if errors:
            return JSONResponse({"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                                status_code=400)
        event = state.apply(body)
        return JSONResponse({"status": "success", "message": "Event processed", "dedup_key": event.dedup_key},
                            status_code=202)

    return Starlette(routes=[Route("/v2/enqueue", enqueue, methods=["POST"])])


def sign(secrets: str | Sequence[str], body: bytes) -> str:
    """X-PagerDuty-Signature: one `v1=` per secret (two while a secret is being rotated)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return ",".join("v1=" + hmac.new(k.encode(), body, hashlib.sha256).hexdigest() for k in keys)


def webhook_envelope(event_type: str, dedup_key: str, agent_name: str | None, *, alert: Alert | None = None,
                     event_id: str | None = None, occurred_at: datetime | None = None) -> dict[str, Any]:
    """A v3 webhook body for an incident event, shaped like PagerDuty's."""
    status = event_type.removeprefix("incident.") if event_type in (
        "incident.triggered", "incident.acknowledged", "incident.resolved") else "triggered"
    incident_id = "Q" + hashlib.sha1(dedup_key.encode()).hexdigest()[:12].upper()
    base = "https://acme.pagerduty.com"
    agent = None if agent_name is None else {
        "html_url": f"{base}/users/PUSER01", "id": "PUSER01", "self": "https://api.pagerduty.com/users/PUSER01",
        "summary": agent_name, "type": "user_reference"}
    when = (occurred_at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"event": {
        "id": event_id or "01" + uuid.uuid4().hex[:24].upper(),
        "event_type": event_type, "resource_type": "incident", "occurred_at": when, "agent": agent, "client": None,
        "data": {
            "id": incident_id, "type": "incident", "self": f"https://api.pagerduty.com/incidents/{incident_id}",
            "html_url": f"{base}/incidents/{incident_id}", "number": alert.number if alert else 1,
            "status": status, "incident_key": dedup_key, "created_at": when,
            "title": alert.summary if alert else dedup_key,
            "service": {"html_url": f"{base}/services/PSERVIC", "id": "PSERVIC",
                        "self": "https://api.pagerduty.com/services/PSERVIC", "summary": "opsbot",
                        "type": "service_reference"},
            "assignees": [], "escalation_policy": {"id": "PPOLICY", "type": "escalation_policy_reference",
                                                   "summary": "Default"},
            "teams": [], "priority": None, "urgency": "high", "conference_bridge": None,
            "resolve_reason": None,
        },
    }}


class PagerDutyServer:
    def __init__(self, state: PagerDutyState | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state or PagerDutyState()
        self._server = LocalServer(build_app(self.state), host=host, port=port)

    @property
    def url(self) -> str:
        return self._server.url

    async def start(self) -> PagerDutyServer:
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop()

    async def __aenter__(self) -> PagerDutyServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def send_webhook(self, url: str, secret: str | Sequence[str], event_type: str, dedup_key: str,
                           agent_name: str | None = "Alice Example", *, webhook_id: str | None = None,
                           signature: str | None = None, http: httpx.AsyncClient | None = None) -> httpx.Response:
        """POST a signed v3 webhook about `dedup_key`'s incident to `url` (opsbot's /webhooks/pagerduty), as
        PagerDuty does when someone acknowledges or resolves it there; the stand-in's alert follows. Pass the
        same `webhook_id` to replay a delivery; `signature` overrides the computed header (a forgery); `http`
        posts through that client (the shell's in-process opsbot) instead of a new one."""
        alert = self.state.alerts.get(dedup_key)
        if alert is not None and alert.status != "resolved" and event_type in ("incident.acknowledged",
                                                                                "incident.resolved"):
            alert.status = event_type.removeprefix("incident.")
        body = json.dumps(webhook_envelope(event_type, dedup_key, agent_name, alert=alert)).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "PagerDuty-Webhook/V3.0",
                   "X-Webhook-Id": webhook_id or str(uuid.uuid4()), "X-Webhook-Subscription": "PSUBSCR",
                   "X-PagerDuty-Signature": signature if signature is not None else sign(secret, body)}
        if http is not None:
            return await http.post(url, content=body, headers=headers)
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.post(url, content=body, headers=headers)
