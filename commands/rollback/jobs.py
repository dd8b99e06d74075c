"""The rollback family's named jobs (bot/jobs.py) and the Slack side of a rollback (`SlackRollbackNotifier`)."""

from __future__ import annotations

import logging

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError

from bot.deps import Deps
from bot.jobs import job
from bot.models import Rollback
from bot.rollbacks import flows
from bot.rollbacks.flows import PostFailed
from commands.common import tell_user
from commands.rollback import render

log = logging.getLogger(__name__)
# What a Web API call raises: Slack's refusal, or (after slack_sdk's retries) a timeout or connection error.
SLACK_ERRORS = (SlackApiError, TimeoutError, ClientError)
# Approvals and rejections of one rollback run one at a time (a late press is told who was first).
ROLLBACK_LOCK = "rollback:{rollback_id}"


def _slack_error(exc: BaseException) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else type(exc).__name__


class SlackRollbackNotifier:
    """bot.rollbacks.flows.RollbackNotifier over Slack: the request message in the ops channel (re-rendered
    at each step), progress in its thread, the incident channel, the requester."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def post_request(self, row: Rollback, *, provider: str) -> tuple[str, str]:
        text, blocks = render.request_message(render.summary(row, provider=provider))
        try:
            posted = await self.deps.slack.chat_postMessage(channel=self.deps.config.channels.ops_channel, text=text,
                                                            blocks=blocks)
        except SLACK_ERRORS as exc:
            raise PostFailed(_slack_error(exc)) from None
        return str(posted["channel"]), str(posted["ts"])

    async def requested(self, row: Rollback, *, user: str, channel: str | None, incident_channel: str | None) -> None:
        where = f"<#{row.channel}>"
        if row.status == "pending_approval":
            note = (f"Rollback #{row.id} of `{row.service}` in *{row.environment}* to `{row.to_version}` requested; "
                    f"it needs {row.approvals_required} approval(s) in {where}.")
        else:
            note = (f"Rolling back `{row.service}` in *{row.environment}* to `{row.to_version}` (#{row.id}); "
                    f"progress in {where}.")
        if channel and channel != row.channel:
            await tell_user(self.deps, user=user, channel=channel, text=note)
        await self._incident(row, incident_channel,
                             f":rewind: <@{user}> requested rollback #{row.id} of `{row.service}` in "
                             f"*{row.environment}* to `{row.to_version}`: {render.esc(row.reason[:300])}")

    async def approved(self, row: Rollback, *, user: str) -> None:
        await self.refresh(row)
        await self.thread(row, f"<@{user}> approved ({len(row.approved_by)}/{row.approvals_required}).")

    async def rejected(self, row: Rollback, *, user: str, incident_channel: str | None) -> None:
        await self.refresh(row)
        await self.thread(row, f":no_entry_sign: <@{user}> rejected the rollback; nothing was changed.")
        await self._incident(row, incident_channel, f":no_entry_sign: Rollback #{row.id} of `{row.service}` in "
                                                    f"*{row.environment}* was rejected by <@{user}>.")

    async def expired(self, row: Rollback, *, incident_channel: str | None) -> None:
        await self.refresh(row)
        await self.thread(row, ":hourglass: The request expired without enough approvals; nothing was changed.")
        await self._incident(row, incident_channel,
                             f":hourglass: Rollback request #{row.id} of `{row.service}` expired.")

    async def lost(self, row: Rollback) -> None:
        await self.refresh(row)
        await self.thread(row, ":x: No result from this run (opsbot restarted?); marked failed. "
                               "Check the provider before retrying.")

    async def running(self, row: Rollback, *, provider: str) -> None:
        await self.refresh(row)
        await self.thread(row, f":arrows_counterclockwise: Rolling back `{row.service}` in *{row.environment}* "
                               f"to `{row.to_version}` via `{provider}`…")

    async def progress(self, row: Rollback, text: str) -> None:
        await self.thread(row, text)

    async def output(self, row: Rollback, output: str) -> None:
        await self.thread(row, render.output_text(output))

    async def finished(self, row: Rollback, *, detail: str, health: list[str], incident_channel: str | None) -> None:
        text = render.result_text(render.summary(row), detail, health)
        await self.refresh(row)
        await self.thread(row, text)
        await self._incident(row, incident_channel, text)

    async def broke(self, row: Rollback) -> None:
        await self.refresh(row)
        await self.thread(row, ":x: The rollback stopped on an internal error (logged); check the provider.")

    # -- Slack calls that never fail the rollback ------------------------------------------------
    async def refresh(self, row: Rollback) -> None:
        """Re-render the request message from the row (approvals, status, run link)."""
        if not row.channel or not row.message_ts:
            return
        text, blocks = render.request_message(render.summary(row, provider=flows.provider_of(self.deps, row)))
        try:
            await self.deps.slack.chat_update(channel=row.channel, ts=row.message_ts, text=text, blocks=blocks)
        except SLACK_ERRORS as exc:
            log.warning("rollback #%s: updating the request message failed (%s)", row.id, _slack_error(exc))

    async def thread(self, row: Rollback, text: str) -> None:
        """Progress goes in the request message's thread; losing one progress line must not stop the run."""
        try:
            await self.deps.slack.chat_postMessage(channel=row.channel or self.deps.config.channels.ops_channel,
                                                   thread_ts=row.message_ts, text=text)
        except SLACK_ERRORS as exc:
            log.warning("rollback #%s: progress message failed (%s)", row.id, _slack_error(exc))

    async def _incident(self, row: Rollback, channel: str | None, text: str) -> None:
        if channel:
            try:
                await self.deps.slack.chat_postMessage(channel=channel, text=text)
            except SLACK_ERRORS as exc:
                log.warning("rollback #%s: posting to the incident channel failed (%s)", row.id, _slack_error(exc))


@job("rollback.submit", lock="rollback-request:{service}/{environment}", retries=2)
async def submit(deps: Deps, *, user: str, channel: str | None, response_url: str | None, service: str,
                 environment: str, from_version: str | None, to_version: str, reason: str) -> None:
    del response_url  # a form submission has none: failures are told to `user` in `channel`
    await flows.submit(deps, SlackRollbackNotifier(deps), user=user, service=service, environment=environment,
                       from_version=from_version, to_version=to_version, reason=reason, channel=channel)


@job("rollback.approve", lock=ROLLBACK_LOCK, retries=2)
async def approve(deps: Deps, *, user: str, channel: str | None, response_url: str | None, rollback_id: int) -> None:
    await flows.approve(deps, SlackRollbackNotifier(deps), rollback_id=rollback_id, user=user)


@job("rollback.reject", lock=ROLLBACK_LOCK, retries=2)
async def reject(deps: Deps, *, user: str, channel: str | None, response_url: str | None, rollback_id: int) -> None:
    await flows.reject(deps, SlackRollbackNotifier(deps), rollback_id=rollback_id, user=user)


# Never retried: a provider is run at most once per rollback (a run whose start was recorded is not run again).
@job(flows.RUN_JOB, lock="rollback-run:{rollback_id}")
async def run(deps: Deps, *, rollback_id: int) -> None:
    await flows.execute(deps, SlackRollbackNotifier(deps), rollback_id)


@job("rollbacks.expire")
async def expire(deps: Deps) -> None:
    await flows.expire(deps, SlackRollbackNotifier(deps))
