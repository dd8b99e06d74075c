"""The Slack side of paging: the `Pager` of a Deps (on-call lookup, job deferral, the secret scrubber) and
where a page that failed for good is reported."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any

from bot.deps import Deps
from bot.incidents import flows as incident_flows
from bot.models import Page
from bot.oncall import current
from bot.paging.flows import Pager
from bot.paging.providers.base import Notice

log = logging.getLogger(__name__)


def pager(deps: Deps) -> Pager:
    async def oncall(schedule: str) -> list[str]:
        from commands.oncall.jobs import SlackPeople  # e-mail addresses and @names in schedules → user ids

        return await current(deps.db, deps.config, deps.clock, schedule, resolve=SlackPeople(deps).resolve)

    async def defer(name: str, kwargs: Mapping[str, Any]) -> None:
        # One job per page even when deferred twice (a set-up resumed after a crash).
        await deps.queue.defer(name, kwargs, once=f"{name}:{kwargs.get('page_id', '')}")

    return Pager(db=deps.db, config=deps.config, clock=deps.clock, people=deps.directory, oncall=oncall,
                 defer=defer, scrub=deps.scrubber)


async def quietly(name: str, coro: Awaitable[Any]) -> Any:
    """A Slack call whose failure is logged, not raised (the page's outcome is recorded already)."""
    try:
        return await coro
    except Exception as exc:
        log.warning("%s failed: %s", name, type(exc).__name__)
        return None


class SlackPages:
    """bot.paging.flows.PageNotifier over Slack."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def page_failed(self, page: Page, notice: Notice) -> None:
        text = (f"⚠️ Paging {page.target} for {notice.title} failed after {page.attempts} "
                f"attempt{'s' * (page.attempts > 1)} ({page.error}). Reach them another way.")
        kind, _, rest = page.subject.partition(":")
        channel: str | None = None
        if kind == "incident" and rest.isdecimal():
            incident = await incident_flows.lookup(self.deps.db, incident_id=int(rest))
            if incident is not None:
                channel = incident.channel_id or incident.announcement_channel
            channel = channel or self.deps.config.channels.incidents
        elif kind == "alert":
            channel = self.deps.config.channels.alerts
        elif page.requested_by.startswith(("U", "W")):
            channel = page.requested_by  # a /page: its requester, by DM
        if channel:
            await quietly("page.failed", self.deps.slack.chat_postMessage(channel=channel, text=text))
