"""An Atlassian Statuspage stand-in on loopback: the REST API v1's incidents and components.

    async with StatuspageServer(page_id="pg1", api_key="…", components={"cmp1": "API"}) as sp:
        sp.url                                    # status_page.hosted.api_url
        sp.state.incidents, sp.state.components   # by id
        sp.state.requests                         # (method, path, body) of every authenticated call
        sp.state.fail(2, status=503)              # the next calls answer that

`Authorization: OAuth <key>` (or `?api_key=`) or 401; an unknown page, incident or component 404; a status
Statuspage does not know 422. `POST /pages/{page}/incidents` answers 201 with the incident (its
`incident_updates` newest first, like the API), `PATCH|PUT …/incidents/{id}` 200 and adds an update when the
status or body is given; `GET …/components` lists, `PATCH|PUT …/components/{id}` sets a status."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.emulator.localserver import LocalServer

INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved", "postmortem")
COMPONENT_STATUSES = ("operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _id() -> str:
    return secrets.token_hex(6)


@dataclass
class StatuspageState:
    page_id: str = "pg-stand-in"
    api_key: str = "sp-stand-in-key"
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    _faults: list[int] = field(default_factory=list)

    def fail(self, times: int = 1, *, status: int = 500) -> None:
        self._faults += [status] * times

    def add_component(self, component_id: str, name: str, status: str = "operational") -> None:
        self.components[component_id] = {"id": component_id, "page_id": self.page_id, "group_id": None,
                                         "name": name, "description": None, "status": status, "position": 1,
                                         "showcase": True, "created_at": _now(), "updated_at": _now()}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_app(state: StatuspageState) -> Starlette:
    async def guard(request: Request) -> tuple[dict[str, Any], JSONResponse | None]:
        if state._faults:
            status = state._faults.pop(0)
            return {}, _error(status, "Rate limit exceeded" if status in (420, 429) else "Internal server error")
        auth = request.headers.get("authorization", "")
        if auth != f"OAuth {state.api_key}" and request.query_params.get("api_key") != state.api_key:
            return {}, _error(401, "Could not authenticate")
        if request.path_params.get("page_id") != state.page_id:
            return {}, _error(404, "The requested resource could not be found.")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return {}, _error(400, "Could not parse the request body as JSON")
        if not isinstance(body, dict):
            return {}, _error(400, "The request body must be a JSON object")
        state.requests.append((request.method, request.url.path, body))
        return body, None

    def components_of(fields: dict[str, Any]) -> tuple[dict[str, str], JSONResponse | None]:
        wanted = fields.get("components") or {}
        if not isinstance(wanted, dict):
            return {}, _error(422, "components must be a map of component id to status")
        for cid, status in wanted.items():
            if cid not in state.components:
                return {}, _error(422, f"Component {cid} does not exist")
            if status not in COMPONENT_STATUSES:
                return {}, _error(422, f"Component status {status} is not valid")
        for cid in fields.get("component_ids") or []:
            if cid not in state.components:
                return {}, _error(422, f"Component {cid} does not exist")
        return wanted, None

    def add_update(incident: dict[str, Any], status: str, body: str, affected: dict[str, str]) -> None:
        for cid, new in affected.items():
            state.components[cid]["status"] = new
        incident["incident_updates"].insert(0, {
            "id": _id(), "incident_id": incident["id"], "status": status, "body": body, "created_at": _now(),
            "updated_at": _now(), "display_at": _now(), "deliver_notifications": True,
            "affected_components": [{"code": cid, "new_status": s} for cid, s in affected.items()] or None})
        incident["components"] = [state.components[c] for c in sorted(set(affected) | {
            c["id"] for c in incident["components"]})]

    async def create(request: Request) -> JSONResponse:
        body, refusal = await guard(request)
        if refusal is not None:
            return refusal
        fields = body.get("incident")
        if not isinstance(fields, dict) or not isinstance(fields.get("name"), str) or not fields["name"].strip():
            return _error(422, "Name can't be blank")
        status = fields.get("status", "investigating")
        if status not in INCIDENT_STATUSES:
            return _error(422, f"Status {status} is not valid")
        affected, refusal = components_of(fields)
        if refusal is not None:
            return refusal
        incident: dict[str, Any] = {
            "id": _id(), "page_id": state.page_id, "name": fields["name"], "status": status,
            "impact": fields.get("impact_override") or "minor", "created_at": _now(), "updated_at": _now(),
            "monitoring_at": _now() if status == "monitoring" else None,
            "resolved_at": _now() if status == "resolved" else None, "shortlink": "https://stspg.io/x",
            "started_at": _now(), "metadata": fields.get("metadata") or {}, "incident_updates": [],
            "components": []}
        add_update(incident, status, str(fields.get("body") or ""), affected)
        state.incidents[incident["id"]] = incident
        return JSONResponse(incident, status_code=201)

    async def change(request: Request) -> JSONResponse:
        body, refusal = await guard(request)
        if refusal is not None:
            return refusal
        incident = state.incidents.get(request.path_params["incident_id"])
        if incident is None:
            return _error(404, "The requested resource could not be found.")
        fields = body.get("incident")
        if not isinstance(fields, dict):
            return _error(400, "incident is missing")
        status = fields.get("status", incident["status"])
        if status not in INCIDENT_STATUSES:
            return _error(422, f"Status {status} is not valid")
        affected, refusal = components_of(fields)
        if refusal is not None:
            return refusal
        if "name" in fields:
            incident["name"] = fields["name"]
        if "status" in fields or "body" in fields:
            add_update(incident, status, str(fields.get("body") or ""), affected)
        incident["status"], incident["updated_at"] = status, _now()
        if status == "resolved" and incident["resolved_at"] is None:
            incident["resolved_at"] = _now()
        return JSONResponse(incident)

    async def list_components(request: Request) -> JSONResponse:
        _body, refusal = await guard(request)
        if refusal is not None:
            return refusal
        return JSONResponse(list(state.components.values()))

    async def set_component(request: Request) -> JSONResponse:
        body, refusal = await guard(request)
        if refusal is not None:
            return refusal
        component = state.components.get(request.path_params["component_id"])
        if component is None:
            return _error(404, "The requested resource could not be found.")
        fields = body.get("component")
        if not isinstance(fields, dict):
            return _error(400, "component is missing")
        status = fields.get("status", component["status"])
        if status not in COMPONENT_STATUSES:
            return _error(422, f"Status {status} is not valid")
        component["status"], component["updated_at"] = status, _now()
        return JSONResponse(component)

    base = "/v1/pages/{page_id}"
    return Starlette(routes=[
        Route(f"{base}/incidents", create, methods=["POST"]),
        Route(f"{base}/incidents/{{incident_id}}", change, methods=["PATCH", "PUT"]),
        Route(f"{base}/components", list_components, methods=["GET"]),
        Route(f"{base}/components/{{component_id}}", set_component, methods=["PATCH", "PUT"]),
    ])


class StatuspageServer:
    def __init__(self, state: StatuspageState | None = None, *, page_id: str | None = None,
                 api_key: str | None = None, components: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state or StatuspageState()
        if page_id is not None:
            self.state.page_id = page_id
        if api_key is not None:
            self.state.api_key = api_key
        for cid, name in (components or {}).items():
            self.state.add_component(cid, name)
        self._server = LocalServer(build_app(self.state), host=host, port=port)

    @property
    def url(self) -> str:
        """The API base (status_page.hosted.api_url)."""
        return f"{self._server.url}/v1"

    async def start(self) -> StatuspageServer:
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop()

    async def __aenter__(self) -> StatuspageServer:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
