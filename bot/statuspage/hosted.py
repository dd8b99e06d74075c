"""Atlassian Statuspage's REST API (v1): incidents and component statuses, `Authorization: OAuth <key>`.

A 5xx, 420/429 or no answer is transient (the publishing job retries it); other refusals are final. The API
key never appears in an error's text."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from bot.config.status_page import ComponentStatus, Hosted
from bot.errors import DependencyDown, ProviderError

TIMEOUT = 10.0


class HostedUnavailable(DependencyDown):
    """Statuspage did not answer, or asked us to slow down: worth another attempt."""


@dataclass(frozen=True)
class HostedIncident:
    id: str
    status: str


class Statuspage:
    def __init__(self, config: Hosted, http: httpx.AsyncClient, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.http = http
        self.environ = os.environ if environ is None else environ

    def _key(self) -> str:
        try:
            return self.config.api_key.reveal(self.environ, where="status_page.hosted.api_key")
        except Exception as exc:  # a missing variable: said by name, never by value
            raise ProviderError(f"Statuspage is not configured: {exc}") from None

    def _url(self, path: str) -> str:
        return f"{self.config.api_url.rstrip('/')}/pages/{quote(self.config.page_id, safe='')}{path}"

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        key = self._key()
        try:
            response = await self.http.request(method, self._url(path), json=body, timeout=TIMEOUT,
                                               headers={"Authorization": f"OAuth {key}",
                                                        "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise HostedUnavailable(f"Statuspage did not answer ({type(exc).__name__})") from None
        if response.status_code in (420, 429) or response.status_code >= 500:
            raise HostedUnavailable(f"Statuspage answered {response.status_code}")
        if response.status_code >= 400:
            raise ProviderError(f"Statuspage refused {method} {path.split('/')[1]}: {response.status_code} "
                                f"{_error(response).replace(key, '***')}")
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"Statuspage answered {response.status_code} without JSON") from None

    def _components(self, components: Mapping[str, ComponentStatus]) -> dict[str, str]:
        ids = {name.lower(): cid for name, cid in self.config.components.items()}
        return {ids[name.lower()]: state for name, state in components.items() if name.lower() in ids}

    async def create_incident(self, *, name: str, status: str, body: str,
                              components: Mapping[str, ComponentStatus]) -> HostedIncident:
        mapped = self._components(components)
        answer = await self._call("POST", "/incidents", {"incident": {
            "name": name[:255], "status": status, "body": body, "component_ids": list(mapped),
            "components": mapped, "deliver_notifications": self.config.deliver_notifications}})
        return _incident(answer)

    async def update_incident(self, incident_id: str, *, status: str, body: str,
                              components: Mapping[str, ComponentStatus]) -> HostedIncident:
        mapped = self._components(components)
        answer = await self._call("PATCH", f"/incidents/{quote(incident_id, safe='')}", {"incident": {
            "status": status, "body": body, "component_ids": list(mapped), "components": mapped,
            "deliver_notifications": self.config.deliver_notifications}})
        return _incident(answer)

    async def set_component(self, name: str, status: ComponentStatus) -> bool:
        """False when the component is not mirrored (no id in `hosted.components`)."""
        cid = self._components({name: status})
        if not cid:
            return False
        [component_id] = cid
        await self._call("PATCH", f"/components/{quote(component_id, safe='')}", {"component": {"status": status}})
        return True


def _incident(answer: Any) -> HostedIncident:
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        raise ProviderError("Statuspage answered without an incident id")
    return HostedIncident(answer["id"], str(answer.get("status") or ""))


def _error(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        error = data.get("error") or data.get("message") or ""
        return (", ".join(map(str, error)) if isinstance(error, list) else str(error))[:200]
    return ""
