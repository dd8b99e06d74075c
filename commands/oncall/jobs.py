"""The on-call family's named jobs (bot/jobs.py) and the Slack side of schedules: people looked up by
e-mail address or name, and user groups set (`SlackPeople`)."""

from __future__ import annotations

import logging
import time
import weakref
from datetime import datetime, timedelta
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import oncall
from bot.deps import Deps
from bot.errors import DependencyDown, InvalidInput, ProviderError
from bot.jobs import job
from bot.oncall import ical, usergroups
from commands.common import responder, tell
from commands.oncall import render

log = logging.getLogger(__name__)
LOOKUP_TTL = 600.0  # seconds a person looked up by e-mail or name is remembered
ACTION = "oncall.override"
_CACHES: weakref.WeakKeyDictionary[AsyncWebClient, dict[str, tuple[float, str | None]]] = \
    weakref.WeakKeyDictionary()


class SlackPeople:
    """Resolves the people schedules name (U…, e-mail address, @name) to Slack user ids, and sets user
    groups (bot.oncall.usergroups.UsergroupDirectory). Lookups are remembered for LOOKUP_TTL."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        # One cache per app (its Slack client), shared by every job in the process: the sync runs every minute.
        self._cache = _CACHES.setdefault(deps.slack, {})

    async def resolve(self, ref: str) -> str | None:
        ref = ref.strip()
        if ref.startswith(("U", "W")) and ref.isalnum():
            return ref
        key = ref.lower()
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < LOOKUP_TTL:
            return cached[1]
        found = await (self._by_email(key) if "@" in key.lstrip("@") else self._by_name(key.lstrip("@")))
        self._cache[key] = (time.monotonic(), found)
        return found

    async def _by_email(self, email: str) -> str | None:
        try:
            response = await self.deps.slack.users_lookupByEmail(email=email)
        except SlackApiError as exc:
            if exc.response.get("error") == "users_not_found":
                return None
            raise ProviderError(f"Slack refused users.lookupByEmail ({exc.response.get('error')})") from None
        user = response.get("user") or {}
        return str(user["id"]) if user.get("id") else None

    async def _by_name(self, name: str) -> str | None:
        cursor: str | None = None
        while True:
            response = await self.deps.slack.users_list(cursor=cursor, limit=200)
            for member in response.get("members") or []:
                profile = member.get("profile") or {}
                names = {str(member.get("name") or "").lower(), str(profile.get("display_name") or "").lower()}
                if name in names and not member.get("deleted"):
                    return str(member["id"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None

    async def group_id(self, ref: str) -> str | None:
        try:
            return await self.deps.directory.group_id(ref)
        except (SlackApiError, TimeoutError, ClientError) as exc:
            raise ProviderError(f"looking up {ref} failed ({_slack_error(exc)})") from None

    async def set_members(self, group_id: str, users: list[str]) -> None:
        try:
            await self.deps.slack.usergroups_users_update(usergroup=group_id, users=users)
        except (SlackApiError, TimeoutError, ClientError) as exc:
            raise ProviderError(f"usergroups.users.update failed ({_slack_error(exc)})") from None


def _slack_error(exc: BaseException) -> str:
    return str(exc.response.get("error", "error")) if isinstance(exc, SlackApiError) else type(exc).__name__


async def _names(people: SlackPeople, users: set[str]) -> dict[str, str]:
    """Mentions for the people shown (an address Slack does not know stays as text)."""
    out = {}
    for user in users:
        try:
            found = await people.resolve(user)
        except ProviderError:
            found = None
        if found is not None:
            out[user] = f"<@{found}>"
    return out


async def _answer(deps: Deps, response_url: str | None, user: str, channel: str | None, *, text: str,
                  blocks: list[dict[str, Any]] | None = None) -> None:
    await tell(deps, text=text, blocks=blocks, respond=responder(deps, response_url), user=user, channel=channel)


async def _announce(deps: Deps, text: str) -> str | None:
    """Post to the ops channel; a failure is told to the requester, never undoes the override."""
    channel = deps.config.channels.ops_channel
    try:
        await deps.slack.chat_postMessage(channel=channel, text=text)
        return None
    except (SlackApiError, TimeoutError, ClientError) as exc:
        log.warning("posting an on-call override to %s failed: %s", channel, _slack_error(exc))
        return f"Posting to {channel} failed ({_slack_error(exc)})."


@job("oncall.show", retries=2)
async def show(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
               schedule: str | None) -> None:
    names = [oncall.schedule_of(deps.config, schedule)[0]] if schedule else list(deps.config.oncall)
    found = []
    for name in names:
        ical_feed = deps.config.oncall[name].ical
        if ical_feed is not None and await ical.cached(deps.db, name) is None:  # never read: read it now
            await ical.refresh(deps.db, deps.http, deps.clock, schedule=name, feed=ical_feed)
        found.append(await oncall.status(deps.db, deps.config, deps.clock, name))
    people = SlackPeople(deps)
    shown = {s.user for status in found for s in [*status.now, *([status.next] if status.next else [])]}
    blocks = render.statuses(found, await _names(people, shown))
    await _answer(deps, response_url, user, channel, text="On call", blocks=blocks)


def _end(deps: Deps, seconds: float | None, until: str | None) -> datetime:
    if until is not None:
        return datetime.fromisoformat(until)
    return deps.clock() + timedelta(seconds=seconds or 0)


@job("oncall.override", retries=2)
async def override(deps: Deps, *, user: str, channel: str | None, response_url: str | None, schedule: str,
                   target: str, seconds: float | None, until: str | None) -> None:
    name, found = oncall.schedule_of(deps.config, schedule)
    await deps.require(user=user, action=ACTION, target=f"oncall:{name}")
    await deps.ratelimit.check(user, ACTION)
    person = await SlackPeople(deps).resolve(target)
    if person is None:
        raise InvalidInput(f"There is no Slack user `{target}`.")
    info = await oncall.add_override(deps.db, deps.config, deps.clock, schedule=name, user=person,
                                     end=_end(deps, seconds, until), actor=user)
    problem = await _announce(deps, render.override_announcement(info, found.zone, user))
    text = render.override_set(info, found.zone) + (f" {problem}" if problem else "")
    await _answer(deps, response_url, user, channel, text=text)


@job("oncall.overrides", retries=2)
async def list_overrides(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                         schedule: str | None) -> None:
    found = await oncall.list_overrides(deps.db, deps.config, deps.clock, schedule=schedule)
    zones = {name: s.zone for name, s in deps.config.oncall.items()}
    await _answer(deps, response_url, user, channel, text=f"On-call overrides ({len(found)})",
                  blocks=render.overrides(found, zones, schedule))


@job("oncall.cancel", retries=2)
async def cancel(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                 override_id: int) -> None:
    await deps.require(user=user, action=ACTION, target=f"override #{override_id}")
    await deps.ratelimit.check(user, ACTION)
    info = await oncall.cancel_override(deps.db, deps.config, deps.clock, override_id=override_id, actor=user)
    zone = deps.config.oncall[info.schedule].zone
    problem = await _announce(deps, render.cancel_announcement(info, zone, user))
    text = f"Cancelled override `#{info.id}`." + (f" {problem}" if problem else "")
    await _answer(deps, response_url, user, channel, text=text)


@job("oncall.refresh_feed")
async def refresh_feed(deps: Deps, *, schedule: str) -> None:
    """The scheduled refresh of one schedule's iCal feed, when due (the next check is its retry)."""
    feed = deps.config.oncall[schedule].ical
    if feed is None:
        return
    state = await ical.cached(deps.db, schedule)
    if state is None or state.due(deps.clock(), feed.refresh):
        await ical.refresh(deps.db, deps.http, deps.clock, schedule=schedule, feed=feed)


@job("oncall.sync_usergroups")
async def sync_usergroups(deps: Deps) -> None:
    """Every minute on the scheduler's leader: schedules' user groups set to who is on call."""
    people = SlackPeople(deps)
    try:
        await usergroups.sync(deps.db, deps.config, deps.clock, groups=people, resolve=people.resolve)
    except DependencyDown as exc:  # the database: the next minute tries again
        log.warning("user group sync skipped: %s", exc)
