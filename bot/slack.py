"""The Slack Web API client opsbot uses everywhere, and a cached directory of user groups."""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.permissions import MembershipUnknown
from bot.settings import Settings

log = logging.getLogger(__name__)

# Methods that are safe to repeat after a 5xx: reads and idempotent edits. Posting a message twice
# is worse than reporting a failure, so chat.postMessage is not here (429 and connection errors
# before a response are still retried: Slack did not act on those).
IDEMPOTENT = (
    "auth.test", "chat.update", "chat.getPermalink", "views.update", "conversations.setTopic",
    "conversations.setPurpose", "conversations.info", "conversations.invite", "conversations.join",
    "conversations.list", "conversations.members", "conversations.history", "pins.add", "users.info",
    "users.list", "usergroups.list", "usergroups.users.list", "users.lookupByEmail",
)


class IdempotentServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    async def _can_retry_async(
        self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = request.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        return method in IDEMPOTENT and await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


def retry_handlers() -> list[AsyncRetryHandler]:
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        IdempotentServerErrorRetryHandler(max_retry_count=2),
    ]


def make_client(settings: Settings) -> AsyncWebClient:
    """The bot's Web API client: base URL from SLACK_API_URL, slack_sdk's retry handlers."""
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout,
        retry_handlers=retry_handlers(),
    )


class Directory:
    """Resolves user group handles and ids to members, cached for a minute.

    Used by permissions and escalations; a Slack outage degrades to "no members" for groups, logged.
    A `fresh` lookup (the permission re-check before a destructive action) asks Slack again, refreshes
    the cache, and raises MembershipUnknown instead of guessing when Slack does not answer."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 60.0) -> None:
        self.client = client
        self.ttl = ttl
        self._handles: tuple[float, dict[str, str]] | None = None
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def group_id(self, handle: str, *, fresh: bool = False) -> str | None:
        handle = handle.lstrip("@").lower()
        now = time.monotonic()
        if fresh or self._handles is None or now - self._handles[0] > self.ttl:
            response = await self.client.usergroups_list()
            groups = response.get("usergroups") or []
            self._handles = (now, {str(g.get("handle", "")).lower(): g["id"] for g in groups})
        return self._handles[1].get(handle)

    async def members(self, principal: str, *, fresh: bool = False) -> frozenset[str]:
        """Members of `@handle` or `S…`; a user id is its own single member."""
        if principal.startswith(("U", "W")) and not principal.startswith("@"):
            return frozenset({principal})
        if fresh:
            return await self._fresh_members(principal)
        group = await self._safe_group_id(principal) if principal.startswith("@") else principal
        if group is None:
            return frozenset()
        now = time.monotonic()
        cached = self._members.get(group)
        if cached and now - cached[0] <= self.ttl:
            return cached[1]
        try:
            response = await self.client.usergroups_users_list(usergroup=group)
        except Exception as exc:  # a Slack outage must not crash a permission check
            log.warning("usergroups.users.list failed for %s: %s", group, type(exc).__name__)
            return cached[1] if cached else frozenset()
        users = frozenset(response.get("users") or [])
        self._members[group] = (now, users)
        return users

    async def _fresh_members(self, principal: str) -> frozenset[str]:
        try:
            group = await self.group_id(principal, fresh=True) if principal.startswith("@") else principal
            if group is None:  # Slack answered: no such (enabled) group
                return frozenset()
            response = await self.client.usergroups_users_list(usergroup=group)
        except Exception as exc:
            log.warning("fresh membership lookup of %s failed: %s", principal, type(exc).__name__)
            raise MembershipUnknown(principal) from exc
        users = frozenset(response.get("users") or [])
        self._members[group] = (time.monotonic(), users)
        return users

    async def mention(self, principal: str) -> str:
        """Slack mention markup for a user id, group id or @handle."""
        if principal.startswith(("U", "W")):
            return f"<@{principal}>"
        group = principal if principal.startswith("S") else await self._safe_group_id(principal)
        if group:
            return f"<!subteam^{group}>"
        return principal

    async def _safe_group_id(self, handle: str) -> str | None:
        try:
            return await self.group_id(handle)
        except Exception as exc:
            log.warning("usergroups.list failed: %s", type(exc).__name__)
            return None


def ok(response: Any) -> dict[str, Any]:
    """The response data of a SlackResponse as a plain dict."""
    return dict(response.data) if hasattr(response, "data") else dict(response)


class SharedSessionRespond:
    """bolt's `respond()` with one difference: it reuses the app's aiohttp session (keep-alive, one TLS
    handshake per host) instead of opening a new session and connection for every response_url call."""

    def __init__(self, response_url: str, client: AsyncWebClient) -> None:
        self.response_url = response_url
        self.client = client

    async def __call__(self, text: str | dict[str, Any] = "", **kwargs: Any) -> Any:
        from slack_bolt.context.respond.internals import _build_message
        from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        webhook = AsyncWebhookClient(url=self.response_url, session=self.client.session, timeout=10,
                                     retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=2),
                                                     AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
        message = _build_message(**text) if isinstance(text, dict) else _build_message(text=text, **kwargs)
        response = await webhook.send_dict(message)
        if response.status_code >= 400:
            log.warning("response_url answered HTTP %s", response.status_code)
        return response
