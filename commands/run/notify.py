"""The Slack side of an action run (bot/actions/flows.py `ActionNotifier`)."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import actions
from bot.actions.runners import Outcome
from bot.deps import Deps
from bot.models import ActionRun
from bot.slack import post_once
from commands.common import responder, tell
from commands.run import render

log = logging.getLogger(__name__)
PROGRESS_LIMIT = 20  # progress lines posted per run (a chatty provider must not flood the thread)


class SlackActions:
    def __init__(self, deps: Deps, *, user: str, channel: str | None, response_url: str | None) -> None:
        self.deps, self.user, self.channel, self.response_url = deps, user, channel, response_url
        self._progress = 0

    async def _answer(self, text: str, blocks: list[dict[str, Any]] | None = None, *, replace: bool) -> None:
        respond = responder(self.deps, self.response_url)
        if respond is not None and replace:
            await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)
            return
        await tell(self.deps, text=text, blocks=blocks, respond=respond, user=self.user, channel=self.channel)

    async def confirm(self, run: ActionRun, *, destructive: bool) -> None:
        text, blocks = render.confirmation(run, destructive=destructive,
                                           production=self.deps.config.is_production(run.environment))
        await self._answer(text, blocks, replace=False)

    async def told(self, run: ActionRun, text: str) -> None:
        # The confirmation's own ephemeral message is replaced (a /run's; a runbook's Run press is told apart).
        await self._answer(text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                           replace=run.runbook_run_id is None)

    async def card(self, run: ActionRun) -> None:
        text, blocks = render.card(run)
        try:
            if run.message_ts and run.channel:
                await self.deps.slack.chat_update(channel=run.channel, ts=run.message_ts, text=text, blocks=blocks)
                return
            channel = run.channel or self.deps.config.channels.ops_channel
            posted = await post_once(self.deps.slack, channel=channel, text=text, blocks=blocks, look_first=True,
                                     metadata={"event_type": "opsbot_action_run",
                                               "event_payload": {"run_id": run.id}})
            if posted.data is None and channel != self.deps.config.channels.ops_channel:
                channel = self.deps.config.channels.ops_channel  # not in that channel (a DM): the ops channel
                posted = await post_once(self.deps.slack, channel=channel, text=text, blocks=blocks,
                                         metadata={"event_type": "opsbot_action_run",
                                                   "event_payload": {"run_id": run.id}})
            if posted.data is None:
                log.warning("could not post action run #%s (%s)", run.id, posted.error)
                return
            run.channel, run.message_ts = str(posted.data["channel"]), str(posted.data["ts"])
            await actions.set_posted(self.deps.db, run_id=run.id, channel=run.channel, ts=run.message_ts)
        except SlackApiError as exc:
            log.warning("could not show action run #%s (%s)", run.id, exc.response.get("error"))

    async def _thread(self, run: ActionRun, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        if not (run.channel and run.message_ts):
            return
        try:
            await self.deps.slack.chat_postMessage(channel=run.channel, thread_ts=run.message_ts, text=text,
                                                   blocks=blocks)
        except SlackApiError as exc:
            log.warning("could not post in action run #%s's thread (%s)", run.id, exc.response.get("error"))

    async def progress(self, run: ActionRun, text: str) -> None:
        self._progress += 1
        if self._progress <= PROGRESS_LIMIT:
            await self._thread(run, text)

    async def result(self, run: ActionRun, outcome: Outcome) -> None:
        text, blocks = render.result(run, outcome)
        await self._thread(run, text, blocks)

    async def step_changed(self, runbook_run_id: int) -> None:
        from commands.runbook.notify import SlackRunbooks

        await SlackRunbooks(self.deps).refresh(runbook_run_id)
