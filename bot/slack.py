"""The Slack Web API client opsbot uses everywhere, and a cached directory of user groups."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
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

# Methods that are safe to repeat after a 5xx or a dropped connection: reads and idempotent edits.
# chat.postMessage and conversations.create are not: Slack may have acted before the answer was lost, so
# the caller looks up what it may have created before asking again (post_once, create_channel_once). 429s,
# and connections that were never made, are retried for every method: Slack did not act on those.
IDEMPOTENT = (
    "auth.test", "chat.update", "chat.getPermalink", "views.update", "conversations.setTopic",
    "conversations.setPurpose", "conversations.info", "conversations.invite", "conversations.join",
    "conversations.list", "conversations.members", "conversations.history", "pins.add", "users.info",
    "users.list", "usergroups.list", "usergroups.users.list", "users.lookupByEmail",
)
# Of those, the ones a timeout may also repeat: a timed-out call may still land in Slack later, after the
# repeat. For reads and set-like writes (an invite, a pin) that changes nothing; an edit (chat.update,
# views.update, a topic) landing late could overwrite a newer one, so those are not asked again.
REPEATABLE_AFTER_TIMEOUT = tuple(m for m in IDEMPOTENT if m not in (
    "chat.update", "views.update", "conversations.setTopic", "conversations.setPurpose"))


def method_of(request: HttpRequest) -> str:
    return request.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]


class IdempotentServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    async def _can_retry_async(
        self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return method_of(request) in IDEMPOTENT and await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


class SafeConnectionErrorRetryHandler(AsyncConnectionErrorRetryHandler):
    """Connection errors: any method when the connection was never made; after the request went out (the
    server hung up, a reset) only idempotent ones, since Slack may have acted on it."""

    async def _can_retry_async(
        self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if isinstance(error, aiohttp.ClientConnectorError):
            return True
        return method_of(request) in IDEMPOTENT and await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


class RepeatableTimeoutRetryHandler(AsyncRetryHandler):
    """A call that timed out (SLACK_TIMEOUT; on a loaded host even the connection can take that long) is asked
    once more when repeating it cannot undo anything: reads, invites, joins, pins."""

    async def _can_retry_async(
        self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return isinstance(error, TimeoutError) and method_of(request) in REPEATABLE_AFTER_TIMEOUT


def retry_handlers() -> list[AsyncRetryHandler]:
    return [
        SafeConnectionErrorRetryHandler(max_retry_count=2),
        RepeatableTimeoutRetryHandler(max_retry_count=1),
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        IdempotentServerErrorRetryHandler(max_retry_count=2),
    ]


def make_client(settings: Settings) -> AsyncWebClient:
    """The bot's Web API client: base URL from SLACK_API_URL, slack_sdk's retry handlers."""
    return AsyncWebClient(
        token=settings.bot_token,
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout,
        retry_handlers=retry_handlers(),
    )


# -- writes that are neither lost nor repeated ---------------------------------------------------------
WRITE_ATTEMPTS = 4
HISTORY_LOOKBACK = 200  # newest messages searched for a post whose answer was lost
LIST_PAGES = 20  # conversations.list pages (of 200) searched for a channel by name
ADOPT_SKEW = 300.0  # seconds: a channel created this long before we asked may still be the one we asked for
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class Outcome:
    """What a Slack write finally came to: the object Slack made (a message's `channel`/`ts`, a channel), or
    the error that stopped it (`channel_not_found`, `HTTP 500`, `TimeoutError`…)."""

    data: dict[str, Any] | None
    error: str | None = None


def classify(exc: BaseException) -> tuple[str, float, str]:
    """(verdict, wait, error) for a failed call. `again`: Slack did not act (a 429, no connection), ask again
    after `wait`; `unknown`: it may have acted (a 5xx, a timeout, a dropped answer), look before asking again;
    `final`: it refused (`channel_not_found`, `not_in_channel`, `name_taken`…)."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        error = str(exc.response.get("error") or "error")
        if status == 429 or error in ("ratelimited", "rate_limited"):
            return "again", _retry_after(exc), error
        if status >= 500:
            return "unknown", 0.0, f"HTTP {status}"
        return "final", 0.0, error
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "again", 0.0, type(exc).__name__
    if isinstance(exc, TimeoutError | aiohttp.ClientError):
        return "unknown", 0.0, type(exc).__name__
    raise exc


def _retry_after(exc: SlackApiError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(float(value), 0.0) if value is not None else 1.0
    except ValueError:
        return 1.0


def _backoff(attempt: int) -> float:
    return min(0.5 * 2**attempt, 8.0)


def _same_metadata(message: dict[str, Any], metadata: dict[str, Any]) -> bool:
    found = message.get("metadata") or {}
    return found.get("event_type") == metadata["event_type"] and found.get("event_payload") == metadata["event_payload"]


async def find_channel(client: AsyncWebClient, name: str, *, types: str) -> dict[str, Any] | None:
    """The channel called `name` among those conversations.list shows the bot (archived ones included)."""
    cursor = None
    for _ in range(LIST_PAGES):
        response = await client.conversations_list(types=types, limit=200, cursor=cursor, exclude_archived=False)
        for channel in response.get("channels") or []:
            if channel.get("name") == name:
                return dict(channel)
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


async def find_message(client: AsyncWebClient, channel: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The newest bot message in `channel` (an id or `#name`) carrying exactly this `metadata`:
    {"channel", "ts", "message"}, or None."""
    channel_id = channel
    if not _CHANNEL_ID.match(channel):
        found = await find_channel(client, channel.lstrip("#"), types="public_channel,private_channel")
        if found is None:
            return None
        channel_id = found["id"]
    response = await client.conversations_history(channel=channel_id, limit=HISTORY_LOOKBACK,
                                                  include_all_metadata=True)
    for message in response.get("messages") or []:
        if _same_metadata(message, metadata):
            return {"channel": channel_id, "ts": message["ts"], "message": message}
    return None


async def post_once(client: AsyncWebClient, *, channel: str, metadata: dict[str, Any], look_first: bool = False,
                    **message: Any) -> Outcome:
    """chat.postMessage that neither loses nor repeats the message. `metadata` (`event_type`, `event_payload`)
    must identify it: after an answer that leaves open whether Slack posted it (a timeout, a 5xx) the
    channel's history is searched for it before posting again, and before the first post with `look_first`
    (a job run again after its worker died, which may have posted it). 429s wait for Retry-After; a refusal
    (`channel_not_found`, `not_in_channel`, `is_archived`…) is final."""
    error, look = "error", look_first
    for attempt in range(WRITE_ATTEMPTS):
        if look:
            try:
                found = await find_message(client, channel, metadata)
            except SlackApiError as exc:
                verdict, wait, _ = classify(exc)
                if verdict != "final":  # a 5xx or a 429 says nothing about the post: look again
                    log.warning("looking for a lost post in %s failed (%s); looking again", channel,
                                exc.response.get("error"))
                    await asyncio.sleep(wait if verdict == "again" else _backoff(attempt))
                    continue
                # No way to look (e.g. not in the channel, no history scope): a second copy beats none.
                log.warning("looking for a lost post in %s failed (%s); posting again", channel,
                            exc.response.get("error"))
                found = None
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = type(exc).__name__
                await asyncio.sleep(_backoff(attempt))
                continue
            if found is not None:
                log.info("a post whose answer was lost (%s) was made: %s", error, found["ts"])
                return Outcome(found)
            look = False
        try:
            response = await client.chat_postMessage(channel=channel, metadata=metadata, **message)
            return Outcome({"channel": response["channel"], "ts": response["ts"]})
        except Exception as exc:
            verdict, wait, error = classify(exc)
        if verdict == "final":
            return Outcome(None, error)
        look = verdict == "unknown"
        if attempt + 1 < WRITE_ATTEMPTS:
            await asyncio.sleep(wait if verdict == "again" else _backoff(attempt))
    if look:  # the last answer was lost too: it may still have been posted
        try:
            found = await find_message(client, channel, metadata)
        except Exception as exc:
            log.warning("looking for a lost post in %s failed (%s)", channel, type(exc).__name__)
            found = None
        if found is not None:
            return Outcome(found)
    return Outcome(None, error)


async def create_channel_once(client: AsyncWebClient, *, names: list[str], is_private: bool,
                              since: float) -> Outcome:
    """conversations.create that leaves no orphan: after an answer that leaves open whether Slack made the
    channel (a timeout, a 5xx), or `name_taken` (a retried request that had made it), the channel is looked
    up by name and adopted when the bot created it, after `since` (time.time(), give or take ADOPT_SKEW),
    and it is not archived. A name taken by anyone or anything else moves on to the next of `names`."""
    types = "private_channel" if is_private else "public_channel"
    error, index, me = "error", 0, None
    for attempt in range(len(names) + WRITE_ATTEMPTS):
        if index >= len(names):
            break
        name = names[index]
        try:
            response = await client.conversations_create(name=name, is_private=is_private)
            return Outcome(dict(response["channel"]))
        except Exception as exc:
            verdict, wait, error = classify(exc)
        if verdict == "again":
            await asyncio.sleep(wait)
            continue
        if verdict == "final" and error != "name_taken":
            return Outcome(None, error)
        try:
            found = await find_channel(client, name, types=types)
            me = me or (await client.auth_test()).get("user_id")
        except Exception as exc:  # cannot tell yet: asking again answers name_taken if it was made
            log.warning("looking up channel %s failed (%s)", name, type(exc).__name__)
            await asyncio.sleep(_backoff(attempt))
            continue
        if found is not None and found.get("creator") == me and not found.get("is_archived") \
                and float(found.get("created") or 0) >= since - ADOPT_SKEW:
            log.info("channel %s was created by a call whose answer was lost (%s); adopting it", name, error)
            return Outcome(found)
        if found is not None or error == "name_taken":
            index += 1  # someone else's channel (or one the bot cannot see): the next name
        else:
            await asyncio.sleep(_backoff(attempt))  # not made: ask again with the same name
    return Outcome(None, error)


class Directory:
    """Resolves user group handles and ids to members, cached for a minute.

    Used by permissions and escalations; a Slack outage degrades to "no members" for groups, logged.
    A `fresh` lookup (the permission re-check before a destructive action) asks Slack again, refreshes
    the cache, and raises MembershipUnknown instead of guessing when Slack does not answer."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 60.0) -> None:
        self.client = client
        self.ttl = ttl
        self._handles: tuple[float, dict[str, str]] | None = None
        self._people: tuple[float, dict[str, str]] | None = None
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def group_id(self, handle: str, *, fresh: bool = False) -> str | None:
        handle = handle.lstrip("@").lower()
        now = time.monotonic()
        if fresh or self._handles is None or now - self._handles[0] > self.ttl:
            response = await self.client.usergroups_list()
            groups = response.get("usergroups") or []
            self._handles = (now, {str(g.get("handle", "")).lower(): g["id"] for g in groups})
        return self._handles[1].get(handle)

    async def user_id(self, handle: str) -> str | None:
        """The user whose name or display name is `@handle` (users.list, cached like the group handles)."""
        handle = handle.lstrip("@").lower()
        now = time.monotonic()
        if self._people is None or now - self._people[0] > self.ttl:
            people: dict[str, str] = {}
            cursor = ""
            for _ in range(50):  # 50 pages of 200: a 10,000-person workspace
                response = await self.client.users_list(limit=200, cursor=cursor or None)
                for member in response.get("members") or []:
                    if member.get("deleted") or member.get("is_bot"):
                        continue
                    profile = member.get("profile") or {}
                    for name in (member.get("name"), profile.get("display_name")):
                        if name:
                            people.setdefault(str(name).lower(), str(member["id"]))
                cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
                if not cursor:
                    break
            self._people = (now, people)
        return self._people[1].get(handle)

    async def members(self, principal: str, *, fresh: bool = False) -> frozenset[str]:
        """Members of `@handle` or `S…`; a user id (or a person's @handle) is its own single member."""
        if principal.startswith(("U", "W")) and not principal.startswith("@"):
            return frozenset({principal})
        if principal.startswith("@") and not fresh and await self._safe_group_id(principal) is None:
            person = await self._safe_user_id(principal)
            return frozenset({person}) if person else frozenset()
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
        """Slack mention markup for a user id, group id or @handle (a user group's, else a person's); the
        text unchanged when Slack knows neither."""
        if principal.startswith(("U", "W")):
            return f"<@{principal}>"
        group = principal if principal.startswith("S") else await self._safe_group_id(principal)
        if group:
            return f"<!subteam^{group}>"
        person = await self._safe_user_id(principal) if principal.startswith("@") else None
        return f"<@{person}>" if person else principal

    async def _safe_user_id(self, handle: str) -> str | None:
        try:
            return await self.user_id(handle)
        except Exception as exc:
            log.warning("users.list failed: %s", type(exc).__name__)
            return None

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
