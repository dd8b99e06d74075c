"""The Slack side of runbook checklists (bot/runbooks/flows.py `RunbookNotifier`)."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot import runbooks
from bot.config.runbooks import Runbook
from bot.deps import Deps
from bot.models import RunbookRun
from bot.slack import post_once
from commands.common import responder, tell
from commands.runbook import render

log = logging.getLogger(__name__)


class SlackRunbooks:
    def __init__(self, deps: Deps, *, user: str | None = None, channel: str | None = None,
                 response_url: str | None = None) -> None:
        self.deps, self.user, self.channel, self.response_url = deps, user, channel, response_url

    async def post(self, row: RunbookRun, name: str, book: Runbook) -> tuple[str, str] | None:
        text, blocks = render.checklist(name, book, row)
        posted = await post_once(self.deps.slack, channel=row.channel, text=text, blocks=blocks, look_first=True,
                                 metadata={"event_type": "opsbot_runbook", "event_payload": {"runbook_run_id": row.id}})
        if posted.data is None:
            log.warning("could not post runbook %s in %s (%s)", name, row.channel, posted.error)
            return None
        return str(posted.data["channel"]), str(posted.data["ts"])

    async def refresh(self, runbook_run_id: int) -> None:
        row = await runbooks.read(self.deps.db, runbook_run_id)
        book = self.deps.config.runbooks.get(row.runbook)
        if book is None or row.message_ts is None:
            return
        text, blocks = render.checklist(row.runbook, book, row)
        try:
            await self.deps.slack.chat_update(channel=row.channel, ts=row.message_ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            log.warning("could not update runbook checklist #%s (%s)", row.id, exc.response.get("error"))

    async def thread(self, row: RunbookRun, text: str) -> None:
        if row.message_ts is None:
            return
        try:
            await self.deps.slack.chat_postMessage(channel=row.channel, thread_ts=row.message_ts, text=text)
        except SlackApiError as exc:
            log.warning("could not post in runbook checklist #%s's thread (%s)", row.id, exc.response.get("error"))

    async def told(self, text: str) -> None:
        # Never through a button's response_url: replace_original=False keeps the checklist itself.
        await tell(self.deps, text=text, respond=responder(self.deps, self.response_url), user=self.user,
                   channel=self.channel)
