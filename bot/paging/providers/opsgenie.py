"""`opsgenie:<team>` — Opsgenie's Alert API: create, acknowledge and close, one alert per dedup key (alias).

`POST {api_url}/v2/alerts` with `Authorization: GenieKey <key>` (an API integration's key) creates the alert
for the team (responders by name); `POST /v2/alerts/<alias>/acknowledge|close?identifierType=alias` follows
opsbot's state. Opsgenie answers 202 with a `requestId` and processes the request asynchronously."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from bot.config.paging import Opsgenie, url
from bot.paging.providers import _http
from bot.paging.providers.base import Delivery, Notice, PageRejected, Provider, rank

MESSAGE_LIMIT = 130
DESCRIPTION_LIMIT = 15000
ENDPOINT = {"acknowledge": "acknowledge", "resolve": "close"}


def priority(notice: Notice) -> str:
    """P1 when urgent, else P1..P5 by rank (P3 when opsbot cannot tell)."""
    if notice.urgent:
        return "P1"
    level = rank(notice)
    return f"P{min(level + 1, 5)}" if level is not None else "P3"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def alert(team: str, notice: Notice) -> dict[str, Any]:
    """The create-alert body for `notice`."""
    description = notice.text + (f"\n\nSlack: {notice.link}" if notice.link else "")
    details = {"severity": notice.severity, "subject": notice.subject, **notice.details}
    if notice.link:
        details["slack"] = notice.link
    return {
        "message": _cut(" ".join(notice.title.split()) or notice.subject, MESSAGE_LIMIT),
        "alias": notice.dedup_key,
        "description": _cut(description.strip(), DESCRIPTION_LIMIT),
        "responders": [{"type": "team", "name": team}],
        "priority": priority(notice),
        "details": details,
        "tags": ["opsbot", notice.severity],
        "entity": notice.subject,
        "source": "opsbot",
    }


class OpsgenieProvider(Provider):
    kind = "opsgenie"

    def __init__(self, config: Opsgenie, http: httpx.AsyncClient, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.http = http
        self.environ = os.environ if environ is None else environ

    async def send(self, name: str, notice: Notice) -> Delivery:
        if self.config.teams and name not in self.config.teams:
            known = ", ".join(f"`{t}`" for t in self.config.teams)
            raise PageRejected(f"Opsgenie team `{name}` is not in paging.opsgenie.teams (known: {known}).")
        key = _http.configured(lambda: self.config.api_key.reveal(self.environ, where="paging.opsgenie.api_key"))
        base = _http.configured(lambda: url(self.config.api_url, self.environ, where="paging.opsgenie.api_url"))
        headers = {"Authorization": f"GenieKey {key}"}
        what = f"Opsgenie (team {name})"
        if notice.action == "trigger":
            response = await _http.post(self.http, f"{base}/v2/alerts", what=what, timeout=self.config.timeout,
                                        secrets=[key], body=alert(name, notice), headers=headers)
        else:
            target = f"{base}/v2/alerts/{quote(notice.dedup_key, safe='')}/{ENDPOINT[notice.action]}"
            response = await _http.post(self.http, target, what=what, timeout=self.config.timeout, secrets=[key],
                                        body={"source": "opsbot", "note": _cut(notice.text, 25000)},
                                        headers=headers, params={"identifierType": "alias"})
        request_id = _http.json_answer(response).get("requestId")
        _http.log.info("Opsgenie accepted %s %s for team %s", notice.action, notice.dedup_key, name)
        return Delivery(str(request_id) if request_id else notice.dedup_key, f"Opsgenie: accepted ({notice.action})")
