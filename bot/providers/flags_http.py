"""Flags behind an admin API, as the runbooks call it by hand:
`curl -X POST …/api/admin/feature-flags -d '{"name": …, "enabled": true}'`.

The JSON body is a template: string values are rendered by a sandboxed Jinja2 over `name`, `enabled`,
`kill_switch`, `rollout` and `environment`. A value that is one expression (`"{{ enabled }}"`) keeps its
JSON type (true, 50, null); other strings are rendered as text. Keys whose value comes out null (a field
opsbot does not know, e.g. `enabled` when only the kill switch changes and there is no `state_url`)
are left out of the body."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import httpx
from jinja2 import TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot.config.flags import HttpFlagStore
from bot.config.secrets import EnvUrl
from bot.errors import ProviderError
from bot.providers.flags_base import FlagChange, FlagState, ProviderContext, StoreUnreachable

MAX_BODY = 1_000_000
_WHOLE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}$", re.DOTALL)


@cache
def sandbox() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(autoescape=False)


@cache
def _compiled(template: str) -> Any:
    """Compiled once per distinct template string (config strings are few; compiling is the costly part)."""
    whole = _WHOLE_EXPRESSION.match(template.strip())
    if whole:
        return sandbox().compile_expression(whole.group("expr"), undefined_to_none=True)
    return sandbox().from_string(template).render


def _render_string(template: str, context: dict[str, Any]) -> Any:
    return _compiled(template)(**context)


@cache
def _string_variables(template: str) -> frozenset[str]:
    return frozenset(meta.find_undeclared_variables(sandbox().parse(template)))


def render_body(body: Any, context: dict[str, Any]) -> Any:
    """The body template rendered with native JSON types; None-valued keys dropped from objects."""
    if isinstance(body, str):
        return _render_string(body, context)
    if isinstance(body, dict):
        rendered = {key: render_body(value, context) for key, value in body.items()}
        return {key: value for key, value in rendered.items() if value is not None}
    if isinstance(body, list):
        return [render_body(item, context) for item in body]
    return body


def template_variables(body: Any) -> set[str]:
    """Every variable the body template refers to (raises jinja2.TemplateError on bad syntax)."""
    if isinstance(body, str):
        return set(_string_variables(body))
    if isinstance(body, dict):
        return set().union(*(template_variables(v) for v in body.values())) if body else set()
    if isinstance(body, list):
        return set().union(*(template_variables(v) for v in body)) if body else set()
    return set()


def state_from_json(data: Any, key: str) -> FlagState | None:
    """Find the flag in a state response: the flag object itself, a list of flag objects with `name`,
    or an object keyed by flag name (optionally wrapped in `flags` or `data`)."""
    if isinstance(data, dict):
        for wrapper in ("flags", "data", "flag"):
            if wrapper in data and isinstance(data[wrapper], dict | list):
                found = state_from_json(data[wrapper], key)
                if found is not None:
                    return found
        if data.get("name") == key or (any(f in data for f in ("enabled", "kill_switch")) and "name" not in data):
            return _state(data)
        if isinstance(data.get(key), dict):
            return _state(data[key])
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and item.get("name") == key:
                return _state(item)
    return None


def _state(item: dict[str, Any]) -> FlagState:
    rollout = item.get("rollout_percentage", item.get("rollout"))
    return FlagState(
        enabled=item["enabled"] if isinstance(item.get("enabled"), bool) else None,
        kill_switch=item["kill_switch"] if isinstance(item.get("kill_switch"), bool) else None,
        rollout=int(rollout) if isinstance(rollout, int | float) and not isinstance(rollout, bool) else None,
    )


class HttpFlags:
    def __init__(self, store: HttpFlagStore, ctx: ProviderContext) -> None:
        self.store = store
        self.ctx = ctx
        self.key = store.key or ctx.flag
        self.timeout = store.timeout.total_seconds()
        # Without a state URL the change cannot be read back; the API's 2xx (and any echoed state) is all.
        self.can_read = store.state_url is not None
        self.read_back_error: str | None = None  # set by `set` when the change was made but not read back

    @property
    def where(self) -> str:
        return f"`{self.ctx.flag}` in {self.ctx.environment} (admin API)"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.store.token is not None:
            token = self.store.token.reveal(where=f"flags.{self.ctx.flag}.environments.{self.ctx.environment}.token")
            if token:
                headers["Authorization"] = f"Bearer {token}"
        return headers

    def _url(self, url: EnvUrl, field: str) -> str:
        return url.reveal(where=f"flags.{self.ctx.flag}.environments.{self.ctx.environment}.{field}")

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response: httpx.Response = await self.ctx.http.request(
                method, url, headers=self._headers(), timeout=self.timeout, **kwargs)
        except httpx.TimeoutException:
            raise StoreUnreachable(f"{self.where}: no answer within {self.timeout:g}s.") from None
        except httpx.TransportError as exc:
            raise StoreUnreachable(f"{self.where}: unreachable ({type(exc).__name__}).") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{self.where}: unreachable ({type(exc).__name__}).") from None
        if not response.is_success:
            raise ProviderError(f"{self.where}: {method} answered HTTP {response.status_code}"
                                f" {response.reason_phrase}.".replace(" .", "."))
        if len(response.content) > MAX_BODY:
            raise ProviderError(f"{self.where}: answer larger than {MAX_BODY} bytes.")
        return response

    async def read(self) -> FlagState:
        if self.store.state_url is None:
            return FlagState()  # unknown: this API has no read endpoint configured
        response = await self._request("GET", self._url(self.store.state_url, "state_url"))
        try:
            data = response.json()
        except ValueError:
            raise ProviderError(f"{self.where}: the state URL did not answer JSON.") from None
        state = state_from_json(data, self.key)
        if state is None:
            raise ProviderError(f"{self.where}: the state URL does not list a flag named '{self.key}'.")
        return state

    async def set(self, change: FlagChange, *, actor: str) -> tuple[FlagState, FlagState]:
        unsent = set(change.fields()) - template_variables(self.store.body)
        if unsent:
            raise ProviderError(f"{self.where}: the configured body does not send {', '.join(sorted(unsent))}.")
        before = await self.read()
        target = change.applied_to(before)
        context = {"name": self.key, "enabled": target.enabled, "kill_switch": target.kill_switch,
                   "rollout": target.rollout, "environment": self.ctx.environment}
        try:
            body = render_body(self.store.body, context)
        except TemplateError as exc:
            raise ProviderError(f"{self.where}: the body template failed ({type(exc).__name__}).") from None
        response = await self._request(self.store.method, self._url(self.store.url, "url"), json=body)
        if self.store.state_url is not None:
            # The change is made: a failed read-back must not be reported as a failed (unmade) change.
            try:
                return before, await self.read()
            except ProviderError as exc:
                self.read_back_error = f"the admin API accepted the change but reading it back failed: {exc}"
                return before, FlagState()
        return before, _answer_state(response, self.key) or target


def _answer_state(response: httpx.Response, key: str) -> FlagState | None:
    """The state echoed by the admin API's answer, when it sends one."""
    try:
        return state_from_json(response.json(), key)
    except ValueError:
        return None
