"""The Slack side of bot.statuspage.flows: notes in the incident's channel."""

from __future__ import annotations

from bot.deps import Deps
from bot.models import Incident
from bot.statuspage.flows import Services
from commands import blocks as bk
from commands.incident.notify import quietly


def services(deps: Deps) -> Services:
    return Services(db=deps.db, config=deps.config, clock=deps.clock, http=deps.http, scrub=deps.scrubber)


def page_link(deps: Deps) -> str:
    page = deps.config.status_page
    return f"<{page.url.rstrip('/')}/status|the status page>" if page is not None and page.url else "the status page"


class SlackStatus:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def _home(self, incident: Incident) -> str:
        return incident.channel_id or self.deps.config.channels.incidents

    async def published(self, incident: Incident, *, status: str, text: str) -> None:
        note = f":satellite_antenna: {incident.ref} on {page_link(self.deps)} · *{status.capitalize()}*"
        blocks = [bk.section(note), bk.section(bk.cut(text, 2900))]
        await quietly("statuspage.published", self.deps.slack.chat_postMessage(
            channel=self._home(incident), text=f"{note}: {bk.cut(text, 2000)}", blocks=blocks, unfurl_links=False))

    async def hosted_failed(self, incident: Incident, *, error: str) -> None:
        text = (f":warning: The hosted status page (Statuspage) did not take {incident.ref}'s public update: "
                f"{bk.cut(error, 500)}. opsbot's own page has it; publish again to retry.")
        await self.deps.slack.chat_postMessage(channel=self._home(incident), text=text, unfurl_links=False)
