"""Issue trackers a follow-up becomes an issue in: GitHub Issues (REST) and Jira Cloud (REST v3).

One small Protocol, `IssueTracker`: `create` an issue, read whether it is `closed`. A tracker that does not
answer (a connection error, 5xx, 429) raises DependencyDown, which the job retries; a refusal (401, 404,
422, 400) raises ProviderError, final at once. Neither message ever carries the token."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from bot.config.incidents import GitHubTracker, JiraTracker, Tracker
from bot.errors import DependencyDown, ProviderError


@dataclass(frozen=True)
class Issue:
    key: str  # GitHub: the issue number; Jira: the issue key (OPS-12)
    url: str  # where a person opens it
    state: str  # open | closed (GitHub state) or new | indeterminate | done (Jira status category)
    closed: bool = False


class IssueTracker(Protocol):
    name: str

    async def create(self, *, title: str, body: str) -> Issue: ...

    async def get(self, key: str) -> Issue: ...


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:120].strip()
    if isinstance(data, dict):
        messages = data.get("errorMessages") or []
        errors = data.get("errors")
        if isinstance(errors, dict) and errors:
            messages = [*messages, *(f"{k}: {v}" for k, v in errors.items())]
        if isinstance(data.get("message"), str):
            messages = [data["message"], *messages]
        return "; ".join(str(m) for m in messages)[:200]
    return ""


async def _call(label: str, request: Any) -> httpx.Response:
    try:
        response: httpx.Response = await request
    except httpx.HTTPError as exc:
        raise DependencyDown(f"{label} did not answer ({type(exc).__name__})") from None
    if response.status_code == 429 or response.status_code >= 500:
        raise DependencyDown(f"{label} answered {response.status_code}; opsbot tries again")
    if response.status_code >= 400:
        raise ProviderError(f"{label} refused: {response.status_code} {_reason(response)}".strip())
    return response


class GitHubIssues:
    name = "github"

    def __init__(self, config: GitHubTracker, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.label = f"GitHub ({config.repo})"

    def _headers(self) -> dict[str, str]:
        token = self.config.token.reveal(where="incidents.tracker.github.token")
        return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}

    def _url(self, tail: str) -> str:
        base = self.config.api_url.reveal(where="incidents.tracker.github.api_url").rstrip("/")
        return f"{base}/repos/{self.config.repo}/issues{tail}"

    @staticmethod
    def _issue(data: dict[str, Any]) -> Issue:
        state = str(data.get("state") or "open")
        return Issue(key=str(data["number"]), url=str(data.get("html_url") or data.get("url") or ""), state=state,
                     closed=state == "closed")

    async def create(self, *, title: str, body: str) -> Issue:
        payload: dict[str, Any] = {"title": title, "body": body}
        if self.config.labels:
            payload["labels"] = list(self.config.labels)
        response = await _call(self.label, self.http.post(self._url(""), json=payload, headers=self._headers()))
        return self._issue(response.json())

    async def get(self, key: str) -> Issue:
        response = await _call(self.label, self.http.get(self._url(f"/{key}"), headers=self._headers()))
        return self._issue(response.json())


class JiraIssues:
    name = "jira"

    def __init__(self, config: JiraTracker, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.label = f"Jira ({config.project})"

    def _base(self) -> str:
        return self.config.url.reveal(where="incidents.tracker.jira.url").rstrip("/")

    def _headers(self) -> dict[str, str]:
        token = self.config.token.reveal(where="incidents.tracker.jira.token")
        basic = base64.b64encode(f"{self.config.email}:{token}".encode()).decode()
        return {"Authorization": f"Basic {basic}", "Accept": "application/json"}

    async def create(self, *, title: str, body: str) -> Issue:
        fields = {"project": {"key": self.config.project}, "issuetype": {"name": self.config.issue_type},
                  "summary": title[:255],
                  "description": {"type": "doc", "version": 1, "content": [
                      {"type": "paragraph", "content": [{"type": "text", "text": body}]}]}}
        response = await _call(self.label, self.http.post(f"{self._base()}/rest/api/3/issue",
                                                          json={"fields": fields}, headers=self._headers()))
        key = str(response.json()["key"])
        return Issue(key=key, url=f"{self._base()}/browse/{key}", state="new")

    async def get(self, key: str) -> Issue:
        response = await _call(self.label, self.http.get(f"{self._base()}/rest/api/3/issue/{key}",
                                                         params={"fields": "status"}, headers=self._headers()))
        status = (response.json().get("fields") or {}).get("status") or {}
        category = str((status.get("statusCategory") or {}).get("key") or "new")
        return Issue(key=key, url=f"{self._base()}/browse/{key}", state=category, closed=category == "done")


def tracker_for(config: Tracker | None, http: httpx.AsyncClient) -> IssueTracker | None:
    if config is None:
        return None
    if config.github is not None:
        return GitHubIssues(config.github, http)
    if config.jira is not None:
        return JiraIssues(config.jira, http)
    return None
