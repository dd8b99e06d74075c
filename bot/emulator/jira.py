"""A stand-in for Jira Cloud REST v3 issues (POST /rest/api/3/issue, GET /rest/api/3/issue/{key}?fields=status).

Basic auth `email:api_token`; 201 `{id, key, self}`; 400 `{errorMessages, errors}` for a missing summary or an
unknown project; 401 without the right credentials; 404 for an unknown issue. `fail_next` answers the next
requests with 503; `transition(key, "done")` moves an issue to a status category (new|indeterminate|done)."""

from __future__ import annotations

import base64
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CATEGORIES = {"new": (2, "To Do", "blue-gray"), "indeterminate": (4, "In Progress", "yellow"),
              "done": (3, "Done", "green")}


class Jira:
    def __init__(self, *, email: str = "bot@acme.test", token: str = "jira-test-token", project: str = "OPS") -> None:
        self.email = email
        self.token = token
        self.project = project
        self.issues: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.fail_next = 0

    def transition(self, key: str, category: str) -> None:
        self.issues[key]["category"] = category

    def _check(self, request: Request) -> Response | None:
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"errorMessages": ["Service Unavailable"]}, status_code=503)
        expected = "Basic " + base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Response("Client must be authenticated to access this resource.", status_code=401)
        return None

    def app(self) -> Starlette:
        async def create(request: Request) -> Response:
            body = await request.json() if await request.body() else {}
            self.requests.append(("POST", request.url.path, body))
            problem = self._check(request)
            if problem is not None:
                return problem
            fields = body.get("fields") if isinstance(body, dict) else None
            fields = fields if isinstance(fields, dict) else {}
            errors: dict[str, str] = {}
            if not fields.get("summary"):
                errors["summary"] = "You must specify a summary of the issue."
            if (fields.get("project") or {}).get("key") != self.project:
                errors["project"] = "valid project is required"
            if not (fields.get("issuetype") or {}).get("name"):
                errors["issuetype"] = "valid issue type is required"
            if errors:
                return JSONResponse({"errorMessages": [], "errors": errors}, status_code=400)
            number = 10000 + len(self.issues)
            key = f"{self.project}-{len(self.issues) + 1}"
            base = str(request.base_url).rstrip("/")
            self.issues[key] = {"id": str(number), "key": key, "fields": fields, "category": "new",
                                "self": f"{base}/rest/api/3/issue/{number}"}
            return JSONResponse({"id": str(number), "key": key, "self": f"{base}/rest/api/3/issue/{number}"},
                                status_code=201)

        async def get(request: Request) -> Response:
            self.requests.append(("GET", str(request.url.path) + "?" + request.url.query, None))
            problem = self._check(request)
            if problem is not None:
                return problem
            issue = self.issues.get(request.path_params["key"])
            if issue is None:
                return JSONResponse({"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                                     "errors": {}}, status_code=404)
            cat_id, cat_name, color = CATEGORIES[issue["category"]]
            base = str(request.base_url).rstrip("/")
            status = {"self": f"{base}/rest/api/3/status/{cat_id}", "description": "", "iconUrl": "",
                      "name": cat_name, "id": str(cat_id),
                      "statusCategory": {"self": f"{base}/rest/api/3/statuscategory/{cat_id}", "id": cat_id,
                                         "key": issue["category"], "colorName": color, "name": cat_name}}
            return JSONResponse({"id": issue["id"], "key": issue["key"], "self": issue["self"],
                                 "fields": {"status": status}})

        return Starlette(routes=[
            Route("/rest/api/3/issue", create, methods=["POST"]),
            Route("/rest/api/3/issue/{key}", get, methods=["GET"]),
        ])
