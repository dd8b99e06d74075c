"""A stand-in for GitHub's Issues REST API (POST/GET /repos/{owner}/{repo}/issues[/{n}]) for tests and local runs.

Answers the documented shapes: 201 with the issue (`number`, `html_url`, `url`, `state`…), 401 for a wrong
token, 404 for an unknown repository or issue, 422 for a missing title. `fail_next` answers the next requests
with 503 (the tracker down); `close(n)` closes an issue as a person would on github.com."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DOCS = "https://docs.github.com/rest/issues/issues"


class GitHubIssues:
    def __init__(self, *, repo: str = "acme/ops", token: str = "ghp-test-token") -> None:
        self.repo = repo
        self.token = token
        self.issues: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.fail_next = 0

    def close(self, number: int, reason: str = "completed") -> None:
        self.issues[number].update(state="closed", state_reason=reason)

    def _error(self, message: str, status: int) -> Response:
        return JSONResponse({"message": message, "documentation_url": DOCS, "status": str(status)},
                            status_code=status)

    def _check(self, request: Request) -> Response | None:
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"message": "Service Unavailable"}, status_code=503)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._error("Bad credentials", 401)
        if f"{request.path_params['owner']}/{request.path_params['repo']}" != self.repo:
            return self._error("Not Found", 404)
        return None

    def app(self) -> Starlette:
        async def create(request: Request) -> Response:
            body = await request.json() if await request.body() else {}
            self.requests.append(("POST", request.url.path, body))
            problem = self._check(request)
            if problem is not None:
                return problem
            if not isinstance(body, dict) or not body.get("title"):
                return JSONResponse({"message": "Validation Failed", "errors": [
                    {"resource": "Issue", "code": "missing_field", "field": "title"}], "documentation_url": DOCS,
                    "status": "422"}, status_code=422)
            number = len(self.issues) + 1
            api = str(request.base_url).rstrip("/")
            issue = {"id": 1000 + number, "number": number, "state": "open", "state_reason": None,
                     "title": str(body["title"]), "body": body.get("body"),
                     "labels": [{"name": name} for name in body.get("labels") or []],
                     "assignees": [{"login": login} for login in body.get("assignees") or []],
                     "url": f"{api}/repos/{self.repo}/issues/{number}",
                     "html_url": f"https://github.com/{self.repo}/issues/{number}"}
            self.issues[number] = issue
            return JSONResponse(issue, status_code=201)

        async def get(request: Request) -> Response:
            self.requests.append(("GET", request.url.path, None))
            problem = self._check(request)
            if problem is not None:
                return problem
            issue = self.issues.get(int(request.path_params["number"]))
            return JSONResponse(issue) if issue else self._error("Not Found", 404)

        return Starlette(routes=[
            Route("/repos/{owner}/{repo}/issues", create, methods=["POST"]),
            Route("/repos/{owner}/{repo}/issues/{number:int}", get, methods=["GET"]),
        ])
