"""An Opsgenie stand-in on loopback: the Alert API's create, acknowledge and close, with GenieKey auth.

    async with OpsgenieServer(api_key="…") as og:
        og.url                                   # paging.opsgenie.api_url
        og.state.alerts, og.state.requests       # alerts by id; every accepted request with its outcome
        og.state.fail(1, status=503)

`POST /v2/alerts` and `POST /v2/alerts/{identifier}/acknowledge|close?identifierType=id|alias|tiny` answer
202 `{"result":"Request will be processed","took":…,"requestId":…}` and are processed at once (Opsgenie does
it asynchronously: `GET /v2/alerts/requests/{requestId}` tells the outcome, "Alert does not exist" included).
A create with the alias of an open alert updates that alert (its count) instead of making another."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.emulator.localserver import LocalServer

PRIORITIES = ("P1", "P2", "P3", "P4", "P5")


@dataclass
class OgAlert:
    id: str
    tiny_id: str
    alias: str
    message: str
    priority: str
    responders: list[dict[str, Any]]
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    status: str = "open"  # open | closed
    acknowledged: bool = False
    count: int = 1


@dataclass
class OgRequest:
    id: str
    action: str  # Create | Acknowledge | Close
    success: bool
    status: str  # "Created alert", "Acknowledged", "Closed", "Alert does not exist", …
    alias: str | None
    alert_id: str | None
    body: dict[str, Any]


@dataclass
class OpsgenieState:
    api_key: str = "og-stand-in-key"
    alerts: dict[str, OgAlert] = field(default_factory=dict)
    requests: list[OgRequest] = field(default_factory=list)
    calls: int = 0
    _faults: list[tuple[int, float | None]] = field(default_factory=list)

    def fail(self, times: int = 1, *, status: int = 500, retry_after: float | None = None) -> None:
        self._faults += [(status, retry_after)] * times

    def by_alias(self, alias: str) -> OgAlert | None:
        found = [a for a in self.alerts.values() if a.alias == alias]
        open_ = [a for a in found if a.status == "open"]
        pick = open_ or found
        return pick[-1] if pick else None

    def find(self, identifier: str, kind: str) -> OgAlert | None:
        if kind == "alias":
            return self.by_alias(identifier)
        if kind == "tiny":
            return next((a for a in self.alerts.values() if a.tiny_id == identifier), None)
        return self.alerts.get(identifier)


def _answer(status: int, message: str, extra: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message, **(extra or {}), "took": 0.001, "requestId": str(uuid.uuid4())},
                        status_code=status, headers=headers)


def build_app(state: OpsgenieState) -> Starlette:
    async def guard(request: Request) -> tuple[dict[str, Any] | None, JSONResponse | None]:
        state.calls += 1
        fault = state._faults.pop(0) if state._faults else None
        if fault is not None:
            status, retry_after = fault
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return None, _answer(status, "Rate limit exceeded" if status == 429 else "Internal Server Error",
                                 headers=headers)
        if request.headers.get("authorization", "") != f"GenieKey {state.api_key}":
            return None, _answer(401, "Could not authenticate")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return None, _answer(400, "Could not parse the request body as JSON")
        if not isinstance(body, dict):
            return None, _answer(400, "The request body must be a JSON object")
        return body, None

    def accepted(req: OgRequest) -> JSONResponse:
        state.requests.append(req)
        return JSONResponse({"result": "Request will be processed", "took": 0.002, "requestId": req.id},
                            status_code=202)

    async def create(request: Request) -> JSONResponse:
        body, refusal = await guard(request)
        if refusal is not None or body is None:
            return refusal or _answer(400, "bad request")
        errors: dict[str, str] = {}
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            errors["message"] = "Message can not be empty."
        elif len(message) > 130:
            errors["message"] = "Message can not be longer than 130 characters."
        priority = body.get("priority", "P3")
        if priority not in PRIORITIES:
            errors["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]"
        alias = body.get("alias")
        if alias is not None and (not isinstance(alias, str) or len(alias) > 512):
            errors["alias"] = "Alias can not be longer than 512 characters."
        responders = body.get("responders") or []
        if not isinstance(responders, list) or any(
                not isinstance(r, dict) or r.get("type") not in ("team", "user", "escalation", "schedule")
                or not (r.get("id") or r.get("name") or r.get("username")) for r in responders):
            errors["responders"] = "Responders need a type (team, user, escalation, schedule) and an id or name."
        if errors:
            return _answer(422, "Request body is not processable. Please check the errors.", {"errors": errors})
        request_id = str(uuid.uuid4())
        existing = state.by_alias(alias) if alias else None
        if existing is not None and existing.status == "open":
            existing.count += 1
            return accepted(OgRequest(request_id, "Create", True, "Alert already exists, count increased", alias,
                                      existing.id, body))
        alert_id = str(uuid.uuid4())
        alert = OgAlert(alert_id, str(len(state.alerts) + 1), alias or alert_id, str(message), str(priority),
                        responders, str(body.get("description") or ""), dict(body.get("details") or {}))
        state.alerts[alert_id] = alert
        return accepted(OgRequest(request_id, "Create", True, "Created alert", alert.alias, alert_id, body))

    async def change(request: Request) -> JSONResponse:
        body, refusal = await guard(request)
        if refusal is not None or body is None:
            return refusal or _answer(400, "bad request")
        kind = request.query_params.get("identifierType", "id")
        if kind not in ("id", "alias", "tiny"):
            return _answer(422, "Identifier type must be one of [id, alias, tiny]")
        verb = request.path_params["verb"]
        if verb not in ("acknowledge", "close"):
            return _answer(404, "Not found")
        identifier = request.path_params["identifier"]
        alert = state.find(identifier, kind)
        action = "Acknowledge" if verb == "acknowledge" else "Close"
        request_id = str(uuid.uuid4())
        if alert is None:
            return accepted(OgRequest(request_id, action, False, "Alert does not exist", identifier if kind == "alias"
                                      else None, None, body))
        if verb == "acknowledge":
            alert.acknowledged = True
        else:
            alert.status = "closed"
        return accepted(OgRequest(request_id, action, True, "Acknowledged" if verb == "acknowledge" else "Closed",
                                  alert.alias, alert.id, body))

    async def request_status(request: Request) -> JSONResponse:
        req = next((r for r in state.requests if r.id == request.path_params["request_id"]), None)
        if request.headers.get("authorization", "") != f"GenieKey {state.api_key}":
            return _answer(401, "Could not authenticate")
        if req is None:
            return _answer(404, "Request not found. It might not be processed, yet.")
        return JSONResponse({"data": {"success": req.success, "action": req.action, "isSuccess": req.success,
                                      "status": req.status, "alertId": req.alert_id or "", "alias": req.alias or ""},
                             "took": 0.001, "requestId": str(uuid.uuid4())})

    return Starlette(routes=[
        Route("/v2/alerts", create, methods=["POST"]),
        Route("/v2/alerts/requests/{request_id}", request_status, methods=["GET"]),
        Route("/v2/alerts/{identifier}/{verb:str}", change, methods=["POST"]),
    ])


class OpsgenieServer:
    def __init__(self, state: OpsgenieState | None = None, *, api_key: str | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state or OpsgenieState()
        if api_key is not None:
            self.state.api_key = api_key
        self._server = LocalServer(build_app(self.state), host=host, port=port)

    @property
    def url(self) -> str:
        return self._server.url

    async def start(self) -> OpsgenieServer:
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop()

    async def __aenter__(self) -> OpsgenieServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
